//! Commands (what a log entry carries), their responses, and the errors they can be refused
//! with. Everything here is serializable: a stored response is replayed byte for byte when a
//! request id repeats.

use crate::ids::{FenceToken, JobKey, RequestId, RunnerId};
use crate::job::{
    Behaviour, Dependency, Job, JobSpec, Override, Requirements, RunReport, StateName,
};
use serde::{Deserialize, Serialize};

/// The actions a user takes on jobs by key, by the queue's names (the CLI calls Kick "retry"
/// and Delete "remove").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAction {
    /// Put a buried job back in the queue.
    Kick,
    /// Stop a reserved or running job (its runner learns at its next touch); bury a lost one.
    Kill,
    /// Take a job that waits in the queue out of it.
    Delete,
}

impl KeyAction {
    /// The states of the jobs the action takes; a job in any other state is skipped.
    pub fn states(self) -> &'static [StateName] {
        match self {
            KeyAction::Kick => &[StateName::Buried],
            KeyAction::Kill => &[StateName::Reserved, StateName::Running, StateName::Lost],
            KeyAction::Delete => &[
                StateName::Dependent,
                StateName::Delayed,
                StateName::Ready,
                StateName::Buried,
            ],
        }
    }

    /// Whether the action takes a job in state `s`.
    pub fn accepts(self, s: StateName) -> bool {
        self.states().contains(&s)
    }
}

/// A command with the id that makes it idempotent (None for timer commands and tests).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: Option<RequestId>,
    pub cmd: Command,
}

impl Request {
    pub fn new(id: Option<RequestId>, cmd: Command) -> Request {
        Request { id, cmd }
    }
}

/// Whether runners may reserve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReserveMode {
    #[default]
    Open,
    /// Reserving is refused until resumed.
    Paused,
    /// Reserving is refused; runners finish what they hold and exit.
    Draining,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddJobs {
    pub jobs: Vec<JobSpec>,
    /// `KEY=VALUE` environment for every job of this Add (each job may override entries).
    pub env: Vec<String>,
    /// When true, a completed job with the same key counts as existing; when false it is
    /// queued to run again.
    pub ignore_complete: bool,
    /// Return the key of every job, in input order.
    pub return_keys: bool,
}

/// Changes to apply with Modify; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChange {
    pub cmd: Option<String>,
    pub cwd: Option<String>,
    pub cwd_matters: Option<bool>,
    pub change_home: Option<bool>,
    pub rep_grp: Option<String>,
    pub req_grp: Option<String>,
    pub requirements: Option<Requirements>,
    pub override_mode: Option<Override>,
    pub priority: Option<u8>,
    pub retries: Option<u8>,
    pub dep_grps: Option<Vec<String>>,
    pub deps: Option<Vec<Dependency>>,
    pub behaviours: Option<Vec<Behaviour>>,
    pub limit_grps: Option<Vec<String>>,
}

/// A reservation handed back by its holder (Release and Bury): the report of the run if it
/// ran, and why. Encoded as the struct variants it replaced were (same fields, same order), so
/// the log's entries read the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandBack {
    pub key: JobKey,
    pub fence: FenceToken,
    pub report: Option<RunReport>,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Add(AddJobs),
    /// Take the best ready job, optionally only from one scheduler group.
    Reserve {
        runner: RunnerId,
        group: Option<String>,
        ttr_ms: u64,
    },
    /// The runner started the command.
    Started {
        key: JobKey,
        fence: FenceToken,
        host: String,
        pid: u32,
    },
    /// Extends the lease; the response says whether a kill was requested.
    Touch {
        key: JobKey,
        fence: FenceToken,
    },
    /// The command succeeded: the job is complete.
    Archive {
        key: JobKey,
        fence: FenceToken,
        report: RunReport,
    },
    /// Back to the queue after a delay (or buried, when its retries are used up).
    Release(HandBack),
    /// Buried: out of the queue until kicked.
    Bury(HandBack),
    /// Buried jobs back to the queue, retries reset.
    Kick {
        keys: Vec<JobKey>,
    },
    /// Removes incomplete, non-running jobs.
    Delete {
        keys: Vec<JobKey>,
    },
    /// Running jobs: kill at the next touch. Lost jobs: confirmed dead, buried.
    Kill {
        keys: Vec<JobKey>,
    },
    Modify {
        keys: Vec<JobKey>,
        change: JobChange,
    },
    /// Sets a limit group's limit (-1 unlimited, 0 blocks).
    SetLimit {
        group: String,
        limit: i64,
    },
    SetReserving {
        mode: ReserveMode,
    },
    /// Acts on every deadline that has passed at the entry's time: leases expire (job lost),
    /// lost jobs return to the queue, delays end.
    Tick,
    /// Restarts every live lease from the entry's time. A new leader proposes this first.
    RenewLeases,
}

/// Why Reserve gave no job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoJob {
    NoneReady,
    Paused,
    Draining,
}

/// Why a key of a Delete or Modify was left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skip {
    NotFound,
    /// Reserved, running or lost jobs cannot be deleted or modified.
    Held(StateName),
    /// Complete jobs are history.
    Complete,
    /// Another job that is not being deleted depends on it.
    HasDependant(JobKey),
    /// Modify: the new cmd/cwd give the key of another job in the queue.
    KeyExists(JobKey),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Added {
        added: u64,
        existed: u64,
        keys: Vec<JobKey>,
    },
    Reserved {
        job: Box<Job>,
        fence: FenceToken,
    },
    NoJob(NoJob),
    Touched {
        kill: bool,
    },
    /// Release: where the job went.
    Released {
        state: StateName,
    },
    /// Kick, Kill: how many jobs it acted on.
    Count(u64),
    Deleted {
        deleted: u64,
        skipped: Vec<(JobKey, Skip)>,
    },
    Modified {
        /// (old key, new key)
        modified: Vec<(JobKey, JobKey)>,
        skipped: Vec<(JobKey, Skip)>,
    },
    Ticked {
        leases_expired: u64,
        lost_returned: u64,
        delays_ended: u64,
    },
    Renewed(u64),
    Ok,
}

/// A refusal. Every one is deterministic (the same command on the same state is refused the
/// same way), so retrying the same request cannot help; changing the request may.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("job {index}: `{field}` {reason}; nothing was added")]
    InvalidJob {
        index: usize,
        field: String,
        reason: String,
    },
    #[error("`{field}` {reason}")]
    Invalid { field: String, reason: String },
    #[error("job {key} is not in the queue")]
    NotFound { key: JobKey },
    #[error("stale fence {presented} for job {key} (its current reservation: {}); the reservation was lost or taken over, stop working on it", current.map_or("none".to_string(), |f| f.to_string()))]
    StaleFence {
        key: JobKey,
        presented: FenceToken,
        current: Option<FenceToken>,
    },
    #[error("job {key} is {state}; {op} needs {expected}")]
    WrongState {
        key: JobKey,
        op: String,
        state: StateName,
        expected: String,
    },
    #[error("dependency cycle: {}; remove one of these dependencies", cycle.join(" -> "))]
    Cycle {
        /// Index of the job in the Add (or key in the Modify) that closed the cycle.
        index: usize,
        cycle: Vec<String>,
    },
}

impl CommandError {
    /// Whether sending the same request again could succeed. Always false: refusals are
    /// decided by the replicated state alone.
    pub fn retryable(&self) -> bool {
        false
    }
}

/// A command's outcome as stored for idempotent replay.
pub type Outcome = Result<Response, CommandError>;
