/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The map layout shared by the socket load balancer (lb.c) and its loader
 * (src/layout.rs mirrors every struct here byte for byte; keep them in step).
 *
 * Addresses and ports are stored in network byte order, exactly as the kernel
 * hands them to cgroup sock_addr programs (ctx->user_ip4, the low 16 bits of
 * ctx->user_port). Every padding byte is explicit and always zero, so keys hash
 * the same on both sides.
 */
#ifndef FLOTILLA_LB_H
#define FLOTILLA_LB_H

#include <linux/types.h>

/* Map capacities. */
#define LB_MAX_SERVICES 65536
/* Twice the 262144 slots a full table uses: an update writes the new set
 * before it deletes the old one. */
#define LB_MAX_BACKEND_SLOTS 524288
#define LB_MAX_AFFINITY 65536
#define LB_MAX_REVERSE 131072

/* service_value.flags */
#define LB_FLAG_AFFINITY 1

/* A service frontend: virtual IP, port, IP protocol number. */
struct frontend_key {
	__be32 ip;
	__be16 port;
	__u8 protocol;
	__u8 pad;
};

/* Which backend set a frontend uses now. */
struct service_value {
	__u32 set_id;
	__u16 count;
	__u8 flags;
	__u8 pad;
	/* Session affinity timeout in milliseconds (with LB_FLAG_AFFINITY). */
	__u32 affinity_ms;
	__u32 pad2;
};

/* One slot of a backend set: slots 0..count-1 of the set a service names. */
struct backend_key {
	__u32 set_id;
	__u32 slot;
};

struct backend_value {
	__be32 ip;
	__be16 port;
	__u16 pad;
};

/* The backends of a set, by address; written only for services with
 * session affinity, to check a remembered backend is still current. */
struct member_key {
	__u32 set_id;
	__be32 ip;
	__be16 port;
	__u16 pad;
};

/* Session affinity: a network namespace's backend for a frontend. */
struct affinity_key {
	__u64 netns_cookie;
	__be32 ip;
	__be16 port;
	__u8 protocol;
	__u8 pad;
};

struct affinity_value {
	__be32 ip;
	__be16 port;
	__u16 pad;
	__u64 last_used_ns;
};

/* Reverse translation: a socket's backend and the frontend it was asked for. */
struct reverse_key {
	__u64 socket_cookie;
	__be32 ip;
	__be16 port;
	__u16 pad;
};

struct reverse_value {
	__be32 ip;
	__be16 port;
	__u16 pad;
};

#endif
