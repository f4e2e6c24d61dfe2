//! Workflows, jobs and tasks in the store. Every transition is one guarded statement (or one
//! transaction), so two replicas never both claim a task and a worker whose lease was reaped
//! cannot finish a task twice: its `attempt` and `lease_owner` no longer match. The records are
//! the scheduler engine's (`maas_scheduler::engine`), which reaches these methods through its
//! `JobStore` trait (implemented in `services::jobs`).

use std::collections::BTreeMap;

pub use maas_scheduler::engine::{AttemptEnd, JobRecord, NewTask, TaskRecord};
use maas_scheduler::{JobState, TaskState};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, to_i64, SqlStore, StoreError};
use crate::store::audit::{self, Bound, Change};

/// A saved workflow version.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub name: String,
    pub version: u64,
    pub description: String,
    pub definition: String,
    pub source: String,
    pub created_by: String,
    pub created_at: i64,
}

/// Which jobs a listing, summary or export covers.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub name: Option<String>,
    pub owner: Option<String>,
    pub state: Option<JobState>,
    pub model: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: i64,
    pub offset: i64,
}

const JOB_COLUMNS: &str = "id, name, workflow_version, definition, variables, priority, owner, \
    origin, model, state, reason, submitted_at, started_at, finished_at, updated_at";
const TASK_COLUMNS: &str = "job_id, name, position, state, attempt, max_attempts, executor, \
    native_id, lease_owner, lease_until, not_before, started_at, finished_at, error, variables, \
    metrics, history";

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn job_from_row(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        workflow_version: row.try_get::<Option<i64>, _>("workflow_version")?.map(u),
        definition: row.try_get("definition")?,
        variables: row.try_get("variables")?,
        priority: row.try_get("priority")?,
        owner: row.try_get("owner")?,
        origin: row.try_get("origin")?,
        model: row.try_get("model")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state '{state}'")))?,
        reason: row.try_get("reason")?,
        submitted_at: row.try_get("submitted_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn task_from_row(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(TaskRecord {
        job_id: row.try_get("job_id")?,
        name: row.try_get("name")?,
        position: row.try_get("position")?,
        state: TaskState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("task state '{state}'")))?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(0),
        max_attempts: u32::try_from(row.try_get::<i64, _>("max_attempts")?).unwrap_or(1),
        executor: row.try_get("executor")?,
        native_id: row.try_get("native_id")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_until: row.try_get("lease_until")?,
        not_before: row.try_get("not_before")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        variables: row.try_get("variables")?,
        metrics: row.try_get("metrics")?,
        history: row.try_get("history")?,
    })
}

