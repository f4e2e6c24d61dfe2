//! The scheduler's engine: what runs jobs once they are stored. It owns the job and task
//! records, the [`JobStore`] trait through which it reads and changes them (the gateway
//! implements it on its database), and the scheduler's settings with what they become on this
//! machine ([`TaskHost`]).

mod settings;
mod store;

pub use settings::{InvalidSettings, SchedulerSettings, SetupError, TaskHost};
pub use store::{
    AttemptEnd, JobRecord, JobStore, NewTask, Submission, SubmitError, TaskRecord, DRIFT_ORIGIN,
    SYSTEM_VARIABLES,
};
