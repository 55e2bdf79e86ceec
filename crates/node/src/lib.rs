//! # raftq-node: the manager process
//!
//! A manager holds a replica of the queue (`queue-fsm` on `raft-store`), takes part in Raft
//! (openraft), and serves the Queue, Admin and Raft gRPC services, and on its HTTP port a web page, a REST
//! API and Prometheus metrics. Any node accepts any
//! request: writes go to the leader's proposer (forwarded by a follower), reads are
//! linearizable through a read index unless the caller accepts stale ones.
//!
//! ## Layout
//! - [`config`]: `NodeConfig` with defaults, TOML/env loading and `validate()`.
//! - [`server`]: start a node and serve until shutdown.
//! - [`node`]: routing to the leader (forwarding, read index, the blocking-reserve long poll).
//! - [`proposer`]: group commit of concurrent commands into one log entry.
//! - [`scheduler`]: leader-only start of runners for ready jobs (pluggable `Launcher`).
//! - [`ticker`]: leader-only `RenewLeases` after election and `Tick` at each deadline.
//! - [`raft_net`]: openraft's network over gRPC, both sides.
//! - [`queue_service`], [`admin_service`]: the gRPC services.
//! - [`http`]: the HTTP port: web UI, REST API, server-sent events, `/metrics`.
//! - [`jobspec`]: wr's job lines (plain or JSON) into `JobSpec`s, as `raftq add` reads them.
//! - [`auth`]: the cluster token on the node's side: checking calls, creating the file.
//! - [`tls`]: the cluster CA and node certificates (`raftq cert`), a peer's node id.
//! - [`clock`]: the wall clock in milliseconds (with the test-only offset).
//! - [`limits`]: bounds of messages and queues.
//!
//! Queue rules live in `queue-fsm`; this crate only carries commands to it. The `raftq`
//! command line is the binary's (`src/main.rs`, `src/cli/`), not this library's: the library
//! does not use clap.

pub mod admin_service;
pub mod auth;
pub mod clock;
pub mod config;
pub mod http;
pub mod jobspec;
pub mod limits;
pub mod node;
pub mod proposer;
pub mod queue_service;
pub mod raft_net;
pub mod scheduler;
pub mod server;
pub mod ticker;
pub mod tls;
