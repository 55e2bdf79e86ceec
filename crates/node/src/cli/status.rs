//! `raftq status`: job counts per rep group and state (text or JSON), and with `--details` a
//! sample of jobs of each kind.

use super::{ClusterArg, RepGroupArg};
use clap::Args;
use queue_fsm::StateName;
use raftq_client::Client;
use raftq_proto::pb;
use std::collections::{BTreeMap, HashMap};

#[derive(Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    group: RepGroupArg,
    /// Print one JSON object (`states`, `rep_groups`).
    #[arg(long)]
    json: bool,
    /// List jobs (state, exit code, fail reason), at most --limit of each kind.
    #[arg(long)]
    details: bool,
    /// With --details: jobs shown per (state, fail reason, exit code).
    #[arg(long, default_value_t = 5)]
    limit: u32,
    /// Read from the node's replica without a leader round trip.
    #[arg(long)]
    stale: bool,
}

/// The counts of the selected rep groups, by group name.
type Groups<'a> = BTreeMap<&'a String, &'a pb::StateCounts>;

pub(super) async fn run(a: StatusArgs) -> anyhow::Result<()> {
    let client = a.cluster.client()?;
    let stats = client.stats(a.stale).await?;
    let groups = selected_groups(&stats, &a.group);
    let states = totals(&groups);
    if a.json {
        let rep: BTreeMap<&String, &HashMap<String, u64>> =
            groups.iter().map(|(g, c)| (*g, &c.counts)).collect();
        let v = serde_json::json!({ "states": states, "rep_groups": rep });
        println!("{v}");
        return Ok(());
    }
    if groups.is_empty() {
        println!(
            "no jobs{}",
            a.group
                .rep_grp
                .as_deref()
                .map(|g| format!(" in rep group {g:?}"))
                .unwrap_or_default()
        );
    } else {
        print_counts(&groups, &states);
    }
    if a.details {
        print_details(&client, &a).await?;
    }
    Ok(())
}

/// The rep groups `-i`/`--match` select (all without `-i`).
fn selected_groups<'a>(stats: &'a pb::StatsResponse, sel: &RepGroupArg) -> Groups<'a> {
    let how = pb::search_request::Match::from(sel.r#match);
    let matches = |g: &str| match &sel.rep_grp {
        None => true,
        Some(p) => match how {
            pb::search_request::Match::Exact => g == p,
            pb::search_request::Match::Prefix => g.starts_with(p.as_str()),
            pb::search_request::Match::Substring => g.contains(p.as_str()),
        },
    };
    stats
        .rep_groups
        .iter()
        .filter(|(g, _)| matches(g))
        .collect()
}

/// Jobs per state over `groups`; every state is present, with 0 if it has none.
fn totals(groups: &Groups) -> BTreeMap<String, u64> {
    let mut states: BTreeMap<String, u64> = StateName::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for c in groups.values() {
        for (s, n) in &c.counts {
            *states.entry(s.clone()).or_default() += n;
        }
    }
    states
}

/// One line per rep group and a total line, states in their lifecycle order.
fn print_counts(groups: &Groups, states: &BTreeMap<String, u64>) {
    for (g, c) in groups {
        let parts: Vec<String> = StateName::ALL
            .iter()
            .map(|s| s.as_str())
            .filter_map(|s| {
                c.counts
                    .get(s)
                    .filter(|n| **n > 0)
                    .map(|n| format!("{s} {n}"))
            })
            .collect();
        println!("{g}: {}", parts.join(", "));
    }
    let parts: Vec<String> = StateName::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| states[*s] > 0)
        .map(|s| format!("{s} {}", states[s]))
        .collect();
    println!("total: {}", parts.join(", "));
}

/// A line per job the server picks as examples: key, state, exit code, fail reason, how many
/// similar jobs it stands for, command.
async fn print_details(client: &Client, a: &StatusArgs) -> anyhow::Result<()> {
    let jobs = client
        .search(pb::SearchRequest {
            rep_grp: a.group.rep_grp.clone().unwrap_or_default(),
            r#match: pb::search_request::Match::from(a.group.r#match) as i32,
            state: None,
            limit: a.limit,
            incomplete_only: a.group.rep_grp.is_none(),
            stale: a.stale,
        })
        .await?;
    for j in jobs {
        let state = pb::StateName::try_from(j.state)
            .map(|s| s.as_str_name().to_lowercase())
            .unwrap_or_else(|_| "?".into());
        let exit = j
            .last_run
            .as_ref()
            .filter(|r| r.exited)
            .map(|r| format!(" exit {}", r.exit_code))
            .unwrap_or_default();
        let reason = if j.fail_reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", j.fail_reason)
        };
        let similar = if j.similar > 0 {
            format!(" [+{} similar]", j.similar)
        } else {
            String::new()
        };
        let cmd = j.spec.as_ref().map(|s| s.cmd.as_str()).unwrap_or("");
        println!("{} {state}{exit}{reason}{similar}: {cmd}", j.key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::MatchArg;

    fn stats() -> pb::StatsResponse {
        let group = |counts: &[(&str, u64)]| pb::StateCounts {
            counts: counts.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
        };
        pb::StatsResponse {
            rep_groups: [
                ("align-1".to_string(), group(&[("ready", 2), ("buried", 1)])),
                ("align-2".to_string(), group(&[("ready", 3)])),
                ("call".to_string(), group(&[("complete", 4)])),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }

    fn names(stats: &pb::StatsResponse, rep_grp: Option<&str>, how: MatchArg) -> Vec<String> {
        let sel = RepGroupArg {
            rep_grp: rep_grp.map(String::from),
            r#match: how,
        };
        let groups = selected_groups(stats, &sel);
        groups.keys().map(|g| g.to_string()).collect()
    }

    #[test]
    fn rep_groups_are_selected_as_match_says() {
        let s = stats();
        assert_eq!(names(&s, None, MatchArg::Exact).len(), 3);
        assert_eq!(
            names(&s, Some("align"), MatchArg::Exact),
            Vec::<String>::new()
        );
        assert_eq!(
            names(&s, Some("align"), MatchArg::Prefix),
            ["align-1", "align-2"]
        );
        assert_eq!(names(&s, Some("l"), MatchArg::Substring).len(), 3);
        assert_eq!(names(&s, Some("call"), MatchArg::Exact), ["call"]);
    }

    #[test]
    fn totals_name_every_state_and_add_up_the_selected_groups() {
        let s = stats();
        let sel = RepGroupArg {
            rep_grp: Some("align".into()),
            r#match: MatchArg::Prefix,
        };
        let t = totals(&selected_groups(&s, &sel));
        assert_eq!(t.len(), StateName::ALL.len());
        assert_eq!((t["ready"], t["buried"], t["complete"]), (5, 1, 0));
    }
}
