//! ONNX Runtime through `ort`, on CPU or CUDA. The library is loaded at run time from a path
//! (`load-dynamic`): nothing is linked or downloaded at build time, and a process that cannot
//! load it still serves with tract.
//!
//! ONNX Runtime is process-wide: ort allows one library and one environment per process, so the
//! first library that loads is kept, with its environment, for the life of the process.
//! `Session::run` takes `&mut self` (some execution-provider internals are not thread-safe), so
//! each loaded model holds its session behind a mutex; concurrency comes from loading a model
//! several times.
//!
//! Signatures: inputs are read from the ONNX graph like tract's, so dimension names agree;
//! outputs come from the session's metadata, with unknown dimensions named by the same rule
//! (the exporter's name, else `N` for axis 0). Outputs of small integer types are widened the
//! way tract widens them (to int32, or to int64 for unsigned 32- and 64-bit).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{AutoDevicePolicy, GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{
    DynValue, PrimitiveTensorElementType, Shape, Tensor as OrtTensor, TensorElementType, ValueType,
};
use parking_lot::Mutex;
use prost::Message;
use tract_onnx::pb;

use crate::backend::{check_inputs, panic_text, smoke_test, OrtDevice};
use crate::onnx_graph::{declared_inputs, declared_output_names, dim, graph, parse_model};
use crate::{
    ElementType, GraphOptimization, LoadedModel, ModelSignature, OrtSettings, OrtThreads,
    ServingError, Tensor, TensorData, TensorSpec,
};

/// The ONNX Runtime library this process loaded, and the environment started from it (or why it
/// did not start). Set once; later probes reuse it.
static LOADED: Mutex<Option<LoadedLibrary>> = Mutex::new(None);

struct LoadedLibrary {
    path: PathBuf,
    environment: Result<Environment, String>,
}

const NOT_CONFIGURED: &str = "ORT_DYLIB_PATH is not set and no ONNX Runtime library path is \
    configured; point either at libonnxruntime.so.1.31.x (from the onnxruntime 1.31 wheel, in \
    onnxruntime/capi/)";

/// A loaded, working ONNX Runtime and the settings its sessions use.
#[derive(Debug, Clone)]
pub(crate) struct OrtRuntime {
    environment: Environment,
    library: PathBuf,
    settings: OrtSettings,
    cuda_unavailable: Option<String>,
}

impl OrtRuntime {
    /// Load the library the settings (or `ORT_DYLIB_PATH`) name, start the environment and run a
    /// one-node model on CPU, then on CUDA when the library has that execution provider.
    pub(crate) fn probe(settings: &OrtSettings) -> Result<Self, String> {
        let library = match &settings.dylib_path {
            Some(path) => path.clone(),
            None => match std::env::var_os("ORT_DYLIB_PATH") {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => return Err(NOT_CONFIGURED.into()),
            },
        };
        let environment = environment(&library)?;
        let mut runtime = OrtRuntime {
            environment,
            library,
            settings: settings.clone(),
            cuda_unavailable: None,
        };
        runtime
            .load(&probe_model(), OrtDevice::Cpu, PROBE_THREADS)
            .map_err(|e| {
                format!(
                    "ONNX Runtime from {} loaded but cannot run a one-node model: {e}",
                    runtime.library.display()
                )
            })?;
        runtime.cuda_unavailable = runtime.probe_cuda();
        Ok(runtime)
    }

    /// None when CUDA runs the probe model, else why not.
    pub(crate) fn cuda_unavailable(&self) -> Option<&str> {
        self.cuda_unavailable.as_deref()
    }

