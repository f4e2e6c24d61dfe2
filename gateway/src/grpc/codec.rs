//! The gRPC codec of the inference pipeline: a `ModelInferRequest`'s inputs (typed `contents`, or
//! `raw_input_contents`, one entry per input) become the model's tensors, and its outputs come
//! back the way the inputs came: raw when they were sent raw (as Triton answers), typed otherwise.

use bytes::Bytes;
use maas_serving::io::{v2_bytes, v2_datatype, v2_tensor_from_bytes, v2_tensor_from_values};
use maas_serving::{ElementType, ServedVersion, Tensor, TensorData};
use serde_json::{json, Value};

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferResponse};
use crate::services::drift::DriftResult;
use crate::services::error::{ErrorKind, ServiceError};
use crate::services::inference::Codec;
use crate::services::open_inference::{self as oip, logged_tensor};

pub struct GrpcCodec {
    pub id: String,
    pub inputs: Vec<InferInputTensor>,
    pub outputs: Vec<InferRequestedOutputTensor>,
    pub raw: Vec<Bytes>,
}

fn invalid(message: String) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidInput, message)
}

/// The typed contents an input of `element_type` is read from, taken out of `contents`.
fn typed(
    element_type: ElementType,
    contents: &mut InferTensorContents,
    name: &str,
) -> Result<(TensorData, &'static str), ServiceError> {
    Ok(match element_type {
        ElementType::Float32 => (
            TensorData::Float32(std::mem::take(&mut contents.fp32_contents)),
            "fp32_contents",
        ),
        ElementType::Float64 => (
            TensorData::Float64(std::mem::take(&mut contents.fp64_contents)),
            "fp64_contents",
        ),
        ElementType::Int32 => (
            TensorData::Int32(std::mem::take(&mut contents.int_contents)),
            "int_contents",
        ),
        ElementType::Int64 => (
            TensorData::Int64(std::mem::take(&mut contents.int64_contents)),
            "int64_contents",
        ),
        ElementType::Bool => (
            TensorData::Bool(std::mem::take(&mut contents.bool_contents)),
            "bool_contents",
        ),
        ElementType::String => {
            let texts = std::mem::take(&mut contents.bytes_contents)
                .into_iter()
                .map(|b| {
                    String::from_utf8(b.to_vec()).map_err(|_| {
                        invalid(format!("input '{name}': a BYTES element is not UTF-8"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            (TensorData::String(texts), "bytes_contents")
        }
    })
}

/// Whether an input's typed contents hold anything.
fn has_contents(c: &InferTensorContents) -> bool {
    !(c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp32_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty())
}

/// A tensor's elements as typed contents.
fn contents(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Float32(v) => c.fp32_contents = v,
        TensorData::Float64(v) => c.fp64_contents = v,
        TensorData::Int32(v) => c.int_contents = v,
        TensorData::Int64(v) => c.int64_contents = v,
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::String(v) => c.bytes_contents = v.into_iter().map(Bytes::from).collect(),
    }
    c
}

/// A JSON value as a string parameter.
pub fn json_parameter(value: &impl serde::Serialize) -> Result<InferParameter, ServiceError> {
    let text = serde_json::to_string(value)
        .map_err(|e| ServiceError::internal(format!("encoding a parameter: {e}")))?;
    Ok(InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(text)),
    })
}

impl Codec for GrpcCodec {
    type Answer = ModelInferResponse;

    fn decode(
        &mut self,
        served: &ServedVersion,
        log: bool,
    ) -> Result<(Vec<Tensor>, Option<Value>), ServiceError> {
        let signature = served.loaded.signature();
        if !self.raw.is_empty() && self.raw.len() != self.inputs.len() {
            return Err(invalid(format!(
                "raw_input_contents has {} entries for {} inputs; send one per input, in the inputs' order, or send every input's contents typed",
                self.raw.len(),
                self.inputs.len()
            )));
        }
        let mut contents: Vec<InferTensorContents> = self
            .inputs
            .iter_mut()
            .map(|i| i.contents.take().unwrap_or_default())
            .collect();
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        let requested = self.outputs.iter().map(|o| o.name.as_str());
        let tensors = oip::bind_inputs(signature, &names, requested, |ix, spec| {
            let input = &self.inputs[ix];
            let tensor = match self.raw.get(ix) {
                Some(raw) => {
                    if has_contents(&contents[ix]) {
                        return Err(invalid(format!(
                            "input '{}' has both typed contents and raw_input_contents; send one",
                            input.name
                        )));
                    }
                    v2_tensor_from_bytes(spec, &input.datatype, &input.shape, raw)
                }
                None => {
                    let (data, field) = typed(spec.element_type, &mut contents[ix], &spec.name)?;
                    v2_tensor_from_values(spec, &input.datatype, &input.shape, data, field)
                }
            };
            Ok(tensor?)
        })?;
        let logged = log.then(|| oip::logged_inputs(signature, &tensors));
        Ok((tensors, logged))
    }

    fn encode(
        self,
        served: &ServedVersion,
        results: Vec<Tensor>,
        drift: Option<DriftResult>,
        log: bool,
    ) -> Result<(ModelInferResponse, Option<Value>), ServiceError> {
        let signature = served.loaded.signature();
        let raw = !self.raw.is_empty();
        let mut response = ModelInferResponse {
            model_name: served.model.clone(),
            model_version: served.version.to_string(),
            id: self.id,
            ..ModelInferResponse::default()
        };
        let mut logged = Vec::new();
        for (spec, tensor) in signature.outputs.iter().zip(results) {
            if !self.outputs.is_empty() && !self.outputs.iter().any(|o| o.name == spec.name) {
                continue;
            }
            if log {
                logged.push(logged_tensor(&spec.name, &tensor));
            }
            let mut output = InferOutputTensor {
                name: spec.name.clone(),
                datatype: v2_datatype(tensor.data.element_type()).into(),
                shape: tensor
                    .shape
                    .iter()
                    .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                    .collect(),
                ..InferOutputTensor::default()
            };
            if raw {
                response
                    .raw_output_contents
                    .push(Bytes::from(v2_bytes(&tensor)));
            } else {
                output.contents = Some(contents(tensor.data));
            }
            response.outputs.push(output);
        }
        if let Some(drift) = drift {
            response
                .parameters
                .insert("drift".into(), json_parameter(&drift)?);
        }
        Ok((response, log.then(|| json!({ "outputs": logged }))))
    }
}
