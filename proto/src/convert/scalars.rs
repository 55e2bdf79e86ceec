//! Ids, keys and hashes, narrow integers and enums: the scalars of the wire messages.

use super::error::quote;
use super::ConvertError;
use crate::pb;
use queue_fsm::{
    JobKey, Match, NoJob, Override, RequestId, ReserveMode, RunnerId, StateName, Trigger,
};

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
    // every list of keys (Get too, which no state machine check bounds) is bounded here
    let max = queue_fsm::limits::MAX_KEYS_PER_REQUEST;
    if keys.len() > max {
        return Err(ConvertError::new(
            field,
            format!("has {} entries; the limit is {max}", keys.len()),
        ));
    }
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

pub(super) fn byte(field: &str, v: u32) -> Result<u8, ConvertError> {
    u8::try_from(v).map_err(|_| ConvertError::new(field, format!("is {v}; it must be 0 to 255")))
}

pub(super) fn override_mode(v: u32) -> Result<Override, ConvertError> {
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

pub(super) fn bad_enum(field: &str, v: i32) -> ConvertError {
    ConvertError::new(field, format!("{v} is not a known value"))
}
// ---- enums -------------------------------------------------------------------------------

impl From<StateName> for pb::StateName {
    fn from(s: StateName) -> pb::StateName {
        match s {
            StateName::Dependent => pb::StateName::Dependent,
            StateName::Delayed => pb::StateName::Delayed,
            StateName::Ready => pb::StateName::Ready,
            StateName::Reserved => pb::StateName::Reserved,
            StateName::Running => pb::StateName::Running,
            StateName::Lost => pb::StateName::Lost,
            StateName::Buried => pb::StateName::Buried,
            StateName::Complete => pb::StateName::Complete,
        }
    }
}

impl From<pb::StateName> for StateName {
    fn from(s: pb::StateName) -> StateName {
        match s {
            pb::StateName::Dependent => StateName::Dependent,
            pb::StateName::Delayed => StateName::Delayed,
            pb::StateName::Ready => StateName::Ready,
            pb::StateName::Reserved => StateName::Reserved,
            pb::StateName::Running => StateName::Running,
            pb::StateName::Lost => StateName::Lost,
            pb::StateName::Buried => StateName::Buried,
            pb::StateName::Complete => StateName::Complete,
        }
    }
}

/// A `JobState` field as prost stores it (`i32`). Field `state`.
pub fn state_name(v: i32) -> Result<StateName, ConvertError> {
    pb::StateName::try_from(v)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testkit::field_of;

    #[test]
    fn validation_names_the_field() {
        assert_eq!(field_of(env_hash("ab")), "env_hash");
        assert_eq!(field_of(env_hash(&"é".repeat(32))), "env_hash");
    }

    #[test]
    fn a_list_of_keys_is_bounded() {
        let too_many = vec![String::new(); queue_fsm::limits::MAX_KEYS_PER_REQUEST + 1];
        assert_eq!(field_of(job_keys("keys", &too_many)), "keys");
    }

    #[test]
    fn long_bad_values_are_cut_short() {
        let e = job_key("k", &"x".repeat(10_000)).unwrap_err();
        assert!(e.reason.len() < 100, "{e}");
    }
}
