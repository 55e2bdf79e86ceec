//! The Add request: a batch of job specs with the environment they share.

use super::scalars::request_id;
use super::ConvertError;
use crate::pb;
use queue_fsm::{AddJobs, Command, JobSpec, Request};

/// Why a job with mounts is refused: nothing mounts them yet, and a job that ran without the
/// files it asked for would fail in a way nobody could explain.
pub const MOUNTS_UNSUPPORTED: &str =
    "is not supported yet: raftq does not mount anything, so a job with mounts is refused \
     rather than run without them; remove the field";

/// Add. Errors in a job name it as `jobs[i]…`. Jobs with `mounts` are refused
/// ([`MOUNTS_UNSUPPORTED`]); the field stays in the job model (it is part of the job key).
pub fn add_request(r: pb::AddRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let jobs = r
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            if !s.mounts.is_empty() {
                return Err(ConvertError::new(
                    format!("jobs[{i}].mounts"),
                    MOUNTS_UNSUPPORTED,
                ));
            }
            JobSpec::try_from(s).map_err(|e| e.under(&format!("jobs[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Request::new(
        id,
        Command::Add(AddJobs {
            jobs,
            env: r.env,
            ignore_complete: r.ignore_complete,
            return_keys: r.return_keys,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::scalars::request_id_bytes;
    use crate::convert::testkit::{field_of, full_spec};
    use queue_fsm::RequestId;

    #[test]
    fn validation_names_the_field() {
        let spec = |f: fn(&mut pb::JobSpec)| {
            let mut s = pb::JobSpec::from(full_spec());
            s.mounts.clear();
            f(&mut s);
            let mut jobs = vec![pb::JobSpec::from(JobSpec::new("ok")); 3];
            jobs.push(s);
            add_request(pb::AddRequest {
                jobs,
                ..Default::default()
            })
        };
        assert_eq!(field_of(spec(|s| s.priority = 256)), "jobs[3].priority");
        assert_eq!(field_of(spec(|s| s.mounts = "m1".into())), "jobs[3].mounts");
        assert_eq!(field_of(spec(|s| s.retries = 1000)), "jobs[3].retries");
        assert_eq!(field_of(spec(|s| s.r#override = 3)), "jobs[3].override");
        assert_eq!(
            field_of(spec(|s| s.r#override = u32::MAX)),
            "jobs[3].override"
        );
        let e = spec(|s| {
            s.deps[0] = pb::Dependency {
                target: Some(pb::dependency::Target::JobKey("zz".into())),
            }
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"jobs[3].deps[0].job_key: "zz" is not a 32-hex-digit job key"#
        );
        assert_eq!(
            field_of(spec(|s| s.deps[1].target = None)),
            "jobs[3].deps[1].target"
        );
        assert_eq!(
            field_of(spec(|s| s.behaviours[2].action = None)),
            "jobs[3].behaviours[2].action"
        );
        assert_eq!(
            field_of(spec(|s| s.behaviours[0].when = 3)),
            "jobs[3].behaviours[0].when"
        );
        assert_eq!(
            field_of(spec(|s| s.behaviours[0].when = -1)),
            "jobs[3].behaviours[0].when"
        );
        assert_eq!(
            field_of(spec(
                |s| s.behaviours[0].action = Some(pb::behaviour::Action::Remove(false))
            )),
            "jobs[3].behaviours[0].remove"
        );

        // request ids
        for n in [1, 15, 17, 32] {
            let r = pb::AddRequest {
                request_id: vec![1; n],
                ..Default::default()
            };
            assert_eq!(field_of(add_request(r)), "request_id");
        }
    }

    #[test]
    fn requests_convert() {
        let rid = RequestId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let spec = JobSpec {
            mounts: String::new(),
            ..full_spec()
        };
        let r = add_request(pb::AddRequest {
            request_id: request_id_bytes(Some(rid)),
            jobs: vec![spec.clone().into()],
            env: vec!["A=1".into()],
            ignore_complete: true,
            return_keys: true,
        })
        .unwrap();
        assert_eq!(r.id, Some(rid));
        assert_eq!(
            r.cmd,
            Command::Add(AddJobs {
                jobs: vec![spec],
                env: vec!["A=1".into()],
                ignore_complete: true,
                return_keys: true,
            })
        );
        assert_eq!(request_id(&rid.0.to_be_bytes()), Ok(Some(rid)));
        assert_eq!(request_id(&[]), Ok(None));
    }
}
