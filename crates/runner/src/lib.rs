//! # raftq-runner: runs jobs on a compute host
//!
//! A runner reserves a job from the cluster, runs its command, touches the reservation while
//! it runs, and reports the outcome (archive, release or bury); then it reserves the next.
//!
//! ## Layout
//! - [`exec`]: running one command: shell with pipefail, own process group, working directory
//!   (exact or unique under hashed levels) with a TMPDIR that is always removed, the job's
//!   environment, peak memory (PSS of the process tree), disk and CPU time, head and tail of
//!   the output, stopping on request or at the time limit.
//! - [`runner`]: the reserve → run → touch → report loop, and how an exit becomes a
//!   [`queue_fsm::RunEnd`], whose [`queue_fsm::Verdict`] (archive, release, bury, nothing) the
//!   runner reports.
//!
//! Queue policy (retries, burying, learning, which ends of a run bury) is queue-fsm's; the
//! runner only reports.

pub mod exec;
pub mod runner;

pub use runner::{stop_on_signals, Runner, RunnerConfig, Summary, STOP_SIGNALS};

#[cfg(test)]
mod tests;
