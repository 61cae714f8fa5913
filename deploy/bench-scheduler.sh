#!/usr/bin/env bash
# Benchmarks the scheduler end to end on a 3-master local cluster (release builds): registers
# 5,000 Nodes, creates 50,000 pods, measures until all are bound.
# Usage: deploy/bench-scheduler.sh [--nodes N] [--pods P] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release -p flotilla --bin flotilla -p flotilla-chaos-tests --bin sched-bench
FLOTILLA_BIN="$PWD/target/release/flotilla" exec ./target/release/sched-bench "$@"
