//! The scheduler's engine: claims ready tasks (higher priority and older jobs first, within
//! this worker's CPU and GPU slots), runs each attempt on an executor ([`TaskExecutor`]) or, for
//! `deploy` tasks, in this process through the registry ([`ModelDeployer`]), renews its leases
//! while attempts run, reaps the leases of workers that vanished, retries failed attempts after
//! their back-off, ends the attempts of killed jobs, and submits a model's retraining when its
//! data drifted. Everything it knows is in the [`JobStore`]: a restart loses nothing.
//!
//! The gateway implements the store and the deployer on its database and registry; the unit
//! tests here use in-memory fakes and a hand-moved [`Clock`].

mod deploy;
mod executor;
mod settings;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Map;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::runner::{self, TaskFile};
use crate::sandbox::{Confinement, NoSandbox, ReadPolicy};
use crate::state::{JobState, TaskState};
use crate::workflow::{self, ExecutorKind, Workflow, DEPLOY};

pub use deploy::{DeployError, DeployedVersion, ModelDeployer, NewModelVersion, VersionFileError};
pub use executor::{
    outcome_of, Attempt, AttemptControl, Ended, Executors, LocalExecutor, NativeExecutors, Outcome,
    SlurmCommands, SlurmControl, SlurmExecutor, TaskCommand, TaskExecutor,
};
pub use settings::{InvalidSettings, SchedulerSettings, SetupError, TaskHost};
pub use store::{
    AttemptEnd, JobRecord, JobStore, NewTask, Submission, SubmitError, TaskRecord, DRIFT_ORIGIN,
    SYSTEM_VARIABLES,
};

/// Milliseconds since the Unix epoch: the engine's only source of time for what it stores
/// (leases, retry times, durations), so tests can move it by hand.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// Where the engine reports ended attempts (the gateway's Prometheus metrics).
pub trait TaskMetrics: Send + Sync + 'static {
    /// An attempt of a task of `kind` ended: `outcome` is `retried` or the task's state.
    fn task_ended(&self, kind: &str, outcome: &str, seconds: f64);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl TaskMetrics for NoMetrics {
    fn task_ended(&self, _kind: &str, _outcome: &str, _seconds: f64) {}
}

/// This machine's name, the first part of a worker's name on its leases.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "maas".to_owned())
}

/// What an engine works with besides its settings.
pub struct EngineParts<S, X, D> {
    pub store: S,
    pub executor: X,
    pub deployer: D,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<dyn TaskMetrics>,
}

/// An attempt running in this process.
struct Running {
    cpus: u32,
    gpus: u32,
    /// Counts against the local pool (Slurm and deploy tasks do not).
    local: bool,
    kill: watch::Sender<bool>,
}

/// The scheduler of one process. Its loops start with [`Engine::start`]; the API side wakes it
/// on submits and tells it about kills.
pub struct Engine<S, X, D> {
    store: S,
    executor: X,
    deployer: D,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn TaskMetrics>,
    settings: SchedulerSettings,
    host: TaskHost,
    /// This process's name on the leases it takes (`HOST-ID`).
    owner: String,
    wake: Notify,
    running: Mutex<HashMap<(String, String), Running>>,
    /// The workflows of runnable jobs, parsed once.
    workflows: Mutex<HashMap<String, Arc<Workflow>>>,
}

