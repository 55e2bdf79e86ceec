//! A fake [`Consensus`] for the shell's unit tests: a single replica that applies each
//! proposal at once to a real state machine (RocksDB in a temporary directory), a [`View`]
//! the test sets, forwarding that records what it was asked, and a gate to hold writes in
//! flight.

use super::{AppliedWatches, Consensus, Forwarded, Node, Replica, RouteError, View};
use crate::clock::TokioClock;
use crate::proposer::ProposeError;
use futures::future::BoxFuture;
use queue_fsm::{
    AddJobs, Command, Fsm, FsmConfig, JobKey, JobSpec, Outcome, Request, Response, RocksStore,
};
use raft_store::{Proposal, SharedFsm};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Semaphore};

/// The fake clock's time at the start of a test.
pub const BASE_MS: u64 = 1_000_000;

pub struct Inner {
    id: u64,
    fsm: SharedFsm,
    view: watch::Sender<View>,
    ready: watch::Sender<u64>,
    applied: watch::Sender<u64>,
    /// Every proposal written, in order.
    pub writes: Mutex<Vec<Proposal>>,
    /// Writes started and not yet finished.
    pub in_flight: AtomicUsize,
    /// When set, each write waits for a permit before it applies.
    gate: Mutex<Option<Arc<Semaphore>>>,
    /// When set, writes fail with this instead of applying.
    pub write_error: Mutex<Option<ProposeError>>,
    /// What was forwarded to whom.
    pub forwarded: Mutex<Vec<(u64, Forwarded)>>,
    /// When set, forwarding fails with this.
    pub forward_error: Mutex<Option<RouteError>>,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
pub struct FakeConsensus(pub Arc<Inner>);

impl FakeConsensus {
    /// Node 1, a member, not leading, no leader known.
    pub fn new() -> FakeConsensus {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(&dir.path().join("fsm")).unwrap();
        let fsm = Fsm::open(store, FsmConfig::default()).unwrap();
        let (view, _) = watch::channel(View {
            member: true,
            ..View::default()
        });
        FakeConsensus(Arc::new(Inner {
            id: 1,
            fsm: Arc::new(Mutex::new(fsm)),
            view,
            ready: watch::channel(0).0,
            applied: watch::channel(0).0,
            writes: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            gate: Mutex::new(None),
            write_error: Mutex::new(None),
            forwarded: Mutex::new(Vec::new()),
            forward_error: Mutex::new(None),
            _dir: dir,
        }))
    }

    pub fn fsm(&self) -> SharedFsm {
        self.0.fsm.clone()
    }

    /// This node leads `term`.
    pub fn lead(&self, term: u64) {
        self.set_view(View {
            term,
            leading: true,
            leader: Some(self.0.id),
            member: true,
        });
    }

    /// This node follows `leader` (None: no leader known).
    pub fn follow(&self, term: u64, leader: Option<u64>) {
        self.set_view(View {
            term,
            leading: false,
            leader,
            member: true,
        });
    }

    pub fn set_view(&self, v: View) {
        self.0.view.send_replace(v);
    }

    /// From now on, writes wait for [`FakeConsensus::release`].
    pub fn hold_writes(&self) {
        *self.0.gate.lock().unwrap() = Some(Arc::new(Semaphore::new(0)));
    }

    /// Lets `n` held writes go on.
    pub fn release(&self, n: usize) {
        if let Some(g) = self.0.gate.lock().unwrap().as_ref() {
            g.add_permits(n);
        }
    }

