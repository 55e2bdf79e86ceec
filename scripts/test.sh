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
