//! `/rest/v1/…`: the REST API, shaped as wr's (jobs listed by rep group, state or key with a
//! limit, added as a JSON array of wr job objects, removed by state or rep group; info and
//! version), plus the cluster, kill/retry, and the queue's mode.
//!
//! Every handler calls the Queue or Admin service's own code (see the module docs of
//! [`super`]), so a follower forwards writes to the leader and reads are linearizable unless
//! `stale=true`. Errors are JSON: `{"error": "...", "field": "...", "code": "..."}`, the field
//! named whenever one is at fault.

use super::json::{counts_json, job_json};
use super::Shared;
use crate::jobspec::{parse_duration_s, parse_line, parse_memory_mb, JobDefaults};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use pb::queue_server::Queue;
use queue_fsm::{JobKey, KeyAction, StateName};
use raftq_proto::pb;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Jobs listed in one page at most.
pub const MAX_PAGE_JOBS: usize = 1_000;
/// Keys given in one `key=` parameter at most.
const MAX_KEYS_PER_QUERY: usize = 1_000;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/rest/v1/jobs",
            get(list_jobs).post(add_jobs).delete(remove_jobs),
        )
        .route("/rest/v1/jobs/kill", post(kill_jobs))
        .route("/rest/v1/jobs/retry", post(retry_jobs))
        .route("/rest/v1/jobs/{key}", get(one_job))
        .route("/rest/v1/info", get(info))
        .route("/rest/v1/version", get(version))
        .route("/rest/v1/cluster", get(cluster))
        .route("/rest/v1/queue", put(set_queue_mode))
}

/// A refusal as JSON, with the HTTP status that fits it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {}", message.into()),
            field: Some(field.to_string()),
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        use tonic::Code;
        let status = match s.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let field = match raftq_proto::convert::status_command_error(&s) {
            Some(queue_fsm::CommandError::Invalid { field, .. }) => Some(field),
            _ => None,
        };
        ApiError {
            status,
            message: s.message().to_string(),
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Query parameters, refusing any the route does not know (a typo must not widen a delete).
struct Params(HashMap<String, String>);

impl Params {
    fn check(q: HashMap<String, String>, known: &[&str]) -> Result<Params, ApiError> {
        if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(ApiError::bad(
                k,
                format!("unknown parameter; known: {}", known.join(", ")),
            ));
        }
        Ok(Params(q))
    }

    fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn bool(&self, k: &str) -> Result<bool, ApiError> {
        match self.str(k) {
            None => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(v) => Err(ApiError::bad(k, format!("{v:?} is not true or false"))),
        }
    }

    fn num(&self, k: &str, max: u64) -> Result<Option<u64>, ApiError> {
        match self.str(k) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(ApiError::bad(
                    k,
                    format!("{v:?} is not a whole number in 0..={max}"),
                )),
            },
        }
    }

    fn state(&self) -> Result<Option<StateName>, ApiError> {
        let Some(v) = self.str("state") else {
            return Ok(None);
        };
        StateName::ALL
            .into_iter()
            .find(|s| s.as_str() == v.to_ascii_lowercase())
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = StateName::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad(
                    "state",
                    format!("no state {v:?}; one of {}", names.join(", ")),
                )
            })
    }

    fn how(&self) -> Result<pb::search_request::Match, ApiError> {
        use pb::search_request::Match;
        match self.str("match") {
            None | Some("exact") => Ok(Match::Exact),
            Some("prefix") => Ok(Match::Prefix),
            Some("substring") => Ok(Match::Substring),
            Some(v) => Err(ApiError::bad(
                "match",
                format!("{v:?}: one of exact, prefix, substring"),
            )),
        }
    }

    fn keys(&self) -> Result<Vec<JobKey>, ApiError> {
        let Some(v) = self.str("key") else {
            return Ok(Vec::new());
        };
        let keys: Vec<&str> = v.split(',').filter(|k| !k.is_empty()).collect();
        if keys.len() > MAX_KEYS_PER_QUERY {
            return Err(ApiError::bad(
                "key",
                format!(
                    "{} keys; at most {MAX_KEYS_PER_QUERY} per request",
                    keys.len()
                ),
            ));
        }
        keys.into_iter()
            .map(|k| {
                JobKey::parse(k).ok_or_else(|| {
                    ApiError::bad("key", format!("{k:?} is not a job key (32 hex digits)"))
                })
            })
            .collect()
    }
}

