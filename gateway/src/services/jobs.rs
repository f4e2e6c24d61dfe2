//! The training scheduler's engine: submits workflows as jobs, claims ready tasks (priority
//! first, one guarded statement per claim), runs each attempt on an executor (a local process
//! group, or a Slurm batch job) or, for `deploy` tasks, in this process through the registry,
//! renews leases while attempts run, reaps the leases of workers that vanished, and settles jobs.
//! Everything it knows is in the store: a restart loses nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use maas_scheduler::runner::{self, TaskFile, TaskResult};
use maas_scheduler::sandbox::{self, Confinement, NoSandbox, ReadPolicy, SandboxMode};
use maas_scheduler::workflow::{self, DEPLOY};
use maas_scheduler::{ExecutorKind, JobAction, JobState, TaskState, Workflow};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Notify};
use utoipa::ToSchema;

use crate::services::error::{ErrorKind, ServiceError};
use crate::services::models::ModelService;
use crate::store::jobs::{AttemptEnd, JobFilter, JobRecord, NewTask, TaskRecord};
use crate::store::rfc3339;
use crate::store::{now_ms, SqlStore};

/// The most one log answer carries; the next read starts where it stopped.
const LOG_CHUNK: u64 = 1024 * 1024;

/// Variables every job gets, whether its workflow declares them or not.
pub const SYSTEM_VARIABLES: &[&str] = &["MODEL_NAME", "MODEL_VERSION"];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Whether this process runs tasks (a replica can serve the API only).
    pub enabled: bool,
    /// Where tasks run unless their workflow says otherwise: `local` or `slurm`.
    pub executor: ExecutorKind,
    /// CPUs of the local pool (0: as many as this machine has).
    pub slots: u32,
    /// GPUs of the local pool; tasks that need more wait.
    pub gpus: u32,
    /// Where task folders go (default: `jobs` under the data folder). Must be shared with the
    /// Slurm nodes when tasks run there.
    pub work_dir: Option<PathBuf>,
    /// Seconds a running task's lease lasts without renewal before it is reaped.
    pub lease_secs: u64,
    /// How often idle workers look for ready tasks, in ms (submits here wake them at once).
    pub poll_interval_ms: u64,
    /// The interpreter of Python script tasks.
    pub python: String,
    /// Whether workflows may hold `script` tasks (shell or Python).
    pub scripts: bool,
    /// How script tasks are confined: `auto`, `bwrap`, `user` or `none`.
    pub sandbox: SandboxMode,
    /// The unprivileged user script tasks run as when the server runs as root (a name, or
    /// `uid:gid`).
    pub task_user: String,
    /// The bubblewrap program.
    pub bwrap: PathBuf,
    /// Server environment variables a task may see, by name; nothing else of the server's
    /// environment reaches a task.
    pub env_allow: Vec<String>,
    /// Folders whose files built-in tasks may read by path (besides their job's own folder);
    /// the data folder stays closed even inside one.
    pub data_roots: Vec<PathBuf>,
    /// `sbatch` arguments for every Slurm task (before the task's own `sbatch_args`).
    pub slurm_args: Vec<String>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            enabled: true,
            executor: ExecutorKind::Local,
            slots: 0,
            gpus: 0,
            work_dir: None,
            lease_secs: 30,
            poll_interval_ms: 500,
            python: "python3".to_owned(),
            scripts: true,
            sandbox: SandboxMode::Auto,
            task_user: "nobody".to_owned(),
            bwrap: PathBuf::from("bwrap"),
            env_allow: ["PATH", "LANG", "LC_ALL", "TZ"].map(str::to_owned).to_vec(),
            data_roots: Vec::new(),
            slurm_args: Vec::new(),
        }
    }
}

impl SchedulerSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.lease_secs < 2 {
            anyhow::bail!("scheduler.lease_secs must be at least 2");
        }
        if self.poll_interval_ms < 10 {
            anyhow::bail!("scheduler.poll_interval_ms must be at least 10");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// API shapes

/// A job: its workflow, variables, state and timings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    /// The workflow's name.
    pub name: String,
    /// The catalog version it was submitted from, if it was submitted by name.
    pub workflow_version: Option<u64>,
    pub state: String,
    /// Why it is in its state (failure, who canceled it).
    pub reason: Option<String>,
    pub priority: String,
    pub owner: String,
    /// `api`, `retrain` (a retraining asked for) or `drift` (submitted by a drift event).
    pub origin: String,
    /// The model a retraining job is for.
    pub model: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub submitted_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from start to end (or to now while it runs).
    pub duration_secs: Option<f64>,
    /// Present on a single job's answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
}

/// A task of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    pub name: String,
    pub kind: String,
    pub state: String,
    pub depends_on: Vec<String>,
    pub executor: String,
    /// Attempts started so far, and how many are allowed.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Process id or Slurm job id of the current or last attempt.
    pub native_id: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_secs: Option<f64>,
    pub error: Option<String>,
    /// Every attempt that ended: attempt, executor, native_id, times (ms), state, error.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Value>,
}

/// What a job produced: per task, its exported variables, metrics and artifact files.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobResults {
    pub id: String,
    pub state: String,
    pub tasks: Vec<TaskResults>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TaskResults {
    pub name: String,
    pub state: String,
    pub variables: BTreeMap<String, String>,
    #[schema(value_type = Object)]
    pub metrics: Map<String, Value>,
    /// Paths under the task's `artifacts/` folder, for `…/artifacts/{path}`.
    pub artifacts: Vec<ArtifactView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ArtifactView {
    pub path: String,
    pub size_bytes: u64,
}

/// Counts per state, success ratio, jobs in progress and mean duration, for a filter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobSummary {
    pub total: u64,
    /// Every state, with 0 for those no job is in.
    pub states: BTreeMap<String, u64>,
    /// Finished / ended (finished, failed, canceled, killed); null when none ended.
    pub success_ratio: Option<f64>,
    /// Pending, running, paused or in error.
    pub in_progress: u64,
    /// Mean seconds from start to end of the ended jobs.
    pub average_duration_secs: Option<f64>,
}

/// A page of jobs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub total: u64,
}

/// Who asks about a job. A job's logs, results and errors can hold anything its tasks printed
/// or read, so only its owner and admins see them; everyone else who may read jobs sees their
/// states and timings.
#[derive(Debug, Clone, Copy)]
pub struct JobReader<'a> {
    pub username: &'a str,
    pub admin: bool,
}

impl JobReader<'_> {
    pub fn sees_outputs(&self, job: &JobRecord) -> bool {
        self.admin || job.owner == self.username
    }

    /// Refuse a read of `job`'s outputs (logs, results, artifacts) to anyone else.
    pub fn check_outputs(&self, job: &JobRecord) -> Result<(), ServiceError> {
        if self.sees_outputs(job) {
            return Ok(());
        }
        Err(ServiceError::new(
            ErrorKind::Forbidden,
            format!(
                "job {} belongs to '{}'; only its owner and admins read its logs, results and errors",
                job.id, job.owner
            ),
        ))
    }
}

fn duration(started: Option<i64>, finished: Option<i64>) -> Option<f64> {
    let start = started?;
    let end = finished.unwrap_or_else(now_ms);
    Some((end - start).max(0) as f64 / 1000.0)
}

