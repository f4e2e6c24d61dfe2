//! What an ONNX file declares, read from its protobuf: the graph's fed inputs with their element
//! types and dimension names, and its output names.
//!
//! Every backend builds its signature's inputs here, so a symbolic dimension has the same name
//! whichever engine runs the model: the name the exporter gave it, else `N` for axis 0 (skl2onnx
//! declares a free batch dimension with neither a size nor a name) and `d<axis>` for the others.

use std::collections::HashSet;

use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as DimValue;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::prelude::Framework;

use crate::{Dim, ElementType, ServingError, TensorSpec};

/// Decode the protobuf; nothing is checked beyond its being a model with a graph.
pub(crate) fn parse_model(onnx: &[u8]) -> Result<pb::ModelProto, ServingError> {
    if onnx.is_empty() {
        return Err(ServingError::InvalidModel("the file is empty".into()));
    }
    if let Some(other) = other_format(onnx) {
        return Err(ServingError::InvalidModel(other));
    }
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &onnx[..])
        .map_err(|_| {
            ServingError::InvalidModel(
                "the file is not an ONNX model (it does not decode as ONNX's protobuf); export \
                 the model to ONNX first (skl2onnx, torch.onnx.export, tf2onnx)"
                    .into(),
            )
        })?;
    if proto.graph.is_none() {
        return Err(ServingError::InvalidModel(
            "the ONNX file has no graph".into(),
        ));
    }
    Ok(proto)
}

/// What a file that is not ONNX most likely is, from its first bytes, and how to convert it: the
/// formats people upload by mistake are pickles (scikit-learn, joblib), zip archives (PyTorch's
/// `.pt`, Keras's `.keras`) and HDF5 (Keras's `.h5`).
fn other_format(file: &[u8]) -> Option<String> {
    match file {
        [0x80, 2..=5, ..] => Some(
            "the file is a Python pickle (scikit-learn or joblib), not ONNX: maas serves ONNX; \
             convert scikit-learn models with skl2onnx (`skl2onnx.to_onnx(model, X[:1])`) and \
             upload the .onnx file"
                .into(),
        ),
        [b'P', b'K', 3, 4, ..] => Some(
            "the file is a zip archive (a PyTorch .pt or a Keras .keras model?), not ONNX: maas \
             serves ONNX; export PyTorch models with torch.onnx.export and Keras models with tf2onnx"
                .into(),
        ),
        [0x89, b'H', b'D', b'F', ..] => Some(
            "the file is HDF5 (a Keras .h5 model?), not ONNX: maas serves ONNX; convert it with \
             tf2onnx"
                .into(),
        ),
        _ => None,
    }
}

/// The graph of a model that [`parse_model`] accepted.
pub(crate) fn graph(proto: &pb::ModelProto) -> Result<&pb::GraphProto, ServingError> {
    proto
        .graph
        .as_ref()
        .ok_or_else(|| ServingError::InvalidModel("the ONNX file has no graph".into()))
}

/// Graph inputs that are fed at run time (older exporters also list initializers as inputs).
pub(crate) fn declared_inputs(graph: &pb::GraphProto) -> Result<Vec<TensorSpec>, ServingError> {
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut specs = Vec::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let Some(TypeValue::TensorType(tensor)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(ServingError::UnsupportedModel(format!(
                "input '{}' is not a tensor; maas feeds tensors only",
                input.name
            )));
        };
        let element_type = element_type_of_onnx(tensor.elem_type).ok_or_else(|| {
            ServingError::UnsupportedModel(format!(
                "input '{}' has ONNX element type {}, which maas cannot feed",
                input.name, tensor.elem_type
            ))
        })?;
        let dims = tensor
            .shape
            .as_ref()
            .map(|s| s.dim.as_slice())
            .unwrap_or_default();
        let shape = dims
            .iter()
            .enumerate()
            .map(|(axis, d)| match &d.value {
                Some(DimValue::DimValue(n)) => dim(axis, Some(*n), None),
                Some(DimValue::DimParam(p)) => dim(axis, None, Some(p)),
                None => dim(axis, None, None),
            })
            .collect();
        specs.push(TensorSpec {
            name: input.name.clone(),
            element_type,
            shape,
        });
    }
    if specs.is_empty() {
        return Err(ServingError::InvalidModel(
            "the graph declares no input".into(),
        ));
    }
    Ok(specs)
}

/// Names of the graph's outputs, in order; a graph without one, or with one that nothing in
/// the graph names, is refused.
pub(crate) fn declared_output_names(graph: &pb::GraphProto) -> Result<Vec<String>, ServingError> {
    let names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    if names.is_empty() {
        return Err(ServingError::InvalidModel(
            "the graph declares no output".into(),
        ));
    }
    // tract looks each output up by name among the values the graph names and panics on a name
    // it does not find (found by fuzzing: fuzz/regressions/onnx/output-named-by-nothing).
    let named: HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .chain(
            graph
                .node
                .iter()
                .flat_map(|n| n.input.iter().chain(&n.output).map(String::as_str)),
        )
        .collect();
    if let Some(orphan) = names.iter().find(|n| !named.contains(n.as_str())) {
        return Err(ServingError::InvalidModel(format!(
            "output '{orphan}' is not produced by any node, input or initializer of the graph"
        )));
    }
    Ok(names)
}

/// One declared dimension: a positive size is fixed; otherwise the exporter's name when it is a
/// usable symbol, else `N` for axis 0 and `d<axis>` for the others.
pub(crate) fn dim(axis: usize, size: Option<i64>, name: Option<&str>) -> Dim {
    match (size, name) {
        (Some(n), _) if n > 0 => Dim::Fixed(n as usize),
        (_, Some(p)) if is_symbol_name(p) => Dim::Symbolic(p.to_owned()),
        _ if axis == 0 => Dim::Symbolic("N".into()),
        _ => Dim::Symbolic(format!("d{axis}")),
    }
}

fn is_symbol_name(p: &str) -> bool {
    let mut chars = p.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn element_type_of_onnx(code: i32) -> Option<ElementType> {
    use pb::tensor_proto::DataType;
    match DataType::try_from(code).ok()? {
        DataType::Float => Some(ElementType::Float32),
        DataType::Double => Some(ElementType::Float64),
        DataType::Int32 => Some(ElementType::Int32),
        DataType::Int64 => Some(ElementType::Int64),
        DataType::Bool => Some(ElementType::Bool),
        DataType::String => Some(ElementType::String),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_dimensions_get_stable_names() {
        assert_eq!(dim(0, Some(4), None), Dim::Fixed(4));
        assert_eq!(dim(0, None, Some("batch")), Dim::Symbolic("batch".into()));
        assert_eq!(dim(0, Some(-1), Some("")), Dim::Symbolic("N".into()));
        assert_eq!(dim(0, Some(0), None), Dim::Symbolic("N".into()));
        assert_eq!(dim(2, None, Some("2*N")), Dim::Symbolic("d2".into()));
        assert_eq!(dim(1, None, None), Dim::Symbolic("d1".into()));
    }

    /// tract panics on such a graph; the signature reader refuses it first.
    #[test]
    fn an_output_that_nothing_produces_is_refused() {
        let path = format!(
            "{}/../fuzz/regressions/onnx/output-named-by-nothing",
            env!("CARGO_MANIFEST_DIR")
        );
        let proto = parse_model(&std::fs::read(path).unwrap()).unwrap();
        let err = declared_output_names(graph(&proto).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("output 'varXable' is not produced"),
            "{err}"
        );
    }
}
