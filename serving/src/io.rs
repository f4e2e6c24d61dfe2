//! Tensor I/O for the JSON predict routes: `instances` (rows, nested or flat with a shape) and
//! `records` (named columns) in, `predictions` / `probabilities` / other outputs out.

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use crate::{Dim, ElementType, ServedVersion, ServingError, Tensor, TensorData, TensorSpec};

/// Output names exporters use for the predicted label.
const LABEL_NAMES: &[&str] = &["label", "output_label", "labels", "predicted_label"];
/// Output names exporters use for class probabilities.
const PROBABILITY_NAMES: &[&str] = &[
    "probabilities",
    "output_probability",
    "probability",
    "probs",
];

fn invalid(msg: impl Into<String>) -> ServingError {
    ServingError::InvalidInput(msg.into())
}

/// The single input of a model that the `instances`/`records` routes feed.
pub fn single_input(served: &ServedVersion) -> Result<&TensorSpec, ServingError> {
    match served.loaded.signature().inputs.as_slice() {
        [one] => Ok(one),
        many => Err(ServingError::UnsupportedModel(format!(
            "this model takes {} inputs; `instances` and `records` feed models with one input",
            many.len()
        ))),
    }
}

/// Build the input tensor from `instances`. Without `shape`, the nesting of the arrays is the
/// shape (`[[5.1, 3.5, 1.4, 0.2]]` is `[1, 4]`). With `shape`, the elements are read in row-major
/// order whatever their nesting; `shape` is either the whole tensor's (`[2, 1, 28, 28]`) or one
/// instance's (`[1, 28, 28]`).
pub fn instances_tensor(
    spec: &TensorSpec,
    instances: &Value,
    shape: Option<&[usize]>,
) -> Result<Tensor, ServingError> {
    let Value::Array(rows) = instances else {
        return Err(invalid("`instances` must be an array of instances"));
    };
    if rows.is_empty() {
        return Err(invalid("`instances` is empty: send at least one instance"));
    }
    let (shape, leaves) = match shape {
        None => nested_shape(instances)?,
        Some(given) => {
            let mut leaves = Vec::new();
            flatten(instances, &mut leaves);
            let per_instance = given
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d))
                .ok_or_else(|| invalid(format!("`shape` {given:?} is too large")))?;
            let shape = if given.len() + 1 == spec.shape.len() {
                if per_instance == 0 || leaves.len() % per_instance != 0 {
                    return Err(invalid(format!(
                        "{} elements do not divide into instances of shape {given:?}",
                        leaves.len()
                    )));
                }
                let mut full = vec![leaves.len() / per_instance];
                full.extend_from_slice(given);
                full
            } else {
                if per_instance != leaves.len() {
                    return Err(invalid(format!(
                        "`shape` {given:?} holds {per_instance} elements but {} were sent",
                        leaves.len()
                    )));
                }
                given.to_vec()
            };
            (shape, leaves)
        }
    };
    check_shape(spec, &shape)?;
    let row_len = shape.iter().skip(1).product::<usize>().max(1);
    let data = convert(spec, &leaves, row_len)?;
    Tensor::new(shape, data)
}

/// Build the input tensor from `records`, ordering each record's columns by `feature_names`.
pub fn records_tensor(
    spec: &TensorSpec,
    feature_names: Option<&[String]>,
    records: &[Map<String, Value>],
) -> Result<Tensor, ServingError> {
    let Some(features) = feature_names else {
        return Err(invalid(
            "this version was deployed without `feature_names`, so `records` cannot be ordered; \
             send `instances` or redeploy with feature_names",
        ));
    };
    if records.is_empty() {
        return Err(invalid("`records` is empty: send at least one record"));
    }
    let mut leaves = Vec::with_capacity(records.len() * features.len());
    for (row, record) in records.iter().enumerate() {
        for name in features {
            let value = record
                .get(name)
                .ok_or_else(|| invalid(format!("record {row} has no column '{name}'")))?;
            leaves.push(value);
        }
        if record.len() != features.len() {
            if let Some(extra) = record.keys().find(|k| !features.contains(k)) {
                return Err(invalid(format!(
                    "record {row} has column '{extra}', which the model does not take \
                     (columns: {})",
                    features.join(", ")
                )));
            }
        }
    }
    let shape = vec![records.len(), features.len()];
    check_shape(spec, &shape)?;
    let data = convert(spec, &leaves, features.len())?;
    Tensor::new(shape, data)
}

