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
