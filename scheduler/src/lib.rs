//! The training scheduler: workflows as DAGs of tasks, job and task state machines, executors.
//!
//! It writes model versions through the same registry API a user calls. The scheduler arrives
//! with issue #7; this crate holds the seam so the workspace keeps the layout of shared/DESIGN.md.