impl JobView {
    /// Leave out what only the owner and admins read: the failure reason and the tasks' errors.
    fn hide_outputs(&mut self) {
        self.reason = None;
        for task in self.tasks.iter_mut().flatten() {
            task.error = None;
            for attempt in &mut task.attempts {
                if let Some(attempt) = attempt.as_object_mut() {
                    attempt.remove("error");
                }
            }
        }
    }

    /// The view `reader` gets.
    pub fn of_for(job: &JobRecord, reader: JobReader) -> JobView {
        let mut view = JobView::of(job);
        if !reader.sees_outputs(job) {
            view.hide_outputs();
        }
        view
    }

    pub fn of(job: &JobRecord) -> JobView {
        JobView {
            id: job.id.clone(),
            name: job.name.clone(),
            workflow_version: job.workflow_version,
            state: job.state.as_str().to_owned(),
            reason: job.reason.clone(),
            priority: maas_scheduler::Priority::ALL
                .into_iter()
                .find(|p| p.rank() == job.priority)
                .unwrap_or_default()
                .as_str()
                .to_owned(),
            owner: job.owner.clone(),
            origin: job.origin.clone(),
            model: job.model.clone(),
            variables: serde_json::from_str(&job.variables).unwrap_or_default(),
            submitted_at: rfc3339(job.submitted_at),
            started_at: job.started_at.map(rfc3339),
            finished_at: job.finished_at.map(rfc3339),
            duration_secs: duration(job.started_at, job.finished_at),
            tasks: None,
        }
    }
}

fn task_view(workflow: Option<&Workflow>, task: &TaskRecord) -> TaskView {
    let spec = workflow.and_then(|w| w.task(&task.name));
    let running = task.state == TaskState::Running;
    TaskView {
        name: task.name.clone(),
        kind: spec.map(|s| s.kind.clone()).unwrap_or_default(),
        state: task.state.as_str().to_owned(),
        depends_on: spec.map(|s| s.depends_on.clone()).unwrap_or_default(),
        executor: task.executor.clone(),
        attempt: task.attempt,
        max_attempts: task.max_attempts,
        native_id: task.native_id.clone(),
        started_at: task.started_at.map(rfc3339),
        finished_at: task.finished_at.filter(|_| !running).map(rfc3339),
        duration_secs: duration(task.started_at, task.finished_at.filter(|_| !running)),
        error: task.error.clone(),
        attempts: serde_json::from_str(&task.history).unwrap_or_default(),
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::new(ErrorKind::JobNotFound, format!("job '{id}' does not exist"))
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidWorkflow, message)
}

// ---------------------------------------------------------------------------------------------
// The service

/// A submit: the workflow and how to run it.
pub struct Submission {
    pub workflow: Workflow,
    pub workflow_version: Option<u64>,
    pub variables: BTreeMap<String, String>,
    pub priority: Option<maas_scheduler::Priority>,
    pub owner: String,
    pub origin: String,
    pub model: Option<String>,
}

/// An attempt running in this process.
struct Running {
    cpus: u32,
    gpus: u32,
    /// Counts against the local pool (Slurm and deploy tasks do not).
    local: bool,
    kill: watch::Sender<bool>,
}

pub struct JobService {
    store: SqlStore,
    metrics: Arc<crate::services::metrics::Metrics>,
    settings: SchedulerSettings,
    work_dir: PathBuf,
    /// This process's name on the leases it takes.
    owner: String,
    slots: u32,
    wake: Notify,
    running: Mutex<HashMap<(String, String), Running>>,
    /// The program tasks run (`maas task exec DIR`).
    exe: PathBuf,
    /// How script tasks run here, or why they cannot.
    confinement: Result<Confinement, NoSandbox>,
    /// The server variables tasks see (`env_allow`).
    task_env: BTreeMap<String, String>,
    /// Closed to built-in tasks' reads: the data and job folders (canonical).
    closed: Vec<PathBuf>,
    /// Open to them: `data_roots` (canonical).
    data_roots: Vec<PathBuf>,
}

