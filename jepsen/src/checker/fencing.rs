//! fencing: fences of one job are granted in increasing order, never twice (a reserve invoked
//! after another's grant was acknowledged gets a larger fence; replies of concurrent reserves
//! may arrive in any order); and no operation on a reservation succeeds after a newer
//! reservation of the job was granted (a success with a stale fence). Together: two live
//! reservations of one job never overlap.
//!
//! And leases are not taken over early (`early_takeover`): a job reserved with fence f1 and a
//! TTR, touched last by a successful touch invoked at t, cannot be granted again (fence f2 >
//! f1) before max(reserve invoke, t) + TTR + the lost-return delay
//! ([`crate::db::LOST_RETURN_DELAY_MS`]: until then the old holder may still come back)
//! − [`LEASE_SLACK_MS`], unless a release, bury or archive of f1 may have taken effect by
//! then. After the clock nemesis starts, the queue's
//! clock may run ahead of real time, so grants after that are not judged.

use super::{client_ops, Verdict};
use crate::history::{Event, Kind, Op};
use std::collections::BTreeMap;

/// Allowance for clock offsets between replicas and for timer granularity.
pub const LEASE_SLACK_MS: u64 = 250;

/// A reservation as the history shows it.
struct Grant {
    fence: u64,
    invoke: u64,
    ok: u64,
    ttr_ns: Option<u64>,
}

/// When the clock nemesis first started (`u64::MAX`: never): the queue's clock may run ahead
/// of real time from then on.
fn clock_fault_start(history: &[Event]) -> u64 {
    history
        .iter()
        .filter(|e| {
            matches!(&e.op, Op::Fault { name, action, .. } if name == "clock" && action == "start")
        })
        .map(|e| e.time_ns)
        .min()
        .unwrap_or(u64::MAX)
}

