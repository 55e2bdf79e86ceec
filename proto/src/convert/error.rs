//! Errors of the conversion and the mapping of the state machine's refusals to and from a
//! gRPC [`Status`].

use queue_fsm::CommandError;
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