fn request_id() -> Vec<u8> {
    uuid::Uuid::new_v4().as_bytes().to_vec()
}

fn json_response(v: Value) -> Response {
    Json(v).into_response()
}

const LIST_PARAMS: &[&str] = &[
    "rep_grp", "match", "state", "key", "limit", "offset", "count", "all", "stale",
];

/// `GET /rest/v1/jobs`: by `key` (comma-separated), or by `rep_grp` (`match`: exact, prefix,
/// substring) and `state`; without either, the incomplete jobs (`all=true`: every job).
/// `limit` keeps that many per (state, fail reason, exit code), the others counted in each
/// kept job's `similar` (wr's grouping); `offset` and `count` page the list (the whole list's
/// length is in `X-Total-Count`). The body is a JSON array of jobs.
async fn list_jobs(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let p = Params::check(q, LIST_PARAMS)?;
    let stale = p.bool("stale")?;
    let keys = p.keys()?;
    let offset = p.num("offset", u32::MAX as u64)?.unwrap_or(0) as usize;
    let count = p
        .num("count", MAX_PAGE_JOBS as u64)?
        .map_or(MAX_PAGE_JOBS, |c| c as usize);
    let (page, total): (Vec<pb::Job>, u64) = if !keys.is_empty() {
        let keys = keys.iter().map(JobKey::to_string).collect();
        let jobs = s
            .queue
            .get(tonic::Request::new(pb::GetRequest { keys, stale }))
            .await?
            .into_inner()
            .jobs;
        let total = jobs.len() as u64;
        (jobs.into_iter().skip(offset).take(count).collect(), total)
    } else {
        let rep_grp = p.str("rep_grp").unwrap_or("").to_string();
        let every_group = rep_grp.is_empty();
        let state = p.state()?;
        let how = if every_group {
            pb::search_request::Match::Prefix
        } else {
            p.how()?
        };
        let limit = p.num("limit", u32::MAX as u64)?.unwrap_or(0) as u32;
        let incomplete_only = state.is_none() && !p.bool("all")?;
        let mut req = pb::SearchRequest {
            rep_grp: rep_grp.clone(),
            r#match: how as i32,
            state: state.map(|st| pb::StateName::from(st) as i32),
            limit,
            incomplete_only,
            stale,
            offset: 0,
            page_size: 0,
        };
        if limit == 0 {
            // A page, read as far as its end only; the total from the counters, so that a
            // page of a million-job queue costs its own jobs, not the queue's.
            req.offset = u32::try_from(offset).unwrap_or(u32::MAX);
            req.page_size = count as u32;
            let jobs = s
                .queue
                .search(tonic::Request::new(req))
                .await?
                .into_inner()
                .jobs;
            let total = matching_total(&s, &rep_grp, how, state, incomplete_only, stale).await?;
            (jobs, total)
        } else {
            // wr's similar grouping needs every matching job (bounded by the node).
            let jobs = s
                .queue
                .search(tonic::Request::new(req))
                .await?
                .into_inner()
                .jobs;
            let total = jobs.len() as u64;
            (jobs.into_iter().skip(offset).take(count).collect(), total)
        }
    };
    let mut resp = json_response(Value::Array(page.iter().map(job_json).collect()));
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        resp.headers_mut().insert("x-total-count", v);
    }
    Ok(resp)
}

/// How many jobs a listing matches, from the counts per rep group and state (O(groups)).
async fn matching_total(
    s: &Shared,
    rep_grp: &str,
    how: pb::search_request::Match,
    state: Option<StateName>,
    incomplete_only: bool,
    stale: bool,
) -> Result<u64, ApiError> {
    use pb::search_request::Match;
    let stats = s
        .queue
        .stats(tonic::Request::new(pb::StatsRequest { stale }))
        .await?
        .into_inner();
    let group_matches = |g: &str| match how {
        Match::Exact => g == rep_grp,
        Match::Prefix => g.starts_with(rep_grp),
        Match::Substring => g.contains(rep_grp),
    };
    let state_counts = |name: &str| match state {
        Some(st) => name == st.as_str(),
        None => !(incomplete_only && name == StateName::Complete.as_str()),
    };
    Ok(stats
        .rep_groups
        .iter()
        .filter(|(g, _)| group_matches(g))
        .flat_map(|(_, c)| c.counts.iter())
        .filter(|(name, _)| state_counts(name))
        .map(|(_, n)| *n)
        .sum())
}

