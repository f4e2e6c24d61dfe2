//! The narrow boundary every inference engine implements: load bytes, describe, run.

use std::sync::Arc;

use crate::{ModelSignature, ServingError, Tensor};

/// Which engine runs a model; shown in a version's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Tract,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
        }
    }
}

/// An inference engine. Synchronous on purpose: callers decide which thread runs it.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Parse, optimise and smoke-test an ONNX model. An error means nothing about it may be kept.
    fn load(&self, onnx: &[u8]) -> Result<Arc<dyn LoadedModel>, ServingError>;
}

/// A model ready to answer. Inputs and outputs follow the order of [`LoadedModel::signature`].
pub trait LoadedModel: Send + Sync {
    fn signature(&self) -> &ModelSignature;

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError>;
}
