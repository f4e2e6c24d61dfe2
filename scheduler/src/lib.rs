//! The training scheduler: workflows as DAGs of tasks, job and task state machines, the task
//! process, executors (local processes, Slurm) and the built-in ML tasks that train models and
//! export them as ONNX.
//!
//! It knows nothing of HTTP or SQL: its [`engine`] claims ready tasks, hands each attempt to an
//! executor and deploys through the registry, all behind traits the gateway implements on its
//! database and registry.

pub mod engine;
pub mod local;
pub mod ml;
pub mod runner;
pub mod sandbox;
pub mod slurm;
pub mod state;
pub mod workflow;

pub use state::{JobAction, JobState, TaskState};
pub use workflow::{ExecutorKind, OnTaskError, Priority, TaskSpec, Workflow, WorkflowError};
