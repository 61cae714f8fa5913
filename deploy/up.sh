#!/usr/bin/env bash
# Installs what is missing, builds flotilla, and starts a local 3-master cluster in the
# foreground (Ctrl-C stops it). Set FLOTILLA_DIR to choose where its files go.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/install.sh
cargo build --release --bin flotilla
dir="${FLOTILLA_DIR:-$PWD/.flotilla}"
rm -rf "$dir"
echo "starting a 3-master cluster in $dir" >&2
exec ./target/release/flotilla up --masters "${FLOTILLA_MASTERS:-3}" --dir "$dir"
