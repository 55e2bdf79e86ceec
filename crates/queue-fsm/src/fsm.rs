//! The state machine shell: opening a store, applying entries as one atomic batch, idempotent
//! replay of request ids, pruning the request table, and `next_deadline()`.

use crate::command::{Command, Outcome, Request, ReserveMode};
use crate::ctx::{Ctx, Hints};
use crate::ids::RequestId;
use crate::keys;
use crate::store::txn::Txn;
use crate::store::{Space, Store, StoreError, Write};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Settings that shape the state machine's decisions. They are stored in the state (on first
/// start) and travel in snapshots, so every replica decides with the same values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FsmConfig {
    /// Delay before a released job can run again, doubled with each attempt...
    pub release_delay_ms: u64,
    /// ...up to this.
    pub max_release_delay_ms: u64,
    /// How long a lost job (lease expired) waits for its runner to come back before it returns
    /// to the queue.
    pub lost_return_delay_ms: u64,
    /// A stored response is kept at least this long (FSM time) for idempotent retries.
    pub request_ttl_ms: u64,
    /// At most this many responses are kept; the oldest go first.
    pub max_requests: u64,
    /// Successful runs kept per req group for resource learning.
    pub learn_window: u32,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            release_delay_ms: 30_000,
            max_release_delay_ms: 600_000,
            lost_return_delay_ms: 60_000,
            request_ttl_ms: 24 * 3600 * 1000,
            max_requests: 2_000_000,
            learn_window: 100,
        }
    }
}

/// A setting of [`FsmConfig`] out of its range; the message names the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("max_release_delay_ms must be >= release_delay_ms")]
    MaxReleaseDelayBelowReleaseDelay,
    #[error("request_ttl_ms must be at least 60000 (clients retry for a while)")]
    RequestTtlTooShort,
    #[error("max_requests must be at least 1000")]
    MaxRequestsTooFew,
    #[error("learn_window must be 1 to 10000")]
    LearnWindowOutOfRange,
}

impl FsmConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_release_delay_ms < self.release_delay_ms {
            return Err(ConfigError::MaxReleaseDelayBelowReleaseDelay);
        }
        if self.request_ttl_ms < 60_000 {
            return Err(ConfigError::RequestTtlTooShort);
        }
        if self.max_requests < 1000 {
            return Err(ConfigError::MaxRequestsTooFew);
        }
        if self.learn_window == 0 || self.learn_window > 10_000 {
            return Err(ConfigError::LearnWindowOutOfRange);
        }
        Ok(())
    }
}

/// Counters and settings kept in the `meta` keyspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    /// The state machine's clock: the largest entry time seen.
    pub clock_ms: u64,
    pub next_seq: u64,
    pub next_fence: u64,
    pub next_serial: u64,
    pub reserving: ReserveMode,
    pub requests_stored: u64,
    pub config: FsmConfig,
}

const FORMAT: u32 = 1;

impl Meta {
    pub(crate) fn fresh(config: FsmConfig) -> Meta {
        Meta {
            format: FORMAT,
            clock_ms: 0,
            next_seq: 1,
            next_fence: 1,
            next_serial: 1,
            reserving: ReserveMode::Open,
            requests_stored: 0,
            config,
        }
    }
}
/// Request-table entries pruned per entry applied (keeps apply time bounded).
const MAX_PRUNE_PER_APPLY: usize = 1000;

/// What applying an entry decided, besides the responses: the shell acts on these.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Scheduler groups that gained ready jobs (wake blocked reserves there).
    pub woken_groups: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub outcomes: Vec<Outcome>,
    pub effects: Effects,
}

#[derive(Serialize, Deserialize)]
struct StoredOutcome {
    expires_ms: u64,
    outcome: Outcome,
}

/// The queue state machine over a store.
pub struct Fsm<S: Store> {
    pub(crate) store: S,
    pub(crate) meta: Meta,
    hints: Hints,
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(b).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing our own plain data types to a Vec cannot fail.
    postcard::to_allocvec(v).expect("postcard serialization of an in-memory value")
}

