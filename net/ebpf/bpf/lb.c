// SPDX-License-Identifier: Apache-2.0
/*
 * Flotilla's socket load balancer: cgroup sock_addr programs that translate a
 * service frontend (virtual IP, port, protocol) to one of its backends when a
 * socket connects or sends, and back again when it receives or asks for its
 * peer, so applications only ever see the virtual IP.
 *
 * Consistency: a service entry names a complete backend set (set id, count).
 * Userspace writes a set's slots before a service entry points at them and
 * deletes them only after it no longer does, so a program that reads the
 * service entry first sees either the old set or the new one, never a mix. A
 * slot that vanished between the two reads means the entry was just replaced:
 * the program reads the entry again.
 */

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "lb.h"

/* Reads of a service entry before giving up on a table that keeps changing. */
#define LB_READ_ATTEMPTS 4

/* Verdicts of cgroup sock_addr programs. */
#define LB_ALLOW 1
#define LB_REFUSE 0

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct frontend_key);
	__type(value, struct service_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct backend_key);
	__type(value, struct backend_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct member_key);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} members SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_AFFINITY);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_REVERSE);
	__type(key, struct reverse_key);
	__type(value, struct reverse_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} reverse SEC(".maps");

/* Returns whether `backend` is one of the backends of `set_id`. */
static __always_inline int is_member(__u32 set_id, const struct affinity_value *backend)
{
	struct member_key key = {
		.set_id = set_id,
		.ip = backend->ip,
		.port = backend->port,
		.pad = 0,
	};

	return bpf_map_lookup_elem(&members, &key) != NULL;
}

/*
 * Returns the backend remembered for this network namespace and frontend when
 * it was used within the timeout and is still in the service's current set.
 */
static __always_inline int remembered_backend(const struct affinity_key *key,
					      const struct service_value *service, __u64 now,
					      struct affinity_value *chosen)
{
	struct affinity_value *remembered = bpf_map_lookup_elem(&affinity, key);

	if (!remembered)
		return 0;
	*chosen = *remembered;
	if (now - chosen->last_used_ns > (__u64)service->affinity_ms * 1000000ULL)
		return 0;
	return is_member(service->set_id, chosen);
}

/*
 * Picks a backend for `frontend` into `chosen`. Returns LB_ALLOW with a
 * backend, LB_REFUSE when the frontend has no backends, and -1 when the
 * address is not a frontend.
 */
static __always_inline int pick_backend(struct bpf_sock_addr *ctx, const struct frontend_key *frontend,
					struct affinity_value *chosen)
{
	int attempt;

#pragma unroll
	for (attempt = 0; attempt < LB_READ_ATTEMPTS; attempt++) {
		struct service_value *entry = bpf_map_lookup_elem(&services, frontend);
		struct service_value service;
		struct affinity_key affinity_key = {};
		struct backend_key slot_key = {};
		struct backend_value *slot;
		__u64 now = 0;

		if (!entry)
			return -1;
		service = *entry;
		if (service.count == 0)
			return LB_REFUSE;

		if (service.flags & LB_FLAG_AFFINITY) {
			affinity_key.netns_cookie = bpf_get_netns_cookie(ctx);
			affinity_key.ip = frontend->ip;
			affinity_key.port = frontend->port;
			affinity_key.protocol = frontend->protocol;
			now = bpf_ktime_get_ns();
			if (remembered_backend(&affinity_key, &service, now, chosen)) {
				chosen->last_used_ns = now;
				bpf_map_update_elem(&affinity, &affinity_key, chosen, BPF_ANY);
				return LB_ALLOW;
			}
		}

		slot_key.set_id = service.set_id;
		slot_key.slot = bpf_get_prandom_u32() % service.count;
		slot = bpf_map_lookup_elem(&backends, &slot_key);
		if (!slot)
			continue; /* the set was replaced after the entry was read */
		chosen->ip = slot->ip;
		chosen->port = slot->port;
		chosen->pad = 0;
		chosen->last_used_ns = now;
		if (service.flags & LB_FLAG_AFFINITY)
			bpf_map_update_elem(&affinity, &affinity_key, chosen, BPF_ANY);
		return LB_ALLOW;
	}
	/* Refused rather than sent to an address nothing answers on. */
	return LB_REFUSE;
}

/* Translates a connect() or sendmsg() to a frontend into one to a backend. */
static __always_inline int translate_forward(struct bpf_sock_addr *ctx)
{
	struct frontend_key frontend = {};
	struct affinity_value chosen = {};
	struct reverse_key reverse_key = {};
	struct reverse_value reverse_value = {};
	int verdict;

	if (ctx->protocol != IPPROTO_TCP && ctx->protocol != IPPROTO_UDP)
		return LB_ALLOW;
	frontend.ip = ctx->user_ip4;
	frontend.port = (__be16)ctx->user_port;
	frontend.protocol = (__u8)ctx->protocol;

	verdict = pick_backend(ctx, &frontend, &chosen);
	if (verdict < 0)
		return LB_ALLOW;
	if (verdict == LB_REFUSE)
		return LB_REFUSE;

	reverse_key.socket_cookie = bpf_get_socket_cookie(ctx);
	reverse_key.ip = chosen.ip;
	reverse_key.port = chosen.port;
	reverse_value.ip = frontend.ip;
	reverse_value.port = frontend.port;
	bpf_map_update_elem(&reverse, &reverse_key, &reverse_value, BPF_ANY);

	ctx->user_ip4 = chosen.ip;
	ctx->user_port = (__u32)chosen.port;
	return LB_ALLOW;
}

/* Shows the frontend in place of the backend a socket was translated to. */
static __always_inline int translate_reverse(struct bpf_sock_addr *ctx)
{
	struct reverse_key key = {};
	struct reverse_value *frontend;

	key.socket_cookie = bpf_get_socket_cookie(ctx);
	key.ip = ctx->user_ip4;
	key.port = (__be16)ctx->user_port;
	frontend = bpf_map_lookup_elem(&reverse, &key);
	if (frontend) {
		ctx->user_ip4 = frontend->ip;
		ctx->user_port = (__u32)frontend->port;
	}
	return LB_ALLOW;
}

SEC("cgroup/connect4")
int connect4(struct bpf_sock_addr *ctx)
{
	return translate_forward(ctx);
}

SEC("cgroup/sendmsg4")
int sendmsg4(struct bpf_sock_addr *ctx)
{
	return translate_forward(ctx);
}

SEC("cgroup/recvmsg4")
int recvmsg4(struct bpf_sock_addr *ctx)
{
	return translate_reverse(ctx);
}

SEC("cgroup/getpeername4")
int getpeername4(struct bpf_sock_addr *ctx)
{
	return translate_reverse(ctx);
}

/* The programs call no GPL-only helper. */
char LICENSE[] SEC("license") = "Apache-2.0";
