//! The job model: what a user asks for ([`JobSpec`]), what the queue stores ([`Job`]), and the
//! state a job is in ([`JobState`], carrying each state's data).

use crate::ids::{FenceToken, JobKey, RunnerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resources a command needs. Units are in the names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    pub ram_mb: u32,
    pub time_s: u32,
    /// Thousandths of a core (1500 = 1.5 cores), so that no float enters the state machine.
    pub cores_milli: u32,
    pub disk_gb: u32,
    /// Scheduler-specific extras, kept in key order.
    pub other: BTreeMap<String, String>,
}

/// What a dependency points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dependency {
    /// Every job that is (now or later) a member of this dep group. Live: a job added to the
    /// group later makes the dependant wait again, even if it had already completed.
    Group(String),
    /// The job with this key (see [`JobKey::of`] for the essence of cmd + cwd). A key that is
    /// not in the queue counts as satisfied until such a job is added.
    Job(JobKey),
}

/// When a behaviour fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Trigger {
    OnSuccess,
    OnFailure,
    /// After the success/failure behaviours, whatever the outcome.
    OnExit,
}

/// What a behaviour does; the runner carries it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Remove the unique working directory, except output files (none are tracked yet, so this
    /// is the same as `CleanupAll` today).
    Cleanup,
    /// Remove the unique working directory and everything in it.
    CleanupAll,
    /// Run this shell command in the job's working directory.
    Run(String),
    /// Remove the job from the queue (only meaningful on failure).
    Remove,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behaviour {
    pub when: Trigger,
    pub action: Action,
}

/// How user-given requirements and learned ones combine (wr's `override`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Override {
    /// Use the learned value when there is one.
    #[default]
    Learned,
    /// Use the learned value when it is higher than the user's.
    LearnedIfHigher,
    /// Always use the user's value.
    User,
}

impl Override {
    pub fn from_u8(v: u8) -> Option<Override> {
        match v {
            0 => Some(Override::Learned),
            1 => Some(Override::LearnedIfHigher),
            2 => Some(Override::User),
            _ => None,
        }
    }
}

/// A job as a user describes it when adding it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub cmd: String,
    pub cwd: String,
    pub cwd_matters: bool,
    pub change_home: bool,
    /// Mount configuration, as an opaque canonical string (part of the key when non-empty).
    pub mounts: String,
    pub rep_grp: String,
    /// Jobs expected to need similar resources; empty means the command's first word.
    pub req_grp: String,
    pub requirements: Requirements,
    pub override_mode: Override,
    /// 0–255, higher runs first.
    pub priority: u8,
    /// Failed runs retried this many times before the job is buried.
    pub retries: u8,
    pub dep_grps: Vec<String>,
    pub deps: Vec<Dependency>,
    pub behaviours: Vec<Behaviour>,
    /// `KEY=VALUE` entries that override the Add's environment for this job.
    pub env_override: Vec<String>,
    /// Limit groups, `name` or `name:n` (the latter also sets the group's limit to n).
    pub limit_grps: Vec<String>,
}

impl JobSpec {
    /// A job with just a command; everything else takes its default.
    pub fn new(cmd: impl Into<String>) -> JobSpec {
        JobSpec {
            cmd: cmd.into(),
            ..JobSpec::default()
        }
    }

    pub fn key(&self) -> JobKey {
        JobKey::of(&self.cmd, &self.cwd, self.cwd_matters, &self.mounts)
    }

    /// The req_grp in force: the given one, or the command's first word.
    pub fn effective_req_grp(&self) -> &str {
        if self.req_grp.is_empty() {
            self.cmd.split_whitespace().next().unwrap_or("")
        } else {
            &self.req_grp
        }
    }

    /// Limit group names, without any `:n` suffix.
    pub fn limit_names(&self) -> impl Iterator<Item = &str> {
        self.limit_grps
            .iter()
            .map(|g| g.split_once(':').map_or(g.as_str(), |(n, _)| n))
    }
}

/// A live reservation of a job by a runner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub runner: RunnerId,
    pub fence: FenceToken,
    pub ttr_ms: u64,
    pub lease_until_ms: u64,
    /// Set by Kill; the runner learns it at its next touch.
    pub kill_requested: bool,
}

/// The state of a job, with the data that only that state has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Waits for dependencies (`Job::waiting` > 0).
    Dependent,
    /// Waits until a time (after a release).
    Delayed { until_ms: u64 },
    /// Can be reserved.
    Ready,
    /// Held by a runner that has not yet said it started the command.
    Reserved(Reservation),
    /// Held by a runner that is running the command.
    Running(Reservation),
    /// The lease expired: the runner may be dead or cut off. The job returns to the queue at
    /// `return_ms` unless the runner comes back (touch/archive with its fence) first.
    Lost {
        held: Reservation,
        started: bool,
        return_ms: u64,
    },
    /// Will not run until kicked.
    Buried,
    /// Ran successfully; kept forever.
    Complete,
}

