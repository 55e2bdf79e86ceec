//! Storage helpers of a command: reading jobs, counters, limit states and learned stats
//! through the entry's write overlay.

use super::{Ctx, Failure, LimitState, Res};
use crate::command::CommandError;
use crate::fsm::{decode, encode};
use crate::ids::JobKey;
use crate::job::Job;
use crate::keys;
use crate::learn::ReqStats;
use crate::store::{Space, StoreError};

impl Ctx<'_> {
    pub(crate) fn get_job(&self, key: &JobKey) -> Result<Option<Job>, StoreError> {
        match self.tx.get(Space::Jobs, &keys::job(key))? {
            Some(b) => Ok(Some(decode("job", &b)?)),
            None => Ok(None),
        }
    }

    pub(super) fn must_job(&self, key: &JobKey) -> Res<Job> {
        self.get_job(key)?
            .ok_or(Failure::Refused(CommandError::NotFound { key: *key }))
    }

    pub(super) fn counter(&self, space: Space, key: &[u8]) -> Result<u64, StoreError> {
        match self.tx.get(space, key)? {
            Some(b) => keys::decode_u64(&b),
            None => Ok(0),
        }
    }

    /// Adds `delta` to a counter; returns (old, new). A counter at zero is removed.
    pub(super) fn bump(
        &mut self,
        space: Space,
        key: Vec<u8>,
        delta: i64,
    ) -> Result<(u64, u64), StoreError> {
        let old = self.counter(space, &key)?;
        let new = old as i64 + delta;
        if new < 0 {
            return Err(StoreError::Corrupt(format!(
                "counter {}:{:?} would go below zero",
                space.name(),
                String::from_utf8_lossy(&key)
            )));
        }
        if new == 0 {
            self.tx.delete(space, key);
        } else {
            self.tx.put(space, key, keys::u64_value(new as u64));
        }
        Ok((old, new as u64))
    }

    pub(crate) fn limit_state(&self, name: &str) -> Result<Option<LimitState>, StoreError> {
        match self.tx.get(Space::Limits, name.as_bytes())? {
            Some(b) => Ok(Some(decode("limit", &b)?)),
            None => Ok(None),
        }
    }

    pub(super) fn put_limit(&mut self, name: &str, l: &LimitState) {
        if l.limit == -1 && l.held == 0 {
            self.tx.delete(Space::Limits, name.as_bytes().to_vec());
        } else {
            self.tx
                .put(Space::Limits, name.as_bytes().to_vec(), encode(l));
        }
    }

    /// Learned requirements of a req group, read once per entry (an Add of many jobs of one
    /// group would otherwise read them once per job).
    pub(super) fn req_stats(&mut self, req_grp: &str) -> Result<Option<ReqStats>, StoreError> {
        if let Some(s) = self.req_cache.get(req_grp) {
            return Ok(s.clone());
        }
        let s: Option<ReqStats> = match self.tx.get(Space::ReqStats, req_grp.as_bytes())? {
            Some(b) => Some(decode("req stats", &b)?),
            None => None,
        };
        self.req_cache.insert(req_grp.to_string(), s.clone());
        Ok(s)
    }
}