    fn probe_cuda(&self) -> Option<String> {
        match catch_unwind(ep::CUDA::is_available) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                return Some(format!(
                    "the ONNX Runtime library at {} has no CUDA execution provider (it is a \
                     CPU build; the onnxruntime-gpu wheel has CUDA)",
                    self.library.display()
                ))
            }
            Ok(Err(e)) => {
                return Some(format!(
                    "ONNX Runtime could not list its execution providers: {e}"
                ))
            }
            Err(panic) => return Some(panic_text(&panic)),
        }
        let device = self.settings.cuda_device_id;
        self.load(&probe_model(), OrtDevice::Cuda, PROBE_THREADS)
            .err()
            .map(|e| format!("a one-node model does not run on CUDA device {device}: {e}"))
    }

    /// Parse, optimise and smoke-test a model in a new session.
    pub(crate) fn load(
        &self,
        onnx: &[u8],
        device: OrtDevice,
        threads: OrtThreads,
    ) -> Result<Arc<dyn LoadedModel>, ServingError> {
        // Reading the graph first refuses garbage before ONNX Runtime sees it, and gives the
        // inputs the same names as tract's.
        let proto = parse_model(onnx)?;
        let graph = graph(&proto)?;
        let inputs = declared_inputs(graph)?;
        // Refused like tract refuses it; the outputs themselves come from the session.
        declared_output_names(graph)?;
        let model = catch_unwind(AssertUnwindSafe(|| -> Result<OrtModel, ServingError> {
            let session = self.session(onnx, device, threads)?;
            let outputs = session
                .outputs()
                .iter()
                .map(|outlet| output_spec(outlet.name(), outlet.dtype()))
                .collect::<Result<_, _>>()?;
            Ok(OrtModel {
                signature: ModelSignature { inputs, outputs },
                session: Mutex::new(session),
            })
        }))
        .map_err(|panic| ServingError::InvalidModel(panic_text(&panic)))??;
        smoke_test(&model)?;
        Ok(Arc::new(model))
    }

    fn session(
        &self,
        onnx: &[u8],
        device: OrtDevice,
        threads: OrtThreads,
    ) -> Result<Session, ServingError> {
        let settings = &self.settings;
        let refused = |e: ort::Error<SessionBuilder>| {
            ServingError::BackendUnavailable(format!(
                "ONNX Runtime refused the session settings: {e}"
            ))
        };
        let mut builder = Session::builder(&self.environment)
            .map_err(|e| ServingError::BackendUnavailable(format!("ONNX Runtime: {e}")))?
            .with_optimization_level(optimization_level(settings.graph_optimization_level))
            .map_err(refused)?;
        // Always set: ONNX Runtime's own default is a thread per physical core for every
        // session, which several instances (or versions) multiply past the cores.
        builder = builder
            .with_intra_threads(threads.intra_op)
            .map_err(refused)?;
        if threads.inter_op > 1 {
            // Inter-op threads are only used in parallel execution mode; the default,
            // sequential mode starts no inter-op pool.
            builder = builder
                .with_parallel_execution(true)
                .map_err(refused)?
                .with_inter_threads(threads.inter_op)
                .map_err(refused)?;
        }
        let mut builder = match device {
            // Never let automatic device selection move an ort-cpu model onto an accelerator.
            OrtDevice::Cpu => builder
                .with_auto_device(AutoDevicePolicy::PreferCPU)
                .map_err(refused)?,
            OrtDevice::Cuda => {
                let mut cuda = ep::CUDA::default().with_device_id(settings.cuda_device_id);
                if settings.cuda_memory_limit_bytes > 0 {
                    let limit =
                        usize::try_from(settings.cuda_memory_limit_bytes).unwrap_or(usize::MAX);
                    cuda = cuda.with_memory_limit(limit);
                }
                // error_on_failure: a CUDA request that cannot be met fails instead of
                // quietly running on CPU.
                builder
                    .with_execution_providers([cuda.build().error_on_failure()])
                    .map_err(|e| {
                        ServingError::BackendUnavailable(format!(
                            "the CUDA execution provider did not start on device {}: {e}",
                            settings.cuda_device_id
                        ))
                    })?
            }
        };
        builder
            .commit_from_memory(onnx)
            .map_err(|e| ServingError::InvalidModel(format!("ONNX Runtime: {e}")))
    }
}

/// The probe's one-node model needs no pool.
const PROBE_THREADS: OrtThreads = OrtThreads {
    intra_op: 1,
    inter_op: 1,
};

/// Load the library and start the environment, once per process.
fn environment(path: &Path) -> Result<Environment, String> {
    let mut loaded = LOADED.lock();
    if let Some(library) = loaded.as_ref() {
        if same_file(&library.path, path) {
            return library.environment.clone();
        }
        return Err(format!(
            "ONNX Runtime is already loaded from {} in this process; {} cannot be loaded \
             beside it",
            library.path.display(),
            path.display()
        ));
    }
    let started = catch_unwind(|| {
        let builder = ort::init_from(path).map_err(|e| {
            let detail = match &e {
                // ort's message stops at "dlopen failed"; the loader's own words are the source.
                ort::LoadDynamicError::Dlopen { error, .. } => with_sources(error),
                other => other.to_string(),
            };
            format!("cannot load ONNX Runtime from {}: {detail}", path.display())
        })?;
        // From here on the library stays loaded, whatever happens to the environment.
        Ok(builder
            .with_name("maas")
            .with_telemetry(false)
            .build()
            .map_err(|e| {
                format!(
                    "ONNX Runtime loaded from {} but its environment did not start: {e}",
                    path.display()
                )
            }))
    });
    let environment = match started {
        // Nothing was loaded; another path may still be tried.
        Ok(Err(why)) => return Err(why),
        Ok(Ok(environment)) => environment,
        // The library may or may not be loaded now; never load a second one beside it.
        Err(panic) => Err(format!(
            "loading ONNX Runtime from {} failed: {}",
            path.display(),
            panic_text(&panic)
        )),
    };
    *loaded = Some(LoadedLibrary {
        path: path.to_path_buf(),
        environment: environment.clone(),
    });
    environment
}