    /// The commands of every write so far, by entry.
    pub fn written(&self) -> Vec<Vec<Command>> {
        let w = self.0.writes.lock().unwrap();
        w.iter()
            .map(|p| p.requests.iter().map(|r| r.cmd.clone()).collect())
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// A fake that leads term 1, and a node over it (batches of 100, 2 in flight).
    pub fn leader() -> (FakeConsensus, Arc<Node>) {
        let fake = FakeConsensus::new();
        fake.lead(1);
        let node = fake.node(100, 2);
        (fake, node)
    }

    /// A node over this fake, stamping with tokio's clock from [`BASE_MS`].
    pub fn node(&self, max_batch: usize, max_inflight: usize) -> Arc<Node> {
        Arc::new(Node::new(
            Arc::new(self.clone()),
            Replica::new(self.fsm()),
            Arc::new(TokioClock::new(BASE_MS)),
            AppliedWatches {
                ready: self.0.ready.subscribe(),
                applied: self.0.applied.subscribe(),
            },
            max_batch,
            max_inflight,
        ))
    }
}

impl Inner {
    /// Applies `p` as the real state machine would, and bumps the watches as the server's
    /// effects hook does.
    fn apply(&self, p: Proposal) -> Vec<Outcome> {
        let applied = self
            .fsm
            .lock()
            .unwrap()
            .apply_entry(p.stamp_ms, p.requests, Vec::new())
            .unwrap();
        self.applied.send_modify(|v| *v += 1);
        if !applied.effects.woken_groups.is_empty() {
            self.ready.send_modify(|v| *v += 1);
        }
        applied.outcomes
    }
}

impl Consensus for FakeConsensus {
    fn id(&self) -> u64 {
        self.0.id
    }

    fn view(&self) -> View {
        self.0.view.borrow().clone()
    }

    fn view_changes(&self) -> watch::Receiver<View> {
        self.0.view.subscribe()
    }

    fn write(&self, proposal: Proposal) -> BoxFuture<'static, Result<Vec<Outcome>, ProposeError>> {
        let inner = self.0.clone();
        Box::pin(async move {
            inner.writes.lock().unwrap().push(proposal.clone());
            inner.in_flight.fetch_add(1, Ordering::SeqCst);
            let gate = inner.gate.lock().unwrap().clone();
            if let Some(g) = gate {
                g.acquire().await.unwrap().forget();
            }
            let failed = inner.write_error.lock().unwrap().clone();
            let r = match failed {
                Some(e) => Err(e),
                None => Ok(inner.apply(proposal)),
            };
            inner.in_flight.fetch_sub(1, Ordering::SeqCst);
            r
        })
    }

    fn read_index(&self) -> BoxFuture<'_, Result<u64, RouteError>> {
        Box::pin(async move { Ok(*self.0.applied.borrow()) })
    }

    fn wait_applied(&self, _index: u64) -> BoxFuture<'_, Result<(), RouteError>> {
        // Every write is applied before it returns: any index is applied.
        Box::pin(async { Ok(()) })
    }

    fn addr_of(&self, id: u64) -> Option<String> {
        Some(format!("127.0.0.1:{}", 7700 + id))
    }

    fn forward(&self, leader: u64, f: Forwarded) -> BoxFuture<'_, Result<Outcome, RouteError>> {
        Box::pin(async move {
            self.0.forwarded.lock().unwrap().push((leader, f));
            match self.0.forward_error.lock().unwrap().clone() {
                Some(e) => Err(e),
                None => Ok(Ok(Response::Ok)),
            }
        })
    }

    fn remote_read_index(&self, leader: u64) -> BoxFuture<'_, Result<u64, RouteError>> {
        Box::pin(async move {
            Err(RouteError::NoLeader {
                leader: Some(leader),
                reason: "the fake has no peers".into(),
            })
        })
    }
}

/// A command that adds one job `cmd` and returns its key.
pub fn add(cmd: &str) -> Command {
    Command::Add(AddJobs {
        jobs: vec![JobSpec::new(cmd)],
        return_keys: true,
        ..AddJobs::default()
    })
}

/// The key [`add`] gives `cmd`.
pub fn key_of(cmd: &str) -> JobKey {
    JobSpec::new(cmd).key()
}

/// A Reserve of any group by runner 1 with a `ttr_ms` lease.
pub fn reserve(ttr_ms: u64) -> Command {
    Command::Reserve {
        runner: queue_fsm::RunnerId(1),
        group: None,
        ttr_ms,
    }
}

/// Waits (in tokio time) until `cond` holds; panics after 60 s.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// A request with a fresh id.
pub fn req(cmd: Command) -> Request {
    Request::new(Some(queue_fsm::RequestId(rand_id())), cmd)
}

fn rand_id() -> u128 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed) as u128 * 0x1_0000_0001
}