fn workflow_from_row(row: &AnyRow) -> Result<WorkflowRecord, StoreError> {
    Ok(WorkflowRecord {
        name: row.try_get("name")?,
        version: u(row.try_get("version")?),
        description: row.try_get("description")?,
        definition: row.try_get("definition")?,
        source: row.try_get("source")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

/// `WHERE` clause and its values for a job filter.
fn job_where<'a>(filter: &'a JobFilter) -> (String, Vec<Bound<'a>>) {
    let mut clauses = Vec::new();
    let mut binds: Vec<Bound<'a>> = Vec::new();
    let mut add = |clause: &str, bind: Bound<'a>| {
        binds.push(bind);
        clauses.push(clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(name) = &filter.name {
        add("name = ?", Bound::Text(name));
    }
    if let Some(owner) = &filter.owner {
        add("owner = ?", Bound::Text(owner));
    }
    if let Some(state) = filter.state {
        add("state = ?", Bound::Text(state.as_str()));
    }
    if let Some(model) = &filter.model {
        add("model = ?", Bound::Text(model));
    }
    if let Some(since) = filter.since_ms {
        add("submitted_at >= ?", Bound::Int(since));
    }
    if let Some(until) = filter.until_ms {
        add("submitted_at < ?", Bound::Int(until));
    }
    let text = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    (text, binds)
}

impl SqlStore {
    /// Save a workflow under its name as the next version.
    pub async fn save_workflow(
        &self,
        name: &str,
        description: &str,
        definition: &str,
        source: &str,
        created_by: &str,
    ) -> Result<WorkflowRecord, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let last: Option<i64> =
            sqlx::query("SELECT MAX(version) AS v FROM workflows WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?
                .try_get("v")?;
        let version = last.unwrap_or(0) + 1;
        // The primary key refuses a concurrent save of the same number; the caller retries.
        sqlx::query(
            "INSERT INTO workflows (name, version, description, definition, source, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(version)
        .bind(description)
        .bind(definition)
        .bind(source)
        .bind(created_by)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("workflow_saved")
                .details(serde_json::json!({"workflow": name, "version": version})),
        )
        .await?;
        tx.commit().await?;
        Ok(WorkflowRecord {
            name: name.to_owned(),
            version: u(version),
            description: description.to_owned(),
            definition: definition.to_owned(),
            source: source.to_owned(),
            created_by: created_by.to_owned(),
            created_at: now,
        })
    }

    /// The latest version of every saved workflow, by name.
    pub async fn workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.* FROM workflows w JOIN (SELECT name, MAX(version) AS version FROM workflows GROUP BY name) l \
             ON w.name = l.name AND w.version = l.version ORDER BY w.name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(workflow_from_row).collect()
    }

    /// Every version of a saved workflow, oldest first.
    pub async fn workflow_versions(&self, name: &str) -> Result<Vec<WorkflowRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM workflows WHERE name = $1 ORDER BY version")
            .bind(name)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(workflow_from_row).collect()
    }

    /// A saved workflow: the given version, or the latest.
    pub async fn workflow(
        &self,
        name: &str,
        version: Option<u64>,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT * FROM workflows WHERE name = $1 AND version = $2")
                    .bind(name)
                    .bind(to_i64(v))
                    .fetch_optional(self.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1")
                    .bind(name)
                    .fetch_optional(self.pool())
                    .await?
            }
        };
        row.as_ref().map(workflow_from_row).transpose()
    }

    /// Store a submitted job with its tasks, all pending.
    pub async fn insert_job(&self, job: &JobRecord, tasks: &[NewTask]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&job.id)
        .bind(&job.name)
        .bind(job.workflow_version.map(to_i64))
        .bind(&job.definition)
        .bind(&job.variables)
        .bind(job.priority)
        .bind(&job.owner)
        .bind(&job.origin)
        .bind(&job.model)
        .bind(job.state.as_str())
        .bind(&job.reason)
        .bind(job.submitted_at)
        .bind(job.started_at)
        .bind(job.finished_at)
        .bind(job.updated_at)
        .execute(&mut *tx)
        .await?;
        for (position, task) in tasks.iter().enumerate() {
            sqlx::query(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, 'pending', 0, $4, $5, NULL, NULL, NULL, 0, NULL, NULL, NULL, '{{}}', '{{}}', '[]')"
            ))
            .bind(&job.id)
            .bind(&task.name)
            .bind(to_i64(position as u64))
            .bind(i64::from(task.max_attempts))
            .bind(&task.executor)
            .execute(&mut *tx)
            .await?;
        }
        audit::record(
            &mut *tx,
            self.audit(),
            job_change("job_submitted", job).details(serde_json::json!({
                "job": job.id, "workflow": job.name, "origin": job.origin, "owner": job.owner,
            })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs matching a filter, newest first, and how many match in all.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<(Vec<JobRecord>, u64), StoreError> {
        let (clause, binds) = job_where(filter);
        let total: i64 = audit::bind(
            sqlx::query(&format!("SELECT COUNT(*) AS n FROM jobs{clause}")),
            &binds,
        )
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        let n = binds.len();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{clause} ORDER BY submitted_at DESC, id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows = audit::bind(sqlx::query(&sql), &binds)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(self.pool())
            .await?;
        let jobs = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        Ok((jobs, u(total)))
    }

    pub async fn tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = $1 ORDER BY position"
        ))
        .bind(job_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Jobs that may start tasks (pending, running), oldest first.
    pub async fn runnable_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('pending', 'running') ORDER BY submitted_at"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// The tasks of every job that may start tasks, in one query (the scheduling tick's read).
    pub async fn runnable_tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let columns = TASK_COLUMNS
            .split(", ")
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.state IN ('pending', 'running') ORDER BY t.job_id, t.position"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Claim a pending task for one attempt: one guarded statement, so of two replicas only one
    /// wins. Moves a pending job to running.
    pub async fn claim_task(
        &self,
        task: &TaskRecord,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        // The job's row first, as every transaction here takes them (job, then tasks): two
        // transactions never wait on each other in opposite orders.
        let job_ok = sqlx::query(
            "UPDATE jobs SET state = CASE WHEN state = 'pending' THEN 'running' ELSE state END, \
             started_at = COALESCE(started_at, $1), updated_at = $1 \
             WHERE id = $2 AND state IN ('pending', 'running')",
        )
        .bind(now)
        .bind(&task.job_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !job_ok {
            // The job was paused, canceled or killed meanwhile: the task stays pending.
            return Ok(false);
        }
        let claimed = sqlx::query(
            "UPDATE tasks SET state = 'running', attempt = attempt + 1, lease_owner = $1, \
             lease_until = $2, started_at = $3, finished_at = NULL, native_id = NULL, error = NULL \
             WHERE job_id = $4 AND name = $5 AND state = 'pending' AND attempt = $6",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(&task.job_id)
        .bind(&task.name)
        .bind(i64::from(task.attempt))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            // Another worker won it; dropping the transaction undoes the job's update.
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Record the executor's id of a running attempt (pid, Slurm job id).
    pub async fn set_native_id(
        &self,
        job_id: &str,
        task: &str,
        attempt: u32,
        native_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET native_id = $1 WHERE job_id = $2 AND name = $3 AND attempt = $4",
        )
        .bind(native_id)
        .bind(job_id)
        .bind(task)
        .bind(i64::from(attempt))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Renew the leases of the tasks this process runs.
    pub async fn renew_leases(&self, owner: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET lease_until = $1 WHERE lease_owner = $2 AND state = 'running'",
        )
        .bind(until)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Running tasks whose lease ran out: their worker is gone.
    pub async fn expired_tasks(&self, now: i64) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'running' AND lease_until < $1"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// End an attempt, if this worker still holds it, and settle the job in the same
    /// transaction. Returns the job after the change, or `None` when the attempt was no longer
    /// this worker's (reaped, or killed and recorded by someone else).
    pub async fn end_attempt(
        &self,
        task: &TaskRecord,
        owner: Option<&str>,
        end: AttemptEnd,
    ) -> Result<Option<JobRecord>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        lock_job(&mut tx, &task.job_id).await?;
        let mut history: Vec<serde_json::Value> =
            serde_json::from_str(&task.history).unwrap_or_default();
        history.push(serde_json::json!({
            "attempt": task.attempt,
            "executor": task.executor,
            "native_id": task.native_id,
            "started_at": task.started_at,
            "finished_at": now,
            "state": if end.retry_at.is_some() { "failed" } else { end.state.as_str() },
            "exit_code": end.exit_code,
            "error": end.error,
        }));
        let (state, not_before) = match end.retry_at {
            Some(at) => (TaskState::Pending, at),
            None => (end.state, task.not_before),
        };
        let variables = serde_json::to_string(&end.variables).unwrap_or_else(|_| "{}".into());
        let metrics = serde_json::Value::Object(end.metrics).to_string();
        let guard = if owner.is_some() {
            "AND lease_owner = $11"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE tasks SET state = $1, finished_at = $2, error = $3, variables = $4, metrics = $5, \
             history = $6, not_before = $7, lease_owner = NULL, lease_until = NULL \
             WHERE job_id = $8 AND name = $9 AND state = 'running' AND attempt = $10 {guard}"
        );
        let mut update = sqlx::query(&sql)
            .bind(state.as_str())
            .bind(now)
            .bind(&end.error)
            .bind(variables)
            .bind(metrics)
            .bind(serde_json::Value::Array(history).to_string())
            .bind(not_before)
            .bind(&task.job_id)
            .bind(&task.name)
            .bind(i64::from(task.attempt));
        if let Some(owner) = owner {
            update = update.bind(owner);
        }
        let updated = update.execute(&mut *tx).await?.rows_affected();
        if updated != 1 {
            return Ok(None);
        }
        let job = settle_job(&mut tx, self, &task.job_id, now).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Apply an operator's action to a job (cancel, pause, resume, kill): the new state, and
    /// the pending tasks that will never run marked `skipped`.
    pub async fn set_job_state(
        &self,
        job: &JobRecord,
        next: JobState,
        action: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        let finished = next.is_terminal().then_some(now);
        let changed = sqlx::query(
            "UPDATE jobs SET state = $1, updated_at = $2, finished_at = COALESCE($3, finished_at), \
             reason = $4 WHERE id = $5 AND state = $6",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(finished)
        .bind(format!("{action} by {}", audit::current().actor.unwrap_or_else(|| "maas".into())))
        .bind(&job.id)
        .bind(job.state.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Ok(None);
        }
        if next.is_terminal() {
            sqlx::query(
                "UPDATE tasks SET state = 'skipped', finished_at = $1 WHERE job_id = $2 AND state = 'pending'",
            )
            .bind(now)
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
        }
        audit::record(
            &mut *tx,
            self.audit(),
            job_change(&format!("job_{action}"), job).details(serde_json::json!({
                "job": job.id, "workflow": job.name, "from": job.state.as_str(), "to": next.as_str(),
            })),
        )
        .await?;
        if next.is_terminal() {
            record_job_end(&mut tx, self, job, next).await?;
        }
        let after = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(&job.id)
            .fetch_one(&mut *tx)
            .await?;
        let after = job_from_row(&after)?;
        tx.commit().await?;
        Ok(Some(after))
    }

    /// Give a failed task another attempt (and the tasks its failure skipped their chance back);
    /// the job runs again.
    pub async fn retry_task(&self, job: &JobRecord, task: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        lock_job(&mut tx, &job.id).await?;
        let changed = sqlx::query(
            "UPDATE tasks SET state = 'pending', max_attempts = attempt + 1, not_before = 0, error = NULL \
             WHERE job_id = $1 AND name = $2 AND state IN ('failed', 'killed')",
        )
        .bind(&job.id)
        .bind(task)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE tasks SET state = 'pending', finished_at = NULL WHERE job_id = $1 AND state = 'skipped'",
        )
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE jobs SET state = 'running', reason = NULL, finished_at = NULL, updated_at = $1 \
             WHERE id = $2 AND state = $3",
        )
        .bind(now)
        .bind(&job.id)
        .bind(job.state.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        audit::record(
            &mut *tx,
            self.audit(),
            job_change("job_retry", job)
                .details(serde_json::json!({"job": job.id, "workflow": job.name, "task": task})),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Counts per state and the mean duration (ms) of ended jobs, for a filter.
    pub async fn job_summary(
        &self,
        filter: &JobFilter,
    ) -> Result<(BTreeMap<String, u64>, Option<f64>), StoreError> {
        let (clause, binds) = job_where(filter);
        let rows = audit::bind(
            sqlx::query(&format!(
                "SELECT state, COUNT(*) AS n FROM jobs{clause} GROUP BY state"
            )),
            &binds,
        )
        .fetch_all(self.pool())
        .await?;
        let mut counts = BTreeMap::new();
        for row in &rows {
            counts.insert(row.try_get::<String, _>("state")?, u(row.try_get("n")?));
        }
        let ended = if clause.is_empty() { " WHERE" } else { " AND" };
        let mean: Option<f64> = audit::bind(
            sqlx::query(&format!(
                "SELECT CAST(AVG(finished_at - started_at) AS DOUBLE PRECISION) AS mean FROM jobs{clause}{ended} \
                 finished_at IS NOT NULL AND started_at IS NOT NULL"
            )),
            &binds,
        )
        .fetch_one(self.pool())
        .await?
        .try_get("mean")?;
        Ok((counts, mean))
    }

    /// How many jobs are not over yet: pending, running, paused or in error.
    pub async fn active_jobs(&self) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE state IN ('pending', 'running', 'paused', 'in_error')",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u(row.try_get("n")?))
    }

    /// Whether the model has a job of `origin` not yet over (one retraining at a time).
    pub async fn active_job_for_model(
        &self,
        model: &str,
        origin: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM jobs WHERE model = $1 AND origin = $2 \
             AND state IN ('pending', 'running', 'paused', 'in_error') LIMIT 1",
        )
        .bind(model)
        .bind(origin)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// The model's most recently submitted job of `origin` (the cool-down of drift-started
    /// retraining runs from its end).
    pub async fn latest_job_from(
        &self,
        model: &str,
        origin: &str,
    ) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE model = $1 AND origin = $2 \
             ORDER BY submitted_at DESC, id LIMIT 1"
        ))
        .bind(model)
        .bind(origin)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Name (or clear, with `None`) the workflow that retrains a model.
    pub async fn set_retrain_workflow(
        &self,
        model: &str,
        workflow: Option<&str>,
    ) -> Result<(), StoreError> {
        let changed = sqlx::query(
            "UPDATE models SET retrain_workflow = $1, updated_at = $2 WHERE name = $3 AND deleted = 0",
        )
        .bind(workflow)
        .bind(now_ms())
        .bind(model)
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::ModelNotFound(model.to_owned()));
        }
        Ok(())
    }

    /// Models that name a retraining workflow and have drift events, with the newest event's
    /// time.
    pub async fn drifted_retrainable_models(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.name AS name, MAX(e.created_at) AS last FROM models m \
             JOIN drift_events e ON e.model = m.name \
             WHERE m.retrain_workflow IS NOT NULL AND m.deleted = 0 GROUP BY m.name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("last")?)))
            .collect()
    }

    pub async fn retrain_workflow(&self, model: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT retrain_workflow FROM models WHERE name = $1 AND deleted = 0")
                .bind(model)
                .fetch_optional(self.pool())
                .await?
                .ok_or_else(|| StoreError::ModelNotFound(model.to_owned()))?;
        Ok(row.try_get("retrain_workflow")?)
    }
}

