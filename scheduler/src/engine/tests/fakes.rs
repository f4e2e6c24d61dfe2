//! In-memory stand-ins for what the gateway gives the engine: a job store that keeps the SQL
//! store's guards (claim only a pending task of a runnable job, end only the running attempt
//! of the right number and owner, settle the job in the same step), an executor whose attempts
//! end when a test says so, a Slurm cluster whose jobs a test moves, a deployer, and a clock
//! moved by hand.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::engine::*;
use crate::slurm::{BatchJob, SlurmError, SlurmState};
use crate::state::{self, JobState, TaskState};
use crate::workflow::{ExecutorKind, Workflow};

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }

    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct StoreState {
    jobs: BTreeMap<String, JobRecord>,
    /// By job, in position order.
    tasks: BTreeMap<String, Vec<TaskRecord>>,
    /// Models with drift events: the newest event's time.
    drift: BTreeMap<String, i64>,
    /// The retraining workflow of each model, and the version it serves.
    retraining: BTreeMap<String, (Workflow, Option<u64>)>,
    next_id: u64,
}

/// Jobs and tasks in memory; clones share them (two engines, two replicas).
#[derive(Clone)]
pub struct FakeStore {
    state: Arc<Mutex<StoreState>>,
    clock: Arc<ManualClock>,
}

