//! The one mapping between the wire messages ([`pb`]) and `queue-fsm`'s types.
//!
//! - pb → fsm: input from the network, so untrusted. Every conversion that can meet a bad value
//!   returns [`ConvertError`], which names the field by its path in the request
//!   (`jobs[3].deps[0].job_key`). Nothing here panics, whatever the input. Only the checks
//!   that the types need are made here (ranges of narrower integers, id lengths, key syntax,
//!   required oneofs and messages, enum values); the state machine's validation
//!   (`queue_fsm::limits`) checks sizes and limits when the command is applied.
//! - fsm → pb: trusted, infallible (`From`), except that picking a response message out of a
//!   [`Response`] fails with `INTERNAL` when the state machine answered with an unexpected
//!   variant.
//! - Refusals: [`command_error_status`] / [`status_command_error`] carry a [`CommandError`]
//!   through a [`tonic::Status`] (code, message, and the postcard encoding in the
//!   `x-raftq-error-bin` metadata).
//!
//! Ids on the wire: request and runner ids are 16 bytes, big-endian `u128`; job keys are
//! 32 hex digits; environment hashes 64.

use crate::pb;
use queue_fsm::{
    Action, AddJobs, Behaviour, Command, CommandError, Dependency, FenceToken, Job, JobChange,
    JobKey, JobSpec, JobState, Listed, Match, NoJob, Override, Request, RequestId, Requirements,
    ReserveMode, Response, RunReport, RunnerId, Skip, StateName, Trigger,
};
use std::collections::BTreeMap;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// The binary metadata key that carries a postcard-encoded [`CommandError`].
pub const ERROR_METADATA_KEY: &str = "x-raftq-error-bin";

/// Bounds that keep an error's status within HTTP/2 header limits (hyper's default header
/// list is 16 KiB, and `grpc-message` is percent-encoded, binary metadata base64-encoded).
const MAX_STATUS_MESSAGE_BYTES: usize = 2048;
const MAX_ERROR_METADATA_BYTES: usize = 4096;
/// A longer dependency cycle is shown with its middle left out.
const CYCLE_SHOWN_EACH_END: usize = 16;
/// Characters of a bad input value quoted back in an error.
const QUOTE_CHARS: usize = 40;

// ---- errors ------------------------------------------------------------------------------

/// A message from the network that does not map to queue-fsm's types.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConvertError {
    /// Path of the offending field in the message, e.g. `jobs[3].deps[0].job_key`.
    pub field: String,
    pub reason: String,
}

impl ConvertError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConvertError {
        ConvertError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Puts `prefix` in front of the field path (`deps[0].job_key` under `jobs[3]`).
    pub fn under(mut self, prefix: &str) -> ConvertError {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }

    fn missing(field: &str) -> ConvertError {
        ConvertError::new(field, "is missing")
    }
}

/// `INVALID_ARGUMENT`, with the error (as `CommandError::Invalid`) in `x-raftq-error-bin` so
/// that the Rust client decodes it like any other refusal.
impl From<ConvertError> for Status {
    fn from(e: ConvertError) -> Status {
        let message = bounded(e.to_string(), MAX_STATUS_MESSAGE_BYTES);
        let mut status = Status::new(Code::InvalidArgument, message);
        attach_error(
            &mut status,
            &CommandError::Invalid {
                field: e.field,
                reason: e.reason,
            },
        );
        status
    }
}

/// The gRPC status for a refusal by the state machine: `INVALID_ARGUMENT` for bad input
/// (`InvalidJob`, `Invalid`, `Cycle`), `NOT_FOUND`, `FAILED_PRECONDITION` for `StaleFence` and
/// `WrongState`. The message is the error's `Display`; the postcard encoding of the error is
/// in the `x-raftq-error-bin` metadata (a very long cycle has its middle left out).
pub fn command_error_status(e: &CommandError) -> Status {
    let code = match e {
        CommandError::InvalidJob { .. }
        | CommandError::Invalid { .. }
        | CommandError::Cycle { .. } => Code::InvalidArgument,
        CommandError::NotFound { .. } => Code::NotFound,
        CommandError::StaleFence { .. } | CommandError::WrongState { .. } => {
            Code::FailedPrecondition
        }
    };
    let shown = shorten(e);
    let e = shown.as_ref().unwrap_or(e);
    let mut status = Status::new(code, bounded(e.to_string(), MAX_STATUS_MESSAGE_BYTES));
    attach_error(&mut status, e);
    status
}

