//! The runner loop: reserve a job, run it, touch its reservation while it runs, report the
//! outcome, repeat; exit when idle, after `max_jobs`, or on one of [`STOP_SIGNALS`] (killing
//! the command's process group and releasing the job in hand). Reports go to any manager and are retried with the same
//! request id for hours, so an outcome is never lost and never recorded twice.

use crate::exec::{self, ExecResult, ExecSpec, StopReason, WorkDir};
use queue_fsm::{verdict, JobKey, RunEnd, Verdict};
use raftq_client::{request_id, Client, ClientError};
use raftq_proto::pb;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

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
    /// Stop a command that runs past its time (plus a margin, [`time_limit`]) and release it
    /// as over time. Off by default: a job's time is a scheduling estimate that learning
    /// corrects, not a limit (wr's local scheduler does not kill for time either); turn it on
    /// where the user wants a hard limit. Batch systems enforce their own.
    pub kill_over_time: bool,
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
            kill_over_time: false,
        }
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The signals on which a runner stops cleanly: it kills its command's process group,
/// releases the job (reason [`queue_fsm::FailReason::Signal`], which uses up no retry
/// beyond the run itself) and exits. Batch systems send SIGUSR1/SIGUSR2 or SIGQUIT before
/// a kill; without a handler those would end the runner at once, leave the command running
/// in its own process group, and the job would be lost and could run twice.
pub const STOP_SIGNALS: [(i32, &str); 6] = [
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// Catches [`STOP_SIGNALS`] from now on (call it before the first reserve) and returns a
/// watch that turns true at the first one, for [`Runner::run`]. Needs a tokio runtime.
pub fn stop_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = Vec::new();
    for (sig, name) in STOP_SIGNALS {
        streams.push((signal(SignalKind::from_raw(sig))?, name));
    }
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let (name_tx, mut name_rx) = tokio::sync::mpsc::channel(STOP_SIGNALS.len());
        for (mut s, name) in streams {
            let name_tx = name_tx.clone();
            tokio::spawn(async move {
                if s.recv().await.is_some() {
                    let _ = name_tx.send(name).await;
                }
            });
        }
        if let Some(name) = name_rx.recv().await {
            tracing::info!(
                signal = name,
                "stopping: the job in hand is killed and released"
            );
            let _ = tx.send(true);
        }
    });
    Ok(rx)
}

/// What a runner did before it exited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ran: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// How the command ended, as the queue's bury-or-release rule ([`queue_fsm::verdict`]) takes
/// it. A setup failure comes first (the command never ran), then a stop by the runner, then
/// the exit code.
pub fn run_end(r: &ExecResult, shutting_down: bool, killed: bool) -> RunEnd {
    if let Some(e) = &r.setup_error {
        return RunEnd::SetupFailed {
            missing_dir: e.contains("does not exist"),
        };
    }
    match r.stopped {
        Some(StopReason::Requested) if killed => RunEnd::Killed,
        Some(StopReason::Requested) if shutting_down => RunEnd::ShuttingDown,
        Some(StopReason::Requested) => RunEnd::StoppedOtherwise,
        Some(StopReason::Time) => RunEnd::OverTime,
        Some(StopReason::Ram) => RunEnd::OverRam,
        None => match r.exit_code {
            Some(code) => RunEnd::Exited(code),
            None => RunEnd::NoExitCode,
        },
    }
}

/// How the runner should report a finished command.
pub fn decide(r: &ExecResult, shutting_down: bool, killed: bool) -> Verdict {
    verdict(run_end(r, shutting_down, killed))
}

/// What the runner saw while a command ran, besides its result.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// The queue asked to kill the job.
    killed: bool,
    /// The runner was told to stop.
    shutting: bool,
    /// The reservation is gone (a report on it was refused).
    lost: bool,
}

/// The answer to one touch of the reservation.
enum Touched {
    /// Keep running (also when no manager answered in time: touch again later).
    Alive,
    /// The queue asks to kill the job.
    Kill,
    /// The reservation is gone.
    Gone,
}

/// A report in flight while the command runs.
type Call<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<pb::Ack, ClientError>> + Send + 'a>>;

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