/// An error and the errors beneath it, outermost first.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn optimization_level(level: GraphOptimization) -> GraphOptimizationLevel {
    match level {
        GraphOptimization::Disable => GraphOptimizationLevel::Disable,
        GraphOptimization::Basic => GraphOptimizationLevel::Level1,
        GraphOptimization::Extended => GraphOptimizationLevel::Level2,
        GraphOptimization::All => GraphOptimizationLevel::All,
    }
}

/// One output as the session's metadata declares it.
fn output_spec(name: &str, dtype: &ValueType) -> Result<TensorSpec, ServingError> {
    let ValueType::Tensor {
        ty,
        shape,
        dimension_symbols,
    } = dtype
    else {
        return Err(ServingError::UnsupportedModel(format!(
            "output '{name}' is a {dtype}, not a tensor; maas returns tensors only"
        )));
    };
    let element_type = element_type_of_ort(*ty).ok_or_else(|| {
        ServingError::UnsupportedModel(format!(
            "output '{name}' has element type {ty}, which maas cannot return"
        ))
    })?;
    let shape = shape
        .iter()
        .enumerate()
        .map(|(axis, size)| {
            let symbol = dimension_symbols.get(axis).map(String::as_str);
            dim(axis, Some(*size), symbol)
        })
        .collect();
    Ok(TensorSpec {
        name: name.to_owned(),
        element_type,
        shape,
    })
}

fn element_type_of_ort(ty: TensorElementType) -> Option<ElementType> {
    match ty {
        TensorElementType::Float32 => Some(ElementType::Float32),
        TensorElementType::Float64 => Some(ElementType::Float64),
        TensorElementType::Int8
        | TensorElementType::Uint8
        | TensorElementType::Int16
        | TensorElementType::Uint16
        | TensorElementType::Int32 => Some(ElementType::Int32),
        TensorElementType::Int64 | TensorElementType::Uint32 | TensorElementType::Uint64 => {
            Some(ElementType::Int64)
        }
        TensorElementType::Bool => Some(ElementType::Bool),
        TensorElementType::String => Some(ElementType::String),
        _ => None,
    }
}

