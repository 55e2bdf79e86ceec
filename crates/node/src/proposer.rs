//! Group commit: many clients' commands become one log entry. The proposer takes whatever
//! commands are waiting (up to `max_batch_commands`), stamps them with this leader's clock,
//! proposes them as one entry, and hands each caller its own outcome. Up to
//! `max_inflight_entries` entries are in flight at once, so batching never waits on a timer:
//! under load, batches grow while earlier entries commit.
//!
//! The decisions (what goes into the next entry, when a slot is free) are [`Batcher`], which
//! does no I/O: the proposer task drives it here, and the simulation in `raftq-jepsen` drives
//! the same code in virtual time.

use crate::clock::Clock;
use crate::limits::PROPOSER_QUEUE;
use crate::node::Consensus;
use queue_fsm::{Outcome, Request};
use raft_store::Proposal;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

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

/// Which waiting commands form the next log entry, and when: at most `max_batch` commands per
/// entry, at most `max_inflight` entries proposed and not yet finished.
#[derive(Debug)]
pub struct Batcher<T> {
    waiting: VecDeque<T>,
    in_flight: usize,
    max_batch: usize,
    max_inflight: usize,
}

impl<T> Batcher<T> {
    /// Bounds below 1 count as 1.
    pub fn new(max_batch: usize, max_inflight: usize) -> Batcher<T> {
        Batcher {
            waiting: VecDeque::new(),
            in_flight: 0,
            max_batch: max_batch.max(1),
            max_inflight: max_inflight.max(1),
        }
    }

