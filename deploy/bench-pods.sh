#!/usr/bin/env bash
# Benchmarks pod startup on one real node (release builds): creates 30 pods at once on a
# 1-master, 1-agent local cluster and measures create → Ready, then the agent's memory.
# Usage: deploy/bench-pods.sh [--pods N] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release -p flotilla --bin flotilla -p flotilla-chaos-tests --bin pod-bench
FLOTILLA_BIN="$PWD/target/release/flotilla" exec ./target/release/pod-bench "$@"
