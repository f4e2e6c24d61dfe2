//! The services: every business rule of the gateway, below HTTP and above the store. They speak
//! in domain types and return [`error::Error`]; only the HTTP layer turns those into statuses.

pub mod actions;
pub mod audit;
pub mod auth;
pub mod baseline;
pub mod distributions;
pub mod drift;
pub mod error;
pub mod fetch;
pub mod inference;
pub mod jobs;
pub mod metrics;
pub mod models;
pub mod open_inference;
pub mod predictions;
pub mod runtime;
pub mod telemetry;

/// Run `work` on tokio's blocking pool: parsing, hashing, loading and file work that would hold
/// an async worker, and every request waiting on that worker, for milliseconds or more. A panic
/// in `work` is an internal error.
pub async fn off_worker<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, error::ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| error::ServiceError::internal(format!("a worker thread failed: {e}")))
}