fn job_change<'a>(kind: &'a str, job: &'a JobRecord) -> Change<'a> {
    let change = Change::new(kind);
    match &job.model {
        Some(model) => change.model(model),
        None => change,
    }
}

/// Record a job's end in the audit trail (finished, failed, canceled, killed).
async fn record_job_end(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    store: &SqlStore,
    job: &JobRecord,
    state: JobState,
) -> Result<(), StoreError> {
    audit::record(
        &mut **tx,
        store.audit(),
        job_change("job_finished", job).details(serde_json::json!({
            "job": job.id, "workflow": job.name, "state": state.as_str(),
        })),
    )
    .await
}

/// Take the job's row lock (a no-op update: portable between SQLite and PostgreSQL) before any
/// of its tasks', so that transactions touching both always lock in the same order.
async fn lock_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET updated_at = updated_at WHERE id = $1")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Recompute a job's state from its tasks (inside the caller's transaction).
async fn settle_job(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    store: &SqlStore,
    job_id: &str,
    now: i64,
) -> Result<Option<JobRecord>, StoreError> {
    let Some(row) = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    let job = job_from_row(&row)?;
    let rows = sqlx::query("SELECT name, state FROM tasks WHERE job_id = $1 ORDER BY position")
        .bind(job_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get("name")?;
        let state: String = row.try_get("state")?;
        let state = TaskState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("task state '{state}'")))?;
        tasks.push((name, state));
    }
    let on_error = serde_json::from_str::<maas_scheduler::Workflow>(&job.definition)
        .map(|w| w.on_task_error)
        .unwrap_or_default();
    let view: Vec<(&str, TaskState)> = tasks.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let settled = maas_scheduler::state::settle(job.state, on_error, &view);
    for name in &settled.skip {
        sqlx::query(
            "UPDATE tasks SET state = 'skipped', finished_at = $1 WHERE job_id = $2 AND name = $3 AND state = 'pending'",
        )
        .bind(now)
        .bind(job_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    }
    if settled.job != job.state {
        let finished = settled.job.is_terminal().then_some(now);
        sqlx::query(
            "UPDATE jobs SET state = $1, reason = COALESCE($2, reason), finished_at = COALESCE($3, finished_at), \
             updated_at = $4 WHERE id = $5",
        )
        .bind(settled.job.as_str())
        .bind(&settled.reason)
        .bind(finished)
        .bind(now)
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
        if settled.job.is_terminal() {
            record_job_end(tx, store, &job, settled.job).await?;
        }
    }
    let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
        .bind(job_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(Some(job_from_row(&row)?))
}
