#!/usr/bin/env bash
# Benchmarks the service proxy against kube-proxy's iptables mode (release builds): programs
# 10,000 Services × 10 endpoints, changes EndpointSlices one at a time, and measures the
# connect overhead of a Service address.
# Usage: deploy/bench-proxy.sh [--services N] [--endpoints N] [--changes N] [--connections N]
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release -p flotilla --bin flotilla -p flotilla-chaos-tests --bin proxy-bench
FLOTILLA_BIN="$PWD/target/release/flotilla" exec ./target/release/proxy-bench "$@"
