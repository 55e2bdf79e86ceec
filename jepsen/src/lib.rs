//! # raftq-jepsen: proving raftq under faults
//!
//! A Jepsen-style harness without Clojure: clients and workers run operations against a real
//! cluster while nemeses inject faults; every operation is recorded as invoke / ok / fail /
//! info (info: the outcome is unknown, e.g. a timeout) in a history; checkers then judge the
//! history and the cluster's final state.
//!
//! ## Layout
//! - [`history`]: operations, their outcomes, `history.jsonl` reading and writing.
//! - [`checker`]: the checkers; each returns `valid: true / false / unknown` with counts and
//!   examples.
//! - [`net`]: test hosts in network namespaces on a bridge, partitions with iptables.
//!
//! Still to come (see the jepsen issue): nemeses beyond partitions, workloads, the report, and
//! the `test` command.

pub mod checker;
pub mod history;
pub mod net;
