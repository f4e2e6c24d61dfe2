//! The in-memory registry of loaded model versions: what this process can answer right now.
//!
//! The store (in the gateway) is the truth about what is deployed; this registry mirrors it.
//! A request takes an `Arc` of the version it runs, so an undeploy or a swap never pulls a model
//! out from under a request in flight, and a response never mixes versions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::batching::BatchQueue;
use crate::{BackendKind, LoadedModel, OrtThreads, ServingError};

/// What the deployer said about a version beyond the ONNX file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionMeta {
    /// Labels for class indices, in index order.
    pub class_names: Option<Vec<String>>,
    /// Column names in the order of the model's feature axis, for `records` requests.
    pub feature_names: Option<Vec<String>>,
}

/// One loaded, servable version of a model.
pub struct ServedVersion {
    pub model: String,
    pub version: u64,
    pub backend: BackendKind,
    /// `cpu` or `cuda:<device>`.
    pub execution_provider: String,
    /// Why the backend is not the one asked for, when `auto` fell back.
    pub backend_note: Option<String>,
    /// Each instance's ONNX Runtime threads (None on tract).
    pub ort_threads: Option<OrtThreads>,
    /// One of the instances; requests go through `queue`, this is for the signature.
    pub loaded: Arc<dyn LoadedModel>,
    /// The version's request queue and the instance threads behind it.
    pub queue: BatchQueue,
    /// How long the warmup inference took.
    pub warmup: std::time::Duration,
    pub meta: VersionMeta,
}

impl std::fmt::Debug for ServedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedVersion")
            .field("model", &self.model)
            .field("version", &self.version)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Loaded versions by model name, newest last.
#[derive(Default)]
pub struct ModelRegistry {
    models: RwLock<HashMap<String, BTreeMap<u64, Arc<ServedVersion>>>>,
}

impl ModelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The version a request should run: the one asked for, or the newest deployed.
    pub fn get(
        &self,
        model: &str,
        version: Option<u64>,
    ) -> Result<Arc<ServedVersion>, ServingError> {
        let models = self.models.read();
        let versions = models.get(model).filter(|v| !v.is_empty());
        match (versions, version) {
            (Some(versions), Some(v)) => {
                versions
                    .get(&v)
                    .cloned()
                    .ok_or_else(|| ServingError::VersionNotLoaded {
                        model: model.to_owned(),
                        version: v,
                    })
            }
            (Some(versions), None) => versions
                .values()
                .next_back()
                .cloned()
                .ok_or_else(|| ServingError::NotLoaded(model.to_owned())),
            (None, Some(v)) => Err(ServingError::VersionNotLoaded {
                model: model.to_owned(),
                version: v,
            }),
            (None, None) => Err(ServingError::NotLoaded(model.to_owned())),
        }
    }

    /// Add a version next to the ones already serving.
    pub fn insert(&self, served: Arc<ServedVersion>) {
        let mut models = self.models.write();
        models
            .entry(served.model.clone())
            .or_default()
            .insert(served.version, served);
    }

    /// Make `served` the only version of its model, in one step: no request sees the model empty.
    pub fn replace_all(&self, served: Arc<ServedVersion>) {
        let mut models = self.models.write();
        let mut versions = BTreeMap::new();
        let name = served.model.clone();
        versions.insert(served.version, served);
        models.insert(name, versions);
    }

    /// Stop serving one version; requests already running it finish.
    pub fn remove(&self, model: &str, version: u64) -> bool {
        let mut models = self.models.write();
        let Some(versions) = models.get_mut(model) else {
            return false;
        };
        let removed = versions.remove(&version).is_some();
        if versions.is_empty() {
            models.remove(model);
        }
        removed
    }

    pub fn remove_model(&self, model: &str) {
        self.models.write().remove(model);
    }

    pub fn contains(&self, model: &str, version: u64) -> bool {
        self.models
            .read()
            .get(model)
            .is_some_and(|v| v.contains_key(&version))
    }

    /// Every loaded version.
    pub fn all(&self) -> Vec<Arc<ServedVersion>> {
        self.models
            .read()
            .values()
            .flat_map(|versions| versions.values().cloned())
            .collect()
    }

    /// Every loaded `(model, version)`, sorted.
    pub fn loaded(&self) -> Vec<(String, u64)> {
        let models = self.models.read();
        let mut all: Vec<(String, u64)> = models
            .iter()
            .flat_map(|(name, versions)| versions.keys().map(move |v| (name.clone(), *v)))
            .collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ModelSignature, Tensor};

    struct Echo(ModelSignature);
    impl LoadedModel for Echo {
        fn signature(&self) -> &ModelSignature {
            &self.0
        }
        fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
            Ok(inputs)
        }
    }

    fn served(model: &str, version: u64) -> Arc<ServedVersion> {
        let loaded: Arc<dyn LoadedModel> = Arc::new(Echo(ModelSignature {
            inputs: vec![],
            outputs: vec![],
        }));
        let queue = BatchQueue::start(
            model,
            version,
            vec![loaded.clone()],
            crate::batching::BatchConfig::default(),
            Arc::new(crate::batching::NoObserver),
        )
        .unwrap();
        Arc::new(ServedVersion {
            model: model.into(),
            version,
            backend: BackendKind::Tract,
            execution_provider: "cpu".into(),
            backend_note: None,
            ort_threads: None,
            loaded,
            queue,
            warmup: std::time::Duration::ZERO,
            meta: VersionMeta::default(),
        })
    }

    #[test]
    fn default_is_newest_and_replace_all_leaves_one() {
        let r = ModelRegistry::new();
        r.insert(served("m", 1));
        r.insert(served("m", 3));
        r.insert(served("m", 2));
        assert_eq!(r.get("m", None).unwrap().version, 3);
        assert_eq!(r.get("m", Some(2)).unwrap().version, 2);
        r.replace_all(served("m", 1));
        assert_eq!(r.loaded(), vec![("m".to_string(), 1)]);
        assert!(matches!(
            r.get("m", Some(3)),
            Err(ServingError::VersionNotLoaded { .. })
        ));
        assert!(r.remove("m", 1));
        assert!(matches!(r.get("m", None), Err(ServingError::NotLoaded(_))));
    }

    #[test]
    fn a_held_version_outlives_its_removal() {
        let r = ModelRegistry::new();
        r.insert(served("m", 1));
        let held = r.get("m", None).unwrap();
        r.remove_model("m");
        assert_eq!(held.version, 1);
        assert!(r.get("m", None).is_err());
    }
}
