//! `/events`: server-sent events for the live page. One event, `state`, carries the counts
//! per rep group × state and the cluster as this node sees it; it is sent on connect and then
//! whenever an applied entry or a change of leader or term changed either, at most
//! [`MIN_EVENT_GAP`] apart (a busy queue applies hundreds of entries a second), and at least
//! every [`REFRESH`] when it changed (replication lag moves without a local apply).
//!
//! Counts come from the state machine's counters (O(rep groups)), read from this node's
//! replica without a leader round trip: the event says which node answered and whether it
//! leads, and the page marks a follower's view as possibly stale.

use super::json::counts_json;
use super::metrics::{dir_bytes, Snapshot};
use super::{HttpState, Shared};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use openraft::async_runtime::WatchReceiver;
use pb::queue_server::Queue;
use raftq_proto::pb;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

const MIN_EVENT_GAP: Duration = Duration::from_millis(250);
const REFRESH: Duration = Duration::from_secs(2);

pub fn routes() -> Router<Shared> {
    Router::new().route("/events", get(events))
}

/// The page's live state now: counts, the cluster, and whose view it is.
pub async fn live_state(s: &HttpState) -> Value {
    let counts = match s
        .queue
        .stats(tonic::Request::new(pb::StatsRequest { stale: true }))
        .await
    {
        Ok(r) => counts_json(r.get_ref()),
        Err(e) => json!({ "error": e.message() }),
    };
    let cluster = match super::cluster_view(s).await {
        Ok(v) => v,
        Err(e) => json!({ "error": e.message() }),
    };
    let view = s.node.view();
    json!({
        "node": s.node.id(),
        "leading": view.leading,
        "counts": counts,
        "cluster": cluster,
    })
}

struct Cursor {
    s: Shared,
    applied: tokio::sync::watch::Receiver<u64>,
    view: tokio::sync::watch::Receiver<crate::node::View>,
    last: Option<String>,
}

async fn events(State(s): State<Shared>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let cursor = Cursor {
        applied: s.node.applied_changes(),
        view: s.node.view_changes(),
        s,
        last: None,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if c.last.is_some() {
                tokio::select! {
                    r = c.applied.changed() => if r.is_err() { return None },
                    r = c.view.changed() => if r.is_err() { return None },
                    _ = tokio::time::sleep(REFRESH) => {}
                }
                tokio::time::sleep(MIN_EVENT_GAP).await;
                c.applied.borrow_and_update();
                c.view.borrow_and_update();
            }
            let data = live_state(&c.s).await.to_string();
            if c.last.as_deref() == Some(data.as_str()) {
                continue;
            }
            c.last = Some(data.clone());
            return Some((Ok(Event::default().event("state").data(data)), c));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// What `/metrics` reads at a scrape: job counts (the counters), Raft's metrics, the store.
pub async fn metrics_snapshot(s: &HttpState) -> Snapshot {
    let stats = s
        .queue
        .stats(tonic::Request::new(pb::StatsRequest { stale: true }))
        .await
        .map(|r| r.into_inner())
        .unwrap_or_default();
    let mut by_state: std::collections::BTreeMap<String, u64> = queue_fsm::StateName::ALL
        .iter()
        .map(|st| (st.as_str().to_string(), 0))
        .collect();
    for c in stats.rep_groups.values() {
        for (st, n) in &c.counts {
            *by_state.entry(st.clone()).or_default() += n;
        }
    }
    let m = s.raft.metrics().borrow_watched().clone();
    let leader_last = m.last_log_index.unwrap_or(0);
    let lag_by_peer = m
        .replication
        .as_ref()
        .map(|r| {
            r.iter()
                .filter(|(id, _)| **id != m.id)
                .map(|(id, matched)| {
                    let matched = matched.as_ref().map_or(0, |l| l.index);
                    (*id, leader_last.saturating_sub(matched))
                })
                .collect()
        })
        .unwrap_or_default();
    let dir = s.data_dir.clone();
    let store_bytes = tokio::task::spawn_blocking(move || dir_bytes(&dir))
        .await
        .unwrap_or(0);
    Snapshot {
        jobs_by_state: by_state.into_iter().collect(),
        term: m.current_term,
        leader: m.current_leader,
        leading: m.state == openraft::ServerState::Leader,
        last_log_index: leader_last,
        committed_index: m.local_committed.map_or(0, |l| l.index),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        lag_by_peer,
        store_bytes,
        store_errors: s.node.store_health().snapshot().0,
        runners: s.runners.snapshot(),
    }
}
