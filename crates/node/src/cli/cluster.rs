//! `raftq cluster`: status (leader, term, each node's role and log position), snapshot,
//! add-node and remove-node.

use super::ClusterArg;
use anyhow::bail;
use clap::Subcommand;
use raftq_client::Client;
use raftq_proto::pb;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Subcommand)]
pub(super) enum ClusterCmd {
    /// Leader, term, and each node's role and log position.
    Status {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        json: bool,
    },
    /// Ask every node to take a snapshot now (and so let it purge its log).
    Snapshot {
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Add a node: start it first with `raftq node --id ID --listen ADDR` (no --peers); it
    /// catches up as a learner, then becomes a voter.
    AddNode {
        #[command(flatten)]
        cluster: ClusterArg,
        /// The new node's id (unique in the cluster).
        #[arg(long)]
        id: u64,
        /// HOST:PORT the other nodes reach it at (its --listen address).
        #[arg(long)]
        addr: String,
        /// How long to wait for it to catch up, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Remove a voter from the cluster (then stop it; its data is no longer needed).
    RemoveNode {
        #[command(flatten)]
        cluster: ClusterArg,
        #[arg(long)]
        id: u64,
    },
}

pub(super) async fn run(c: ClusterCmd) -> anyhow::Result<()> {
    match c {
        ClusterCmd::Status { cluster, json } => status(cluster, json).await,
        ClusterCmd::Snapshot { cluster } => {
            let client = cluster.client()?;
            for (i, addr) in client.nodes().iter().enumerate() {
                match client.trigger_snapshot_of(i).await {
                    Ok(()) => println!("{addr}: snapshot started"),
                    Err(e) => println!("{addr}: {}", e.message()),
                }
            }
            Ok(())
        }
        ClusterCmd::AddNode {
            cluster,
            id,
            addr,
            timeout,
        } => {
            let client = cluster.client()?;
            eprintln!("adding node {id} at {addr}: it joins as a learner and catches up first");
            let voters = client
                .add_node(id, addr, Duration::from_secs(timeout))
                .await?;
            println!("node {id} added; voters: {voters:?}");
            Ok(())
        }
        ClusterCmd::RemoveNode { cluster, id } => {
            let voters = cluster.client()?.remove_node(id).await?;
            println!("node {id} removed; voters: {voters:?}");
            Ok(())
        }
    }
}

/// Each asked node's view of the cluster (None: it did not answer).
type Views = Vec<Option<pb::ClusterStatusResponse>>;

async fn status(c: ClusterArg, json: bool) -> anyhow::Result<()> {
    let client = c.client()?;
    let mut views = Views::new();
    for i in 0..client.nodes().len() {
        views.push(client.cluster_status_of(i).await.ok());
    }
    // The leader's view has every node's replication; each node knows its own applied index.
    let leader_view = views
        .iter()
        .flatten()
        .find(|v| v.leader != 0 && v.leader == v.answered_by)
        .or_else(|| views.iter().flatten().find(|v| v.leader != 0))
        .cloned();
    let Some(base) = leader_view.or_else(|| views.iter().flatten().next().cloned()) else {
        bail!("no node answered at {}", client.nodes().join(","));
    };
    ask_unlisted_members(&c, &client, &base, &mut views).await?;
    let nodes = merge_views(&base, &views);
    if json {
        print_json(&base, &nodes);
    } else {
        print_table(&base, &nodes);
    }
    Ok(())
}

/// Members the address list does not name (added later) are asked too.
async fn ask_unlisted_members(
    c: &ClusterArg,
    client: &Client,
    base: &pb::ClusterStatusResponse,
    views: &mut Views,
) -> anyhow::Result<()> {
    let config = c.config()?;
    for n in &base.nodes {
        if n.addr.is_empty() || client.nodes().contains(&n.addr) {
            continue;
        }
        if let Ok(one) = Client::new(vec![n.addr.clone()], config.clone()) {
            views.push(one.cluster_status_of(0).await.ok());
        }
    }
    Ok(())
}

/// The nodes of `base` (the leader's view if any), each with its role and log position as
/// it reported them itself; members that did not answer are "unreachable".
fn merge_views(base: &pb::ClusterStatusResponse, views: &Views) -> BTreeMap<u64, pb::NodeStatus> {
    let mut nodes: BTreeMap<u64, pb::NodeStatus> =
        base.nodes.iter().map(|n| (n.id, n.clone())).collect();
    let answered: Vec<u64> = views.iter().flatten().map(|v| v.answered_by).collect();
    for v in views.iter().flatten() {
        if let Some(own) = v.nodes.iter().find(|n| n.id == v.answered_by) {
            let e = nodes.entry(own.id).or_insert_with(|| own.clone());
            e.role = own.role.clone();
            e.applied_index = own.applied_index;
            e.last_log_index = own.last_log_index;
            e.term = own.term;
            e.store_errors = own.store_errors;
            e.last_store_error = own.last_store_error.clone();
        }
    }
    for (id, n) in nodes.iter_mut() {
        if !answered.contains(id) && !n.addr.is_empty() {
            n.role = "unreachable".into();
        }
    }
    nodes
}

fn print_json(base: &pb::ClusterStatusResponse, nodes: &BTreeMap<u64, pb::NodeStatus>) {
    let list: Vec<serde_json::Value> = nodes
        .values()
        .map(|n| {
            serde_json::json!({
                "id": n.id, "addr": n.addr, "role": n.role, "term": n.term,
                "last_log_index": n.last_log_index, "applied_index": n.applied_index,
                "voter": n.voter, "store_errors": n.store_errors,
                "last_store_error": n.last_store_error,
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({ "leader": base.leader, "term": base.term, "nodes": list })
    );
}

fn print_table(base: &pb::ClusterStatusResponse, nodes: &BTreeMap<u64, pb::NodeStatus>) {
    println!(
        "leader: {}  term: {}",
        if base.leader == 0 {
            "none".to_string()
        } else {
            format!("node {}", base.leader)
        },
        base.term
    );
    println!(
        "{:>4}  {:<22} {:<11} {:>10} {:>10}",
        "id", "address", "role", "last log", "applied"
    );
    for n in nodes.values() {
        println!(
            "{:>4}  {:<22} {:<11} {:>10} {:>10}",
            n.id, n.addr, n.role, n.last_log_index, n.applied_index
        );
        if n.store_errors > 0 {
            println!(
                "      store errors: {} (last: {})",
                n.store_errors, n.last_store_error
            );
        }
    }
}
