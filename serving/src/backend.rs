//! The narrow boundary every inference engine implements (load bytes, describe, run), and the
//! choice among the engines this process can use: tract always, ONNX Runtime (CPU or CUDA) when
//! its library loads at start.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ModelSignature, ServingError, Tensor, TractBackend};

#[cfg(feature = "ort")]
use crate::ort_backend::OrtRuntime;
#[cfg(not(feature = "ort"))]
use without_ort::OrtRuntime;

/// Which engine runs a model; shown in a version's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Tract,
    OrtCpu,
    OrtCuda,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::OrtCpu => "ort-cpu",
            BackendKind::OrtCuda => "ort-cuda",
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

    /// A specialised kernel that computes this model in place of the backend's general
    /// engine (`linear`: see [`crate::linear`]); `None` when the engine runs it.
    fn kernel(&self) -> Option<&'static str> {
        None
    }
}

/// Which engine a deployment asks for. `auto` takes the best one this process has: ONNX Runtime
/// on CUDA, else ONNX Runtime on CPU, else tract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    Auto,
    #[default]
    Tract,
    OrtCpu,
    OrtCuda,
}

impl BackendChoice {
    pub const ALL: [BackendChoice; 4] = [
        BackendChoice::Auto,
        BackendChoice::Tract,
        BackendChoice::OrtCpu,
        BackendChoice::OrtCuda,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Tract => "tract",
            BackendChoice::OrtCpu => "ort-cpu",
            BackendChoice::OrtCuda => "ort-cuda",
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BackendChoice::ALL
            .into_iter()
            .find(|choice| choice.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = BackendChoice::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "unknown backend '{s}'; expected one of {}",
                    valid.join(", ")
                )
            })
    }
}

/// How much ONNX Runtime rewrites a graph before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GraphOptimization {
    Disable,
    Basic,
    Extended,
    #[default]
    All,
}

/// Where ONNX Runtime comes from and how its sessions run.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrtSettings {
    /// The `libonnxruntime` shared library. None: the `ORT_DYLIB_PATH` environment variable;
    /// neither: ONNX Runtime is unavailable.
    pub dylib_path: Option<PathBuf>,
    /// The GPU the CUDA execution provider runs on.
    pub cuda_device_id: i32,
    /// The CUDA execution provider's memory arena limit (`gpu_mem_limit`); 0 is no limit.
    pub cuda_memory_limit_bytes: u64,
    /// Threads within one operator, per instance (the calling thread included). 0: the cores
    /// this process may use divided among the version's instances, at least 1, so the
    /// instances together never run more threads than there are cores.
    pub intra_op_threads: usize,
    /// Threads across independent operators, per instance. 0 or 1: sequential execution (no
    /// inter-op pool); above 1, independent operators run in parallel on that many threads.
    pub inter_op_threads: usize,
    pub graph_optimization_level: GraphOptimization,
}

/// The threads each ONNX Runtime session of one version runs, once [`OrtSettings`] meet the
/// version's instance count and the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrtThreads {
    /// Threads within one operator, the calling thread included (1: no intra-op pool).
    pub intra_op: usize,
    /// Threads across operators (1: sequential execution).
    pub inter_op: usize,
}

impl OrtSettings {
    /// The threads each of a version's `instances` sessions gets where this process may use
    /// `cores` cores. A value the settings give is honoured as it is; left at 0, intra-op
    /// threads are `max(1, cores / instances)` and inter-op threads 1 (sequential), so
    /// `instances × intra_op ≤ cores` whenever `instances ≤ cores`.
    pub fn threads(&self, instances: usize, cores: usize) -> OrtThreads {
        let intra_op = match self.intra_op_threads {
            0 => (cores / instances.max(1)).max(1),
            n => n,
        };
        OrtThreads {
            intra_op,
            inter_op: self.inter_op_threads.max(1),
        }
    }

    /// Why a version's `instances` sessions oversubscribe `cores` cores, when explicit thread
    /// settings make them (the defaults never do beyond one thread per instance).
    pub fn oversubscription(&self, instances: usize, cores: usize) -> Option<String> {
        let threads = self.threads(instances, cores);
        let explicit = [
            ("intra_op_threads", self.intra_op_threads, threads.intra_op),
            ("inter_op_threads", self.inter_op_threads, threads.inter_op),
        ];
        explicit
            .into_iter()
            .find(|&(_, set, per_instance)| set > 0 && instances * per_instance > cores)
            .map(|(name, _, per_instance)| {
                format!(
                    "{instances} instance(s) × serving.ort.{name} = {per_instance} is {} threads \
                     for {cores} core(s): they will compete for the cores; leave \
                     serving.ort.{name} at 0 to share the cores among the instances",
                    instances * per_instance
                )
            })
    }
}