impl JobService {
    pub fn new(
        store: SqlStore,
        metrics: Arc<crate::services::metrics::Metrics>,
        settings: SchedulerSettings,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let work_dir = settings
            .work_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("jobs"));
        std::fs::create_dir_all(&work_dir).map_err(|e| {
            anyhow::anyhow!("cannot create the job folder {}: {e}", work_dir.display())
        })?;
        let work_dir = std::fs::canonicalize(&work_dir)?;
        let data_dir = std::fs::canonicalize(data_dir)?;
        let mut closed = vec![data_dir.clone()];
        if !work_dir.starts_with(&data_dir) {
            closed.push(work_dir.clone());
        }
        let confinement = if settings.scripts {
            sandbox::resolve(
                settings.sandbox,
                &settings.task_user,
                &settings.bwrap,
                &closed,
            )
        } else {
            Err(NoSandbox(
                "this server runs none (scheduler.scripts = false)".into(),
            ))
        };
        let mut confinement = confinement;
        if let Ok(c) = &confinement {
            if c.user().is_some() {
                open_path_to_jobs(&data_dir, &work_dir)?;
                if let Some(closed) = sandbox::unreachable(&work_dir) {
                    confinement = unreachable_work_dir(c, settings.sandbox, &work_dir, &closed);
                }
            }
        }
        match (&confinement, settings.sandbox) {
            (Err(why), SandboxMode::Bwrap | SandboxMode::User) if settings.scripts => {
                anyhow::bail!(
                    "scheduler.sandbox = \"{}\" cannot be met: {why}",
                    settings.sandbox.as_str()
                )
            }
            (Err(why), _) => tracing::warn!(reason = %why, "script tasks are refused"),
            (Ok(c), _) => {
                tracing::info!(sandbox = confinement_name(c), "script tasks are confined")
            }
        }
        let mut data_roots = Vec::new();
        for root in &settings.data_roots {
            match std::fs::canonicalize(root) {
                Ok(real) => data_roots.push(real),
                Err(e) => tracing::warn!(folder = %root.display(), error = %e,
                    "scheduler.data_roots: a folder is unreadable and stays closed"),
            }
        }
        let task_env = sandbox::allowed_environment(&settings.env_allow);
        let slots = if settings.slots == 0 {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1)
        } else {
            settings.slots
        };
        Ok(JobService {
            store,
            metrics,
            work_dir,
            owner: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
            slots,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            exe: std::env::current_exe()?,
            settings,
            confinement,
            task_env,
            closed,
            data_roots,
        })
    }

    pub fn store(&self) -> &SqlStore {
        &self.store
    }

    /// Update the job metrics (at scrape time).
    pub async fn sample_metrics(&self) -> Result<(), ServiceError> {
        let summary = self.summary(&JobFilter::default()).await?;
        let running = self.running.lock().len();
        self.metrics.sample_jobs(&summary.states, running);
        Ok(())
    }

    /// Parse a workflow definition and check it against this server's settings.
    pub fn parse(&self, text: &str) -> Result<Workflow, ServiceError> {
        let workflow = Workflow::parse(text).map_err(|e| invalid(e.to_string()))?;
        if let Err(why) = &self.confinement {
            if let Some(task) = workflow.tasks.iter().find(|t| t.kind == workflow::SCRIPT) {
                return Err(invalid(format!(
                    "task '{}' is a script task, and {why}",
                    task.name
                )));
            }
        }
        Ok(workflow)
    }

    /// Store a job and wake the workers.
    pub async fn submit(&self, submission: Submission) -> Result<JobRecord, ServiceError> {
        let workflow = submission.workflow;
        let variables = workflow
            .resolve_variables(&submission.variables, SYSTEM_VARIABLES)
            .map_err(|e| invalid(e.to_string()))?;
        let definition = serde_json::to_string(&workflow)
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
        let now = now_ms();
        let job = JobRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: workflow.name.clone(),
            workflow_version: submission.workflow_version,
            definition,
            variables: serde_json::to_string(&variables).unwrap_or_else(|_| "{}".into()),
            priority: submission.priority.unwrap_or(workflow.priority).rank(),
            owner: submission.owner,
            origin: submission.origin,
            model: submission.model,
            state: JobState::Pending,
            reason: None,
            submitted_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
        };
        let tasks: Vec<NewTask> = workflow
            .tasks
            .iter()
            .map(|t| NewTask {
                name: t.name.clone(),
                max_attempts: t.retries.max_attempts,
                executor: workflow
                    .executor_of(t, self.settings.executor)
                    .as_str()
                    .to_owned(),
            })
            .collect();
        self.store.insert_job(&job, &tasks).await?;
        tracing::info!(job = %job.id, workflow = %job.name, origin = %job.origin, "job submitted");
        self.wake.notify_one();
        Ok(job)
    }

    pub async fn job(&self, id: &str) -> Result<JobRecord, ServiceError> {
        self.store.job(id).await?.ok_or_else(|| not_found(id))
    }

    /// A job with its tasks.
    pub async fn view(&self, id: &str, reader: JobReader<'_>) -> Result<JobView, ServiceError> {
        let job = self.job(id).await?;
        let workflow: Option<Workflow> = serde_json::from_str(&job.definition).ok();
        let tasks = self.store.tasks(id).await?;
        let mut view = JobView::of(&job);
        view.tasks = Some(
            tasks
                .iter()
                .map(|t| task_view(workflow.as_ref(), t))
                .collect(),
        );
        if !reader.sees_outputs(&job) {
            view.hide_outputs();
        }
        Ok(view)
    }

    pub async fn list(
        &self,
        filter: &JobFilter,
        reader: JobReader<'_>,
    ) -> Result<(Vec<JobView>, u64), ServiceError> {
        let (jobs, total) = self.store.jobs(filter).await?;
        Ok((
            jobs.iter().map(|j| JobView::of_for(j, reader)).collect(),
            total,
        ))
    }

    pub async fn summary(&self, filter: &JobFilter) -> Result<JobSummary, ServiceError> {
        let (counts, mean_ms) = self.store.job_summary(filter).await?;
        let states: BTreeMap<String, u64> = JobState::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_owned(),
                    counts.get(s.as_str()).copied().unwrap_or(0),
                )
            })
            .collect();
        let count = |s: JobState| states.get(s.as_str()).copied().unwrap_or(0);
        let ended: u64 = JobState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| count(*s))
            .sum();
        Ok(JobSummary {
            total: states.values().sum(),
            success_ratio: (ended > 0).then(|| count(JobState::Finished) as f64 / ended as f64),
            in_progress: JobState::ALL
                .iter()
                .filter(|s| !s.is_terminal())
                .map(|s| count(*s))
                .sum(),
            average_duration_secs: mean_ms.map(|ms| ms / 1000.0),
            states,
        })
    }

    /// Jobs with their variables and results, one row per job, for a CSV export.
    pub async fn export_csv(
        &self,
        filter: &JobFilter,
        reader: JobReader<'_>,
    ) -> Result<String, ServiceError> {
        let (jobs, _) = self.store.jobs(filter).await?;
        let mut out = csv::Writer::from_writer(Vec::new());
        let internal = |e: csv::Error| ServiceError::new(ErrorKind::Internal, e.to_string());
        out.write_record([
            "id",
            "name",
            "state",
            "priority",
            "owner",
            "origin",
            "model",
            "submitted_at",
            "started_at",
            "finished_at",
            "duration_secs",
            "reason",
            "variables",
            "results",
        ])
        .map_err(internal)?;
        for job in &jobs {
            let view = JobView::of_for(job, reader);
            let tasks = if reader.sees_outputs(job) {
                self.store.tasks(&job.id).await?
            } else {
                Vec::new()
            };
            let results: Map<String, Value> = tasks
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        json!({
                            "state": t.state.as_str(),
                            "variables": serde_json::from_str::<Value>(&t.variables).unwrap_or(Value::Null),
                            "metrics": serde_json::from_str::<Value>(&t.metrics).unwrap_or(Value::Null),
                        }),
                    )
                })
                .collect();
            out.write_record([
                view.id.as_str(),
                &view.name,
                &view.state,
                &view.priority,
                &view.owner,
                &view.origin,
                view.model.as_deref().unwrap_or(""),
                &view.submitted_at,
                view.started_at.as_deref().unwrap_or(""),
                view.finished_at.as_deref().unwrap_or(""),
                &view
                    .duration_secs
                    .map(|d| format!("{d:.3}"))
                    .unwrap_or_default(),
                view.reason.as_deref().unwrap_or(""),
                &serde_json::to_string(&view.variables).unwrap_or_default(),
                &Value::Object(results).to_string(),
            ])
            .map_err(internal)?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))
    }

    /// Cancel, pause, resume or kill a job.
    pub async fn act(
        &self,
        id: &str,
        action: JobAction,
        reader: JobReader<'_>,
    ) -> Result<JobView, ServiceError> {
        // The job may move on between the read and the guarded write (a worker claims a task,
        // a task ends): decide again from the state it moved to.
        for _ in 0..5 {
            let job = self.job(id).await?;
            let next = action
                .apply(job.state)
                .map_err(|m| ServiceError::new(ErrorKind::InvalidAction, m))?;
            if self
                .store
                .set_job_state(&job, next, action.as_str())
                .await?
                .is_none()
            {
                continue;
            }
            if next == JobState::Killed {
                self.kill_local(id);
            }
            tracing::info!(job = %id, action = action.as_str(), state = next.as_str(), "job action");
            self.wake.notify_one();
            return self.view(id, reader).await;
        }
        Err(ServiceError::new(
            ErrorKind::InvalidAction,
            format!("job '{id}' keeps changing state; try again"),
        )
        .retry_after(1))
    }

    /// Give a failed task of a failed or waiting job another attempt.
    pub async fn retry(
        &self,
        id: &str,
        task: &str,
        reader: JobReader<'_>,
    ) -> Result<JobView, ServiceError> {
        let job = self.job(id).await?;
        JobAction::Retry
            .apply(job.state)
            .map_err(|m| ServiceError::new(ErrorKind::InvalidAction, m))?;
        let tasks = self.store.tasks(id).await?;
        let Some(record) = tasks.iter().find(|t| t.name == task) else {
            return Err(ServiceError::new(
                ErrorKind::TaskNotFound,
                format!("job '{id}' has no task '{task}'"),
            ));
        };
        if !matches!(record.state, TaskState::Failed | TaskState::Killed) {
            return Err(ServiceError::new(
                ErrorKind::InvalidAction,
                format!(
                    "task '{task}' is {}; only a failed task can be retried",
                    record.state.as_str()
                ),
            ));
        }
        if !self.store.retry_task(&job, task).await? {
            return Err(ServiceError::new(
                ErrorKind::InvalidAction,
                format!("job '{id}' changed state meanwhile; look at it again"),
            ));
        }
        self.wake.notify_one();
        self.view(id, reader).await
    }

    fn kill_local(&self, job_id: &str) {
        for ((job, _), running) in self.running.lock().iter() {
            if job == job_id {
                let _ = running.kill.send(true);
            }
        }
    }

    /// The folder of one attempt of a task.
    fn attempt_dir(&self, job: &str, task: &str, attempt: u32) -> PathBuf {
        self.work_dir
            .join(job)
            .join(task)
            .join(format!("attempt-{attempt}"))
    }

    /// The task record, checked to exist.
    async fn task(&self, job: &str, task: &str) -> Result<TaskRecord, ServiceError> {
        self.job(job).await?;
        self.store
            .tasks(job)
            .await?
            .into_iter()
            .find(|t| t.name == task)
            .ok_or_else(|| {
                ServiceError::new(
                    ErrorKind::TaskNotFound,
                    format!("job '{job}' has no task '{task}'"),
                )
            })
    }

    /// A task's log from byte `offset` on (stdout or stderr of an attempt, the latest by
    /// default), and whether more may come.
    pub async fn logs(
        &self,
        job: &str,
        task: &str,
        attempt: Option<u32>,
        stream: &str,
        offset: u64,
        reader: JobReader<'_>,
    ) -> Result<(Vec<u8>, u64, bool), ServiceError> {
        reader.check_outputs(&self.job(job).await?)?;
        let record = self.task(job, task).await?;
        let file = match stream {
            "stdout" => runner::STDOUT_FILE,
            "stderr" => runner::STDERR_FILE,
            other => {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    format!("`stream` is stdout or stderr, not '{other}'"),
                ))
            }
        };
        if record.attempt == 0 && attempt.is_none() {
            // Not started yet: nothing to read, more to come while it is pending.
            return Ok((Vec::new(), 0, record.state == TaskState::Pending));
        }
        let attempt = attempt.unwrap_or(record.attempt);
        if attempt == 0 || attempt > record.attempt {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "task '{task}' has {} attempt(s); there is no attempt {attempt}",
                    record.attempt
                ),
            ));
        }
        let path = self.attempt_dir(job, task, attempt).join(file);
        let more = attempt == record.attempt
            && matches!(record.state, TaskState::Running | TaskState::Pending);
        let Ok(mut log) = tokio::fs::File::open(&path).await else {
            return Ok((Vec::new(), 0, more));
        };
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let unreadable = |e: std::io::Error| {
            ServiceError::new(ErrorKind::Internal, format!("cannot read the log: {e}"))
        };
        let size = log.metadata().await.map(|m| m.len()).unwrap_or(0);
        let start = offset.min(size);
        log.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(unreadable)?;
        let mut bytes = Vec::new();
        log.take(LOG_CHUNK)
            .read_to_end(&mut bytes)
            .await
            .map_err(unreadable)?;
        let next = start + bytes.len() as u64;
        // A log longer than one answer is not complete yet, whatever the task's state.
        Ok((bytes, next, more || next < size))
    }

    /// Exported variables, metrics and artifacts of every task.
    pub async fn results(
        &self,
        id: &str,
        reader: JobReader<'_>,
    ) -> Result<JobResults, ServiceError> {
        let job = self.job(id).await?;
        reader.check_outputs(&job)?;
        let tasks = self.store.tasks(id).await?;
        let mut out = Vec::with_capacity(tasks.len());
        for task in &tasks {
            let artifacts = if task.attempt > 0 {
                list_artifacts(
                    &self
                        .attempt_dir(id, &task.name, task.attempt)
                        .join(runner::ARTIFACTS_DIR),
                )
            } else {
                Vec::new()
            };
            out.push(TaskResults {
                name: task.name.clone(),
                state: task.state.as_str().to_owned(),
                variables: serde_json::from_str(&task.variables).unwrap_or_default(),
                metrics: serde_json::from_str(&task.metrics).unwrap_or_default(),
                artifacts,
            });
        }
        Ok(JobResults {
            id: job.id,
            state: job.state.as_str().to_owned(),
            tasks: out,
        })
    }

    /// The file of an artifact of a task's latest attempt; paths never leave its folder.
    pub async fn artifact(
        &self,
        id: &str,
        task: &str,
        path: &str,
        reader: JobReader<'_>,
    ) -> Result<PathBuf, ServiceError> {
        reader.check_outputs(&self.job(id).await?)?;
        let record = self.task(id, task).await?;
        let missing = || {
            ServiceError::new(
                ErrorKind::ArtifactNotFound,
                format!("task '{task}' of job '{id}' has no artifact '{path}'"),
            )
        };
        if record.attempt == 0
            || path.is_empty()
            || Path::new(path)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(missing());
        }
        let root = self
            .attempt_dir(id, task, record.attempt)
            .join(runner::ARTIFACTS_DIR);
        // A link a task left must not lead out of its folder.
        match (
            std::fs::canonicalize(root.join(path)),
            std::fs::canonicalize(&root),
        ) {
            (Ok(file), Ok(root)) if file.starts_with(&root) && file.is_file() => Ok(file),
            _ => Err(missing()),
        }
    }

    /// Submit the retraining workflow a model names, with the model's name and current version.
    pub async fn retrain(
        &self,
        models: &ModelService,
        model: &str,
        owner: &str,
        origin: &str,
        variables: BTreeMap<String, String>,
    ) -> Result<JobRecord, ServiceError> {
        let record = models.model(model).await?;
        let Some(name) = self.store.retrain_workflow(model).await? else {
            return Err(ServiceError::new(
                ErrorKind::InvalidAction,
                format!(
                    "model '{model}' names no retraining workflow; set one with the update action \
                     ({{\"retrain_workflow\": \"NAME\"}})"
                ),
            ));
        };
        let saved = self.store.workflow(&name, None).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::WorkflowNotFound,
                format!("model '{model}' is retrained by workflow '{name}', which is not in the catalog"),
            )
        })?;
        let workflow: Workflow = serde_json::from_str(&saved.definition)
            .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
        let current = record.default_version();
        let mut vars = variables;
        vars.insert("MODEL_NAME".into(), model.to_owned());
        vars.insert(
            "MODEL_VERSION".into(),
            current.map(|v| v.to_string()).unwrap_or_default(),
        );
        self.submit(Submission {
            workflow,
            workflow_version: Some(saved.version),
            variables: vars,
            priority: None,
            owner: owner.to_owned(),
            origin: origin.to_owned(),
            model: Some(model.to_owned()),
        })
        .await
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "maas".to_owned())
}

