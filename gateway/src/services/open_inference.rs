//! The Open Inference Protocol's questions, answered once for both of its transports (REST under
//! `/v2` and gRPC): server and model readiness, model metadata, the model repository extension
//! (index, load, unload), and how a request's named inputs bind to a model's signature.
//!
//! The transports only translate: their codecs and handlers call these and turn the plain types
//! here into JSON or protobuf.

use std::collections::HashSet;

use maas_serving::io::{flat_json, v2_datatype};
use maas_serving::{Dim, ModelSignature, Tensor, TensorSpec};
use serde_json::{json, Value};

use crate::services::auth::Principal;
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::models::{DeployRequest, DeploySource, ModelService, Placement};
use crate::store::VersionState;

/// The server's name and extensions, as its metadata reports them.
pub const SERVER_NAME: &str = "maas";
pub const EXTENSIONS: &[&str] = &["model_repository"];

/// A tensor's name, protocol datatype and shape (-1 for a dynamic dimension).
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// One version in the repository index.
pub struct RepositoryEntry {
    pub name: String,
    pub version: String,
    pub ready: bool,
    /// Why it is not ready (its state); empty when it is.
    pub reason: String,
}

impl RepositoryEntry {
    /// The protocol's state word.
    pub fn state(&self) -> &'static str {
        if self.ready {
            "READY"
        } else {
            "UNAVAILABLE"
        }
    }
}

/// A version as the protocol names it: a positive integer in text.
pub fn parse_version(text: &str) -> Result<u64, ServiceError> {
    text.parse::<u64>().map_err(|_| {
        ServiceError::new(
            ErrorKind::InvalidPath,
            format!("model version '{text}' is not a positive integer"),
        )
    })
}

fn dims(shape: &[Dim]) -> Vec<i64> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => i64::try_from(*n).unwrap_or(-1),
            Dim::Symbolic(_) => -1,
        })
        .collect()
}

/// Ready: deployed models are loaded, and the store answers and takes writes (a store that is
/// read-only, full or refused permission makes every deploy and logged predict fail, so a load
/// balancer should send traffic elsewhere). `NotReady` says why not.
pub async fn server_ready(models: &ModelService) -> Result<(), ServiceError> {
    if !models.is_ready() {
        return Err(ServiceError::new(
            ErrorKind::NotReady,
            "the server is starting: it is loading the deployed models",
        ));
    }
    models.ping().await.map_err(|e| {
        ServiceError::new(
            ErrorKind::NotReady,
            format!("the server cannot reach its store: {}", e.message),
        )
    })?;
    models.check_writable().await.map_err(|why| {
        ServiceError::new(
            ErrorKind::NotReady,
            format!("the store refuses writes: {why}"),
        )
    })
}

/// The signature of the version that would answer (the default one unless `version` is given).
pub async fn metadata(
    models: &ModelService,
    model: &str,
    version: Option<u64>,
) -> Result<ModelMetadata, ServiceError> {
    let served = models.resolve(model, version).await?;
    let signature = served.loaded.signature();
    let versions = match version {
        Some(v) => vec![v.to_string()],
        None => models
            .model(model)
            .await?
            .versions
            .iter()
            .filter(|v| v.state == VersionState::Deployed)
            .map(|v| v.version.to_string())
            .collect(),
    };
    let meta = |specs: &[TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorMetadata {
                name: s.name.clone(),
                datatype: v2_datatype(s.element_type),
                shape: dims(&s.shape),
            })
            .collect()
    };
    Ok(ModelMetadata {
        name: model.to_owned(),
        versions,
        platform: "onnx",
        inputs: meta(&signature.inputs),
        outputs: meta(&signature.outputs),
    })
}

/// Whether a model (its default version, or one version) is loaded and answering here: `Ok`, or
/// `NotReady` saying why, or the model's own error when it does not exist.
pub async fn model_ready(
    models: &ModelService,
    model: &str,
    version: Option<u64>,
) -> Result<(), ServiceError> {
    models.model(model).await?;
    if models.is_serving(model, version) {
        Ok(())
    } else if models.is_paused(model) {
        Err(ServiceError::new(
            ErrorKind::NotReady,
            format!("model '{model}' is not ready: it is paused"),
        ))
    } else {
        Err(ServiceError::new(
            ErrorKind::NotReady,
            format!("model '{model}' is not ready: no deployed version is loaded here"),
        ))
    }
}

