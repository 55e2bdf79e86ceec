//! How a finished run is reported: the fail reasons (typed, with the exact text the queue
//! stores and acts on) and the rule that says which ends of a run bury the job, which release
//! it, and which leave nothing to report. The runner maps what it saw to a [`RunEnd`] and
//! reports what [`verdict`] says, so the runner and the queue can never disagree on a reason.

use std::fmt;

/// Why a run failed. `as_str()` is the text stored in the job (`RunInfo::fail_reason`) and
/// sent with Release/Bury; the queue acts on [`FailReason::Ram`] and [`FailReason::Time`]
/// (it raises that requirement), so these strings are part of the stored format and the wire
/// contract: never change one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// The runner could not get the job's environment.
    Env,
    /// The working directory does not exist.
    Cwd,
    /// The command could not be started.
    Start,
    /// The shell could not execute the command (exit 126).
    Perm,
    /// The shell did not find the command (exit 127).
    NotFound,
    /// The command exited with another non-zero code.
    Exit,
    /// The command ended without an exit code (a signal).
    Abnormal,
    /// The command ran past its time limit.
    Time,
    /// The command used more memory than it asked for while the host was short of it.
    Ram,
    /// The runner was told to stop (SIGTERM/SIGINT) while the command ran.
    Signal,
    /// A user asked to kill the job.
    Killed,
    /// The runner stopped touching the reservation (set by the queue at lease expiry).
    Lost,
    /// The job needs more memory or cores than any runner the scheduler can start (set by
    /// the leader's scheduler, which buries such a job instead of leaving it waiting).
    Resource,
}

impl FailReason {
    pub const ALL: [FailReason; 13] = [
        FailReason::Env,
        FailReason::Cwd,
        FailReason::Start,
        FailReason::Perm,
        FailReason::NotFound,
        FailReason::Exit,
        FailReason::Abnormal,
        FailReason::Time,
        FailReason::Ram,
        FailReason::Signal,
        FailReason::Killed,
        FailReason::Lost,
        FailReason::Resource,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FailReason::Env => "failed to get environment variables",
            FailReason::Cwd => "working directory does not exist",
            FailReason::Start => "command failed to start",
            FailReason::Perm => "command permission problem",
            FailReason::NotFound => "command not found",
            FailReason::Exit => "command exited non-zero",
            FailReason::Abnormal => "command failed to complete normally",
            FailReason::Time => "command used too much time",
            FailReason::Ram => "command used too much RAM",
            FailReason::Signal => "runner received a signal to stop",
            FailReason::Killed => "killed by user request",
            FailReason::Lost => "lost contact with runner",
            FailReason::Resource => "resource requirements cannot be met",
        }
    }

    /// The reason with this exact text, if it is one of ours (a client may send any text).
    pub fn parse(s: &str) -> Option<FailReason> {
        FailReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended, as the runner saw it; the input of [`verdict`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The job's environment could not be fetched; the command did not start.
    EnvUnavailable,
    /// Setting up failed before the command started; `missing_dir` when the working
    /// directory does not exist.
    SetupFailed { missing_dir: bool },
    /// The reservation is gone (a refused fence): the result is not this runner's to record.
    ReservationGone,
    /// Stopped because a user asked to kill the job.
    Killed,
    /// Stopped because the runner is shutting down.
    ShuttingDown,
    /// Stopped on request for neither reason above (the runner gave the job up).
    StoppedOtherwise,
    /// Stopped at its time limit.
    OverTime,
    /// Stopped for using too much memory on a host short of it.
    OverRam,
    /// Exited with this code.
    Exited(i32),
    /// Ended without an exit code.
    NoExitCode,
}

/// What to report for a finished run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Success: archive the job.
    Archive,
    /// A failure that may pass on another try: release (the queue retries it, or buries it
    /// once its retries are used up).
    Release(FailReason),
    /// A failure that another try would repeat: bury the job now.
    Bury(FailReason),
    /// Report nothing.
    Abandon,
}

