//! Every bound the state machine enforces, named, and the validation that checks them.
//! Validation runs before any write, so an invalid command changes nothing.

use crate::command::CommandError;
use crate::job::{Action, Dependency, JobSpec, Requirements};

/// Jobs in one Add.
pub const MAX_JOBS_PER_ADD: usize = 100_000;
/// Keys in one Get/Kick/Kill/Delete/Modify.
pub const MAX_KEYS_PER_REQUEST: usize = 100_000;
/// A command line, in bytes.
pub const MAX_CMD_BYTES: usize = 64 * 1024;
/// A cwd or actual cwd, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// A group name (rep, req, dep, limit, scheduler) or host name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// The mounts string, in bytes.
pub const MAX_MOUNTS_BYTES: usize = 64 * 1024;
/// An environment (all `KEY=VALUE` entries together, per Add and per job override), in bytes.
pub const MAX_ENV_BYTES: usize = 1024 * 1024;
/// Dependencies of one job.
pub const MAX_DEPS_PER_JOB: usize = 10_000;
/// Dep groups one job belongs to.
pub const MAX_DEP_GRPS_PER_JOB: usize = 100;
/// Limit groups of one job.
pub const MAX_LIMIT_GRPS_PER_JOB: usize = 16;
/// Behaviours of one job.
pub const MAX_BEHAVIOURS_PER_JOB: usize = 16;
/// The longest scheduler group encoding (`SchedGroup::encode`: four numbers, every `other`
/// entry and every limit group at their longest), which a Reserve may name.
pub const MAX_SCHED_GROUP_BYTES: usize = 64
    + MAX_OTHER_REQUIREMENTS * (2 * MAX_NAME_BYTES + 2)
    + 1
    + MAX_LIMIT_GRPS_PER_JOB * (MAX_NAME_BYTES + 1);
/// Entries of `requirements.other`.
pub const MAX_OTHER_REQUIREMENTS: usize = 32;
/// RAM requirement (16 TiB).
pub const MAX_RAM_MB: u32 = 16 * 1024 * 1024;
/// Time requirement (366 days).
pub const MAX_TIME_S: u32 = 366 * 24 * 3600;
/// Cores requirement (4096 cores).
pub const MAX_CORES_MILLI: u32 = 4096 * 1000;
/// Disk requirement (1 PiB).
pub const MAX_DISK_GB: u32 = 1024 * 1024;
/// Stdout or stderr kept from one run (head + tail), in bytes.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;
/// A fail reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// Time-to-release of a reservation.
pub const MIN_TTR_MS: u64 = 1_000;
pub const MAX_TTR_MS: u64 = 24 * 3600 * 1000;
/// A limit group's limit (-1 = unlimited).
pub const MAX_LIMIT: i64 = 1_000_000_000;
/// Jobs returned by one query page.
pub const MAX_QUERY_JOBS: usize = 100_000;
/// Timers handled by one Tick; the node proposes another Tick if more are due.
pub const MAX_TIMERS_PER_TICK: usize = 10_000;

/// What is wrong with an input, and where: `field` is a path into the input
/// (`requirements.ram_mb`, `deps[3]`), `reason` completes the sentence "the field ...".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The refusal of a command whose input has this problem.
    pub(crate) fn into_invalid(self) -> CommandError {
        CommandError::Invalid {
            field: self.field,
            reason: self.reason,
        }
    }
}

