#!/usr/bin/env bash
# Installs what building, running and testing Flotilla needs on Debian, when it is missing.
# Safe to run again: it installs nothing that is already there.
set -euo pipefail

packages=()
command -v cc >/dev/null || packages+=(build-essential)
command -v protoc >/dev/null || packages+=(protobuf-compiler)
command -v etcdctl >/dev/null || packages+=(etcd-client)
command -v ip >/dev/null || packages+=(iproute2)
command -v cargo >/dev/null || packages+=(cargo rustc)
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

# kubectl: the end-to-end tests drive the real one (this machine kind ships a dispatcher that
# runs the kubectl matching the server's minor version).
if ! command -v kubectl >/dev/null; then
  echo "kubectl is missing: install kubectl 1.33 (https://kubernetes.io/docs/tasks/tools/) and rerun" >&2
  exit 1
fi