/// The shape implied by nested arrays, and their leaves in row-major order.
fn nested_shape(value: &Value) -> Result<(Vec<usize>, Vec<&Value>), ServingError> {
    let mut shape = Vec::new();
    let mut cursor = value;
    while let Value::Array(items) = cursor {
        shape.push(items.len());
        match items.first() {
            Some(first) => cursor = first,
            None => break,
        }
    }
    if shape.contains(&0) {
        return Err(invalid("an instance is an empty array"));
    }
    // The shape is read down the first element only: until the rest is checked, its product
    // says nothing about the body's size (a long array whose first item is a long array would
    // ask for terabytes), so the first allocation is bounded.
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    let mut leaves = Vec::with_capacity(count.unwrap_or(0).min(1 << 16));
    collect_rectangular(value, &shape, 0, &mut leaves)?;
    Ok((shape, leaves))
}

fn collect_rectangular<'a>(
    value: &'a Value,
    shape: &[usize],
    depth: usize,
    out: &mut Vec<&'a Value>,
) -> Result<(), ServingError> {
    match (value, shape.get(depth)) {
        (Value::Array(items), Some(&len)) if items.len() == len => items
            .iter()
            .try_for_each(|item| collect_rectangular(item, shape, depth + 1, out)),
        (Value::Array(items), Some(&len)) => Err(invalid(format!(
            "ragged instances: an array at depth {depth} has {} elements where {len} were \
             expected",
            items.len()
        ))),
        (Value::Array(_), None) => Err(invalid(format!(
            "ragged instances: an array appears at depth {depth}, where numbers were expected"
        ))),
        (leaf, None) => {
            out.push(leaf);
            Ok(())
        }
        (_, Some(_)) => Err(invalid(format!(
            "ragged instances: a value appears at depth {depth}, where an array was expected"
        ))),
    }
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

fn check_shape(spec: &TensorSpec, shape: &[usize]) -> Result<(), ServingError> {
    let fits = shape.len() == spec.shape.len()
        && shape.iter().zip(&spec.shape).all(|(n, d)| match d {
            Dim::Fixed(f) => n == f,
            Dim::Symbolic(_) => *n > 0,
        });
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    if fits {
        // A count that overflows would wrap to a small number an empty body could match.
        return match shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
            Some(_) => Ok(()),
            None => Err(invalid(format!(
                "input '{}': shape [{}] holds more elements than can be addressed; send fewer rows",
                spec.name,
                dims.join(", ")
            ))),
        };
    }
    Err(invalid(format!(
        "input '{}' takes shape {}, the request has [{}]",
        spec.name,
        spec.shape_text(),
        dims.join(", ")
    )))
}

