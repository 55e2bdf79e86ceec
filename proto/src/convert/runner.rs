//! The requests a runner makes: Reserve a job, then report on the job it holds (Started,
//! Touch, Archive, Release, Bury). A held job is named by a `JobRef` (key and fence); `held`
//! reads it, with the request id, for all five.

use super::scalars::{job_key, request_id, runner_id};
use super::ConvertError;
use crate::pb;
use queue_fsm::{Command, FenceToken, HandBack, JobKey, Request, RequestId};

/// What every report on a held job starts with: its request id and the job the runner holds
/// (`job` must be present). Errors name `request_id`, `job` or `job.key`, in that order.
fn held(
    request_id_bytes: &[u8],
    job: Option<pb::JobRef>,
) -> Result<(Option<RequestId>, JobKey, FenceToken), ConvertError> {
    let id = request_id(request_id_bytes)?;
    let j = job.ok_or_else(|| ConvertError::missing("job"))?;
    Ok((id, job_key("job.key", &j.key)?, FenceToken(j.fence)))
}

/// Reserve. An empty `sched_group` means any group. `wait_ms` is not part of the command (the
/// node waits); read it before calling.
pub fn reserve_request(r: pb::ReserveRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let runner = runner_id(&r.runner_id)?;
    let group = (!r.sched_group.is_empty()).then_some(r.sched_group);
    Ok(Request::new(
        id,
        Command::Reserve {
            runner,
            group,
            ttr_ms: r.ttr_ms,
        },
    ))
}

pub fn started_request(r: pb::StartedRequest) -> Result<Request, ConvertError> {
    let (id, key, fence) = held(&r.request_id, r.job)?;
    Ok(Request::new(
        id,
        Command::Started {
            key,
            fence,
            host: r.host,
            pid: r.pid,
        },
    ))
}

pub fn touch_request(r: pb::TouchRequest) -> Result<Request, ConvertError> {
    let (id, key, fence) = held(&r.request_id, r.job)?;
    Ok(Request::new(id, Command::Touch { key, fence }))
}

/// Archive. The run report is required (resource learning depends on it).
pub fn archive_request(r: pb::ArchiveRequest) -> Result<Request, ConvertError> {
    let (id, key, fence) = held(&r.request_id, r.job)?;
    let report = r.report.ok_or_else(|| ConvertError::missing("report"))?;
    Ok(Request::new(
        id,
        Command::Archive {
            key,
            fence,
            report: report.into(),
        },
    ))
}

/// Release and Bury carry the same message: the held job, the run's report if it ran, a
/// reason; they differ only in the command.
fn hand_back(
    r: pb::HandBackRequest,
    command: fn(HandBack) -> Command,
) -> Result<Request, ConvertError> {
    let (id, key, fence) = held(&r.request_id, r.job)?;
    Ok(Request::new(
        id,
        command(HandBack {
            key,
            fence,
            report: r.report.map(Into::into),
            reason: r.reason,
        }),
    ))
}

pub fn release_request(r: pb::HandBackRequest) -> Result<Request, ConvertError> {
    hand_back(r, Command::Release)
}

pub fn bury_request(r: pb::HandBackRequest) -> Result<Request, ConvertError> {
    hand_back(r, Command::Bury)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::scalars::runner_id_bytes;
    use crate::convert::testkit::{field_of, full_report, key};
    use queue_fsm::RunnerId;

    #[test]
    fn validation_names_the_field() {
        // runner ids
        for n in [1, 15, 17, 32] {
            let r = pb::ReserveRequest {
                runner_id: vec![1; n],
                ttr_ms: 1000,
                ..Default::default()
            };
            assert_eq!(field_of(reserve_request(r)), "runner_id");
        }
        let r = pb::ReserveRequest::default();
        assert_eq!(field_of(reserve_request(r)), "runner_id");

        // job refs
        let bad_ref = Some(pb::JobRef {
            key: "nothex".into(),
            fence: 1,
        });
        assert_eq!(
            field_of(touch_request(pb::TouchRequest {
                job: bad_ref.clone(),
                ..Default::default()
            })),
            "job.key"
        );
        assert_eq!(
            field_of(started_request(pb::StartedRequest::default())),
            "job"
        );
        let good_ref = Some(pb::JobRef {
            key: key("a").to_string(),
            fence: 1,
        });
        assert_eq!(
            field_of(archive_request(pb::ArchiveRequest {
                job: good_ref,
                ..Default::default()
            })),
            "report"
        );
        assert_eq!(
            field_of(release_request(pb::HandBackRequest {
                job: bad_ref.clone(),
                ..Default::default()
            })),
            "job.key"
        );
        assert_eq!(
            field_of(bury_request(pb::HandBackRequest {
                job: bad_ref,
                ..Default::default()
            })),
            "job.key"
        );
    }

    #[test]
    fn requests_convert() {
        let r = reserve_request(pb::ReserveRequest {
            request_id: vec![],
            runner_id: runner_id_bytes(RunnerId(77)),
            sched_group: String::new(),
            ttr_ms: 5000,
            wait_ms: 10,
        })
        .unwrap();
        assert_eq!(
            r,
            Request::new(
                None,
                Command::Reserve {
                    runner: RunnerId(77),
                    group: None,
                    ttr_ms: 5000
                }
            )
        );

        let k = key("a");
        let job = Some(pb::JobRef {
            key: k.to_string(),
            fence: 9,
        });
        let r = release_request(pb::HandBackRequest {
            request_id: vec![],
            job: job.clone(),
            report: None,
            reason: "why".into(),
        })
        .unwrap();
        assert_eq!(
            r.cmd,
            Command::Release(HandBack {
                key: k,
                fence: FenceToken(9),
                report: None,
                reason: "why".into()
            })
        );
        let r = archive_request(pb::ArchiveRequest {
            request_id: vec![],
            job,
            report: Some(full_report().into()),
        })
        .unwrap();
        assert_eq!(
            r.cmd,
            Command::Archive {
                key: k,
                fence: FenceToken(9),
                report: full_report()
            }
        );
    }
}
