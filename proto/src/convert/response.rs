//! Responses (fsm → pb): each call's response message picked out of the state machine's
//! [`Response`], and the stats.

use crate::pb;
use queue_fsm::{JobKey, Response, Skip, StateName};
use std::collections::BTreeMap;
use tonic::Status;

/// A response of the wrong kind for the call: a bug, reported as `INTERNAL`.
fn unexpected(call: &str, r: &Response) -> Status {
    let variant = match r {
        Response::Added { .. } => "Added",
        Response::Reserved { .. } => "Reserved",
        Response::NoJob(_) => "NoJob",
        Response::Touched { .. } => "Touched",
        Response::Released { .. } => "Released",
        Response::Count(_) => "Count",
        Response::Deleted { .. } => "Deleted",
        Response::Modified { .. } => "Modified",
        Response::Ticked { .. } => "Ticked",
        Response::Renewed(_) => "Renewed",
        Response::Ok => "Ok",
    };
    Status::internal(format!("the state machine answered {call} with {variant}"))
}

/// Why a key of a Delete or Modify was left alone. `detail`: the state for `HELD`, the other
/// job's key for `HAS_DEPENDANT` and `KEY_EXISTS`, else empty.
pub fn skipped(key: &JobKey, skip: &Skip) -> pb::Skipped {
    use pb::skipped::Why;
    let (why, detail) = match skip {
        Skip::NotFound => (Why::NotFound, String::new()),
        Skip::Held(s) => (Why::Held, s.as_str().to_string()),
        Skip::Complete => (Why::Complete, String::new()),
        Skip::HasDependant(k) => (Why::HasDependant, k.to_string()),
        Skip::KeyExists(k) => (Why::KeyExists, k.to_string()),
    };
    pb::Skipped {
        key: key.to_string(),
        why: why as i32,
        detail,
    }
}

fn skipped_all(s: &[(JobKey, Skip)]) -> Vec<pb::Skipped> {
    s.iter().map(|(k, why)| skipped(k, why)).collect()
}

/// Add → `Added`.
pub fn add_response(r: Response) -> Result<pb::AddResponse, Status> {
    match r {
        Response::Added {
            added,
            existed,
            keys,
        } => Ok(pb::AddResponse {
            added,
            existed,
            keys: keys.iter().map(JobKey::to_string).collect(),
        }),
        r => Err(unexpected("Add", &r)),
    }
}

/// Reserve → `Reserved` (the job, with the new fence) or `NoJob` (why none).
pub fn reserve_response(r: Response) -> Result<pb::ReserveResponse, Status> {
    match r {
        Response::Reserved { job, fence } => {
            let mut job = pb::Job::from(*job);
            job.fence = fence.0;
            Ok(pb::ReserveResponse {
                job: Some(job),
                no_job: 0,
            })
        }
        Response::NoJob(n) => Ok(pb::ReserveResponse {
            job: None,
            no_job: pb::reserve_response::NoJob::from(n) as i32,
        }),
        r => Err(unexpected("Reserve", &r)),
    }
}

/// Touch → `Touched`.
pub fn touch_response(r: Response) -> Result<pb::TouchResponse, Status> {
    match r {
        Response::Touched { kill } => Ok(pb::TouchResponse { kill }),
        r => Err(unexpected("Touch", &r)),
    }
}

/// Release → `Released` (where the job went).
pub fn release_response(r: Response) -> Result<pb::ReleaseResponse, Status> {
    match r {
        Response::Released { state } => Ok(pb::ReleaseResponse {
            state: pb::StateName::from(state) as i32,
        }),
        r => Err(unexpected("Release", &r)),
    }
}

/// Kick, Kill → `Count`.
pub fn count_response(r: Response) -> Result<pb::CountResponse, Status> {
    match r {
        Response::Count(count) => Ok(pb::CountResponse { count }),
        r => Err(unexpected("Kick/Kill", &r)),
    }
}

/// Delete → `Deleted`.
pub fn delete_response(r: Response) -> Result<pb::DeleteResponse, Status> {
    match r {
        Response::Deleted { deleted, skipped } => Ok(pb::DeleteResponse {
            deleted,
            skipped: skipped_all(&skipped),
        }),
        r => Err(unexpected("Delete", &r)),
    }
}

/// Modify → `Modified`.
pub fn modify_response(r: Response) -> Result<pb::ModifyResponse, Status> {
    match r {
        Response::Modified { modified, skipped } => Ok(pb::ModifyResponse {
            modified: modified
                .iter()
                .map(|(old, new)| pb::modify_response::Renamed {
                    old_key: old.to_string(),
                    new_key: new.to_string(),
                })
                .collect(),
            skipped: skipped_all(&skipped),
        }),
        r => Err(unexpected("Modify", &r)),
    }
}

