//! Executors: what runs one prepared attempt (its folder holds `task.json`) to its end. The
//! local executor runs `PROGRAM task exec DIR` as a process group on this machine; the Slurm
//! executor submits the same command as a batch job and polls it, holding it while its job is
//! paused. Both end the attempt on a kill or a timeout, and read what it left (`result.json`,
//! the tail of its stderr) the same way.
//!
//! The engine hands an executor an [`AttemptControl`]: where to report the attempt's native id,
//! whether its job is paused now, and when it is to be killed. Slurm itself is reached through
//! [`SlurmControl`], so that the polling, holding and releasing can be tested without a cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::runner::{self, TaskResult};
use crate::slurm::{BatchJob, SlurmCli, SlurmError, SlurmPrograms, SlurmState};
use crate::state::TaskState;
use crate::workflow::{ExecutorKind, TaskSpec};

use super::store::{JobRecord, TaskRecord};

/// How an attempt ended, and what it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub state: TaskState,
    pub result: TaskResult,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome {
            state: TaskState::Failed,
            result: TaskResult::failed(error),
        }
    }

    pub fn finished(result: TaskResult) -> Outcome {
        Outcome {
            state: TaskState::Finished,
            result,
        }
    }

    pub fn killed() -> Outcome {
        Outcome {
            state: TaskState::Killed,
            result: TaskResult::failed("killed by an operator"),
        }
    }
}

/// How a task's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// With an exit code (none: a signal).
    Exited(Option<i32>),
    TimedOut,
    Killed,
}

/// What an ended process means, from how it ended and the `result.json` it left in `dir`.
pub fn outcome_of(dir: &Path, ended: Ended, timeout: Option<u64>) -> Outcome {
    match ended {
        Ended::Killed => Outcome::killed(),
        Ended::TimedOut => Outcome::failed(format!(
            "timed out after {} s (timeout_secs)",
            timeout.unwrap_or_default()
        )),
        Ended::Exited(code) => match TaskResult::read(dir) {
            Some(result) if result.ok && code == Some(0) => Outcome::finished(result),
            Some(result) if !result.ok => Outcome {
                state: TaskState::Failed,
                result,
            },
            _ => {
                let tail = std::fs::read_to_string(dir.join(runner::STDERR_FILE))
                    .map(|t| {
                        t.lines()
                            .rev()
                            .take(3)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    })
                    .unwrap_or_default();
                Outcome::failed(format!(
                    "the task process ended with {} and left no result{}",
                    code.map(|c| format!("exit code {c}"))
                        .unwrap_or_else(|| "a signal".into()),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {tail}")
                    }
                ))
            }
        },
    }
}

/// One claimed attempt, its folder prepared.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub job: &'a JobRecord,
    /// The task as claimed: `attempt` is this attempt's number.
    pub task: &'a TaskRecord,
    pub spec: &'a TaskSpec,
    pub dir: &'a Path,
}

impl Attempt<'_> {
    /// How long the attempt may run.
    pub fn timeout(&self) -> Duration {
        self.spec
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(u64::MAX / 4))
    }
}

/// What an executor reports to, and hears from, the engine while an attempt runs.
pub trait AttemptControl: Send + Sync {
    /// The attempt got its native id (pid, Slurm job id).
    fn started(&self, native_id: &str) -> impl Future<Output = ()> + Send;
    /// Whether the attempt's job is paused now.
    fn job_paused(&self) -> impl Future<Output = bool> + Send;
    /// Resolves once the attempt is to be killed (never, if it is not).
    fn killed(&self) -> impl Future<Output = ()> + Send;
}

/// Runs attempts to their end.
pub trait TaskExecutor: Send + Sync + 'static {
    /// Run a prepared attempt until it ends, is killed or times out.
    fn run<C: AttemptControl>(
        &self,
        attempt: Attempt<'_>,
        control: &C,
    ) -> impl Future<Output = Outcome> + Send;

    /// End what a lost attempt (its lease was reaped) may have left running, so that a retry
    /// never runs beside it. `dir` is that attempt's folder.
    fn end_orphan(&self, task: &TaskRecord, dir: &Path) -> impl Future<Output = ()> + Send;
}

/// The executor of each task, by its `executor` name: `slurm` tasks on Slurm, every other on
/// the local one.
pub struct Executors<L, S> {
    pub local: L,
    pub slurm: S,
}

/// The executors of a real server.
pub type NativeExecutors = Executors<LocalExecutor, SlurmExecutor<SlurmCommands>>;

impl NativeExecutors {
    /// `program` is what tasks run (`PROGRAM task exec DIR`), with `env` as their whole
    /// environment; `slurm_args` go to every `sbatch`.
    pub fn native(
        program: PathBuf,
        env: BTreeMap<String, String>,
        slurm_args: Vec<String>,
    ) -> Self {
        let task = TaskCommand { program, env };
        Executors {
            local: LocalExecutor::new(task.clone()),
            slurm: SlurmExecutor::new(SlurmCommands::on_path(), task, slurm_args),
        }
    }
}

