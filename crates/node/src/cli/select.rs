//! `raftq kill`, `raftq retry` and `raftq remove`: one action on jobs chosen by key or by rep
//! group. The three differ only in which states a rep group's jobs are taken from and in the
//! call they make, so they share this file.

use super::{ClusterArg, RepGroupArg};
use anyhow::bail;
use clap::Args;
use queue_fsm::{JobKey, KeyAction};
use raftq_client::Client;
use raftq_proto::pb;

#[derive(Args)]
pub(super) struct SelectArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    group: RepGroupArg,
    /// Jobs with these keys.
    #[arg(long = "key")]
    keys: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Action {
    Kill,
    Retry,
    Remove,
}

impl Action {
    /// The queue's action behind the command; which states it takes is queue-fsm's rule
    /// ([`KeyAction::states`]), asked here so that a rep group's jobs are chosen by it too.
    fn key_action(self) -> KeyAction {
        match self {
            Action::Kill => KeyAction::Kill,
            Action::Retry => KeyAction::Kick,
            Action::Remove => KeyAction::Delete,
        }
    }
}

/// `--key` values as job keys; the error names the one that is not.
pub(super) fn parse_keys(keys: &[String]) -> anyhow::Result<Vec<JobKey>> {
    keys.iter()
        .map(|k| JobKey::parse(k).ok_or_else(|| anyhow::anyhow!("--key {k:?} is not a job key")))
        .collect()
}

pub(super) async fn run(a: SelectArgs, action: Action) -> anyhow::Result<()> {
    let client = a.cluster.client()?;
    let mut keys = parse_keys(&a.keys)?;
    if let Some(g) = &a.group.rep_grp {
        keys.extend(keys_in_group(&client, g, &a.group, action).await?);
    } else if keys.is_empty() {
        bail!("say which jobs: -i REPGRP or --key KEY");
    }
    if keys.is_empty() {
        println!("no matching jobs");
        return Ok(());
    }
    match action {
        Action::Kill => println!("{} job(s) will be killed", client.kill(&keys).await?),
        Action::Retry => println!("{} job(s) put back in the queue", client.kick(&keys).await?),
        Action::Remove => {
            let r = client.delete(&keys).await?;
            println!("removed {} job(s)", r.deleted);
            for s in r.skipped {
                let why = pb::skipped::Why::try_from(s.why)
                    .map(|w| w.as_str_name().to_lowercase())
                    .unwrap_or_default();
                println!("  kept {}: {why} {}", s.key, s.detail);
            }
        }
    }
    Ok(())
}

/// The keys of the incomplete jobs of rep group `g` (matched as `-i`/`--match` say) in a
/// state the action is for.
async fn keys_in_group(
    client: &Client,
    g: &str,
    sel: &RepGroupArg,
    action: Action,
) -> anyhow::Result<Vec<JobKey>> {
    let jobs = client
        .search(pb::SearchRequest {
            rep_grp: g.to_string(),
            r#match: pb::search_request::Match::from(sel.r#match) as i32,
            state: None,
            limit: 0,
            incomplete_only: true,
            stale: false,
            offset: 0,
            page_size: 0,
        })
        .await?;
    let want = action.key_action().states();
    Ok(jobs
        .into_iter()
        .filter(|j| {
            want.iter()
                .any(|s| pb::StateName::from(*s) as i32 == j.state)
        })
        // The node's keys are well formed; one that were not could not be acted on anyway.
        .filter_map(|j| JobKey::parse(&j.key))
        .collect())
}
