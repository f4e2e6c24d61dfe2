//! Jobs as the API sees them: submit a workflow, list, inspect, act on a job (cancel, pause,
//! resume, kill, retry a task), read its logs, results and artifacts, ask for a model's
//! retraining. The engine that runs jobs (claim, lease, reap, retry, the executors, the deploy
//! task, retraining on drift) is the scheduler's (`maas_scheduler::engine`); this module wires
//! it to the store ([`EngineStore`]), the model registry ([`RegistryDeployer`]) and the metrics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maas_scheduler::engine::{
    self, DeployError, DeployedVersion, Engine, EngineParts, JobStore, ModelDeployer,
    NativeExecutors, NewModelVersion, SubmitError, SystemClock, TaskHost, TaskMetrics,
    VersionFileError, DRIFT_ORIGIN,
};
pub use maas_scheduler::engine::{SchedulerSettings, Submission, SYSTEM_VARIABLES};
use maas_scheduler::runner;
use maas_scheduler::workflow;
use maas_scheduler::{ExecutorKind, JobAction, JobState, TaskState, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::services::error::{ErrorKind, ServiceError};
use crate::services::metrics::Metrics;
use crate::services::models::ModelService;
use crate::store::jobs::{JobFilter, JobRecord, TaskRecord, WorkflowRecord};
use crate::store::rfc3339;
use crate::store::{now_ms, SqlStore};

/// The most one log answer carries; the next read starts where it stopped.
const LOG_CHUNK: u64 = 1024 * 1024;

/// When a submit refused for `scheduler.max_active_jobs` is worth trying again.
const JOB_QUEUE_RETRY_SECS: u64 = 5;

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
    /// Every attempt that ended: attempt, executor, native_id, started_at and finished_at
    /// (RFC 3339, as every time here), state, exit_code (null when the process did not exit by
    /// itself, or ran in process), error.
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
        attempts: attempt_views(&task.history),
    }
}

/// The stored attempts with their times as RFC 3339, like every other time the API shows
/// (they are stored as milliseconds).
fn attempt_views(history: &str) -> Vec<Value> {
    let mut attempts: Vec<Value> = serde_json::from_str(history).unwrap_or_default();
    for attempt in &mut attempts {
        for key in ["started_at", "finished_at"] {
            if let Some(ms) = attempt.get(key).and_then(Value::as_i64) {
                attempt[key] = Value::String(rfc3339(ms));
            }
        }
    }
    attempts
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::new(ErrorKind::JobNotFound, format!("job '{id}' does not exist"))
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidWorkflow, message)
}

// ---------------------------------------------------------------------------------------------
// The service

/// The engine as this server runs it.
type JobEngine = Engine<EngineStore, NativeExecutors, RegistryDeployer>;

pub struct JobService {
    store: SqlStore,
    metrics: Arc<Metrics>,
    engine: Arc<JobEngine>,
}

impl JobService {
    /// Prepare the scheduler on this machine (task folder, sandbox, executors); its loops start
    /// with [`JobService::start`].
    pub fn new(
        store: SqlStore,
        metrics: Arc<Metrics>,
        settings: SchedulerSettings,
        data_dir: &Path,
        models: Arc<ModelService>,
    ) -> anyhow::Result<Self> {
        let host = TaskHost::prepare(&settings, data_dir)?;
        let executor = NativeExecutors::native(
            host.program.clone(),
            host.task_env.clone(),
            settings.slurm_args.clone(),
        );
        let parts = EngineParts {
            store: EngineStore {
                store: store.clone(),
                models: models.clone(),
                executor: settings.executor,
                max_active_jobs: settings.max_active_jobs,
            },
            executor,
            deployer: RegistryDeployer { models },
            clock: Arc::new(SystemClock),
            metrics: metrics.clone(),
        };
        let owner = format!("{}-{}", engine::hostname(), uuid::Uuid::new_v4().simple());
        let engine = Arc::new(Engine::new(settings, host, owner, parts));
        Ok(JobService {
            store,
            metrics,
            engine,
        })
    }