/// A state's name, for counts, queries and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StateName {
    Dependent,
    Delayed,
    Ready,
    Reserved,
    Running,
    Lost,
    Buried,
    Complete,
}

impl StateName {
    pub const ALL: [StateName; 8] = [
        StateName::Dependent,
        StateName::Delayed,
        StateName::Ready,
        StateName::Reserved,
        StateName::Running,
        StateName::Lost,
        StateName::Buried,
        StateName::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Dependent => "dependent",
            StateName::Delayed => "delayed",
            StateName::Ready => "ready",
            StateName::Reserved => "reserved",
            StateName::Running => "running",
            StateName::Lost => "lost",
            StateName::Buried => "buried",
            StateName::Complete => "complete",
        }
    }

    pub fn parse(s: &str) -> Option<StateName> {
        StateName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_code(c: u8) -> Option<StateName> {
        StateName::ALL.get(c as usize).copied()
    }
}

impl std::fmt::Display for StateName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobState {
    pub fn name(&self) -> StateName {
        match self {
            JobState::Dependent => StateName::Dependent,
            JobState::Delayed { .. } => StateName::Delayed,
            JobState::Ready => StateName::Ready,
            JobState::Reserved(_) => StateName::Reserved,
            JobState::Running(_) => StateName::Running,
            JobState::Lost { .. } => StateName::Lost,
            JobState::Buried => StateName::Buried,
            JobState::Complete => StateName::Complete,
        }
    }

    /// The reservation a runner holds (or held, when lost).
    pub fn reservation(&self) -> Option<&Reservation> {
        match self {
            JobState::Reserved(r) | JobState::Running(r) => Some(r),
            JobState::Lost { held, .. } => Some(held),
            _ => None,
        }
    }

    /// The time at which the state machine must act on this job, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        match self {
            JobState::Delayed { until_ms } => Some(*until_ms),
            JobState::Reserved(r) | JobState::Running(r) => Some(r.lease_until_ms),
            JobState::Lost { return_ms, .. } => Some(*return_ms),
            _ => None,
        }
    }

    /// Holds a limit-group slot: reserved, running, or lost (it may still be running).
    pub fn holds_slot(&self) -> bool {
        self.reservation().is_some()
    }
}

/// What a runner reports about one run of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub exited: bool,
    pub exit_code: i32,
    pub peak_ram_mb: u64,
    pub peak_disk_mb: u64,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    pub started_ms: u64,
    pub ended_ms: u64,
    /// The working directory actually used.
    pub actual_cwd: String,
    /// Head and tail of stdout/stderr (kept for failed runs only).
    pub stdout: String,
    pub stderr: String,
}

/// The last run's facts as the queue keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    pub host: String,
    pub pid: u32,
    pub report: Option<RunReport>,
    pub fail_reason: String,
}

/// A job as the queue stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub key: JobKey,
    /// Given in add order, never reused: orders the rep-group and state indexes.
    pub serial: u64,
    pub spec: JobSpec,
    /// Content hash of the job's environment blob in the `env` keyspace.
    pub env_hash: Option<[u8; 32]>,
    /// The requirements in force (the user's combined with learned values).
    pub effective: Requirements,
    /// Scheduler group: rounded requirements plus limit groups.
    pub sched_group: String,
    pub state: JobState,
    /// Count of incomplete dependency edges; the job is dependent while this is non-zero.
    pub waiting: u32,
    /// FIFO position, renewed each time the job becomes ready.
    pub seq: u64,
    /// Times the job entered running.
    pub attempts: u32,
    /// Releases after a run that remain before the job is buried instead.
    pub until_buried: u8,
    pub added_ms: u64,
    pub run: RunInfo,
}

impl Job {
    pub fn is_complete(&self) -> bool {
        self.state == JobState::Complete
    }
}

/// Reasons for failure that the queue itself sets or acts on, as text (others are free text);
/// [`FailReason`](crate::FailReason) is their one definition.
pub mod fail_reason {
    use crate::verdict::FailReason;
    pub const RAM: &str = FailReason::Ram.as_str();
    pub const TIME: &str = FailReason::Time.as_str();
    pub const LOST: &str = FailReason::Lost.as_str();
    pub const KILLED: &str = FailReason::Killed.as_str();
}
