//! Errors of the conversion and the mapping of the state machine's refusals to and from a
//! gRPC [`Status`].

use queue_fsm::{CommandError, FenceToken, JobKey, StateName};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of raftq's refusals.
pub const ERROR_DOMAIN: &str = "raftq";

/// Bounds that keep an error's status within HTTP/2 header limits (hyper's default header
/// list is 16 KiB, and `grpc-message` is percent-encoded, binary metadata base64-encoded).
const MAX_STATUS_MESSAGE_BYTES: usize = 2048;
const MAX_ERROR_DETAILS_BYTES: usize = 4096;
/// A longer dependency cycle is shown with its middle left out.
const CYCLE_SHOWN_EACH_END: usize = 16;
/// Characters of a bad input value quoted back in an error.
const QUOTE_CHARS: usize = 40;

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

    pub(super) fn missing(field: &str) -> ConvertError {
        ConvertError::new(field, "is missing")
    }
}

/// `INVALID_ARGUMENT`, with the error's details as `CommandError::Invalid`'s, so that a client
/// decodes it like any other refusal.
impl From<ConvertError> for Status {
    fn from(e: ConvertError) -> Status {
        let message = e.to_string();
        status_of(
            &CommandError::Invalid {
                field: e.field,
                reason: e.reason,
            },
            message,
        )
    }
}

/// The gRPC status for a refusal by the state machine: `INVALID_ARGUMENT` for bad input
/// (`InvalidJob`, `Invalid`, `Cycle`), `NOT_FOUND`, `FAILED_PRECONDITION` for `StaleFence` and
/// `WrongState`. The message is the error's `Display`. The error itself travels in the
/// standard `grpc-status-details-bin` trailer (gRPC's richer error model, readable by any
/// language's gRPC library): a `google.rpc.ErrorInfo` with domain `raftq`, the kind as its
/// reason and the fields as its metadata (see [`error_info`]), and for bad input also a
/// `google.rpc.BadRequest` naming the field. A very long cycle has its middle left out.
pub fn command_error_status(e: &CommandError) -> Status {
    let shown = shorten(e);
    let e = shown.as_ref().unwrap_or(e);
    status_of(e, e.to_string())
}

/// The status for `e` with `message` (bounded) as its message.
fn status_of(e: &CommandError, message: String) -> Status {
    let code = match e {
        CommandError::InvalidJob { .. }
        | CommandError::Invalid { .. }
        | CommandError::Cycle { .. } => Code::InvalidArgument,
        CommandError::NotFound { .. } => Code::NotFound,
        CommandError::StaleFence { .. } | CommandError::WrongState { .. } => {
            Code::FailedPrecondition
        }
    };
    let message = bounded(message, MAX_STATUS_MESSAGE_BYTES);
    let (reason, metadata) = error_info(e);
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    match e {
        CommandError::InvalidJob {
            index,
            field,
            reason,
        } => {
            details.add_bad_request_violation(format!("jobs[{index}].{field}"), reason.clone());
        }
        CommandError::Invalid { field, reason } => {
            details.add_bad_request_violation(field.clone(), reason.clone());
        }
        _ => {}
    }
    let status = Status::with_error_details(code, message.clone(), details);
    if status.details().len() > MAX_ERROR_DETAILS_BYTES {
        return Status::new(code, message);
    }
    status
}

