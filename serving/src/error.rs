//! The one error type of the serving crate; the gateway maps each variant to a status and code.

/// What can go wrong between a request and a model's answer.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// The uploaded bytes are not a model the backend can load and run.
    #[error("the model cannot be loaded: {0}")]
    InvalidModel(String),
    /// The model loads but uses something maas cannot feed or read (an input type, several inputs
    /// on a route that takes one).
    #[error("{0}")]
    UnsupportedModel(String),
    /// The request's data does not fit the model (shape, type, value, missing column).
    #[error("{0}")]
    InvalidInput(String),
    /// A version's serving options are out of their limits.
    #[error("{0}")]
    InvalidOptions(String),
    /// The backend failed while running a request that passed validation.
    #[error("inference failed: {0}")]
    Inference(String),
    /// No version of this model is loaded on this process.
    #[error("model '{0}' has no deployed version")]
    NotLoaded(String),
    /// This version of the model is not loaded on this process.
    #[error("version {version} of model '{model}' is not deployed")]
    VersionNotLoaded { model: String, version: u64 },
    /// The version's request queue is full; the client should retry after a pause.
    #[error("the queue of version {version} of '{model}' is full ({capacity} requests waiting); retry shortly")]
    QueueFull {
        model: String,
        version: u64,
        capacity: usize,
    },
    /// The request waited in the queue longer than the version's limit and was not run.
    #[error("the request waited {waited_ms} ms for version {version} of '{model}', longer than its {limit_ms} ms limit; the server is overloaded, retry shortly")]
    QueueTimeout {
        model: String,
        version: u64,
        waited_ms: u64,
        limit_ms: u64,
    },
    /// The version stopped serving before the request ran (it was undeployed or replaced).
    #[error("version {version} of '{model}' stopped serving before the request ran; retry")]
    Stopped { model: String, version: u64 },
    /// The engine a deployment asked for explicitly cannot run in this process (ONNX Runtime did
    /// not load, or CUDA is missing); the message says why.
    #[error("{0}")]
    BackendUnavailable(String),
    /// Reading or writing an artifact failed.
    #[error("artifact storage: {0}")]
    Io(#[from] std::io::Error),
}
