//! Timers: Tick (expired leases, lost jobs returning, delays ending) and RenewLeases.

use super::{Ctx, Res};
use crate::command::Response;
use crate::job::JobState;
use crate::keys;
use crate::limits;
use crate::store::Space;
use crate::verdict::FailReason;

impl Ctx<'_> {
    pub(super) fn tick(&mut self) -> Res<Response> {
        let now = self.now();
        let mut due = Vec::new();
        {
            let from = self.hints.timers.clone();
            for r in self.tx.scan(Space::Timers, b"", &from) {
                let (k, _) = r?;
                let (deadline, key) = keys::decode_timer(&k)?;
                if deadline > now || due.len() >= limits::MAX_TIMERS_PER_TICK {
                    break;
                }
                due.push(key);
            }
        }
        let (mut expired, mut returned, mut ended) = (0, 0, 0);
        for key in due {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            match old.state.clone() {
                JobState::Delayed { .. } => {
                    self.requeue(&mut job, 0)?;
                    ended += 1;
                }
                JobState::Reserved(r) | JobState::Running(r) => {
                    let started = matches!(old.state, JobState::Running(_));
                    job.state = JobState::Lost {
                        held: r,
                        started,
                        return_ms: now.saturating_add(self.meta.config.lost_return_delay_ms),
                    };
                    job.run.fail_reason = FailReason::Lost.as_str().into();
                    expired += 1;
                }
                JobState::Lost { started, .. } => {
                    self.fail_back(&mut job, started, FailReason::Lost.as_str())?;
                    // The runner is presumed dead: no delay beyond the wait already spent.
                    if let JobState::Delayed { .. } = job.state {
                        self.requeue(&mut job, 0)?;
                    }
                    returned += 1;
                }
                _ => continue,
            }
            self.save(&old, &job)?;
        }
        Ok(Response::Ticked {
            leases_expired: expired,
            lost_returned: returned,
            delays_ended: ended,
        })
    }

    pub(super) fn renew_leases(&mut self) -> Res<Response> {
        let now = self.now();
        // Every reserved or running job has its lease in `timers`.
        let mut held = Vec::new();
        for r in self.tx.scan(Space::Timers, b"", b"") {
            held.push(keys::decode_timer(&r?.0)?.1);
        }
        let mut n = 0;
        for key in held {
            let Some(old) = self.get_job(&key)? else {
                continue;
            };
            let mut job = old.clone();
            match &mut job.state {
                JobState::Reserved(r) | JobState::Running(r) => {
                    r.lease_until_ms = now.saturating_add(r.ttr_ms);
                }
                _ => continue,
            }
            self.save(&old, &job)?;
            n += 1;
        }
        Ok(Response::Renewed(n))
    }
}
