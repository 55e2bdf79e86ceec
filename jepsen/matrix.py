#!/usr/bin/env python3
"""Runs the Jepsen matrix of docs/jepsen.md (every nemesis, 3 and 5 nodes) one test after the
other and prints a Markdown table of the results.

usage: sudo python3 jepsen/matrix.py [--time-limit 120] [--store store] [--only N,N]
       python3 jepsen/matrix.py --table    (no runs: the table of the newest run of each test)
"""
import argparse, json, os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (nodes, workload, nemeses, seed)
MATRIX = [
    (3, "queue", "kill", 1),
    (3, "queue", "pause", 2),
    (3, "queue", "partition", 3),
    (3, "queue", "packet-loss", 4),
    (3, "lease", "clock", 5),
    (3, "queue", "power", 6),
    (5, "queue", "kill", 7),
    (5, "queue", "partition", 8),
    (5, "lease", "pause,partition", 9),
    (5, "queue", "power,packet-loss", 10),
    (5, "queue", "clock,membership", 11),
    (3, "ordering", "kill,partition", 12),
    (5, "lease", "all", 13),
    (3, "queue", "all", 14),
    (3, "queue", "membership", 15),
    (5, "lease", "membership,kill", 16),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=int, default=120)
    ap.add_argument("--store", default=os.path.join(ROOT, "store"))
    ap.add_argument("--only", default="")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    if a.table:
        rows = []
        for i, (n, w, nem, seed) in enumerate(MATRIX, 1):
            name = f"{w}-{'+'.join(sorted(set(expand(nem))))}-n{n}"
            base = os.path.join(a.store, name)
            runs = sorted(d for d in os.listdir(base)
                          if os.path.exists(os.path.join(base, d, "results.json"))) \
                if os.path.isdir(base) else []
            if not runs:
                continue
            d = os.path.join(a.store, name, runs[-1])
            res = json.load(open(os.path.join(d, "results.json")))
            test = json.load(open(os.path.join(d, "test.json")))
            rows.append((i, n, w, nem, seed, 0 if res["valid"] == "true" else 1, 0, res, test, d))
        table(rows)
        return
    tdir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(f"cd {ROOT} && cargo build --release -p raftq-jepsen -p raftq-node",
                   shell=True, check=True)
    jepsen = os.path.join(tdir, "release", "raftq-jepsen")
    only = {int(x) for x in a.only.split(",") if x}
    rows = []
    for i, (n, w, nem, seed) in enumerate(MATRIX, 1):
        if only and i not in only:
            continue
        cmd = [jepsen, "test", "--nodes", str(n), "--workload", w, "--nemesis", nem,
               "--time-limit", str(a.time_limit), "--seed", str(seed), "--store", a.store,
               "--raftq-bin", os.path.join(tdir, "release", "raftq")]
        print("+", " ".join(cmd), flush=True)
        t0 = time.time()
        r = subprocess.run(cmd)
        took = time.time() - t0
        latest = os.path.join(a.store, "latest")
        try:
            res = json.load(open(os.path.join(latest, "results.json")))
            test = json.load(open(os.path.join(latest, "test.json")))
        except OSError as e:
            rows.append((i, n, w, nem, seed, r.returncode, took, None, None, str(e)))
            continue
        rows.append((i, n, w, nem, seed, r.returncode, took, res, test,
                     os.path.realpath(latest)))
    table(rows)
    sys.exit(0 if all(r[5] == 0 for r in rows) else 1)


NEMESES = ["kill", "pause", "partition", "packet-loss", "clock", "power", "membership"]


def expand(nem):
    out = []
    for x in nem.split(","):
        out.extend(NEMESES if x == "all" else [x])
    return out


def table(rows):
    print("\n| # | nodes | workload | nemesis | seed | faults | exit | acked adds | lost | dup | "
          "unknown→recovered | stale-fence refusals | p99 latency (ms) | longest write gap (ms) "
          "| checkers false |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, n, w, nem, seed, code, took, res, test, where in rows:
        if res is None:
            print(f"| {i} | {n} | {w} | {nem} | {seed} | - | {code} | harness error: {where} |")
            continue
        c = res["checkers"]
        tq = c.get("total-queue", {}).get("counts", {})
        av = c.get("availability", {})
        counts = av.get("counts", {})
        faults = (av.get("details") or {}).get("faults", [])
        gaps = [f.get("longest_gap_ms") or 0 for f in faults if f.get("name") != "heal"]
        refusals = sum(v for k, v in counts.items()
                       if k.split(".")[0] in ("archive", "touch", "release", "bury")
                       and k.endswith(".fail"))
        false = [k for k, v in c.items() if v["valid"] == "false"] or ["-"]
        gap = f"{max(gaps):.0f}" if gaps else "-"
        print(f"| {i} | {n} | {w} | {nem} | {seed} | {len(test.get('schedule', []))} | {code} "
              f"| {tq.get('acknowledged', 0)} | {tq.get('lost', 0)} | {tq.get('duplicates', 0)} "
              f"| {tq.get('unknown', 0)}→{tq.get('recovered', 0)} | {refusals} "
              f"| {counts.get('latency_p99_ms', '-')} | {gap} | {', '.join(false)} |")


if __name__ == "__main__":
    main()
