#!/usr/bin/env python3
"""Plants one bug at a time in a scratch worktree, builds that raftq, runs a Jepsen test against it
and reports whether the checker meant to catch it did. The bugs live only in the scratch
worktree: nothing here changes the project's code.

usage: sudo python3 jepsen/planted/run.py [NAME ...]   (needs root, like every Jepsen run)
env:   PLANTED_DIR (scratch worktree, default /var/tmp/raftq-planted),
       PLANTED_TARGET (its cargo target dir, default /var/tmp/raftq-target-planted; a copy of
       a warm target dir saves the first build), PLANTED_ARGS (harness arguments instead of
       the plant's own, e.g. to run one plant under another mode), PLANTED_STORE (where the
       runs go, default store-planted)

The harness (raftq-jepsen) is built from the scratch worktree too, debug like `raftq`: a plant
in code both share (the token file's writer) is then in both, as it would be in a release.
"""
import json, os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name: (file, exact text, replacement, checker expected to fail or None for a control that
# must stay valid, harness arguments)
PLANTS = {
    "no-fsync": (
        "crates/raft-store/src/log_store.rs",
        "let r = db.flush_wal(true).map_err(rerr);",
        "let r: io::Result<()> = Ok(()); // PLANTED: the log append is never synced",
        "total-queue",
        "--nodes 3 --workload queue --nemesis power --time-limit 40 --seed 11",
    ),
    "wal-fsync-off": (
        "crates/raft-store/src/log_store.rs",
        "let r = db.flush_wal(true).map_err(rerr);",
        "let r = db.flush_wal(false).map_err(rerr); // PLANTED: handed to the OS, never fsynced",
        "total-queue",
        "--nodes 3 --workload queue --nemesis power --time-limit 40 --seed 11",
    ),
    "snapshot-no-fsync": (
        "crates/raft-store/src/state_machine.rs",
        "crate::durable::install_file(staged, &self.path())?;",
        "// PLANTED: the staged snapshot renamed into place with no fsync of the file or its\n"
        "        // directory\n"
        "        std::fs::rename(staged, self.path())?;",
        "crashes",
        "--nodes 3 --workload queue --nemesis power --time-limit 60 --seed 11 --snapshot-every 150",
    ),
    # A control, not a bug: the purge point and the deletion it records go to the same RocksDB
    # WAL in that order, so a cut loses both or neither (RocksDB syncs closed WALs before a
    # flush of another column family lands); the log comes back unpurged and whole. The run
    # must stay valid; crates/raft-store/tests/power_loss.rs checks the synced contract.
    "purge-no-sync": (
        "crates/raft-store/src/log_store.rs",
        "self.put_meta(KEY_PURGED, &log_id, true)?;",
        "self.put_meta(KEY_PURGED, &log_id, false)?; // PLANTED: the purge point is not synced",
        None,
        "--nodes 3 --workload queue --nemesis power --time-limit 60 --seed 11 --snapshot-every 150",
    ),
    "token-no-sync": (
        "crates/client/src/auth.rs",
        "raftq_durable::replace_file(path, text.as_bytes(), 0o600).map_err(write)",
        "{\n        // PLANTED: written in place, no fsync of the file or its directory\n"
        "        use std::os::unix::fs::PermissionsExt;\n"
        "        std::fs::write(path, text.as_bytes())\n"
        "            .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)))\n"
        "            .map_err(write)\n    }",
        "crashes",
        "--nodes 3 --workload queue --nemesis power --time-limit 40 --seed 11",
    ),
    "fence-ignored": (
        "crates/queue-fsm/src/ctx/reserve.rs",
        "Some(r) if r.fence == fence => Ok(job),",
        "Some(_) => Ok(job), // PLANTED: any fence is accepted",
        "fencing",
        "--nodes 3 --workload lease --nemesis none --time-limit 30 --seed 5",
    ),
    "lease-too-short": (
        "crates/queue-fsm/src/ctx/reserve.rs",
        "lease_until_ms: self.now().saturating_add(ttr_ms),",
        "lease_until_ms: self.now().saturating_add(ttr_ms / 10), // PLANTED: a tenth of the TTR",
        "fencing",
        "--nodes 3 --workload lease --nemesis none --time-limit 30 --seed 5",
    ),
    "archive-requeues": (
        "crates/queue-fsm/src/ctx/report.rs",
        "            job.state = JobState::Complete;\n",
        "            self.requeue(&mut job, 0)?; // PLANTED: archive puts the job back\n",
        "lifecycle",
        "--nodes 3 --workload queue --nemesis none --time-limit 20 --seed 5 --drain-timeout 20",
    ),
    "kick-noop": (
        "crates/queue-fsm/src/ctx/by_key.rs",
        "            job.until_buried = job.spec.retries.saturating_add(1);\n            ctx.requeue(job, 0)\n",
        "            let _ = (ctx, job); // PLANTED: kick does nothing\n            Ok(())\n",
        "completion",
        "--nodes 3 --workload queue --nemesis none --time-limit 20 --seed 5 --drain-timeout 20",
    ),
    "local-clock": (
        "crates/queue-fsm/src/ctx/mod.rs",
        "    pub(super) fn now(&self) -> u64 {\n        self.meta.clock_ms\n",
        "    pub(super) fn now(&self) -> u64 {\n        // PLANTED: each replica reads its own clock\n"
        "        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)\n",
        "convergence",
        "--nodes 3 --workload queue --nemesis none --time-limit 20 --seed 5",
    ),
    "writes-refused": (
        "crates/node/src/queue_service.rs",
        "    async fn write(&self, req: Request) -> Result<FsmResponse, Status> {\n",
        "    async fn write(&self, req: Request) -> Result<FsmResponse, Status> {\n"
        "        let _ = &req;\n        return Err(Status::unavailable(\"PLANTED: no write is accepted\"));\n",
        "availability",
        "--nodes 3 --workload queue --nemesis none --time-limit 15 --seed 5 --drain-timeout 10",
    ),
    "priority-ignored": (
        "crates/queue-fsm/src/keys.rs",
        "v.push(255 - priority);",
        "v.push(0 * priority); // PLANTED: priorities ignored",
        "ordering (soft)",
        "--nodes 3 --workload ordering --nemesis none --time-limit 30 --seed 5",
    ),
}


def sh(cmd, **kw):
    print("+", cmd if isinstance(cmd, str) else " ".join(cmd), flush=True)
    return subprocess.run(cmd, shell=isinstance(cmd, str), **kw)


def main():
    names = sys.argv[1:] or list(PLANTS)
    wt = os.environ.get("PLANTED_DIR", "/var/tmp/raftq-planted")
    target = os.environ.get("PLANTED_TARGET", "/var/tmp/raftq-target-planted")
    store = os.environ.get("PLANTED_STORE", os.path.join(ROOT, "store-planted"))
    if not os.path.exists(wt):
        sh(["git", "-C", ROOT, "worktree", "add", "--detach", wt, "HEAD"], check=True)
    jepsen = os.path.join(target, "debug", "raftq-jepsen")
    rows = []
    for name in names:
        path, old, new, checker, args = PLANTS[name]
        args = os.environ.get("PLANTED_ARGS", args)
        sh(["git", "-C", wt, "checkout", "--detach", "-f", subprocess.check_output(
            ["git", "-C", ROOT, "rev-parse", "HEAD"], text=True).strip()], check=True)
        f = os.path.join(wt, path)
        text = open(f).read()
        if text.count(old) != 1:
            sys.exit(f"{name}: the text to replace is not in {path} exactly once; update the plant")
        open(f, "w").write(text.replace(old, new))
        env = dict(os.environ, CARGO_TARGET_DIR=target)
        # --workspace: the same features as the project's own build (a warm copy is reused)
        sh(f"cd {wt} && cargo build -q --workspace --bins", env=env, check=True)
        r = sh(f"{jepsen} test {args} --store {store}/{name} --raftq-bin {target}/debug/raftq",
               capture_output=True, text=True)
        sys.stderr.write(r.stderr[-2000:])
        res = json.load(open(os.path.join(store, name, "latest", "results.json")))
        verdicts = {k: v["valid"] for k, v in res["checkers"].items()}
        caught = verdicts.get(checker) == "false" if checker else res.get("valid") == "true"
        rows.append((name, checker, r.returncode, caught, verdicts))
        sh(["git", "-C", wt, "checkout", "-f", "."], check=True)
    print("\nplant              checker          exit  caught  all verdicts")
    for name, checker, code, caught, verdicts in rows:
        bad = ",".join(k for k, v in verdicts.items() if v == "false") or "-"
        print(f"{name:<18} {checker or '(control)':<16} {code:<5} {'yes' if caught else 'NO':<7} "
              f"false: {bad}")
    sys.exit(0 if all(r[3] for r in rows) else 1)


if __name__ == "__main__":
    main()