/// `GET /rest/v1/jobs/KEY`: one job, with the names (not the values) of its environment.
async fn one_job(State(s): State<Shared>, Path(key): Path<String>) -> ApiResult {
    let key = JobKey::parse(&key)
        .ok_or_else(|| ApiError::bad("key", format!("{key:?} is not a job key (32 hex digits)")))?;
    let jobs = s
        .queue
        .get(tonic::Request::new(pb::GetRequest {
            keys: vec![key.to_string()],
            stale: false,
        }))
        .await?
        .into_inner()
        .jobs;
    let Some(job) = jobs.first() else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no job {key}"),
            field: Some("key".into()),
        });
    };
    let mut v = job_json(job);
    if !job.env_hash.is_empty() {
        let env = s
            .queue
            .get_env(tonic::Request::new(pb::GetEnvRequest {
                env_hash: job.env_hash.clone(),
                stale: true,
            }))
            .await
            .map(|r| r.into_inner().env)
            .unwrap_or_default();
        let names: Vec<&str> = env
            .iter()
            .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
            .collect();
        v["env"] = json!(names);
    }
    Ok(json_response(v))
}

const ADD_PARAMS: &[&str] = &[
    "cwd",
    "cwd_matters",
    "change_home",
    "rep_grp",
    "req_grp",
    "memory",
    "time",
    "cpus",
    "disk",
    "override",
    "priority",
    "retries",
    "ignore_complete",
];

/// The defaults of an add: wr's, then the query parameters (a job's own fields win).
fn add_defaults(p: &Params) -> Result<JobDefaults, ApiError> {
    let mut d = JobDefaults::standard();
    if let Some(v) = p.str("cwd") {
        d.cwd = v.into();
    }
    d.cwd_matters = p.bool("cwd_matters")?;
    d.change_home = p.bool("change_home")?;
    if let Some(v) = p.str("rep_grp") {
        d.rep_grp = v.into();
    }
    if let Some(v) = p.str("req_grp") {
        d.req_grp = v.into();
    }
    if let Some(v) = p.str("memory") {
        d.memory_mb = parse_memory_mb(v).map_err(|e| ApiError::bad("memory", e))?;
    }
    if let Some(v) = p.str("time") {
        d.time_s = parse_duration_s(v).map_err(|e| ApiError::bad("time", e))?;
    }
    if let Some(v) = p.str("cpus") {
        match v.parse::<f64>() {
            Ok(c) if c.is_finite() && (0.0..=4096.0).contains(&c) => {
                d.cores_milli = (c * 1000.0).round() as u32
            }
            _ => return Err(ApiError::bad("cpus", format!("{v:?} is not in 0..=4096"))),
        }
    }
    if let Some(n) = p.num("disk", u32::MAX as u64)? {
        d.disk_gb = n as u32;
    }
    if let Some(n) = p.num("override", 2)? {
        d.override_mode = n as u32;
    }
    if let Some(n) = p.num("priority", 255)? {
        d.priority = n as u32;
    }
    if let Some(n) = p.num("retries", 255)? {
        d.retries = n as u32;
    }
    Ok(d)
}

/// The jobs of a POST body: a JSON array of wr job objects, each read as `raftq add` reads a
/// JSON line (the same validation); an error names `jobs[i].field`.
pub fn jobs_of_body(body: &[u8], d: &JobDefaults) -> Result<Vec<pb::JobSpec>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("jobs", format!("the body is not JSON: {e}")))?;
    let Value::Array(items) = v else {
        return Err(ApiError::bad(
            "jobs",
            "the body must be a JSON array of job objects ([{\"cmd\": \"...\"}, ...])",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::bad(
            "jobs",
            "the array is empty: give at least one job",
        ));
    }
    let mut jobs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(ApiError::bad(
                &format!("jobs[{i}]"),
                "must be a JSON object with at least \"cmd\"",
            ));
        }
        let text = item.to_string();
        match parse_line(i + 1, &text, d) {
            Ok(Some(j)) => jobs.push(j),
            Ok(None) => return Err(ApiError::bad(&format!("jobs[{i}]"), "is empty")),
            Err(e) => return Err(ApiError::bad(&format!("jobs[{i}].{}", e.field), e.reason)),
        }
    }
    Ok(jobs)
}

