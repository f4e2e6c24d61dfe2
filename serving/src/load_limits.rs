//! Limits on what loading a model may cost, checked on the ONNX protobuf before any backend sees
//! it: a file of a few hundred bytes can ask for gigabytes (`ConstantOfShape` or `Expand` to a
//! constant shape of 10^10 elements) or for hours of graph analysis (hundreds of thousands of
//! nodes), and both backends would try.
//!
//! - **Nodes**, counted through every subgraph (`If`, `Loop`, `Scan` bodies), at most
//!   [`LoadLimits::max_graph_nodes`].
//! - **Memory**, estimated from what the file itself fixes: its initializers and constants, and
//!   the outputs whose size constants alone decide (`ConstantOfShape`, `Expand`, `Range`,
//!   `Tile` of a constant). The estimate must stay within [`LoadLimits::max_load_bytes`]. It is a
//!   floor of what loading takes, never a guess above it: a model it passes may still need more
//!   at run time, which is what the time limit on loading and the test inference bounds.

use std::collections::HashMap;

use tract_onnx::pb;

use crate::onnx_graph::parse_model;
use crate::ServingError;

/// What loading one model may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    pub max_graph_nodes: usize,
    pub max_load_bytes: u64,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_graph_nodes: 100_000,
            max_load_bytes: 4 << 30,
        }
    }
}

/// Refuse a model that breaks `limits`, naming the limit and the setting that raises it.
pub fn check_load_limits(onnx: &[u8], limits: &LoadLimits) -> Result<(), ServingError> {
    let proto = parse_model(onnx)?;
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    let mut cost = Cost::default();
    cost.graph(graph, limits)?;
    if cost.nodes > limits.max_graph_nodes {
        return Err(ServingError::InvalidModel(format!(
            "the graph has {} nodes, more than the limit of {} (limits.max_graph_nodes)",
            cost.nodes, limits.max_graph_nodes
        )));
    }
    match cost.bytes {
        Some(bytes) if bytes <= limits.max_load_bytes => Ok(()),
        estimate => Err(ServingError::InvalidModel(format!(
            "loading the model would take at least {} of memory, more than the limit of {} bytes \
             (limits.max_load_bytes); its constants and the tensors they size ask for that much",
            estimate.map_or_else(
                || "more bytes than can be counted".to_owned(),
                |b| format!("{b} bytes")
            ),
            limits.max_load_bytes
        ))),
    }
}

#[derive(Default)]
struct Cost {
    nodes: usize,
    /// `None` once the count overflowed.
    bytes: Option<u64>,
    started: bool,
}

impl Cost {
    fn add(&mut self, bytes: Option<u64>) {
        if !self.started {
            self.started = true;
            self.bytes = Some(0);
        }
        self.bytes = match (self.bytes, bytes) {
            (Some(total), Some(b)) => total.checked_add(b),
            _ => None,
        };
    }

    fn graph(&mut self, graph: &pb::GraphProto, limits: &LoadLimits) -> Result<(), ServingError> {
        self.add(Some(0));
        // Integer constants by name: what shapes and counts are made of.
        let mut constants: HashMap<&str, Vec<i64>> = HashMap::new();
        for tensor in &graph.initializer {
            self.add(tensor_bytes(tensor));
            if let Some(values) = int_values(tensor) {
                constants.insert(tensor.name.as_str(), values);
            }
        }
        for node in &graph.node {
            self.nodes += 1;
            if self.nodes > limits.max_graph_nodes {
                // Counting further only costs time.
                return Ok(());
            }
            for attribute in &node.attribute {
                if let Some(tensor) = &attribute.t {
                    self.add(tensor_bytes(tensor));
                    if node.op_type == "Constant" {
                        if let (Some(values), Some(output)) =
                            (int_values(tensor), node.output.first())
                        {
                            constants.insert(output.as_str(), values);
                        }
                    }
                }
                for tensor in &attribute.tensors {
                    self.add(tensor_bytes(tensor));
                }
                if let Some(body) = &attribute.g {
                    self.graph(body, limits)?;
                }
                for body in &attribute.graphs {
                    self.graph(body, limits)?;
                }
            }
            let constant = |i: usize| node.input.get(i).and_then(|n| constants.get(n.as_str()));
            let allocated = match node.op_type.as_str() {
                // The output's shape is input 0; 8 bytes covers every numeric element type.
                "ConstantOfShape" => {
                    constant(0).map(|shape| elements(shape).map(|n| n.saturating_mul(8)))
                }
                "Expand" => constant(1).map(|shape| elements(shape).map(|n| n.saturating_mul(8))),
                "Tile" => match (constant(0), constant(1)) {
                    (Some(data), Some(repeats)) => Some(
                        elements(repeats)
                            .and_then(|r| r.checked_mul(data.len() as u64))
                            .map(|n| n.saturating_mul(8)),
                    ),
                    _ => None,
                },
                "Range" => match (constant(0), constant(1), constant(2)) {
                    (Some(start), Some(limit), Some(delta)) => {
                        match (start.first(), limit.first(), delta.first()) {
                            (Some(&s), Some(&l), Some(&d)) if d != 0 => {
                                let span = (i128::from(l) - i128::from(s)) / i128::from(d);
                                Some(u64::try_from(span.max(0)).ok().map(|n| n.saturating_mul(8)))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(bytes) = allocated {
                self.add(bytes);
            }
        }
        Ok(())
    }
}

/// Elements of a tensor of this shape; `None` when a dimension is negative or the product
/// overflows (a shape no memory holds).
fn elements(shape: &[i64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?))
}

/// Bytes of a constant tensor: its data as stored, or its shape times its element size.
fn tensor_bytes(tensor: &pb::TensorProto) -> Option<u64> {
    let stored = tensor.raw_data.len() as u64;
    let declared = elements(&tensor.dims)?.checked_mul(element_size(tensor.data_type))?;
    Some(stored.max(declared))
}

fn element_size(data_type: i32) -> u64 {
    use pb::tensor_proto::DataType;
    match DataType::try_from(data_type) {
        Ok(DataType::Double | DataType::Int64 | DataType::Uint64 | DataType::Complex64) => 8,
        Ok(DataType::Complex128) => 16,
        Ok(DataType::Float | DataType::Int32 | DataType::Uint32) => 4,
        Ok(DataType::Float16 | DataType::Bfloat16 | DataType::Int16 | DataType::Uint16) => 2,
        _ => 1,
    }
}

/// The values of a small integer tensor (a shape, a count), when it holds any.
fn int_values(tensor: &pb::TensorProto) -> Option<Vec<i64>> {
    use pb::tensor_proto::DataType;
    let kind = DataType::try_from(tensor.data_type).ok()?;
    if elements(&tensor.dims)? > 64 {
        return None;
    }
    match kind {
        DataType::Int64 if !tensor.int64_data.is_empty() => Some(tensor.int64_data.clone()),
        DataType::Int64 => Some(
            tensor
                .raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
        ),
        DataType::Int32 if !tensor.int32_data.is_empty() => {
            Some(tensor.int32_data.iter().map(|&v| i64::from(v)).collect())
        }
        DataType::Int32 => Some(
            tensor
                .raw_data
                .chunks_exact(4)
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        ),
        _ => None,
    }
}
