//! completion (eventual completion): after the final phase (faults healed, buried jobs kicked,
//! the queue drained by the workers) every job whose add was acknowledged, and every other job
//! of the test that is present in the final read (an add with an unknown outcome that took
//! effect), is `complete`. Anything else — any other state, or missing — is `not_complete`.
//! Without a successful final read the verdict is unknown.

use super::{Validity, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::{BTreeMap, BTreeSet};

pub fn completion(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let mut attempted = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut final_read: Option<&Vec<(String, String)>> = None;
    for e in history {
        match (&e.op, e.kind) {
            (Op::Add { job, .. }, Kind::Invoke) => {
                attempted.insert(job.as_str());
            }
            (Op::Add { job, .. }, Kind::Ok) => {
                attempted.insert(job.as_str());
                acked.insert(job.as_str());
            }
            (Op::FinalRead { jobs }, Kind::Ok) => final_read = Some(jobs),
            _ => {}
        }
    }
    let Some(jobs) = final_read else {
        v.valid = Validity::Unknown;
        v.examples.push("no successful final read".into());
        return v;
    };
    // job → its state; a job listed twice counts as complete only if every entry is
    let mut states: BTreeMap<&str, &str> = BTreeMap::new();
    for (job, state) in jobs {
        let s = states.entry(job.as_str()).or_insert(state.as_str());
        if *s == "complete" {
            *s = state.as_str();
        }
    }
    let present = states.keys().filter(|j| attempted.contains(*j)).copied();
    let required: BTreeSet<&str> = acked.iter().copied().chain(present).collect();
    for job in required {
        v.count("checked", 1);
        let state = states.get(job).copied().unwrap_or("missing");
        if state == "complete" {
            v.count("complete", 1);
        } else {
            let how = if acked.contains(job) {
                "acknowledged"
            } else {
                "unknown"
            };
            v.violation(
                "not_complete",
                format!("job {job} (add {how}) is {state} after the final phase"),
            );
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{add, final_read};

    fn history() -> Vec<Event> {
        let mut h = add("a", Kind::Ok, 0);
        h.extend(add("b", Kind::Info, 10));
        h.extend(add("c", Kind::Info, 20));
        h.extend(add("d", Kind::Fail, 30));
        h
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = history();
        // c's add did not take effect: fine
        h.push(final_read(&[("a", "complete"), ("b", "complete")]));
        let v = completion(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!((v.counts["checked"], v.counts["complete"]), (2, 2));
    }

    #[test]
    fn planted_bugs_are_caught() {
        for (jobs, bad) in [
            (
                vec![("a", "buried"), ("b", "complete")],
                "job a (add acknowledged) is buried",
            ),
            (
                vec![("a", "complete"), ("b", "ready")],
                "job b (add unknown) is ready",
            ),
            (
                vec![("b", "complete")],
                "job a (add acknowledged) is missing",
            ),
            (
                vec![("a", "complete"), ("a", "reserved")],
                "job a (add acknowledged) is reserved",
            ),
            (
                vec![("a", "complete"), ("c", "weird")],
                "job c (add unknown) is weird",
            ),
        ] {
            let mut h = history();
            h.push(final_read(&jobs));
            let v = completion(&h);
            assert_eq!(v.valid, Validity::False, "{jobs:?}");
            assert_eq!(v.counts["not_complete"], 1, "{jobs:?}");
            assert!(v.examples[0].starts_with(bad), "{:?}", v.examples);
        }
    }

    #[test]
    fn no_final_read_is_unknown() {
        assert_eq!(completion(&history()).valid, Validity::Unknown);
    }
}