fn convert(
    spec: &TensorSpec,
    leaves: &[&Value],
    row_len: usize,
) -> Result<TensorData, ServingError> {
    let at = |ix: usize| format!("instance {}, element {}", ix / row_len, ix % row_len);
    let bad =
        |ix: usize, v: &Value, want: &str| invalid(format!("{}: expected {want}, got {v}", at(ix)));
    Ok(match spec.element_type {
        ElementType::Float32 => TensorData::Float32(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| {
                    let x = v.as_f64().ok_or_else(|| bad(ix, v, "a number"))? as f32;
                    if x.is_finite() {
                        Ok(x)
                    } else {
                        Err(invalid(format!("{}: {v} does not fit in float32", at(ix))))
                    }
                })
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Float64 => TensorData::Float64(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| v.as_f64().ok_or_else(|| bad(ix, v, "a number")))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Int64 => TensorData::Int64(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| v.as_i64().ok_or_else(|| bad(ix, v, "an integer")))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Int32 => TensorData::Int32(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| {
                    v.as_i64()
                        .and_then(|x| i32::try_from(x).ok())
                        .ok_or_else(|| bad(ix, v, "a 32-bit integer"))
                })
                .collect::<Result<_, _>>()?,
        ),
        ElementType::Bool => TensorData::Bool(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| v.as_bool().ok_or_else(|| bad(ix, v, "true or false")))
                .collect::<Result<_, _>>()?,
        ),
        ElementType::String => TensorData::String(
            leaves
                .iter()
                .enumerate()
                .map(|(ix, v)| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(ix, v, "a string"))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Turn a model's outputs into the response fields: `predictions` (one per instance, labels
/// mapped through the class names), `probabilities` when the model gives them, and every other
/// output under `outputs` by name.
pub fn render_outputs(
    served: &ServedVersion,
    batch: usize,
    outputs: Vec<Tensor>,
) -> Result<Rendered, ServingError> {
    let specs = &served.loaded.signature().outputs;
    let class_names = served.meta.class_names.as_deref();
    let named = |names: &[&str]| specs.iter().position(|s| names.contains(&s.name.as_str()));
    let label_ix = named(LABEL_NAMES).or_else(|| {
        specs.iter().position(|s| {
            s.shape.len() == 1
                && !matches!(s.element_type, ElementType::Float32 | ElementType::Float64)
        })
    });
    let probability_ix = named(PROBABILITY_NAMES).filter(|&ix| {
        specs[ix].shape.len() == 2 && matches!(specs[ix].element_type, ElementType::Float32)
    });

    let mut outputs: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
    let predictions: Vec<Value> = if let Some(ix) = label_ix {
        outputs[ix]
            .as_ref()
            .and_then(|t| split_rows(t, batch))
            .map(|rows| rows.iter().map(|v| map_label(v, class_names)).collect())
            .unwrap_or_default()
    } else if let Some(ix) = probability_ix {
        match outputs[ix].as_ref().map(|t| (&t.data, t.shape.get(1))) {
            Some((TensorData::Float32(p), width)) => p
                .chunks(width.copied().unwrap_or(1).max(1))
                .map(|row| map_label(&Value::from(argmax(row) as u64), class_names))
                .collect(),
            _ => Vec::new(),
        }
    } else {
        outputs[0]
            .as_ref()
            .and_then(|t| split_rows(t, batch))
            .map(|rows| {
                rows.into_iter()
                    .map(|v| match v {
                        Value::Array(mut items) if items.len() == 1 => items.swap_remove(0),
                        other => other,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if predictions.len() != batch {
        return Err(ServingError::Inference(format!(
            "the model returned {} predictions for {batch} instances",
            predictions.len()
        )));
    }

    let probabilities = probability_ix
        .and_then(|ix| outputs[ix].take_if(|t| t.shape.first() == Some(&batch)))
        .map(Rows);
    let regression_ix = (label_ix.is_none() && probability_ix.is_none()).then_some(0);
    let mut others = Map::new();
    for (ix, (spec, tensor)) in specs.iter().zip(&outputs).enumerate() {
        if Some(ix) == label_ix || Some(ix) == probability_ix || Some(ix) == regression_ix {
            continue;
        }
        let Some(tensor) = tensor else { continue };
        let value = match split_rows(tensor, batch) {
            Some(rows) => Value::Array(rows),
            None => nest(tensor, &tensor.shape, 0, &mut 0),
        };
        others.insert(spec.name.clone(), value);
    }
    Ok(Rendered {
        predictions,
        probabilities,
        outputs: (!others.is_empty()).then_some(others),
    })
}

/// The model's answer, shaped for the JSON predict routes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// One per instance: a label (mapped through the class names), or a regression value.
    pub predictions: Vec<Value>,
    /// Per-instance class probabilities, when the model outputs them.
    pub probabilities: Option<Rows>,
    /// Every other output, by name.
    pub outputs: Option<Map<String, Value>>,
}

fn map_label(label: &Value, class_names: Option<&[String]>) -> Value {
    match (label.as_u64(), class_names) {
        (Some(ix), Some(names)) => names
            .get(ix as usize)
            .map(|n| Value::String(n.clone()))
            .unwrap_or_else(|| label.clone()),
        _ => label.clone(),
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (ix, x) in row.iter().enumerate() {
        if *x > row[best] {
            best = ix;
        }
    }
    best
}

/// Per-instance values of an output whose axis 0 is the batch; `None` when it is not.
fn split_rows(tensor: &Tensor, batch: usize) -> Option<Vec<Value>> {
    if tensor.shape.first() != Some(&batch) {
        return None;
    }
    let inner = &tensor.shape[1..];
    let mut cursor = 0;
    Some(
        (0..batch)
            .map(|_| nest(tensor, inner, 0, &mut cursor))
            .collect(),
    )
}

fn nest(tensor: &Tensor, shape: &[usize], depth: usize, cursor: &mut usize) -> Value {
    if depth == shape.len() {
        let v = element(&tensor.data, *cursor);
        *cursor += 1;
        return v;
    }
    Value::Array(
        (0..shape[depth])
            .map(|_| nest(tensor, shape, depth + 1, cursor))
            .collect(),
    )
}

fn element(data: &TensorData, ix: usize) -> Value {
    match data {
        TensorData::Float32(v) => float(f64::from(v[ix])),
        TensorData::Float64(v) => float(v[ix]),
        TensorData::Int32(v) => Value::from(v[ix]),
        TensorData::Int64(v) => Value::from(v[ix]),
        TensorData::Bool(v) => Value::from(v[ix]),
        TensorData::String(v) => Value::from(v[ix].clone()),
    }
}

/// f32 outputs are widened for JSON; print them with f32 precision so `0.1` stays `0.1`.
fn float(x: f64) -> Value {
    let narrowed = x as f32;
    if f64::from(narrowed) == x {
        // The shortest decimal that reads back as this f32, as the nearest f64; ryu writes it
        // into a stack buffer (this runs for every score of every answer).
        let mut buffer = ryu::Buffer::new();
        let shortest = buffer.format(narrowed).parse::<f64>().unwrap_or(x);
        serde_json::Number::from_f64(shortest)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    } else {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// An output whose axis 0 is the batch, written to JSON as one nested array per instance
/// straight from the tensor: no `serde_json::Value` per element on the way (this runs for every
/// answer). `to_value` gives the same JSON as a `Value`, for the prediction log.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows(pub Tensor);

/// A tensor's elements written to JSON flat and row-major (the Open Inference Protocol's
/// `data`) straight from the tensor. `to_value` gives the same JSON as a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat(pub TensorData);

impl Rows {
    pub fn to_value(&self) -> Value {
        let batch = self.0.shape.first().copied().unwrap_or(0);
        Value::Array(split_rows(&self.0, batch).unwrap_or_default())
    }
}

impl Flat {
    pub fn to_value(&self) -> Value {
        Value::Array((0..self.0.len()).map(|ix| element(&self.0, ix)).collect())
    }
}

impl Serialize for Rows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The batch axis is the outermost array; each instance nests by the axes after it.
        Nested {
            data: &self.0.data,
            shape: &self.0.shape,
            start: 0,
        }
        .serialize(serializer)
    }
}

impl Serialize for Flat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for ix in 0..self.0.len() {
            seq.serialize_element(&Element(&self.0, ix))?;
        }
        seq.end()
    }
}

/// The elements from `start` on, nested by `shape`.
struct Nested<'a> {
    data: &'a TensorData,
    shape: &'a [usize],
    start: usize,
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some((&len, inner)) = self.shape.split_first() else {
            return Element(self.data, self.start).serialize(serializer);
        };
        let stride = inner.iter().product::<usize>();
        let mut seq = serializer.serialize_seq(Some(len))?;
        for ix in 0..len {
            seq.serialize_element(&Nested {
                data: self.data,
                shape: inner,
                start: self.start + ix * stride,
            })?;
        }
        seq.end()
    }
}

/// One element, written as `element` turns it into a `Value`: f32 with f32 precision (serde_json
/// writes an f32 as its shortest decimal), an f64 that is exactly an f32 the same way, a
/// non-finite number as `null`.
struct Element<'a>(&'a TensorData, usize);

impl Serialize for Element<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ix = self.1;
        match self.0 {
            TensorData::Float32(v) if v[ix].is_finite() => serializer.serialize_f32(v[ix]),
            TensorData::Float64(v) if v[ix].is_finite() => {
                let narrowed = v[ix] as f32;
                if f64::from(narrowed) == v[ix] {
                    serializer.serialize_f32(narrowed)
                } else {
                    serializer.serialize_f64(v[ix])
                }
            }
            TensorData::Float32(_) | TensorData::Float64(_) => serializer.serialize_unit(),
            TensorData::Int32(v) => serializer.serialize_i32(v[ix]),
            TensorData::Int64(v) => serializer.serialize_i64(v[ix]),
            TensorData::Bool(v) => serializer.serialize_bool(v[ix]),
            TensorData::String(v) => serializer.serialize_str(&v[ix]),
        }
    }
}