impl<L: TaskExecutor, S: TaskExecutor> TaskExecutor for Executors<L, S> {
    async fn run<C: AttemptControl>(&self, attempt: Attempt<'_>, control: &C) -> Outcome {
        if attempt.task.executor == ExecutorKind::Slurm.as_str() {
            self.slurm.run(attempt, control).await
        } else {
            self.local.run(attempt, control).await
        }
    }

    async fn end_orphan(&self, task: &TaskRecord, dir: &Path) {
        if task.executor == ExecutorKind::Local.as_str() {
            self.local.end_orphan(task, dir).await
        } else if task.executor == ExecutorKind::Slurm.as_str() {
            self.slurm.end_orphan(task, dir).await
        }
    }
}

/// The command every attempt runs, and its whole environment.
#[derive(Debug, Clone)]
pub struct TaskCommand {
    pub program: PathBuf,
    pub env: BTreeMap<String, String>,
}

/// Attempts as process groups on this machine.
pub struct LocalExecutor {
    task: TaskCommand,
}

impl LocalExecutor {
    pub fn new(task: TaskCommand) -> Self {
        LocalExecutor { task }
    }
}

impl TaskExecutor for LocalExecutor {
    async fn run<C: AttemptControl>(&self, attempt: Attempt<'_>, control: &C) -> Outcome {
        let timeout = attempt.timeout();
        let mut process = match crate::local::LocalProcess::spawn(
            &self.task.program,
            attempt.dir,
            &self.task.env,
        ) {
            Ok(p) => p,
            Err(e) => return Outcome::failed(format!("cannot start the task process: {e}")),
        };
        if let Some(pid) = process.pid() {
            control.started(&pid.to_string()).await;
        }
        let ended = tokio::select! {
            status = process.wait() => Ended::Exited(status.ok().and_then(|s| s.code())),
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
            _ = control.killed() => Ended::Killed,
        };
        if !matches!(ended, Ended::Exited(_)) {
            process.kill();
            let _ = process.wait().await;
        }
        outcome_of(attempt.dir, ended, attempt.spec.timeout_secs)
    }

    /// Only a process group on this machine, checked by its command line naming the attempt's
    /// folder, so a reused pid is never hit.
    async fn end_orphan(&self, task: &TaskRecord, dir: &Path) {
        let Some(native) = &task.native_id else {
            return;
        };
        let same_host = task
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.starts_with(&format!("{}-", super::hostname())));
        let Ok(pid) = native.parse::<u32>() else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let ours = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
        if same_host && ours {
            tracing::warn!(job = %task.job_id, task = %task.name, pid, "ending the lost attempt's processes");
            crate::local::kill_group(pid);
        }
    }
}

/// A Slurm cluster, as the Slurm executor uses it.
pub trait SlurmControl: Send + Sync + 'static {
    /// Whether a controller answers here (asked before each attempt is submitted).
    fn reachable(&self) -> impl Future<Output = bool> + Send;
    /// Submit a batch job; its id.
    fn submit(&self, job: BatchJob) -> impl Future<Output = Result<String, SlurmError>> + Send;
    fn state(
        &self,
        job_id: &str,
        workdir: &Path,
    ) -> impl Future<Output = Result<SlurmState, SlurmError>> + Send;
    fn cancel(&self, job_id: &str) -> impl Future<Output = Result<(), SlurmError>> + Send;
    /// Keep a pending job from starting.
    fn hold(&self, job_id: &str) -> impl Future<Output = Result<(), SlurmError>> + Send;
    /// Let a held job start.
    fn release(&self, job_id: &str) -> impl Future<Output = Result<(), SlurmError>> + Send;
}

/// The Slurm commands on PATH. Each call runs on a blocking thread: they wait on slurmctld.
pub struct SlurmCommands {
    cli: Arc<SlurmCli>,
}