/// Started, Archive, Bury, SetLimit, SetReserving → `Ok`.
pub fn ack_response(r: Response) -> Result<pb::Ack, Status> {
    match r {
        Response::Ok => Ok(pb::Ack {}),
        r => Err(unexpected("the call", &r)),
    }
}

/// Stats from the counts per rep group and state (`Fsm::counts`) and the ready jobs per
/// scheduler group (`Fsm::ready_by_sched_group`). `states` has every state name, zeros
/// included; state names are [`StateName::as_str`].
pub fn stats_response(
    counts: BTreeMap<String, BTreeMap<StateName, u64>>,
    ready_by_sched_group: BTreeMap<String, u64>,
) -> pb::StatsResponse {
    let mut totals: BTreeMap<StateName, u64> = StateName::ALL.into_iter().map(|s| (s, 0)).collect();
    let mut rep_groups = std::collections::HashMap::with_capacity(counts.len());
    for (rep, per_state) in counts {
        let mut c = std::collections::HashMap::with_capacity(per_state.len());
        for (s, n) in per_state {
            let t = totals.entry(s).or_default();
            *t = t.saturating_add(n);
            c.insert(s.as_str().to_string(), n);
        }
        rep_groups.insert(rep, pb::StateCounts { counts: c });
    }
    pb::StatsResponse {
        states: totals
            .into_iter()
            .map(|(s, n)| (s.as_str().to_string(), n))
            .collect(),
        rep_groups,
        ready_by_sched_group: ready_by_sched_group.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testkit::{full_job, key, reservation};
    use queue_fsm::{FenceToken, JobState, NoJob};
    use tonic::Code;

    #[test]
    fn a_reserved_job_carries_the_new_fence() {
        let r = reserve_response(Response::Reserved {
            job: Box::new(full_job(JobState::Reserved(reservation()))),
            fence: FenceToken(42),
        })
        .unwrap();
        assert_eq!(r.job.map(|j| j.fence), Some(42));
    }

    #[test]
    fn responses_convert() {
        let (a, b) = (key("a"), key("b"));
        let r = delete_response(Response::Deleted {
            deleted: 2,
            skipped: vec![
                (a, Skip::Held(StateName::Running)),
                (b, Skip::HasDependant(a)),
                (a, Skip::NotFound),
            ],
        })
        .unwrap();
        assert_eq!(r.deleted, 2);
        assert_eq!(r.skipped[0].why, pb::skipped::Why::Held as i32);
        assert_eq!(r.skipped[0].detail, "running");
        assert_eq!(r.skipped[1].key, b.to_string());
        assert_eq!(r.skipped[1].detail, a.to_string());
        assert_eq!(r.skipped[2].detail, "");

        let r = modify_response(Response::Modified {
            modified: vec![(a, b)],
            skipped: vec![(a, Skip::KeyExists(b))],
        })
        .unwrap();
        assert_eq!(r.modified[0].new_key, b.to_string());
        assert_eq!(r.skipped[0].why, pb::skipped::Why::KeyExists as i32);

        let r = reserve_response(Response::NoJob(NoJob::Paused)).unwrap();
        assert_eq!(
            (r.job, r.no_job),
            (None, pb::reserve_response::NoJob::Paused as i32)
        );
        let r = release_response(Response::Released {
            state: StateName::Buried,
        })
        .unwrap();
        assert_eq!(r.state, pb::StateName::Buried as i32);
        assert_eq!(count_response(Response::Count(3)).unwrap().count, 3);
        assert!(
            touch_response(Response::Touched { kill: true })
                .unwrap()
                .kill
        );
        assert!(ack_response(Response::Ok).is_ok());
        let r = add_response(Response::Added {
            added: 1,
            existed: 2,
            keys: vec![a],
        })
        .unwrap();
        assert_eq!((r.added, r.existed, r.keys), (1, 2, vec![a.to_string()]));
        assert_eq!(
            add_response(Response::Ok).unwrap_err().code(),
            Code::Internal
        );
    }

    #[test]
    fn stats_convert() {
        let counts = [
            (
                "r1".to_string(),
                [(StateName::Ready, 2), (StateName::Complete, 5)].into(),
            ),
            ("r2".to_string(), [(StateName::Ready, 3)].into()),
        ]
        .into();
        let ready = [("s".to_string(), 5)].into();
        let s = stats_response(counts, ready);
        assert_eq!(s.states.len(), StateName::ALL.len());
        assert_eq!(s.states["ready"], 5);
        assert_eq!(s.states["complete"], 5);
        assert_eq!(s.states["buried"], 0);
        assert_eq!(s.rep_groups["r1"].counts["complete"], 5);
        assert_eq!(s.rep_groups["r2"].counts.len(), 1);
        assert_eq!(s.ready_by_sched_group["s"], 5);
    }
}
