use super::*;
use crate::history;
use std::time::Instant;

/// Events of the workload phase in tests (about 15 s of virtual time).
const TEST_STEPS: u64 = 8_000;

fn sim(seed: u64, nodes: usize, bugs: SimBugs) -> SimOutcome {
    // five nodes make about twice the events per virtual second
    let steps = TEST_STEPS * nodes as u64 / 3;
    let opts = SimOptions {
        bugs,
        ..SimOptions::new(seed, nodes, steps)
    };
    run(&opts).unwrap()
}

fn jsonl(events: &[Event]) -> Vec<u8> {
    let mut buf = Vec::new();
    history::write_jsonl(events, &mut buf).unwrap();
    buf
}

/// Checkers that are not true, with their examples.
fn failures(out: &SimOutcome) -> Vec<String> {
    out.results
        .iter()
        .filter(|(_, v)| v.valid != Validity::True)
        .map(|(k, v)| format!("{k}: {:?} {:?}", v.valid, v.examples))
        .collect()
}

fn count(out: &SimOutcome, checker: &str, what: &str) -> u64 {
    out.results
        .get(checker)
        .and_then(|v| v.counts.get(what))
        .copied()
        .unwrap_or(0)
}

#[test]
fn seeds_1_to_30_are_valid_and_not_trivial() {
    let started = Instant::now();
    let mut totals = SimStats {
        drained: true,
        ..SimStats::default()
    };
    // operations with an unknown outcome, and refusals of a stale fence (a lease expired)
    let (mut unknown, mut stale) = (0, 0);
    for seed in 1..=30 {
        // every third seed on 5 nodes
        let nodes = if seed % 3 == 0 { 5 } else { 3 };
        let out = sim(seed, nodes, SimBugs::default());
        let st = &out.stats;
        assert_eq!(
            out.valid,
            Validity::True,
            "seed {seed}: {:?}\n{}",
            failures(&out),
            stats_line(st)
        );
        assert!(st.drained, "seed {seed}: {}", stats_line(st));
        assert!(
            count(&out, "total-queue", "acknowledged") >= 50,
            "seed {seed}: {:?}",
            out.results["total-queue"].counts
        );
        assert!(count(&out, "fencing", "reservations") >= 50, "seed {seed}");
        assert_eq!(count(&out, "convergence", "answered"), nodes as u64);
        assert!(
            st.faults >= 3 && st.elections >= 1,
            "seed {seed}: {}",
            stats_line(st)
        );
        for e in &out.history {
            match (e.kind, e.error.as_deref()) {
                (Kind::Info, _) => unknown += 1,
                (Kind::Fail, Some(err)) if err.starts_with("stale fence") => stale += 1,
                _ => {}
            }
        }
        totals.events += st.events;
        totals.virtual_ms += st.virtual_ms;
        totals.workload_ms += st.workload_ms;
        totals.log_entries += st.log_entries;
        totals.faults += st.faults;
        totals.crashes += st.crashes;
        totals.partitions += st.partitions;
        totals.clock_jumps += st.clock_jumps;
        totals.elections += st.elections;
        totals.snapshots_installed += st.snapshots_installed;
        totals.restarts_replayed += st.restarts_replayed;
        totals.truncated_entries += st.truncated_entries;
        totals.lost_replies += st.lost_replies;
        totals.client_retries += st.client_retries;
    }
    // over the seeds, every kind of fault and recovery happened
    for (what, n) in [
        ("crashes", totals.crashes),
        ("partitions", totals.partitions),
        ("clock jumps", totals.clock_jumps),
        ("snapshots installed", totals.snapshots_installed),
        ("restarts replayed", totals.restarts_replayed),
        ("entries cut", totals.truncated_entries),
        ("replies lost", totals.lost_replies),
        ("unknown outcomes", unknown),
        ("stale fences refused", stale),
    ] {
        assert!(n >= 5, "{what}: {n}");
    }
    eprintln!(
        "30 seeds in {:.1} s: {}; {unknown} unknown outcomes, {stale} stale fences refused",
        started.elapsed().as_secs_f64(),
        stats_line(&totals)
    );
}

#[test]
fn the_same_seed_gives_the_same_history() {
    let a = sim(7, 3, SimBugs::default());
    let b = sim(7, 3, SimBugs::default());
    assert_eq!(jsonl(&a.history), jsonl(&b.history));
    assert_eq!(a.stats, b.stats);
    let c = sim(8, 3, SimBugs::default());
    assert_ne!(jsonl(&a.history), jsonl(&c.history));
    let d = sim(7, 5, SimBugs::default());
    assert_ne!(jsonl(&a.history), jsonl(&d.history));
}

/// The first seed of 1..=8 whose verdict is false under `bugs`, with the false checkers.
fn caught(bugs: SimBugs) -> Option<(u64, Vec<String>)> {
    (1..=8).find_map(|seed| {
        let out = sim(seed, 3, bugs);
        let bad: Vec<String> = out
            .results
            .iter()
            .filter(|(_, v)| v.valid == Validity::False)
            .map(|(k, _)| k.clone())
            .collect();
        (out.valid == Validity::False).then_some((seed, bad))
    })
}

#[test]
fn planted_bugs_are_caught() {
    // (bug, a checker that catches it)
    let cases = [
        (
            SimBugs {
                skip_entry_after_snapshot: true,
                ..SimBugs::default()
            },
            "convergence",
        ),
        (
            SimBugs {
                elect_without_committed_log: true,
                ..SimBugs::default()
            },
            "total-queue",
        ),
        (
            SimBugs {
                fresh_request_id_on_retry: true,
                ..SimBugs::default()
            },
            "lifecycle",
        ),
    ];
    for (bugs, checker) in cases {
        let Some((seed, bad)) = caught(bugs) else {
            panic!("{bugs:?} was not caught in seeds 1 to 8");
        };
        eprintln!("{bugs:?}: seed {seed}: false: {bad:?}");
        assert!(
            bad.iter().any(|b| b == checker),
            "{bugs:?}: seed {seed}: {bad:?}"
        );
    }
}

#[test]
fn reapplying_an_entry_is_harmless() {
    let bugs = SimBugs {
        reapply_entry: true,
        ..SimBugs::default()
    };
    for seed in 1..=3 {
        let out = sim(seed, 3, bugs);
        assert_eq!(
            out.valid,
            Validity::True,
            "seed {seed}: {:?}",
            failures(&out)
        );
    }
}
