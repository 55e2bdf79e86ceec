#!/usr/bin/env bash
# The test command of the README: installs what the build needs, then runs every test of the
# workspace. CARGO_TARGET_DIR defaults to a stable directory outside the clone so that
# repeated runs (and CI on the same machine) reuse the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/raftq-target}"
# The end-to-end tests (tests/) start real `raftq node` processes: build the binary first.
cargo build --workspace --bins
# --all-targets leaves out doc tests: run those first, then everything else.
cargo test --workspace --doc
cargo test --workspace --all-targets
# A short fuzzing run of every target (scripts/fuzz.sh; docs/fuzzing.md): 10 s each.
bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
# Two short Jepsen runs (docs/jepsen.md): 3 nodes in network namespaces, then heal, drain and
# check. Kill + partition for 60 s; then power cuts for 30 s, the nodes' data directories on
# lossyfs (FUSE), which drops every write and directory change not fsynced at each cut.
# Needs root; skipped with a message otherwise. The binaries built above are run directly:
# `cargo run -p raftq-jepsen` would build the crates again with that package's features.
if [ "$(id -u)" -eq 0 ]; then
  jepsen="$CARGO_TARGET_DIR/debug/raftq-jepsen"
  "$jepsen" test --nodes 3 --workload queue --nemesis kill,partition \
    --time-limit 60 --seed "${JEPSEN_SEED:-7}" --store "${JEPSEN_STORE:-store}"
  "$jepsen" test --nodes 3 --workload queue --nemesis power \
    --time-limit 30 --seed "${JEPSEN_SEED:-7}" --store "${JEPSEN_STORE:-store}"
else
  echo "test.sh: SKIPPED the Jepsen run: it needs root (network namespaces, iptables)"
fi
