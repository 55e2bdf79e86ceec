//! ordering (soft: reported, but by default it does not decide a run): the ordering workload's
//! adds carry a priority and a delay, and the queue should hand out ready jobs highest priority
//! first and no job before its delay has passed.
//! - `early`: a reserve ok returned a job before the add was invoked plus the delay (completion
//!   of the reserve < add invoke + delay_ms);
//! - `priority_inversion`: a reserve invoked at t returned a job of priority p while a job K of
//!   a higher priority was certainly ready: its add was ok, its delay had passed by
//!   t − [`SLACK_MS`], and no reserve ok of K was invoked before this reserve completed. Reserves
//!   with an unknown outcome may each have taken one such job, so it is flagged only when there
//!   are more candidates than such reserves.
//!
//! - `early_after_release`: a reserve ok of a job, invoked after a release of it completed,
//!   that completed before the release was invoked plus the queue's smallest release delay
//!   ([`crate::db::RELEASE_DELAY_MS`]): a released job must wait that long.
//!
//! Only adds with a priority are considered (other workloads leave it out); with none the
//! verdict is valid with nothing checked.

use super::ops::PairedOp;
use super::{client_ops, secs, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::{BTreeMap, BTreeSet};

/// Slack for the queue's timer: a delayed job becomes ready at the next tick.
pub const SLACK_MS: u64 = 100;

struct Job {
    priority: u32,
    delay_ns: u64,
    first_invoke: u64,
    first_ok: Option<u64>,
}

/// What the history shows of the prioritized jobs, the reserves and the releases.
#[derive(Default)]
struct Seen<'a> {
    jobs: BTreeMap<&'a str, Job>,
    /// (job, invoke, completion) of reserves ok that returned a job
    reserves: Vec<(&'a str, u64, u64)>,
    unknown_reserves: Vec<u64>,
    /// job → (invoke, completion) of releases ok
    releases: BTreeMap<&'a str, Vec<(u64, u64)>>,
}

impl<'a> Seen<'a> {
    fn collect(ops: &[PairedOp<'a>]) -> Seen<'a> {
        let mut s = Seen::default();
        for p in ops {
            if let (Op::Release { job, .. }, Kind::Ok) = (p.op, p.kind) {
                s.releases
                    .entry(job)
                    .or_default()
                    .push((p.invoke_ns, p.complete_ns.unwrap_or(p.invoke_ns)));
            }
            match (p.op, p.kind) {
                (
                    Op::Add {
                        job,
                        priority: Some(priority),
                        delay_ms,
                    },
                    kind,
                ) => {
                    let ok = (kind == Kind::Ok).then_some(p.complete_ns).flatten();
                    let j = s.jobs.entry(job).or_insert(Job {
                        priority: *priority,
                        delay_ns: delay_ms.unwrap_or(0).saturating_mul(1_000_000),
                        first_invoke: p.invoke_ns,
                        first_ok: None,
                    });
                    j.first_invoke = j.first_invoke.min(p.invoke_ns);
                    j.first_ok = match (j.first_ok, ok) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                (Op::Reserve { job: Some(job), .. }, Kind::Ok) => {
                    s.reserves
                        .push((job, p.invoke_ns, p.complete_ns.unwrap_or(p.invoke_ns)))
                }
                (Op::Reserve { .. }, Kind::Info) => s.unknown_reserves.push(p.invoke_ns),
                _ => {}
            }
        }
        s
    }
}

/// The ready, never reserved jobs by priority, as a sweep over the reserves in the order of
/// their invocations reaches each one: a job enters when it is certainly ready and leaves when
/// its first reserve is invoked.
struct Ready<'s, 'a> {
    jobs: &'s BTreeMap<&'a str, Job>,
    first_reserve: &'s BTreeMap<&'a str, u64>,
    /// (certainly ready from, job), sorted
    enters: Vec<(u64, &'a str)>,
    /// (first reserved, job), sorted
    leaves: Vec<(u64, &'a str)>,
    ei: usize,
    li: usize,
    by_priority: BTreeMap<u32, BTreeSet<&'a str>>,
}

impl<'s, 'a> Ready<'s, 'a> {
    fn new(jobs: &'s BTreeMap<&'a str, Job>, first_reserve: &'s BTreeMap<&'a str, u64>) -> Self {
        let slack = SLACK_MS * 1_000_000;
        let mut enters: Vec<(u64, &str)> = jobs
            .iter()
            .filter_map(|(k, j)| {
                j.first_ok
                    .map(|ok| (ok.saturating_add(j.delay_ns).saturating_add(slack), *k))
            })
            .collect();
        enters.sort_unstable();
        let mut leaves: Vec<(u64, &str)> = first_reserve
            .iter()
            .filter(|(k, _)| jobs.contains_key(*k))
            .map(|(k, t)| (*t, *k))
            .collect();
        leaves.sort_unstable();
        Ready {
            jobs,
            first_reserve,
            enters,
            leaves,
            ei: 0,
            li: 0,
            by_priority: BTreeMap::new(),
        }
    }

    /// Moves the sweep to a reserve invoked at `r_i`.
    fn advance(&mut self, r_i: u64) {
        while let Some(&(t, k)) = self.enters.get(self.ei) {
            if t > r_i {
                break;
            }
            self.ei += 1;
            let gone = self.first_reserve.get(k).is_some_and(|&f| f < r_i);
            if let (false, Some(kj)) = (gone, self.jobs.get(k)) {
                self.by_priority.entry(kj.priority).or_default().insert(k);
            }
        }
        while let Some(&(t, k)) = self.leaves.get(self.li) {
            if t >= r_i {
                break;
            }
            self.li += 1;
            if let Some(set) = self
                .jobs
                .get(k)
                .and_then(|kj| self.by_priority.get_mut(&kj.priority))
            {
                set.remove(k);
            }
        }
    }

    /// The ready jobs of a priority above `priority`, highest first, for a reserve that
    /// completed at `r_o`. Jobs whose first reserve is in flight with this one are left out:
    /// that they were still ready is not certain.
    fn higher_than(&self, priority: u32, r_o: u64) -> Vec<&'a str> {
        let in_flight: BTreeSet<&str> = self
            .leaves
            .get(self.li..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&(t, _)| t < r_o)
            .map(|&(_, k)| k)
            .filter(|k| self.jobs.get(k).is_some_and(|kj| kj.priority > priority))
            .collect();
        self.by_priority
            .range(priority.saturating_add(1)..)
            .rev()
            .flat_map(|(_, set)| set.iter().copied())
            .filter(|k| !in_flight.contains(k))
            .collect()
    }
}

/// `early_after_release`: the reserve (`r_i`, `r_o`) of `job` came too soon after a release.
fn check_release_delay(
    v: &mut Verdict,
    releases: Option<&Vec<(u64, u64)>>,
    job: &str,
    r_i: u64,
    r_o: u64,
) {
    let release_delay = crate::db::RELEASE_DELAY_MS * 1_000_000;
    let early = releases.and_then(|rs| {
        rs.iter()
            .find(|&&(rel_i, rel_o)| rel_o < r_i && r_o < rel_i.saturating_add(release_delay))
    });
    if let Some(&(rel_i, _)) = early {
        v.violation(
            "early_after_release",
            format!(
                "job {job} released at {} was reserved again by {} (the release delay is {} ms)",
                secs(rel_i),
                secs(r_o),
                crate::db::RELEASE_DELAY_MS
            ),
        );
    }
}

/// `early`: `job` was reserved (completed at `r_o`) before its delay passed.
fn check_delay(v: &mut Verdict, job: &str, j: &Job, r_o: u64) {
    if j.delay_ns > 0 && r_o < j.first_invoke.saturating_add(j.delay_ns) {
        v.violation(
            "early",
            format!(
                "job {job} (delay {} ms) reserved by {} but added at {}",
                j.delay_ns / 1_000_000,
                secs(r_o),
                secs(j.first_invoke)
            ),
        );
    }
}

pub fn ordering(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let ops = client_ops(history);
    let mut seen = Seen::collect(&ops);
    v.count("prioritized_jobs", seen.jobs.len() as u64);
    seen.unknown_reserves.sort_unstable();
    // first reserve ok invocation per job: after it, whether the job is ready is unknown
    let mut first_reserve: BTreeMap<&str, u64> = BTreeMap::new();
    for &(job, r_i, _) in &seen.reserves {
        let f = first_reserve.entry(job).or_insert(r_i);
        *f = (*f).min(r_i);
    }
    let mut ready = Ready::new(&seen.jobs, &first_reserve);
    seen.reserves
        .retain(|(job, _, _)| seen.jobs.contains_key(job));
    seen.reserves.sort_by_key(|&(_, r_i, _)| r_i);
    for &(job, r_i, r_o) in &seen.reserves {
        let Some(j) = seen.jobs.get(job) else {
            continue;
        };
        v.count("reserves_checked", 1);
        ready.advance(r_i);
        check_release_delay(&mut v, seen.releases.get(job), job, r_i, r_o);
        check_delay(&mut v, job, j, r_o);
        let higher = ready.higher_than(j.priority, r_o);
        let unknown = seen.unknown_reserves.partition_point(|&t| t < r_o);
        if higher.len() > unknown {
            let best = higher.first().copied().unwrap_or("?");
            let bp = seen.jobs.get(best).map_or(0, |b| b.priority);
            v.violation(
                "priority_inversion",
                format!(
                    "reserve invoked at {} returned job {job} (priority {}) while job {best} (priority {bp}) and {} other higher-priority jobs were ready",
                    secs(r_i),
                    j.priority,
                    higher.len() - 1
                ),
            );
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{
        add_op, add_op_with, call_ms, event_ms, reserve_invocation, reserve_op,
    };
    use crate::checker::Validity;

    fn add(job: &str, priority: u32, delay_ms: u64, t: u64, outcome: Kind) -> Vec<Event> {
        let op = add_op_with(job, Some(priority), Some(delay_ms));
        call_ms(1, op, outcome, t, t + 5)
    }

    /// A reserve of `p` from `t` to `t + 5` ms; on ok it returned `job` with fence 1.
    fn reserve(p: u64, job: &str, t: u64, outcome: Kind) -> Vec<Event> {
        let granted = Op::Reserve {
            job: (outcome == Kind::Ok).then(|| job.to_string()),
            fence: Some(1),
            ttr_ms: None,
        };
        call_ms(p, granted, outcome, t, t + 5)
    }

    fn clean() -> Vec<Event> {
        let mut h = add("lo", 1, 0, 0, Kind::Ok);
        h.extend(add("hi", 9, 0, 10, Kind::Ok));
        h.extend(add("later", 9, 1000, 20, Kind::Ok));
        // hi first, then lo; `later` is not ready yet
        h.extend(reserve(2, "hi", 200, Kind::Ok));
        h.extend(reserve(2, "lo", 300, Kind::Ok));
        // `later` once its delay has passed
        h.extend(reserve(2, "later", 1100, Kind::Ok));
        h
    }

    #[test]
    fn a_clean_history_is_valid() {
        let v = ordering(&clean());
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["reserves_checked"], 3);
        // a higher-priority job whose reserve is in flight, or one an unknown reserve may have
        // taken, does not make an inversion
        let mut h = add("lo", 1, 0, 0, Kind::Ok);
        h.extend(add("hi", 9, 0, 10, Kind::Ok));
        h.extend(add("hi2", 9, 0, 10, Kind::Ok));
        h.extend(reserve(4, "?", 295, Kind::Info));
        h.push(event_ms(2, Kind::Invoke, reserve_invocation(), 300));
        h.extend(reserve(3, "hi", 302, Kind::Ok));
        h.push(event_ms(2, Kind::Ok, reserve_op("lo", 2), 310));
        let v = ordering(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        // no priorities: nothing to check
        let h = vec![event_ms(1, Kind::Ok, add_op("x"), 0)];
        let v = ordering(&h);
        assert_eq!((v.valid, v.counts["prioritized_jobs"]), (Validity::True, 0));
    }

    #[test]
    fn planted_bugs_are_caught() {
        // lo handed out while hi was ready
        let mut h = add("lo", 1, 0, 0, Kind::Ok);
        h.extend(add("hi", 9, 0, 10, Kind::Ok));
        h.extend(reserve(2, "lo", 200, Kind::Ok));
        let v = ordering(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["priority_inversion"], 1);
        assert!(v.examples[0].contains("job hi (priority 9)"), "{v:?}");
        // ... also when an unknown reserve could have taken only one of two
        let mut h = add("lo", 1, 0, 0, Kind::Ok);
        h.extend(add("hi", 9, 0, 10, Kind::Ok));
        h.extend(add("hi2", 8, 0, 10, Kind::Ok));
        h.extend(reserve(3, "?", 100, Kind::Info));
        h.extend(reserve(2, "lo", 200, Kind::Ok));
        assert_eq!(ordering(&h).counts["priority_inversion"], 1);
        // a delayed job reserved early
        let mut h = clean();
        h.extend(add("slow", 1, 5000, 2000, Kind::Ok));
        h.extend(reserve(2, "slow", 3000, Kind::Ok));
        let v = ordering(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["early"], 1);
        assert!(!v.counts.contains_key("priority_inversion"), "{v:?}");
    }

    #[test]
    fn a_job_reserved_again_within_the_release_delay_is_early() {
        use crate::checker::testkit::release_op;
        let mut h = add("a", 5, 0, 0, Kind::Ok);
        h.extend(reserve(2, "a", 10, Kind::Ok));
        h.extend(call_ms(2, release_op("a", 1), Kind::Ok, 20, 25));
        // back after the delay: fine
        h.extend(reserve(2, "a", 20 + crate::db::RELEASE_DELAY_MS, Kind::Ok));
        let v = ordering(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        // planted: handed out again 30 ms after the release
        let mut h = add("a", 5, 0, 0, Kind::Ok);
        h.extend(reserve(2, "a", 10, Kind::Ok));
        h.extend(call_ms(2, release_op("a", 1), Kind::Ok, 20, 25));
        h.extend(reserve(2, "a", 50, Kind::Ok));
        let v = ordering(&h);
        assert_eq!(v.valid, Validity::False, "{v:?}");
        assert_eq!(v.counts["early_after_release"], 1);
    }
}