/// The refusal carried by a status made with [`command_error_status`] (or from a
/// [`ConvertError`]); `None` when the status carries none or it does not decode.
pub fn status_command_error(s: &Status) -> Option<CommandError> {
    let bytes = s.metadata().get_bin(ERROR_METADATA_KEY)?.to_bytes().ok()?;
    postcard::from_bytes(&bytes).ok()
}

fn attach_error(status: &mut Status, e: &CommandError) {
    if let Ok(bytes) = postcard::to_stdvec(e) {
        if bytes.len() <= MAX_ERROR_METADATA_BYTES {
            status
                .metadata_mut()
                .insert_bin(ERROR_METADATA_KEY, MetadataValue::from_bytes(&bytes));
        }
    }
}

/// A cycle too long to show whole, with its middle replaced by a count.
fn shorten(e: &CommandError) -> Option<CommandError> {
    match e {
        CommandError::Cycle { index, cycle } if cycle.len() > 2 * CYCLE_SHOWN_EACH_END + 1 => {
            let left_out = cycle.len() - 2 * CYCLE_SHOWN_EACH_END;
            let mut shown = cycle[..CYCLE_SHOWN_EACH_END].to_vec();
            shown.push(format!("({left_out} more)"));
            shown.extend_from_slice(&cycle[cycle.len() - CYCLE_SHOWN_EACH_END..]);
            Some(CommandError::Cycle {
                index: *index,
                cycle: shown,
            })
        }
        _ => None,
    }
}

/// `s` cut to at most `max` bytes (at a character boundary), marked with `…` when cut.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A bad value quoted back to the sender, cut short.
fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

// ---- ids and keys ------------------------------------------------------------------------

/// A request id: 16 bytes (big-endian `u128`), or empty for none. Field `request_id`.
pub fn request_id(b: &[u8]) -> Result<Option<RequestId>, ConvertError> {
    if b.is_empty() {
        return Ok(None);
    }
    id16("request_id", b, " (or empty for none)").map(|v| Some(RequestId(v)))
}

/// A runner id: exactly 16 bytes (big-endian `u128`). Field `runner_id`.
pub fn runner_id(b: &[u8]) -> Result<RunnerId, ConvertError> {
    id16("runner_id", b, "").map(RunnerId)
}

/// The wire form of a request id (the client's side of [`request_id`]).
pub fn request_id_bytes(id: Option<RequestId>) -> Vec<u8> {
    id.map_or_else(Vec::new, |id| id.0.to_be_bytes().to_vec())
}

/// The wire form of a runner id (the client's side of [`runner_id`]).
pub fn runner_id_bytes(id: RunnerId) -> Vec<u8> {
    id.0.to_be_bytes().to_vec()
}

fn id16(field: &str, b: &[u8], alt: &str) -> Result<u128, ConvertError> {
    let bytes: [u8; 16] = b.try_into().map_err(|_| {
        ConvertError::new(field, format!("is {} bytes; it must be 16{alt}", b.len()))
    })?;
    Ok(u128::from_be_bytes(bytes))
}

/// A job key from its 32-hex-digit form; the error names `field`.
pub fn job_key(field: &str, s: &str) -> Result<JobKey, ConvertError> {
    JobKey::parse(s).ok_or_else(|| {
        ConvertError::new(field, format!("{} is not a 32-hex-digit job key", quote(s)))
    })
}

/// Job keys; an error names `field[i]`.
pub fn job_keys(field: &str, keys: &[String]) -> Result<Vec<JobKey>, ConvertError> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| job_key(&format!("{field}[{i}]"), k))
        .collect()
}