/// `POST /rest/v1/jobs`: adds the jobs of the body (no environment but each job's own `env`);
/// answers the counts and every job's key, in the body's order.
async fn add_jobs(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let p = Params::check(q, ADD_PARAMS)?;
    let d = add_defaults(&p)?;
    let jobs = jobs_of_body(&body, &d)?;
    let r = s
        .queue
        .add(tonic::Request::new(pb::AddRequest {
            request_id: request_id(),
            jobs,
            env: Vec::new(),
            ignore_complete: p.bool("ignore_complete")?,
            return_keys: true,
        }))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "added": r.added, "existed": r.existed, "keys": r.keys })),
    )
        .into_response())
}

const SELECT_PARAMS: &[&str] = &["rep_grp", "match", "state", "key"];

/// The keys of the jobs a kill, retry or remove is for: those given by `key`, or the jobs of
/// `rep_grp` and/or `state` in a state the action takes.
async fn select(s: &Shared, p: &Params, action: KeyAction) -> Result<Vec<String>, ApiError> {
    let keys = p.keys()?;
    let rep_grp = p.str("rep_grp").unwrap_or("").to_string();
    let state = p.state()?;
    if !keys.is_empty() {
        if !rep_grp.is_empty() || state.is_some() {
            return Err(ApiError::bad(
                "key",
                "give key, or rep_grp and/or state, not both",
            ));
        }
        return Ok(keys.iter().map(JobKey::to_string).collect());
    }
    if rep_grp.is_empty() && state.is_none() {
        return Err(ApiError::bad(
            "rep_grp",
            "say which jobs: rep_grp, state (or both), or key",
        ));
    }
    let want = action.states();
    if let Some(st) = state {
        if !want.contains(&st) {
            let names: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
            return Err(ApiError::bad(
                "state",
                format!(
                    "this action takes jobs that are {}, not {}",
                    names.join(", "),
                    st.as_str()
                ),
            ));
        }
    }
    let how = if rep_grp.is_empty() {
        pb::search_request::Match::Prefix
    } else {
        p.how()?
    };
    let jobs = s
        .queue
        .search(tonic::Request::new(pb::SearchRequest {
            rep_grp,
            r#match: how as i32,
            state: state.map(|st| pb::StateName::from(st) as i32),
            limit: 0,
            incomplete_only: true,
            stale: false,
            offset: 0,
            page_size: 0,
        }))
        .await?
        .into_inner()
        .jobs;
    Ok(jobs
        .into_iter()
        .filter(|j| {
            want.iter()
                .any(|w| pb::StateName::from(*w) as i32 == j.state)
        })
        .map(|j| j.key)
        .collect())
}

/// `DELETE /rest/v1/jobs`: removes the waiting or buried jobs chosen by `key`, or by
/// `rep_grp` and/or `state`; answers how many, and the ones kept and why.
async fn remove_jobs(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let p = Params::check(q, SELECT_PARAMS)?;
    let keys = select(&s, &p, KeyAction::Delete).await?;
    if keys.is_empty() {
        return Ok(json_response(json!({ "deleted": 0, "skipped": [] })));
    }
    let r = s
        .queue
        .delete(tonic::Request::new(pb::KeysRequest {
            request_id: request_id(),
            keys,
        }))
        .await?
        .into_inner();
    let skipped: Vec<Value> = r
        .skipped
        .iter()
        .map(|k| {
            let why = pb::skipped::Why::try_from(k.why)
                .map(|w| w.as_str_name().to_lowercase())
                .unwrap_or_default();
            json!({ "key": k.key, "why": why, "detail": k.detail })
        })
        .collect();
    Ok(json_response(
        json!({ "deleted": r.deleted, "skipped": skipped }),
    ))
}

/// `POST /rest/v1/jobs/kill`: asks the runners of the chosen reserved or running jobs to stop
/// them (they end buried); buries lost ones.
async fn kill_jobs(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    counted_action(&s, q, Counted::Kill).await
}

/// `POST /rest/v1/jobs/retry`: puts the chosen buried jobs back in the queue.
async fn retry_jobs(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    counted_action(&s, q, Counted::Kick).await
}

/// The actions answered with how many jobs they changed.
#[derive(Clone, Copy)]
enum Counted {
    Kill,
    Kick,
}

