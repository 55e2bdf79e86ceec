//! The node's wall clock in milliseconds. Only the leader's clock matters: it stamps each
//! proposal, and the state machine's clock is the largest stamp seen.
//!
//! The proposer and the ticker read time through [`Clock`], so that tests can run them on
//! tokio's paused clock instead of the wall clock.

/// Milliseconds since the Unix epoch, plus a test-only offset (clock-skew tests).
pub fn now_ms(offset_ms: i64) -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    (ms + offset_ms).max(0) as u64
}

/// A source of the leader's time, in milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The wall clock plus `offset_ms` (the node's `clock_offset_ms` setting).
#[derive(Clone, Copy, Debug, Default)]
pub struct WallClock {
    pub offset_ms: i64,
}

impl Clock for WallClock {
    fn now_ms(&self) -> u64 {
        now_ms(self.offset_ms)
    }
}

/// Time from tokio's clock, counted from `base_ms` at creation; it stands still while tokio
/// time is paused (tests).
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(base_ms: u64) -> TokioClock {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }
}
