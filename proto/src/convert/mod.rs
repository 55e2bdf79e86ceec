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
//!   through a [`tonic::Status`] (code, message, and gRPC's standard error details in
//!   `grpc-status-details-bin`: a `google.rpc.ErrorInfo`, plus a `BadRequest` for bad input).
//!
//! Ids on the wire: request and runner ids are 16 bytes, big-endian `u128`; job keys are
//! 32 hex digits; environment hashes 64.
//!
//! # Layout
//!
//! The modules follow the command families of `queue-fsm`; everything public is re-exported
//! here, so callers write `convert::add_request` whichever file it lives in.
//!
//! - `error`: [`ConvertError`] and the mapping of refusals to and from a [`tonic::Status`]
//!   ([`command_error_status`], [`status_command_error`], the standard error details).
//! - `scalars`: ids (request, runner, job key, environment hash), narrow integers and the
//!   enums (state, trigger, reserve mode, match).
//! - `job`: the job model: `JobSpec`, `Requirements`, `Dependency`, `Behaviour`, `RunReport`,
//!   `Job`.
//! - `add`: the Add request.
//! - `runner`: the requests a runner makes about a job it wants or holds: Reserve, Started,
//!   Touch, Archive, Release, Bury.
//! - `by_key`: actions on jobs by key and queue settings: Kick, Kill, Delete, Modify (with
//!   `JobChange`), SetLimit, SetReserving.
//! - `search`: the Search request ([`SearchQuery`]).
//! - `response`: fsm → pb responses, one function per call, and stats.
//! - `testkit` (tests only): full jobs and specs that the tests of every module share.

mod add;
mod by_key;
mod error;
mod job;
mod response;
mod runner;
mod scalars;
mod search;
#[cfg(test)]
mod testkit;

pub use add::add_request;
pub use by_key::{
    delete_request, kick_request, kill_request, modify_request, set_limit_request,
    set_reserving_request,
};
pub use error::{command_error_status, status_command_error, ConvertError, ERROR_DOMAIN};
pub use response::{
    ack_response, add_response, count_response, delete_response, modify_response, release_response,
    reserve_response, skipped, stats_response, touch_response,
};
pub use runner::{
    archive_request, bury_request, release_request, reserve_request, started_request, touch_request,
};
pub use scalars::{
    env_hash, hex, job_key, job_keys, request_id, request_id_bytes, runner_id, runner_id_bytes,
    state_name,
};
pub use search::{search_query, SearchQuery};

/// The promise of the module header, "nothing here panics, whatever the input", across the
/// modules (each module's own tests check its conversions).
#[cfg(test)]
mod tests {
    use super::error::bounded;
    use super::*;
    use crate::pb;
    use queue_fsm::Behaviour;

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
