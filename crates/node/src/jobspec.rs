//! Jobs from wr's text format into [`pb::JobSpec`]: one job per line, either a plain command
//! or a JSON object with wr's field names (`cmd`, `cwd`, `memory` "1G", `time` "1h", `cpus`,
//! ...). [`JobDefaults`] gives the defaults (`raftq add` fills them from its flags); a JSON
//! field overrides its default. It lives in the node library, free of clap, because whatever
//! accepts jobs in this format (`raftq add` today, the node's REST API later) must validate
//! them the same way.

use raftq_proto::pb;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Defaults for every job of one batch of lines (`raftq add` takes them from its flags).
#[derive(Clone, Debug, Default)]
pub struct JobDefaults {
    pub cwd: String,
    pub cwd_matters: bool,
    pub change_home: bool,
    pub rep_grp: String,
    pub req_grp: String,
    pub memory_mb: u32,
    pub time_s: u32,
    pub cores_milli: u32,
    pub disk_gb: u32,
    pub override_mode: u32,
    pub priority: u32,
    pub retries: u32,
    pub dep_grps: Vec<String>,
    pub deps: Vec<String>,
    pub limit_grps: Vec<String>,
}

impl JobDefaults {
    /// wr's defaults: 1000 MB, 1 hour, 1 core, cwd /tmp.
    pub fn standard() -> JobDefaults {
        JobDefaults {
            cwd: "/tmp".into(),
            memory_mb: 1000,
            time_s: 3600,
            cores_milli: 1000,
            ..JobDefaults::default()
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JsonBehaviour {
    run: Option<String>,
    cleanup: Option<bool>,
    cleanup_all: Option<bool>,
    remove: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEssence {
    cmd: String,
    #[serde(default)]
    cwd: String,
    #[serde(default)]
    mounts: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonJob {
    cmd: Option<String>,
    cwd: Option<String>,
    cwd_matters: Option<bool>,
    change_home: Option<bool>,
    mounts: Option<serde_json::Value>,
    req_grp: Option<String>,
    memory: Option<serde_json::Value>,
    time: Option<serde_json::Value>,
    cpus: Option<f64>,
    disk: Option<i64>,
    #[serde(rename = "override")]
    override_mode: Option<i64>,
    priority: Option<i64>,
    retries: Option<i64>,
    rep_grp: Option<String>,
    dep_grps: Option<Vec<String>>,
    deps: Option<Vec<String>>,
    cmd_deps: Option<Vec<JsonEssence>>,
    on_failure: Option<Vec<JsonBehaviour>>,
    on_success: Option<Vec<JsonBehaviour>>,
    on_exit: Option<Vec<JsonBehaviour>>,
    env: Option<Vec<String>>,
    limit_grps: Option<Vec<String>>,
}

/// A bad line: which line (1-based), which field, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {reason}")]
pub struct LineError {
    pub line: usize,
    pub field: String,
    pub reason: String,
}

/// Parses a size like `1G`, `500M`, `2.5G`, `1024` (MB) into MB.
pub fn parse_memory_mb(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'M' => 1.0,
                'G' => 1024.0,
                'T' => 1024.0 * 1024.0,
                _ => return Err(format!("{s:?}: use a number with M, G or T (e.g. 1G)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1.0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 500M, 1G)"))?;
    if !n.is_finite() || n < 0.0 || n * mult > u32::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok((n * mult).ceil() as u32)
}

/// Parses a duration like `1h`, `30m`, `90s`, `1h30m`, or plain seconds, into seconds.
pub fn parse_duration_s(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<u64>() {
        return u32::try_from(n).map_err(|_| format!("{s:?} is out of range"));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            'd' => 86400.0,
            _ => return Err(format!("{s:?} is not a duration (e.g. 1h, 30m, 90s)")),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{s:?} is not a duration (e.g. 1h, 30m, 90s)"))?;
        // `as` saturates a huge product; the sum must not wrap either
        total = total
            .checked_add((n * unit).ceil() as u64)
            .ok_or_else(|| format!("{s:?} is out of range"))?;
        num.clear();
    }
    if !num.is_empty() || t.is_empty() {
        return Err(format!("{s:?} is not a duration (e.g. 1h, 30m, 90s)"));
    }
    u32::try_from(total).map_err(|_| format!("{s:?} is out of range"))
}

fn value_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn behaviours(
    out: &mut Vec<pb::Behaviour>,
    when: pb::behaviour::When,
    list: Option<Vec<JsonBehaviour>>,
    field: &str,
) -> Result<(), (String, String)> {
    use pb::behaviour::Action;
    for (i, b) in list.unwrap_or_default().into_iter().enumerate() {
        let mut actions = Vec::new();
        if let Some(r) = b.run {
            actions.push(Action::Run(r));
        }
        if b.cleanup == Some(true) {
            actions.push(Action::Cleanup(true));
        }
        if b.cleanup_all == Some(true) {
            actions.push(Action::CleanupAll(true));
        }
        if b.remove == Some(true) {
            actions.push(Action::Remove(true));
        }
        if actions.len() != 1 {
            return Err((
                format!("{field}[{i}]"),
                "give exactly one of run, cleanup, cleanup_all, remove".into(),
            ));
        }
        out.push(pb::Behaviour {
            when: when as i32,
            action: actions.pop(),
        });
    }
    Ok(())
}

fn int_in(field: &str, v: i64, max: i64) -> Result<u32, (String, String)> {
    if !(0..=max).contains(&v) {
        return Err((field.into(), format!("{v} is not in 0..={max}")));
    }
    Ok(v as u32)
}

/// A field that is either a plain number in its unit (`memory` 500, `time` 90) or text that
/// `parse` reads (`"1G"`, `"1h30m"`); `default` when absent.
fn number_or_text(
    field: &str,
    value: &Option<serde_json::Value>,
    default: u32,
    unit: &str,
    parse: fn(&str) -> Result<u32, String>,
) -> Result<u32, (String, String)> {
    match value {
        None => Ok(default),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| (field.to_string(), format!("{n} is not {unit}"))),
        Some(v) => parse(&value_str(v)).map_err(|e| (field.to_string(), e)),
    }
}

/// The requirements of a JSON object line: its `memory`, `time`, `cpus` and `disk`, or the
/// defaults.
fn json_requirements(j: &JsonJob, d: &JobDefaults) -> Result<pb::Requirements, (String, String)> {
    let ram_mb = number_or_text(
        "memory",
        &j.memory,
        d.memory_mb,
        "a size in MB",
        parse_memory_mb,
    )?;
    let time_s = number_or_text("time", &j.time, d.time_s, "seconds", parse_duration_s)?;
    let cores_milli = match j.cpus {
        None => d.cores_milli,
        Some(c) if c.is_finite() && (0.0..=4096.0).contains(&c) => (c * 1000.0).round() as u32,
        Some(c) => return Err(("cpus".into(), format!("{c} is not in 0..=4096"))),
    };
    let disk_gb = match j.disk {
        None => d.disk_gb,
        Some(v) => int_in("disk", v, u32::MAX as i64)?,
    };
    Ok(pb::Requirements {
        ram_mb,
        time_s,
        cores_milli,
        disk_gb,
        other: BTreeMap::new().into_iter().collect(),
    })
}

/// Refuses a `mounts` field that asks for anything (null, "", [] and {} ask for nothing):
/// nothing mounts them yet, and a job must not be accepted and run without them.
fn no_mounts(field: String, mounts: &Option<serde_json::Value>) -> Result<(), (String, String)> {
    use serde_json::Value;
    let empty = match mounts {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        Some(_) => false,
    };
    if empty {
        return Ok(());
    }
    Err((field, raftq_proto::convert::MOUNTS_UNSUPPORTED.into()))
}

/// The dependencies of a JSON object line: dep groups (`deps`, or the defaults) and jobs
/// named by their essence (`cmd_deps`).
fn json_deps(
    groups: Option<Vec<String>>,
    essences: Option<Vec<JsonEssence>>,
    d: &JobDefaults,
) -> Result<Vec<pb::Dependency>, (String, String)> {
    let mut deps: Vec<pb::Dependency> = groups
        .unwrap_or_else(|| d.deps.clone())
        .into_iter()
        .map(|g| pb::Dependency {
            target: Some(pb::dependency::Target::DepGroup(g)),
        })
        .collect();
    for (i, e) in essences.unwrap_or_default().into_iter().enumerate() {
        // A job with mounts cannot be added, so a dependency on one could never be met.
        no_mounts(format!("cmd_deps[{i}].mounts"), &e.mounts)?;
        let key = queue_fsm::JobKey::of_essence(&e.cmd, &e.cwd, "");
        deps.push(pb::Dependency {
            target: Some(pb::dependency::Target::JobKey(key.to_string())),
        });
    }
    Ok(deps)
}

/// The job of a JSON object line.
fn from_json(mut j: JsonJob, d: &JobDefaults) -> Result<pb::JobSpec, (String, String)> {
    let cmd = j
        .cmd
        .take()
        .ok_or_else(|| ("cmd".to_string(), "is required".to_string()))?;
    no_mounts("mounts".into(), &j.mounts)?;
    let requirements = json_requirements(&j, d)?;
    let deps = json_deps(j.deps, j.cmd_deps, d)?;
    let mut bs = Vec::new();
    behaviours(
        &mut bs,
        pb::behaviour::When::OnFailure,
        j.on_failure,
        "on_failure",
    )?;
    behaviours(
        &mut bs,
        pb::behaviour::When::OnSuccess,
        j.on_success,
        "on_success",
    )?;
    behaviours(&mut bs, pb::behaviour::When::OnExit, j.on_exit, "on_exit")?;
    Ok(pb::JobSpec {
        cmd,
        cwd: j.cwd.unwrap_or_else(|| d.cwd.clone()),
        cwd_matters: j.cwd_matters.unwrap_or(d.cwd_matters),
        change_home: j.change_home.unwrap_or(d.change_home),
        mounts: String::new(),
        rep_grp: j.rep_grp.unwrap_or_else(|| d.rep_grp.clone()),
        req_grp: j.req_grp.unwrap_or_else(|| d.req_grp.clone()),
        requirements: Some(requirements),
        r#override: match j.override_mode {
            None => d.override_mode,
            Some(v) => int_in("override", v, 2)?,
        },
        priority: match j.priority {
            None => d.priority,
            Some(v) => int_in("priority", v, 255)?,
        },
        retries: match j.retries {
            None => d.retries,
            Some(v) => int_in("retries", v, 255)?,
        },
        dep_grps: j.dep_grps.unwrap_or_else(|| d.dep_grps.clone()),
        deps,
        behaviours: bs,
        env_override: j.env.unwrap_or_default(),
        limit_grps: j.limit_grps.unwrap_or_else(|| d.limit_grps.clone()),
    })
}

/// The job of a plain command line.
fn from_plain(cmd: &str, d: &JobDefaults) -> pb::JobSpec {
    pb::JobSpec {
        cmd: cmd.to_string(),
        cwd: d.cwd.clone(),
        cwd_matters: d.cwd_matters,
        change_home: d.change_home,
        mounts: String::new(),
        rep_grp: d.rep_grp.clone(),
        req_grp: d.req_grp.clone(),
        requirements: Some(pb::Requirements {
            ram_mb: d.memory_mb,
            time_s: d.time_s,
            cores_milli: d.cores_milli,
            disk_gb: d.disk_gb,
            other: Default::default(),
        }),
        r#override: d.override_mode,
        priority: d.priority,
        retries: d.retries,
        dep_grps: d.dep_grps.clone(),
        deps: d
            .deps
            .iter()
            .map(|g| pb::Dependency {
                target: Some(pb::dependency::Target::DepGroup(g.clone())),
            })
            .collect(),
        behaviours: Vec::new(),
        env_override: Vec::new(),
        limit_grps: d.limit_grps.clone(),
    }
}

/// Parses one input line (1-based `line` for errors). Blank lines and `#` comments give None.
pub fn parse_line(
    line: usize,
    text: &str,
    d: &JobDefaults,
) -> Result<Option<pb::JobSpec>, LineError> {
    let t = text.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    if !t.starts_with('{') {
        return checked(line, from_plain(t, d)).map(Some);
    }
    let j: JsonJob = serde_json::from_str(t).map_err(|e| {
        let msg = e.to_string();
        // serde names unknown fields in its message: "unknown field `x`, expected ..."
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field"))
            .unwrap_or("json")
            .to_string();
        LineError {
            line,
            field,
            reason: msg,
        }
    })?;
    let spec = from_json(j, d).map_err(|(field, reason)| LineError {
        line,
        field,
        reason,
    })?;
    checked(line, spec).map(Some)
}

/// `spec` if the queue would take it, checked here by the same conversion and bounds the
/// node applies (all but what needs the queue's state, such as dependency cycles), so that a
/// bad line stops `raftq add` before any batch is sent, not after some were added.
fn checked(line: usize, spec: pb::JobSpec) -> Result<pb::JobSpec, LineError> {
    let at = |field: String, reason: String| LineError {
        line,
        field,
        reason,
    };
    let fsm = queue_fsm::JobSpec::try_from(spec.clone()).map_err(|e| at(e.field, e.reason))?;
    queue_fsm::limits::validate_spec(&fsm).map_err(|e| at(e.field, e.reason))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_memory_mb("1G"), Ok(1024));
        assert_eq!(parse_memory_mb("500M"), Ok(500));
        assert_eq!(parse_memory_mb("1.5g"), Ok(1536));
        assert_eq!(parse_memory_mb("200"), Ok(200));
        assert!(parse_memory_mb("1X").is_err());
        assert!(parse_memory_mb("-1G").is_err());
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert_eq!(parse_duration_s("1h30m"), Ok(5400));
        assert_eq!(parse_duration_s("90s"), Ok(90));
        assert_eq!(parse_duration_s("45"), Ok(45));
        assert!(parse_duration_s("1y").is_err());
        assert!(parse_duration_s("").is_err());
        assert!(parse_duration_s("h").is_err());
        // sums that would wrap are out of range, not a panic or a small number
        let e = parse_duration_s("18446744073709551615s1s").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        assert!(parse_duration_s("99999999999999999999999h").is_err());
    }

    #[test]
    fn plain_and_comment_lines() {
        let d = JobDefaults::standard();
        assert_eq!(parse_line(1, "   ", &d), Ok(None));
        assert_eq!(parse_line(1, "# note", &d), Ok(None));
        let j = parse_line(1, "echo hi", &d).unwrap().unwrap();
        assert_eq!(j.cmd, "echo hi");
        assert_eq!(j.requirements.unwrap().ram_mb, 1000);
        assert_eq!(j.cwd, "/tmp");
    }

    #[test]
    fn json_line_with_wr_fields() {
        let d = JobDefaults::standard();
        let line = r#"{"cmd":"bwa mem x","cwd":"/data","cwd_matters":true,"memory":"2G","time":"30m","cpus":2.5,"disk":3,"override":1,"priority":9,"retries":2,"rep_grp":"align","req_grp":"bwa","dep_grps":["a"],"deps":["ref"],"cmd_deps":[{"cmd":"index ref","cwd":"/data"}],"on_failure":[{"run":"echo failed"}],"on_success":[{"cleanup":true}],"env":["X=1"],"limit_grps":["db:2"]}"#;
        let j = parse_line(3, line, &d).unwrap().unwrap();
        let r = j.requirements.clone().unwrap();
        assert_eq!(
            (r.ram_mb, r.time_s, r.cores_milli, r.disk_gb),
            (2048, 1800, 2500, 3)
        );
        assert_eq!((j.r#override, j.priority, j.retries), (1, 9, 2));
        assert_eq!(j.deps.len(), 2);
        let essence = queue_fsm::JobKey::of("index ref", "/data", true, "").to_string();
        assert_eq!(
            j.deps[1].target,
            Some(pb::dependency::Target::JobKey(essence))
        );
        assert_eq!(j.behaviours.len(), 2);
        assert_eq!(j.env_override, vec!["X=1"]);
        assert_eq!(j.limit_grps, vec!["db:2"]);
    }

    #[test]
    fn bad_lines_name_line_and_field() {
        let d = JobDefaults::standard();
        let e = parse_line(7, r#"{"cmd":"x","priority":300}"#, &d).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (7, "priority"));
        let e = parse_line(2, r#"{"cmd":"x","memory":"lots"}"#, &d).unwrap_err();
        assert_eq!(e.field, "memory");
        // the queue's own bounds are checked on the line, before anything is sent
        let long = format!(r#"{{"cmd":"x","rep_grp":"{}"}}"#, "g".repeat(1000));
        let e = parse_line(4, &long, &d).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "rep_grp"), "{e:?}");
        let e = parse_line(5, r#"{"cmd":"x","other":{"a:b":"1"}}"#, &d);
        assert!(e.is_err(), "{e:?}");
        let e = parse_line(2, r#"{"cmd":"x","colour":"red"}"#, &d).unwrap_err();
        assert_eq!(e.field, "colour");
        let e = parse_line(2, r#"{"cwd":"/x"}"#, &d).unwrap_err();
        assert_eq!(e.field, "cmd");
        let e = parse_line(
            2,
            r#"{"cmd":"x","on_exit":[{"run":"a","cleanup":true}]}"#,
            &d,
        )
        .unwrap_err();
        assert_eq!(e.field, "on_exit[0]");
        let e = parse_line(5, r#"{"cmd":"x","mounts":[{"Mount":"/m"}]}"#, &d).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (5, "mounts"));
        assert!(e.reason.contains("not supported"), "{e}");
        let e = parse_line(
            5,
            r#"{"cmd":"x","cmd_deps":[{"cmd":"y","mounts":"s3://b"}]}"#,
            &d,
        )
        .unwrap_err();
        assert_eq!(e.field, "cmd_deps[0].mounts");
        for nothing in [r#""""#, "[]", "null", "{}"] {
            let line = format!(r#"{{"cmd":"x","mounts":{nothing}}}"#);
            assert!(parse_line(5, &line, &d).is_ok(), "{line}");
        }
        let e = parse_line(4, r#"{"cmd": "x""#, &d).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (4, "json"));
        assert!(e.to_string().starts_with("line 4: json: "));
    }
}
