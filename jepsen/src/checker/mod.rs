//! Checkers: each reads the history and says whether it is valid, with counts and examples.
//! [`check_all`] runs them all and [`overall`] makes the run's verdict. The longer checkers
//! first gather what the history shows into a struct (`Seen`), then check it in named steps.
//!
//! - `total_queue`: every acknowledged add is in the final read, exactly once.
//! - `fencing`: fences increase, no success with a stale fence, no early lease takeover.
//! - `lifecycle`: each job's client-visible life is legal.
//! - `completion`: after the final phase every acknowledged job is complete.
//! - `convergence`: after the final phase every node's state digest is the same.
//! - `crashes`: no node exited by itself and every restart worked.
//! - `ordering`: priorities and delays (the ordering workload; soft by default).
//! - `availability`: a summary of how the cluster served clients (not a correctness check).
//! - `ops`: what the checkers and the report share: the history as operations (invocations
//!   paired with completions), the fault windows, times for examples.
//! - `testkit` (tests only): history-building helpers.

mod availability;
mod completion;
mod convergence;
mod crashes;
mod fencing;
mod lifecycle;
mod ops;
mod ordering;
#[cfg(test)]
pub(crate) mod testkit;
mod total_queue;

pub use availability::availability;
pub use completion::completion;
pub use convergence::convergence;
pub use crashes::crashes;
pub use fencing::fencing;
pub use lifecycle::lifecycle;
pub(crate) use ops::{client_ops, fault_events, fault_windows, secs, FaultWindow};
pub use ordering::ordering;
pub use total_queue::total_queue;

use crate::history::{Event, Op};

use serde::Serialize;
use std::collections::BTreeMap;

/// A checker's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    True,
    False,
    /// The history does not allow a verdict (e.g. no final read).
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub valid: Validity,
    pub counts: BTreeMap<String, u64>,
    /// A few offending cases, for the report.
    pub examples: Vec<String>,
    /// Structured extras (availability: latency, throughput, fault windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Examples kept per verdict.
pub const MAX_EXAMPLES: usize = 10;

impl Verdict {
    fn new() -> Verdict {
        Verdict {
            valid: Validity::True,
            counts: BTreeMap::new(),
            examples: Vec::new(),
            details: None,
        }
    }

    fn count(&mut self, what: &str, n: u64) {
        *self.counts.entry(what.to_string()).or_default() += n;
    }

    /// Records a violation: the verdict becomes false.
    fn violation(&mut self, what: &str, example: String) {
        self.count(what, 1);
        self.valid = Validity::False;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example);
        }
    }
}

/// Key of the availability summary in [`check_all`]'s map (not a correctness checker).
pub const AVAILABILITY: &str = "availability";
/// Key of the ordering checker in [`check_all`]'s map when it is soft.
pub const ORDERING_SOFT: &str = "ordering (soft)";
/// Key of the ordering checker in [`check_all`]'s map when it is not soft.
pub const ORDERING: &str = "ordering";

/// Runs every checker on the history: name → verdict. `ordering` runs only when some add
/// carries a priority (the ordering workload); with `ordering_soft` it is filed under
/// [`ORDERING_SOFT`] and [`overall`] ignores it, otherwise under [`ORDERING`] and it counts.
pub fn check_all(history: &[Event], ordering_soft: bool) -> BTreeMap<String, Verdict> {
    let mut out = BTreeMap::new();
    out.insert("total-queue".to_string(), total_queue(history));
    out.insert("fencing".to_string(), fencing(history));
    out.insert("lifecycle".to_string(), lifecycle(history));
    out.insert("completion".to_string(), completion(history));
    out.insert("convergence".to_string(), convergence(history));
    out.insert("crashes".to_string(), crashes(history));
    out.insert(AVAILABILITY.to_string(), availability(history));
    let prioritized = history.iter().any(|e| {
        matches!(
            &e.op,
            Op::Add {
                priority: Some(_),
                ..
            }
        )
    });
    if prioritized {
        let key = if ordering_soft {
            ORDERING_SOFT
        } else {
            ORDERING
        };
        out.insert(key.to_string(), ordering(history));
    }
    out
}

/// The verdict of a run: false if any checker says false, else unknown if any says unknown
/// or if no write succeeded at all ([`AVAILABILITY`] false: such a run proves nothing), else
/// true. [`ORDERING_SOFT`] is reported but never decides.
pub fn overall(results: &BTreeMap<String, Verdict>) -> Validity {
    let mut out = Validity::True;
    for (name, v) in results {
        if name == ORDERING_SOFT {
            continue;
        }
        if name == AVAILABILITY {
            // a run in which no write succeeded proves nothing either way
            if v.valid == Validity::False {
                out = Validity::Unknown;
            }
            continue;
        }
        match v.valid {
            Validity::False => return Validity::False,
            Validity::Unknown => out = Validity::Unknown,
            Validity::True => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{add, add_op_with, call};
    use crate::history::Kind;

    #[test]
    fn check_all_runs_every_checker_and_overall_decides() {
        let mut h = add("a", Kind::Ok, 0);
        let names = |m: &BTreeMap<String, Verdict>| m.keys().cloned().collect::<Vec<_>>();
        let r = check_all(&h, true);
        assert_eq!(
            names(&r),
            [
                "availability",
                "completion",
                "convergence",
                "crashes",
                "fencing",
                "lifecycle",
                "total-queue"
            ]
        );
        // no final read, no digests
        assert_eq!(overall(&r), Validity::Unknown);
        h.extend(call(1, add_op_with("b", Some(3), None), Kind::Ok, 0, 1));
        assert!(check_all(&h, true).contains_key(ORDERING_SOFT));
        assert!(check_all(&h, false).contains_key(ORDERING));

        let mut r = BTreeMap::new();
        let mut bad = Verdict::new();
        bad.violation("x", "x".into());
        r.insert("total-queue".to_string(), Verdict::new());
        // the soft ordering checker never decides; no write at all makes the run unknown
        r.insert(ORDERING_SOFT.to_string(), bad.clone());
        assert_eq!(overall(&r), Validity::True);
        r.insert(AVAILABILITY.to_string(), bad.clone());
        assert_eq!(overall(&r), Validity::Unknown);
        r.insert(AVAILABILITY.to_string(), Verdict::new());
        let mut unknown = Verdict::new();
        unknown.valid = Validity::Unknown;
        r.insert("convergence".to_string(), unknown);
        assert_eq!(overall(&r), Validity::Unknown);
        r.insert(ORDERING.to_string(), bad);
        assert_eq!(overall(&r), Validity::False);
        // details are left out of the JSON when absent
        let json = serde_json::to_string(&r["total-queue"]).unwrap_or_default();
        assert!(!json.contains("details"), "{json}");
    }
}
