//! Group commit: many clients' commands become one log entry. The proposer takes whatever
//! commands are waiting (up to `max_batch_commands`), stamps them with this leader's clock,
//! proposes them as one entry, and hands each caller its own outcome. Up to
//! `max_inflight_entries` entries are in flight at once, so batching never waits on a timer:
//! under load, batches grow while earlier entries commit.

use crate::clock::now_ms;
use crate::limits::PROPOSER_QUEUE;
use crate::raft_net::RaftHandle;
use openraft::errors::{ClientWriteError, RaftError};
use queue_fsm::{Outcome, Request};
use raft_store::Proposal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Why a proposal has no outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; the leader, if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// The entry may or may not have been committed (leader change mid-write). Retrying with
    /// the same request id is safe.
    #[error("outcome unknown: {0}; retry with the same request id")]
    Unknown(String),
    /// The node is shutting down or its Raft stopped.
    #[error("node stopping: {0}")]
    Stopped(String),
}

struct Pending {
    req: Request,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the proposer task for `raft`.
    pub fn start(
        raft: RaftHandle,
        clock_offset_ms: i64,
        max_batch: usize,
        max_inflight: usize,
    ) -> Proposer {
        let (tx, rx) = mpsc::channel(PROPOSER_QUEUE);
        tokio::spawn(run(raft, rx, clock_offset_ms, max_batch, max_inflight));
        Proposer { tx }
    }

    /// Proposes one command and waits for its outcome.
    pub async fn propose(&self, req: Request) -> Result<Outcome, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { req, reply })
            .await
            .map_err(|_| ProposeError::Stopped("proposer closed".into()))?;
        rx.await
            .map_err(|_| ProposeError::Stopped("proposer dropped the command".into()))?
    }
}

async fn run(
    raft: RaftHandle,
    mut rx: mpsc::Receiver<Pending>,
    clock_offset_ms: i64,
    max_batch: usize,
    max_inflight: usize,
) {
    let inflight = Arc::new(Semaphore::new(max_inflight));
    while let Some(first) = rx.recv().await {
        // Wait for an in-flight slot first: commands that arrive meanwhile join this batch.
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.reply)).unzip();
            let n = requests.len();
            let proposal = Proposal {
                stamp_ms: now_ms(clock_offset_ms),
                requests,
            };
            let result = raft.client_write(proposal).await;
            drop(permit);
            match result {
                Ok(resp) => {
                    let outcomes = resp.data.outcomes;
                    if outcomes.len() != n {
                        tracing::error!(
                            expected = n,
                            got = outcomes.len(),
                            "outcome count mismatch"
                        );
                    }
                    let mut outcomes = outcomes.into_iter();
                    for reply in replies {
                        let r = outcomes
                            .next()
                            .ok_or_else(|| ProposeError::Unknown("no outcome for command".into()));
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    let err = classify(&e);
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}

fn classify(
    e: &RaftError<raft_store::TypeConfig, ClientWriteError<raft_store::TypeConfig>>,
) -> ProposeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ProposeError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(other) => ProposeError::Unknown(other.to_string()),
        RaftError::Fatal(f) => ProposeError::Stopped(f.to_string()),
    }
}
