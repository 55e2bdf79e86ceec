//! Bounds of the node's messages and queues.

/// The bounds the client shares (message size, longest Reserve wait) are the wire's.
pub use raftq_proto::limits::{MAX_QUEUE_MESSAGE_BYTES, MAX_RESERVE_WAIT_MS};
/// Largest Raft message between managers (an AppendEntries batch).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 512 * 1024 * 1024;
/// Snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Commands waiting for the proposer; more wait in their callers (backpressure).
pub const PROPOSER_QUEUE: usize = 16_384;
