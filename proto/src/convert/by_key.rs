//! Actions on jobs named by key (Kick, Kill, Delete, Modify with its `JobChange`) and the
//! queue's settings (SetLimit, SetReserving).

use super::job::{behaviours, deps};
use super::scalars::{bad_enum, byte, job_keys, override_mode, request_id};
use super::ConvertError;
use crate::pb;
use queue_fsm::{Command, JobChange, JobKey, Request, RequestId};

/// `requirements` present replaces the job's requirements. A repeated field replaces the
/// job's only with its `set_*` flag (and may then be empty); given without its flag, it is
/// refused rather than silently ignored.
impl TryFrom<pb::JobChange> for JobChange {
    type Error = ConvertError;

    fn try_from(c: pb::JobChange) -> Result<JobChange, ConvertError> {
        fn replace<T>(
            set: bool,
            field: &str,
            flag: &str,
            v: Vec<T>,
        ) -> Result<Option<Vec<T>>, ConvertError> {
            if set {
                Ok(Some(v))
            } else if v.is_empty() {
                Ok(None)
            } else {
                Err(ConvertError::new(
                    field,
                    format!(
                        "is given but {flag} is false; set {flag} to replace the job's {field}"
                    ),
                ))
            }
        }
        let deps = match replace(c.set_deps, "deps", "set_deps", c.deps)? {
            Some(ds) => Some(deps(ds)?),
            None => None,
        };
        let behaviours = match replace(
            c.set_behaviours,
            "behaviours",
            "set_behaviours",
            c.behaviours,
        )? {
            Some(bs) => Some(behaviours(bs)?),
            None => None,
        };
        Ok(JobChange {
            cmd: c.cmd,
            cwd: c.cwd,
            cwd_matters: c.cwd_matters,
            change_home: c.change_home,
            rep_grp: c.rep_grp,
            req_grp: c.req_grp,
            requirements: c.requirements.map(Into::into),
            override_mode: c.r#override.map(override_mode).transpose()?,
            priority: c.priority.map(|v| byte("priority", v)).transpose()?,
            retries: c.retries.map(|v| byte("retries", v)).transpose()?,
            dep_grps: replace(c.set_dep_grps, "dep_grps", "set_dep_grps", c.dep_grps)?,
            deps,
            behaviours,
            limit_grps: replace(
                c.set_limit_grps,
                "limit_grps",
                "set_limit_grps",
                c.limit_grps,
            )?,
        })
    }
}

fn keys_request(r: pb::KeysRequest) -> Result<(Option<RequestId>, Vec<JobKey>), ConvertError> {
    Ok((request_id(&r.request_id)?, job_keys("keys", &r.keys)?))
}

pub fn kick_request(r: pb::KeysRequest) -> Result<Request, ConvertError> {
    let (id, keys) = keys_request(r)?;
    Ok(Request::new(id, Command::Kick { keys }))
}

pub fn kill_request(r: pb::KeysRequest) -> Result<Request, ConvertError> {
    let (id, keys) = keys_request(r)?;
    Ok(Request::new(id, Command::Kill { keys }))
}

pub fn delete_request(r: pb::KeysRequest) -> Result<Request, ConvertError> {
    let (id, keys) = keys_request(r)?;
    Ok(Request::new(id, Command::Delete { keys }))
}

/// Modify. `change` must be present (it may be empty); its errors name `change.…`.
pub fn modify_request(r: pb::ModifyRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let keys = job_keys("keys", &r.keys)?;
    let change = r.change.ok_or_else(|| ConvertError::missing("change"))?;
    let change = JobChange::try_from(change).map_err(|e| e.under("change"))?;
    Ok(Request::new(id, Command::Modify { keys, change }))
}

pub fn set_limit_request(r: pb::SetLimitRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    Ok(Request::new(
        id,
        Command::SetLimit {
            group: r.group,
            limit: r.limit,
        },
    ))
}

pub fn set_reserving_request(r: pb::SetReservingRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let mode =
        pb::set_reserving_request::Mode::try_from(r.mode).map_err(|_| bad_enum("mode", r.mode))?;
    Ok(Request::new(
        id,
        Command::SetReserving { mode: mode.into() },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testkit::{field_of, key};
    use queue_fsm::{Requirements, ReserveMode};

    #[test]
    fn validation_names_the_field() {
        // keys
        let keys = pb::KeysRequest {
            request_id: vec![],
            keys: vec![key("a").to_string(), "é".repeat(16)],
        };
        assert_eq!(field_of(kick_request(keys.clone())), "keys[1]");
        assert_eq!(field_of(kill_request(keys.clone())), "keys[1]");
        assert_eq!(field_of(delete_request(keys)), "keys[1]");

        // modify
        let modify = |c: pb::JobChange| {
            modify_request(pb::ModifyRequest {
                request_id: vec![],
                keys: vec![key("a").to_string()],
                change: Some(c),
            })
        };
        assert_eq!(
            field_of(modify(pb::JobChange {
                priority: Some(256),
                ..Default::default()
            })),
            "change.priority"
        );
        assert_eq!(
            field_of(modify(pb::JobChange {
                retries: Some(256),
                ..Default::default()
            })),
            "change.retries"
        );
        assert_eq!(
            field_of(modify(pb::JobChange {
                r#override: Some(9),
                ..Default::default()
            })),
            "change.override"
        );
        assert_eq!(
            field_of(modify(pb::JobChange {
                set_deps: true,
                deps: vec![pb::Dependency::default()],
                ..Default::default()
            })),
            "change.deps[0].target"
        );
        assert_eq!(
            field_of(modify(pb::JobChange {
                set_behaviours: true,
                behaviours: vec![pb::Behaviour {
                    when: 0,
                    action: None
                }],
                ..Default::default()
            })),
            "change.behaviours[0].action"
        );
        assert_eq!(
            field_of(modify(pb::JobChange {
                dep_grps: vec!["g".into()],
                ..Default::default()
            })),
            "change.dep_grps"
        );
        assert_eq!(
            field_of(modify_request(pb::ModifyRequest::default())),
            "change"
        );

        // enums
        assert_eq!(
            field_of(set_reserving_request(pb::SetReservingRequest {
                request_id: vec![],
                mode: 7,
            })),
            "mode"
        );
    }

    #[test]
    fn requests_convert() {
        let k = key("a");
        let r = modify_request(pb::ModifyRequest {
            request_id: vec![],
            keys: vec![k.to_string()],
            change: Some(pb::JobChange {
                priority: Some(3),
                requirements: Some(pb::Requirements::default()),
                set_deps: true,
                set_limit_grps: true,
                limit_grps: vec!["l".into()],
                ..Default::default()
            }),
        })
        .unwrap();
        assert_eq!(
            r.cmd,
            Command::Modify {
                keys: vec![k],
                change: JobChange {
                    priority: Some(3),
                    requirements: Some(Requirements::default()),
                    deps: Some(vec![]),
                    limit_grps: Some(vec!["l".into()]),
                    ..Default::default()
                }
            }
        );

        let r = set_reserving_request(pb::SetReservingRequest {
            request_id: vec![],
            mode: pb::set_reserving_request::Mode::Draining as i32,
        })
        .unwrap();
        assert_eq!(
            r.cmd,
            Command::SetReserving {
                mode: ReserveMode::Draining
            }
        );
    }
}
