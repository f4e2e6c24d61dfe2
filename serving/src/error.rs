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
    /// The backend failed while running a request that passed validation.
    #[error("inference failed: {0}")]
    Inference(String),
    /// No version of this model is loaded on this process.
    #[error("model '{0}' has no deployed version")]
    NotLoaded(String),
    /// This version of the model is not loaded on this process.
    #[error("version {version} of model '{model}' is not deployed")]
    VersionNotLoaded { model: String, version: u64 },
    /// Reading or writing an artifact failed.
    #[error("artifact storage: {0}")]
    Io(#[from] std::io::Error),
}
