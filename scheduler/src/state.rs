//! Job and task states, and which operator actions each state allows.

use serde::{Deserialize, Serialize};

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Submitted; no task has started yet.
    Pending,
    Running,
    /// No new task starts; running ones go on.
    Paused,
    /// Every task finished.
    Finished,
    /// A task failed every attempt and the workflow says to fail the job.
    Failed,
    /// Stopped by an operator: no new task starts, running ones were let finish.
    Canceled,
    /// Stopped by an operator: running processes were ended.
    Killed,
    /// A task failed every attempt; the job waits for a decision (retry the task, cancel, kill).
    InError,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Pending,
        JobState::Running,
        JobState::Paused,
        JobState::Finished,
        JobState::Failed,
        JobState::Canceled,
        JobState::Killed,
        JobState::InError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Finished => "finished",
            JobState::Failed => "failed",
            JobState::Canceled => "canceled",
            JobState::Killed => "killed",
            JobState::InError => "in_error",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the job is over (nothing of it will run again).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Finished | JobState::Failed | JobState::Canceled | JobState::Killed
        )
    }

    /// Whether ready tasks of the job may start.
    pub fn starts_tasks(self) -> bool {
        matches!(self, JobState::Pending | JobState::Running)
    }
}

/// The state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for its dependencies, its turn, or its retry delay.
    Pending,
    Running,
    Finished,
    /// Failed every attempt.
    Failed,
    /// Never ran: a dependency failed, or the job ended first.
    Skipped,
    /// Ended by a kill.
    Killed,
}

impl TaskState {
    pub const ALL: [TaskState; 6] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Killed => "killed",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What an operator can do to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Cancel,
    Pause,
    Resume,
    Kill,
    /// Retry a failed task (of a job `in_error` or `failed`).
    Retry,
}

impl JobAction {
    pub fn as_str(self) -> &'static str {
        match self {
            JobAction::Cancel => "cancel",
            JobAction::Pause => "pause",
            JobAction::Resume => "resume",
            JobAction::Kill => "kill",
            JobAction::Retry => "retry",
        }
    }

    /// The state the job moves to, or why the action does not apply.
    pub fn apply(self, state: JobState) -> Result<JobState, String> {
        use JobState::*;
        let next = match (self, state) {
            (JobAction::Cancel, Pending | Running | Paused | InError) => Canceled,
            (JobAction::Kill, Pending | Running | Paused | InError) => Killed,
            (JobAction::Pause, Pending | Running) => Paused,
            (JobAction::Resume, Paused) => Running,
            (JobAction::Retry, InError | Failed) => Running,
            _ => {
                return Err(format!(
                    "cannot {} a job that is {}",
                    self.as_str(),
                    state.as_str()
                ))
            }
        };
        Ok(next)
    }
}

/// What a job becomes once one of its tasks changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub job: JobState,
    /// Pending tasks that will never run now (to mark `skipped`).
    pub skip: Vec<String>,
    /// Why, when the job failed or waits for a decision.
    pub reason: Option<String>,
}

/// Decide a job's state from its tasks' states. Canceled and killed jobs keep their state (their
/// running tasks are let finish or ended); a failed task fails the job or suspends it, per the
/// workflow's `on_task_error`.
pub fn settle(
    job: JobState,
    on_error: crate::workflow::OnTaskError,
    tasks: &[(&str, TaskState)],
) -> Settlement {
    let pending: Vec<String> = tasks
        .iter()
        .filter(|(_, s)| *s == TaskState::Pending)
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let running = tasks.iter().any(|(_, s)| *s == TaskState::Running);
    let failed: Vec<&str> = tasks
        .iter()
        .filter(|(_, s)| matches!(s, TaskState::Failed | TaskState::Killed))
        .map(|(n, _)| *n)
        .collect();
    let keep = |job| Settlement {
        job,
        skip: Vec::new(),
        reason: None,
    };
    match job {
        JobState::Canceled | JobState::Killed => Settlement {
            job,
            skip: pending,
            reason: None,
        },
        JobState::Finished | JobState::Failed => keep(job),
        _ if tasks.iter().all(|(_, s)| *s == TaskState::Finished) => keep(JobState::Finished),
        _ if !failed.is_empty() => {
            let reason = Some(format!("task {} failed", failed.join(", ")));
            match on_error {
                crate::workflow::OnTaskError::Suspend => Settlement {
                    job: JobState::InError,
                    skip: Vec::new(),
                    reason,
                },
                crate::workflow::OnTaskError::FailJob => Settlement {
                    job: if running { job } else { JobState::Failed },
                    skip: pending,
                    reason,
                },
            }
        }
        // A retried task brought an in_error job back to work.
        JobState::InError => keep(JobState::Running),
        _ => keep(job),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn actions_follow_the_state_machine() {
        assert_eq!(
            JobAction::Pause.apply(JobState::Running),
            Ok(JobState::Paused)
        );
        assert_eq!(
            JobAction::Resume.apply(JobState::Paused),
            Ok(JobState::Running)
        );
        assert_eq!(
            JobAction::Retry.apply(JobState::InError),
            Ok(JobState::Running)
        );
        assert!(JobAction::Resume
            .apply(JobState::Running)
            .unwrap_err()
            .contains("cannot resume a job that is running"));
        assert!(JobAction::Cancel.apply(JobState::Finished).is_err());
        assert!(JobAction::Kill.apply(JobState::Killed).is_err());
    }

    #[test]
    fn settles_jobs_from_task_states() {
        use crate::workflow::OnTaskError::{FailJob, Suspend};
        use TaskState::*;
        let done = settle(
            JobState::Running,
            FailJob,
            &[("a", Finished), ("b", Finished)],
        );
        assert_eq!(done.job, JobState::Finished);
        let failing = settle(
            JobState::Running,
            FailJob,
            &[("a", Failed), ("b", Pending), ("c", Running)],
        );
        assert_eq!(failing.job, JobState::Running, "waits for c");
        assert_eq!(failing.skip, vec!["b".to_owned()]);
        let failed = settle(JobState::Running, FailJob, &[("a", Failed), ("b", Skipped)]);
        assert_eq!(failed.job, JobState::Failed);
        assert_eq!(failed.reason.as_deref(), Some("task a failed"));
        let waiting = settle(JobState::Running, Suspend, &[("a", Failed), ("b", Pending)]);
        assert_eq!(waiting.job, JobState::InError);
        assert!(waiting.skip.is_empty());
        let canceled = settle(
            JobState::Canceled,
            FailJob,
            &[("a", Running), ("b", Pending)],
        );
        assert_eq!(
            (canceled.job, canceled.skip),
            (JobState::Canceled, vec!["b".to_owned()])
        );
    }
}
