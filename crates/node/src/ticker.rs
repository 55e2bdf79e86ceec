//! Leader-only timers. After winning an election the leader first proposes `RenewLeases`
//! (runners could not touch while there was no leader), then proposes `Tick` whenever the
//! state machine's next deadline has passed. It sleeps until that deadline, and re-reads it
//! after every applied entry (a new lease may fall due sooner).

use crate::clock::now_ms;
use crate::node::Node;
use openraft::async_runtime::WatchReceiver;
use openraft::ServerState;
use queue_fsm::{Command, Request};
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between deadline checks, so that a missed wake-up costs at most this.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub async fn run(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    let mut applied = node.applied_rx.clone();
    let mut renewed_term: Option<u64> = None;
    loop {
        let (is_leader, term) = {
            let m = metrics.borrow_watched();
            (m.state == ServerState::Leader, m.current_term)
        };
        if !is_leader {
            renewed_term = None;
            if metrics.changed().await.is_err() {
                return;
            }
            continue;
        }
        if renewed_term != Some(term) {
            match node
                .proposer
                .propose(Request::new(None, Command::RenewLeases))
                .await
            {
                Ok(_) => {
                    tracing::info!(term, "leader renewed every live lease");
                    renewed_term = Some(term);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing leases failed; will retry");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        let next = node
            .fsm
            .lock()
            .ok()
            .and_then(|mut f| f.next_deadline().ok().flatten());
        let now = now_ms(node.config.clock_offset_ms);
        if let Some(d) = next {
            if d <= now {
                if let Err(e) = node
                    .proposer
                    .propose(Request::new(None, Command::Tick))
                    .await
                {
                    tracing::warn!(error = %e, "tick failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        }
        let sleep = next.map_or(MAX_SLEEP, |d| Duration::from_millis(d - now).min(MAX_SLEEP));
        let _ = *applied.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            r = applied.changed() => if r.is_err() { return; },
            r = metrics.changed() => if r.is_err() { return; },
        }
    }
}