impl SlurmCommands {
    pub fn on_path() -> Self {
        SlurmCommands {
            cli: Arc::new(SlurmCli::new(SlurmPrograms::on_path())),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SlurmCli) -> Result<T, SlurmError> + Send + 'static,
    ) -> Result<T, SlurmError> {
        let cli = self.cli.clone();
        tokio::task::spawn_blocking(move || f(&cli))
            .await
            .unwrap_or_else(|e| {
                Err(SlurmError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }
}

impl SlurmControl for SlurmCommands {
    async fn reachable(&self) -> bool {
        tokio::task::spawn_blocking(SlurmCli::detect)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    async fn submit(&self, job: BatchJob) -> Result<String, SlurmError> {
        self.call(move |cli| cli.submit(&job)).await
    }

    async fn state(&self, job_id: &str, workdir: &Path) -> Result<SlurmState, SlurmError> {
        let (id, dir) = (job_id.to_owned(), workdir.to_path_buf());
        self.call(move |cli| cli.state(&id, Some(&dir))).await
    }

    async fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        let id = job_id.to_owned();
        self.call(move |cli| cli.cancel(&id)).await
    }

    async fn hold(&self, job_id: &str) -> Result<(), SlurmError> {
        let id = job_id.to_owned();
        self.call(move |cli| cli.hold(&id)).await
    }

    async fn release(&self, job_id: &str) -> Result<(), SlurmError> {
        let id = job_id.to_owned();
        self.call(move |cli| cli.release(&id)).await
    }
}

/// Attempts as Slurm batch jobs.
pub struct SlurmExecutor<C> {
    slurm: C,
    task: TaskCommand,
    /// `sbatch` arguments for every task (before the task's own).
    slurm_args: Vec<String>,
    /// How often a submitted job's state is read.
    poll: Duration,
}

impl<C: SlurmControl> SlurmExecutor<C> {
    pub fn new(slurm: C, task: TaskCommand, slurm_args: Vec<String>) -> Self {
        SlurmExecutor {
            slurm,
            task,
            slurm_args,
            poll: Duration::from_millis(1000),
        }
    }

    pub fn slurm(&self) -> &C {
        &self.slurm
    }

    fn batch_job(&self, attempt: &Attempt<'_>) -> BatchJob {
        let (job, spec, dir) = (attempt.job, attempt.spec, attempt.dir);
        let mut extra_args = self.slurm_args.clone();
        extra_args.extend(spec.sbatch_args.iter().cloned());
        BatchJob {
            name: format!(
                "maas-{}-{}",
                &job.id[..8.min(job.id.len())],
                attempt.task.name
            ),
            workdir: dir.to_path_buf(),
            script: format!(
                "exec {} task exec {}",
                shell_quote(&self.task.program.to_string_lossy()),
                shell_quote(&dir.to_string_lossy())
            ),
            stdout: dir.join(runner::STDOUT_FILE),
            stderr: dir.join(runner::STDERR_FILE),
            cpus: Some(spec.resources.cpus),
            memory_mb: spec.resources.memory_mb,
            gpus: (spec.resources.gpus > 0).then_some(spec.resources.gpus),
            time_limit: spec.timeout_secs.map(Duration::from_secs),
            extra_args,
            env: self
                .task
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl<C: SlurmControl> TaskExecutor for SlurmExecutor<C> {
    async fn run<A: AttemptControl>(&self, attempt: Attempt<'_>, control: &A) -> Outcome {
        let (dir, timeout_secs) = (attempt.dir, attempt.spec.timeout_secs);
        if !self.slurm.reachable().await {
            return Outcome::failed(
                "the task runs on Slurm, and no Slurm cluster answers here (sbatch/sinfo); see deploy/slurm/README.md",
            );
        }
        let id = match self.slurm.submit(self.batch_job(&attempt)).await {
            Ok(id) => id,
            Err(e) => return Outcome::failed(format!("sbatch refused the task: {e}")),
        };
        control.started(&id).await;
        let timeout = attempt.timeout();
        let started = tokio::time::Instant::now();
        let mut held = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = control.killed() => {
                    let _ = self.slurm.cancel(&id).await;
                    return outcome_of(dir, Ended::Killed, timeout_secs);
                }
            }
            if started.elapsed() > timeout {
                let _ = self.slurm.cancel(&id).await;
                return outcome_of(dir, Ended::TimedOut, timeout_secs);
            }
            let state = match self.slurm.state(&id, dir).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(slurm_job = %id, error = %e, "cannot read the Slurm job's state");
                    continue;
                }
            };
            // A paused job starts nothing new: hold what Slurm has not started yet.
            let paused = control.job_paused().await;
            match state {
                SlurmState::Pending if paused && !held => {
                    held = self.slurm.hold(&id).await.is_ok();
                }
                SlurmState::Held if !paused => {
                    let released = self.slurm.release(&id).await.is_ok();
                    held = held && !released;
                }
                SlurmState::Completed { exit_code } => {
                    return outcome_of(dir, Ended::Exited(Some(exit_code)), timeout_secs)
                }
                SlurmState::Failed { exit_code, reason } => {
                    let mut outcome = outcome_of(dir, Ended::Exited(Some(exit_code)), timeout_secs);
                    if outcome.result.error.is_none() || TaskResult::read(dir).is_none() {
                        outcome.result.error = Some(format!(
                            "Slurm job {id} failed ({reason}), exit code {exit_code}"
                        ));
                    }
                    outcome.state = TaskState::Failed;
                    return outcome;
                }
                SlurmState::Cancelled => {
                    return Outcome::failed(format!("Slurm job {id} was cancelled outside maas"))
                }
                SlurmState::Timeout => return outcome_of(dir, Ended::TimedOut, timeout_secs),
                SlurmState::OutOfMemory => {
                    return Outcome::failed(format!("Slurm job {id} ran out of memory"))
                }
                SlurmState::NodeFail => {
                    return Outcome::failed(format!("Slurm job {id} lost its node"))
                }
                _ => {}
            }
        }
    }

    async fn end_orphan(&self, task: &TaskRecord, _dir: &Path) {
        let Some(id) = &task.native_id else {
            return;
        };
        if self.slurm.reachable().await {
            let _ = self.slurm.cancel(id).await;
        }
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
