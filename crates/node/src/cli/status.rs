//! `raftq status`: job counts per rep group and state, and jobs themselves: a sample of each
//! kind, those of one state, or given by key or by command; as text, tab-separated lines or
//! JSON (`-o counts|summary|details|plain|json`).

use super::{ClusterArg, RepGroupArg};
use clap::{Args, ValueEnum};
use queue_fsm::{JobKey, StateName};
use raftq_client::Client;
use raftq_node::http::json::{job_json, state_name};
use raftq_proto::pb;
use std::collections::{BTreeMap, HashMap};

#[derive(Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    cluster: ClusterArg,
    #[command(flatten)]
    group: RepGroupArg,
    /// What to print: counts (per rep group and state, the default), summary (one line of
    /// totals), details (counts, then jobs with their usage and output), plain (a
    /// tab-separated line per job: key, rep group, state, exit code, fail reason, command),
    /// json (counts, and the jobs when listed).
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Counts)]
    output: Output,
    /// Print JSON (the same as `-o json`).
    #[arg(long)]
    json: bool,
    /// List jobs: the same as `-o details`, or with `-o json` add them to the JSON.
    #[arg(long)]
    details: bool,
    /// Only jobs in this state (dependent, delayed, ready, reserved, running, lost, buried,
    /// complete); lists them. Without -i, jobs of every rep group.
    #[arg(long, value_parser = parse_state)]
    state: Option<StateName>,
    /// The job with this key (repeat for more); lists them.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// The job with this command, as `raftq add` made its key (with --cwd for a job whose
    /// cwd matters); lists it.
    #[arg(long)]
    cmd: Option<String>,
    /// With --cmd: the job's working directory, for jobs added with cwd_matters.
    #[arg(long, requires = "cmd")]
    cwd: Option<String>,
    /// When listing: jobs shown per (state, fail reason, exit code); 0 shows all.
    #[arg(long, default_value_t = 5)]
    limit: u32,
    /// Read from the node's replica without a leader round trip.
    #[arg(long)]
    stale: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Counts,
    Summary,
    Details,
    Plain,
    Json,
}

fn parse_state(s: &str) -> Result<StateName, String> {
    StateName::ALL
        .into_iter()
        .find(|n| n.as_str() == s.to_ascii_lowercase())
        .ok_or_else(|| {
            let names: Vec<&str> = StateName::ALL.iter().map(|n| n.as_str()).collect();
            format!("no state {s:?}; one of {}", names.join(", "))
        })
}

/// The counts of the selected rep groups, by group name.
type Groups<'a> = BTreeMap<&'a String, &'a pb::StateCounts>;

impl StatusArgs {
    fn output(&self) -> Output {
        if self.json {
            Output::Json
        } else if self.details && self.output == Output::Counts {
            Output::Details
        } else {
            self.output
        }
    }

    /// Whether jobs are listed, not only counted.
    fn lists_jobs(&self) -> bool {
        self.details
            || matches!(self.output, Output::Details | Output::Plain)
            || self.state.is_some()
            || self.looks_up()
    }

    /// Whether jobs are asked for by key or command.
    fn looks_up(&self) -> bool {
        !self.keys.is_empty() || self.cmd.is_some()
    }

    /// Jobs by key or command: looked up, not searched.
    fn by_key(&self) -> anyhow::Result<Option<Vec<JobKey>>> {
        if !self.looks_up() {
            return Ok(None);
        }
        let mut keys = super::select::parse_keys(&self.keys)?;
        if let Some(cmd) = &self.cmd {
            let cwd = self.cwd.as_deref().unwrap_or("");
            keys.push(JobKey::of(cmd, cwd, self.cwd.is_some(), ""));
        }
        Ok(Some(keys))
    }
}

pub(super) async fn run(a: StatusArgs) -> anyhow::Result<()> {
    let client = a.cluster.client()?;
    let output = a.output();
    let jobs = if a.lists_jobs() {
        Some(list_jobs(&client, &a).await?)
    } else {
        None
    };
    if output == Output::Plain {
        for j in jobs.iter().flatten() {
            println!("{}", plain_line(j));
        }
        return Ok(());
    }
    let stats = client.stats(a.stale).await?;
    let groups = selected_groups(&stats, &a.group);
    let states = totals(&groups);
    if output == Output::Json {
        let rep: BTreeMap<&String, &HashMap<String, u64>> =
            groups.iter().map(|(g, c)| (*g, &c.counts)).collect();
        let mut v = serde_json::json!({ "states": states, "rep_groups": rep });
        if let Some(jobs) = &jobs {
            v["jobs"] = jobs.iter().map(job_json).collect();
        }
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
    } else if output == Output::Summary {
        println!("{}", state_parts(&states).join(", "));
    } else {
        print_counts(&groups, &states);
    }
    if let Some(jobs) = &jobs {
        if jobs.is_empty() && a.looks_up() {
            println!("no job with that key or command");
        }
        for j in jobs {
            print_job(j);
        }
    }
    Ok(())
}

