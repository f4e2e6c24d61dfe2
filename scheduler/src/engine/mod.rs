//! The scheduler's engine: what runs jobs once they are stored. It owns the job and task
//! records, the [`JobStore`] trait through which it reads and changes them (the gateway
//! implements it on its database), the scheduler's settings with what they become on this
//! machine ([`TaskHost`]), the executors that run one attempt each ([`TaskExecutor`]), and the
//! `deploy` task, which runs in the server's process through a [`ModelDeployer`].

mod deploy;
mod executor;
mod settings;
mod store;

pub use deploy::{
    run as run_deploy_task, DeployError, DeployedVersion, ModelDeployer, NewModelVersion,
    VersionFileError,
};
pub use executor::{
    outcome_of, Attempt, AttemptControl, Ended, Executors, LocalExecutor, NativeExecutors, Outcome,
    SlurmCommands, SlurmControl, SlurmExecutor, TaskCommand, TaskExecutor,
};
pub use settings::{InvalidSettings, SchedulerSettings, SetupError, TaskHost};
pub use store::{
    AttemptEnd, JobRecord, JobStore, NewTask, Submission, SubmitError, TaskRecord, DRIFT_ORIGIN,
    SYSTEM_VARIABLES,
};

/// This machine's name, the first part of a worker's name on its leases.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "maas".to_owned())
}
