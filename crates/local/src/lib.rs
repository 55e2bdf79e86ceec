//! # raftq-local: clusters of `raftq node` processes on this machine
//!
//! The one launcher behind `raftq up`, `raftq bench`, the end-to-end tests (`tests/`) and the
//! jepsen harness. A [`LocalCluster`] runs the `raftq` executable once per node, each with its
//! own data directory `DIR/node-ID` and log `DIR/node-ID.log` (appended across restarts);
//! nodes can be killed (SIGKILL), stopped (SIGTERM), paused (SIGSTOP/SIGCONT), restarted with
//! other arguments, started inside a wrapper command (jepsen's `ip netns exec NS`), and added
//! as joiners that wait for `raftq cluster add-node`.
//!
//! It is a crate of its own, not a module of `raftq-node`, so that the harnesses that start
//! nodes do not link the server (openraft, RocksDB) and nothing here needs clap.
//!
//! ## Layout
//! - [`cluster`]: [`LocalCluster`], [`LocalNode`], [`LaunchError`], [`free_port`],
//!   [`raftq_for_tests`].
//! - [`wait`]: [`wait_for`], polling a condition until a deadline.
//! - [`job`]: [`small_job`], the job spec `raftq bench` and the e2e tests add.

pub mod cluster;
pub mod job;
pub mod wait;

pub use cluster::{free_port, raftq_for_tests, LaunchError, LocalCluster, LocalNode};
pub use job::small_job;
pub use wait::wait_for;