/// Kill or Kick of the jobs the query selects, answered with how many it changed.
async fn counted_action(s: &Shared, q: HashMap<String, String>, action: Counted) -> ApiResult {
    let p = Params::check(q, SELECT_PARAMS)?;
    let on = match action {
        Counted::Kill => KeyAction::Kill,
        Counted::Kick => KeyAction::Kick,
    };
    let keys = select(s, &p, on).await?;
    let count = if keys.is_empty() {
        0
    } else {
        let req = tonic::Request::new(pb::KeysRequest {
            request_id: request_id(),
            keys,
        });
        let r = match action {
            Counted::Kill => s.queue.kill(req).await?,
            Counted::Kick => s.queue.kick(req).await?,
        };
        r.into_inner().count
    };
    Ok(json_response(json!({ "count": count })))
}

/// `GET /rest/v1/info`: counts per rep group and state, ready jobs per scheduler group, and
/// this node's view (its id, the leader, the term).
async fn info(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> ApiResult {
    let p = Params::check(q, &["stale"])?;
    let stats = s
        .queue
        .stats(tonic::Request::new(pb::StatsRequest {
            stale: p.bool("stale")?,
        }))
        .await?
        .into_inner();
    let view = s.node.view();
    let mut v = counts_json(&stats);
    v["ready_by_sched_group"] = json!(stats.ready_by_sched_group);
    v["node"] = json!(s.node.id());
    v["leader"] = json!(view.leader.unwrap_or(0));
    v["term"] = json!(view.term);
    v["version"] = json!(env!("CARGO_PKG_VERSION"));
    Ok(json_response(v))
}

/// `GET /rest/v1/version`.
async fn version() -> Response {
    json_response(json!({ "version": env!("CARGO_PKG_VERSION"), "api": "v1" }))
}

/// `GET /rest/v1/cluster`: the cluster as the leader sees it (a follower asks the leader;
/// when it cannot, its own view with `"stale": true` and the reason).
async fn cluster(State(s): State<Shared>) -> ApiResult {
    Ok(json_response(super::cluster_view(&s).await?))
}

/// `PUT /rest/v1/queue` with `{"mode": "open" | "paused" | "draining"}`: whether runners get
/// new jobs (paused: none until resumed; draining: none, and idle runners exit).
async fn set_queue_mode(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    use pb::set_reserving_request::Mode;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(ApiError::bad("Content-Type", "send application/json"));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("mode", format!("the body is not JSON: {e}")))?;
    let mode = match v.get("mode").and_then(Value::as_str) {
        Some("open") => Mode::Open,
        Some("paused") => Mode::Paused,
        Some("draining") => Mode::Draining,
        _ => {
            return Err(ApiError::bad(
                "mode",
                "give {\"mode\": \"open\"}, \"paused\" or \"draining\"",
            ))
        }
    };
    s.queue
        .set_reserving(tonic::Request::new(pb::SetReservingRequest {
            request_id: request_id(),
            mode: mode as i32,
        }))
        .await?;
    Ok(json_response(
        json!({ "mode": mode.as_str_name().to_lowercase() }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_post_body_errors_name_the_job_and_field() {
        let d = JobDefaults::standard();
        let e = jobs_of_body(br#"[{"cmd":"a"},{"cmd":"b","priority":300}]"#, &d).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("jobs[1].priority"), "{e:?}");
        let e = jobs_of_body(br#"[{"cmd":"a","colour":1}]"#, &d).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("jobs[0].colour"), "{e:?}");
        let e = jobs_of_body(br#"{"cmd":"a"}"#, &d).unwrap_err();
        assert!(e.message.contains("JSON array"), "{e:?}");
        let e = jobs_of_body(br#"["echo a"]"#, &d).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("jobs[0]"));
        let e = jobs_of_body(b"[", &d).unwrap_err();
        assert!(e.message.contains("not JSON"), "{e:?}");
        let jobs = jobs_of_body(br#"[{"cmd":"a","memory":"2G"}]"#, &d).unwrap();
        assert_eq!(jobs[0].requirements.as_ref().unwrap().ram_mb, 2048);
    }

    #[test]
    fn http_unknown_parameters_are_refused_by_name() {
        let q: HashMap<String, String> = [("stat".to_string(), "buried".to_string())].into();
        let Err(e) = Params::check(q, SELECT_PARAMS) else {
            panic!("accepted an unknown parameter");
        };
        assert_eq!(e.field.as_deref(), Some("stat"));
    }
}
