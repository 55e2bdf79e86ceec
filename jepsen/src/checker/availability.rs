//! availability: not a correctness checker but a summary of how the cluster served clients —
//! operations by outcome per operation name, latency (p50/p95/p99/max, ms) and throughput (per
//! second) of ok writes, the nemesis' fault windows and, for each, the time to recover (from the
//! heal until the first ok write invoked after it completes) and the longest stretch without any
//! ok write inside the window. It is valid unless no write succeeded at all. A reserve that
//! found no job is not a write here.

use super::ops::{client_ops, fault_windows, op_name, FaultWindow, PairedOp};
use super::{Validity, Verdict};
use crate::history::{Event, Kind, Op};
use serde_json::json;
use std::collections::BTreeMap;

/// The `q`-quantile (0..=1) of sorted values, nearest rank; 0 when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted.get(i).copied().unwrap_or(0.0)
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Operations by outcome, keyed `name.ok`, `name.fail`, `name.info`.
fn outcomes(ops: &[PairedOp<'_>]) -> BTreeMap<String, u64> {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for p in ops {
        let k = match p.kind {
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            Kind::Info | Kind::Invoke => "info",
        };
        *by_kind.entry(format!("{}.{k}", op_name(p.op))).or_default() += 1;
    }
    by_kind
}

/// (invoke, completion) of the ok writes, sorted by completion. A reserve that found no job
/// changed nothing (and its latency is mostly its long poll), so it is not one.
fn ok_writes(ops: &[PairedOp<'_>]) -> Vec<(u64, u64)> {
    let mut ok_writes: Vec<(u64, u64)> = ops
        .iter()
        .filter(|p| p.kind == Kind::Ok && p.op.is_write())
        .filter(|p| !matches!(p.op, Op::Reserve { job: None, .. }))
        .filter_map(|p| p.complete_ns.map(|c| (p.invoke_ns, c)))
        .collect();
    ok_writes.sort_by_key(|&(_, c)| c);
    ok_writes
}

/// Latency quantiles of the ok writes, ms.
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(ok_writes: &[(u64, u64)]) -> Latency {
        let mut lat: Vec<f64> = ok_writes.iter().map(|&(i, c)| ms(c - i.min(c))).collect();
        lat.sort_by(f64::total_cmp);
        Latency {
            p50: quantile(&lat, 0.5),
            p95: quantile(&lat, 0.95),
            p99: quantile(&lat, 0.99),
            max: lat.last().copied().unwrap_or(0.0),
        }
    }
}

