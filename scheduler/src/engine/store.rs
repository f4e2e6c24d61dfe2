//! What the engine keeps in a store, and what it asks of it: the job and task records, how an
//! attempt ends, and the [`JobStore`] trait the gateway implements on its database. Every write
//! the trait asks for is one guarded change, so two workers never both claim a task and a
//! worker whose lease was reaped cannot finish a task twice: its `attempt` and `lease_owner`
//! no longer match.

use std::collections::BTreeMap;
use std::future::Future;

use crate::state::{JobState, TaskState};
use crate::workflow::{ExecutorKind, Priority, Workflow, WorkflowError};

/// Variables every job gets, whether its workflow declares them or not.
pub const SYSTEM_VARIABLES: &[&str] = &["MODEL_NAME", "MODEL_VERSION"];

/// The origin of jobs the engine submits when a model drifted.
pub const DRIFT_ORIGIN: &str = "drift";

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub workflow_version: Option<u64>,
    /// The workflow, as JSON.
    pub definition: String,
    /// The job's variables, as a JSON object.
    pub variables: String,
    /// [`Priority::rank`]: higher runs first.
    pub priority: i64,
    pub owner: String,
    pub origin: String,
    pub model: Option<String>,
    pub state: JobState,
    pub reason: Option<String>,
    pub submitted_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

/// A task of a job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub job_id: String,
    pub name: String,
    pub position: i64,
    pub state: TaskState,
    /// Attempts started so far: the one running, when it runs.
    pub attempt: u32,
    pub max_attempts: u32,
    pub executor: String,
    pub native_id: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    /// A retried task waits until then.
    pub not_before: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Exported variables, as a JSON object.
    pub variables: String,
    /// Metrics, as a JSON object.
    pub metrics: String,
    /// Every ended attempt, as a JSON array.
    pub history: String,
}

/// A task to create with its job.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub name: String,
    pub max_attempts: u32,
    pub executor: String,
}

/// How an attempt ended, as the store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnd {
    pub state: TaskState,
    pub error: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// When to try again (the task goes back to `pending`), if it will be retried.
    pub retry_at: Option<i64>,
    /// The exit status of the task's own process (a script's), when it exited by itself.
    pub exit_code: Option<i32>,
}

/// A submit: the workflow and how to run it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub workflow: Workflow,
    pub workflow_version: Option<u64>,
    pub variables: BTreeMap<String, String>,
    pub priority: Option<Priority>,
    pub owner: String,
    pub origin: String,
    pub model: Option<String>,
}

/// Why a submission cannot become a job.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Its variables do not fit its workflow.
    #[error(transparent)]
    Invalid(#[from] WorkflowError),
    #[error(transparent)]
    Encode(#[from] serde_json::Error),
}

impl Submission {
    /// The pending job and its tasks, to store in one go. `default_executor` runs the tasks
    /// whose workflow names none.
    pub fn into_job(
        self,
        id: String,
        now: i64,
        default_executor: ExecutorKind,
    ) -> Result<(JobRecord, Vec<NewTask>), SubmitError> {
        let workflow = self.workflow;
        let variables = workflow.resolve_variables(&self.variables, SYSTEM_VARIABLES)?;
        let definition = serde_json::to_string(&workflow)?;
        let job = JobRecord {
            id,
            name: workflow.name.clone(),
            workflow_version: self.workflow_version,
            definition,
            variables: serde_json::to_string(&variables).unwrap_or_else(|_| "{}".into()),
            priority: self.priority.unwrap_or(workflow.priority).rank(),
            owner: self.owner,
            origin: self.origin,
            model: self.model,
            state: JobState::Pending,
            reason: None,
            submitted_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
        };
        let tasks = workflow
            .tasks
            .iter()
            .map(|t| NewTask {
                name: t.name.clone(),
                max_attempts: t.retries.max_attempts,
                executor: workflow
                    .executor_of(t, default_executor)
                    .as_str()
                    .to_owned(),
            })
            .collect();
        Ok((job, tasks))
    }
}

/// What the engine's loops need from the database.
///
/// Methods return `Send` futures so that the engine can run them on any worker thread; an
/// implementation writes them as plain `async fn`.
pub trait JobStore: Send + Sync + 'static {
    type Error: std::fmt::Display + Send + Sync + 'static;

    fn job(&self, id: &str) -> impl Future<Output = Result<Option<JobRecord>, Self::Error>> + Send;

    /// The tasks of a job, in workflow order.
    fn tasks(
        &self,
        job_id: &str,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, Self::Error>> + Send;

    /// Jobs that may start tasks (pending, running), oldest first.
    fn runnable_jobs(&self) -> impl Future<Output = Result<Vec<JobRecord>, Self::Error>> + Send;

    /// The tasks of every job that may start tasks.
    fn runnable_tasks(&self) -> impl Future<Output = Result<Vec<TaskRecord>, Self::Error>> + Send;

    /// Claim a pending task for one attempt (its `attempt` as read, plus one), leased to `owner`
    /// until `lease_until`; moves a pending job to running. False when another worker won it or
    /// the job can no longer start tasks (paused, canceled, killed meanwhile).
    fn claim_task(
        &self,
        task: &TaskRecord,
        owner: &str,
        lease_until: i64,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// Record the executor's id of a running attempt (pid, Slurm job id).
    fn set_native_id(
        &self,
        job_id: &str,
        task: &str,
        attempt: u32,
        native_id: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Renew the leases of the tasks `owner` runs.
    fn renew_leases(
        &self,
        owner: &str,
        until: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Running tasks whose lease ran out before `now`: their worker is gone.
    fn expired_tasks(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<TaskRecord>, Self::Error>> + Send;

    /// End the attempt `task.attempt` if it is still running (and still `owner`'s, when given),
    /// and settle the job (`state::settle`) in the same change. The job after the change, or
    /// `None` when the attempt had already been ended by someone else (reaped, a late worker):
    /// then nothing changes.
    fn end_attempt(
        &self,
        task: &TaskRecord,
        owner: Option<&str>,
        end: AttemptEnd,
    ) -> impl Future<Output = Result<Option<JobRecord>, Self::Error>> + Send;

    /// Models that name a retraining workflow and have drift events, with their newest event's
    /// time.
    fn drifted_models(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, Self::Error>> + Send;

    /// A job of the model from `origin` that is not over yet, if any.
    fn active_job_for_model(
        &self,
        model: &str,
        origin: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// The model's most recently submitted job, of `origin` when given, else of any origin.
    fn latest_job_for_model(
        &self,
        model: &str,
        origin: Option<&str>,
    ) -> impl Future<Output = Result<Option<JobRecord>, Self::Error>> + Send;

    /// Submit the model's retraining workflow for its drift ([`DRIFT_ORIGIN`], owned by `maas`),
    /// with `MODEL_NAME` and `MODEL_VERSION` (the serving version) set.
    fn submit_drift_retraining(
        &self,
        model: &str,
    ) -> impl Future<Output = Result<JobRecord, Self::Error>> + Send;
}