fn name_ok(field: &str, s: &str, allow_empty: bool) -> Result<(), FieldError> {
    if s.is_empty() && !allow_empty {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(FieldError::new(
            field,
            format!("is {} bytes; the limit is {MAX_NAME_BYTES}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(FieldError::new(field, "must not contain a NUL byte"));
    }
    Ok(())
}

fn text_ok(field: &str, s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        return Err(FieldError::new(
            field,
            format!("is {} bytes; the limit is {max}", s.len()),
        ));
    }
    if s.contains('\0') {
        return Err(FieldError::new(field, "must not contain a NUL byte"));
    }
    Ok(())
}

/// Checks one `KEY=VALUE` list; returns its size in bytes.
pub(crate) fn env_ok(field: &str, env: &[String]) -> Result<usize, FieldError> {
    let mut total = 0usize;
    for (i, e) in env.iter().enumerate() {
        if !e.contains('=') || e.starts_with('=') {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                format!("{e:.40?} is not of the form KEY=VALUE"),
            ));
        }
        if e.contains('\0') {
            return Err(FieldError::new(
                format!("{field}[{i}]"),
                "must not contain a NUL byte",
            ));
        }
        total += e.len() + 1;
    }
    if total > MAX_ENV_BYTES {
        return Err(FieldError::new(
            field,
            format!("is {total} bytes; the limit is {MAX_ENV_BYTES}"),
        ));
    }
    Ok(total)
}

/// Parses a limit group entry `name` or `name:n`.
pub(crate) fn parse_limit_grp(s: &str) -> Result<(&str, Option<i64>), String> {
    match s.split_once(':') {
        None => Ok((s, None)),
        Some((name, n)) => {
            let n: i64 = n
                .parse()
                .map_err(|_| format!("{s:?}: the limit after ':' must be an integer"))?;
            if !(-1..=MAX_LIMIT).contains(&n) {
                return Err(format!(
                    "{s:?}: the limit must be -1 (unlimited) to {MAX_LIMIT}"
                ));
            }
            Ok((name, Some(n)))
        }
    }
}

/// Validates a job spec; the error names the field. Checks run in a fixed order, so the
/// first problem of a spec is always the one reported.
pub fn validate_spec(spec: &JobSpec) -> Result<(), FieldError> {
    validate_essence(spec)?;
    validate_requirements(&spec.requirements)?;
    validate_deps(spec)?;
    validate_behaviours(spec)?;
    env_ok("env_override", &spec.env_override)?;
    validate_limit_grps(spec)
}

/// Command, cwd, mounts and the rep and req group names.
fn validate_essence(spec: &JobSpec) -> Result<(), FieldError> {
    if spec.cmd.trim().is_empty() {
        return Err(FieldError::new("cmd", "must not be empty"));
    }
    text_ok("cmd", &spec.cmd, MAX_CMD_BYTES)?;
    text_ok("cwd", &spec.cwd, MAX_PATH_BYTES)?;
    if spec.cwd_matters && spec.cwd.is_empty() {
        return Err(FieldError::new(
            "cwd",
            "must be set when cwd_matters is true",
        ));
    }
    text_ok("mounts", &spec.mounts, MAX_MOUNTS_BYTES)?;
    name_ok("rep_grp", &spec.rep_grp, true)?;
    name_ok("req_grp", &spec.req_grp, true)
}

fn validate_requirements(r: &Requirements) -> Result<(), FieldError> {
    for (field, v, max) in [
        ("requirements.ram_mb", r.ram_mb, MAX_RAM_MB),
        ("requirements.time_s", r.time_s, MAX_TIME_S),
        ("requirements.cores_milli", r.cores_milli, MAX_CORES_MILLI),
        ("requirements.disk_gb", r.disk_gb, MAX_DISK_GB),
    ] {
        if v > max {
            return Err(FieldError::new(
                field,
                format!("is {v}; the limit is {max}"),
            ));
        }
    }
    if r.other.len() > MAX_OTHER_REQUIREMENTS {
        return Err(FieldError::new(
            "requirements.other",
            format!(
                "has {} entries; the limit is {MAX_OTHER_REQUIREMENTS}",
                r.other.len()
            ),
        ));
    }
    for (k, v) in &r.other {
        name_ok("requirements.other key", k, false)?;
        text_ok("requirements.other value", v, MAX_NAME_BYTES)?;
        // they go into the scheduler group's encoding (`SchedGroup`), which these separate
        if let Some(c) = k.chars().find(|c| ":=~,".contains(*c)) {
            return Err(FieldError::new(
                "requirements.other key",
                format!("{k:?} contains {c:?}; keys may not contain ':', '=', '~' or ','"),
            ));
        }
        if let Some(c) = v.chars().find(|c| ":~,".contains(*c)) {
            return Err(FieldError::new(
                "requirements.other value",
                format!("{v:?} contains {c:?}; values may not contain ':', '~' or ','"),
            ));
        }
    }
    Ok(())
}

