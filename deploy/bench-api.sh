#!/usr/bin/env bash
# Benchmarks Flotilla's Kubernetes API on a 3-master local cluster (release builds): ConfigMap
# create/get/list, updates at 1,000/s, watch latency to 100 watchers, LIST of 10,000 Pods.
# Usage: deploy/bench-api.sh [--seconds S] [--keep] [--phases create,get,list,update,watch,pods]
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release -p flotilla --bin flotilla -p flotilla-chaos-tests --bin api-bench
FLOTILLA_BIN="$PWD/target/release/flotilla" exec ./target/release/api-bench "$@"
