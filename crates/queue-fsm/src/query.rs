//! Read-only queries over the committed state. None of them changes anything, so a node may
//! answer them from its local replica (stale) or after a read-index round (linearizable).

use crate::ctx::{decode_env, LimitState};
use crate::fsm::{decode, Fsm};
use crate::ids::JobKey;
use crate::job::{Job, StateName};
use crate::keys;
use crate::learn::ReqStats;
use crate::limits::MAX_QUERY_JOBS;
use crate::store::{Space, Store, StoreError};
use std::collections::BTreeMap;

/// How a rep group name is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    Exact,
    Prefix,
    Substring,
}

/// A job in a query result, with how many similar jobs a `limit` left out after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub job: Job,
    pub similar: u64,
}

/// Which jobs of a listing to return: skip `offset` matching jobs, then at most `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub count: usize,
}

/// Counts per state.
pub type StateCounts = BTreeMap<StateName, u64>;

impl<S: Store> Fsm<S> {
    pub fn get_job(&self, key: &JobKey) -> Result<Option<Job>, StoreError> {
        match self.store.get(Space::Jobs, &keys::job(key))? {
            Some(b) => Ok(Some(decode("job", &b)?)),
            None => Ok(None),
        }
    }

    pub fn get_jobs(&self, keys: &[JobKey]) -> Result<Vec<Option<Job>>, StoreError> {
        keys.iter().map(|k| self.get_job(k)).collect()
    }

    /// A stored environment as `KEY=VALUE` entries.
    pub fn env(&self, hash: &[u8; 32]) -> Result<Option<Vec<String>>, StoreError> {
        match self.store.get(Space::Env, hash)? {
            Some(b) => Ok(Some(decode_env(&b)?)),
            None => Ok(None),
        }
    }

    /// Counts per rep group and state. O(rep groups × states), whatever the number of jobs.
    pub fn counts(&self) -> Result<BTreeMap<String, StateCounts>, StoreError> {
        let mut out: BTreeMap<String, StateCounts> = BTreeMap::new();
        for r in self.store.scan(Space::Counts, b"", b"") {
            let (k, v) = r?;
            let (rep, rest) = keys::split_name(&k)?;
            let state = rest
                .first()
                .and_then(|c| StateName::from_code(*c))
                .ok_or_else(|| StoreError::Corrupt("counts key without a state".into()))?;
            *out.entry(rep.to_string())
                .or_default()
                .entry(state)
                .or_default() += keys::decode_u64(&v)?;
        }
        Ok(out)
    }

    /// Jobs per state over all rep groups.
    pub fn stats(&self) -> Result<StateCounts, StoreError> {
        let mut out = StateCounts::new();
        for counts in self.counts()?.into_values() {
            for (s, n) in counts {
                *out.entry(s).or_default() += n;
            }
        }
        Ok(out)
    }

    /// Ready jobs per scheduler group (what a scheduler sizes its runners by).
    pub fn ready_by_sched_group(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for r in self.store.scan(Space::SchedReady, b"", b"") {
            let (k, v) = r?;
            out.insert(
                String::from_utf8_lossy(&k).into_owned(),
                keys::decode_u64(&v)?,
            );
        }
        Ok(out)
    }

    /// Jobs held by a runner (reserved, running, or lost while its runner may still run it)
    /// per scheduler group: how many of a group's runners are busy. O(held jobs + timers).
    pub fn held_by_sched_group(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for s in [StateName::Reserved, StateName::Running, StateName::Lost] {
            for l in self.by_state(s, 0)? {
                *out.entry(l.job.sched_group).or_default() += 1;
            }
        }
        Ok(out)
    }

    pub fn limit_groups(&self) -> Result<BTreeMap<String, LimitState>, StoreError> {
        let mut out = BTreeMap::new();
        for r in self.store.scan(Space::Limits, b"", b"") {
            let (k, v) = r?;
            out.insert(
                String::from_utf8_lossy(&k).into_owned(),
                decode("limit", &v)?,
            );
        }
        Ok(out)
    }

    pub fn learned(&self, req_grp: &str) -> Result<Option<ReqStats>, StoreError> {
        match self.store.get(Space::ReqStats, req_grp.as_bytes())? {
            Some(b) => Ok(Some(decode("req stats", &b)?)),
            None => Ok(None),
        }
    }

    /// Rep group names matching `pattern`.
    pub fn rep_groups(&self, pattern: &str, how: Match) -> Result<Vec<String>, StoreError> {
        Ok(self
            .counts()?
            .into_keys()
            .filter(|g| match how {
                Match::Exact => g == pattern,
                Match::Prefix => g.starts_with(pattern),
                Match::Substring => g.contains(pattern),
            })
            .collect())
    }

    /// Jobs of the matching rep groups, optionally in one state; `limit` > 0 keeps that many
    /// per (state, fail reason, exit code) and counts the rest in `similar`.
    pub fn by_rep_group(
        &self,
        pattern: &str,
        how: Match,
        state: Option<StateName>,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut jobs = Vec::new();
        for g in self.rep_groups(pattern, how)? {
            for r in self.store.scan(Space::ByRep, &keys::name_prefix(&g), b"") {
                let key = keys::decode_job_key(&r?.1)?;
                if let Some(j) = self.get_job(&key)? {
                    if state.is_none_or(|s| j.state.name() == s) {
                        jobs.push(j);
                    }
                }
            }
        }
        Ok(limit_similar(jobs, limit))
    }