/// An `ErrorInfo`'s reason and metadata for `e` (the wire contract of refusals, documented in
/// docs/protocol.md): `INVALID_JOB` {index, field, reason}, `INVALID` {field, reason},
/// `NOT_FOUND` {key}, `STALE_FENCE` {key, presented, current (absent: no reservation)},
/// `WRONG_STATE` {key, op, state, expected}, `CYCLE` {index, cycle_len, cycle.0 … cycle.N-1}.
fn error_info(e: &CommandError) -> (&'static str, HashMap<String, String>) {
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    let reason = match e {
        CommandError::InvalidJob {
            index,
            field,
            reason,
        } => {
            put("index", index.to_string());
            put("field", field.clone());
            put("reason", reason.clone());
            "INVALID_JOB"
        }
        CommandError::Invalid { field, reason } => {
            put("field", field.clone());
            put("reason", reason.clone());
            "INVALID"
        }
        CommandError::NotFound { key } => {
            put("key", key.to_string());
            "NOT_FOUND"
        }
        CommandError::StaleFence {
            key,
            presented,
            current,
        } => {
            put("key", key.to_string());
            put("presented", presented.0.to_string());
            if let Some(c) = current {
                put("current", c.0.to_string());
            }
            "STALE_FENCE"
        }
        CommandError::WrongState {
            key,
            op,
            state,
            expected,
        } => {
            put("key", key.to_string());
            put("op", op.clone());
            put("state", state.as_str().to_string());
            put("expected", expected.clone());
            "WRONG_STATE"
        }
        CommandError::Cycle { index, cycle } => {
            put("index", index.to_string());
            put("cycle_len", cycle.len().to_string());
            for (i, c) in cycle.iter().enumerate() {
                put(&format!("cycle.{i}"), c.clone());
            }
            "CYCLE"
        }
    };
    (reason, m)
}

/// The refusal carried by a status made with [`command_error_status`] (or from a
/// [`ConvertError`]); `None` when the status carries none or it does not decode.
pub fn status_command_error(s: &Status) -> Option<CommandError> {
    let info = s.get_details_error_info()?;
    if info.domain != ERROR_DOMAIN {
        return None;
    }
    let m = &info.metadata;
    let text = |k: &str| m.get(k).cloned();
    let num = |k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok());
    let key = || m.get("key").and_then(|k| JobKey::parse(k));
    Some(match info.reason.as_str() {
        "INVALID_JOB" => CommandError::InvalidJob {
            index: usize::try_from(num("index")?).ok()?,
            field: text("field")?,
            reason: text("reason")?,
        },
        "INVALID" => CommandError::Invalid {
            field: text("field")?,
            reason: text("reason")?,
        },
        "NOT_FOUND" => CommandError::NotFound { key: key()? },
        "STALE_FENCE" => CommandError::StaleFence {
            key: key()?,
            presented: FenceToken(num("presented")?),
            current: match m.get("current") {
                Some(c) => Some(FenceToken(c.parse().ok()?)),
                None => None,
            },
        },
        "WRONG_STATE" => CommandError::WrongState {
            key: key()?,
            op: text("op")?,
            state: StateName::ALL
                .into_iter()
                .find(|n| Some(n.as_str()) == m.get("state").map(String::as_str))?,
            expected: text("expected")?,
        },
        "CYCLE" => {
            let len = usize::try_from(num("cycle_len")?).ok()?;
            CommandError::Cycle {
                index: usize::try_from(num("index")?).ok()?,
                cycle: (0..len)
                    .map(|i| text(&format!("cycle.{i}")))
                    .collect::<Option<Vec<_>>>()?,
            }
        }
        _ => return None,
    })
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
pub(super) fn bounded(mut s: String, max: usize) -> String {
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
pub(super) fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(QUOTE_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::testkit::key;
    use queue_fsm::{FenceToken, StateName};

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

    /// What a client in another language reads: the standard details, not raftq's types.
    #[test]
    fn refusals_carry_the_standard_error_details() {
        let s = command_error_status(&CommandError::InvalidJob {
            index: 3,
            field: "cmd".into(),
            reason: "must not be empty".into(),
        });
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.domain.as_str(), info.reason.as_str()),
            ("raftq", "INVALID_JOB")
        );
        assert_eq!(info.metadata["field"], "cmd");
        let bad = s.get_details_bad_request().expect("BadRequest");
        assert_eq!(bad.field_violations[0].field, "jobs[3].cmd");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
        let s = command_error_status(&CommandError::StaleFence {
            key: key("a"),
            presented: FenceToken(4),
            current: None,
        });
        let info = s.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.reason, "STALE_FENCE");
        assert_eq!(info.metadata["presented"], "4");
        assert!(!info.metadata.contains_key("current"));
        // another service's ErrorInfo is not taken for a refusal of the queue
        let other = Status::with_error_details(
            Code::FailedPrecondition,
            "x",
            ErrorDetails::with_error_info("NOT_FOUND", "example.com", HashMap::new()),
        );
        assert_eq!(status_command_error(&other), None);
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
}
