#!/usr/bin/env bash
# Scale measurement (docs/benchmarks.md, "Scale"): a local 3-node cluster, JOBS JSON jobs in 50
# rep groups added with one `raftq add -f`, then `raftq cluster snapshot` on every node, then a
# fourth node added (catch-up by snapshot). Prints the add time, each node's peak RSS (VmHWM)
# after each phase, the catch-up time, the snapshot size and the disk use per node.
#
# usage: scripts/scale.sh RAFTQ_BINARY [JOBS] [BASE_PORT]
#   (a release build: cargo build --release -p raftq-node --bin raftq)
# The cluster's directory is a temp dir, removed at the end with the nodes stopped.
set -euo pipefail
BIN=$(readlink -f "${1:?usage: scripts/scale.sh RAFTQ_BINARY [JOBS] [BASE_PORT]}")
JOBS=${2:-1000000}
PORT=${3:-17701}
DIR=$(mktemp -d /var/tmp/raftq-scale.XXXXXX)
NEW_PORT=$((PORT + 3))
NEW_PID=

cleanup() {
    [ -n "$NEW_PID" ] && kill "$NEW_PID" 2>/dev/null || true
    "$BIN" down --dir "$DIR" >/dev/null 2>&1 || true
    [ -n "$NEW_PID" ] && wait "$NEW_PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

hwm() { # pid -> VmHWM in MB
    awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status"
}
report() { # phase
    local line="$1:"
    for id in 1 2 3; do
        line="$line node$id $(hwm "$(cat "$DIR/node-$id.pid")") MB"
    done
    [ -n "$NEW_PID" ] && line="$line node4 $(hwm "$NEW_PID") MB"
    echo "$line"
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$(now) - $1:.1f}')"; }

echo "binary: $BIN ($("$BIN" --version 2>/dev/null || echo unknown version))"
"$BIN" up --detach --dir "$DIR" --base-port "$PORT" >/dev/null
set -a
# shellcheck disable=SC1091
. "$DIR/raftq.env"
set +a

python3 - "$JOBS" >"$DIR/jobs.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
for i in range(n):
    print(json.dumps({"cmd": f"echo scale job {i}", "rep_grp": f"grp{i % 50}"}))
EOF
report "started"

t=$(now)
"$BIN" add -f "$DIR/jobs.json" >/dev/null
echo "add of $JOBS jobs: $(elapsed "$t") s"
report "after add"

mark=$(date +%s)
sleep 1 # the snapshot files' mtimes must be later than the mark
t=$(now)
"$BIN" cluster snapshot >/dev/null
for id in 1 2 3; do
    f="$DIR/node-$id/snapshots/current"
    until [ -f "$f" ] && [ "$(stat -c %Y "$f")" -gt "$mark" ]; do sleep 0.2; done
done
echo "snapshot on all three: $(elapsed "$t") s; sizes: $(du -b "$DIR"/node-[123]/snapshots/current | awk '{printf "%d MB ", $1 / 1e6}')"
report "after snapshot"

"$BIN" node --id 4 --listen "127.0.0.1:$NEW_PORT" --data-dir "$DIR/node-4" \
    --token-file "$DIR/token" >"$DIR/node-4.log" 2>&1 &
NEW_PID=$!
applied_of() { # node id -> its applied index, from cluster status (0 while unknown)
    "$BIN" cluster status --json 2>/dev/null | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    print(0); sys.exit()
print(next((n["applied_index"] for n in s["nodes"] if n["id"] == int(sys.argv[1])), 0) or 0)' "$1"
}
t=$(now)
"$BIN" cluster add-node --id 4 --addr "127.0.0.1:$NEW_PORT" >/dev/null 2>&1
echo "add-node returned after $(elapsed "$t") s"
# add-node returns once openraft counts the learner as close (replication_lag_threshold
# entries, and one entry holds up to 1,000 jobs): caught up is node 4 applying what the
# others had applied.
target=$(applied_of 1)
until [ "$(applied_of 4)" -ge "$target" ]; do sleep 0.2; done
echo "node 4 caught up (applied index $target): $(elapsed "$t") s"
report "after catch-up"
echo "disk per node: $(du -sm "$DIR"/node-[1234] | awk '{printf "%s MB ", $1}')"