    /// A saved workflow: the given version, else the latest. `WorkflowNotFound` when there is
    /// none.
    pub async fn workflow(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<WorkflowRecord, ServiceError> {
        self.store.workflow(name, version).await?.ok_or_else(|| {
            ServiceError::new(
                ErrorKind::WorkflowNotFound,
                match version {
                    Some(v) => format!("workflow '{name}' has no version {v}"),
                    None => format!("no workflow named '{name}' is saved"),
                },
            )
        })
    }

    /// The catalog: the latest version of every saved workflow.
    pub async fn workflows(&self) -> Result<Vec<WorkflowRecord>, ServiceError> {
        Ok(self.store.workflows().await?)
    }

    /// Every version of one saved workflow, oldest first (empty when none is saved).
    pub async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowRecord>, ServiceError> {
        Ok(self.store.workflow_versions(name).await?)
    }

    /// Save a workflow definition (YAML or JSON) as a new version under its name.
    pub async fn save_workflow(
        &self,
        source: &str,
        owner: &str,
    ) -> Result<WorkflowRecord, ServiceError> {
        let workflow = self.parse(source).await?;
        let definition =
            serde_json::to_string(&workflow).map_err(|e| ServiceError::internal(e.to_string()))?;
        let mut attempt = 0;
        loop {
            match self
                .store
                .save_workflow(
                    &workflow.name,
                    &workflow.description,
                    &definition,
                    source,
                    owner,
                )
                .await
            {
                Ok(record) => return Ok(record),
                // Two saves of one name at once: the loser takes the next number.
                Err(crate::store::StoreError::Database(_)) if attempt < 3 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Start the scheduler's loops in this process (when `scheduler.enabled`).
    pub fn start(&self) {
        self.engine.start();
    }

    /// Update the job metrics (at scrape time).
    pub async fn sample_metrics(&self) -> Result<(), ServiceError> {
        let summary = self.summary(&JobFilter::default()).await?;
        self.metrics
            .sample_jobs(&summary.states, self.engine.running());
        Ok(())
    }

    /// Parse a workflow definition and check it against this server's settings. Parsing runs on
    /// a blocking thread: a hostile definition costs its parser time, never an HTTP worker.
    pub async fn parse(&self, text: &str) -> Result<Workflow, ServiceError> {
        let text = text.to_owned();
        let workflow = crate::services::off_worker(move || Workflow::parse(&text))
            .await?
            .map_err(|e| invalid(e.to_string()))?;
        if let Some(why) = self.engine.scripts_refused() {
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
        let job = self.engine.store().insert_job(submission).await?;
        self.engine.wake();
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
                self.engine.kill(id);
            }
            tracing::info!(job = %id, action = action.as_str(), state = next.as_str(), "job action");
            self.engine.wake();
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
        self.engine.wake();
        self.view(id, reader).await
    }

    /// The folder of one attempt of a task.
    fn attempt_dir(&self, job: &str, task: &str, attempt: u32) -> PathBuf {
        self.engine.attempt_dir(job, task, attempt)
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
    /// (`_models` is the registry the engine's store already holds.)
    pub async fn retrain(
        &self,
        model: &str,
        owner: &str,
        origin: &str,
        variables: BTreeMap<String, String>,
    ) -> Result<JobRecord, ServiceError> {
        let job = self
            .engine
            .store()
            .insert_retraining(model, owner, origin, variables)
            .await?;
        self.engine.wake();
        Ok(job)
    }
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
// What the engine is given: the store, the registry, the metrics.

/// The engine's store: jobs and tasks in the database, and the registry for a retraining's
/// model.
pub struct EngineStore {
    store: SqlStore,
    models: Arc<ModelService>,
    /// Where tasks run when their workflow does not say (`scheduler.executor`).
    executor: ExecutorKind,
    /// Most jobs not over at once (`scheduler.max_active_jobs`).
    max_active_jobs: u64,
}

impl EngineStore {
    /// Store a submission as a pending job, unless as many jobs as `scheduler.max_active_jobs`
    /// are not over yet. The count and the insert are not one statement: submits at the same
    /// instant (on this replica or others) may each pass the count and go over it together.
    async fn insert_job(&self, submission: Submission) -> Result<JobRecord, ServiceError> {
        let active = self.store.active_jobs().await?;
        if active >= self.max_active_jobs {
            return Err(ServiceError::new(
                ErrorKind::QueueFull,
                format!(
                    "{active} jobs are not over yet, as many as scheduler.max_active_jobs allows; \
                     submit again once some have ended, or cancel some"
                ),
            )
            .retry_after(JOB_QUEUE_RETRY_SECS));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (job, tasks) =
            submission
                .into_job(id, now_ms(), self.executor)
                .map_err(|e| match e {
                    SubmitError::Invalid(e) => invalid(e.to_string()),
                    SubmitError::Encode(e) => ServiceError::new(ErrorKind::Internal, e.to_string()),
                })?;
        self.store.insert_job(&job, &tasks).await?;
        tracing::info!(job = %job.id, workflow = %job.name, origin = %job.origin, "job submitted");
        Ok(job)
    }

    /// Store the retraining workflow a model names as a pending job, with the model's name and
    /// current version.
    async fn insert_retraining(
        &self,
        model: &str,
        owner: &str,
        origin: &str,
        variables: BTreeMap<String, String>,
    ) -> Result<JobRecord, ServiceError> {
        let record = self.models.model(model).await?;
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
        self.insert_job(Submission {
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

impl JobStore for EngineStore {
    type Error = ServiceError;

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, ServiceError> {
        Ok(self.store.job(id).await?)
    }

    async fn tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, ServiceError> {
        Ok(self.store.tasks(job_id).await?)
    }

    async fn runnable_jobs(&self) -> Result<Vec<JobRecord>, ServiceError> {
        Ok(self.store.runnable_jobs().await?)
    }

    async fn runnable_tasks(&self) -> Result<Vec<TaskRecord>, ServiceError> {
        Ok(self.store.runnable_tasks().await?)
    }

    async fn claim_task(
        &self,
        task: &TaskRecord,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, ServiceError> {
        Ok(self.store.claim_task(task, owner, lease_until).await?)
    }

    async fn set_native_id(
        &self,
        job_id: &str,
        task: &str,
        attempt: u32,
        native_id: &str,
    ) -> Result<(), ServiceError> {
        Ok(self
            .store
            .set_native_id(job_id, task, attempt, native_id)
            .await?)
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> Result<(), ServiceError> {
        Ok(self.store.renew_leases(owner, until).await?)
    }

    async fn expired_tasks(&self, now: i64) -> Result<Vec<TaskRecord>, ServiceError> {
        Ok(self.store.expired_tasks(now).await?)
    }

    async fn end_attempt(
        &self,
        task: &TaskRecord,
        owner: Option<&str>,
        end: engine::AttemptEnd,
    ) -> Result<Option<JobRecord>, ServiceError> {
        Ok(self.store.end_attempt(task, owner, end).await?)
    }

    async fn drifted_models(&self) -> Result<Vec<(String, i64)>, ServiceError> {
        Ok(self.store.drifted_retrainable_models().await?)
    }

    async fn active_job_for_model(
        &self,
        model: &str,
        origin: &str,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self.store.active_job_for_model(model, origin).await?)
    }

    async fn latest_job_for_model(
        &self,
        model: &str,
        origin: Option<&str>,
    ) -> Result<Option<JobRecord>, ServiceError> {
        if let Some(origin) = origin {
            return Ok(self.store.latest_job_from(model, origin).await?);
        }
        let (jobs, _) = self
            .store
            .jobs(&JobFilter {
                model: Some(model.to_owned()),
                limit: 1,
                ..JobFilter::default()
            })
            .await?;
        Ok(jobs.into_iter().next())
    }

    async fn submit_drift_retraining(&self, model: &str) -> Result<JobRecord, ServiceError> {
        self.insert_retraining(model, "maas", DRIFT_ORIGIN, BTreeMap::new())
            .await
    }
}

/// The deploy task's way into the registry.
pub struct RegistryDeployer {
    models: Arc<ModelService>,
}

impl ModelDeployer for RegistryDeployer {
    fn check_name(&self, model: &str) -> Result<(), String> {
        crate::services::models::validate_model_name(model).map_err(|e| e.message)
    }

    async fn serving_version(&self, model: &str) -> Option<u64> {
        self.models
            .model(model)
            .await
            .ok()
            .and_then(|m| m.default_version())
    }

    async fn version_file(&self, model: &str, version: u64) -> Result<Vec<u8>, VersionFileError> {
        let path = self.models.artifacts().path(model, version).map_err(|e| {
            VersionFileError::Missing {
                version,
                error: e.to_string(),
            }
        })?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| VersionFileError::Unreadable {
                version,
                error: e.to_string(),
            })
    }

    async fn deploy(&self, version: NewModelVersion) -> Result<DeployedVersion, DeployError> {
        deploy_version(&self.models, version).await
    }

    async fn record_rejection(
        &self,
        model: &str,
        version: u64,
        details: Value,
    ) -> Result<(), String> {
        self.models
            .store()
            .record(
                crate::store::audit::Change::new("retrain_rejected")
                    .model(model)
                    .version(version)
                    .details(details),
            )
            .await
            .map_err(|e| e.to_string())
    }
}

/// The one place a scheduler's deploy meets the registry's deploy operation. As every deploy:
/// the new version replaces the deployed ones (they stay kept, one rollback away) unless the
/// task says `append: true`; what the task leaves out (serving options, drift settings,
/// names) is carried from the version it replaces.
async fn deploy_version(
    models: &ModelService,
    version: NewModelVersion,
) -> Result<DeployedVersion, DeployError> {
    let stage_failed = |e: std::io::Error| DeployError::Stage(e.to_string());
    let mut staged = models.artifacts().stage().map_err(stage_failed)?;
    staged.write(&version.onnx).map_err(stage_failed)?;
    let request = crate::services::models::DeployRequest {
        model: version.model,
        source: crate::services::models::DeploySource::Upload(Box::new(
            crate::services::models::Upload {
                staged,
                version: None,
                class_names: version.class_names,
                feature_names: version.feature_names,
                source: version.source,
                drift: crate::services::baseline::BaselineUpload {
                    training_csv: version.training_csv,
                    baseline_size: version.baseline_size,
                    label_column: version.label_column,
                    ..Default::default()
                },
                serving: Default::default(),
                log_predictions: None,
                client: None,
            },
        )),
        placement: crate::services::models::Placement::from_append(Some(version.append)),
    };
    let record = models
        .deploy(request)
        .await
        .map_err(|e| DeployError::Refused(e.message))?;
    Ok(DeployedVersion {
        model: record.model,
        version: record.version,
    })
}

impl TaskMetrics for Metrics {
    fn task_ended(&self, kind: &str, outcome: &str, seconds: f64) {
        self.observe_task(kind, outcome, seconds);
    }
}
