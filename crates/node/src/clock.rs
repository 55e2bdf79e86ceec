//! The node's wall clock in milliseconds. Only the leader's clock matters: it stamps each
//! proposal, and the state machine's clock is the largest stamp seen.

/// Milliseconds since the Unix epoch, plus a test-only offset (clock-skew tests).
pub fn now_ms(offset_ms: i64) -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    (ms + offset_ms).max(0) as u64
}
