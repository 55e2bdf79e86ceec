//! Bounds both sides of the wire agree on.

/// Largest Queue-service message, sent or accepted, by node and client alike (an Add of
/// 100,000 jobs fits).
pub const MAX_QUEUE_MESSAGE_BYTES: usize = 128 * 1024 * 1024;
/// Longest long poll of a blocking Reserve: a node waits no longer, so a client need not
/// wait longer for an answer.
pub const MAX_RESERVE_WAIT_MS: u64 = 10 * 60 * 1000;