impl<S: Store> Fsm<S> {
    /// Opens the state machine over `store`; a new store is initialised with `config`, an
    /// existing one keeps the config it was created with.
    pub fn open(store: S, config: FsmConfig) -> Result<Fsm<S>, StoreError> {
        config.validate()?;
        let meta = match store.get(Space::Meta, keys::META_STATE)? {
            Some(b) => {
                let m: Meta = decode("meta", &b)?;
                if m.format != FORMAT {
                    return Err(StoreError::Corrupt(format!(
                        "state format {} is not the supported {FORMAT}",
                        m.format
                    )));
                }
                m
            }
            None => Meta::fresh(config),
        };
        Ok(Fsm {
            store,
            meta,
            hints: Hints::default(),
        })
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The state machine's clock.
    pub fn clock_ms(&self) -> u64 {
        self.meta.clock_ms
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn into_store(self) -> S {
        self.store
    }

    /// Applies one command at time `now_ms`.
    pub fn apply(&mut self, now_ms: u64, req: Request) -> Result<(Outcome, Effects), StoreError> {
        let mut applied = self.apply_entry(now_ms, vec![req], Vec::new())?;
        let outcome = applied.outcomes.pop().unwrap_or(Ok(crate::Response::Ok));
        Ok((outcome, applied.effects))
    }

    /// Applies the commands of one log entry, stamped `now_ms` by the leader, and writes them
    /// with `extra` (e.g. the applied log id) as one atomic batch. Commands are applied in
    /// order; each sees the writes of those before it. A refused command leaves no write.
    pub fn apply_entry(
        &mut self,
        now_ms: u64,
        reqs: Vec<Request>,
        extra: Vec<Write>,
    ) -> Result<Applied, StoreError> {
        let mut meta = self.meta.clone();
        meta.clock_ms = meta.clock_ms.max(now_ms);
        let mut ctx = Ctx::new(Txn::new(&self.store), meta, self.hints.clone());
        let mut outcomes = Vec::with_capacity(reqs.len());
        for req in reqs {
            if let Some(id) = req.id {
                if let Some(b) = ctx.tx.get(Space::Requests, &keys::request(&id))? {
                    let stored: StoredOutcome = decode("stored response", &b)?;
                    outcomes.push(stored.outcome);
                    continue;
                }
            }
            let outcome = ctx.run(req.cmd)?;
            if let Some(id) = req.id {
                ctx.remember(id, &outcome);
            }
            outcomes.push(outcome);
        }
        prune_requests(&mut ctx)?;
        let Ctx {
            tx,
            meta,
            hints,
            woken,
            ..
        } = ctx;
        let mut batch = tx.into_batch();
        batch.push((Space::Meta, keys::META_STATE.to_vec(), Some(encode(&meta))));
        batch.extend(extra);
        self.store.write(batch)?;
        self.meta = meta;
        self.hints = hints;
        Ok(Applied {
            outcomes,
            effects: Effects {
                woken_groups: woken,
            },
        })
    }

    /// The stored outcome of a request id, if it was applied and not yet pruned.
    pub fn stored_outcome(&self, id: RequestId) -> Result<Option<Outcome>, StoreError> {
        match self.store.get(Space::Requests, &keys::request(&id))? {
            Some(b) => Ok(Some(
                decode::<StoredOutcome>("stored response", &b)?.outcome,
            )),
            None => Ok(None),
        }
    }

    /// When the next timer falls due (a lease expiry, the end of a delay, a lost job's return),
    /// in FSM time: the node proposes [`Command::Tick`] then.
    pub fn next_deadline(&mut self) -> Result<Option<u64>, StoreError> {
        let from = self.hints.timers.clone();
        let first = self
            .store
            .scan(Space::Timers, b"", &from)
            .next()
            .transpose()?;
        match first {
            Some((k, _)) => {
                let (deadline, _) = keys::decode_timer(&k)?;
                self.hints.timers = k;
                Ok(Some(deadline))
            }
            None => Ok(None),
        }
    }

    /// Takes `meta` as the state's after an import (see [`crate::snapshot`]).
    pub(crate) fn reset_to(&mut self, meta: Meta) {
        self.meta = meta;
        self.hints = Hints::default();
    }

    pub(crate) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
}

impl<'s> Ctx<'s> {
    fn remember(&mut self, id: RequestId, outcome: &Outcome) {
        let expires_ms = self
            .meta
            .clock_ms
            .saturating_add(self.meta.config.request_ttl_ms);
        let stored = StoredOutcome {
            expires_ms,
            outcome: outcome.clone(),
        };
        self.tx
            .put(Space::Requests, keys::request(&id), encode(&stored));
        let ek = keys::request_expiry(expires_ms, &id);
        if ek < self.hints.requests {
            self.hints.requests = ek.clone();
        }
        self.tx.put(Space::RequestExpiry, ek, Vec::new());
        self.meta.requests_stored += 1;
        self.tx.commit_command();
    }
}

/// Drops stored responses that expired or exceed the count bound, oldest first, at most
/// `MAX_PRUNE_PER_APPLY` per entry.
fn prune_requests(ctx: &mut Ctx<'_>) -> Result<(), StoreError> {
    let mut doomed: Vec<(Vec<u8>, RequestId)> = Vec::new();
    {
        let over = ctx
            .meta
            .requests_stored
            .saturating_sub(ctx.meta.config.max_requests);
        let from = ctx.hints.requests.clone();
        for r in ctx.tx.scan(Space::RequestExpiry, b"", &from) {
            let (k, _) = r?;
            let (expires, id) = keys::decode_request_expiry(&k)?;
            let expired = expires <= ctx.meta.clock_ms;
            if !(expired || (doomed.len() as u64) < over) || doomed.len() >= MAX_PRUNE_PER_APPLY {
                ctx.hints.requests = k;
                break;
            }
            doomed.push((k, id));
        }
    }
    for (k, id) in doomed {
        ctx.tx.delete(Space::RequestExpiry, k.clone());
        ctx.tx.delete(Space::Requests, keys::request(&id));
        ctx.meta.requests_stored = ctx.meta.requests_stored.saturating_sub(1);
        if k >= ctx.hints.requests {
            ctx.hints.requests = k;
        }
    }
    ctx.tx.commit_command();
    Ok(())
}

/// Whether a command changes state (and so carries a request id) or is a timer.
pub fn is_timer(cmd: &Command) -> bool {
    matches!(cmd, Command::Tick | Command::RenewLeases)
}