/// The cores this process may use (its CPU affinity and cgroup quota count); 1 when unknown.
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Where ONNX Runtime runs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrtDevice {
    Cpu,
    Cuda,
}

/// What a load produced and how.
pub struct BackendLoad {
    pub model: Arc<dyn LoadedModel>,
    pub backend: BackendKind,
    /// `cpu` for tract and ort-cpu, `cuda:<device id>` for ort-cuda.
    pub execution_provider: String,
    /// Set when `auto` fell back, saying from what and why.
    pub note: Option<String>,
    /// The session's threads, for ONNX Runtime (None for tract).
    pub ort_threads: Option<OrtThreads>,
}

impl std::fmt::Debug for BackendLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendLoad")
            .field("signature", self.model.signature())
            .field("backend", &self.backend)
            .field("execution_provider", &self.execution_provider)
            .field("note", &self.note)
            .field("ort_threads", &self.ort_threads)
            .finish()
    }
}

/// Every engine this process can use, probed once at start.
#[derive(Debug, Clone)]
pub struct Backends {
    ort: Result<OrtRuntime, String>,
    cuda_unavailable: Option<String>,
    cuda_device_id: i32,
    ort_settings: OrtSettings,
    /// Cores this process may use, read once at start.
    cores: usize,
}

impl Backends {
    /// Probe ONNX Runtime once: load its library, start its environment, run a one-node model on
    /// CPU and, when the library has the CUDA execution provider, on the configured GPU. Never
    /// fails: an unavailable runtime is remembered with its reason.
    ///
    /// ONNX Runtime is process-wide: the first library that loads stays for the life of the
    /// process, and settings naming another one find it unavailable.
    pub fn new(ort: &OrtSettings) -> Self {
        let runtime = OrtRuntime::probe(ort);
        let cuda_unavailable = match &runtime {
            Ok(runtime) => runtime.cuda_unavailable().map(str::to_owned),
            Err(why) => Some(format!("ONNX Runtime is unavailable: {why}")),
        };
        Backends {
            ort: runtime,
            cuda_unavailable,
            cuda_device_id: ort.cuda_device_id,
            ort_settings: ort.clone(),
            cores: available_cores(),
        }
    }

    /// Why `instances` ONNX Runtime sessions of one version oversubscribe this process's cores,
    /// when explicit thread settings make them.
    pub fn ort_oversubscription(&self, instances: usize) -> Option<String> {
        self.ort_settings.oversubscription(instances, self.cores)
    }

    /// None when ONNX Runtime is usable, else why not.
    pub fn ort_unavailable(&self) -> Option<&str> {
        self.ort.as_ref().err().map(String::as_str)
    }

    /// Whether ONNX Runtime can run models on the configured GPU.
    pub fn cuda_available(&self) -> bool {
        self.cuda_unavailable.is_none()
    }

    /// None when ONNX Runtime can run models on the configured GPU, else why not.
    pub fn cuda_unavailable(&self) -> Option<&str> {
        self.cuda_unavailable.as_deref()
    }

    /// Load (parse, optimise, smoke-test) a model with the engine `choice` names. An explicit
    /// ONNX Runtime choice that this process cannot meet is [`ServingError::BackendUnavailable`];
    /// `auto` falls back and says why in [`BackendLoad::note`]. A model the chosen engine
    /// cannot load is an error, never a reason to try another engine.
    ///
    /// The model is one of a version's `instances` copies: ONNX Runtime sessions get their
    /// threads by [`OrtSettings::threads`] for that many instances.
    pub fn load_instance(
        &self,
        choice: BackendChoice,
        onnx: &[u8],
        instances: usize,
    ) -> Result<BackendLoad, ServingError> {
        let threads = self.ort_settings.threads(instances, self.cores);
        let load_ort = |runtime: &OrtRuntime, device: OrtDevice, note: Option<String>| {
            self.load_ort(runtime, device, onnx, threads, note)
        };
        match choice {
            BackendChoice::Tract => self.load_tract(onnx, None),
            BackendChoice::OrtCpu => match &self.ort {
                Ok(runtime) => load_ort(runtime, OrtDevice::Cpu, None),
                Err(why) => Err(ServingError::BackendUnavailable(format!(
                    "ort-cpu was requested but ONNX Runtime is unavailable: {why}"
                ))),
            },
            BackendChoice::OrtCuda => match (&self.ort, &self.cuda_unavailable) {
                (Ok(runtime), None) => load_ort(runtime, OrtDevice::Cuda, None),
                (_, Some(why)) | (Err(why), _) => Err(ServingError::BackendUnavailable(format!(
                    "ort-cuda was requested but CUDA is unavailable: {why}"
                ))),
            },
            BackendChoice::Auto => match (&self.ort, &self.cuda_unavailable) {
                (Ok(runtime), None) => load_ort(runtime, OrtDevice::Cuda, None),
                (Ok(runtime), Some(why)) => {
                    let note = format!("CUDA unavailable: {why}; using ort-cpu");
                    load_ort(runtime, OrtDevice::Cpu, Some(note))
                }
                (Err(why), _) => {
                    let note = format!("ONNX Runtime unavailable: {why}; using tract");
                    self.load_tract(onnx, Some(note))
                }
            },
        }
    }