/// The reservations of each job, with the touches and ends of each, as the history shows them.
#[derive(Default)]
struct Leases<'a> {
    grants: BTreeMap<&'a str, Vec<Grant>>,
    /// (job, fence) → latest invoke of a successful touch
    touched: BTreeMap<(&'a str, u64), u64>,
    /// (job, fence) → earliest invoke of a release/bury/archive that may have taken effect
    ended: BTreeMap<(&'a str, u64), u64>,
}

impl<'a> Leases<'a> {
    /// Each job's grants come sorted by fence.
    fn collect(history: &'a [Event]) -> Leases<'a> {
        let mut l = Leases::default();
        for p in client_ops(history) {
            match (p.op, p.kind) {
                (
                    Op::Reserve {
                        job: Some(job),
                        fence: Some(fence),
                        ttr_ms,
                    },
                    Kind::Ok,
                ) => l.grants.entry(job).or_default().push(Grant {
                    fence: *fence,
                    invoke: p.invoke_ns,
                    ok: p.complete_ns.unwrap_or(p.invoke_ns),
                    ttr_ns: ttr_ms.map(|t| t.saturating_mul(1_000_000)),
                }),
                (Op::Touch { job, fence }, Kind::Ok) => {
                    let t = l.touched.entry((job, *fence)).or_insert(p.invoke_ns);
                    *t = (*t).max(p.invoke_ns);
                }
                (
                    Op::Release { job, fence }
                    | Op::Bury { job, fence }
                    | Op::Archive { job, fence },
                    Kind::Ok | Kind::Info,
                ) => {
                    let t = l.ended.entry((job, *fence)).or_insert(p.invoke_ns);
                    *t = (*t).min(p.invoke_ns);
                }
                _ => {}
            }
        }
        for gs in l.grants.values_mut() {
            gs.sort_by_key(|g| g.fence);
        }
        l
    }

    /// Judges the grant `g2` of `job` that followed `g1`, unless it came after the clock
    /// nemesis started (`clock_from`) or `g1` may have ended before it.
    fn check_takeover(&self, v: &mut Verdict, job: &str, g1: &Grant, g2: &Grant, clock_from: u64) {
        let Some(ttr) = g1.ttr_ns else { return };
        if g2.ok >= clock_from {
            return;
        }
        if self.ended.get(&(job, g1.fence)).is_some_and(|&t| t < g2.ok) {
            return;
        }
        let from = self
            .touched
            .get(&(job, g1.fence))
            .map_or(g1.invoke, |&t| t.max(g1.invoke));
        v.count("takeovers_checked", 1);
        let slack = LEASE_SLACK_MS * 1_000_000;
        let lost_return = crate::db::LOST_RETURN_DELAY_MS * 1_000_000;
        if g2.ok.saturating_add(slack) < from.saturating_add(ttr).saturating_add(lost_return) {
            v.violation(
                "early_takeover",
                format!(
                    "job {job}: fence {} granted {} ms after fence {}'s lease began ({} ms TTR + {} ms for a lost job to return)",
                    g2.fence,
                    g2.ok.saturating_sub(from) / 1_000_000,
                    g1.fence,
                    ttr / 1_000_000,
                    crate::db::LOST_RETURN_DELAY_MS
                ),
            );
        }
    }
}

/// Flags grants of a job made before the previous holder's lease could have run out.
fn early_takeovers(history: &[Event], v: &mut Verdict) {
    let clock_from = clock_fault_start(history);
    let leases = Leases::collect(history);
    for (job, gs) in &leases.grants {
        for w in gs.windows(2) {
            leases.check_takeover(v, job, &w[0], &w[1], clock_from);
        }
    }
}

/// The grants and the operations in flight while [`fencing`] walks the history.
#[derive(Default)]
struct Fences<'a> {
    /// job → (fence, time the grant was acknowledged), in history order
    grants: BTreeMap<&'a str, Vec<(u64, u64)>>,
    /// process → invoke time of its reserve in flight
    reserving: BTreeMap<u64, u64>,
    /// (process, job, fence) → invoke time of the operation in flight
    invoked: BTreeMap<(u64, &'a str, u64), u64>,
}

impl<'a> Fences<'a> {
    /// A reserve of `e.process` granted `fence` for `job`: it must be newer than every grant
    /// acknowledged before the reserve was invoked.
    fn granted(&mut self, v: &mut Verdict, e: &Event, job: &'a str, fence: u64) {
        let invoked_at = self.reserving.remove(&e.process).unwrap_or(e.time_ns);
        let g = self.grants.entry(job).or_default();
        let earlier = g
            .iter()
            .find(|&&(f, acked)| f == fence || (fence < f && acked < invoked_at));
        if let Some(&(last, _)) = earlier {
            v.violation(
                "fence_not_increasing",
                format!("job {job}: fence {fence} granted after fence {last}"),
            );
        }
        g.push((fence, e.time_ns));
        v.count("reservations", 1);
    }

    /// An operation on the reservation (`job`, `fence`): one that succeeds must not have been
    /// invoked after a newer reservation of the job was granted.
    fn fenced(&mut self, v: &mut Verdict, e: &Event, job: &'a str, fence: u64) {
        let k = (e.process, job, fence);
        match e.kind {
            Kind::Invoke => {
                self.invoked.insert(k, e.time_ns);
            }
            Kind::Ok => {
                let started = self.invoked.remove(&k).unwrap_or(e.time_ns);
                let newer = self.grants.get(job).and_then(|g| {
                    g.iter()
                        .find(|(f, granted)| *f > fence && *granted < started)
                        .copied()
                });
                if let Some((f, _)) = newer {
                    v.violation(
                        "stale_fence_success",
                        format!(
                            "job {job}: {:?} with fence {fence} succeeded after fence {f} was granted",
                            e.op
                        ),
                    );
                }
            }
            Kind::Fail | Kind::Info => {
                self.invoked.remove(&k);
            }
        }
    }
}

pub fn fencing(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    early_takeovers(history, &mut v);
    let mut fences = Fences::default();
    for e in history {
        match (&e.op, e.kind) {
            (Op::Reserve { .. }, Kind::Invoke) => {
                fences.reserving.insert(e.process, e.time_ns);
            }
            (
                Op::Reserve {
                    job: Some(job),
                    fence: Some(fence),
                    ..
                },
                Kind::Ok,
            ) => fences.granted(&mut v, e, job, *fence),
            (
                Op::Touch { job, fence }
                | Op::Archive { job, fence }
                | Op::Release { job, fence }
                | Op::Bury { job, fence },
                _,
            ) => fences.fenced(&mut v, e, job, *fence),
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{
        archive_op, call, event, release_op, reserve_invocation, reserve_op, touch_op,
    };
    use crate::checker::Validity;

    /// A reserve ok granting `fence` on `job` at `t`.
    fn grant(job: &str, fence: u64, t: u64) -> Event {
        event(9, Kind::Ok, reserve_op(job, fence), t)
    }

    #[test]
    fn a_handover_with_refused_stale_fence_is_valid() {
        let mut h = vec![grant("a", 1, 10), grant("a", 2, 50)];
        // the old holder's archive, started after the new grant, was refused
        h.extend(call(1, archive_op("a", 1), Kind::Fail, 60, 70));
        h.extend(call(2, archive_op("a", 2), Kind::Ok, 80, 90));
        // a touch with fence 1 that started before fence 2 was granted may succeed (it may
        // have taken effect before the grant)
        h.extend(call(3, touch_op("a", 1), Kind::Ok, 40, 100));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["reservations"], 2);
    }

    #[test]
    fn planted_bugs_are_caught() {
        // success with a stale fence
        let mut h = vec![grant("a", 1, 10), grant("a", 2, 50)];
        h.extend(call(1, archive_op("a", 1), Kind::Ok, 60, 70));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["stale_fence_success"], 1);
        // a fence granted twice
        let h = vec![grant("a", 3, 10), grant("a", 3, 20)];
        assert_eq!(fencing(&h).counts["fence_not_increasing"], 1);
        // a reserve invoked after fence 5 was acknowledged got fence 4
        let mut h = call(1, reserve_op("a", 5), Kind::Ok, 0, 10);
        h.extend(call(2, reserve_op("a", 4), Kind::Ok, 20, 30));
        assert_eq!(fencing(&h).counts["fence_not_increasing"], 1);
    }

    #[test]
    fn replies_of_concurrent_reserves_may_arrive_out_of_order() {
        // process 1's reserve (fence 5) is slow to answer; the lease ran out and process 2's
        // reserve, invoked before that answer arrived, got fence 6 and answered first
        let mut h = vec![event(1, Kind::Invoke, reserve_invocation(), 0)];
        h.extend(call(2, reserve_op("a", 6), Kind::Ok, 5, 10));
        h.push(event(1, Kind::Ok, reserve_op("a", 5), 20));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
    }

    fn reserve_with_ttr(p: u64, job: &str, fence: u64, ttr_ms: u64, t: u64) -> Vec<Event> {
        let op = Op::Reserve {
            job: Some(job.into()),
            fence: Some(fence),
            ttr_ms: Some(ttr_ms),
        };
        call(p, op, Kind::Ok, t, t + 5_000_000)
    }

    #[test]
    fn a_lease_taken_over_before_its_ttr_is_caught() {
        let ms = 1_000_000;
        // fence 2 granted 3.0 s after fence 1 with a 1 s TTR (+ 1.5 s lost return): fine
        let mut h = reserve_with_ttr(1, "a", 1, 1_000, 0);
        h.extend(reserve_with_ttr(2, "a", 2, 1_000, 3_000 * ms));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["takeovers_checked"], 1);
        // planted: granted again after 1.6 s (the lease was a tenth of its TTR)
        let mut h = reserve_with_ttr(1, "a", 1, 1_000, 0);
        h.extend(reserve_with_ttr(2, "a", 2, 1_000, 1_600 * ms));
        assert_eq!(fencing(&h).counts["early_takeover"], 1);
        // a touch renews the lease: 2.5 s after a touch at 0.9 s is early
        let mut h = reserve_with_ttr(1, "a", 1, 1_000, 0);
        h.extend(call(1, touch_op("a", 1), Kind::Ok, 900 * ms, 910 * ms));
        h.extend(reserve_with_ttr(2, "a", 2, 1_000, 2_500 * ms));
        assert_eq!(fencing(&h).counts["early_takeover"], 1);
        // released first: not early
        let mut h = reserve_with_ttr(1, "a", 1, 1_000, 0);
        h.extend(call(1, release_op("a", 1), Kind::Ok, 100 * ms, 110 * ms));
        h.extend(reserve_with_ttr(2, "a", 2, 1_000, 300 * ms));
        assert_eq!(fencing(&h).valid, Validity::True);
        // after the clock nemesis started, not judged
        let mut h = vec![event(
            crate::history::NEMESIS,
            Kind::Invoke,
            Op::Fault {
                name: "clock".into(),
                action: "start".into(),
                detail: String::new(),
            },
            0,
        )];
        h.extend(reserve_with_ttr(1, "a", 1, 1_000, 0));
        h.extend(reserve_with_ttr(2, "a", 2, 1_000, 300 * ms));
        assert_eq!(fencing(&h).valid, Validity::True);
    }
}
