//! Applying one command: the transitions, by command family, and the single place
//! (`write_job`) where a job's record, its index entries and the aggregates derived from it are
//! kept in step.
//!
//! ## Modules
//! - this file: [`Ctx`] (one entry's overlay, meta and hints), running and dispatching one
//!   command, and how a refusal undoes it.
//! - `storage`: reading jobs, counters, limit states and learned stats through the overlay.
//! - `write`: `write_job`, the one writer of jobs, and `entries_of` (a job's index entries);
//!   `requeue`, `make_ready` and `save`.
//! - `add`: Add.
//! - `reserve`: Reserve, and the fence check of later commands.
//! - `report`: Started, Touch, Archive, Release, Bury.
//! - `by_key`: Kick, Kill, Delete, Modify, SetLimit.
//! - `timers`: Tick, RenewLeases.
//! - `deps`: dependency targets, waiting counts, the cycle search, `settle`.
//! - `env`: environment blobs and their reference counts.

mod add;
mod by_key;
mod deps;
mod env;
mod report;
mod reserve;
mod storage;
mod timers;
mod write;

pub use env::decode_env;
pub(crate) use write::{entries_of_job, state_indexed};

use crate::command::{Command, CommandError, Outcome, Response};
use crate::fsm::Meta;
use crate::ids::JobKey;
use crate::learn::ReqStats;
use crate::store::txn::Txn;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Lower bounds for scans of queue-like keyspaces whose heads are deleted all the time: every
/// live key is >= its hint, so a scan can start there instead of walking the tombstones of
/// entries taken earlier. Hints are only ever conservative, and rebuilt empty on open.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hints {
    pub ready: BTreeMap<String, Vec<u8>>,
    pub timers: Vec<u8>,
    pub requests: Vec<u8>,
}

/// A limit group's setting and the slots its jobs hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitState {
    /// -1: unlimited; 0: blocks every job of the group.
    pub limit: i64,
    pub held: u64,
}

pub(crate) struct Ctx<'s> {
    pub tx: Txn<'s>,
    pub meta: Meta,
    pub hints: Hints,
    pub woken: BTreeSet<String>,
    /// Dependants whose waiting count must change: (job, +1 or -1).
    pending: Vec<(JobKey, i64)>,
    /// Environments whose reference count reached zero during the command; their blobs go
    /// at its end if nothing references them again by then.
    env_unreferenced: BTreeSet<[u8; 32]>,
    /// Req group → learned stats, as of the writes so far in this entry.
    req_cache: BTreeMap<String, Option<ReqStats>>,
}

type Res<T> = Result<T, Failure>;

/// Why a command stopped: refused (the state is untouched) or storage failed (fatal).
pub(crate) enum Failure {
    Refused(CommandError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<CommandError> for Failure {
    fn from(e: CommandError) -> Self {
        Failure::Refused(e)
    }
}

impl<'s> Ctx<'s> {
    pub fn new(tx: Txn<'s>, meta: Meta, hints: Hints) -> Ctx<'s> {
        Ctx {
            tx,
            meta,
            hints,
            woken: BTreeSet::new(),
            pending: Vec::new(),
            env_unreferenced: BTreeSet::new(),
            req_cache: BTreeMap::new(),
        }
    }

    pub(super) fn now(&self) -> u64 {
        self.meta.clock_ms
    }

    /// Runs one command; a refusal drops its writes and leaves meta and hints as they were.
    pub fn run(&mut self, cmd: Command) -> Result<Outcome, StoreError> {
        let meta = self.meta.clone();
        let hints = self.hints.clone();
        let woken = self.woken.clone();
        match self.dispatch(cmd) {
            Ok(resp) => {
                self.drop_unreferenced_envs()?;
                self.tx.commit_command();
                Ok(Ok(resp))
            }
            Err(Failure::Refused(e)) => {
                self.tx.discard_command();
                self.pending.clear();
                self.env_unreferenced.clear();
                self.req_cache.clear();
                self.meta = meta;
                self.hints = hints;
                self.woken = woken;
                Ok(Err(e))
            }
            Err(Failure::Store(e)) => Err(e),
        }
    }

    fn dispatch(&mut self, cmd: Command) -> Res<Response> {
        match cmd {
            Command::Add(a) => self.add(a),
            Command::Reserve {
                runner,
                group,
                ttr_ms,
            } => self.reserve(runner, group, ttr_ms),
            Command::Started {
                key,
                fence,
                host,
                pid,
            } => self.started(key, fence, host, pid),
            Command::Touch { key, fence } => self.touch(key, fence),
            Command::Archive { key, fence, report } => self.archive(key, fence, report),
            Command::Release(h) => self.release(h),
            Command::Bury(h) => self.bury(h),
            Command::Kick { keys } => self.kick(keys),
            Command::Delete { keys } => self.delete(keys),
            Command::Kill { keys } => self.kill(keys),
            Command::Modify { keys, change } => self.modify(keys, change),
            Command::SetLimit { group, limit } => self.set_limit(group, limit),
            Command::SetReserving { mode } => {
                self.meta.reserving = mode;
                Ok(Response::Ok)
            }
            Command::Tick => self.tick(),
            Command::RenewLeases => self.renew_leases(),
        }
    }
}
