//! # queue-fsm: raftq's queue state machine
//!
//! Every manager applies the same committed commands to this state machine and must reach the
//! same state. So it is pure: no clock (time arrives as the entry's stamp, and the machine's
//! clock is the largest stamp seen), no randomness, no I/O besides its own store, no iteration
//! over hash maps. It decides; the node carries out (wakes waiters, schedules the next Tick).
//!
//! ## Layout
//! - [`ids`]: newtype ids (`JobKey`, `FenceToken`, `RunnerId`, `RequestId`).
//! - [`job`]: the job model; `JobState` carries each state's data.
//! - [`command`]: commands, responses, refusals; which states each key action takes.
//! - [`limits`]: every bound, named, and input validation.
//! - [`store`]: the storage trait, in-memory and RocksDB stores (the latter with the
//!   `rocksdb` feature, which raft-store and node turn on), and the write overlay.
//! - `keys`: byte layouts of index keys.
//! - [`fsm`]: open, apply an entry as one atomic batch, idempotent replay, `next_deadline`.
//! - `ctx`: the transitions, a module per command family (add, reserve, reports, by key,
//!   timers) plus dependencies, environments and storage helpers; `ctx::write` holds
//!   `write_job`, the one place a job and its indexes change.
//! - [`learn`]: resource learning and scheduler groups ([`SchedGroup`], encoded and parsed).
//! - [`verdict`]: fail reasons ([`FailReason`]) and the bury-or-release rule for a finished
//!   run, which the runner follows.
//! - [`query`]: read-only queries.
//! - [`snapshot`]: export/import in chunks, state digest.
//! - `invariants`: `check_invariants()`.
//!
//! ## Semantics in brief
//! - A job's key hashes its command (+ cwd when `cwd_matters`, + mounts). Adding a key that is
//!   in the queue counts as "existed"; a *complete* job with that key is queued again unless
//!   `ignore_complete`.
//! - Ready jobs go out by priority (255 first), then FIFO (a sequence number given each time a
//!   job becomes ready), per scheduler group; without a group, the best across groups.
//! - A reservation gets a fresh fence; every command on it must present that fence. A lease
//!   not touched within its TTR expires at the next Tick: the job is *lost*. A lost job's
//!   runner may still come back (touch/archive with its fence) until the job returns to the
//!   queue `lost_return_delay_ms` later, which uses up a retry if it had started. Only then is
//!   the fence void, so two live reservations of one job never overlap.
//! - Release puts a job back after a delay that doubles with each attempt. A release after a
//!   run (Started) uses up one of `retries + 1` tries, and the last one buries instead; a
//!   release without a run costs nothing. Release with the RAM or time fail reason raises that
//!   requirement first.
//! - Dependencies are live. A job waits while any of its dependencies is unsatisfied: a dep
//!   group with an incomplete member, or a job key that is in the queue and incomplete. A new
//!   member of a group makes its dependants wait again, completed ones included (they run
//!   again afterwards). Cycles are refused with the cycle named.
//! - Delete takes incomplete, non-held jobs, and not those another job (outside the same
//!   Delete) depends on. Complete jobs are history and stay forever.
//!
//! ## Invariants (checked by `check_invariants`)
//! Every index entry derives from exactly one job and every job has its entries; counters
//! (per rep group × state, ready per scheduler group, incomplete per dep group, limit slots,
//! environment references, stored responses) equal their recomputation; waiting counts equal
//! the graph; dependent ⇔ waiting > 0 for queued jobs; fences and ready sequence numbers are
//! unique and issued.

pub mod command;
mod ctx;
pub mod fsm;
pub mod ids;
mod invariants;
pub mod job;
mod keys;
pub mod learn;
pub mod limits;
pub mod query;
pub mod snapshot;
pub mod store;
pub mod verdict;

pub use command::{
    AddJobs, Command, CommandError, HandBack, JobChange, KeyAction, NoJob, Outcome, Request,
    ReserveMode, Response, Skip,
};
pub use ctx::{decode_env, LimitState};
pub use fsm::{Applied, ConfigError, Effects, Fsm, FsmConfig, Meta};
pub use ids::{FenceToken, JobKey, RequestId, RunnerId};
pub use job::{
    fail_reason, Action, Behaviour, Dependency, Job, JobSpec, JobState, Override, Requirements,
    Reservation, RunInfo, RunReport, StateName, Trigger,
};
pub use learn::{SchedGroup, SchedGroupError};
pub use query::{Listed, Match, Page};
pub use store::{MemStore, Space, Store, StoreError, StoreRead};
#[cfg(feature = "rocksdb")]
pub use store::{RocksOptions, RocksStore};
pub use verdict::{verdict, FailReason, RunEnd, Verdict};

#[cfg(test)]
mod tests;
