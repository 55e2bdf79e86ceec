//! total-queue: every acknowledged add is in the final read, exactly once; nothing appears that
//! was never added; a job completed twice is a duplicate too. Adds with an unknown outcome may
//! or may not appear ("recovered" when they do).

use super::{Validity, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::{BTreeMap, BTreeSet};

/// What the history says about each job's adds and archives, and the final read.
#[derive(Default)]
struct Seen<'a> {
    attempted: BTreeSet<&'a str>,
    // adds invoked and adds refused, per job: a job all of whose adds were refused must not
    // be in the queue
    invokes: BTreeMap<&'a str, u64>,
    refusals: BTreeMap<&'a str, u64>,
    acked: BTreeSet<&'a str>,
    unknown: BTreeSet<&'a str>,
    archived: BTreeMap<&'a str, u64>,
    final_read: Option<&'a Vec<(String, String)>>,
}

impl<'a> Seen<'a> {
    fn collect(history: &'a [Event]) -> Seen<'a> {
        let mut s = Seen::default();
        for e in history {
            match (&e.op, e.kind) {
                (Op::Add { job, .. }, Kind::Invoke) => {
                    s.attempted.insert(job.as_str());
                    *s.invokes.entry(job.as_str()).or_default() += 1;
                }
                (Op::Add { job, .. }, Kind::Fail) => {
                    *s.refusals.entry(job.as_str()).or_default() += 1;
                }
                (Op::Add { job, .. }, Kind::Ok) => {
                    s.acked.insert(job.as_str());
                }
                (Op::Add { job, .. }, Kind::Info) => {
                    s.unknown.insert(job.as_str());
                }
                (Op::Archive { job, .. }, Kind::Ok) => {
                    *s.archived.entry(job.as_str()).or_default() += 1
                }
                (Op::FinalRead { jobs }, Kind::Ok) => s.final_read = Some(jobs),
                _ => {}
            }
        }
        s
    }

    /// Checks the final read (`jobs`) against the adds.
    fn check_final_read(&self, v: &mut Verdict, jobs: &[(String, String)]) {
        let mut present: BTreeMap<&str, u64> = BTreeMap::new();
        for (job, _) in jobs {
            *present.entry(job.as_str()).or_default() += 1;
        }
        for (job, n) in &present {
            if *n > 1 {
                v.violation("duplicates", format!("job {job} is in the queue {n} times"));
            }
            if !self.attempted.contains(job) {
                v.violation("unexpected", format!("job {job} was never added"));
            } else if self
                .refusals
                .get(job)
                .is_some_and(|r| Some(r) == self.invokes.get(job))
            {
                v.violation(
                    "unexpected",
                    format!("job {job} is in the queue although every add of it was refused"),
                );
            }
            if self.unknown.contains(job) && !self.acked.contains(job) {
                v.count("recovered", 1);
            }
        }
        for job in &self.acked {
            if !present.contains_key(job) {
                v.violation("lost", format!("acknowledged job {job} is missing"));
            }
        }
    }
}

pub fn total_queue(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let seen = Seen::collect(history);
    v.count("attempted", seen.attempted.len() as u64);
    v.count("acknowledged", seen.acked.len() as u64);
    v.count("unknown", seen.unknown.len() as u64);
    for (job, n) in &seen.archived {
        if *n > 1 {
            v.violation("duplicates", format!("job {job} completed {n} times"));
        }
    }
    let Some(jobs) = seen.final_read else {
        v.valid = Validity::Unknown;
        v.examples.push("no successful final read".into());
        return v;
    };
    seen.check_final_read(&mut v, jobs);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{self, add, archive_op, event};

    /// A final read ok in which every job is complete.
    fn final_read(jobs: &[&str]) -> Event {
        let jobs: Vec<(&str, &str)> = jobs.iter().map(|j| (*j, "complete")).collect();
        testkit::final_read(&jobs)
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = add("a", Kind::Ok, 0);
        h.extend(add("b", Kind::Info, 10));
        h.extend(add("c", Kind::Fail, 20));
        h.push(final_read(&["a", "b"]));
        let v = total_queue(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["recovered"], 1);
    }

    #[test]
    fn planted_bugs_are_caught() {
        // lost: acknowledged but missing
        let mut h = add("a", Kind::Ok, 0);
        h.push(final_read(&[]));
        let v = total_queue(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["lost"], 1);
        // duplicate in the final read
        let mut h = add("a", Kind::Ok, 0);
        h.push(final_read(&["a", "a"]));
        assert_eq!(total_queue(&h).counts["duplicates"], 1);
        // unexpected
        let mut h = add("a", Kind::Ok, 0);
        h.push(final_read(&["a", "z"]));
        assert_eq!(total_queue(&h).counts["unexpected"], 1);
        // an add that was refused took effect anyway
        let mut h = add("a", Kind::Ok, 0);
        h.extend(add("b", Kind::Fail, 10));
        h.push(final_read(&["a", "b"]));
        assert_eq!(total_queue(&h).counts["unexpected"], 1);
        // completed twice
        let mut h = add("a", Kind::Ok, 0);
        for f in [1, 2] {
            h.push(event(1, Kind::Ok, archive_op("a", f), 100 + f));
        }
        h.push(final_read(&["a"]));
        let v = total_queue(&h);
        assert_eq!((v.valid, v.counts["duplicates"]), (Validity::False, 1));
    }

    #[test]
    fn no_final_read_is_unknown() {
        let h = add("a", Kind::Ok, 0);
        assert_eq!(total_queue(&h).valid, Validity::Unknown);
    }
}