/// Every version of every model the caller may use, with whether it answers here: an API key
/// limited to some models does not learn that others exist.
pub async fn index(
    models: &ModelService,
    caller: &Principal,
) -> Result<Vec<RepositoryEntry>, ServiceError> {
    let mut entries = Vec::new();
    for model in models.models().await? {
        if !caller.may_use_model(&model.name) {
            continue;
        }
        for v in &model.versions {
            let ready = models.is_serving(&model.name, Some(v.version));
            entries.push(RepositoryEntry {
                name: model.name.clone(),
                version: v.version.to_string(),
                ready,
                reason: if ready {
                    String::new()
                } else {
                    v.state.as_str().into()
                },
            });
        }
    }
    Ok(entries)
}

/// Load a model: deploy its newest kept version, unless a version is deployed already.
pub async fn load(models: &ModelService, model: &str) -> Result<(), ServiceError> {
    let record = models.model(model).await?;
    let newest = record.newest_version().ok_or_else(|| {
        ServiceError::new(
            ErrorKind::VersionNotFound,
            format!("model '{model}' has no version to load"),
        )
    })?;
    if record.default_version().is_none() {
        models
            .deploy(DeployRequest {
                model: model.to_owned(),
                source: DeploySource::Kept(newest),
                placement: Placement::Alone,
            })
            .await?;
    }
    Ok(())
}

/// Unload a model: undeploy every deployed version (each stays kept).
pub async fn unload(models: &ModelService, model: &str) -> Result<(), ServiceError> {
    let record = models.model(model).await?;
    for v in record
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Deployed)
    {
        models.undeploy(model, v.version).await?;
    }
    Ok(())
}

/// Bind a request's named inputs to the model's signature: one tensor per model input, in the
/// model's order, made by `tensor(ix, spec)` from the request's input at `ix`. Refuses an input
/// sent twice, a model input missing, an input the model does not have, and a requested output
/// the model does not have.
pub fn bind_inputs<'a>(
    signature: &ModelSignature,
    names: &[&str],
    requested_outputs: impl IntoIterator<Item = &'a str>,
    mut tensor: impl FnMut(usize, &TensorSpec) -> Result<Tensor, ServiceError>,
) -> Result<Vec<Tensor>, ServiceError> {
    let invalid = |m: String| ServiceError::new(ErrorKind::InvalidInput, m);
    // An input sent twice would leave one of the two unread: say so rather than pick one.
    if names.len() > 1 {
        let mut seen = HashSet::with_capacity(names.len());
        if let Some(again) = names.iter().find(|n| !seen.insert(**n)) {
            return Err(invalid(format!(
                "input '{again}' is sent twice; send each input once"
            )));
        }
    }
    let mut tensors = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        let ix = names
            .iter()
            .position(|n| *n == spec.name)
            .ok_or_else(|| invalid(format!("the request has no input '{}'", spec.name)))?;
        tensors.push(tensor(ix, spec)?);
    }
    if let Some(extra) = names
        .iter()
        .find(|n| !signature.inputs.iter().any(|s| s.name == **n))
    {
        return Err(invalid(format!("the model has no input '{extra}'")));
    }
    for name in requested_outputs {
        if !signature.outputs.iter().any(|s| s.name == name) {
            return Err(invalid(format!("the model has no output '{name}'")));
        }
    }
    Ok(tensors)
}

/// A tensor as the prediction log keeps it: JSON, whatever way it travelled.
pub fn logged_tensor(name: &str, tensor: &Tensor) -> Value {
    json!({
        "name": name,
        "datatype": v2_datatype(tensor.data.element_type()),
        "shape": tensor.shape,
        "data": flat_json(tensor),
    })
}

/// The inputs of a request as the prediction log keeps them.
pub fn logged_inputs(signature: &ModelSignature, tensors: &[Tensor]) -> Value {
    let inputs: Vec<Value> = signature
        .inputs
        .iter()
        .zip(tensors)
        .map(|(spec, t)| logged_tensor(&spec.name, t))
        .collect();
    json!({ "inputs": inputs })
}