/// Ok writes per second, from the first write invoked to the last ok write.
fn throughput(ops: &[PairedOp<'_>], ok_writes: &[(u64, u64)]) -> f64 {
    let first = ops
        .iter()
        .filter(|p| p.op.is_write())
        .map(|p| p.invoke_ns)
        .min();
    let last = ok_writes.last().map(|&(_, c)| c);
    let span_s = match (first, last) {
        (Some(f), Some(l)) => (ms(l.saturating_sub(f)) / 1000.0).max(0.001),
        _ => 0.0,
    };
    if span_s > 0.0 {
        ok_writes.len() as f64 / span_s
    } else {
        0.0
    }
}

/// How the cluster served writes in one fault window (a window never healed ends at
/// `end_ns`): a line for the examples and the JSON for the details.
fn fault_summary(
    w: &FaultWindow,
    ok_writes: &[(u64, u64)],
    end_ns: u64,
) -> (String, serde_json::Value) {
    let stop = w.stop_ns.unwrap_or(end_ns);
    // first ok write invoked after the heal: how long from the heal until it completed
    let recovery_ms = w.stop_ns.and_then(|heal| {
        ok_writes
            .iter()
            .filter(|&&(i, _)| i >= heal)
            .map(|&(_, c)| ms(c.saturating_sub(heal)))
            .min_by(f64::total_cmp)
    });
    // longest stretch inside the window with no ok write completing
    let mut prev = w.start_ns;
    let mut gap = 0u64;
    for &(_, c) in ok_writes
        .iter()
        .filter(|&&(_, c)| c >= w.start_ns && c <= stop)
    {
        gap = gap.max(c - prev);
        prev = c;
    }
    gap = gap.max(stop.saturating_sub(prev));
    let line = format!(
        "{} [{}] {:.1} s – {}: recovered in {}, longest gap without an ok write {:.0} ms",
        w.name,
        w.detail,
        ms(w.start_ns) / 1000.0,
        w.stop_ns
            .map(|s| format!("{:.1} s", ms(s) / 1000.0))
            .unwrap_or_else(|| "never healed".into()),
        recovery_ms
            .map(|r| format!("{r:.0} ms"))
            .unwrap_or_else(|| "- (no ok write after the heal)".into()),
        ms(gap),
    );
    let details = json!({
        "name": w.name,
        "detail": w.detail,
        "start_s": round3(ms(w.start_ns) / 1000.0),
        "stop_s": w.stop_ns.map(|s| round3(ms(s) / 1000.0)),
        "recovery_ms": recovery_ms.map(round3),
        "longest_gap_ms": round3(ms(gap)),
    });
    (line, details)
}

pub fn availability(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let ops = client_ops(history);
    let by_kind = outcomes(&ops);
    for (k, n) in &by_kind {
        v.count(k, *n);
    }
    let ok_writes = ok_writes(&ops);
    let lat = Latency::of(&ok_writes);
    v.count("ok_writes", ok_writes.len() as u64);
    v.count("latency_p50_ms", lat.p50.round() as u64);
    v.count("latency_p95_ms", lat.p95.round() as u64);
    v.count("latency_p99_ms", lat.p99.round() as u64);
    v.count("latency_max_ms", lat.max.round() as u64);
    let throughput = throughput(&ops, &ok_writes);
    v.count("throughput_per_s", throughput.round() as u64);

    let end_ns = history.iter().map(|e| e.time_ns).max().unwrap_or(0);
    let windows = fault_windows(history);
    v.count("faults", windows.len() as u64);
    let mut faults = Vec::new();
    for w in &windows {
        let (line, details) = fault_summary(w, &ok_writes, end_ns);
        v.examples.push(line);
        faults.push(details);
    }
    if ok_writes.is_empty() {
        v.valid = Validity::False;
        v.examples.insert(0, "no write succeeded at all".into());
    }
    v.details = Some(json!({
        "ops": by_kind,
        "ok_writes": ok_writes.len(),
        "latency_ms": {
            "p50": round3(lat.p50),
            "p95": round3(lat.p95),
            "p99": round3(lat.p99),
            "max": round3(lat.max),
        },
        "throughput_per_s": round3(throughput),
        "faults": faults,
    }));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{add_op, call_ms, event_ms, fault_op, reserve_invocation};
    use crate::history::NEMESIS;

    fn fault(action: &str) -> Op {
        fault_op("partition", action, "n1|n2,n3")
    }

    fn history() -> Vec<Event> {
        let mut h = Vec::new();
        // ok writes every 100 ms, 10 ms each, from 0 to 1 s; then a partition from 1 s to 2 s
        // during which only fails/infos happen; then writes again from 2.05 s
        for i in 0..10 {
            h.extend(call_ms(
                1,
                add_op(&format!("a{i}")),
                Kind::Ok,
                i * 100,
                i * 100 + 10,
            ));
        }
        let mut starting = fault("start");
        if let Op::Fault { detail, .. } = &mut starting {
            detail.clear();
        }
        h.push(event_ms(NEMESIS, Kind::Invoke, starting, 1000));
        h.push(event_ms(NEMESIS, Kind::Ok, fault("start"), 1001));
        h.extend(call_ms(1, add_op("f"), Kind::Fail, 1100, 1200));
        h.extend(call_ms(2, add_op("i"), Kind::Info, 1100, 1900));
        h.push(event_ms(NEMESIS, Kind::Invoke, fault("stop"), 1999));
        h.push(event_ms(NEMESIS, Kind::Ok, fault("stop"), 2000));
        h.extend(call_ms(1, add_op("b"), Kind::Ok, 2050, 2080));
        h
    }

    #[test]
    fn summarises_a_history_with_a_fault() {
        let v = availability(&history());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["add.ok"], 11);
        assert_eq!(v.counts["add.fail"], 1);
        assert_eq!(v.counts["add.info"], 1);
        assert_eq!(v.counts["ok_writes"], 11);
        assert_eq!(v.counts["latency_p50_ms"], 10);
        assert_eq!(v.counts["latency_max_ms"], 30);
        assert_eq!(v.counts["faults"], 1);
        let d = v.details.unwrap();
        let f = &d["faults"][0];
        assert_eq!(f["name"], "partition");
        assert_eq!(f["detail"], "n1|n2,n3");
        assert_eq!(f["start_s"], 1.0);
        assert_eq!(f["stop_s"], 2.0);
        assert_eq!(f["recovery_ms"], 80.0);
        // last ok write before the fault completed at 910 ms, but the window starts at 1 s
        assert_eq!(f["longest_gap_ms"], 1000.0);
        assert!(
            v.examples[0].contains("recovered in 80 ms"),
            "{:?}",
            v.examples
        );
    }

    #[test]
    fn planted_bugs_are_caught() {
        // no write succeeded at all: reported as false
        let h = vec![
            event_ms(1, Kind::Invoke, add_op("a"), 0),
            event_ms(1, Kind::Info, add_op("a"), 10),
            event_ms(2, Kind::Invoke, add_op("b"), 0),
        ];
        let v = availability(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["ok_writes"], 0);
        assert_eq!(v.counts["add.info"], 2);
        // reserves that found no job do not count as writes
        let mut h = vec![
            event_ms(1, Kind::Invoke, add_op("a"), 0),
            event_ms(1, Kind::Info, add_op("a"), 10),
        ];
        h.extend(call_ms(2, reserve_invocation(), Kind::Ok, 0, 300));
        let v = availability(&h);
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert_eq!(v.counts["reserve.ok"], 1);
    }

    #[test]
    fn unhealed_and_failed_faults() {
        let h = vec![
            event_ms(NEMESIS, Kind::Invoke, fault("start"), 0),
            event_ms(NEMESIS, Kind::Fail, fault("start"), 1),
            event_ms(NEMESIS, Kind::Invoke, fault("start"), 5),
            event_ms(1, Kind::Invoke, add_op("a"), 6),
            event_ms(1, Kind::Ok, add_op("a"), 7),
        ];
        let w = fault_windows(&h);
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].start_ns, w[0].stop_ns), (5_000_000, None));
        let v = availability(&h);
        assert!(v.examples[0].contains("never healed"), "{:?}", v.examples);
    }
}
