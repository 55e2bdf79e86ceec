//! The history as operations: each invocation paired with its completion ([`pair_ops`],
//! [`client_ops`]), the nemesis' fault windows ([`fault_windows`]) and times for examples
//! ([`secs`]). The checkers and the report share them.

use crate::history::{Event, Kind, Op, NEMESIS};
use std::collections::{BTreeMap, VecDeque};

/// The name of an operation as it appears in the history's `f` field.
pub(crate) fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Add { .. } => "add",
        Op::Reserve { .. } => "reserve",
        Op::Touch { .. } => "touch",
        Op::Archive { .. } => "archive",
        Op::Release { .. } => "release",
        Op::Bury { .. } => "bury",
        Op::Kick { .. } => "kick",
        Op::FinalRead { .. } => "final_read",
        Op::Digests { .. } => "digests",
        Op::Fault { .. } => "fault",
    }
}

/// One operation: its invocation paired with its completion.
#[derive(Clone, Debug)]
pub(crate) struct PairedOp<'a> {
    pub process: u64,
    /// The completion's op when there is one (a reserve's job and fence are only known there),
    /// else the invocation's.
    pub op: &'a Op,
    /// The outcome; [`Kind::Info`] when the history ends before the completion.
    pub kind: Kind,
    pub invoke_ns: u64,
    /// None: never completed.
    pub complete_ns: Option<u64>,
}

impl PairedOp<'_> {
    /// The latest moment the operation may have taken effect: its completion, or forever when
    /// the outcome is unknown.
    pub fn effect_end_ns(&self) -> u64 {
        match (self.kind, self.complete_ns) {
            (Kind::Ok | Kind::Fail, Some(t)) => t,
            _ => u64::MAX,
        }
    }

    pub fn latency_ns(&self) -> Option<u64> {
        self.complete_ns.map(|c| c.saturating_sub(self.invoke_ns))
    }
}

/// Pairs every invocation with the next completion of the same process (preferring one of the
/// same operation name), in the order of the invocations. A completion without an invocation
/// counts as invoked when it completed; an invocation never completed has outcome `Info`.
pub(crate) fn pair_ops(history: &[Event]) -> Vec<PairedOp<'_>> {
    let mut out: Vec<PairedOp<'_>> = Vec::new();
    // process → indexes into `out` of invocations still open
    let mut open: BTreeMap<u64, VecDeque<usize>> = BTreeMap::new();
    for e in history {
        if e.kind == Kind::Invoke {
            open.entry(e.process).or_default().push_back(out.len());
            out.push(PairedOp {
                process: e.process,
                op: &e.op,
                kind: Kind::Info,
                invoke_ns: e.time_ns,
                complete_ns: None,
            });
            continue;
        }
        let q = open.entry(e.process).or_default();
        let name = op_name(&e.op);
        let pos = q
            .iter()
            .position(|&i| out.get(i).is_some_and(|p| op_name(p.op) == name))
            .or(if q.is_empty() { None } else { Some(0) });
        match pos.and_then(|p| q.remove(p)) {
            Some(i) => {
                if let Some(p) = out.get_mut(i) {
                    p.op = &e.op;
                    p.kind = e.kind;
                    p.complete_ns = Some(e.time_ns);
                }
            }
            None => out.push(PairedOp {
                process: e.process,
                op: &e.op,
                kind: e.kind,
                invoke_ns: e.time_ns,
                complete_ns: Some(e.time_ns),
            }),
        }
    }
    out
}

/// The clients' operations: [`pair_ops`] without the nemesis'.
pub(crate) fn client_ops(history: &[Event]) -> Vec<PairedOp<'_>> {
    pair_ops(history)
        .into_iter()
        .filter(|p| p.process != NEMESIS)
        .collect()
}

/// A time of the history (ns) in seconds, for examples.
pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// A fault of the nemesis from its start until its heal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultWindow {
    pub name: String,
    pub detail: String,
    /// When the nemesis began applying it.
    pub start_ns: u64,
    /// When the heal was in force; None: never healed in the history.
    pub stop_ns: Option<u64>,
}

/// The nemesis' fault events: (event, fault name, action, detail).
pub(crate) fn fault_events(history: &[Event]) -> impl Iterator<Item = (&Event, &str, &str, &str)> {
    history.iter().filter_map(|e| match &e.op {
        Op::Fault {
            name,
            action,
            detail,
        } if e.process == NEMESIS => Some((e, name.as_str(), action.as_str(), detail.as_str())),
        _ => None,
    })
}

/// The fault windows, from the nemesis' `Fault` events: a start (invoke, or ok without an
/// invoke) opens a window of that name (its detail: the start ok's, else the invoke's), a
/// failed start drops it, and a stop (ok or info) closes the oldest open window of that name;
/// other actions are ignored. Sorted by start.
pub(crate) fn fault_windows(history: &[Event]) -> Vec<FaultWindow> {
    struct Open {
        w: FaultWindow,
        start_done: bool,
    }
    let mut open: BTreeMap<&str, VecDeque<Open>> = BTreeMap::new();
    let mut out = Vec::new();
    for (e, name, action, detail) in fault_events(history) {
        let q = open.entry(name).or_default();
        match (action, e.kind) {
            ("start", Kind::Invoke) => q.push_back(Open {
                w: FaultWindow {
                    name: name.to_string(),
                    detail: detail.to_string(),
                    start_ns: e.time_ns,
                    stop_ns: None,
                },
                start_done: false,
            }),
            ("start", Kind::Fail) => {
                if let Some(i) = q.iter().rposition(|o| !o.start_done) {
                    q.remove(i);
                }
            }
            ("start", _) => match q.iter_mut().rev().find(|o| !o.start_done) {
                Some(o) => {
                    o.start_done = true;
                    // what the fault hit is known once it is in force
                    if !detail.is_empty() {
                        o.w.detail = detail.to_string();
                    }
                }
                None => q.push_back(Open {
                    w: FaultWindow {
                        name: name.to_string(),
                        detail: detail.to_string(),
                        start_ns: e.time_ns,
                        stop_ns: None,
                    },
                    start_done: true,
                }),
            },
            ("stop", Kind::Ok | Kind::Info) => {
                if let Some(mut o) = q.pop_front() {
                    o.w.stop_ns = Some(e.time_ns.max(o.w.start_ns));
                    out.push(o.w);
                }
            }
            _ => {}
        }
    }
    out.extend(open.into_values().flatten().map(|o| o.w));
    out.sort_by_key(|w| w.start_ns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{add_op, event_ms};

    #[test]
    fn pairs_by_process_and_name() {
        let h = vec![
            event_ms(1, Kind::Invoke, add_op("a"), 0),
            event_ms(2, Kind::Invoke, add_op("b"), 1),
            event_ms(2, Kind::Ok, add_op("b"), 2),
            event_ms(3, Kind::Ok, add_op("c"), 3),
        ];
        let p = pair_ops(&h);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].kind, p[0].complete_ns), (Kind::Info, None));
        assert_eq!(p[1].latency_ns(), Some(1_000_000));
        assert_eq!(p[2].invoke_ns, 3_000_000);
        assert_eq!(p[0].effect_end_ns(), u64::MAX);
        assert_eq!(p[1].effect_end_ns(), 2_000_000);
    }
}