/// An environment hash from its 64-hex-digit form (GetEnv). Field `env_hash`.
pub fn env_hash(s: &str) -> Result<[u8; 32], ConvertError> {
    let bad = || {
        ConvertError::new(
            "env_hash",
            format!("{} is not a 64-hex-digit environment hash", quote(s)),
        )
    };
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks(2)) {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        *o = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

fn byte(field: &str, v: u32) -> Result<u8, ConvertError> {
    u8::try_from(v).map_err(|_| ConvertError::new(field, format!("is {v}; it must be 0 to 255")))
}

fn override_mode(v: u32) -> Result<Override, ConvertError> {
    u8::try_from(v)
        .ok()
        .and_then(Override::from_u8)
        .ok_or_else(|| {
            ConvertError::new(
                "override",
                format!("is {v}; it must be 0 (learned), 1 (learned if higher) or 2 (user)"),
            )
        })
}

fn bad_enum(field: &str, v: i32) -> ConvertError {
    ConvertError::new(field, format!("{v} is not a known value"))
}

// ---- enums -------------------------------------------------------------------------------

impl From<StateName> for pb::JobState {
    fn from(s: StateName) -> pb::JobState {
        match s {
            StateName::Dependent => pb::JobState::Dependent,
            StateName::Delayed => pb::JobState::Delayed,
            StateName::Ready => pb::JobState::Ready,
            StateName::Reserved => pb::JobState::Reserved,
            StateName::Running => pb::JobState::Running,
            StateName::Lost => pb::JobState::Lost,
            StateName::Buried => pb::JobState::Buried,
            StateName::Complete => pb::JobState::Complete,
        }
    }
}

impl From<pb::JobState> for StateName {
    fn from(s: pb::JobState) -> StateName {
        match s {
            pb::JobState::Dependent => StateName::Dependent,
            pb::JobState::Delayed => StateName::Delayed,
            pb::JobState::Ready => StateName::Ready,
            pb::JobState::Reserved => StateName::Reserved,
            pb::JobState::Running => StateName::Running,
            pb::JobState::Lost => StateName::Lost,
            pb::JobState::Buried => StateName::Buried,
            pb::JobState::Complete => StateName::Complete,
        }
    }
}

/// A `JobState` field as prost stores it (`i32`). Field `state`.
pub fn state_name(v: i32) -> Result<StateName, ConvertError> {
    pb::JobState::try_from(v)
        .map(StateName::from)
        .map_err(|_| bad_enum("state", v))
}

impl From<Trigger> for pb::behaviour::When {
    fn from(t: Trigger) -> pb::behaviour::When {
        match t {
            Trigger::OnSuccess => pb::behaviour::When::OnSuccess,
            Trigger::OnFailure => pb::behaviour::When::OnFailure,
            Trigger::OnExit => pb::behaviour::When::OnExit,
        }
    }
}

impl From<pb::behaviour::When> for Trigger {
    fn from(w: pb::behaviour::When) -> Trigger {
        match w {
            pb::behaviour::When::OnSuccess => Trigger::OnSuccess,
            pb::behaviour::When::OnFailure => Trigger::OnFailure,
            pb::behaviour::When::OnExit => Trigger::OnExit,
        }
    }
}

impl From<NoJob> for pb::reserve_response::NoJob {
    fn from(n: NoJob) -> pb::reserve_response::NoJob {
        match n {
            NoJob::NoneReady => pb::reserve_response::NoJob::NoneReady,
            NoJob::Paused => pb::reserve_response::NoJob::Paused,
            NoJob::Draining => pb::reserve_response::NoJob::Draining,
        }
    }
}

impl From<pb::set_reserving_request::Mode> for ReserveMode {
    fn from(m: pb::set_reserving_request::Mode) -> ReserveMode {
        match m {
            pb::set_reserving_request::Mode::Open => ReserveMode::Open,
            pb::set_reserving_request::Mode::Paused => ReserveMode::Paused,
            pb::set_reserving_request::Mode::Draining => ReserveMode::Draining,
        }
    }
}

impl From<ReserveMode> for pb::set_reserving_request::Mode {
    fn from(m: ReserveMode) -> pb::set_reserving_request::Mode {
        match m {
            ReserveMode::Open => pb::set_reserving_request::Mode::Open,
            ReserveMode::Paused => pb::set_reserving_request::Mode::Paused,
            ReserveMode::Draining => pb::set_reserving_request::Mode::Draining,
        }
    }
}

impl From<pb::search_request::Match> for Match {
    fn from(m: pb::search_request::Match) -> Match {
        match m {
            pb::search_request::Match::Exact => Match::Exact,
            pb::search_request::Match::Prefix => Match::Prefix,
            pb::search_request::Match::Substring => Match::Substring,
        }
    }
}

// ---- the job model -----------------------------------------------------------------------

impl From<Requirements> for pb::Requirements {
    fn from(r: Requirements) -> pb::Requirements {
        pb::Requirements {
            ram_mb: r.ram_mb,
            time_s: r.time_s,
            cores_milli: r.cores_milli,
            disk_gb: r.disk_gb,
            other: r.other.into_iter().collect(),
        }
    }
}

/// Cannot fail: every value fits (the state machine checks the limits).
impl From<pb::Requirements> for Requirements {
    fn from(r: pb::Requirements) -> Requirements {
        Requirements {
            ram_mb: r.ram_mb,
            time_s: r.time_s,
            cores_milli: r.cores_milli,
            disk_gb: r.disk_gb,
            other: r.other.into_iter().collect(),
        }
    }
}

impl From<Dependency> for pb::Dependency {
    fn from(d: Dependency) -> pb::Dependency {
        let target = match d {
            Dependency::Group(g) => pb::dependency::Target::DepGroup(g),
            Dependency::Job(k) => pb::dependency::Target::JobKey(k.to_string()),
        };
        pb::Dependency {
            target: Some(target),
        }
    }
}

/// Errors name `target` (absent) or `job_key`.
impl TryFrom<pb::Dependency> for Dependency {
    type Error = ConvertError;

    fn try_from(d: pb::Dependency) -> Result<Dependency, ConvertError> {
        match d.target {
            Some(pb::dependency::Target::DepGroup(g)) => Ok(Dependency::Group(g)),
            Some(pb::dependency::Target::JobKey(k)) => Ok(Dependency::Job(job_key("job_key", &k)?)),
            None => Err(ConvertError::new(
                "target",
                "is missing; set dep_group or job_key",
            )),
        }
    }
}

impl From<Behaviour> for pb::Behaviour {
    fn from(b: Behaviour) -> pb::Behaviour {
        let action = match b.action {
            Action::Cleanup => pb::behaviour::Action::Cleanup(true),
            Action::CleanupAll => pb::behaviour::Action::CleanupAll(true),
            Action::Run(c) => pb::behaviour::Action::Run(c),
            Action::Remove => pb::behaviour::Action::Remove(true),
        };
        pb::Behaviour {
            when: pb::behaviour::When::from(b.when) as i32,
            action: Some(action),
        }
    }
}

/// Errors name `when` (unknown value), `action` (absent) or the action's field (a flag action
/// set to false: the field that is set chooses the action, so false would be ambiguous).
impl TryFrom<pb::Behaviour> for Behaviour {
    type Error = ConvertError;

    fn try_from(b: pb::Behaviour) -> Result<Behaviour, ConvertError> {
        let when = pb::behaviour::When::try_from(b.when)
            .map(Trigger::from)
            .map_err(|_| bad_enum("when", b.when))?;
        let flag = |field: &str, set: bool, action: Action| {
            if set {
                Ok(action)
            } else {
                Err(ConvertError::new(
                    field,
                    "is false; set the action's field to true (the field that is set chooses the action)",
                ))
            }
        };
        let action = match b.action {
            Some(pb::behaviour::Action::Cleanup(v)) => flag("cleanup", v, Action::Cleanup)?,
            Some(pb::behaviour::Action::CleanupAll(v)) => {
                flag("cleanup_all", v, Action::CleanupAll)?
            }
            Some(pb::behaviour::Action::Run(c)) => Action::Run(c),
            Some(pb::behaviour::Action::Remove(v)) => flag("remove", v, Action::Remove)?,
            None => {
                return Err(ConvertError::new(
                    "action",
                    "is missing; set cleanup, cleanup_all, run or remove",
                ))
            }
        };
        Ok(Behaviour { when, action })
    }
}

impl From<RunReport> for pb::RunReport {
    fn from(r: RunReport) -> pb::RunReport {
        pb::RunReport {
            exited: r.exited,
            exit_code: r.exit_code,
            peak_ram_mb: r.peak_ram_mb,
            peak_disk_mb: r.peak_disk_mb,
            cpu_ms: r.cpu_ms,
            wall_ms: r.wall_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            actual_cwd: r.actual_cwd,
            stdout: r.stdout,
            stderr: r.stderr,
        }
    }
}

/// Cannot fail: the types are the same (the state machine checks sizes).
impl From<pb::RunReport> for RunReport {
    fn from(r: pb::RunReport) -> RunReport {
        RunReport {
            exited: r.exited,
            exit_code: r.exit_code,
            peak_ram_mb: r.peak_ram_mb,
            peak_disk_mb: r.peak_disk_mb,
            cpu_ms: r.cpu_ms,
            wall_ms: r.wall_ms,
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            actual_cwd: r.actual_cwd,
            stdout: r.stdout,
            stderr: r.stderr,
        }
    }
}

impl From<JobSpec> for pb::JobSpec {
    fn from(s: JobSpec) -> pb::JobSpec {
        pb::JobSpec {
            cmd: s.cmd,
            cwd: s.cwd,
            cwd_matters: s.cwd_matters,
            change_home: s.change_home,
            mounts: s.mounts,
            rep_grp: s.rep_grp,
            req_grp: s.req_grp,
            requirements: Some(s.requirements.into()),
            r#override: s.override_mode as u32,
            priority: s.priority.into(),
            retries: s.retries.into(),
            dep_grps: s.dep_grps,
            deps: s.deps.into_iter().map(Into::into).collect(),
            behaviours: s.behaviours.into_iter().map(Into::into).collect(),
            env_override: s.env_override,
            limit_grps: s.limit_grps,
        }
    }
}

/// Absent `requirements` means all zero. Errors name the field relative to the spec
/// (`priority`, `deps[0].job_key`, …).
impl TryFrom<pb::JobSpec> for JobSpec {
    type Error = ConvertError;

    fn try_from(s: pb::JobSpec) -> Result<JobSpec, ConvertError> {
        Ok(JobSpec {
            override_mode: override_mode(s.r#override)?,
            priority: byte("priority", s.priority)?,
            retries: byte("retries", s.retries)?,
            deps: deps(s.deps)?,
            behaviours: behaviours(s.behaviours)?,
            cmd: s.cmd,
            cwd: s.cwd,
            cwd_matters: s.cwd_matters,
            change_home: s.change_home,
            mounts: s.mounts,
            rep_grp: s.rep_grp,
            req_grp: s.req_grp,
            requirements: s.requirements.map(Into::into).unwrap_or_default(),
            dep_grps: s.dep_grps,
            env_override: s.env_override,
            limit_grps: s.limit_grps,
        })
    }
}

fn deps(ds: Vec<pb::Dependency>) -> Result<Vec<Dependency>, ConvertError> {
    ds.into_iter()
        .enumerate()
        .map(|(i, d)| Dependency::try_from(d).map_err(|e| e.under(&format!("deps[{i}]"))))
        .collect()
}

fn behaviours(bs: Vec<pb::Behaviour>) -> Result<Vec<Behaviour>, ConvertError> {
    bs.into_iter()
        .enumerate()
        .map(|(i, b)| Behaviour::try_from(b).map_err(|e| e.under(&format!("behaviours[{i}]"))))
        .collect()
}

/// A stored job as the client sees it. The reservation's fence, lease and kill flag are set
/// for reserved, running and lost jobs; `until_ms` is the delay's end (delayed) or the return
/// time (lost); `similar` is 0 (the `From<Listed>` conversion sets it).
impl From<Job> for pb::Job {
    fn from(j: Job) -> pb::Job {
        let state = pb::JobState::from(j.state.name()) as i32;
        let (fence, lease_until_ms, kill_requested) =
            j.state.reservation().map_or((0, 0, false), |r| {
                (r.fence.0, r.lease_until_ms, r.kill_requested)
            });
        let until_ms = match j.state {
            JobState::Delayed { until_ms } => until_ms,
            JobState::Lost { return_ms, .. } => return_ms,
            _ => 0,
        };
        pb::Job {
            key: j.key.to_string(),
            spec: Some(j.spec.into()),
            effective: Some(j.effective.into()),
            sched_group: j.sched_group,
            state,
            waiting: j.waiting,
            attempts: j.attempts,
            until_buried: j.until_buried.into(),
            added_ms: j.added_ms,
            env_hash: j.env_hash.map_or_else(String::new, |h| hex(&h)),
            host: j.run.host,
            pid: j.run.pid,
            fail_reason: j.run.fail_reason,
            last_run: j.run.report.map(Into::into),
            fence,
            lease_until_ms,
            kill_requested,
            until_ms,
            similar: 0,
        }
    }
}

/// A query result: the job with its `similar` count.
impl From<Listed> for pb::Job {
    fn from(l: Listed) -> pb::Job {
        pb::Job {
            similar: l.similar,
            ..l.job.into()
        }
    }
}

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

// ---- requests (pb → fsm) -----------------------------------------------------------------

/// The job a runner holds: `job` must be present; errors name `job` or `job.key`.
fn job_ref(j: Option<pb::JobRef>) -> Result<(JobKey, FenceToken), ConvertError> {
    let j = j.ok_or_else(|| ConvertError::missing("job"))?;
    Ok((job_key("job.key", &j.key)?, FenceToken(j.fence)))
}

/// Add. Errors in a job name it as `jobs[i]…`.
pub fn add_request(r: pb::AddRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let jobs = r
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, s)| JobSpec::try_from(s).map_err(|e| e.under(&format!("jobs[{i}]"))))
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
    let id = request_id(&r.request_id)?;
    let (key, fence) = job_ref(r.job)?;
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
    let id = request_id(&r.request_id)?;
    let (key, fence) = job_ref(r.job)?;
    Ok(Request::new(id, Command::Touch { key, fence }))
}

