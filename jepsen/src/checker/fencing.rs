//! fencing: fences of one job are granted in increasing order, never twice; and no operation on
//! a reservation succeeds after a newer reservation of the job was granted (a success with a
//! stale fence). Together: two live reservations of one job never overlap.

use super::Verdict;
use crate::history::{Event, Kind, Op};
use std::collections::BTreeMap;

pub fn fencing(history: &[Event]) -> Verdict {
    let mut v = Verdict::new();
    // job → (fence, time the grant was acknowledged), in history order
    let mut grants: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    // (process, job, fence) → invoke time of the operation in flight
    let mut invoked: BTreeMap<(u64, &str, u64), u64> = BTreeMap::new();
    for e in history {
        match (&e.op, e.kind) {
            (
                Op::Reserve {
                    job: Some(job),
                    fence: Some(fence),
                },
                Kind::Ok,
            ) => {
                let g = grants.entry(job.as_str()).or_default();
                if let Some(&(last, _)) = g.last() {
                    if *fence <= last {
                        v.violation(
                            "fence_not_increasing",
                            format!("job {job}: fence {fence} granted after fence {last}"),
                        );
                    }
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
    use crate::checker::Validity;

    fn ev(process: u64, kind: Kind, op: Op, t: u64) -> Event {
        Event {
            process,
            kind,
            op,
            node: 1,
            time_ns: t,
            error: None,
        }
    }

    fn grant(job: &str, fence: u64, t: u64) -> Event {
        ev(
            9,
            Kind::Ok,
            Op::Reserve {
                job: Some(job.into()),
                fence: Some(fence),
            },
            t,
        )
    }

    fn archive(p: u64, job: &str, fence: u64, invoke: u64, done: u64, kind: Kind) -> Vec<Event> {
        let op = Op::Archive {
            job: job.into(),
            fence,
        };
        vec![
            ev(p, Kind::Invoke, op.clone(), invoke),
            ev(p, kind, op, done),
        ]
    }

    #[test]
    fn a_handover_with_refused_stale_fence_is_valid() {
        let mut h = vec![grant("a", 1, 10), grant("a", 2, 50)];
        // the old holder's archive, started after the new grant, was refused
        h.extend(archive(1, "a", 1, 60, 70, Kind::Fail));
        h.extend(archive(2, "a", 2, 80, 90, Kind::Ok));
        // a touch with fence 1 that started before fence 2 was granted may succeed (it may
        // have taken effect before the grant)
        let touch = Op::Touch {
            job: "a".into(),
            fence: 1,
        };
        h.push(ev(3, Kind::Invoke, touch.clone(), 40));
        h.push(ev(3, Kind::Ok, touch, 100));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::True, "{v:?}");
        assert_eq!(v.counts["reservations"], 2);
    }

    #[test]
    fn planted_bugs_are_caught() {
        // success with a stale fence
        let mut h = vec![grant("a", 1, 10), grant("a", 2, 50)];
        h.extend(archive(1, "a", 1, 60, 70, Kind::Ok));
        let v = fencing(&h);
        assert_eq!(v.valid, Validity::False);
        assert_eq!(v.counts["stale_fence_success"], 1);
        // a fence granted twice
        let h = vec![grant("a", 3, 10), grant("a", 3, 20)];
        assert_eq!(fencing(&h).counts["fence_not_increasing"], 1);
    }
}
