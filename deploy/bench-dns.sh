#!/usr/bin/env bash
# Benchmarks the node-local cluster DNS against dnsmasq on this machine in one run (release
# build): queries/s, latency and server CPU of both under the same UDP load, then how fast
# zone updates become visible.
# Usage: deploy/bench-dns.sh [--services N] [--seconds S] [--clients C]
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
if ! command -v dnsmasq >/dev/null && [ ! -x /usr/sbin/dnsmasq ]; then
  echo "installing: dnsmasq-base" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null
fi
cargo build --release -p flotilla-chaos-tests --bin dns-bench
exec ./target/release/dns-bench "$@"
