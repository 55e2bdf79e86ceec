//! # raftq-proto: the wire contract
//!
//! The generated gRPC code for `proto/raftq.proto` (package `raftq.v1`) and the mapping
//! between its messages and `queue-fsm`'s types (`convert`). Both the node and the client use
//! this crate, so the mapping exists once.
//!
//! - [`convert`]: pb ↔ queue-fsm, a folder of modules by command family (its header lists
//!   them). Network input converts fallibly (`ConvertError` names the
//!   field path); building each `Request` from its request message; fsm responses and stats to
//!   pb; `CommandError` ↔ `tonic::Status` (gRPC's standard error details: `ErrorInfo`, `BadRequest`).
//! - [`endpoint`]: the one builder of a node's `http://HOST:PORT` endpoint.
//! - [`limits`]: bounds both sides agree on (message size, longest Reserve wait).

pub mod convert;
pub mod endpoint;
pub mod limits;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("raftq.v1");
}
