//! Bounds of the node's messages and queues.

/// Largest Queue-service message (an Add of 100,000 jobs fits).
pub const MAX_QUEUE_MESSAGE_BYTES: usize = 128 * 1024 * 1024;
/// Largest Raft message between managers (an AppendEntries batch).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 512 * 1024 * 1024;
/// Snapshot data per streamed chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Commands waiting for the proposer; more wait in their callers (backpressure).
pub const PROPOSER_QUEUE: usize = 16_384;
/// Longest long poll of a blocking Reserve.
pub const MAX_RESERVE_WAIT_MS: u64 = 10 * 60 * 1000;
