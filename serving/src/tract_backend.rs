//! The default, pure-Rust backend: tract.
//!
//! skl2onnx declares a free batch dimension with neither a size nor a name; tract refuses to
//! optimise such a model, so every unnamed dimension gets a symbol (`N` for axis 0) before
//! optimisation. The signature shown to users is read from the ONNX graph itself, so the names
//! people gave their dimensions survive.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, TDim, TValue,
    Tensor as TractTensor, TypedRunnableModel, TypedSimpleState,
};
use tract_onnx::tract_hir::internal::{DimLike, IntoTValue};

use crate::backend::{check_inputs, panic_text, smoke_test};
use crate::linear;
use crate::onnx_graph::{declared_inputs, declared_output_names, graph, parse_model};
use crate::{
    Backend, BackendKind, Dim, ElementType, LoadedModel, ModelSignature, ServingError, Tensor,
    TensorData, TensorSpec,
};

/// Loads ONNX models with tract.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

struct TractModel {
    signature: ModelSignature,
    plan: Arc<TypedRunnableModel>,
    /// Run states kept between runs (one per thread that ran at once): a fresh state allocates
    /// a slot for every node's value and every op's scratch, about a sixth of a small model's
    /// run.
    states: parking_lot::Mutex<Vec<TypedSimpleState>>,
}

impl Backend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    /// tract's plan, or, for a linear model whose answers on probe rows match that plan's, the
    /// native [`linear`] kernel.
    fn load(&self, onnx: &[u8]) -> Result<Arc<dyn LoadedModel>, ServingError> {
        let proto = parse_model(onnx)?;
        let loaded = match load_checked(&proto) {
            Ok(loaded) => loaded,
            Err(e) => {
                // tract cannot build a LinearClassifier with string labels; the kernel can.
                return match linear::with_string_labels(&proto, load_checked)? {
                    Some(kernel) => Ok(Arc::new(kernel)),
                    None => Err(e),
                };
            }
        };
        Ok(match linear::checked(graph(&proto)?, &loaded) {
            Some(kernel) => Arc::new(kernel),
            None => Arc::new(loaded),
        })
    }
}

/// tract's plan alone, never the linear kernel (for comparing the two).
#[cfg(test)]
pub(crate) fn load_plain(onnx: &[u8]) -> Result<Arc<dyn LoadedModel>, ServingError> {
    Ok(Arc::new(load_checked(&parse_model(onnx)?)?))
}

fn load_checked(proto: &tract_onnx::pb::ModelProto) -> Result<TractModel, ServingError> {
    // tract asserts on some malformed graphs instead of returning an error; a bad upload
    // must become a clear 422, never a crashed worker.
    let loaded = catch_unwind(AssertUnwindSafe(|| load_tract(proto)))
        .map_err(|panic| ServingError::InvalidModel(panic_text(&panic)))??;
    smoke_test(&loaded)?;
    Ok(loaded)
}

fn invalid(e: impl std::fmt::Display) -> ServingError {
    ServingError::InvalidModel(format!("{e:#}"))
}

fn load_tract(proto: &tract_onnx::pb::ModelProto) -> Result<TractModel, ServingError> {
    let graph = graph(proto)?;
    let inputs = declared_inputs(graph)?;
    let output_names = declared_output_names(graph)?;

    let framework = tract_onnx::onnx();
    let mut model = framework.model_for_proto_model(proto).map_err(invalid)?;
    for (ix, spec) in inputs.iter().enumerate() {
        let dims: Vec<TDim> = spec
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => TDim::from(*n),
                Dim::Symbolic(name) => TDim::from(model.sym(name)),
            })
            .collect();
        let fact = InferenceFact::dt_shape(datum_type(spec.element_type), dims);
        model.set_input_fact(ix, fact).map_err(invalid)?;
    }
    // Declared output shapes are often wrong or partial in exported files; let tract infer them.
    for ix in 0..output_names.len() {
        model
            .set_output_fact(ix, InferenceFact::default())
            .map_err(invalid)?;
    }
    let typed = model.into_optimized().map_err(invalid)?;

    let mut outputs = Vec::with_capacity(output_names.len());
    for (ix, name) in output_names.into_iter().enumerate() {
        let fact = typed.output_fact(ix).map_err(invalid)?;
        let element_type = element_type_of_datum(fact.datum_type).ok_or_else(|| {
            ServingError::UnsupportedModel(format!(
                "output '{name}' has element type {:?}, which maas cannot return",
                fact.datum_type
            ))
        })?;
        let shape = fact
            .shape
            .iter()
            .map(|d| match d.to_usize() {
                Ok(n) => Dim::Fixed(n),
                Err(_) => Dim::Symbolic(d.to_string()),
            })
            .collect();
        outputs.push(TensorSpec {
            name,
            element_type,
            shape,
        });
    }
    let plan = typed.into_runnable().map_err(invalid)?;
    Ok(TractModel {
        signature: ModelSignature { inputs, outputs },
        plan,
        states: parking_lot::Mutex::new(Vec::new()),
    })
}