/// A tiny model (`y = Identity(x)`, one float) that shows a runtime and device work.
fn probe_model() -> Vec<u8> {
    use pb::tensor_shape_proto::dimension::Value as DimValue;
    use pb::type_proto::Value as TypeValue;
    let value = |name: &str| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(TypeValue::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![pb::tensor_shape_proto::Dimension {
                        value: Some(DimValue::DimValue(1)),
                        ..Default::default()
                    }],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(pb::GraphProto {
            name: "probe".into(),
            node: vec![pb::NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                op_type: "Identity".into(),
                ..Default::default()
            }],
            input: vec![value("x")],
            output: vec![value("y")],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

struct OrtModel {
    signature: ModelSignature,
    session: Mutex<Session>,
}

impl LoadedModel for OrtModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
        check_inputs(&self.signature, &inputs)?;
        let feeds = inputs
            .into_iter()
            .zip(&self.signature.inputs)
            .map(|(tensor, spec)| Ok((spec.name.as_str(), to_ort(tensor)?)))
            .collect::<Result<Vec<_>, ServingError>>()?;
        let mut session = self.session.lock();
        catch_unwind(AssertUnwindSafe(|| {
            let outputs = session
                .run(feeds)
                .map_err(|e| ServingError::Inference(e.to_string()))?;
            self.signature
                .outputs
                .iter()
                .map(|spec| {
                    let value = outputs.get(&spec.name).ok_or_else(|| {
                        ServingError::Inference(format!(
                            "ONNX Runtime returned no output '{}'",
                            spec.name
                        ))
                    })?;
                    from_ort(&spec.name, value)
                })
                .collect()
        }))
        .map_err(|panic| ServingError::Inference(panic_text(&panic)))?
    }
}

fn to_ort(tensor: Tensor) -> Result<DynValue, ServingError> {
    let expected: usize = tensor.shape.iter().product();
    if expected != tensor.data.len() {
        return Err(ServingError::InvalidInput(format!(
            "shape {:?} holds {expected} elements but {} were given",
            tensor.shape,
            tensor.data.len()
        )));
    }
    let shape = tensor.shape;
    let value = match tensor.data {
        TensorData::Float32(v) => OrtTensor::from_array((shape, v)).map(DynValue::from),
        TensorData::Float64(v) => OrtTensor::from_array((shape, v)).map(DynValue::from),
        TensorData::Int32(v) => OrtTensor::from_array((shape, v)).map(DynValue::from),
        TensorData::Int64(v) => OrtTensor::from_array((shape, v)).map(DynValue::from),
        TensorData::Bool(v) => OrtTensor::from_array((shape, v)).map(DynValue::from),
        TensorData::String(v) => {
            OrtTensor::from_string_array((shape, v.as_slice())).map(DynValue::from)
        }
    };
    value.map_err(|e| ServingError::InvalidInput(e.to_string()))
}

fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, ServingError> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(ServingError::Inference(format!(
            "output '{name}' is a {}, not a tensor; maas returns tensors only",
            value.dtype()
        )));
    };
    let failed = |e: ort::Error| ServingError::Inference(format!("output '{name}': {e}"));
    let (shape, data) = match ty {
        TensorElementType::Float32 => {
            let (shape, v) = value.try_extract_tensor::<f32>().map_err(failed)?;
            (shape, TensorData::Float32(v.to_vec()))
        }
        TensorElementType::Float64 => {
            let (shape, v) = value.try_extract_tensor::<f64>().map_err(failed)?;
            (shape, TensorData::Float64(v.to_vec()))
        }
        TensorElementType::Int32 => {
            let (shape, v) = value.try_extract_tensor::<i32>().map_err(failed)?;
            (shape, TensorData::Int32(v.to_vec()))
        }
        TensorElementType::Int64 => {
            let (shape, v) = value.try_extract_tensor::<i64>().map_err(failed)?;
            (shape, TensorData::Int64(v.to_vec()))
        }
        TensorElementType::Bool => {
            let (shape, v) = value.try_extract_tensor::<bool>().map_err(failed)?;
            (shape, TensorData::Bool(v.to_vec()))
        }
        TensorElementType::String => {
            let (shape, v) = value.try_extract_strings().map_err(failed)?;
            (shape, TensorData::String(v))
        }
        TensorElementType::Int8 => widen::<i8, i32>(name, value, TensorData::Int32)?,
        TensorElementType::Uint8 => widen::<u8, i32>(name, value, TensorData::Int32)?,
        TensorElementType::Int16 => widen::<i16, i32>(name, value, TensorData::Int32)?,
        TensorElementType::Uint16 => widen::<u16, i32>(name, value, TensorData::Int32)?,
        TensorElementType::Uint32 => widen::<u32, i64>(name, value, TensorData::Int64)?,
        TensorElementType::Uint64 => widen::<u64, i64>(name, value, TensorData::Int64)?,
        other => {
            return Err(ServingError::Inference(format!(
                "output '{name}' has element type {other}, which maas cannot return"
            )))
        }
    };
    let shape = shape
        .iter()
        .map(|&n| usize::try_from(n))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ServingError::Inference(format!("output '{name}' has a negative dimension"))
        })?;
    Ok(Tensor { shape, data })
}

/// An integer output converted to the wider type maas returns it as.
fn widen<'v, T, U>(
    name: &str,
    value: &'v DynValue,
    wrap: fn(Vec<U>) -> TensorData,
) -> Result<(&'v Shape, TensorData), ServingError>
where
    T: PrimitiveTensorElementType + Copy + std::fmt::Display + 'v,
    U: TryFrom<T>,
{
    let (shape, v) = value
        .try_extract_tensor::<T>()
        .map_err(|e| ServingError::Inference(format!("output '{name}': {e}")))?;
    let wide = v
        .iter()
        .map(|&x| {
            U::try_from(x).map_err(|_| {
                ServingError::Inference(format!(
                    "output '{name}' holds {x}, which does not fit the type maas returns"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((shape, wrap(wide)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    #[test]
    fn the_probe_model_is_an_identity_that_tract_runs_too() {
        let loaded = crate::TractBackend.load(&probe_model()).unwrap();
        let sig = loaded.signature();
        assert_eq!(sig.inputs[0].name, "x");
        assert_eq!(sig.outputs[0].name, "y");
        let out = loaded
            .infer(vec![
                Tensor::new(vec![1], TensorData::Float32(vec![2.5])).unwrap()
            ])
            .unwrap();
        assert_eq!(out[0].data, TensorData::Float32(vec![2.5]));
    }
}