/// Dep groups the job belongs to, and the dependencies it waits on.
fn validate_deps(spec: &JobSpec) -> Result<(), FieldError> {
    if spec.dep_grps.len() > MAX_DEP_GRPS_PER_JOB {
        return Err(FieldError::new(
            "dep_grps",
            format!(
                "has {}; the limit is {MAX_DEP_GRPS_PER_JOB}",
                spec.dep_grps.len()
            ),
        ));
    }
    for (i, g) in spec.dep_grps.iter().enumerate() {
        name_ok(&format!("dep_grps[{i}]"), g, false)?;
    }
    if spec.deps.len() > MAX_DEPS_PER_JOB {
        return Err(FieldError::new(
            "deps",
            format!("has {}; the limit is {MAX_DEPS_PER_JOB}", spec.deps.len()),
        ));
    }
    for (i, d) in spec.deps.iter().enumerate() {
        if let Dependency::Group(g) = d {
            name_ok(&format!("deps[{i}]"), g, false)?;
        }
    }
    Ok(())
}

fn validate_behaviours(spec: &JobSpec) -> Result<(), FieldError> {
    if spec.behaviours.len() > MAX_BEHAVIOURS_PER_JOB {
        return Err(FieldError::new(
            "behaviours",
            format!(
                "has {}; the limit is {MAX_BEHAVIOURS_PER_JOB}",
                spec.behaviours.len()
            ),
        ));
    }
    for (i, b) in spec.behaviours.iter().enumerate() {
        if let Action::Run(c) = &b.action {
            if c.trim().is_empty() {
                return Err(FieldError::new(
                    format!("behaviours[{i}].run"),
                    "must not be empty",
                ));
            }
            text_ok(&format!("behaviours[{i}].run"), c, MAX_CMD_BYTES)?;
        }
    }
    Ok(())
}

fn validate_limit_grps(spec: &JobSpec) -> Result<(), FieldError> {
    if spec.limit_grps.len() > MAX_LIMIT_GRPS_PER_JOB {
        return Err(FieldError::new(
            "limit_grps",
            format!(
                "has {}; the limit is {MAX_LIMIT_GRPS_PER_JOB}",
                spec.limit_grps.len()
            ),
        ));
    }
    for (i, g) in spec.limit_grps.iter().enumerate() {
        let field = format!("limit_grps[{i}]");
        let (name, _) = parse_limit_grp(g).map_err(|e| FieldError::new(field.clone(), e))?;
        name_ok(&field, name, false)?;
        if name.contains(',') || name.contains('~') {
            return Err(FieldError::new(field, "must not contain ',' or '~'"));
        }
    }
    Ok(())
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CommandError {
    CommandError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

pub(crate) fn check_name(field: &str, s: &str) -> Result<(), CommandError> {
    name_ok(field, s, false).map_err(FieldError::into_invalid)
}

pub(crate) fn check_text(field: &str, s: &str, max: usize) -> Result<(), CommandError> {
    text_ok(field, s, max).map_err(FieldError::into_invalid)
}

pub(crate) fn check_ttr(ttr_ms: u64) -> Result<(), CommandError> {
    if !(MIN_TTR_MS..=MAX_TTR_MS).contains(&ttr_ms) {
        return Err(invalid(
            "ttr_ms",
            format!("is {ttr_ms}; it must be {MIN_TTR_MS} to {MAX_TTR_MS}"),
        ));
    }
    Ok(())
}

pub(crate) fn check_count(field: &str, n: usize, max: usize) -> Result<(), CommandError> {
    if n > max {
        return Err(invalid(
            field,
            format!("has {n} entries; the limit is {max}"),
        ));
    }
    Ok(())
}