/// The jobs `a` asks for: by key or command, else a sample (at most --limit of each kind) of
/// the selected rep groups, or of one state, or of every incomplete job.
async fn list_jobs(client: &Client, a: &StatusArgs) -> anyhow::Result<Vec<pb::Job>> {
    if let Some(keys) = a.by_key()? {
        return Ok(client.get(&keys, a.stale).await?);
    }
    let every_group = a.group.rep_grp.is_none();
    let how = if every_group {
        pb::search_request::Match::Prefix
    } else {
        pb::search_request::Match::from(a.group.r#match)
    };
    Ok(client
        .search(pb::SearchRequest {
            rep_grp: a.group.rep_grp.clone().unwrap_or_default(),
            r#match: how as i32,
            state: a.state.map(|s| pb::StateName::from(s) as i32),
            limit: a.limit,
            // without -i and --state: what is still to do, not every job ever run
            incomplete_only: every_group && a.state.is_none(),
            stale: a.stale,
            offset: 0,
            page_size: 0,
        })
        .await?)
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
    println!("total: {}", state_parts(states).join(", "));
}

/// "ready 3, complete 4": the states with jobs, in lifecycle order.
fn state_parts(states: &BTreeMap<String, u64>) -> Vec<String> {
    StateName::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| states.get(*s).is_some_and(|n| *n > 0))
        .map(|s| format!("{s} {}", states[s]))
        .collect()
}

fn exit_code(j: &pb::Job) -> Option<i32> {
    j.last_run
        .as_ref()
        .filter(|r| r.exited)
        .map(|r| r.exit_code)
}

/// key, rep group, state, exit code (or -), fail reason (or -), command; tabs and newlines
/// inside fields shown as spaces so that each job is one line of six fields.
fn plain_line(j: &pb::Job) -> String {
    let spec = j.spec.clone().unwrap_or_default();
    let field = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.replace(['\t', '\n', '\r'], " ")
        }
    };
    [
        j.key.clone(),
        field(&spec.rep_grp),
        state_name(j),
        exit_code(j).map_or("-".into(), |c| c.to_string()),
        field(&j.fail_reason),
        field(&spec.cmd),
    ]
    .join("\t")
}

/// A job: its line (key, state, exit code, fail reason, similar jobs left out, command), then
/// what is known of it: rep group, attempts, where it ran, usage, requirements in force, and
/// the last lines of its output.
fn print_job(j: &pb::Job) {
    let exit = exit_code(j)
        .map(|c| format!(" exit {c}"))
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
    let spec = j.spec.clone().unwrap_or_default();
    println!(
        "{} {}{exit}{reason}{similar}: {}",
        j.key,
        state_name(j),
        spec.cmd
    );
    let mut facts = vec![format!("rep group {}", spec.rep_grp)];
    facts.push(format!("attempts {}", j.attempts));
    if !j.host.is_empty() {
        facts.push(format!("host {} pid {}", j.host, j.pid));
    }
    if let Some(r) = &j.last_run {
        facts.push(format!(
            "peak RAM {} MB, disk {} MB, CPU {:.1} s, wall {:.1} s",
            r.peak_ram_mb,
            r.peak_disk_mb,
            r.cpu_ms as f64 / 1000.0,
            r.wall_ms as f64 / 1000.0
        ));
    }
    println!("    {}", facts.join("; "));
    if let Some(e) = &j.effective {
        println!(
            "    requirements in force: RAM {} MB, time {} s, cores {}, disk {} GB",
            e.ram_mb,
            e.time_s,
            e.cores_milli as f64 / 1000.0,
            e.disk_gb
        );
    }
    if let Some(r) = &j.last_run {
        if !r.actual_cwd.is_empty() {
            println!("    ran in {}", r.actual_cwd);
        }
        for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            for line in tail(text, 3) {
                println!("    {name}: {line}");
            }
        }
    }
}

/// The last `n` non-empty lines of `text`.
fn tail(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
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

    fn job(state: pb::StateName, cmd: &str, run: Option<pb::RunReport>) -> pb::Job {
        pb::Job {
            key: "0123456789abcdef0123456789abcdef".into(),
            spec: Some(pb::JobSpec {
                cmd: cmd.into(),
                rep_grp: "grp".into(),
                ..Default::default()
            }),
            state: state as i32,
            fail_reason: if run.is_some() {
                "command exited non-zero".into()
            } else {
                String::new()
            },
            last_run: run,
            ..Default::default()
        }
    }

    #[test]
    fn plain_lines_have_six_fields_even_with_tabs_in_the_command() {
        let ready = job(pb::StateName::Ready, "printf 'a\tb'\necho c", None);
        let fields: Vec<String> = plain_line(&ready).split('\t').map(String::from).collect();
        assert_eq!(
            fields,
            [
                "0123456789abcdef0123456789abcdef",
                "grp",
                "ready",
                "-",
                "-",
                "printf 'a b' echo c"
            ]
        );
        let failed = job(
            pb::StateName::Buried,
            "false",
            Some(pb::RunReport {
                exited: true,
                exit_code: 1,
                ..Default::default()
            }),
        );
        let line = plain_line(&failed);
        assert!(
            line.ends_with("\tburied\t1\tcommand exited non-zero\tfalse"),
            "{line}"
        );
    }

    #[test]
    fn tails_keep_the_last_non_empty_lines() {
        assert_eq!(tail("a\nb\n\nc\nd\n", 3), ["b", "c", "d"]);
        assert_eq!(tail("only", 3), ["only"]);
        assert!(tail("", 3).is_empty());
    }

    #[test]
    fn states_parse_by_name_and_a_bad_one_lists_them() {
        assert_eq!(parse_state("Complete"), Ok(StateName::Complete));
        let e = parse_state("done").unwrap_err();
        assert!(e.contains("\"done\"") && e.contains("buried"), "{e}");
    }
}