/// The Open Inference Protocol's name for an element type.
pub fn v2_datatype(t: ElementType) -> &'static str {
    match t {
        ElementType::Float32 => "FP32",
        ElementType::Float64 => "FP64",
        ElementType::Int32 => "INT32",
        ElementType::Int64 => "INT64",
        ElementType::Bool => "BOOL",
        ElementType::String => "BYTES",
    }
}

/// Check a protocol input's declared datatype and shape against the model; the shape in sizes.
fn v2_shape(
    spec: &TensorSpec,
    datatype: &str,
    shape: &[i64],
) -> Result<(&'static str, Vec<usize>), ServingError> {
    let want = v2_datatype(spec.element_type);
    if !datatype.eq_ignore_ascii_case(want) {
        return Err(invalid(format!(
            "input '{}' takes {want}, the request sends {datatype}",
            spec.name
        )));
    }
    let sizes: Vec<usize> = shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                invalid(format!(
                    "input '{}': shape {shape:?} has a negative size",
                    spec.name
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    check_shape(spec, &sizes)?;
    Ok((want, sizes))
}

/// An Open Inference Protocol input: `shape`, `datatype` and `data` (flat or nested, row-major).
pub fn v2_tensor(
    spec: &TensorSpec,
    datatype: &str,
    shape: &[i64],
    data: &Value,
) -> Result<Tensor, ServingError> {
    let (_, shape) = v2_shape(spec, datatype, shape)?;
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    let count: usize = shape.iter().product();
    if leaves.len() != count {
        return Err(invalid(format!(
            "input '{}': shape {shape:?} holds {count} elements, `data` has {}",
            spec.name,
            leaves.len()
        )));
    }
    let row_len = shape.iter().skip(1).product::<usize>().max(1);
    let data = convert(spec, &leaves, row_len)?;
    Tensor::new(shape, data)
}

/// Every element of a tensor as JSON, row-major (the protocol's flat `data`).
pub fn flat_json(tensor: &Tensor) -> Vec<Value> {
    (0..tensor.data.len())
        .map(|ix| element(&tensor.data, ix))
        .collect()
}

/// An Open Inference Protocol input sent in the binary tensor extension: little-endian elements,
/// BYTES as a 4-byte little-endian length before each element.
pub fn v2_tensor_from_bytes(
    spec: &TensorSpec,
    datatype: &str,
    shape: &[i64],
    bytes: &[u8],
) -> Result<Tensor, ServingError> {
    let (want, shape) = v2_shape(spec, datatype, shape)?;
    let count: usize = shape.iter().product();
    let wrong_size = || {
        invalid(format!(
            "input '{}': {} bytes do not hold {count} {want} elements",
            spec.name,
            bytes.len()
        ))
    };
    fn fixed<const N: usize, T>(
        bytes: &[u8],
        count: usize,
        f: impl Fn([u8; N]) -> T,
    ) -> Option<Vec<T>> {
        if count.checked_mul(N) != Some(bytes.len()) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(N)
                .map(|c| f(c.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }
    let data = match spec.element_type {
        ElementType::Float32 => {
            let v = fixed(bytes, count, f32::from_le_bytes).ok_or_else(wrong_size)?;
            if let Some(ix) = v.iter().position(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "input '{}': element {ix} is not a finite number",
                    spec.name
                )));
            }
            TensorData::Float32(v)
        }
        ElementType::Float64 => {
            let v = fixed(bytes, count, f64::from_le_bytes).ok_or_else(wrong_size)?;
            if let Some(ix) = v.iter().position(|x| !x.is_finite()) {
                return Err(invalid(format!(
                    "input '{}': element {ix} is not a finite number",
                    spec.name
                )));
            }
            TensorData::Float64(v)
        }
        ElementType::Int32 => {
            TensorData::Int32(fixed(bytes, count, i32::from_le_bytes).ok_or_else(wrong_size)?)
        }
        ElementType::Int64 => {
            TensorData::Int64(fixed(bytes, count, i64::from_le_bytes).ok_or_else(wrong_size)?)
        }
        ElementType::Bool => {
            TensorData::Bool(fixed(bytes, count, |b: [u8; 1]| b[0] != 0).ok_or_else(wrong_size)?)
        }
        ElementType::String => {
            let mut out = Vec::with_capacity(count);
            let mut rest = bytes;
            for _ in 0..count {
                let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(wrong_size)?;
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(wrong_size());
                }
                let (text, tail) = tail.split_at(len);
                out.push(String::from_utf8(text.to_vec()).map_err(|_| {
                    invalid(format!("input '{}': BYTES element is not UTF-8", spec.name))
                })?);
                rest = tail;
            }
            if !rest.is_empty() {
                return Err(wrong_size());
            }
            TensorData::String(out)
        }
    };
    Tensor::new(shape, data)
}

