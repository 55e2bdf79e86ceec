//! The runner loop: reserve a job, run it, touch its reservation while it runs, report the
//! outcome, repeat; exit when idle, after `max_jobs`, or on SIGTERM/SIGINT (killing and
//! releasing the job in hand). Reports go to any manager and are retried with the same
//! request id for hours, so an outcome is never lost and never recorded twice.

use crate::exec::{self, ExecResult, ExecSpec, StopReason, WorkDir};
use raftq_client::{request_id, Client, ClientError};
use raftq_proto::pb;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

/// Fail reasons the runner reports (the queue acts on some of them).
pub mod reason {
    pub const ENV: &str = "failed to get environment variables";
    pub const CWD: &str = "working directory does not exist";
    pub const START: &str = "command failed to start";
    pub const PERM: &str = "command permission problem";
    pub const NOT_FOUND: &str = "command not found";
    pub const EXIT: &str = "command exited non-zero";
    pub const ABNORMAL: &str = "command failed to complete normally";
    pub const TIME: &str = "command used too much time";
    pub const RAM: &str = "command used too much RAM";
    pub const SIGNAL: &str = "runner received a signal to stop";
    pub const KILLED: &str = "killed by user request";
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Only jobs of this scheduler group (None: any).
    pub group: Option<String>,
    /// Exit after running this many jobs.
    pub max_jobs: Option<u64>,
    /// Exit after waiting this long for a job.
    pub idle_exit: Duration,
    pub shell: String,
    /// Time-to-release of each reservation; the runner touches every quarter of it.
    pub ttr: Duration,
    /// This host's name, reported with Started.
    pub host: String,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            group: None,
            max_jobs: None,
            idle_exit: Duration::from_secs(30),
            shell: "bash".into(),
            ttr: Duration::from_secs(60),
            host: hostname(),
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// What a runner did before it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ran: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// The outcome to report, decided from how the command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Archive,
    Release(&'static str),
    Bury(&'static str),
    /// The reservation is gone (stale fence): report nothing.
    Abandon,
}

/// How the runner should report a finished command.
pub fn decide(r: &ExecResult, shutting_down: bool, killed: bool) -> Outcome {
    if let Some(e) = &r.setup_error {
        return if e.contains("does not exist") {
            Outcome::Bury(reason::CWD)
        } else {
            Outcome::Bury(reason::START)
        };
    }
    match r.stopped {
        Some(StopReason::Requested) if killed => return Outcome::Bury(reason::KILLED),
        Some(StopReason::Requested) if shutting_down => return Outcome::Release(reason::SIGNAL),
        Some(StopReason::Requested) => return Outcome::Abandon,
        Some(StopReason::Time) => return Outcome::Release(reason::TIME),
        Some(StopReason::Ram) => return Outcome::Release(reason::RAM),
        None => {}
    }
    match r.exit_code {
        Some(0) => Outcome::Archive,
        Some(126) => Outcome::Bury(reason::PERM),
        Some(127) => Outcome::Bury(reason::NOT_FOUND),
        Some(_) => Outcome::Release(reason::EXIT),
        None => Outcome::Release(reason::ABNORMAL),
    }
}

fn report(r: &ExecResult, started_ms: u64) -> pb::RunReport {
    pb::RunReport {
        exited: r.exit_code.is_some(),
        exit_code: r.exit_code.unwrap_or(-1),
        peak_ram_mb: r.peak_ram_mb,
        peak_disk_mb: r.peak_disk_mb,
        cpu_ms: r.cpu_ms,
        wall_ms: r.wall_ms,
        started_ms,
        ended_ms: started_ms + r.wall_ms,
        actual_cwd: r.actual_cwd.display().to_string(),
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Time allowed beyond the requested time before a command is stopped.
fn time_margin(requested: Duration) -> Duration {
    (requested / 10).max(Duration::from_secs(60))
}

pub struct Runner {
    /// For reserving (short retries).
    pub client: Client,
    /// For touches and reports (retried for hours).
    pub reporter: Client,
    pub config: RunnerConfig,
    runner_id: Vec<u8>,
}

impl Runner {
    pub fn new(client: Client, reporter: Client, config: RunnerConfig) -> Runner {
        Runner {
            client,
            reporter,
            config,
            runner_id: request_id(),
        }
    }

    /// Runs jobs until idle, `max_jobs`, or `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<Summary, ClientError> {
        let mut summary = Summary::default();
        loop {
            if *shutdown.borrow() || self.config.max_jobs.is_some_and(|m| summary.ran >= m) {
                return Ok(summary);
            }
            let req = pb::ReserveRequest {
                request_id: request_id(),
                runner_id: self.runner_id.clone(),
                sched_group: self.config.group.clone().unwrap_or_default(),
                ttr_ms: self.config.ttr.as_millis() as u64,
                wait_ms: self.config.idle_exit.as_millis() as u64,
            };
            let reserved = tokio::select! {
                r = self.client.reserve(req) => r?,
                _ = shutdown.changed() => return Ok(summary),
            };
            let Some(job) = reserved.job else {
                tracing::info!(ran = summary.ran, "no job for the idle time; exiting");
                return Ok(summary);
            };
            summary.ran += 1;
            match self.run_job(job, &mut shutdown).await? {
                Outcome::Archive => summary.succeeded += 1,
                _ => summary.failed += 1,
            }
        }
    }

    async fn run_job(
        &self,
        job: pb::Job,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, ClientError> {
        let job_ref = Some(pb::JobRef {
            key: job.key.clone(),
            fence: job.fence,
        });
        let spec_in = job.spec.clone().unwrap_or_default();
        tracing::info!(key = %job.key, cmd = %spec_in.cmd, "running");
        let env = if job.env_hash.is_empty() {
            Ok(std::env::vars().map(|(k, v)| format!("{k}={v}")).collect())
        } else {
            self.reporter.get_env(job.env_hash.clone()).await
        };
        let env = match env {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get the job's environment");
                self.finish(&job, job_ref, Outcome::Bury(reason::ENV), None, 0)
                    .await?;
                return Ok(Outcome::Bury(reason::ENV));
            }
        };
        let time_s = job.effective.as_ref().map_or(0, |r| r.time_s);
        let dir = if spec_in.cwd_matters {
            WorkDir::Exact(PathBuf::from(&spec_in.cwd))
        } else {
            WorkDir::Unique {
                base: PathBuf::from(if spec_in.cwd.is_empty() {
                    "/tmp"
                } else {
                    &spec_in.cwd
                }),
                unique: format!("{}_{}", job.key, job.fence),
            }
        };
        let spec = ExecSpec {
            cmd: spec_in.cmd.clone(),
            shell: self.config.shell.clone(),
            dir,
            env,
            change_home: spec_in.change_home,
            time_limit: (time_s > 0).then(|| {
                let t = Duration::from_secs(time_s as u64);
                t + time_margin(t)
            }),
            ram_limit_mb: job
                .effective
                .as_ref()
                .map(|r| r.ram_mb as u64)
                .filter(|m| *m > 0),
            host_short_of_memory: None,
        };
        let (kill_tx, kill_rx) = watch::channel(false);
        let (pid_tx, mut pid_rx) = watch::channel(0u32);
        let started_ms = now_ms();
        let exec = exec::run(&spec, kill_rx, move |pid| {
            let _ = pid_tx.send(pid);
        });
        tokio::pin!(exec);
        let touch_every = (self.config.ttr / 4).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(touch_every);
        ticker.tick().await;
        let (mut killed, mut shutting, mut lost) = (false, false, false);
        let mut started_sent = false;
        type Call<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<pb::Ack, ClientError>> + Send + 'a>,
        >;
        let mut started_call: Option<Call<'_>> = None;
        let result = loop {
            tokio::select! {
                r = &mut exec => break r,
                _ = pid_rx.changed(), if !started_sent => {
                    // Reported while the command runs (not in this branch: a short command
                    // would wait for the round trip to be noticed as done).
                    started_sent = true;
                    let req = pb::StartedRequest {
                        request_id: request_id(),
                        job: job_ref.clone(),
                        host: self.config.host.clone(),
                        pid: *pid_rx.borrow(),
                    };
                    started_call = Some(Box::pin(self.reporter.started(req)));
                }
                r = async {
                    match started_call.as_mut() {
                        Some(call) => call.await,
                        None => std::future::pending().await,
                    }
                }, if started_call.is_some() => {
                    started_call = None;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "reporting start failed");
                        if e.refusal().is_some() { lost = true; let _ = kill_tx.send(true); }
                    }
                }
                _ = ticker.tick() => {
                    let req = pb::TouchRequest { request_id: request_id(), job: job_ref.clone() };
                    let touched = tokio::time::timeout(touch_every, self.client.touch(req)).await;
                    match touched {
                        Err(_) => tracing::warn!("touch timed out; will retry"),
                        Ok(Ok(t)) if t.kill => { killed = true; let _ = kill_tx.send(true); }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) if e.refusal().is_some() => {
                            tracing::warn!(error = %e, "the reservation is gone; stopping the job");
                            lost = true;
                            let _ = kill_tx.send(true);
                        }
                        // No manager reachable for now: keep running, touch again later.
                        Ok(Err(e)) => tracing::warn!(error = %e, "touch failed; will retry"),
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { shutting = true; let _ = kill_tx.send(true); }
                }
            }
        };
        // A command that ended before its start was reported still ran: report the start
        // first, so that its failure uses up a retry.
        // The start must be recorded before the outcome.
        if let Some(call) = started_call.take() {
            if let Err(e) = call.await {
                tracing::warn!(error = %e, "reporting start failed");
                lost = e.refusal().is_some();
            }
        }
        if !started_sent && !lost && result.setup_error.is_none() {
            let req = pb::StartedRequest {
                request_id: request_id(),
                job: job_ref.clone(),
                host: self.config.host.clone(),
                pid: *pid_rx.borrow(),
            };
            if let Err(e) = self.reporter.started(req).await {
                tracing::warn!(error = %e, "reporting start failed");
                lost = e.refusal().is_some();
            }
        }
        let outcome = if lost {
            Outcome::Abandon
        } else {
            decide(&result, shutting, killed)
        };
        tracing::debug!(key = %job.key, ?outcome, wall_ms = result.wall_ms, "command ended");
        let remove = self.behaviours(&spec_in, &result, &outcome).await;
        self.finish(&job, job_ref, outcome.clone(), Some(&result), started_ms)
            .await?;
        tracing::debug!(key = %job.key, "outcome reported");
        // "remove" takes a failed job out of the queue once its failure is recorded.
        if remove && !matches!(outcome, Outcome::Archive | Outcome::Abandon) {
            if let Err(e) = self.reporter.delete(vec![job.key.clone()]).await {
                tracing::warn!(key = %job.key, error = %e, "remove behaviour failed");
            }
        }
        Ok(outcome)
    }

    /// Runs the job's behaviours for how it ended; returns whether one asks to remove the job.
    async fn behaviours(&self, spec: &pb::JobSpec, r: &ExecResult, outcome: &Outcome) -> bool {
        let mut remove = false;
        use pb::behaviour::{Action, When};
        let success = *outcome == Outcome::Archive;
        for phase in [
            if success {
                When::OnSuccess
            } else {
                When::OnFailure
            },
            When::OnExit,
        ] {
            for b in spec.behaviours.iter().filter(|b| b.when == phase as i32) {
                match &b.action {
                    // The unique directory's root holds cwd and tmp.
                    Some(Action::Cleanup(true)) | Some(Action::CleanupAll(true))
                        if !spec.cwd_matters =>
                    {
                        if let Some(root) = r.actual_cwd.parent() {
                            let _ = std::fs::remove_dir_all(root);
                        }
                    }
                    Some(Action::Run(cmd)) => {
                        let _ = tokio::process::Command::new(&self.config.shell)
                            .arg("-c")
                            .arg(cmd)
                            .current_dir(&r.actual_cwd)
                            .status()
                            .await;
                    }
                    Some(Action::Remove(true)) => remove = true,
                    _ => {}
                }
            }
        }
        remove
    }

    /// Reports the outcome (retried with one request id until the reporter's deadline).
    async fn finish(
        &self,
        job: &pb::Job,
        job_ref: Option<pb::JobRef>,
        outcome: Outcome,
        r: Option<&ExecResult>,
        started_ms: u64,
    ) -> Result<(), ClientError> {
        let rep = r.map(|r| report(r, started_ms));
        let result = match outcome {
            Outcome::Archive => self
                .reporter
                .archive(pb::ArchiveRequest {
                    request_id: request_id(),
                    job: job_ref,
                    report: rep,
                })
                .await
                .map(|_| ()),
            Outcome::Release(why) => self
                .reporter
                .release(pb::ReleaseRequest {
                    request_id: request_id(),
                    job: job_ref,
                    report: rep,
                    reason: why.into(),
                })
                .await
                .map(|_| ()),
            Outcome::Bury(why) => self
                .reporter
                .bury(pb::BuryRequest {
                    request_id: request_id(),
                    job: job_ref,
                    report: rep,
                    reason: why.into(),
                })
                .await
                .map(|_| ()),
            Outcome::Abandon => Ok(()),
        };
        match result {
            // The reservation was lost and taken over: the result is not ours to record.
            Err(e) if e.refusal().is_some() => {
                tracing::warn!(key = %job.key, error = %e, "report refused; dropping it");
                Ok(())
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(exit: Option<i32>) -> ExecResult {
        ExecResult {
            exit_code: exit,
            ..ExecResult::default()
        }
    }

    #[test]
    fn outcomes_follow_exit_codes_and_stops() {
        assert_eq!(decide(&res(Some(0)), false, false), Outcome::Archive);
        assert_eq!(
            decide(&res(Some(126)), false, false),
            Outcome::Bury(reason::PERM)
        );
        assert_eq!(
            decide(&res(Some(127)), false, false),
            Outcome::Bury(reason::NOT_FOUND)
        );
        assert_eq!(
            decide(&res(Some(2)), false, false),
            Outcome::Release(reason::EXIT)
        );
        assert_eq!(
            decide(&res(None), false, false),
            Outcome::Release(reason::ABNORMAL)
        );
        let mut k = res(None);
        k.stopped = Some(StopReason::Requested);
        assert_eq!(decide(&k, false, true), Outcome::Bury(reason::KILLED));
        assert_eq!(decide(&k, true, false), Outcome::Release(reason::SIGNAL));
        assert_eq!(decide(&k, false, false), Outcome::Abandon);
        k.stopped = Some(StopReason::Time);
        assert_eq!(decide(&k, false, false), Outcome::Release(reason::TIME));
        let mut s = res(None);
        s.setup_error = Some("working directory /x does not exist".into());
        assert_eq!(decide(&s, false, false), Outcome::Bury(reason::CWD));
    }
}
