#!/usr/bin/env bash
# Installs what is missing, builds flotilla, and starts a local cluster of 3 masters and 2 node
# agents (each with its own containerd) in the foreground; Ctrl-C stops it and removes the
# agents' pods. FLOTILLA_DIR chooses where its files go, FLOTILLA_MASTERS and FLOTILLA_AGENTS
# how many of each.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release --bin flotilla
dir="${FLOTILLA_DIR:-$PWD/.flotilla}"
rm -rf "$dir"
masters="${FLOTILLA_MASTERS:-3}"
agents="${FLOTILLA_AGENTS:-2}"
echo "starting $masters masters and $agents agents in $dir" >&2
exec ./target/release/flotilla up --masters "$masters" --agents "$agents" --dir "$dir"
