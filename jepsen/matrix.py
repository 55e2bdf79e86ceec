#!/usr/bin/env python3
"""Runs the Jepsen matrix of docs/jepsen.md (every nemesis, 3 and 5 nodes) one test after the
other and prints a Markdown table of the results.

usage: sudo python3 jepsen/matrix.py [--set faults|power] [--time-limit 120] [--store store]
                                    [--only N,N] [--bin-dir DIR]
       python3 jepsen/matrix.py [--set ...] --table   (no runs: the newest run of each test)

--set faults (the default) is the matrix of every nemesis; --set power the power-loss matrix of
issue 14: lossyfs power cuts mixed with kill, partition and membership, 3 and 5 nodes, queue and
lease workloads. --bin-dir runs the raftq and raftq-jepsen found there instead of building the
release ones (copy them out of the target dir first if you keep building while it runs).
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

# (nodes, workload, nemeses, seed, extra harness arguments): every power cut on lossyfs
POWER_MATRIX = [
    (3, "queue", "power", 31, ""),
    (3, "queue", "power,kill", 32, ""),
    (3, "queue", "power,partition", 33, ""),
    (3, "queue", "power,membership", 34, ""),
    (3, "lease", "power", 35, ""),
    (3, "lease", "power,kill", 36, ""),
    (3, "lease", "power,partition", 37, ""),
    (3, "lease", "power,membership", 38, ""),
    (5, "queue", "power", 39, ""),
    (5, "queue", "power,kill", 40, ""),
    (5, "queue", "power,partition", 41, ""),
    (5, "queue", "power,membership", 42, ""),
    (5, "lease", "power", 43, ""),
    (5, "lease", "power,kill", 44, ""),
    (5, "lease", "power,partition", 45, ""),
    (5, "lease", "power,membership", 46, ""),
    (3, "queue", "power,kill,partition,membership", 47, "--power-tear"),
    (5, "queue", "power,kill,partition,membership", 48, "--power-tear"),
    (3, "lease", "power,kill,partition", 49, "--power-tear"),
    (5, "lease", "power,kill,membership", 50, "--power-tear"),
    (3, "ordering", "power,kill", 51, ""),
    (3, "queue", "power,kill", 52, "--power-mode wal"),
]


def matrix(which):
    if which == "power":
        return POWER_MATRIX
    return [(n, w, nem, seed, "") for n, w, nem, seed in MATRIX]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=int, default=120)
    ap.add_argument("--store", default=os.path.join(ROOT, "store"))
    ap.add_argument("--only", default="")
    ap.add_argument("--set", choices=["faults", "power"], default="faults")
    ap.add_argument("--bin-dir", default="")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args()
    runs_of = matrix(a.set)
    if a.table:
        rows = []
        for i, (n, w, nem, seed, extra) in enumerate(runs_of, 1):
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
            rows.append((i, n, w, nem + (" " + extra if extra else ""), seed,
                         0 if res["valid"] == "true" else 1, 0, res, test, d))
        table(rows, a.set)
        return
    bins = a.bin_dir
    if not bins:
        tdir = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        subprocess.run(f"cd {ROOT} && cargo build --release -p raftq-jepsen -p raftq-node",
                       shell=True, check=True)
        bins = os.path.join(tdir, "release")
    jepsen = os.path.join(bins, "raftq-jepsen")
    only = {int(x) for x in a.only.split(",") if x}
    rows = []
    for i, (n, w, nem, seed, extra) in enumerate(runs_of, 1):
        if only and i not in only:
            continue
        cmd = [jepsen, "test", "--nodes", str(n), "--workload", w, "--nemesis", nem,
               "--time-limit", str(a.time_limit), "--seed", str(seed), "--store", a.store,
               "--raftq-bin", os.path.join(bins, "raftq")] + extra.split()
        nem = nem + (" " + extra if extra else "")
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
    table(rows, a.set)
    sys.exit(0 if all(r[5] == 0 for r in rows) else 1)


NEMESES = ["kill", "pause", "partition", "packet-loss", "clock", "power", "membership"]


def expand(nem):
    out = []
    for x in nem.split(","):
        out.extend(NEMESES if x == "all" else [x])
    return out


def cuts(where, nodes):
    """The power cuts of a run, from its history: (cuts, cuts of every node, (min, max) MB of
    un-synced writes lost per node and cut, writes torn)."""
    n = every = torn = 0
    lost = []
    try:
        lines = open(os.path.join(where, "history.jsonl")).readlines()
    except OSError:
        return None
    for line in lines:
        if '"power"' not in line:
            continue
        ev = json.loads(line)
        if (ev.get("f"), ev.get("name"), ev.get("action"), ev.get("kind")) != \
                ("fault", "power", "start", "ok"):
            continue
        n += 1
        detail = ev.get("detail", "")
        per_node = detail.split("; lost ", 1)[1].split("; ") if "; lost " in detail else []
        # "power cut n1,n2,n3; lost ..." on lossyfs, "killed n1,n2,n3 (un-synced WAL lost)"
        hit = detail.split(";")[0].split(" (")[0].split(" ")[-1]
        every += len(hit.split(",")) == nodes
        for part in per_node:
            fields = dict(kv.split("=", 1) for kv in part.split() if "=" in kv)
            lost.append(int(fields.get("bytes", "0")) / 1e6)
            torn += int(fields.get("torn", "0"))
    return n, every, (min(lost), max(lost)) if lost else None, torn


def table(rows, which="faults"):
    power = which == "power"
    print("\n| # | nodes | workload | nemesis | seed | faults | exit | acked adds | lost | dup | "
          "unknown→recovered | stale-fence refusals | p99 latency (ms) | longest write gap (ms) "
          + ("| power cuts (of all) | MB lost per node and cut | torn " if power else "")
          + "| checkers false |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
          + ("---|---|---|" if power else ""))
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
        extra = ""
        if power:
            c = cuts(where, n)
            if c is None:
                extra = "| - | - | - "
            else:
                mb = f"{c[2][0]:.2f}–{c[2][1]:.2f}" if c[2] else "-"
                extra = f"| {c[0]} ({c[1]}) | {mb} | {c[3]} "
        print(f"| {i} | {n} | {w} | {nem} | {seed} | {len(test.get('schedule', []))} | {code} "
              f"| {tq.get('acknowledged', 0)} | {tq.get('lost', 0)} | {tq.get('duplicates', 0)} "
              f"| {tq.get('unknown', 0)}→{tq.get('recovered', 0)} | {refusals} "
              f"| {counts.get('latency_p99_ms', '-')} | {gap} {extra}| {', '.join(false)} |")


if __name__ == "__main__":
    main()