    /// [`Backends::load_instance`] for a version of one instance.
    pub fn load(&self, choice: BackendChoice, onnx: &[u8]) -> Result<BackendLoad, ServingError> {
        self.load_instance(choice, onnx, 1)
    }

    fn load_tract(&self, onnx: &[u8], note: Option<String>) -> Result<BackendLoad, ServingError> {
        Ok(BackendLoad {
            model: TractBackend.load(onnx)?,
            backend: BackendKind::Tract,
            execution_provider: "cpu".into(),
            note,
            ort_threads: None,
        })
    }

    fn load_ort(
        &self,
        runtime: &OrtRuntime,
        device: OrtDevice,
        onnx: &[u8],
        threads: OrtThreads,
        note: Option<String>,
    ) -> Result<BackendLoad, ServingError> {
        let (backend, execution_provider) = match device {
            OrtDevice::Cpu => (BackendKind::OrtCpu, "cpu".to_owned()),
            OrtDevice::Cuda => (
                BackendKind::OrtCuda,
                format!("cuda:{}", self.cuda_device_id),
            ),
        };
        Ok(BackendLoad {
            model: runtime.load(onnx, device, threads)?,
            backend,
            execution_provider,
            note,
            ort_threads: Some(threads),
        })
    }
}

/// Inputs a model can take: as many as it declares, each of its declared element type.
pub(crate) fn check_inputs(
    signature: &ModelSignature,
    inputs: &[Tensor],
) -> Result<(), ServingError> {
    if inputs.len() != signature.inputs.len() {
        return Err(ServingError::InvalidInput(format!(
            "the model takes {} inputs, {} were given",
            signature.inputs.len(),
            inputs.len()
        )));
    }
    for (tensor, spec) in inputs.iter().zip(&signature.inputs) {
        if tensor.data.element_type() != spec.element_type {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' takes {}, got {}",
                spec.name,
                spec.element_type.as_str(),
                tensor.data.element_type().as_str()
            )));
        }
    }
    Ok(())
}

/// One run with a batch of one and zeros everywhere: a model that loads but cannot run is refused
/// at deploy time rather than at its first request.
pub(crate) fn smoke_test(model: &dyn LoadedModel) -> Result<(), ServingError> {
    let inputs = crate::batching::zero_inputs(model.signature(), 1);
    model
        .infer(inputs)
        .map(|_| ())
        .map_err(|e| ServingError::InvalidModel(format!("a test inference failed: {e}")))
}

/// What a caught panic said, for an error message.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("no detail");
    format!("the backend panicked: {detail}")
}

/// Stands in for ONNX Runtime in a build without the `ort` feature.
#[cfg(not(feature = "ort"))]
mod without_ort {
    use std::sync::Arc;

    use super::{OrtDevice, OrtSettings, OrtThreads};
    use crate::{LoadedModel, ServingError};

    /// Never constructed: [`OrtRuntime::probe`] always reports why.
    #[derive(Debug, Clone)]
    pub(crate) enum OrtRuntime {}

    impl OrtRuntime {
        pub(crate) fn probe(_: &OrtSettings) -> Result<Self, String> {
            Err(
                "this build of maas has no ONNX Runtime support (built without the `ort` feature)"
                    .into(),
            )
        }

        pub(crate) fn cuda_unavailable(&self) -> Option<&str> {
            match *self {}
        }

