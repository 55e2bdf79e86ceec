#!/usr/bin/env bash
# The README's "start a cluster" command: installs what the build needs, builds raftq
# (release), and runs `raftq up` with any arguments given (default: a local 3-node cluster on
# 127.0.0.1:7701-7703, data in ./raftq-data, Ctrl-C stops it).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bash "$here/scripts/setup-deps.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/raftq-target}"
cargo build --release --manifest-path "$here/Cargo.toml" -p raftq-node --bin raftq
bin="$CARGO_TARGET_DIR/release/raftq"
echo "raftq binary: $bin (copy it onto your PATH, e.g. cp $bin /usr/local/bin/)"
exec "$bin" up "$@"
