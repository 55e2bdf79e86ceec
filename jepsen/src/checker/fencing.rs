//! fencing: fences of one job are granted in increasing order, never twice (a reserve invoked
//! after another's grant was acknowledged gets a larger fence; replies of concurrent reserves
//! may arrive in any order); and no operation on a reservation succeeds after a newer
//! reservation of the job was granted (a success with a stale fence). Together: two live
//! reservations of one job never overlap.

use super::Verdict;
use crate::history::{Event, Kind, Op};
use std::collections::BTreeMap;

pub fn fencing(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    // job → (fence, time the grant was acknowledged), in history order
    let mut grants: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    // process → invoke time of its reserve in flight
    let mut reserving: BTreeMap<u64, u64> = BTreeMap::new();
    // (process, job, fence) → invoke time of the operation in flight
    let mut invoked: BTreeMap<(u64, &str, u64), u64> = BTreeMap::new();
    for e in history {
        match (&e.op, e.kind) {
            (Op::Reserve { .. }, Kind::Invoke) => {
                reserving.insert(e.process, e.time_ns);
            }
            (
                Op::Reserve {
                    job: Some(job),
                    fence: Some(fence),
                },
                Kind::Ok,
            ) => {
                let invoked_at = reserving.remove(&e.process).unwrap_or(e.time_ns);
                let g = grants.entry(job.as_str()).or_default();
                let earlier = g
                    .iter()
                    .find(|&&(f, acked)| f == *fence || (*fence < f && acked < invoked_at));
                if let Some(&(last, _)) = earlier {
                    v.violation(
                        "fence_not_increasing",
                        format!("job {job}: fence {fence} granted after fence {last}"),
                    );
                }
                g.push((*fence, e.time_ns));
                v.count("reservations", 1);
            }
            (
                Op::Touch { job, fence }
                | Op::Archive { job, fence }
                | Op::Release { job, fence }
                | Op::Bury { job, fence },
                kind,
            ) => {
                let k = (e.process, job.as_str(), *fence);
                match kind {
                    Kind::Invoke => {
                        invoked.insert(k, e.time_ns);
                    }
                    Kind::Ok => {
                        let started = invoked.remove(&k).unwrap_or(e.time_ns);
                        let newer = grants.get(job.as_str()).and_then(|g| {
                            g.iter()
                                .find(|(f, granted)| *f > *fence && *granted < started)
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
                        invoked.remove(&k);
                    }
                }
            }
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::testkit::{
        archive_op, call, event, reserve_invocation, reserve_op, touch_op,
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
}
