//! Serving: everything between a validated request and a model's answer.
//!
//! It owns the inference backends (a small synchronous [`Backend`] trait with plain tensor types;
//! tract is the default, ONNX Runtime on CPU or CUDA comes with the `ort` feature and is probed at
//! start by [`Backends`]), the in-memory [`ModelRegistry`] of loaded versions, the on-disk
//! [`ArtifactStore`], and the conversion of JSON predict bodies into tensors and back
//! ([`io`]). It knows nothing of HTTP or SQL.

pub mod artifacts;
pub mod backend;
pub mod batching;
pub mod error;
pub mod io;
mod linear;
pub mod load_limits;
mod onnx_graph;
pub mod options;
#[cfg(feature = "ort")]
mod ort_backend;
pub mod registry;
pub mod tensor;
pub mod tract_backend;

pub use artifacts::{ArtifactStore, StagedArtifact};
pub use backend::{
    Backend, BackendChoice, BackendKind, BackendLoad, Backends, GraphOptimization, LoadedModel,
    OrtSettings, OrtThreads,
};
pub use error::ServingError;
pub use load_limits::{check_load_limits, LoadLimits};
pub use options::{ResolvedServing, ServingDefaults, ServingOptions};
pub use registry::{ModelRegistry, ServedVersion, VersionMeta};
pub use tensor::{Dim, ElementType, ModelSignature, Tensor, TensorData, TensorSpec};
pub use tract_backend::TractBackend;