fn list_artifacts(root: &Path) -> Vec<ArtifactView> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<ArtifactView>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(root, &path, out),
                Ok(t) if t.is_file() => {
                    if let Ok(rel) = path.strip_prefix(root) {
                        out.push(ArtifactView {
                            path: rel.to_string_lossy().into_owned(),
                            size_bytes: entry.metadata().map(|m| m.len()).unwrap_or(0),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// The engine

/// Start the workers of this process (when `scheduler.enabled`).
pub fn start(jobs: Arc<JobService>, models: Arc<ModelService>) {
    if !jobs.settings.enabled {
        tracing::info!(
            "scheduler disabled here (scheduler.enabled = false): this process runs no task"
        );
        return;
    }
    tracing::info!(slots = jobs.slots, gpus = jobs.settings.gpus, executor = jobs.settings.executor.as_str(),
        work_dir = %jobs.work_dir.display(), "scheduler started");
    let heartbeat = jobs.clone();
    tokio::spawn(async move { heartbeat.heartbeat_loop().await });
    tokio::spawn(async move { jobs.schedule_loop(models).await });
}

impl JobService {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease_secs * 1000).unwrap_or(i64::MAX)
    }

    /// Renew this process's leases, reap other workers' expired ones, and end the attempts of
    /// jobs killed elsewhere.
    async fn heartbeat_loop(self: Arc<Self>) {
        let renew_every = i64::try_from(self.settings.lease_secs * 1000 / 3).unwrap_or(1000);
        let mut renewed = 0;
        loop {
            let now = now_ms();
            if now - renewed >= renew_every {
                match self
                    .store
                    .renew_leases(&self.owner, now + self.lease_ms())
                    .await
                {
                    Ok(()) => renewed = now,
                    Err(e) => tracing::warn!(error = %e, "cannot renew task leases"),
                }
                if let Err(e) = self.reap(now).await {
                    tracing::warn!(error = %e, "cannot reap expired task leases");
                }
            }
            let jobs: HashSet<String> =
                self.running.lock().keys().map(|(j, _)| j.clone()).collect();
            for job in jobs {
                if let Ok(Some(record)) = self.store.job(&job).await {
                    if record.state == JobState::Killed {
                        self.kill_local(&job);
                    }
                }
            }
            // Kills made through another replica reach this one within a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Tasks whose worker stopped renewing its lease (a crash, a restart, a lost replica): tried
    /// again if their retry policy allows, failed otherwise, with the reason recorded.
    async fn reap(&self, now: i64) -> Result<(), ServiceError> {
        for task in self.store.expired_tasks(now).await? {
            let reason = format!(
                "attempt {} was lost: its worker ({}) stopped renewing its lease (maas stopped or lost the task)",
                task.attempt,
                task.lease_owner.as_deref().unwrap_or("unknown")
            );
            let retry = task.attempt < task.max_attempts;
            tracing::warn!(job = %task.job_id, task = %task.name, retry, "{reason}");
            self.end_orphan(&task).await;
            let end = AttemptEnd {
                state: TaskState::Failed,
                error: Some(reason),
                variables: BTreeMap::new(),
                metrics: Map::new(),
                retry_at: retry.then_some(now),
            };
            self.store.end_attempt(&task, None, end).await?;
        }
        Ok(())
    }

    /// End what a lost attempt may have left running, so a retry never runs beside it: a local
    /// process group on this machine (checked by its command line naming the attempt's folder,
    /// so a reused pid is never hit), or a Slurm job.
    async fn end_orphan(&self, task: &TaskRecord) {
        let Some(native) = &task.native_id else {
            return;
        };
        let dir = self.attempt_dir(&task.job_id, &task.name, task.attempt);
        if task.executor == ExecutorKind::Local.as_str() {
            let same_host = task
                .lease_owner
                .as_deref()
                .is_some_and(|o| o.starts_with(&format!("{}-", hostname())));
            let Ok(pid) = native.parse::<u32>() else {
                return;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
            if same_host && ours {
                tracing::warn!(job = %task.job_id, task = %task.name, pid, "ending the lost attempt's processes");
                maas_scheduler::local::kill_group(pid);
            }
        } else if task.executor == ExecutorKind::Slurm.as_str() {
            let id = native.clone();
            let _ = tokio::task::spawn_blocking(move || {
                maas_scheduler::slurm::SlurmCli::detect().map(|cli| cli.cancel(&id))
            })
            .await;
        }
    }

    async fn schedule_loop(self: Arc<Self>, models: Arc<ModelService>) {
        let mut workflows: HashMap<String, Arc<Workflow>> = HashMap::new();
        let mut drift_checked = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.schedule_once(&models, &mut workflows).await {
                tracing::warn!(error = %e, "scheduling failed; trying again");
            }
            if drift_checked.elapsed() >= Duration::from_secs(1) {
                drift_checked = tokio::time::Instant::now();
                if let Err(e) = self.watch_drift(&models).await {
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

    /// Start every ready task that fits, higher priority and older jobs first.
    async fn schedule_once(
        self: &Arc<Self>,
        models: &Arc<ModelService>,
        cache: &mut HashMap<String, Arc<Workflow>>,
    ) -> Result<(), ServiceError> {
        let jobs = self.store.runnable_jobs().await?;
        cache.retain(|id, _| jobs.iter().any(|j| &j.id == id));
        let mut tasks_of: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for task in self.store.runnable_tasks().await? {
            tasks_of.entry(task.job_id.clone()).or_default().push(task);
        }
        let now = now_ms();
        let mut ready: Vec<(i64, i64, i64, JobRecord, TaskRecord)> = Vec::new();
        for job in &jobs {
            let workflow = match cache.get(&job.id) {
                Some(w) => w.clone(),
                None => {
                    let w: Workflow = serde_json::from_str(&job.definition)
                        .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
                    let w = Arc::new(w);
                    cache.insert(job.id.clone(), w.clone());
                    w
                }
            };
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
                        task.clone(),
                    ));
                }
            }
        }
        ready.sort_by_key(|r| (r.0, r.1, r.2));
        for (_, _, _, job, task) in ready {
            let Some(workflow) = cache.get(&job.id).cloned() else {
                continue;
            };
            let Some(spec) = workflow.task(&task.name) else {
                continue;
            };
            let local = task.executor == ExecutorKind::Local.as_str() && spec.kind != DEPLOY;
            let cpus = spec.resources.cpus.min(self.slots).max(1);
            let gpus = spec.resources.gpus;
            if local {
                if gpus > self.settings.gpus {
                    // No executor here has that many GPUs: it waits (another replica may have them).
                    continue;
                }
                let (used_cpus, used_gpus) = self.used();
                if used_cpus + cpus > self.slots || used_gpus + gpus > self.settings.gpus {
                    continue;
                }
            }
            let lease_until = now_ms() + self.lease_ms();
            if !self
                .store
                .claim_task(&task, &self.owner, lease_until)
                .await?
            {
                continue;
            }
            let mut claimed = task.clone();
            claimed.attempt += 1;
            claimed.state = TaskState::Running;
            claimed.started_at = Some(now_ms());
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
            let service = self.clone();
            let models = models.clone();
            tokio::spawn(async move {
                service
                    .run_attempt(models, job, workflow, claimed, killed)
                    .await;
            });
        }
        Ok(())
    }

    fn used(&self) -> (u32, u32) {
        self.running
            .lock()
            .values()
            .filter(|r| r.local)
            .fold((0, 0), |(c, g), r| (c + r.cpus, g + r.gpus))
    }

    /// Submit the retraining workflow of models whose drift was detected since their last
    /// retraining job (one such job at a time per model).
    async fn watch_drift(&self, models: &Arc<ModelService>) -> Result<(), ServiceError> {
        for (model, last_drift) in self.store.drifted_retrainable_models().await? {
            if self
                .store
                .active_job_for_model(&model, "drift")
                .await?
                .is_some()
            {
                continue;
            }
            let (jobs, _) = self
                .store
                .jobs(&JobFilter {
                    model: Some(model.clone()),
                    limit: 1,
                    ..JobFilter::default()
                })
                .await?;
            if jobs.first().is_some_and(|j| j.submitted_at >= last_drift) {
                continue;
            }
            match self
                .retrain(models, &model, "maas", "drift", BTreeMap::new())
                .await
            {
                Ok(job) => {
                    tracing::info!(model, job = %job.id, "drift detected: retraining submitted")
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
        models: Arc<ModelService>,
        job: JobRecord,
        workflow: Arc<Workflow>,
        task: TaskRecord,
        killed: watch::Receiver<bool>,
    ) {
        let key = (job.id.clone(), task.name.clone());
        let outcome = match self.prepare_attempt(&job, &workflow, &task).await {
            Ok((dir, file)) => {
                let spec = workflow.task(&task.name).cloned();
                match spec {
                    Some(spec) if spec.kind == DEPLOY => {
                        deploy_task(&models, &job, &file, &dir).await
                    }
                    Some(spec) => self.execute(&job, &task, &spec, &dir, killed).await,
                    None => Outcome::failed("the task is not in the job's workflow"),
                }
            }
            Err(e) => Outcome::failed(e),
        };
        self.running.lock().remove(&key);
        let spec = workflow.task(&task.name);
        let kind = spec.map(|s| s.kind.as_str()).unwrap_or("unknown");
        let retry_at = match outcome.state {
            TaskState::Failed if task.attempt < task.max_attempts => {
                let backoff = spec
                    .map(|s| s.retries.backoff_after(task.attempt))
                    .unwrap_or(1.0);
                Some(now_ms() + (backoff * 1000.0) as i64)
            }
            _ => None,
        };
        tracing::info!(job = %job.id, task = %task.name, attempt = task.attempt,
            state = outcome.state.as_str(), retry = retry_at.is_some(),
            error = outcome.result.error.as_deref().unwrap_or(""), "task attempt ended");
        let seconds = task
            .started_at
            .map(|at| (now_ms() - at).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let label = match (outcome.state, retry_at.is_some()) {
            (_, true) => "retried",
            (state, false) => state.as_str(),
        };
        self.metrics.observe_task(kind, label, seconds);
        let end = AttemptEnd {
            state: outcome.state,
            error: outcome.result.error,
            variables: outcome.result.variables,
            metrics: outcome.result.metrics,
            retry_at,
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
        self.wake.notify_one();
    }

    /// Resolve the attempt's variables and parameters and write its `task.json`.
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
        let confinement = match (&self.confinement, spec.kind == workflow::SCRIPT) {
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
            environment: self.task_env.clone(),
            reads: ReadPolicy {
                roots: self.data_roots.clone(),
                closed: self.closed.clone(),
                job_dir: Some(self.work_dir.join(&job.id)),
            },
            confinement,
        };
        let (d, f) = (dir.clone(), file.clone());
        tokio::task::spawn_blocking(move || runner::prepare(&d, &f))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot prepare the task folder {}: {e}", dir.display()))?;
        Ok((dir, file))
    }

    /// Run the attempt's process on its executor until it ends, is killed or times out.
    async fn execute(
        &self,
        job: &JobRecord,
        task: &TaskRecord,
        spec: &maas_scheduler::TaskSpec,
        dir: &Path,
        mut killed: watch::Receiver<bool>,
    ) -> Outcome {
        let timeout = spec
            .timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(u64::MAX / 4));
        if task.executor == ExecutorKind::Slurm.as_str() {
            return self
                .execute_slurm(job, task, spec, dir, killed, timeout)
                .await;
        }
        let mut process =
            match maas_scheduler::local::LocalProcess::spawn(&self.exe, dir, &self.task_env) {
                Ok(p) => p,
                Err(e) => return Outcome::failed(format!("cannot start the task process: {e}")),
            };
        if let Some(pid) = process.pid() {
            let _ = self
                .store
                .set_native_id(&job.id, &task.name, task.attempt, &pid.to_string())
                .await;
        }
        let ended = tokio::select! {
            status = process.wait() => Ended::Exited(status.ok().and_then(|s| s.code())),
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
            _ = until_killed(&mut killed) => Ended::Killed,
        };
        if !matches!(ended, Ended::Exited(_)) {
            process.kill();
            let _ = process.wait().await;
        }
        self.outcome(dir, ended, spec.timeout_secs)
    }

    async fn execute_slurm(
        &self,
        job: &JobRecord,
        task: &TaskRecord,
        spec: &maas_scheduler::TaskSpec,
        dir: &Path,
        mut killed: watch::Receiver<bool>,
        timeout: Duration,
    ) -> Outcome {
        use maas_scheduler::slurm::{BatchJob, SlurmCli, SlurmState};
        let Some(cli) = tokio::task::spawn_blocking(SlurmCli::detect)
            .await
            .ok()
            .flatten()
        else {
            return Outcome::failed(
                "the task runs on Slurm, and no Slurm cluster answers here (sbatch/sinfo); see deploy/slurm/README.md",
            );
        };
        let cli = Arc::new(cli);
        let mut extra_args = self.settings.slurm_args.clone();
        extra_args.extend(spec.sbatch_args.iter().cloned());
        let batch = BatchJob {
            name: format!("maas-{}-{}", &job.id[..8.min(job.id.len())], task.name),
            workdir: dir.to_path_buf(),
            script: format!(
                "exec {} task exec {}",
                shell_quote(&self.exe.to_string_lossy()),
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
                .task_env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let submit_cli = cli.clone();
        let id = match tokio::task::spawn_blocking(move || submit_cli.submit(&batch)).await {
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Outcome::failed(format!("sbatch refused the task: {e}")),
            Err(e) => return Outcome::failed(e.to_string()),
        };
        let _ = self
            .store
            .set_native_id(&job.id, &task.name, task.attempt, &id)
            .await;
        let started = tokio::time::Instant::now();
        let mut held = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
                _ = until_killed(&mut killed) => {
                    let (c, i) = (cli.clone(), id.clone());
                    let _ = tokio::task::spawn_blocking(move || c.cancel(&i)).await;
                    return self.outcome(dir, Ended::Killed, spec.timeout_secs);
                }
            }
            if started.elapsed() > timeout {
                let (c, i) = (cli.clone(), id.clone());
                let _ = tokio::task::spawn_blocking(move || c.cancel(&i)).await;
                return self.outcome(dir, Ended::TimedOut, spec.timeout_secs);
            }
            let (c, i, d) = (cli.clone(), id.clone(), dir.to_path_buf());
            let state = match tokio::task::spawn_blocking(move || c.state(&i, Some(&d))).await {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => {
                    tracing::warn!(slurm_job = %id, error = %e, "cannot read the Slurm job's state");
                    continue;
                }
                Err(_) => continue,
            };
            // A paused job starts nothing new: hold what Slurm has not started yet.
            let paused =
                matches!(self.store.job(&job.id).await, Ok(Some(j)) if j.state == JobState::Paused);
            match state {
                SlurmState::Pending if paused && !held => {
                    let (c, i) = (cli.clone(), id.clone());
                    held = matches!(
                        tokio::task::spawn_blocking(move || c.hold(&i)).await,
                        Ok(Ok(()))
                    );
                }
                SlurmState::Held if !paused => {
                    let (c, i) = (cli.clone(), id.clone());
                    if matches!(
                        tokio::task::spawn_blocking(move || c.release(&i)).await,
                        Ok(Ok(()))
                    ) {
                        held = false;
                    }
                }
                SlurmState::Completed { exit_code } => {
                    return self.outcome(dir, Ended::Exited(Some(exit_code)), spec.timeout_secs)
                }
                SlurmState::Failed { exit_code, reason } => {
                    let mut outcome =
                        self.outcome(dir, Ended::Exited(Some(exit_code)), spec.timeout_secs);
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
                SlurmState::Timeout => {
                    return self.outcome(dir, Ended::TimedOut, spec.timeout_secs)
                }
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

    /// What an ended process means, from how it ended and the `result.json` it left.
    fn outcome(&self, dir: &Path, ended: Ended, timeout: Option<u64>) -> Outcome {
        match ended {
            Ended::Killed => Outcome {
                state: TaskState::Killed,
                result: TaskResult::failed("killed by an operator"),
            },
            Ended::TimedOut => Outcome::failed(format!(
                "timed out after {} s (timeout_secs)",
                timeout.unwrap_or_default()
            )),
            Ended::Exited(code) => match TaskResult::read(dir) {
                Some(result) if result.ok && code == Some(0) => Outcome {
                    state: TaskState::Finished,
                    result,
                },
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
}

enum Ended {
    Exited(Option<i32>),
    TimedOut,
    Killed,
}

struct Outcome {
    state: TaskState,
    result: TaskResult,
}

impl Outcome {
    fn failed(error: impl Into<String>) -> Outcome {
        Outcome {
            state: TaskState::Failed,
            result: TaskResult::failed(error),
        }
    }
}

fn confinement_name(confinement: &Confinement) -> &'static str {
    match confinement {
        Confinement::None => "none (scripts run as the server's user)",
        Confinement::User { .. } => "user (scripts run as scheduler.task_user)",
        Confinement::Bwrap { user: Some(_), .. } => "bwrap, as scheduler.task_user",
        Confinement::Bwrap { user: None, .. } => "bwrap (no capabilities)",
    }
}

/// The task user cannot reach the task folders (a folder above them, outside maas's data folder,
/// is private: `/root`, a 0700 home). `auto` keeps bubblewrap, as root without capabilities (the
/// data folder still hidden, the file system still read-only), and says how to do better;
/// anything else cannot be honoured.
fn unreachable_work_dir(
    confinement: &Confinement,
    mode: SandboxMode,
    work_dir: &Path,
    closed: &Path,
) -> Result<Confinement, NoSandbox> {
    let why = format!(
        "the task user cannot reach the task folders {} ({} is not searchable by other users); \
         set scheduler.work_dir to a folder it can reach",
        work_dir.display(),
        closed.display()
    );
    match (confinement, mode) {
        (
            Confinement::Bwrap {
                program, hidden, ..
            },
            SandboxMode::Auto,
        ) => {
            tracing::warn!(reason = %why, "script tasks run in bubblewrap as root without capabilities");
            Ok(Confinement::Bwrap {
                program: program.clone(),
                user: None,
                hidden: hidden.clone(),
            })
        }
        _ => Err(NoSandbox(why)),
    }
}

/// Scripts running as another user must pass through the data folder to their task folder:
/// the data and job folders become passable but not listable (0711), and everything else in the
/// data folder the server's alone (folders 0700, files 0600).
fn open_path_to_jobs(data_dir: &Path, work_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| anyhow::anyhow!("cannot set the mode of {}: {e}", path.display()))
    };
    if work_dir.starts_with(data_dir) {
        for entry in std::fs::read_dir(data_dir)?.flatten() {
            let path = entry.path();
            if work_dir.starts_with(&path) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                set(&path, 0o700)?;
            } else if meta.is_file() {
                set(&path, 0o600)?;
            }
        }
        for folder in work_dir.ancestors().take_while(|f| f.starts_with(data_dir)) {
            set(folder, 0o711)?;
        }
    } else {
        set(work_dir, 0o711)?;
    }
    Ok(())
}

/// Resolves once the attempt is to be killed (never, if its sender is gone without killing).
async fn until_killed(killed: &mut watch::Receiver<bool>) {
    if killed.wait_for(|k| *k).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------------------------------------
// The deploy task: through the registry, in this process.

use maas_scheduler::workflow::DEPLOY_PARAMS;

fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    params
        .get(name)
        .filter(|v| !v.is_null() && v.as_str() != Some(""))
}

fn param_text(params: &Map<String, Value>, name: &str) -> Option<String> {
    param(params, name).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A list given as a JSON array or as a string holding one (what `train` exports).
fn param_list(params: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    let Some(value) = param(params, name) else {
        return Ok(None);
    };
    let array = match value {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|_| format!("params.{name} must be a JSON array of names, got \"{s}\""))?,
        other => other.clone(),
    };
    match array {
        Value::Array(items) => Ok(Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        )),
        _ => Err(format!("params.{name} must be an array of names")),
    }
}

async fn deploy_task(
    models: &ModelService,
    job: &JobRecord,
    file: &TaskFile,
    dir: &Path,
) -> Outcome {
    let log = |line: String| {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(runner::STDOUT_FILE))
        {
            let _ = writeln!(f, "{line}");
        }
    };
    // Readable by the server's user alone, like every task's logs.
    for name in [runner::STDOUT_FILE, runner::STDERR_FILE] {
        let _ = runner::create_private(&dir.join(name));
    }
    match deploy_inner(models, job, file, &log).await {
        Ok(result) => {
            for (k, v) in &result.variables {
                log(format!("maas: export {k}={v}"));
            }
            if let Ok(mut f) = runner::create_private(&dir.join(runner::RESULT_FILE)) {
                use std::io::Write;
                let _ = f.write_all(&serde_json::to_vec_pretty(&result).unwrap_or_default());
            }
            Outcome {
                state: TaskState::Finished,
                result,
            }
        }
        Err(e) => {
            if let Ok(mut f) = runner::create_private(&dir.join(runner::STDERR_FILE)) {
                use std::io::Write;
                let _ = writeln!(f, "maas: task failed: {e}");
            }
            Outcome::failed(e)
        }
    }
}

async fn deploy_inner(
    models: &ModelService,
    job: &JobRecord,
    file: &TaskFile,
    log: &(dyn Fn(String) + Sync),
) -> Result<TaskResult, String> {
    let params = &file.params;
    if let Some(unknown) = params.keys().find(|k| !DEPLOY_PARAMS.contains(&k.as_str())) {
        return Err(format!(
            "deploy has no parameter '{unknown}'; its parameters are {}",
            DEPLOY_PARAMS.join(", ")
        ));
    }
    let model = param_text(params, "model_name").ok_or("params.model_name is required")?;
    crate::services::models::validate_model_name(&model).map_err(|e| e.message)?;
    let readable = |path: String| {
        file.reads
            .check(Path::new(&path))
            .map_err(|e| e.to_string())
    };
    let onnx_path = readable(
        param_text(params, "model")
            .ok_or("params.model (the ONNX file, usually ${MODEL}) is required")?,
    )?;
    let onnx_path = onnx_path.display().to_string();
    let onnx = tokio::fs::read(&onnx_path)
        .await
        .map_err(|e| format!("cannot read the model {onnx_path}: {e}"))?;
    let features = param_list(params, "features")?;
    let classes = param_list(params, "classes")?;
    let label = param_text(params, "label");
    let holdout = param_text(params, "holdout")
        .map(readable)
        .transpose()?
        .map(|p| p.display().to_string());
    let task_kind = param_text(params, "task").unwrap_or_else(|| {
        if classes.is_some() {
            "classification"
        } else {
            "regression"
        }
        .to_owned()
    });
    let compare = match param(params, "compare") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => return Err(format!("params.compare must be true or false, got {other}")),
    };
    let baseline_size =
        match param_text(params, "baseline_size") {
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                format!("params.baseline_size must be a positive integer, got {text}")
            })?),
            None => None,
        };

    let mut metrics = Map::new();
    // The closed loop's rule: a new version goes live only if it scores at least as well as
    // the one serving, on the same holdout.
    if compare {
        if let (Some(holdout), Some(label)) = (&holdout, &label) {
            let current = models
                .model(&model)
                .await
                .ok()
                .and_then(|m| m.default_version());
            if let Some(version) = current {
                let path = models
                    .artifacts()
                    .path(&model, version)
                    .map_err(|e| format!("cannot find version {version}'s file: {e}"))?;
                let current_bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|e| format!("cannot read version {version}'s file: {e}"))?;
                let (h, l, t, c) = (
                    holdout.clone(),
                    label.clone(),
                    task_kind.clone(),
                    classes.clone(),
                );
                let new_bytes = onnx.clone();
                let scores = tokio::task::spawn_blocking(move || {
                    let old = maas_scheduler::ml::evaluate_model(
                        &current_bytes,
                        Path::new(&h),
                        &l,
                        &t,
                        c.as_deref(),
                    );
                    let new = maas_scheduler::ml::evaluate_model(
                        &new_bytes,
                        Path::new(&h),
                        &l,
                        &t,
                        c.as_deref(),
                    );
                    (old, new)
                })
                .await
                .map_err(|e| e.to_string())?;
                let new = scores
                    .1
                    .map_err(|e| format!("cannot evaluate the new model: {e}"))?;
                let metric =
                    param_text(params, "metric").unwrap_or_else(|| new.primary_metric().to_owned());
                let (new_score, higher_is_better) = new.score(&metric).ok_or_else(|| {
                    format!("params.metric '{metric}' is not a score of a {task_kind} model")
                })?;
                let comparison = match scores.0.map(|old| old.score(&metric)) {
                    Ok(Some((old_score, _))) => {
                        let better_or_equal = if higher_is_better {
                            new_score >= old_score
                        } else {
                            new_score <= old_score
                        };
                        log(format!(
                            "maas: {metric} on the holdout: current version {version} {old_score:.6}, new model {new_score:.6}"
                        ));
                        Some((old_score, better_or_equal))
                    }
                    Ok(None) => {
                        log(format!("maas: the current version {version} has no {metric} on this holdout; deploying the new model"));
                        None
                    }
                    Err(e) => {
                        log(format!("maas: the current version {version} cannot be scored on this holdout ({e}); deploying the new model"));
                        None
                    }
                };
                if let Some((old_score, better_or_equal)) = comparison {
                    metrics.insert(
                        "comparison".into(),
                        json!({
                            "metric": metric,
                            "higher_is_better": higher_is_better,
                            "current_version": version,
                            "current_score": old_score,
                            "candidate_score": new_score,
                            "deployed": better_or_equal,
                        }),
                    );
                    if !better_or_equal {
                        log(format!("maas: the new model is worse than version {version}: kept undeployed (its file stays in the training task's artifacts)"));
                        let audit = models
                            .store()
                            .record(
                                crate::store::audit::Change::new("retrain_rejected")
                                    .model(&model)
                                    .version(version)
                                    .details(
                                        json!({"job": job.id, "comparison": metrics["comparison"]}),
                                    ),
                            )
                            .await;
                        if let Err(e) = audit {
                            tracing::warn!(error = %e, "cannot record the rejected retraining");
                        }
                        return Ok(TaskResult {
                            ok: true,
                            variables: BTreeMap::from([
                                ("DEPLOYED".to_owned(), "false".to_owned()),
                                ("MODEL_NAME".to_owned(), model.clone()),
                                ("MODEL_VERSION".to_owned(), version.to_string()),
                            ]),
                            metrics,
                            error: None,
                        });
                    }
                }
            }
        }
    }

    let mut staged = models
        .artifacts()
        .stage()
        .map_err(|e| format!("cannot stage the model file: {e}"))?;
    staged
        .write(&onnx)
        .map_err(|e| format!("cannot stage the model file: {e}"))?;
    let training_csv = match param_text(params, "training_data")
        .map(readable)
        .transpose()?
    {
        Some(path) => Some(
            tokio::fs::read(&path)
                .await
                .map_err(|e| format!("cannot read the training data {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let drift = crate::services::drift::BaselineUpload {
        baseline_csv: None,
        training_csv,
        baseline_size,
        label_column: label.clone(),
        settings: None,
    };
    // The default placement: the new version replaces the deployed ones. What the task leaves
    // out (serving options, drift settings, names) is carried from the version it replaces.
    let request = crate::services::models::DeployRequest {
        model: model.clone(),
        source: crate::services::models::DeploySource::Upload(Box::new(
            crate::services::models::Upload {
                staged,
                version: None,
                class_names: classes,
                feature_names: features,
                source: format!("job:{}", job.id),
                drift,
                serving: Default::default(),
            },
        )),
        placement: crate::services::models::Placement::Alone,
    };
    let record = models.deploy(request).await.map_err(|e| e.message)?;
    log(format!(
        "maas: deployed {} version {} (from job {})",
        record.model, record.version, job.id
    ));
    Ok(TaskResult {
        ok: true,
        variables: BTreeMap::from([
            ("DEPLOYED".to_owned(), "true".to_owned()),
            ("MODEL_NAME".to_owned(), record.model.clone()),
            ("MODEL_VERSION".to_owned(), record.version.to_string()),
        ]),
        metrics,
        error: None,
    })
}