/// An Open Inference Protocol input sent as typed values (gRPC's `contents`): `data` holds the
/// elements, row-major, already in the model's element type; `field` names where they came from,
/// for the message when their count is wrong.
pub fn v2_tensor_from_values(
    spec: &TensorSpec,
    datatype: &str,
    shape: &[i64],
    data: TensorData,
    field: &str,
) -> Result<Tensor, ServingError> {
    let (_, shape) = v2_shape(spec, datatype, shape)?;
    let count: usize = shape.iter().product();
    if data.len() != count {
        return Err(invalid(format!(
            "input '{}': shape {shape:?} holds {count} elements, {field} has {}",
            spec.name,
            data.len()
        )));
    }
    let not_finite = match &data {
        TensorData::Float32(v) => v.iter().position(|x| !x.is_finite()),
        TensorData::Float64(v) => v.iter().position(|x| !x.is_finite()),
        _ => None,
    };
    if let Some(ix) = not_finite {
        return Err(invalid(format!(
            "input '{}': element {ix} is not a finite number",
            spec.name
        )));
    }
    Tensor::new(shape, data)
}

/// A tensor's elements in the binary tensor extension's layout.
pub fn v2_bytes(tensor: &Tensor) -> Vec<u8> {
    match &tensor.data {
        TensorData::Float32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Float64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
        TensorData::String(v) => v
            .iter()
            .flat_map(|s| (s.len() as u32).to_le_bytes().into_iter().chain(s.bytes()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(shape: Vec<Dim>, element_type: ElementType) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            element_type,
            shape,
        }
    }

    fn n() -> Dim {
        Dim::Symbolic("N".into())
    }

    #[test]
    fn a_shape_read_from_the_first_element_does_not_size_the_allocation() {
        // 2,000 rows whose first is 2,000 long: 4 million by the first path, 4,001 leaves.
        let mut rows = vec![json!(vec![1.0; 2000])];
        rows.extend((1..2000).map(|_| json!([1.0])));
        let s = spec(vec![n(), Dim::Fixed(2000)], ElementType::Float32);
        let err = instances_tensor(&s, &Value::Array(rows), None).unwrap_err();
        assert!(err.to_string().contains("instance"), "{err}");
    }

    #[test]
    fn shapes_whose_element_count_overflows_are_refused() {
        let s = spec(vec![n(), Dim::Fixed(4)], ElementType::Float32);
        let huge = [1i64 << 62, 4];
        let err = v2_tensor_from_bytes(&s, "FP32", &huge, &[]).unwrap_err();
        assert!(err.to_string().contains("addressed"), "{err}");
        let err = v2_tensor_from_values(
            &s,
            "FP32",
            &huge,
            TensorData::Float32(vec![]),
            "fp32_contents",
        )
        .unwrap_err();
        assert!(err.to_string().contains("addressed"), "{err}");
        let s = spec(vec![n(), Dim::Fixed(1 << 40)], ElementType::Float32);
        let err = v2_tensor_from_bytes(&s, "FP32", &[1 << 30, 1 << 40], &[]).unwrap_err();
        assert!(err.to_string().contains("addressed"), "{err}");
    }

    #[test]
    fn nested_rows_become_a_batch() {
        let s = spec(vec![n(), Dim::Fixed(2)], ElementType::Float32);
        let t = instances_tensor(&s, &json!([[1, 2], [3.5, 4]]), None).unwrap();
        assert_eq!(t.shape, vec![2, 2]);
        assert_eq!(t.data, TensorData::Float32(vec![1.0, 2.0, 3.5, 4.0]));
    }

    #[test]
    fn flat_data_with_instance_or_full_shape() {
        let s = spec(
            vec![n(), Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2)],
            ElementType::Float32,
        );
        let flat = json!([0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            instances_tensor(&s, &flat, Some(&[1, 2, 2])).unwrap().shape,
            vec![2, 1, 2, 2]
        );
        assert_eq!(
            instances_tensor(&s, &flat, Some(&[2, 1, 2, 2]))
                .unwrap()
                .shape,
            vec![2, 1, 2, 2]
        );
        assert!(instances_tensor(&s, &flat, Some(&[3, 1, 2, 2])).is_err());
    }

    #[test]
    fn bad_instances_are_named() {
        let s = spec(vec![n(), Dim::Fixed(2)], ElementType::Float32);
        let err = |v: Value| instances_tensor(&s, &v, None).unwrap_err().to_string();
        assert!(err(json!([[1, 2, 3]])).contains("takes shape [N, 2]"));
        assert!(err(json!([[1, 2], [3]])).contains("ragged"));
        assert!(err(json!([[1, "a"]])).contains("instance 0, element 1"));
        assert!(err(json!([[1, 1e300]])).contains("float32"));
        assert!(err(json!([])).contains("empty"));
        assert!(err(json!({"a": 1})).contains("array"));
        assert!(err(json!([[]])).contains("empty"));
    }

    #[test]
    fn integers_must_be_integers() {
        let s = spec(vec![n()], ElementType::Int64);
        assert_eq!(
            instances_tensor(&s, &json!([1, -2]), None).unwrap().data,
            TensorData::Int64(vec![1, -2])
        );
        assert!(instances_tensor(&s, &json!([1.5]), None).is_err());
    }

    #[test]
    fn records_follow_feature_order() {
        let s = spec(vec![n(), Dim::Fixed(2)], ElementType::Float64);
        let names = vec!["b".to_string(), "a".to_string()];
        let recs: Vec<Map<String, Value>> =
            serde_json::from_value(json!([{"a": 1, "b": 2}, {"b": 4, "a": 3}])).unwrap();
        let t = records_tensor(&s, Some(&names), &recs).unwrap();
        assert_eq!(t.data, TensorData::Float64(vec![2.0, 1.0, 4.0, 3.0]));

        let missing: Vec<Map<String, Value>> = serde_json::from_value(json!([{"a": 1}])).unwrap();
        assert!(records_tensor(&s, Some(&names), &missing)
            .unwrap_err()
            .to_string()
            .contains("'b'"));
        let extra: Vec<Map<String, Value>> =
            serde_json::from_value(json!([{"a": 1, "b": 2, "c": 3}])).unwrap();
        assert!(records_tensor(&s, Some(&names), &extra)
            .unwrap_err()
            .to_string()
            .contains("'c'"));
        assert!(records_tensor(&s, None, &recs).is_err());
    }

    #[test]
    fn answers_written_from_tensors_match_their_values() {
        let tensors = [
            Tensor::new(
                vec![2, 3],
                TensorData::Float32(vec![0.1, 1e-7, 1.0, f32::NAN, -2.5, 3.4028235e38]),
            ),
            Tensor::new(
                vec![2, 2],
                TensorData::Float64(vec![0.1, f64::from(0.1f32), f64::INFINITY, -1e300]),
            ),
            Tensor::new(vec![2, 2, 2], TensorData::Int64((0..8).collect())),
            Tensor::new(vec![3], TensorData::Int32(vec![-1, 0, i32::MAX])),
            Tensor::new(vec![2, 1], TensorData::Bool(vec![true, false])),
            Tensor::new(
                vec![2],
                TensorData::String(vec!["setosa".into(), "quote \" and \\".into()]),
            ),
            Tensor::new(vec![0, 3], TensorData::Float32(vec![])),
        ];
        for tensor in tensors {
            let tensor = tensor.unwrap();
            let rows = Rows(tensor.clone());
            let written = serde_json::to_string(&rows).unwrap();
            assert_eq!(written, rows.to_value().to_string(), "{tensor:?}");
            let flat = Flat(tensor.data.clone());
            let written = serde_json::to_string(&flat).unwrap();
            assert_eq!(written, flat.to_value().to_string(), "{tensor:?}");
        }
        let probabilities =
            Rows(Tensor::new(vec![1, 2], TensorData::Float32(vec![0.1, 0.9])).unwrap());
        assert_eq!(
            serde_json::to_string(&probabilities).unwrap(),
            "[[0.1,0.9]]"
        );
    }
}