    /// A command to propose.
    pub fn push(&mut self, item: T) {
        self.waiting.push_back(item);
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether to take in more commands: up to one full batch waits (more wait in the
    /// channel, and then in their callers: backpressure).
    pub fn wants_more(&self) -> bool {
        self.waiting.len() < self.max_batch
    }

    /// The next entry's commands, oldest first, when some wait and a slot is free; the slot
    /// is taken until [`Batcher::finished`].
    pub fn next_batch(&mut self) -> Option<Vec<T>> {
        if self.waiting.is_empty() || self.in_flight >= self.max_inflight {
            return None;
        }
        let n = self.waiting.len().min(self.max_batch);
        self.in_flight += 1;
        Some(self.waiting.drain(..n).collect())
    }

    /// An entry of [`Batcher::next_batch`] finished (applied, or failed): its slot is free.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The commands that never made it into an entry (a leader that stepped down answers
    /// their callers).
    pub fn into_waiting(self) -> impl Iterator<Item = T> {
        self.waiting.into_iter()
    }
}

/// The result of one entry of `n` commands as each caller sees it: its own outcome, by
/// position; the error for all when the entry failed.
pub fn outcomes_for(
    n: usize,
    result: Result<Vec<Outcome>, ProposeError>,
) -> Vec<Result<Outcome, ProposeError>> {
    match result {
        Ok(outcomes) => {
            if outcomes.len() != n {
                tracing::error!(expected = n, got = outcomes.len(), "outcome count mismatch");
            }
            let mut outcomes = outcomes.into_iter();
            (0..n)
                .map(|_| {
                    outcomes
                        .next()
                        .ok_or_else(|| ProposeError::Unknown("no outcome for command".into()))
                })
                .collect()
        }
        Err(e) => vec![Err(e); n],
    }
}

struct Pending {
    req: Request,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Told of every entry the proposer wrote: its commands, and the time from proposing it until
/// its outcomes came back (replication, fsync on a majority, apply here). `/metrics` sets one.
pub type EntryObserver = Arc<dyn Fn(usize, std::time::Duration) + Send + Sync>;

#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    observer: Arc<std::sync::OnceLock<EntryObserver>>,
}

impl Proposer {
    /// Starts the proposer task, proposing through `consensus` with stamps from `clock`.
    pub fn start(
        consensus: Arc<dyn Consensus>,
        clock: Arc<dyn Clock>,
        max_batch: usize,
        max_inflight: usize,
    ) -> Proposer {
        let (tx, rx) = mpsc::channel(PROPOSER_QUEUE);
        let batcher = Batcher::new(max_batch, max_inflight);
        let observer = Arc::new(std::sync::OnceLock::new());
        tokio::spawn(run(consensus, clock, rx, batcher, observer.clone()));
        Proposer { tx, observer }
    }

    /// Sets the observer of written entries (once; later calls are ignored).
    pub fn observe_entries(&self, f: EntryObserver) {
        let _ = self.observer.set(f);
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
    consensus: Arc<dyn Consensus>,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Pending>,
    mut batcher: Batcher<Pending>,
    observer: Arc<std::sync::OnceLock<EntryObserver>>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut open = true;
    loop {
        tokio::select! {
            Some(()) = done_rx.recv() => batcher.finished(),
            p = rx.recv(), if open && batcher.wants_more() => match p {
                Some(p) => batcher.push(p),
                None => open = false,
            },
            else => return,
        }
        // Commands that arrived meanwhile join this batch.
        while batcher.wants_more() {
            match rx.try_recv() {
                Ok(p) => batcher.push(p),
                Err(_) => break,
            }
        }
        while let Some(batch) = batcher.next_batch() {
            let (requests, replies): (Vec<Request>, Vec<_>) =
                batch.into_iter().map(|p| (p.req, p.reply)).unzip();
            let proposal = Proposal {
                stamp_ms: clock.now_ms(),
                requests,
            };
            let write = consensus.write(proposal);
            let done = done_tx.clone();
            let observer = observer.get().cloned();
            let start = std::time::Instant::now();
            tokio::spawn(async move {
                let result = write.await;
                let _ = done.send(());
                let n = replies.len();
                if let Some(f) = observer {
                    f(n, start.elapsed());
                }
                for (reply, r) in replies.into_iter().zip(outcomes_for(n, result)) {
                    let _ = reply.send(r);
                }
            });
        }
        if !open && batcher.waiting() == 0 && batcher.in_flight() == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::fake::{add, key_of, req, until, FakeConsensus};
    use crate::node::Node;
    use queue_fsm::{Command, Response};

    #[test]
    fn batcher_bounds_batches_and_slots() {
        let mut b = Batcher::new(3, 2);
        assert_eq!(b.next_batch(), None, "nothing waits");
        for i in 0..8 {
            b.push(i);
        }
        assert!(!b.wants_more(), "a full batch waits");
        assert_eq!(b.next_batch(), Some(vec![0, 1, 2]));
        assert_eq!(b.next_batch(), Some(vec![3, 4, 5]));
        assert_eq!(b.in_flight(), 2);
        assert_eq!(b.next_batch(), None, "both slots taken");
        b.finished();
        assert_eq!(b.next_batch(), Some(vec![6, 7]));
        assert_eq!(b.waiting(), 0);
        assert!(b.wants_more());
        b.push(8);
        b.push(9);
        assert_eq!(b.into_waiting().collect::<Vec<_>>(), vec![8, 9]);
    }

    #[test]
    fn each_position_gets_its_outcome() {
        let got = outcomes_for(2, Ok(vec![Ok(Response::Ok), Ok(Response::Count(3))]));
        assert_eq!(got, vec![Ok(Ok(Response::Ok)), Ok(Ok(Response::Count(3)))]);
        // a missing outcome is unknown, never another caller's
        let got = outcomes_for(2, Ok(vec![Ok(Response::Ok)]));
        assert!(matches!(got[1], Err(ProposeError::Unknown(_))), "{got:?}");
        let e = ProposeError::NotLeader { leader: Some(2) };
        assert_eq!(
            outcomes_for(2, Err(e.clone())),
            vec![Err(e.clone()), Err(e)]
        );
    }

    /// Proposes `add(cmd)` for each of `cmds` at once; the proposals' handles.
    fn propose_all(
        node: &Arc<Node>,
        cmds: &[String],
    ) -> Vec<tokio::task::JoinHandle<Result<Outcome, ProposeError>>> {
        cmds.iter()
            .map(|c| {
                let node = node.clone();
                let r = req(add(c));
                tokio::spawn(async move { node.propose(r).await })
            })
            .collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("job {i}")).collect()
    }

    type Handles = Vec<tokio::task::JoinHandle<Result<Outcome, ProposeError>>>;

    /// A leading node whose writes are held, and the write of one command in flight.
    async fn one_write_in_flight(
        max_batch: usize,
        max_inflight: usize,
    ) -> (FakeConsensus, Arc<Node>, Handles) {
        let fake = FakeConsensus::new();
        fake.lead(1);
        fake.hold_writes();
        let node = fake.node(max_batch, max_inflight);
        let first = propose_all(&node, &["first".to_string()]);
        until("the first write", || fake.in_flight() == 1).await;
        (fake, node, first)
    }

    /// Waits for every proposal; each must have been applied.
    async fn all_applied(handles: Handles) {
        for h in handles {
            h.await.unwrap().unwrap().unwrap();
        }
    }

    fn batch_sizes(fake: &FakeConsensus) -> Vec<usize> {
        fake.written().iter().map(Vec::len).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn commands_waiting_for_a_slot_share_one_entry() {
        let (fake, node, first) = one_write_in_flight(100, 1).await;
        let handles = propose_all(&node, &names(10));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(fake.written().len(), 1, "one slot: the others wait");
        fake.release(2);
        all_applied(first).await;
        all_applied(handles).await;
        assert_eq!(batch_sizes(&fake), vec![1, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_holds_at_most_max_batch_commands() {
        let (fake, node, first) = one_write_in_flight(4, 1).await;
        let handles = propose_all(&node, &names(10));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        fake.release(10);
        all_applied(first).await;
        all_applied(handles).await;
        assert_eq!(batch_sizes(&fake), vec![1, 4, 4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_max_inflight_entries_at_once() {
        let fake = FakeConsensus::new();
        fake.lead(1);
        fake.hold_writes();
        let node = fake.node(1, 3);
        let handles = propose_all(&node, &names(10));
        until("three writes", || fake.in_flight() == 3).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(fake.in_flight(), 3);
        assert_eq!(fake.written().len(), 3, "the others wait for a slot");
        fake.release(1);
        until("a fourth write", || fake.written().len() == 4).await;
        assert_eq!(fake.in_flight(), 3);
        fake.release(100);
        all_applied(handles).await;
        assert_eq!(fake.written().len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn each_caller_gets_its_own_outcome() {
        let (fake, node, first) = one_write_in_flight(100, 1).await;
        let cmds = names(20);
        let handles = propose_all(&node, &cmds);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        fake.release(2);
        all_applied(first).await;
        for (cmd, h) in cmds.iter().zip(handles) {
            match h.await.unwrap().unwrap() {
                Ok(Response::Added { keys, added: 1, .. }) => assert_eq!(keys, vec![key_of(cmd)]),
                other => panic!("{cmd}: {other:?}"),
            }
        }
        assert_eq!(fake.written().len(), 2, "the twenty shared one entry");
        // a failed entry fails each of its callers with the same error
        let e = ProposeError::Unknown("leader changed".into());
        *fake.0.write_error.lock().unwrap() = Some(e.clone());
        fake.release(100);
        let handles = propose_all(&node, &names(3));
        for h in handles {
            assert_eq!(h.await.unwrap(), Err(e.clone()));
        }
        assert!(matches!(fake.written()[0][0], Command::Add(_)));
    }
}