/// The fake's one error: a job store that cannot be reached is not simulated.
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl FakeStore {
    pub fn new(clock: Arc<ManualClock>) -> FakeStore {
        FakeStore {
            state: Arc::new(Mutex::new(StoreState::default())),
            clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Store a submission as the API does; its id is `job-N`.
    pub fn submit(&self, submission: Submission, executor: ExecutorKind) -> JobRecord {
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = format!("job-{}", state.next_id);
        let (job, tasks) = submission
            .into_job(id, self.now(), executor)
            .expect("a valid submission");
        let records = tasks
            .iter()
            .enumerate()
            .map(|(position, t)| TaskRecord {
                job_id: job.id.clone(),
                name: t.name.clone(),
                position: position as i64,
                state: TaskState::Pending,
                attempt: 0,
                max_attempts: t.max_attempts,
                executor: t.executor.clone(),
                native_id: None,
                lease_owner: None,
                lease_until: None,
                not_before: 0,
                started_at: None,
                finished_at: None,
                error: None,
                variables: "{}".into(),
                metrics: "{}".into(),
                history: "[]".into(),
            })
            .collect();
        state.tasks.insert(job.id.clone(), records);
        state.jobs.insert(job.id.clone(), job.clone());
        job
    }

    pub fn job_now(&self, id: &str) -> JobRecord {
        self.state.lock().jobs[id].clone()
    }

    pub fn task_now(&self, job: &str, task: &str) -> TaskRecord {
        self.state.lock().tasks[job]
            .iter()
            .find(|t| t.name == task)
            .cloned()
            .expect("a task of the job")
    }

    /// Every job, oldest first.
    pub fn all_jobs(&self) -> Vec<JobRecord> {
        let mut jobs: Vec<JobRecord> = self.state.lock().jobs.values().cloned().collect();
        jobs.sort_by_key(|j| (j.submitted_at, j.id.clone()));
        jobs
    }

    /// An operator's action, as the API applies it: the job's new state, and its pending
    /// tasks skipped when it ends.
    pub fn act(&self, id: &str, action: crate::state::JobAction) -> JobState {
        let mut state = self.state.lock();
        let now = self.clock.now_ms();
        let job = state.jobs.get_mut(id).expect("a job");
        let next = action.apply(job.state).expect("an allowed action");
        job.state = next;
        job.reason = Some(format!("{} by tester", action.as_str()));
        if next.is_terminal() {
            job.finished_at = Some(now);
            for task in state.tasks.get_mut(id).into_iter().flatten() {
                if task.state == TaskState::Pending {
                    task.state = TaskState::Skipped;
                    task.finished_at = Some(now);
                }
            }
        }
        next
    }

    /// Another worker's claim, straight in the store.
    pub fn claim_as(&self, task: &TaskRecord, owner: &str, lease_until: i64, native_id: &str) {
        let mut state = self.state.lock();
        let now = self.clock.now_ms();
        let job = state.jobs.get_mut(&task.job_id).expect("a job");
        job.state = JobState::Running;
        let record = state
            .tasks
            .get_mut(&task.job_id)
            .and_then(|tasks| tasks.iter_mut().find(|t| t.name == task.name))
            .expect("a task");
        record.state = TaskState::Running;
        record.attempt += 1;
        record.lease_owner = Some(owner.to_owned());
        record.lease_until = Some(lease_until);
        record.started_at = Some(now);
        record.native_id = Some(native_id.to_owned());
    }

    pub fn add_drift(&self, model: &str, at: i64) {
        self.state.lock().drift.insert(model.to_owned(), at);
    }

    pub fn set_retraining(&self, model: &str, workflow: Workflow, serving: Option<u64>) {
        self.state
            .lock()
            .retraining
            .insert(model.to_owned(), (workflow, serving));
    }

    /// The attempts a task's history records.
    pub fn history(&self, job: &str, task: &str) -> Vec<Value> {
        serde_json::from_str(&self.task_now(job, task).history).unwrap_or_default()
    }
}

impl JobStore for FakeStore {
    type Error = Never;

    async fn job(&self, id: &str) -> Result<Option<JobRecord>, Never> {
        Ok(self.state.lock().jobs.get(id).cloned())
    }

    async fn tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, Never> {
        Ok(self
            .state
            .lock()
            .tasks
            .get(job_id)
            .cloned()
            .unwrap_or_default())
    }

    async fn runnable_jobs(&self) -> Result<Vec<JobRecord>, Never> {
        Ok(self
            .all_jobs()
            .into_iter()
            .filter(|j| j.state.starts_tasks())
            .collect())
    }

    async fn runnable_tasks(&self) -> Result<Vec<TaskRecord>, Never> {
        let state = self.state.lock();
        Ok(state
            .jobs
            .values()
            .filter(|j| j.state.starts_tasks())
            .flat_map(|j| state.tasks[&j.id].clone())
            .collect())
    }

    async fn claim_task(
        &self,
        task: &TaskRecord,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, Never> {
        let now = self.now();
        let mut state = self.state.lock();
        let StoreState { jobs, tasks, .. } = &mut *state;
        let Some(job) = jobs
            .get_mut(&task.job_id)
            .filter(|j| j.state.starts_tasks())
        else {
            return Ok(false);
        };
        let Some(record) = tasks
            .get_mut(&task.job_id)
            .and_then(|ts| ts.iter_mut().find(|t| t.name == task.name))
            .filter(|t| t.state == TaskState::Pending && t.attempt == task.attempt)
        else {
            return Ok(false);
        };
        job.state = JobState::Running;
        job.started_at.get_or_insert(now);
        record.state = TaskState::Running;
        record.attempt += 1;
        record.lease_owner = Some(owner.to_owned());
        record.lease_until = Some(lease_until);
        record.started_at = Some(now);
        record.finished_at = None;
        record.native_id = None;
        record.error = None;
        Ok(true)
    }

    async fn set_native_id(
        &self,
        job_id: &str,
        task: &str,
        attempt: u32,
        native_id: &str,
    ) -> Result<(), Never> {
        let mut state = self.state.lock();
        if let Some(record) = state.tasks.get_mut(job_id).and_then(|ts| {
            ts.iter_mut()
                .find(|t| t.name == task && t.attempt == attempt)
        }) {
            record.native_id = Some(native_id.to_owned());
        }
        Ok(())
    }

    async fn renew_leases(&self, owner: &str, until: i64) -> Result<(), Never> {
        for task in self.state.lock().tasks.values_mut().flatten() {
            if task.state == TaskState::Running && task.lease_owner.as_deref() == Some(owner) {
                task.lease_until = Some(until);
            }
        }
        Ok(())
    }

    async fn expired_tasks(&self, now: i64) -> Result<Vec<TaskRecord>, Never> {
        Ok(self
            .state
            .lock()
            .tasks
            .values()
            .flatten()
            .filter(|t| t.state == TaskState::Running && t.lease_until.is_some_and(|l| l < now))
            .cloned()
            .collect())
    }

    async fn end_attempt(
        &self,
        task: &TaskRecord,
        owner: Option<&str>,
        end: AttemptEnd,
    ) -> Result<Option<JobRecord>, Never> {
        let now = self.now();
        let mut state = self.state.lock();
        let StoreState { jobs, tasks, .. } = &mut *state;
        let Some(record) = tasks.get_mut(&task.job_id).and_then(|ts| {
            ts.iter_mut().find(|t| {
                t.name == task.name
                    && t.state == TaskState::Running
                    && t.attempt == task.attempt
                    && owner.is_none_or(|o| t.lease_owner.as_deref() == Some(o))
            })
        }) else {
            return Ok(None);
        };
        let mut history: Vec<Value> = serde_json::from_str(&record.history).unwrap_or_default();
        history.push(serde_json::json!({
            "attempt": record.attempt,
            "executor": record.executor,
            "native_id": record.native_id,
            "started_at": record.started_at,
            "finished_at": now,
            "state": if end.retry_at.is_some() { "failed" } else { end.state.as_str() },
            "error": end.error,
        }));
        record.history = Value::Array(history).to_string();
        match end.retry_at {
            Some(at) => {
                record.state = TaskState::Pending;
                record.not_before = at;
            }
            None => record.state = end.state,
        }
        record.finished_at = Some(now);
        record.error = end.error;
        record.variables = serde_json::to_string(&end.variables).unwrap_or_default();
        record.metrics = Value::Object(end.metrics).to_string();
        record.lease_owner = None;
        record.lease_until = None;
        // Settle the job, as the SQL store does in the same transaction.
        let Some(job) = jobs.get_mut(&task.job_id) else {
            return Ok(None);
        };
        let job_tasks = tasks.get_mut(&task.job_id).expect("the job's tasks");
        let on_error = serde_json::from_str::<Workflow>(&job.definition)
            .map(|w| w.on_task_error)
            .unwrap_or_default();
        let view: Vec<(&str, TaskState)> = job_tasks
            .iter()
            .map(|t| (t.name.as_str(), t.state))
            .collect();
        let settled = state::settle(job.state, on_error, &view);
        for task in job_tasks.iter_mut() {
            if settled.skip.contains(&task.name) && task.state == TaskState::Pending {
                task.state = TaskState::Skipped;
                task.finished_at = Some(now);
            }
        }
        if settled.job != job.state {
            job.state = settled.job;
            if settled.reason.is_some() {
                job.reason = settled.reason;
            }
            if settled.job.is_terminal() {
                job.finished_at = Some(now);
            }
        }
        Ok(Some(job.clone()))
    }

    async fn drifted_models(&self) -> Result<Vec<(String, i64)>, Never> {
        let state = self.state.lock();
        Ok(state
            .drift
            .iter()
            .filter(|(model, _)| state.retraining.contains_key(*model))
            .map(|(m, at)| (m.clone(), *at))
            .collect())
    }

    async fn active_job_for_model(
        &self,
        model: &str,
        origin: &str,
    ) -> Result<Option<String>, Never> {
        Ok(self
            .state
            .lock()
            .jobs
            .values()
            .find(|j| {
                j.model.as_deref() == Some(model) && j.origin == origin && !j.state.is_terminal()
            })
            .map(|j| j.id.clone()))
    }

    async fn latest_job_for_model(
        &self,
        model: &str,
        origin: Option<&str>,
    ) -> Result<Option<JobRecord>, Never> {
        Ok(self
            .all_jobs()
            .into_iter()
            .rev()
            .find(|j| j.model.as_deref() == Some(model) && origin.is_none_or(|o| j.origin == o)))
    }

    async fn submit_drift_retraining(&self, model: &str) -> Result<JobRecord, Never> {
        let (workflow, serving) = self.state.lock().retraining[model].clone();
        let variables = BTreeMap::from([
            ("MODEL_NAME".to_owned(), model.to_owned()),
            (
                "MODEL_VERSION".to_owned(),
                serving.map(|v| v.to_string()).unwrap_or_default(),
            ),
        ]);
        Ok(self.submit(
            Submission {
                workflow,
                workflow_version: Some(1),
                variables,
                priority: None,
                owner: "maas".into(),
                origin: DRIFT_ORIGIN.into(),
                model: Some(model.to_owned()),
            },
            ExecutorKind::Local,
        ))
    }
}

/// An attempt the fake executor runs: it ends when a test says so, or when it is killed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub job: String,
    pub task: String,
    pub attempt: u32,
}

pub fn key(job: &str, task: &str, attempt: u32) -> AttemptKey {
    AttemptKey {
        job: job.to_owned(),
        task: task.to_owned(),
        attempt,
    }
}

#[derive(Default)]
struct ExecutorState {
    /// Every attempt started, in order.
    started: Vec<AttemptKey>,
    waiting: HashMap<AttemptKey, oneshot::Sender<Outcome>>,
    orphans: Vec<AttemptKey>,
}

/// Attempts that run until a test ends them.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    state: Arc<Mutex<ExecutorState>>,
}

impl FakeExecutor {
    pub fn started(&self) -> Vec<AttemptKey> {
        self.state.lock().started.clone()
    }

    /// Attempts started and not ended.
    pub fn running(&self) -> Vec<AttemptKey> {
        let mut keys: Vec<AttemptKey> = self.state.lock().waiting.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// End a running attempt with `outcome`.
    pub fn end(&self, key: &AttemptKey, outcome: Outcome) {
        let sender = self.state.lock().waiting.remove(key);
        sender
            .unwrap_or_else(|| panic!("{key:?} is not running"))
            .send(outcome)
            .expect("the attempt waits");
    }

    pub fn orphans(&self) -> Vec<AttemptKey> {
        self.state.lock().orphans.clone()
    }
}

impl TaskExecutor for FakeExecutor {
    async fn run<C: AttemptControl>(&self, attempt: Attempt<'_>, control: &C) -> Outcome {
        let key = key(&attempt.job.id, &attempt.task.name, attempt.task.attempt);
        let (send, ended) = oneshot::channel();
        {
            let mut state = self.state.lock();
            state.started.push(key.clone());
            state.waiting.insert(key.clone(), send);
        }
        control
            .started(&format!("fake-{}-{}", key.task, key.attempt))
            .await;
        tokio::select! {
            outcome = ended => outcome.unwrap_or_else(|_| Outcome::failed("dropped")),
            _ = control.killed() => {
                self.state.lock().waiting.remove(&key);
                Outcome::killed()
            }
        }
    }

    async fn end_orphan(&self, task: &TaskRecord, _dir: &Path) {
        self.state
            .lock()
            .orphans
            .push(key(&task.job_id, &task.name, task.attempt));
    }
}

#[derive(Debug, Default)]
struct SlurmJobs {
    states: BTreeMap<String, SlurmState>,
    /// `hold ID`, `release ID`, `cancel ID`, in order.
    calls: Vec<String>,
    submitted: Vec<BatchJob>,
}

/// A Slurm cluster whose jobs move when a test moves them (and on hold and release).
#[derive(Clone, Default)]
pub struct FakeSlurm {
    jobs: Arc<Mutex<SlurmJobs>>,
}

impl FakeSlurm {
    pub fn set_state(&self, id: &str, state: SlurmState) {
        self.jobs.lock().states.insert(id.to_owned(), state);
    }

    pub fn state_of(&self, id: &str) -> Option<SlurmState> {
        self.jobs.lock().states.get(id).cloned()
    }

    pub fn calls(&self) -> Vec<String> {
        self.jobs.lock().calls.clone()
    }

    pub fn submitted(&self) -> Vec<BatchJob> {
        self.jobs.lock().submitted.clone()
    }
}

impl SlurmControl for FakeSlurm {
    async fn reachable(&self) -> bool {
        true
    }

    async fn submit(&self, job: BatchJob) -> Result<String, SlurmError> {
        let mut jobs = self.jobs.lock();
        let id = (100 + jobs.submitted.len()).to_string();
        jobs.submitted.push(job);
        jobs.states.insert(id.clone(), SlurmState::Pending);
        Ok(id)
    }

    async fn state(&self, job_id: &str, _workdir: &Path) -> Result<SlurmState, SlurmError> {
        self.jobs
            .lock()
            .states
            .get(job_id)
            .cloned()
            .ok_or_else(|| SlurmError::JobNotFound {
                job_id: job_id.to_owned(),
            })
    }

    async fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        let mut jobs = self.jobs.lock();
        jobs.calls.push(format!("cancel {job_id}"));
        jobs.states.insert(job_id.to_owned(), SlurmState::Cancelled);
        Ok(())
    }

    async fn hold(&self, job_id: &str) -> Result<(), SlurmError> {
        let mut jobs = self.jobs.lock();
        jobs.calls.push(format!("hold {job_id}"));
        jobs.states.insert(job_id.to_owned(), SlurmState::Held);
        Ok(())
    }

    async fn release(&self, job_id: &str) -> Result<(), SlurmError> {
        let mut jobs = self.jobs.lock();
        jobs.calls.push(format!("release {job_id}"));
        jobs.states.insert(job_id.to_owned(), SlurmState::Pending);
        Ok(())
    }
}

#[derive(Default)]
struct Registry {
    /// Versions by model: (version, ONNX bytes).
    versions: BTreeMap<String, Vec<(u64, Vec<u8>)>>,
    deployed: Vec<NewModelVersion>,
    rejections: Vec<(String, u64, Value)>,
}

/// A model registry in memory.
#[derive(Clone, Default)]
pub struct FakeDeployer {
    registry: Arc<Mutex<Registry>>,
}

impl FakeDeployer {
    pub fn add_version(&self, model: &str, onnx: Vec<u8>) -> u64 {
        let mut registry = self.registry.lock();
        let versions = registry.versions.entry(model.to_owned()).or_default();
        let version = versions.len() as u64 + 1;
        versions.push((version, onnx));
        version
    }

    pub fn deployed(&self) -> Vec<NewModelVersion> {
        self.registry.lock().deployed.clone()
    }

    pub fn rejections(&self) -> Vec<(String, u64, Value)> {
        self.registry.lock().rejections.clone()
    }
}

impl ModelDeployer for FakeDeployer {
    fn check_name(&self, model: &str) -> Result<(), String> {
        if model.contains('/') {
            return Err(format!("model name '{model}' is not allowed"));
        }
        Ok(())
    }

    async fn serving_version(&self, model: &str) -> Option<u64> {
        self.registry
            .lock()
            .versions
            .get(model)
            .and_then(|v| v.last())
            .map(|(v, _)| *v)
    }

    async fn version_file(&self, model: &str, version: u64) -> Result<Vec<u8>, VersionFileError> {
        self.registry
            .lock()
            .versions
            .get(model)
            .and_then(|vs| vs.iter().find(|(v, _)| *v == version))
            .map(|(_, bytes)| bytes.clone())
            .ok_or(VersionFileError::Missing {
                version,
                error: "no such file".into(),
            })
    }

    async fn deploy(&self, version: NewModelVersion) -> Result<DeployedVersion, DeployError> {
        let number = self.add_version(&version.model, version.onnx.clone());
        let model = version.model.clone();
        self.registry.lock().deployed.push(version);
        Ok(DeployedVersion {
            model,
            version: number,
        })
    }

    async fn record_rejection(
        &self,
        model: &str,
        version: u64,
        details: Value,
    ) -> Result<(), String> {
        self.registry
            .lock()
            .rejections
            .push((model.to_owned(), version, details));
        Ok(())
    }
}

/// A task folder tree and an open data folder for one test.
pub struct Folders {
    pub root: tempfile::TempDir,
}

impl Folders {
    pub fn new() -> Folders {
        Folders {
            root: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    pub fn data(&self) -> PathBuf {
        let dir = self.root.path().join("data");
        std::fs::create_dir_all(&dir).expect("the data folder");
        dir.canonicalize().expect("a real path")
    }

    pub fn host(&self, slots: u32) -> TaskHost {
        let work_dir = self.root.path().join("jobs");
        std::fs::create_dir_all(&work_dir).expect("the job folder");
        TaskHost {
            work_dir: work_dir.canonicalize().expect("a real path"),
            confinement: Ok(crate::sandbox::Confinement::None),
            task_env: BTreeMap::new(),
            closed: Vec::new(),
            data_roots: vec![self.data()],
            slots,
            program: PathBuf::from("/bin/false"),
        }
    }
}