        pub(crate) fn load(
            &self,
            _: &[u8],
            _: OrtDevice,
            _: OrtThreads,
        ) -> Result<Arc<dyn LoadedModel>, ServingError> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choices_read_what_they_write() {
        for choice in BackendChoice::ALL {
            assert_eq!(choice.as_str().parse::<BackendChoice>(), Ok(choice));
            let json = serde_json::to_string(&choice).unwrap();
            assert_eq!(json, format!("\"{}\"", choice.as_str()));
            assert_eq!(
                serde_json::from_str::<BackendChoice>(&json).unwrap(),
                choice
            );
        }
        let err = "onnx".parse::<BackendChoice>().unwrap_err();
        assert!(err.contains("auto, tract, ort-cpu, ort-cuda"), "{err}");
        assert_eq!(BackendChoice::default(), BackendChoice::Tract);
    }

    #[test]
    fn ort_settings_default_and_refuse_unknown_fields() {
        let settings: OrtSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(settings, OrtSettings::default());
        assert_eq!(settings.graph_optimization_level, GraphOptimization::All);
        let settings: OrtSettings = serde_json::from_str(
            r#"{"graph_optimization_level": "extended", "cuda_device_id": 1}"#,
        )
        .unwrap();
        assert_eq!(
            settings.graph_optimization_level,
            GraphOptimization::Extended
        );
        assert_eq!(settings.cuda_device_id, 1);
        assert!(serde_json::from_str::<OrtSettings>(r#"{"threads": 2}"#).is_err());
    }

    #[test]
    fn default_threads_share_the_cores_among_the_instances() {
        let defaults = OrtSettings::default();
        let threads = |instances, cores| defaults.threads(instances, cores);
        assert_eq!(
            threads(1, 8),
            OrtThreads {
                intra_op: 8,
                inter_op: 1
            }
        );
        assert_eq!(threads(2, 8).intra_op, 4);
        assert_eq!(threads(3, 8).intra_op, 2);
        assert_eq!(threads(2, 2).intra_op, 1);
        // More instances than cores: one thread each, never zero.
        assert_eq!(threads(4, 2).intra_op, 1);
        assert_eq!(threads(1, 1).intra_op, 1);
        for instances in 1..=16 {
            for cores in instances..=64 {
                let t = threads(instances, cores);
                assert!(instances * t.intra_op <= cores, "{instances} on {cores}");
                assert!(
                    instances * t.intra_op > cores - instances,
                    "{instances} on {cores}"
                );
                assert_eq!(t.inter_op, 1);
                assert_eq!(defaults.oversubscription(instances, cores), None);
            }
        }
        // The defaults warn about nothing, even with more instances than cores.
        assert_eq!(defaults.oversubscription(4, 2), None);
    }

    #[test]
    fn explicit_threads_are_honoured_and_oversubscription_is_named() {
        let settings = OrtSettings {
            intra_op_threads: 3,
            ..OrtSettings::default()
        };
        assert_eq!(settings.threads(2, 8).intra_op, 3);
        assert_eq!(settings.oversubscription(2, 8), None);
        assert_eq!(settings.threads(2, 4).intra_op, 3);
        let why = settings.oversubscription(2, 4).unwrap();
        assert!(
            why.contains(
                "2 instance(s) × serving.ort.intra_op_threads = 3 is 6 threads for 4 core(s)"
            ),
            "{why}"
        );
        let parallel = OrtSettings {
            inter_op_threads: 4,
            ..OrtSettings::default()
        };
        assert_eq!(
            parallel.threads(1, 4),
            OrtThreads {
                intra_op: 4,
                inter_op: 4
            }
        );
        assert!(parallel
            .oversubscription(2, 4)
            .unwrap()
            .contains("inter_op_threads"));
        let sequential = OrtSettings {
            inter_op_threads: 1,
            ..OrtSettings::default()
        };
        assert_eq!(sequential.threads(1, 4).inter_op, 1);
    }

    #[cfg(not(feature = "ort"))]
    #[test]
    fn without_the_ort_feature_auto_is_tract_and_says_why() {
        let backends = Backends::new(&OrtSettings::default());
        assert!(backends
            .ort_unavailable()
            .unwrap()
            .contains("`ort` feature"));
        assert!(!backends.cuda_available());
        let err = backends.load(BackendChoice::OrtCpu, b"").unwrap_err();
        assert!(matches!(err, ServingError::BackendUnavailable(_)), "{err}");
    }
}