impl<S: JobStore, X: TaskExecutor, D: ModelDeployer> Engine<S, X, D> {
    /// `owner` names this worker on its leases; it starts with [`hostname`] and a dash, so that
    /// a lost local attempt is recognised as this machine's.
    pub fn new(
        settings: SchedulerSettings,
        host: TaskHost,
        owner: String,
        parts: EngineParts<S, X, D>,
    ) -> Self {
        Engine {
            store: parts.store,
            executor: parts.executor,
            deployer: parts.deployer,
            clock: parts.clock,
            metrics: parts.metrics,
            settings,
            host,
            owner,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            workflows: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Why script tasks cannot run here, if they cannot.
    pub fn scripts_refused(&self) -> Option<&NoSandbox> {
        self.host.confinement.as_ref().err()
    }

    /// The folder of one attempt of a task.
    pub fn attempt_dir(&self, job: &str, task: &str, attempt: u32) -> PathBuf {
        self.host.attempt_dir(job, task, attempt)
    }

    /// Look for ready tasks now (a job was submitted, resumed, retried).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Attempts running in this process.
    pub fn running(&self) -> usize {
        self.running.lock().len()
    }

    /// End this process's attempts of a killed job.
    pub fn kill(&self, job_id: &str) {
        for ((job, _), running) in self.running.lock().iter() {
            if job == job_id {
                let _ = running.kill.send(true);
            }
        }
    }

    /// Start the loops of this process (when `scheduler.enabled`).
    pub fn start(self: &Arc<Self>) {
        if !self.settings.enabled {
            tracing::info!(
                "scheduler disabled here (scheduler.enabled = false): this process runs no task"
            );
            return;
        }
        tracing::info!(slots = self.host.slots, gpus = self.settings.gpus, executor = self.settings.executor.as_str(),
            work_dir = %self.host.work_dir.display(), "scheduler started");
        let heartbeat = self.clone();
        tokio::spawn(async move { heartbeat.heartbeat_loop().await });
        let schedule = self.clone();
        tokio::spawn(async move { schedule.schedule_loop().await });
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_secs * 1000).unwrap_or(i64::MAX)
    }

    /// Renew this process's leases, reap other workers' expired ones, and end the attempts of
    /// jobs killed elsewhere.
    async fn heartbeat_loop(self: Arc<Self>) {
        let renew_every = i64::try_from(self.settings.lease_secs * 1000 / 3).unwrap_or(1000);
        let mut renewed = 0;
        loop {
            let now = self.clock.now_ms();
            if now - renewed >= renew_every {
                match self.renew_leases(now).await {
                    Ok(()) => renewed = now,
                    Err(e) => tracing::warn!(error = %e, "cannot renew task leases"),
                }
                if let Err(e) = self.reap(now).await {
                    tracing::warn!(error = %e, "cannot reap expired task leases");
                }
            }
            self.end_killed().await;
            // Kills made through another replica reach this one within a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn renew_leases(&self, now: i64) -> Result<(), S::Error> {
        self.store
            .renew_leases(&self.owner, now + self.lease_ms())
            .await
    }

    /// End the attempts here whose job was killed (through any replica).
    async fn end_killed(&self) {
        let jobs: HashSet<String> = self.running.lock().keys().map(|(j, _)| j.clone()).collect();
        for job in jobs {
            if let Ok(Some(record)) = self.store.job(&job).await {
                if record.state == JobState::Killed {
                    self.kill(&job);
                }
            }
        }
    }

    /// Tasks whose worker stopped renewing its lease (a crash, a restart, a lost replica): tried
    /// again if their retry policy allows, failed otherwise, with the reason recorded.
    async fn reap(&self, now: i64) -> Result<(), S::Error> {
        for task in self.store.expired_tasks(now).await? {
            let reason = format!(
                "attempt {} was lost: its worker ({}) stopped renewing its lease (maas stopped or lost the task)",
                task.attempt,
                task.lease_owner.as_deref().unwrap_or("unknown")
            );
            let retry = task.attempt < task.max_attempts;
            tracing::warn!(job = %task.job_id, task = %task.name, retry, "{reason}");
            let dir = self.attempt_dir(&task.job_id, &task.name, task.attempt);
            self.executor.end_orphan(&task, &dir).await;
            let end = AttemptEnd {
                state: TaskState::Failed,
                error: Some(reason),
                variables: BTreeMap::new(),
                metrics: Map::new(),
                retry_at: retry.then_some(now),
                exit_code: None,
            };
            self.store.end_attempt(&task, None, end).await?;
        }
        Ok(())
    }

    async fn schedule_loop(self: Arc<Self>) {
        let mut drift_checked = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.schedule_once().await {
                tracing::warn!(error = %e, "scheduling failed; trying again");
            }
            if drift_checked.elapsed() >= Duration::from_secs(1) {
                drift_checked = tokio::time::Instant::now();
                if let Err(e) = self.watch_drift().await {
                    tracing::warn!(error = %e, "retraining on drift failed");
                }
            }
            let _ = tokio::time::timeout(
                Duration::from_millis(self.settings.poll_interval_ms),
                self.wake.notified(),
            )
            .await;
        }
    }

    /// The parsed workflow of a job.
    fn workflow_of(&self, job: &JobRecord) -> Result<Arc<Workflow>, serde_json::Error> {
        if let Some(w) = self.workflows.lock().get(&job.id) {
            return Ok(w.clone());
        }
        let w: Arc<Workflow> = Arc::new(serde_json::from_str(&job.definition)?);
        self.workflows.lock().insert(job.id.clone(), w.clone());
        Ok(w)
    }

    /// Start every ready task that fits, higher priority and older jobs first. The started
    /// attempts' handles resolve once each attempt's end is recorded.
    async fn schedule_once(
        self: &Arc<Self>,
    ) -> Result<Vec<JoinHandle<()>>, ScheduleError<S::Error>> {
        let jobs = self
            .store
            .runnable_jobs()
            .await
            .map_err(ScheduleError::Store)?;
        self.workflows
            .lock()
            .retain(|id, _| jobs.iter().any(|j| &j.id == id));
        let mut tasks_of: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for task in self
            .store
            .runnable_tasks()
            .await
            .map_err(ScheduleError::Store)?
        {
            tasks_of.entry(task.job_id.clone()).or_default().push(task);
        }
        let now = self.clock.now_ms();
        let mut ready: Vec<(i64, i64, i64, JobRecord, Arc<Workflow>, TaskRecord)> = Vec::new();
        for job in &jobs {
            let workflow = self.workflow_of(job).map_err(ScheduleError::Definition)?;
            let Some(tasks) = tasks_of.get(&job.id) else {
                continue;
            };
            let states: HashMap<&str, TaskState> =
                tasks.iter().map(|t| (t.name.as_str(), t.state)).collect();
            for task in tasks {
                if task.state != TaskState::Pending || task.not_before > now {
                    continue;
                }
                let Some(spec) = workflow.task(&task.name) else {
                    continue;
                };
                if spec
                    .depends_on
                    .iter()
                    .all(|d| states.get(d.as_str()) == Some(&TaskState::Finished))
                {
                    ready.push((
                        -job.priority,
                        job.submitted_at,
                        task.position,
                        job.clone(),
                        workflow.clone(),
                        task.clone(),
                    ));
                }
            }
        }
        ready.sort_by_key(|r| (r.0, r.1, r.2));
        let mut started = Vec::new();
        for (_, _, _, job, workflow, task) in ready {
            let Some(spec) = workflow.task(&task.name) else {
                continue;
            };
            let local = task.executor == ExecutorKind::Local.as_str() && spec.kind != DEPLOY;
            let cpus = spec.resources.cpus.min(self.host.slots).max(1);
            let gpus = spec.resources.gpus;
            if local {
                if gpus > self.settings.gpus {
                    // No executor here has that many GPUs: it waits (another replica may have them).
                    continue;
                }
                let (used_cpus, used_gpus) = self.used();
                if used_cpus + cpus > self.host.slots || used_gpus + gpus > self.settings.gpus {
                    continue;
                }
            }
            let lease_until = self.clock.now_ms() + self.lease_ms();
            if !self
                .store
                .claim_task(&task, &self.owner, lease_until)
                .await
                .map_err(ScheduleError::Store)?
            {
                continue;
            }
            let mut claimed = task.clone();
            claimed.attempt += 1;
            claimed.state = TaskState::Running;
            claimed.started_at = Some(self.clock.now_ms());
            let (kill, killed) = watch::channel(false);
            self.running.lock().insert(
                (job.id.clone(), task.name.clone()),
                Running {
                    cpus,
                    gpus,
                    local,
                    kill,
                },
            );
            let engine = self.clone();
            started.push(tokio::spawn(async move {
                engine.run_attempt(job, workflow, claimed, killed).await;
            }));
        }
        Ok(started)
    }

    fn used(&self) -> (u32, u32) {
        self.running
            .lock()
            .values()
            .filter(|r| r.local)
            .fold((0, 0), |(c, g), r| (c + r.cpus, g + r.gpus))
    }

    /// Submit the retraining workflow of models whose drift was detected since their last
    /// job. Debounced per model: drift seen while a drift-started retraining is pending or
    /// running, or within `retrain_cooldown_secs` after it ended, starts nothing (it is not
    /// kept for later either: only drift seen after the cool-down starts the next one).
    async fn watch_drift(&self) -> Result<(), S::Error> {
        let cooldown_ms = i64::try_from(self.settings.retrain_cooldown_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        for (model, last_drift) in self.store.drifted_models().await? {
            if self
                .store
                .active_job_for_model(&model, DRIFT_ORIGIN)
                .await?
                .is_some()
            {
                continue;
            }
            if let Some(previous) = self
                .store
                .latest_job_for_model(&model, Some(DRIFT_ORIGIN))
                .await?
            {
                if previous.state.is_terminal() {
                    let ended = previous.finished_at.unwrap_or(previous.updated_at);
                    if last_drift < ended.saturating_add(cooldown_ms) {
                        continue;
                    }
                } else {
                    continue;
                }
            }
            let latest = self.store.latest_job_for_model(&model, None).await?;
            if latest.is_some_and(|j| j.submitted_at >= last_drift) {
                continue;
            }
            match self.store.submit_drift_retraining(&model).await {
                Ok(job) => {
                    tracing::info!(model, job = %job.id, "drift detected: retraining submitted");
                    self.wake();
                }
                Err(e) => {
                    tracing::warn!(model, error = %e, "drift detected, but retraining could not be submitted")
                }
            }
        }
        Ok(())
    }

    /// Run one claimed attempt to its end and record it.
    async fn run_attempt(
        self: Arc<Self>,
        job: JobRecord,
        workflow: Arc<Workflow>,
        task: TaskRecord,
        killed: watch::Receiver<bool>,
    ) {
        let key = (job.id.clone(), task.name.clone());
        let spec = workflow.task(&task.name);
        let outcome = match (self.prepare_attempt(&job, &workflow, &task).await, spec) {
            (Ok((dir, file)), Some(spec)) if spec.kind == DEPLOY => {
                deploy::run(&self.deployer, &job, &file, &dir).await
            }
            (Ok((dir, _)), Some(spec)) => {
                let attempt = Attempt {
                    job: &job,
                    task: &task,
                    spec,
                    dir: &dir,
                };
                let control = EngineControl {
                    store: &self.store,
                    task: &task,
                    killed,
                };
                self.executor.run(attempt, &control).await
            }
            (Ok(_), None) => Outcome::failed("the task is not in the job's workflow"),
            (Err(e), _) => Outcome::failed(e),
        };
        self.running.lock().remove(&key);
        let kind = spec.map(|s| s.kind.as_str()).unwrap_or("unknown");
        let now = self.clock.now_ms();
        let retry_at = match outcome.state {
            TaskState::Failed if task.attempt < task.max_attempts => {
                let backoff = spec
                    .map(|s| s.retries.backoff_after(task.attempt))
                    .unwrap_or(1.0);
                Some(now + (backoff * 1000.0) as i64)
            }
            _ => None,
        };
        tracing::info!(job = %job.id, task = %task.name, attempt = task.attempt,
            state = outcome.state.as_str(), retry = retry_at.is_some(),
            error = outcome.result.error.as_deref().unwrap_or(""), "task attempt ended");
        let seconds = task
            .started_at
            .map(|at| (now - at).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let label = match (outcome.state, retry_at.is_some()) {
            (_, true) => "retried",
            (state, false) => state.as_str(),
        };
        self.metrics.task_ended(kind, label, seconds);
        let end = AttemptEnd {
            state: outcome.state,
            error: outcome.result.error,
            variables: outcome.result.variables,
            metrics: outcome.result.metrics,
            retry_at,
            exit_code: outcome.result.exit_code,
        };
        match self.store.end_attempt(&task, Some(&self.owner), end).await {
            Ok(Some(after)) if after.state.is_terminal() => {
                tracing::info!(job = %job.id, state = after.state.as_str(), "job ended");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(job = %job.id, task = %task.name, error = %e, "cannot record the end of a task attempt")
            }
        }
        self.wake();
    }

    /// Resolve the attempt's variables (the job's, its ancestors' exports, the task's own) and
    /// parameters, and write its `task.json`.
    async fn prepare_attempt(
        &self,
        job: &JobRecord,
        workflow: &Workflow,
        task: &TaskRecord,
    ) -> Result<(PathBuf, TaskFile), String> {
        let spec = workflow
            .task(&task.name)
            .ok_or_else(|| "the task is not in the job's workflow".to_owned())?;
        let mut variables: BTreeMap<String, String> =
            serde_json::from_str(&job.variables).unwrap_or_default();
        let tasks = self.store.tasks(&job.id).await.map_err(|e| e.to_string())?;
        for ancestor in workflow.ancestors(&task.name) {
            let Some(record) = tasks.iter().find(|t| t.name == ancestor) else {
                continue;
            };
            let exported: BTreeMap<String, String> =
                serde_json::from_str(&record.variables).unwrap_or_default();
            for (name, value) in exported {
                variables.insert(format!("{ancestor}.{name}"), value.clone());
                variables.insert(name, value);
            }
        }
        for (name, value) in &spec.variables {
            let value = workflow::substitute(&value.to_text(), &variables)
                .map_err(|e| format!("variable {name}: {e}"))?;
            variables.insert(name.clone(), value);
        }
        let mut params = Map::new();
        for (name, value) in &spec.params {
            let value = workflow::substitute_json(value, &variables)
                .map_err(|e| format!("params.{name}: {e}"))?;
            params.insert(name.clone(), value);
        }
        let confinement = match (&self.host.confinement, spec.kind == workflow::SCRIPT) {
            (Ok(c), _) => c.clone(),
            (Err(why), true) => return Err(format!("a script task, and {why}")),
            // Built-in tasks run no foreign code: the read policy is their confinement.
            (Err(_), false) => Confinement::None,
        };
        let dir = self.attempt_dir(&job.id, &task.name, task.attempt);
        let file = TaskFile {
            job_id: job.id.clone(),
            task: task.name.clone(),
            attempt: task.attempt,
            kind: spec.kind.clone(),
            script: spec.script.clone(),
            language: spec.language(),
            params,
            // Namespaced names (`task.VAR`) are not environment variable names.
            variables: variables
                .into_iter()
                .filter(|(k, _)| !k.contains('.'))
                .collect(),
            python: self.settings.python.clone(),
            environment: self.host.task_env.clone(),
            reads: ReadPolicy {
                roots: self.host.data_roots.clone(),
                closed: self.host.closed.clone(),
                job_dir: Some(self.host.work_dir.join(&job.id)),
            },
            confinement,
            max_file_bytes: Some(self.settings.max_task_file_bytes),
        };
        let (d, f) = (dir.clone(), file.clone());
        tokio::task::spawn_blocking(move || runner::prepare(&d, &f))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot prepare the task folder {}: {e}", dir.display()))?;
        Ok((dir, file))
    }
}

/// Why a scheduling tick stopped.
enum ScheduleError<E> {
    Store(E),
    /// A stored job's workflow no longer parses.
    Definition(serde_json::Error),
}

impl<E: std::fmt::Display> std::fmt::Display for ScheduleError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::Store(e) => e.fmt(f),
            ScheduleError::Definition(e) => e.fmt(f),
        }
    }
}

/// The engine's side of a running attempt, as its executor sees it.
struct EngineControl<'a, S> {
    store: &'a S,
    task: &'a TaskRecord,
    killed: watch::Receiver<bool>,
}

impl<S: JobStore> AttemptControl for EngineControl<'_, S> {
    async fn started(&self, native_id: &str) {
        let task = self.task;
        // The id only helps reaping and the API's answers: the attempt runs on without it.
        let _ = self
            .store
            .set_native_id(&task.job_id, &task.name, task.attempt, native_id)
            .await;
    }

    async fn job_paused(&self) -> bool {
        matches!(self.store.job(&self.task.job_id).await, Ok(Some(j)) if j.state == JobState::Paused)
    }

    async fn killed(&self) {
        let mut killed = self.killed.clone();
        if killed.wait_for(|k| *k).await.is_err() {
            // The sender is gone without killing: never.
            std::future::pending::<()>().await;
        }
    }
}
