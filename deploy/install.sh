#!/usr/bin/env bash
# Installs what building, running and testing Flotilla needs on Debian, when it is missing.
# Safe to run again: it installs nothing that is already there.
set -euo pipefail

# Whether program $1 is installed; root's programs are found even without sbin on PATH.
have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

packages=()
have cc || packages+=(build-essential)
have protoc || packages+=(protobuf-compiler)
# etcd-client's protocol files import protobuf's well-known types (descriptor.proto, …).
[ -f /usr/include/google/protobuf/descriptor.proto ] || packages+=(libprotobuf-dev)
have etcdctl || packages+=(etcd-client)
have ip || packages+=(iproute2)
have cargo || packages+=(cargo rustc)
# The node agent runs its own containerd (1.6) with runc, the CNI bridge/host-local/portmap
# plugins and iptables. Where systemd runs, the package also starts a system containerd on
# /run/containerd; the agent's own never uses it.
have containerd || packages+=(containerd)
have runc || packages+=(runc)
have iptables || packages+=(iptables)
# Node ports and the pod network's egress rules are nftables tables, programmed with `nft`.
have nft || packages+=(nftables)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || packages+=(containernetworking-plugins)
# The busybox image needs a statically linked busybox (`ldd` fails on static binaries).
if ! have busybox || ldd "$(command -v busybox || echo /bin/busybox)" >/dev/null 2>&1; then
  packages+=(busybox-static)
fi
# The service dataplane's eBPF programs are compiled by clang against libbpf's headers.
have clang || packages+=(clang llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || packages+=(libbpf-dev)
have bpftool || packages+=(bpftool)
if [ "${FLOTILLA_WITH_ETCD_SERVER:-0}" = 1 ] && ! command -v etcd >/dev/null; then
  packages+=(etcd-server)
fi

if [ ${#packages[@]} -gt 0 ]; then
  echo "installing: ${packages[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing: cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

# The Python `kubernetes` client for the end-to-end client test.
command -v python3 >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null; }
if ! python3 -c 'import kubernetes' 2>/dev/null; then
  echo "installing: the Python kubernetes client" >&2
  python3 -m pip install --quiet 'kubernetes>=31' 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages 'kubernetes>=31'
fi

# The images every node imports at start (pause, busybox), built offline; rebuilt only when
# their sources changed.
"$(dirname "$0")/images/build.sh"

# kubectl: the end-to-end tests drive the real one (this machine kind ships a dispatcher that
# runs the kubectl matching the server's minor version).
if ! command -v kubectl >/dev/null; then
  echo "kubectl is missing: install kubectl 1.33 (https://kubernetes.io/docs/tasks/tools/) and rerun" >&2
  exit 1
fi
