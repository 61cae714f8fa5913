#!/usr/bin/env bash
# Benchmarks Flotilla's store against etcd 3.4 on this machine in one run (release builds).
# Usage: deploy/bench-store.sh [--seconds S] [--nodes 3|1]
set -euo pipefail
cd "$(dirname "$0")/.."
FLOTILLA_WITH_ETCD_SERVER=1 ./deploy/install.sh
cargo build --release -p flotilla --bin flotilla -p flotilla-chaos-tests --bin store-bench
FLOTILLA_BIN="$PWD/target/release/flotilla" exec ./target/release/store-bench "$@"
