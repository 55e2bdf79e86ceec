//! lifecycle: each job's client-visible life is legal. Flags only what is certainly illegal,
//! allowing for concurrency (an operation takes effect somewhere between its invocation and its
//! completion; one with an unknown outcome at any time after its invocation):
//! - `never_added`: a reserve ok, or a touch/archive/release/bury ok, of a job no add (other
//!   than failed ones) was invoked for before;
//! - `reserve_after_archive`: a reserve ok invoked after an archive of the job was ok (complete
//!   is terminal), unless another add of the job (which queues a complete job again) may have
//!   taken effect in between (an add invocation takes effect at most once: request ids make
//!   retries idempotent);
//! - `reserve_after_bury`: a reserve ok invoked after a bury of the job was ok, with no kick
//!   that may have taken effect in between;
//! - `foreign_fence`: a touch/archive/release/bury ok with a fence a reserve ok granted to
//!   another job (fences are unique); `ungranted_fence`: one with a fence granted to the job
//!   only after the operation completed, or granted to nobody while no reserve with an unknown
//!   outcome could have granted it (otherwise counted as `fence_unverified`);
//! - in the final read: `complete_without_archive`, a complete job no archive (other than failed
//!   ones) was invoked for; `archived_not_complete`, a job with an archive ok that is not
//!   complete (or missing), unless another add may have queued it again after the archive.
//!
//! Without a final read, and with no violation otherwise, the verdict is unknown.