/// Archive. The run report is required (resource learning depends on it).
pub fn archive_request(r: pb::ArchiveRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let (key, fence) = job_ref(r.job)?;
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

pub fn release_request(r: pb::ReleaseRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let (key, fence) = job_ref(r.job)?;
    Ok(Request::new(
        id,
        Command::Release {
            key,
            fence,
            report: r.report.map(Into::into),
            reason: r.reason,
        },
    ))
}

pub fn bury_request(r: pb::BuryRequest) -> Result<Request, ConvertError> {
    let id = request_id(&r.request_id)?;
    let (key, fence) = job_ref(r.job)?;
    Ok(Request::new(
        id,
        Command::Bury {
            key,
            fence,
            report: r.report.map(Into::into),
            reason: r.reason,
        },
    ))
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

/// A Search request's parameters in queue-fsm's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchQuery {
    /// Empty with `incomplete_only`: all incomplete jobs.
    pub rep_grp: String,
    pub how: Match,
    pub state: Option<StateName>,
    /// Keep this many per (state, fail reason, exit code); 0 keeps all.
    pub limit: usize,
    pub incomplete_only: bool,
    pub stale: bool,
}

/// Search. Errors name `match` or `state`.
pub fn search_query(r: pb::SearchRequest) -> Result<SearchQuery, ConvertError> {
    let how = pb::search_request::Match::try_from(r.r#match)
        .map(Match::from)
        .map_err(|_| bad_enum("match", r.r#match))?;
    Ok(SearchQuery {
        rep_grp: r.rep_grp,
        how,
        state: r.state.map(state_name).transpose()?,
        limit: usize::try_from(r.limit).unwrap_or(usize::MAX),
        incomplete_only: r.incomplete_only,
        stale: r.stale,
    })
}

// ---- responses (fsm → pb) ----------------------------------------------------------------

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
            state: pb::JobState::from(state) as i32,
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
    use queue_fsm::{Reservation, RunInfo};

    fn key(s: &str) -> JobKey {
        JobKey::of(s, "", false, "")
    }

    fn full_requirements() -> Requirements {
        Requirements {
            ram_mb: 2048,
            time_s: 3600,
            cores_milli: 1500,
            disk_gb: 10,
            other: [
                ("gpu".to_string(), "a100".to_string()),
                ("x".into(), "y".into()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn full_report() -> RunReport {
        RunReport {
            exited: true,
            exit_code: -3,
            peak_ram_mb: 100,
            peak_disk_mb: 200,
            cpu_ms: 300,
            wall_ms: 400,
            started_ms: 500,
            ended_ms: 900,
            actual_cwd: "/tmp/w".into(),
            stdout: "out".into(),
            stderr: "err ✓".into(),
        }
    }

    fn full_spec() -> JobSpec {
        JobSpec {
            cmd: "echo hi".into(),
            cwd: "/home/u".into(),
            cwd_matters: true,
            change_home: true,
            mounts: "m1".into(),
            rep_grp: "rep".into(),
            req_grp: "req".into(),
            requirements: full_requirements(),
            override_mode: Override::LearnedIfHigher,
            priority: 255,
            retries: 7,
            dep_grps: vec!["g1".into(), "g2".into()],
            deps: vec![Dependency::Group("other".into()), Dependency::Job(key("a"))],
            behaviours: vec![
                Behaviour {
                    when: Trigger::OnSuccess,
                    action: Action::Cleanup,
                },
                Behaviour {
                    when: Trigger::OnFailure,
                    action: Action::Run("notify".into()),
                },
                Behaviour {
                    when: Trigger::OnExit,
                    action: Action::CleanupAll,
                },
                Behaviour {
                    when: Trigger::OnFailure,
                    action: Action::Remove,
                },
            ],
            env_override: vec!["A=1".into()],
            limit_grps: vec!["l".into(), "m:3".into()],
        }
    }

    fn reservation() -> Reservation {
        Reservation {
            runner: RunnerId(9),
            fence: FenceToken(42),
            ttr_ms: 60_000,
            lease_until_ms: 123_456,
            kill_requested: true,
        }
    }

    fn full_job(state: JobState) -> Job {
        Job {
            serial: 9,
            key: full_spec().key(),
            spec: full_spec(),
            env_hash: Some([0xab; 32]),
            effective: full_requirements(),
            sched_group: "2048:60:1500:10".into(),
            state,
            waiting: 0,
            seq: 17,
            attempts: 2,
            until_buried: 5,
            added_ms: 1_000,
            run: RunInfo {
                host: "node1".into(),
                pid: 4321,
                report: Some(full_report()),
                fail_reason: "command used too much RAM".into(),
            },
        }
    }

    fn field_of<T: std::fmt::Debug>(r: Result<T, ConvertError>) -> String {
        r.expect_err("conversion should fail").field
    }

    #[test]
    fn job_model_round_trips() {
        let spec = full_spec();
        assert_eq!(JobSpec::try_from(pb::JobSpec::from(spec.clone())), Ok(spec));
        let default = JobSpec::new("x");
        assert_eq!(
            JobSpec::try_from(pb::JobSpec::from(default.clone())),
            Ok(default)
        );
        let req = full_requirements();
        assert_eq!(Requirements::from(pb::Requirements::from(req.clone())), req);
        for d in full_spec().deps {
            assert_eq!(Dependency::try_from(pb::Dependency::from(d.clone())), Ok(d));
        }
        for b in full_spec().behaviours {
            assert_eq!(Behaviour::try_from(pb::Behaviour::from(b.clone())), Ok(b));
        }
        let rep = full_report();
        assert_eq!(RunReport::from(pb::RunReport::from(rep.clone())), rep);
        for s in StateName::ALL {
            assert_eq!(StateName::from(pb::JobState::from(s)), s);
            assert_eq!(state_name(pb::JobState::from(s) as i32), Ok(s));
        }
    }

    #[test]
    fn spec_without_requirements_defaults() {
        let p = pb::JobSpec {
            cmd: "x".into(),
            ..Default::default()
        };
        assert_eq!(JobSpec::try_from(p), Ok(JobSpec::new("x")));
    }

    #[test]
    fn validation_names_the_field() {
        let spec = |f: fn(&mut pb::JobSpec)| {
            let mut s = pb::JobSpec::from(full_spec());
            f(&mut s);
            let mut jobs = vec![pb::JobSpec::from(JobSpec::new("ok")); 3];
            jobs.push(s);
            add_request(pb::AddRequest {
                jobs,
                ..Default::default()
            })
        };
        assert_eq!(field_of(spec(|s| s.priority = 256)), "jobs[3].priority");
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

        // request and runner ids
        for n in [1, 15, 17, 32] {
            let r = pb::AddRequest {
                request_id: vec![1; n],
                ..Default::default()
            };
            assert_eq!(field_of(add_request(r)), "request_id");
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
            field_of(release_request(pb::ReleaseRequest {
                job: bad_ref.clone(),
                ..Default::default()
            })),
            "job.key"
        );
        assert_eq!(
            field_of(bury_request(pb::BuryRequest {
                job: bad_ref,
                ..Default::default()
            })),
            "job.key"
        );

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
        assert_eq!(
            field_of(search_query(pb::SearchRequest {
                r#match: 3,
                ..Default::default()
            })),
            "match"
        );
        assert_eq!(
            field_of(search_query(pb::SearchRequest {
                state: Some(8),
                ..Default::default()
            })),
            "state"
        );
        assert_eq!(field_of(env_hash("ab")), "env_hash");
        assert_eq!(field_of(env_hash(&"é".repeat(32))), "env_hash");
    }

    #[test]
    fn long_bad_values_are_cut_short() {
        let e = job_key("k", &"x".repeat(10_000)).unwrap_err();
        assert!(e.reason.len() < 100, "{e}");
    }

    #[test]
    fn requests_convert() {
        let rid = RequestId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let r = add_request(pb::AddRequest {
            request_id: request_id_bytes(Some(rid)),
            jobs: vec![full_spec().into()],
            env: vec!["A=1".into()],
            ignore_complete: true,
            return_keys: true,
        })
        .unwrap();
        assert_eq!(r.id, Some(rid));
        assert_eq!(
            r.cmd,
            Command::Add(AddJobs {
                jobs: vec![full_spec()],
                env: vec!["A=1".into()],
                ignore_complete: true,
                return_keys: true,
            })
        );
        assert_eq!(request_id(&rid.0.to_be_bytes()), Ok(Some(rid)));
        assert_eq!(request_id(&[]), Ok(None));

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
        let r = release_request(pb::ReleaseRequest {
            request_id: vec![],
            job: job.clone(),
            report: None,
            reason: "why".into(),
        })
        .unwrap();
        assert_eq!(
            r.cmd,
            Command::Release {
                key: k,
                fence: FenceToken(9),
                report: None,
                reason: "why".into()
            }
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

    #[test]
    fn command_errors_survive_a_status() {
        let k = key("a");
        let errors = [
            CommandError::InvalidJob {
                index: 3,
                field: "cmd".into(),
                reason: "must not be empty".into(),
            },
            CommandError::Invalid {
                field: "ttr_ms".into(),
                reason: "is 1".into(),
            },
            CommandError::NotFound { key: k },
            CommandError::StaleFence {
                key: k,
                presented: FenceToken(1),
                current: Some(FenceToken(2)),
            },
            CommandError::WrongState {
                key: k,
                op: "touch".into(),
                state: StateName::Buried,
                expected: "reserved or running".into(),
            },
            CommandError::Cycle {
                index: 0,
                cycle: vec!["a".into(), "b".into(), "a".into()],
            },
        ];
        let codes = [
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::FailedPrecondition,
            Code::InvalidArgument,
        ];
        for (e, code) in errors.iter().zip(codes) {
            let s = command_error_status(e);
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), e.to_string());
            assert_eq!(status_command_error(&s).as_ref(), Some(e));
        }
        assert_eq!(status_command_error(&Status::internal("x")), None);

        let s = Status::from(ConvertError::new("jobs[0].priority", "is 300"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "jobs[0].priority: is 300");
        assert_eq!(
            status_command_error(&s),
            Some(CommandError::Invalid {
                field: "jobs[0].priority".into(),
                reason: "is 300".into()
            })
        );
    }

    #[test]
    fn a_long_cycle_is_shortened() {
        let cycle: Vec<String> = (0..10_000).map(|i| format!("job {i:032x}")).collect();
        let s = command_error_status(&CommandError::Cycle { index: 1, cycle });
        assert!(s.message().len() <= MAX_STATUS_MESSAGE_BYTES);
        match status_command_error(&s) {
            Some(CommandError::Cycle { index: 1, cycle }) => {
                assert_eq!(cycle.len(), 2 * CYCLE_SHOWN_EACH_END + 1);
                assert_eq!(cycle[CYCLE_SHOWN_EACH_END], "(9968 more)");
                assert_eq!(cycle.last().unwrap(), &format!("job {:032x}", 9_999));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_job_converts() {
        let j = pb::Job::from(full_job(JobState::Running(reservation())));
        assert_eq!(j.key, full_spec().key().to_string());
        assert_eq!(j.spec, Some(full_spec().into()));
        assert_eq!(j.effective, Some(full_requirements().into()));
        assert_eq!(j.sched_group, "2048:60:1500:10");
        assert_eq!(j.state, pb::JobState::Running as i32);
        assert_eq!((j.attempts, j.until_buried, j.added_ms), (2, 5, 1_000));
        assert_eq!(j.env_hash, "ab".repeat(32));
        assert_eq!((j.host.as_str(), j.pid), ("node1", 4321));
        assert_eq!(j.fail_reason, "command used too much RAM");
        assert_eq!(j.last_run, Some(full_report().into()));
        assert_eq!(
            (j.fence, j.lease_until_ms, j.kill_requested),
            (42, 123_456, true)
        );
        assert_eq!((j.until_ms, j.similar), (0, 0));

        let j = pb::Job::from(full_job(JobState::Lost {
            held: reservation(),
            started: true,
            return_ms: 999,
        }));
        assert_eq!(j.state, pb::JobState::Lost as i32);
        assert_eq!((j.fence, j.until_ms), (42, 999));

        let mut job = full_job(JobState::Delayed { until_ms: 77 });
        job.env_hash = None;
        job.run = RunInfo::default();
        let j = pb::Job::from(Listed { job, similar: 4 });
        assert_eq!(j.state, pb::JobState::Delayed as i32);
        assert_eq!((j.until_ms, j.fence, j.similar), (77, 0, 4));
        assert_eq!(j.env_hash, "");
        assert_eq!(j.last_run, None);

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
        assert_eq!(r.state, pb::JobState::Buried as i32);
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

    #[test]
    fn odd_input_does_not_panic() {
        // Non-ASCII of the right byte length, and every enum value around the valid range.
        let _ = job_key("k", &"ü".repeat(16));
        let _ = job_key("k", "ab\u{0}");
        for v in [i32::MIN, -1, 0, 1, 2, 3, 8, i32::MAX] {
            let _ = state_name(v);
            let _ = Behaviour::try_from(pb::Behaviour {
                when: v,
                action: Some(pb::behaviour::Action::Cleanup(true)),
            });
            let _ = set_reserving_request(pb::SetReservingRequest {
                request_id: vec![],
                mode: v,
            });
        }
        let _ = add_request(pb::AddRequest {
            jobs: vec![pb::JobSpec::default(); 3],
            ..Default::default()
        });
        assert_eq!(bounded("ééé".into(), 4), "…");
        assert_eq!(bounded("abc".into(), 3), "abc");
    }
}