/// When to stop a command whose job asked for `time_s` (0: no time given): only with
/// `kill_over_time`, and then after the time plus a margin of 10% or a minute, whichever is
/// more.
pub fn time_limit(time_s: u32, kill_over_time: bool) -> Option<Duration> {
    (kill_over_time && time_s > 0).then(|| {
        let t = Duration::from_secs(time_s as u64);
        t + (t / 10).max(Duration::from_secs(60))
    })
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
                Verdict::Archive => summary.succeeded += 1,
                _ => summary.failed += 1,
            }
        }
    }

    /// Runs one reserved job: its environment, the command (watched and touched), its
    /// behaviours, the report.
    async fn run_job(
        &self,
        job: pb::Job,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Verdict, ClientError> {
        let job_ref = Some(pb::JobRef {
            key: job.key.clone(),
            fence: job.fence,
        });
        let spec_in = job.spec.clone().unwrap_or_default();
        tracing::info!(key = %job.key, cmd = %spec_in.cmd, "running");
        let env = match self.job_env(&job).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot get the job's environment");
                let v = verdict(RunEnd::EnvUnavailable);
                self.finish(&job, job_ref, v, None, 0).await?;
                return Ok(v);
            }
        };
        let spec = self.exec_spec(&job, &spec_in, env);
        let started_ms = now_ms();
        let (result, seen) = self.watch_run(&spec, &job_ref, shutdown).await;
        let verdict = if seen.lost {
            verdict(RunEnd::ReservationGone)
        } else {
            decide(&result, seen.shutting, seen.killed)
        };
        tracing::debug!(key = %job.key, ?verdict, wall_ms = result.wall_ms, "command ended");
        let remove = self.behaviours(&spec_in, &result, &verdict).await;
        self.finish(&job, job_ref, verdict, Some(&result), started_ms)
            .await?;
        tracing::debug!(key = %job.key, "outcome reported");
        // "remove" takes a failed job out of the queue once its failure is recorded.
        if remove && !matches!(verdict, Verdict::Archive | Verdict::Abandon) {
            // A key the node sent is well formed; should one not be, there is nothing to remove.
            let removed = match JobKey::parse(&job.key) {
                Some(key) => self.reporter.delete(&[key]).await.map(|_| ()),
                None => Err(ClientError::Invalid(format!("job key {:?}", job.key))),
            };
            if let Err(e) = removed {
                tracing::warn!(key = %job.key, error = %e, "remove behaviour failed");
            }
        }
        Ok(verdict)
    }

    /// The job's environment: its stored one, or the runner's own when it has none.
    async fn job_env(&self, job: &pb::Job) -> Result<Vec<String>, ClientError> {
        if job.env_hash.is_empty() {
            let (env, skipped) = raftq_client::process_env();
            if !skipped.is_empty() {
                tracing::warn!(?skipped, key = %job.key, "variables that are not UTF-8 left out of the job's environment");
            }
            Ok(env)
        } else {
            self.reporter.get_env(job.env_hash.clone()).await
        }
    }

    /// How to run the job's command: where, with what, and within which limits.
    fn exec_spec(&self, job: &pb::Job, spec_in: &pb::JobSpec, env: Vec<String>) -> ExecSpec {
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
        ExecSpec {
            cmd: spec_in.cmd.clone(),
            shell: self.config.shell.clone(),
            dir,
            env,
            change_home: spec_in.change_home,
            time_limit: time_limit(time_s, self.config.kill_over_time),
            ram_limit_mb: job
                .effective
                .as_ref()
                .map(|r| r.ram_mb as u64)
                .filter(|m| *m > 0),
            host_short_of_memory: None,
        }
    }

    fn started_request(&self, job_ref: &Option<pb::JobRef>, pid: u32) -> pb::StartedRequest {
        pb::StartedRequest {
            request_id: request_id(),
            job: job_ref.clone(),
            host: self.config.host.clone(),
            pid,
        }
    }

    /// Runs the command to its end while reporting its start, touching the reservation and
    /// stopping it on a kill, a lost reservation or shutdown. One `select!` over these five
    /// events keeps them in one place, which is why this is longer than most.
    async fn watch_run(
        &self,
        spec: &ExecSpec,
        job_ref: &Option<pb::JobRef>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (ExecResult, Seen) {
        let (kill_tx, kill_rx) = watch::channel(false);
        let (pid_tx, mut pid_rx) = watch::channel(0u32);
        let exec = exec::run(spec, kill_rx, move |pid| {
            let _ = pid_tx.send(pid);
        });
        tokio::pin!(exec);
        let touch_every = (self.config.ttr / 4).max(Duration::from_millis(100));
        let mut ticker = tokio::time::interval(touch_every);
        ticker.tick().await;
        let mut seen = Seen::default();
        let mut started_sent = false;
        let mut started_call: Option<Call<'_>> = None;
        let result = loop {
            tokio::select! {
                r = &mut exec => break r,
                _ = pid_rx.changed(), if !started_sent => {
                    // Reported while the command runs (not in this branch: a short command
                    // would wait for the round trip to be noticed as done).
                    started_sent = true;
                    let req = self.started_request(job_ref, *pid_rx.borrow());
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
                        if e.refusal().is_some() { seen.lost = true; let _ = kill_tx.send(true); }
                    }
                }
                _ = ticker.tick() => match self.touch(job_ref, touch_every).await {
                    Touched::Alive => {}
                    Touched::Kill => { seen.killed = true; let _ = kill_tx.send(true); }
                    Touched::Gone => { seen.lost = true; let _ = kill_tx.send(true); }
                },
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { seen.shutting = true; let _ = kill_tx.send(true); }
                }
            }
        };
        // A command that ended before its start was reported still ran: report the start
        // first, so that its failure uses up a retry.
        // The start must be recorded before the outcome.
        if let Some(call) = started_call.take() {
            if let Err(e) = call.await {
                tracing::warn!(error = %e, "reporting start failed");
                seen.lost = e.refusal().is_some();
            }
        }
        if !started_sent && !seen.lost && result.setup_error.is_none() {
            let req = self.started_request(job_ref, *pid_rx.borrow());
            if let Err(e) = self.reporter.started(req).await {
                tracing::warn!(error = %e, "reporting start failed");
                seen.lost = e.refusal().is_some();
            }
        }
        (result, seen)
    }

    /// Touches the reservation once, waiting at most `within` for an answer.
    async fn touch(&self, job_ref: &Option<pb::JobRef>, within: Duration) -> Touched {
        let req = pb::TouchRequest {
            request_id: request_id(),
            job: job_ref.clone(),
        };
        match tokio::time::timeout(within, self.client.touch(req)).await {
            Err(_) => {
                tracing::warn!("touch timed out; will retry");
                Touched::Alive
            }
            Ok(Ok(t)) if t.kill => Touched::Kill,
            Ok(Ok(_)) => Touched::Alive,
            Ok(Err(e)) if e.refusal().is_some() => {
                tracing::warn!(error = %e, "the reservation is gone; stopping the job");
                Touched::Gone
            }
            // No manager reachable for now: keep running, touch again later.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "touch failed; will retry");
                Touched::Alive
            }
        }
    }

    /// Runs the job's behaviours for how it ended; returns whether one asks to remove the job.
    async fn behaviours(&self, spec: &pb::JobSpec, r: &ExecResult, verdict: &Verdict) -> bool {
        let mut remove = false;
        use pb::behaviour::{Action, When};
        let success = *verdict == Verdict::Archive;
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
        verdict: Verdict,
        r: Option<&ExecResult>,
        started_ms: u64,
    ) -> Result<(), ClientError> {
        let rep = r.map(|r| report(r, started_ms));
        let result = match verdict {
            Verdict::Archive => self
                .reporter
                .archive(pb::ArchiveRequest {
                    request_id: request_id(),
                    job: job_ref,
                    report: rep,
                })
                .await
                .map(|_| ()),
            Verdict::Release(why) | Verdict::Bury(why) => {
                let hand_back = pb::HandBackRequest {
                    request_id: request_id(),
                    job: job_ref,
                    report: rep,
                    reason: why.as_str().into(),
                };
                if matches!(verdict, Verdict::Bury(_)) {
                    self.reporter.bury(hand_back).await.map(|_| ())
                } else {
                    self.reporter.release(hand_back).await.map(|_| ())
                }
            }
            Verdict::Abandon => Ok(()),
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
    use queue_fsm::FailReason;

    fn res(exit: Option<i32>) -> ExecResult {
        ExecResult {
            exit_code: exit,
            ..ExecResult::default()
        }
    }

    #[test]
    fn time_is_an_estimate_unless_a_hard_limit_is_asked_for() {
        assert_eq!(time_limit(3600, false), None);
        assert_eq!(time_limit(0, true), None);
        assert_eq!(time_limit(3600, true), Some(Duration::from_secs(3960)));
        assert_eq!(time_limit(60, true), Some(Duration::from_secs(120)));
    }

    #[test]
    fn outcomes_follow_exit_codes_and_stops() {
        assert_eq!(decide(&res(Some(0)), false, false), Verdict::Archive);
        assert_eq!(
            decide(&res(Some(126)), false, false),
            Verdict::Bury(FailReason::Perm)
        );
        assert_eq!(
            decide(&res(Some(127)), false, false),
            Verdict::Bury(FailReason::NotFound)
        );
        assert_eq!(
            decide(&res(Some(2)), false, false),
            Verdict::Release(FailReason::Exit)
        );
        assert_eq!(
            decide(&res(None), false, false),
            Verdict::Release(FailReason::Abnormal)
        );
        let mut k = res(None);
        k.stopped = Some(StopReason::Requested);
        assert_eq!(decide(&k, false, true), Verdict::Bury(FailReason::Killed));
        assert_eq!(
            decide(&k, true, false),
            Verdict::Release(FailReason::Signal)
        );
        assert_eq!(decide(&k, false, false), Verdict::Abandon);
        k.stopped = Some(StopReason::Time);
        assert_eq!(decide(&k, false, false), Verdict::Release(FailReason::Time));
        let mut s = res(None);
        s.setup_error = Some("working directory /x does not exist".into());
        assert_eq!(decide(&s, false, false), Verdict::Bury(FailReason::Cwd));
    }
}