/// The queue's rule for a finished run: problems of the job itself (no environment, no
/// working directory, a command that cannot start or is not found, a kill) bury; problems a
/// retry may fix (a non-zero exit, a signal, too much time or memory, a runner shutting
/// down) release.
pub fn verdict(end: RunEnd) -> Verdict {
    match end {
        RunEnd::EnvUnavailable => Verdict::Bury(FailReason::Env),
        RunEnd::SetupFailed { missing_dir: true } => Verdict::Bury(FailReason::Cwd),
        RunEnd::SetupFailed { missing_dir: false } => Verdict::Bury(FailReason::Start),
        RunEnd::ReservationGone | RunEnd::StoppedOtherwise => Verdict::Abandon,
        RunEnd::Killed => Verdict::Bury(FailReason::Killed),
        RunEnd::ShuttingDown => Verdict::Release(FailReason::Signal),
        RunEnd::OverTime => Verdict::Release(FailReason::Time),
        RunEnd::OverRam => Verdict::Release(FailReason::Ram),
        RunEnd::Exited(0) => Verdict::Archive,
        RunEnd::Exited(126) => Verdict::Bury(FailReason::Perm),
        RunEnd::Exited(127) => Verdict::Bury(FailReason::NotFound),
        RunEnd::Exited(_) => Verdict::Release(FailReason::Exit),
        RunEnd::NoExitCode => Verdict::Release(FailReason::Abnormal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::fail_reason;

    #[test]
    fn reasons_parse_back_and_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for r in FailReason::ALL {
            assert_eq!(FailReason::parse(r.as_str()), Some(r));
            assert!(seen.insert(r.as_str()), "{r:?} repeats a text");
            assert!(r.as_str().len() <= crate::limits::MAX_REASON_BYTES);
        }
        assert_eq!(FailReason::parse("something else"), None);
    }

    #[test]
    fn the_texts_the_queue_acts_on_are_unchanged() {
        assert_eq!(FailReason::Ram.as_str(), "command used too much RAM");
        assert_eq!(FailReason::Time.as_str(), "command used too much time");
        assert_eq!(fail_reason::RAM, FailReason::Ram.as_str());
        assert_eq!(fail_reason::TIME, FailReason::Time.as_str());
        assert_eq!(fail_reason::LOST, "lost contact with runner");
        // The texts the runner has always reported (jobs stored with them must read the same).
        for (r, text) in [
            (FailReason::Env, "failed to get environment variables"),
            (FailReason::Cwd, "working directory does not exist"),
            (FailReason::Start, "command failed to start"),
            (FailReason::Perm, "command permission problem"),
            (FailReason::NotFound, "command not found"),
            (FailReason::Exit, "command exited non-zero"),
            (FailReason::Abnormal, "command failed to complete normally"),
            (FailReason::Signal, "runner received a signal to stop"),
            (FailReason::Resource, "resource requirements cannot be met"),
        ] {
            assert_eq!(r.as_str(), text);
        }
        assert_eq!(fail_reason::KILLED, "killed by user request");
    }

    #[test]
    fn verdicts_follow_the_rule() {
        assert_eq!(verdict(RunEnd::Exited(0)), Verdict::Archive);
        assert_eq!(
            verdict(RunEnd::Exited(126)),
            Verdict::Bury(FailReason::Perm)
        );
        assert_eq!(
            verdict(RunEnd::Exited(127)),
            Verdict::Bury(FailReason::NotFound)
        );
        assert_eq!(
            verdict(RunEnd::Exited(2)),
            Verdict::Release(FailReason::Exit)
        );
        assert_eq!(
            verdict(RunEnd::NoExitCode),
            Verdict::Release(FailReason::Abnormal)
        );
        assert_eq!(verdict(RunEnd::Killed), Verdict::Bury(FailReason::Killed));
        assert_eq!(
            verdict(RunEnd::ShuttingDown),
            Verdict::Release(FailReason::Signal)
        );
        assert_eq!(verdict(RunEnd::StoppedOtherwise), Verdict::Abandon);
        assert_eq!(verdict(RunEnd::ReservationGone), Verdict::Abandon);
        assert_eq!(
            verdict(RunEnd::OverTime),
            Verdict::Release(FailReason::Time)
        );
        assert_eq!(verdict(RunEnd::OverRam), Verdict::Release(FailReason::Ram));
        assert_eq!(
            verdict(RunEnd::SetupFailed { missing_dir: true }),
            Verdict::Bury(FailReason::Cwd)
        );
        assert_eq!(
            verdict(RunEnd::SetupFailed { missing_dir: false }),
            Verdict::Bury(FailReason::Start)
        );
        assert_eq!(
            verdict(RunEnd::EnvUnavailable),
            Verdict::Bury(FailReason::Env)
        );
    }
}