    /// Jobs in a state: ready ones in the order they would be reserved (per scheduler group),
    /// jobs with a deadline in deadline order, others in the order they were added.
    pub fn by_state(&self, state: StateName, limit: usize) -> Result<Vec<Listed>, StoreError> {
        let (space, prefix): (Space, Vec<u8>) = if crate::ctx::state_indexed(state) {
            (Space::ByState, vec![state.code()])
        } else if state == StateName::Ready {
            (Space::Ready, Vec::new())
        } else {
            (Space::Timers, Vec::new())
        };
        let mut jobs = Vec::new();
        for r in self.store.scan(space, &prefix, b"") {
            let (k, v) = r?;
            let key = if space == Space::Timers {
                keys::decode_timer(&k)?.1
            } else {
                keys::decode_job_key(&v)?
            };
            if let Some(j) = self.get_job(&key)? {
                if j.state.name() == state {
                    jobs.push(j);
                }
            }
            if limit == 0 && jobs.len() >= MAX_QUERY_JOBS {
                break;
            }
        }
        Ok(limit_similar(jobs, limit))
    }

    /// A page of the jobs of the matching rep groups (in one state, or not complete, when
    /// asked), in [`Fsm::by_rep_group`]'s order. Reads the jobs up to the page's end only.
    pub fn page_by_rep_group(
        &self,
        pattern: &str,
        how: Match,
        state: Option<StateName>,
        incomplete_only: bool,
        page: Page,
    ) -> Result<Vec<Job>, StoreError> {
        let mut out = Vec::new();
        let mut skip = page.offset;
        for g in self.rep_groups(pattern, how)? {
            for r in self.store.scan(Space::ByRep, &keys::name_prefix(&g), b"") {
                if out.len() >= page.count {
                    return Ok(out);
                }
                let key = keys::decode_job_key(&r?.1)?;
                let Some(j) = self.get_job(&key)? else {
                    continue;
                };
                if state.is_some_and(|s| j.state.name() != s)
                    || (incomplete_only && j.is_complete())
                {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                out.push(j);
            }
        }
        Ok(out)
    }

    /// A page of the jobs in `state`, in [`Fsm::by_state`]'s order. Skipped entries of an
    /// index that holds only that state are counted without reading their jobs.
    pub fn page_by_state(&self, state: StateName, page: Page) -> Result<Vec<Job>, StoreError> {
        let (space, prefix): (Space, Vec<u8>) = if crate::ctx::state_indexed(state) {
            (Space::ByState, vec![state.code()])
        } else if state == StateName::Ready {
            (Space::Ready, Vec::new())
        } else {
            (Space::Timers, Vec::new())
        };
        let exact = space != Space::Timers;
        let mut out = Vec::new();
        let mut skip = page.offset;
        for r in self.store.scan(space, &prefix, b"") {
            if out.len() >= page.count {
                break;
            }
            let (k, v) = r?;
            if exact && skip > 0 {
                skip -= 1;
                continue;
            }
            let key = if space == Space::Timers {
                keys::decode_timer(&k)?.1
            } else {
                keys::decode_job_key(&v)?
            };
            let Some(j) = self.get_job(&key)? else {
                continue;
            };
            if j.state.name() != state {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            out.push(j);
        }
        Ok(out)
    }

    /// A page of the jobs that are not complete (optionally in one state), in
    /// [`Fsm::incomplete`]'s order; whole states before the page are skipped by their counts.
    pub fn page_incomplete(
        &self,
        state: Option<StateName>,
        page: Page,
    ) -> Result<Vec<Job>, StoreError> {
        let totals = self.stats()?;
        let mut out = Vec::new();
        let mut skip = page.offset;
        for s in StateName::ALL {
            if s == StateName::Complete || state.is_some_and(|w| w != s) {
                continue;
            }
            if out.len() >= page.count {
                break;
            }
            let n = totals.get(&s).copied().unwrap_or(0) as usize;
            if skip >= n {
                skip -= n;
                continue;
            }
            let want = Page {
                offset: skip,
                count: page.count - out.len(),
            };
            out.extend(self.page_by_state(s, want)?);
            skip = 0;
        }
        Ok(out)
    }

    /// Every job that is not complete, optionally in one state.
    pub fn incomplete(
        &self,
        state: Option<StateName>,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        for s in StateName::ALL {
            if s == StateName::Complete || state.is_some_and(|w| w != s) {
                continue;
            }
            out.extend(self.by_state(s, limit)?);
        }
        Ok(out)
    }
}

/// Keeps `limit` jobs per (state, fail reason, exit code); the last kept job of each class
/// carries the count of those left out. `limit == 0` keeps all (up to `MAX_QUERY_JOBS`).
pub fn limit_similar(jobs: Vec<Job>, limit: usize) -> Vec<Listed> {
    if limit == 0 {
        return jobs
            .into_iter()
            .take(MAX_QUERY_JOBS)
            .map(|job| Listed { job, similar: 0 })
            .collect();
    }
    let mut out: Vec<Listed> = Vec::new();
    let mut classes: BTreeMap<(StateName, String, i32), (usize, usize)> = BTreeMap::new();
    for job in jobs {
        let exit = job.run.report.as_ref().map_or(0, |r| r.exit_code);
        let class = (job.state.name(), job.run.fail_reason.clone(), exit);
        let entry = classes.entry(class).or_insert((0, usize::MAX));
        if entry.0 < limit {
            entry.0 += 1;
            entry.1 = out.len();
            out.push(Listed { job, similar: 0 });
        } else {
            out[entry.1].similar += 1;
        }
    }
    out
}
