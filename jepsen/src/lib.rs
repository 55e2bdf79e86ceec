//! # raftq-jepsen: proving raftq under faults
//!
//! A Jepsen-style harness without Clojure: clients and workers run operations against a real
//! cluster of `raftq node` processes, each in its own network namespace, while a nemesis
//! injects faults on a schedule drawn from a seed; every operation is recorded as invoke / ok /
//! fail / info (info: the outcome is unknown, e.g. a timeout) in a history; checkers then
//! judge the history and the cluster's final state, and a report is written.
//!
//! ## Layout
//! - [`run`]: one test run from start to report; `main.rs` is its command line.
//! - [`store`]: a run's files in the store (time stamp, revision, JSON, the `latest` link).
//! - [`db`]: the cluster's node processes (start, SIGKILL, SIGSTOP/SIGCONT, restart).
//! - [`net`]: namespaces on a bridge, partitions and packet loss with iptables.
//! - [`nemesis`]: the faults, their schedule, applying and undoing them.
//! - [`workload`]: adders and workers, and the recorder of the history.
//! - [`history`]: operations, their outcomes, `history.jsonl`.
//! - [`checker`]: the checkers, one per file; each returns `valid: true / false / unknown` with
//!   counts and examples.
//! - [`report`]: plots and `index.html`.
//! - [`rng`]: the seeded generator (SplitMix64) every random choice draws from, so that a seed
//!   reproduces a schedule.
//! - [`sim`]: the deterministic simulation (`raftq-jepsen sim`): the queue's state machine on
//!   simulated replicas under a simulated Raft, in virtual time, judged by the same checkers.
//! - [`lossyfs`]: a FUSE filesystem that loses un-synced writes and directory changes on a
//!   power cut (`raftq-jepsen lossyfs`).

pub mod checker;
pub mod db;
pub mod history;
pub mod lossyfs;
pub mod nemesis;
pub mod net;
pub mod report;
pub mod rng;
pub mod run;
pub mod sim;
pub mod store;
pub mod workload;
