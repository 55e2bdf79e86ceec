#!/usr/bin/env bash
# Coverage-guided fuzzing of raftq's input paths with libFuzzer, on the stable toolchain
# (fuzz/Cargo.toml says why not cargo-fuzz's default mode). Targets:
#   fsm_apply     bytes -> protobuf -> conversion -> validation -> state machine apply, with
#                 check_invariants() after every command
#   job_line      `raftq add` lines, plain and wr's JSON
#   node_config   the node's TOML configuration and its validation
#   peer_message  what the Raft peer service decodes
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]   (default 60 s, every target)
# env:   FUZZ_TARGET_DIR (default /var/tmp/raftq-fuzz-target)
# A crash stops the run: its input is in fuzz/artifacts/TARGET/, replay it with
#   $FUZZ_TARGET_DIR/<host triple>/release/TARGET fuzz/artifacts/TARGET/crash-...
# The corpus each target grows is in fuzz/corpus/TARGET/ (not committed; seeds are rebuilt).
# Prints the executions of each target (libFuzzer's "#N" count) and their total.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fsm_apply job_line node_config peer_message)
bash scripts/setup-deps.sh
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/raftq-fuzz-target}"
# SanitizerCoverage for libFuzzer (what cargo-fuzz passes with --sanitizer none); `fuzzing`
# is the usual cfg for code that wants to know.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
# An explicit --target keeps these flags off build scripts and proc macros (cargo applies
# RUSTFLAGS to them too without one, and they cannot link libFuzzer's hooks).
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --manifest-path fuzz/Cargo.toml --bins --target "$triple"
bin="$CARGO_TARGET_DIR/$triple/release"
total=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  echo "fuzz: $t for ${secs} s"
  "$bin/$t" "fuzz/corpus/$t" \
    -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
    -max_len=65536 >"$log" 2>&1 || {
    echo "fuzz: $t FAILED (see $log):"
    tail -40 "$log"
    exit 1
  }
  n=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | awk '{s+=$2} END {print s+0}')
  echo "fuzz: $t ok, $n executions"
  total=$((total + n))
done
echo "fuzz: all ok, $total executions in all"
