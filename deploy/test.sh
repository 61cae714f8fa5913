#!/usr/bin/env bash
# Installs what is missing and runs every test: unit, conformance, end-to-end with the real
# etcdctl, and the bounded fault tests on real processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The end-to-end and fault tests run the flotilla binary itself.
cargo build --bin flotilla
cargo nextest run --workspace --no-fail-fast
