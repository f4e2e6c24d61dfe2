//! Plain tensor and signature types shared by every backend; no backend type leaks past here.

use serde::{Deserialize, Serialize};

/// Element types maas can feed to and read from a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Float32,
    Float64,
    Int32,
    Int64,
    Bool,
    String,
}

impl ElementType {
    pub fn as_str(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Float64 => "float64",
            ElementType::Int32 => "int32",
            ElementType::Int64 => "int64",
            ElementType::Bool => "bool",
            ElementType::String => "string",
        }
    }
}

/// One dimension of a declared shape: a fixed size or a symbol such as the batch size `N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_u64(*n as u64),
            Dim::Symbolic(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Fixed(u64),
            Symbolic(String),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Fixed(n) => Dim::Fixed(usize::try_from(n).map_err(serde::de::Error::custom)?),
            Repr::Symbolic(name) => Dim::Symbolic(name),
        })
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(name) => f.write_str(name),
        }
    }
}

/// A named input or output as the model declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub element_type: ElementType,
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape written the way people read it: `[N, 4]`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(Dim::to_string).collect();
        format!("[{}]", dims.join(", "))
    }

    /// True when axis 0 is symbolic, so rows of several requests can share one run.
    pub fn has_dynamic_batch(&self) -> bool {
        matches!(self.shape.first(), Some(Dim::Symbolic(_)))
    }
}

/// Inputs and outputs of a loaded model, in the model's order. Stored with each version as this
/// type's JSON, and read back as it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSignature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

/// Element storage of a [`Tensor`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Bool(Vec<bool>),
    String(Vec<String>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Float32(v) => v.len(),
            TensorData::Float64(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn element_type(&self) -> ElementType {
        match self {
            TensorData::Float32(_) => ElementType::Float32,
            TensorData::Float64(_) => ElementType::Float64,
            TensorData::Int32(_) => ElementType::Int32,
            TensorData::Int64(_) => ElementType::Int64,
            TensorData::Bool(_) => ElementType::Bool,
            TensorData::String(_) => ElementType::String,
        }
    }
}

/// A dense tensor: a shape and its elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, crate::ServingError> {
        let expected = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| {
                crate::ServingError::InvalidInput(format!(
                    "shape {shape:?} holds more elements than can be addressed"
                ))
            })?;
        if expected != data.len() {
            return Err(crate::ServingError::InvalidInput(format!(
                "shape {shape:?} holds {expected} elements but {} were given",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    #[test]
    fn a_signature_reads_back_as_it_was_written() {
        let signature = ModelSignature {
            inputs: vec![TensorSpec {
                name: "float_input".into(),
                element_type: ElementType::Float32,
                shape: vec![Dim::Symbolic("N".into()), Dim::Fixed(4)],
            }],
            outputs: vec![TensorSpec {
                name: "label".into(),
                element_type: ElementType::Int64,
                shape: vec![Dim::Symbolic("N".into())],
            }],
        };
        let text = serde_json::to_string(&signature).unwrap();
        assert!(text.contains(r#""shape":["N",4]"#), "{text}");
        assert_eq!(
            serde_json::from_str::<ModelSignature>(&text).unwrap(),
            signature
        );
    }
}