use super::ops::PairedOp;
use super::{client_ops, secs, Validity, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::BTreeMap;

/// (invoke, latest moment it may have taken effect) of operations that did not fail.
type Windows = Vec<(u64, u64)>;

/// Whether one of `windows` may have taken effect strictly between `after` and `before`.
fn may_happen_between(windows: Option<&Windows>, after: u64, before: u64) -> bool {
    windows.is_some_and(|w| w.iter().any(|&(i, end)| i < before && end > after))
}

/// Whether an add may have queued the job again after an archive of it that was invoked at
/// `after` and succeeded, before `before`. An add invocation takes effect at most once (its
/// request id makes the client's retries idempotent) and one add of the job must have taken
/// effect before the archive did, so this takes a second add invocation that may have taken
/// effect in between.
fn may_requeue(adds: Option<&Windows>, after: u64, before: u64) -> bool {
    adds.is_some_and(|w| w.len() > 1) && may_happen_between(adds, after, before)
}

/// What the history shows of each job's life, gathered in one pass over the client operations.
#[derive(Default)]
struct Seen<'a> {
    adds: BTreeMap<&'a str, Windows>,
    archives_tried: BTreeMap<&'a str, Windows>,
    /// (invoke, ok) of archives / buries that succeeded
    archived: BTreeMap<&'a str, Vec<(u64, u64)>>,
    buried: BTreeMap<&'a str, Vec<(u64, u64)>>,
    kicks: Windows,
    /// (job, invoke, ok) of reserves ok that returned a job
    reserves: Vec<(&'a str, u64, u64)>,
    /// fence → (job, invoke of the reserve that granted it)
    grants: BTreeMap<u64, Vec<(&'a str, u64)>>,
    /// invocations of reserves whose outcome is unknown
    unknown_reserves: Vec<u64>,
    /// (op name, job, fence, completion) of touch/archive/release/bury ok
    fenced: Vec<(&'static str, &'a str, u64, u64)>,
    final_read: Option<(&'a Vec<(String, String)>, u64)>,
}

impl<'a> Seen<'a> {
    fn collect(ops: &[PairedOp<'a>]) -> Seen<'a> {
        let mut s = Seen::default();
        for p in ops {
            let done = p.complete_ns.unwrap_or(p.invoke_ns);
            let window = (p.invoke_ns, p.effect_end_ns());
            match (p.op, p.kind) {
                (_, Kind::Fail | Kind::Invoke) => {}
                (Op::Add { job, .. }, _) => s.adds.entry(job).or_default().push(window),
                (Op::Kick { .. }, _) => s.kicks.push(window),
                (Op::Reserve { .. }, Kind::Info) => s.unknown_reserves.push(p.invoke_ns),
                (
                    Op::Reserve {
                        job: Some(job),
                        fence,
                        ..
                    },
                    Kind::Ok,
                ) => {
                    s.reserves.push((job, p.invoke_ns, done));
                    if let Some(f) = fence {
                        s.grants.entry(*f).or_default().push((job, p.invoke_ns));
                    }
                }
                (Op::Archive { job, fence }, kind) => {
                    s.archives_tried.entry(job).or_default().push(window);
                    if kind == Kind::Ok {
                        s.archived.entry(job).or_default().push((p.invoke_ns, done));
                        s.fenced.push(("archive", job, *fence, done));
                    }
                }
                (Op::Bury { job, fence }, Kind::Ok) => {
                    s.buried.entry(job).or_default().push((p.invoke_ns, done));
                    s.fenced.push(("bury", job, *fence, done));
                }
                (Op::Touch { job, fence }, Kind::Ok) => s.fenced.push(("touch", job, *fence, done)),
                (Op::Release { job, fence }, Kind::Ok) => {
                    s.fenced.push(("release", job, *fence, done))
                }
                (Op::FinalRead { jobs }, Kind::Ok) => s.final_read = Some((jobs, done)),
                _ => {}
            }
        }
        s
    }

    /// A `name` ok of `job` completed at `t` without any add of it invoked before.
    fn check_added(&self, v: &mut Verdict, name: &str, job: &str, t: u64) {
        let added = self
            .adds
            .get(job)
            .is_some_and(|w| w.iter().any(|&(i, _)| i <= t));
        if !added {
            v.violation(
                "never_added",
                format!(
                    "job {job}: {name} ok at {} but no add of it was invoked before",
                    secs(t)
                ),
            );
        }
    }

    /// `never_added`, `reserve_after_archive` and `reserve_after_bury` of the reserves ok.
    fn check_reserves(&self, v: &mut Verdict) {
        for &(job, r_i, r_o) in &self.reserves {
            v.count("transitions", 1);
            self.check_added(v, "reserve", job, r_o);
            let terminal = self.archived.get(job).and_then(|a| {
                a.iter()
                    .find(|&&(a_i, a_o)| a_o < r_i && !may_requeue(self.adds.get(job), a_i, r_o))
            });
            if let Some(&(_, a_o)) = terminal {
                v.violation(
                    "reserve_after_archive",
                    format!(
                        "job {job}: reserve invoked at {} returned it, but it was archived (ok at {}) and not added again",
                        secs(r_i),
                        secs(a_o)
                    ),
                );
            }
            let unkicked = self.buried.get(job).and_then(|b| {
                b.iter().find(|&&(b_i, b_o)| {
                    b_o < r_i && !may_happen_between(Some(&self.kicks), b_i, r_o)
                })
            });
            if let Some(&(_, b_o)) = unkicked {
                v.violation(
                    "reserve_after_bury",
                    format!(
                        "job {job}: reserve invoked at {} returned it, but it was buried (ok at {}) and no kick happened since",
                        secs(r_i),
                        secs(b_o)
                    ),
                );
            }
        }
    }

    /// `never_added`, `foreign_fence`, `ungranted_fence` and `fence_unverified` of the
    /// operations ok on a reservation.
    fn check_fences(&self, v: &mut Verdict) {
        for &(name, job, fence, done) in &self.fenced {
            v.count("transitions", 1);
            self.check_added(v, name, job, done);
            match self.grants.get(&fence) {
                Some(g) if g.iter().any(|&(j, _)| j != job) => {
                    let other = g.iter().find(|&&(j, _)| j != job).map_or("", |&(j, _)| j);
                    v.violation(
                        "foreign_fence",
                        format!(
                            "job {job}: {name} ok at {} with fence {fence}, which was granted to job {other}",
                            secs(done)
                        ),
                    );
                }
                Some(g) => {
                    if g.iter().all(|&(_, r_i)| r_i > done) {
                        v.violation(
                            "ungranted_fence",
                            format!(
                                "job {job}: {name} ok at {} with fence {fence}, granted only later",
                                secs(done)
                            ),
                        );
                    }
                }
                None => {
                    if self.unknown_reserves.iter().any(|&i| i <= done) {
                        v.count("fence_unverified", 1);
                    } else {
                        v.violation(
                            "ungranted_fence",
                            format!(
                                "job {job}: {name} ok at {} with fence {fence}, which no reserve granted",
                                secs(done)
                            ),
                        );
                    }
                }
            }
        }
    }

    /// `complete_without_archive` and `archived_not_complete` in the final read `jobs`, made
    /// at `read_at`.
    fn check_final_read(&self, v: &mut Verdict, jobs: &[(String, String)], read_at: u64) {
        let mut states: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (job, state) in jobs {
            v.count("transitions", 1);
            states.entry(job).or_default().push(state);
            let tried = self
                .archives_tried
                .get(job.as_str())
                .is_some_and(|w| w.iter().any(|&(i, _)| i <= read_at));
            if state == "complete" && !tried {
                v.violation(
                    "complete_without_archive",
                    format!("job {job} is complete in the final read but was never archived"),
                );
            }
        }
        for (job, a) in &self.archived {
            let first_archive = a.iter().map(|&(i, _)| i).min().unwrap_or(0);
            let state = match states.get(job) {
                None => "missing",
                Some(s) => s
                    .iter()
                    .copied()
                    .find(|&s| s != "complete")
                    .unwrap_or("complete"),
            };
            if state != "complete" && !may_requeue(self.adds.get(job), first_archive, read_at) {
                v.violation(
                    "archived_not_complete",
                    format!("job {job} was archived (ok) but is {state} in the final read"),
                );
            }
        }
    }
}

pub fn lifecycle(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    let ops = client_ops(history);
    let seen = Seen::collect(&ops);
    seen.check_reserves(&mut v);
    seen.check_fences(&mut v);
    let Some((jobs, read_at)) = seen.final_read else {
        if v.valid == Validity::True {
            v.valid = Validity::Unknown;
        }
        v.examples
            .push("no successful final read: final states not checked".into());
        return v;
    };
    seen.check_final_read(&mut v, jobs, read_at);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{
        add_op, archive_op, bury_op, call, event, final_read_op, release_op, reserve_invocation,
        reserve_op, touch_op,
    };

    /// An operation from `t` to `t + 5` with the given outcome.
    fn op(process: u64, op: Op, outcome: Kind, t: u64) -> Vec<Event> {
        call(process, op, outcome, t, t + 5)
    }

    fn kick() -> Op {
        Op::Kick { count: Some(1) }
    }

    fn final_read(jobs: &[(&str, &str)]) -> Vec<Event> {
        op(1, final_read_op(jobs), Kind::Ok, 10_000)
    }

    /// a: added, reserved, touched, released, reserved again, archived.
    /// b: added (unknown), reserved, buried, kicked, reserved, archived.
    fn clean() -> Vec<Event> {
        let mut h = Vec::new();
        h.extend(op(1, add_op("a"), Kind::Ok, 0));
        h.extend(op(2, add_op("b"), Kind::Info, 0));
        h.extend(op(3, reserve_op("a", 1), Kind::Ok, 100));
        h.extend(op(3, touch_op("a", 1), Kind::Ok, 200));
        h.extend(op(3, release_op("a", 1), Kind::Ok, 300));
        h.extend(op(4, reserve_op("b", 2), Kind::Ok, 400));
        h.extend(op(4, bury_op("b", 2), Kind::Ok, 500));
        h.extend(op(3, reserve_op("a", 3), Kind::Ok, 600));
        h.extend(op(3, archive_op("a", 3), Kind::Ok, 700));
        // a failed archive of a stale fence: fine
        h.extend(op(4, archive_op("a", 1), Kind::Fail, 800));
        h.extend(op(1, kick(), Kind::Ok, 900));
        h.extend(op(4, reserve_op("b", 4), Kind::Ok, 1000));
        h.extend(op(4, archive_op("b", 4), Kind::Ok, 1100));
        h
    }

    #[test]
    fn a_clean_history_is_valid() {
        let mut h = clean();
        h.extend(final_read(&[("a", "complete"), ("b", "complete")]));
        let v = lifecycle(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        // 4 reserves, touch, release, bury, 2 archives, 2 final states
        assert_eq!(v.counts["transitions"], 11);
    }

    #[test]
    fn concurrency_is_allowed_for() {
        let mut h = Vec::new();
        h.extend(op(1, add_op("a"), Kind::Ok, 0));
        h.extend(op(2, reserve_op("a", 1), Kind::Ok, 10));
        // bury and a reserve overlap: the reserve may have taken effect first
        h.push(event(2, Kind::Invoke, bury_op("a", 1), 20));
        h.push(event(3, Kind::Invoke, reserve_invocation(), 22));
        h.push(event(2, Kind::Ok, bury_op("a", 1), 25));
        h.push(event(3, Kind::Ok, reserve_op("a", 2), 30));
        // a kick with an unknown outcome, then a reserve long after: may have been kicked
        h.extend(op(1, bury_op("a", 2), Kind::Ok, 40));
        h.extend(op(1, kick(), Kind::Info, 50));
        h.extend(op(2, reserve_op("a", 3), Kind::Ok, 1000));
        // archived, then added again (unknown), then reserved again: the add re-queued it
        h.extend(op(2, archive_op("a", 3), Kind::Ok, 1100));
        h.extend(op(1, add_op("a"), Kind::Info, 1200));
        h.extend(op(2, reserve_op("a", 5), Kind::Ok, 1300));
        // a fence only a reserve with an unknown outcome may have granted
        h.extend(op(4, reserve_invocation(), Kind::Info, 1400));
        h.extend(op(4, touch_op("a", 6), Kind::Ok, 1500));
        h.extend(final_read(&[("a", "reserved")]));
        let v = lifecycle(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["fence_unverified"], 1);
    }

    #[test]
    fn planted_bugs_are_caught() {
        let check = |mut h: Vec<Event>, what: &str| {
            if !h.iter().any(|e| matches!(e.op, Op::FinalRead { .. })) {
                h.extend(final_read(&[]));
            }
            let v = lifecycle(&h);
            assert_eq!(v.valid, Validity::False, "{what}: {v:?}");
            assert_eq!(v.counts.get(what), Some(&1), "{what}: {v:?}");
        };
        // reserve of a job never added (only a failed add)
        let mut h = op(1, add_op("a"), Kind::Fail, 0);
        h.extend(op(2, reserve_op("a", 1), Kind::Ok, 10));
        check(h, "never_added");
        // archive ok of a job never added, with a fence granted to it later
        let mut h = op(2, archive_op("z", 1), Kind::Ok, 10);
        h.extend(op(1, add_op("z"), Kind::Ok, 100));
        h.extend(op(2, reserve_op("z", 1), Kind::Ok, 200));
        let v = lifecycle(&h);
        assert_eq!(v.counts["never_added"], 1);
        check(h, "ungranted_fence");
        // reserve after archive
        let mut h = clean();
        h.extend(op(3, reserve_op("a", 9), Kind::Ok, 2000));
        check(h, "reserve_after_archive");
        // reserve after bury without a kick
        let mut h = op(1, add_op("a"), Kind::Ok, 0);
        h.extend(op(2, reserve_op("a", 1), Kind::Ok, 10));
        h.extend(op(2, bury_op("a", 1), Kind::Ok, 20));
        h.extend(op(1, kick(), Kind::Fail, 30));
        h.extend(op(2, reserve_op("a", 2), Kind::Ok, 40));
        check(h, "reserve_after_bury");
        // a fence granted to another job
        let mut h = clean();
        h.extend(op(4, touch_op("a", 2), Kind::Ok, 1200));
        check(h, "foreign_fence");
        // a fence no reserve granted, with no unknown reserve around
        let mut h = clean();
        h.extend(op(4, release_op("b", 77), Kind::Ok, 1200));
        check(h, "ungranted_fence");
        // complete without an archive
        let mut h = op(1, add_op("a"), Kind::Ok, 0);
        h.extend(final_read(&[("a", "complete")]));
        check(h, "complete_without_archive");
        // archived but not complete
        let mut h = clean();
        h.extend(final_read(&[("a", "complete"), ("b", "ready")]));
        check(h, "archived_not_complete");
        let mut h = clean();
        h.extend(final_read(&[("a", "complete")]));
        check(h, "archived_not_complete");
    }

    #[test]
    fn no_final_read_is_unknown() {
        let v = lifecycle(&clean());
        assert_eq!(v.valid, Validity::Unknown, "{v:?}");
    }
}