fn element_type_of_datum(dt: DatumType) -> Option<ElementType> {
    match dt {
        DatumType::F32 | DatumType::F16 => Some(ElementType::Float32),
        DatumType::F64 => Some(ElementType::Float64),
        DatumType::I32 | DatumType::I16 | DatumType::I8 | DatumType::U8 | DatumType::U16 => {
            Some(ElementType::Int32)
        }
        DatumType::I64 | DatumType::U32 | DatumType::U64 => Some(ElementType::Int64),
        DatumType::Bool => Some(ElementType::Bool),
        DatumType::String => Some(ElementType::String),
        _ => None,
    }
}

fn datum_type(t: ElementType) -> DatumType {
    match t {
        ElementType::Float32 => DatumType::F32,
        ElementType::Float64 => DatumType::F64,
        ElementType::Int32 => DatumType::I32,
        ElementType::Int64 => DatumType::I64,
        ElementType::Bool => DatumType::Bool,
        ElementType::String => DatumType::String,
    }
}

impl LoadedModel for TractModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
        check_inputs(&self.signature, &inputs)?;
        let values = inputs.into_iter().map(to_tract).collect::<Result<_, _>>()?;
        let pooled = self.states.lock().pop();
        let mut state = match pooled {
            Some(state) => state,
            None => self
                .plan
                .spawn()
                .map_err(|e| ServingError::Inference(format!("{e:#}")))?,
        };
        // A state whose run panicked or failed is dropped, never reused.
        let outputs = catch_unwind(AssertUnwindSafe(|| state.run(values)))
            .map_err(|panic| ServingError::Inference(panic_text(&panic)))?
            .map_err(|e| ServingError::Inference(format!("{e:#}")))?;
        self.states.lock().push(state);
        outputs.into_iter().map(|t| from_tract(&t)).collect()
    }
}

fn to_tract(tensor: Tensor) -> Result<TValue, ServingError> {
    use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
    fn build<T: tract_onnx::prelude::Datum>(
        shape: &[usize],
        data: Vec<T>,
    ) -> Result<TractTensor, ServingError> {
        ArrayD::from_shape_vec(IxDyn(shape), data)
            .map(TractTensor::from)
            .map_err(|e| ServingError::InvalidInput(e.to_string()))
    }
    let shape = tensor.shape;
    let t = match tensor.data {
        TensorData::Float32(v) => build(&shape, v)?,
        TensorData::Float64(v) => build(&shape, v)?,
        TensorData::Int32(v) => build(&shape, v)?,
        TensorData::Int64(v) => build(&shape, v)?,
        TensorData::Bool(v) => build(&shape, v)?,
        TensorData::String(v) => build(&shape, v)?,
    };
    Ok(t.into_tvalue())
}

fn from_tract(t: &TractTensor) -> Result<Tensor, ServingError> {
    fn copy<T: tract_onnx::prelude::Datum + Clone>(
        t: &TractTensor,
    ) -> Result<Vec<T>, ServingError> {
        let err = |e: tract_onnx::prelude::TractError| ServingError::Inference(format!("{e:#}"));
        let view = t.try_as_plain_ram().map_err(err)?;
        view.as_slice::<T>().map(<[T]>::to_vec).map_err(err)
    }
    fn cast<T: tract_onnx::prelude::Datum + Clone>(
        t: &TractTensor,
    ) -> Result<Vec<T>, ServingError> {
        let cast = t
            .cast_to::<T>()
            .map_err(|e| ServingError::Inference(format!("{e:#}")))?;
        copy::<T>(&cast)
    }
    let data = match t.datum_type() {
        DatumType::F32 => TensorData::Float32(copy(t)?),
        DatumType::F16 => TensorData::Float32(cast(t)?),
        DatumType::F64 => TensorData::Float64(copy(t)?),
        DatumType::I32 => TensorData::Int32(copy(t)?),
        DatumType::I16 | DatumType::I8 | DatumType::U8 | DatumType::U16 => {
            TensorData::Int32(cast(t)?)
        }
        DatumType::I64 => TensorData::Int64(copy(t)?),
        DatumType::U32 | DatumType::U64 => TensorData::Int64(cast(t)?),
        DatumType::Bool => TensorData::Bool(copy(t)?),
        DatumType::String => TensorData::String(copy(t)?),
        other => {
            return Err(ServingError::Inference(format!(
                "the model returned element type {other:?}, which maas cannot return"
            )))
        }
    };
    Ok(Tensor {
        shape: t.shape().to_vec(),
        data,
    })
}
