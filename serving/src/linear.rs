//! A native kernel for ONNX-ML's linear models: `LinearClassifier` (optionally followed by a
//! `Normalizer` of its scores) and `LinearRegressor`, the nodes scikit-learn's linear models
//! export to through skl2onnx.
//!
//! tract expands these into a dozen generic operators (a packed matrix product, broadcasts,
//! reductions, an arg-max, a label lookup), each with its own aligned allocation: about 60,000
//! instructions for one iris row, a third of a whole request through maas. The arithmetic itself
//! is a few dozen multiply-adds. This kernel computes the same thing directly.
//!
//! It is never trusted on its own reading of the file: the tract backend builds its plan first,
//! then uses this kernel only when the graph is exactly one of the shapes below *and* both give
//! the same labels and scores (within float rounding) on probe rows. Anything else runs on tract.

use crate::backend::check_inputs;
use crate::{Dim, ElementType, LoadedModel, ModelSignature, ServingError, Tensor, TensorData};
use tract_onnx::pb;

/// What the scores go through after the affine map (`post_transform`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Post {
    None,
    Softmax,
    Logistic,
}

/// `Normalizer`'s `norm`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug, Clone)]
enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// Which value a graph output is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    /// The classifier's winning label, `[N]`.
    Label,
    /// The classifier's scores or the regressor's values, `[N, width]`.
    Scores,
    /// The scores through the `Normalizer`, `[N, width]`.
    Normalized,
}

pub(crate) struct LinearKernel {
    signature: ModelSignature,
    features: usize,
    /// Rows of coefficients (ONNX's E'), each `features` long.
    models: usize,
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    post: Post,
    /// `Some` for a classifier.
    labels: Option<Labels>,
    /// A classifier with one row of coefficients and two labels: scores are `[-s, s]`.
    binary: bool,
    norm: Option<Norm>,
    outputs: Vec<Out>,
}

fn attribute<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn text(node: &pb::NodeProto, name: &str) -> Option<String> {
    attribute(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn post(node: &pb::NodeProto) -> Option<Post> {
    match text(node, "post_transform").as_deref() {
        None | Some("NONE") => Some(Post::None),
        Some("SOFTMAX") => Some(Post::Softmax),
        Some("LOGISTIC") => Some(Post::Logistic),
        _ => None,
    }
}

impl LinearKernel {
    /// The kernel for this graph, when it is one this kernel computes; `None` otherwise (the
    /// caller keeps tract). `signature` is the one tract derived for the same file.
    pub(crate) fn for_graph(graph: &pb::GraphProto, signature: &ModelSignature) -> Option<Self> {
        let [input] = signature.inputs.as_slice() else {
            return None;
        };
        let features = match input.shape.as_slice() {
            [_, Dim::Fixed(f)] if input.element_type == ElementType::Float32 && *f > 0 => *f,
            _ => return None,
        };
        let (first, normalizer) = match graph.node.as_slice() {
            [first] => (first, None),
            [first, second] => (first, Some(second)),
            _ => return None,
        };
        if first.domain != "ai.onnx.ml" || first.input.len() != 1 || first.input[0] != input.name {
            return None;
        }
        let coefficients = attribute(first, "coefficients")?.floats.clone();
        let intercepts = attribute(first, "intercepts").map(|a| a.floats.clone());
        let post = post(first)?;
        let (models, labels, binary) = match first.op_type.as_str() {
            "LinearRegressor" => {
                let targets = attribute(first, "targets").map_or(1, |a| a.i);
                (usize::try_from(targets).ok()?, None, false)
            }
            "LinearClassifier" => {
                let ints = attribute(first, "classlabels_ints").map(|a| a.ints.clone());
                let strings = attribute(first, "classlabels_strings").map(|a| {
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<Vec<_>>()
                });
                let labels = match (ints, strings) {
                    (Some(ints), None) => Labels::Ints(ints),
                    (None, Some(strings)) => Labels::Strings(strings),
                    _ => return None,
                };
                let classes = match &labels {
                    Labels::Ints(v) => v.len(),
                    Labels::Strings(v) => v.len(),
                };
                let multi_class = attribute(first, "multi_class").map_or(0, |a| a.i);
                let models = intercepts.as_ref().map_or(
                    if classes == 2 && multi_class == 0 {
                        1
                    } else {
                        classes
                    },
                    Vec::len,
                );
                let binary = classes == 2 && models == 1 && multi_class == 0;
                if !binary && classes != models {
                    return None;
                }
                (models, Some(labels), binary)
            }
            _ => return None,
        };
        if models == 0 || coefficients.len() != models * features {
            return None;
        }
        let intercepts = intercepts.unwrap_or_else(|| vec![0.0; models]);
        if intercepts.len() != models {
            return None;
        }
        // Which value each of the first node's outputs is.
        let first_outputs: Vec<Out> = if labels.is_some() {
            vec![Out::Label, Out::Scores]
        } else {
            vec![Out::Scores]
        };
        if first.output.len() != first_outputs.len() {
            return None;
        }
        let norm = match normalizer {
            None => None,
            Some(n) => {
                let scores = first.output.last()?;
                if n.op_type != "Normalizer"
                    || n.domain != "ai.onnx.ml"
                    || n.input.as_slice() != [scores.clone()]
                    || n.output.len() != 1
                {
                    return None;
                }
                match text(n, "norm")
                    .unwrap_or_else(|| "MAX".into())
                    .to_ascii_uppercase()
                    .as_str()
                {
                    "MAX" => Some(Norm::Max),
                    "L1" => Some(Norm::L1),
                    "L2" => Some(Norm::L2),
                    _ => return None,
                }
            }
        };
        let mut outputs = Vec::with_capacity(signature.outputs.len());
        for spec in &signature.outputs {
            let out = if let Some(ix) = first.output.iter().position(|o| *o == spec.name) {
                first_outputs[ix]
            } else if normalizer.is_some_and(|n| n.output[0] == spec.name) {
                Out::Normalized
            } else {
                return None;
            };
            let element_type = match (out, &labels) {
                (Out::Label, Some(Labels::Ints(_))) => ElementType::Int64,
                (Out::Label, Some(Labels::Strings(_))) => ElementType::String,
                (Out::Label, None) => return None,
                _ => ElementType::Float32,
            };
            // A value listed twice among the graph's outputs is left to tract.
            if spec.element_type != element_type || outputs.contains(&out) {
                return None;
            }
            outputs.push(out);
        }
        Some(LinearKernel {
            signature: signature.clone(),
            features,
            models,
            coefficients,
            intercepts,
            post,
            labels,
            binary,
            norm,
            outputs,
        })
    }

    /// Scores per row: 2 for a binary classifier, else one per row of coefficients.
    fn width(&self) -> usize {
        if self.binary {
            2
        } else {
            self.models
        }
    }

    /// One row's scores (after `post_transform`) into `out`, `width()` long.
    fn score(&self, row: &[f32], out: &mut [f32]) {
        let raw = &mut out[..self.models];
        for (m, value) in raw.iter_mut().enumerate() {
            let weights = &self.coefficients[m * self.features..(m + 1) * self.features];
            let mut sum = 0.0f32;
            for (x, w) in row.iter().zip(weights) {
                sum += x * w;
            }
            *value = sum + self.intercepts[m];
        }
        if self.binary {
            let s = out[0];
            match self.post {
                Post::Logistic => {
                    let p = sigmoid(s);
                    out[0] = 1.0 - p;
                    out[1] = p;
                }
                Post::None | Post::Softmax => {
                    out[0] = -s;
                    out[1] = s;
                    if self.post == Post::Softmax {
                        softmax(out);
                    }
                }
            }
            return;
        }
        match self.post {
            Post::None => {}
            Post::Softmax => softmax(out),
            Post::Logistic => out.iter_mut().for_each(|v| *v = sigmoid(*v)),
        }
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

fn normalize(norm: Norm, v: &mut [f32]) {
    const EPS: f32 = 1e-12;
    match norm {
        Norm::Max => {
            let d = v.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(EPS);
            v.iter_mut().for_each(|x| *x /= d);
        }
        Norm::L1 => {
            let d = v.iter().map(|x| x.abs()).sum::<f32>().max(EPS);
            v.iter_mut().for_each(|x| *x /= d);
        }
        Norm::L2 => {
            let inv = 1.0 / v.iter().map(|x| x * x).sum::<f32>().max(EPS).sqrt();
            v.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

/// The first index of the largest value.
fn arg_max(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate().skip(1) {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl LoadedModel for LinearKernel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn kernel(&self) -> Option<&'static str> {
        Some("linear")
    }

    fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServingError> {
        check_inputs(&self.signature, &inputs)?;
        let Some(Tensor {
            shape,
            data: TensorData::Float32(x),
        }) = inputs.into_iter().next()
        else {
            return Err(ServingError::InvalidInput(
                "the model takes one float32 input".into(),
            ));
        };
        let rows = shape.first().copied().unwrap_or(0);
        if shape.len() != 2 || shape[1] != self.features || x.len() != rows * self.features {
            return Err(ServingError::InvalidInput(format!(
                "input '{}' must have shape [N, {}]",
                self.signature.inputs[0].name, self.features
            )));
        }
        let width = self.width();
        let mut scores = vec![0.0f32; rows * width];
        for (row, out) in x
            .chunks_exact(self.features)
            .zip(scores.chunks_exact_mut(width))
        {
            self.score(row, out);
        }
        let winners: Vec<usize> = if self.outputs.contains(&Out::Label) {
            scores.chunks_exact(width).map(arg_max).collect()
        } else {
            Vec::new()
        };
        let normalized = match (self.norm, self.outputs.contains(&Out::Normalized)) {
            (Some(norm), true) => {
                // In place when the raw scores are not an output too (scikit-learn's case).
                let mut n = if self.outputs.contains(&Out::Scores) {
                    scores.clone()
                } else {
                    std::mem::take(&mut scores)
                };
                n.chunks_exact_mut(width).for_each(|r| normalize(norm, r));
                n
            }
            _ => Vec::new(),
        };
        let (mut scores, mut normalized) = (Some(scores), Some(normalized));
        let mut results = Vec::with_capacity(self.outputs.len());
        for out in &self.outputs {
            // Each value is listed once (`for_graph`), so each slot is taken once.
            let (shape, data) = match (out, &self.labels) {
                (Out::Label, Some(Labels::Ints(l))) => (
                    vec![rows],
                    TensorData::Int64(winners.iter().map(|&i| l[i]).collect()),
                ),
                (Out::Label, Some(Labels::Strings(l))) => (
                    vec![rows],
                    TensorData::String(winners.iter().map(|&i| l[i].clone()).collect()),
                ),
                (Out::Scores, _) => (
                    vec![rows, width],
                    TensorData::Float32(scores.take().unwrap_or_default()),
                ),
                (Out::Normalized, _) => (
                    vec![rows, width],
                    TensorData::Float32(normalized.take().unwrap_or_default()),
                ),
                (Out::Label, None) => {
                    return Err(ServingError::Inference("a regressor has no label".into()))
                }
            };
            results.push(Tensor { shape, data });
        }
        Ok(results)
    }
}

/// The kernel for a `LinearClassifier` with string labels (scikit-learn trained on class
/// names), which tract cannot load. It is checked against tract on the same graph with the
/// labels numbered 0..k instead: the scores do not depend on the labels, and the winner's index
/// picks the name. `None` when the graph is not such a classifier or the two disagree.
pub(crate) fn with_string_labels<M: LoadedModel>(
    proto: &pb::ModelProto,
    load: impl Fn(&pb::ModelProto) -> Result<M, ServingError>,
) -> Result<Option<LinearKernel>, ServingError> {
    let graph = crate::onnx_graph::graph(proto)?;
    let Some(first) = graph.node.first() else {
        return Ok(None);
    };
    let Some(names) = attribute(first, "classlabels_strings") else {
        return Ok(None);
    };
    if first.op_type != "LinearClassifier" || attribute(first, "classlabels_ints").is_some() {
        return Ok(None);
    }
    let names: Vec<String> = names
        .strings
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let mut numbered = proto.clone();
    let Some(node) = numbered.graph.as_mut().and_then(|g| g.node.first_mut()) else {
        return Ok(None);
    };
    node.attribute.retain(|a| a.name != "classlabels_strings");
    node.attribute.push(pb::AttributeProto {
        name: "classlabels_ints".into(),
        r#type: 7, // INTS
        ints: (0..names.len() as i64).collect(),
        ..Default::default()
    });
    let Ok(reference) = load(&numbered) else {
        return Ok(None);
    };
    let Some(mut kernel) = checked(crate::onnx_graph::graph(&numbered)?, &reference) else {
        return Ok(None);
    };
    for (spec, out) in kernel.signature.outputs.iter_mut().zip(&kernel.outputs) {
        if *out == Out::Label {
            spec.element_type = ElementType::String;
        }
    }
    kernel.labels = Some(Labels::Strings(names));
    Ok(Some(kernel))
}

/// Rows to compare the kernel with tract on: zeros, ones, minus ones, then pseudo-random values
/// over several magnitudes.
fn probe(features: usize) -> Tensor {
    let rows = 32;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut data = Vec::with_capacity(rows * features);
    for r in 0..rows {
        for _ in 0..features {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            data.push(match r {
                0 => 0.0,
                1 => 1.0,
                2 => -1.0,
                _ => unit * [0.1, 1.0, 10.0, 100.0][r % 4],
            });
        }
    }
    Tensor {
        shape: vec![rows, features],
        data: TensorData::Float32(data),
    }
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-5 * x.abs().max(y.abs()))
}

/// The kernel for `graph` when it is one this kernel computes and it answers the probe rows as
/// `reference` (tract's plan for the same graph) does; `None` otherwise.
pub(crate) fn checked(graph: &pb::GraphProto, reference: &dyn LoadedModel) -> Option<LinearKernel> {
    let kernel = LinearKernel::for_graph(graph, reference.signature())?;
    if agrees(&kernel, reference) {
        return Some(kernel);
    }
    tracing::warn!("a linear model whose kernel does not agree with tract's plan on probe rows; tract serves it");
    None
}

/// Whether the kernel answers the probe rows as `reference` (tract) does: the same labels, and
/// scores equal within float rounding.
fn agrees(kernel: &LinearKernel, reference: &dyn LoadedModel) -> bool {
    let inputs = vec![probe(kernel.features)];
    let (Ok(ours), Ok(theirs)) = (kernel.infer(inputs.clone()), reference.infer(inputs)) else {
        return false;
    };
    ours.len() == theirs.len()
        && ours.iter().zip(&theirs).all(|(a, b)| {
            a.shape == b.shape
                && match (&a.data, &b.data) {
                    (TensorData::Float32(x), TensorData::Float32(y)) => close(x, y),
                    (x, y) => x == y,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn scikit_learns_linear_models_get_the_kernel_and_agree_with_tract() {
        for name in [
            "iris_logreg.onnx",
            "iris_logreg_v2.onnx",
            "house_linreg.onnx",
        ] {
            let onnx = fixture(name);
            let proto = crate::onnx_graph::parse_model(&onnx).unwrap();
            let graph = crate::onnx_graph::graph(&proto).unwrap();
            let tract = crate::tract_backend::load_plain(&onnx).unwrap();
            let kernel = LinearKernel::for_graph(graph, tract.signature())
                .unwrap_or_else(|| panic!("{name}: no kernel"));
            assert!(agrees(&kernel, tract.as_ref()), "{name}");
            // What the backend hands out is the kernel.
            let loaded = crate::tract_backend::TractBackend.load(&onnx).unwrap();
            assert_eq!(loaded.kernel(), Some("linear"), "{name}");
        }
    }

    #[test]
    fn other_graphs_stay_on_tract() {
        for name in ["iris_rf.onnx", "cnn_mnist.onnx"] {
            let loaded = crate::tract_backend::TractBackend
                .load(&fixture(name))
                .unwrap();
            assert_eq!(loaded.kernel(), None, "{name}");
        }
    }

    #[test]
    fn a_kernel_that_disagrees_is_not_used() {
        let onnx = fixture("iris_logreg.onnx");
        let proto = crate::onnx_graph::parse_model(&onnx).unwrap();
        let graph = crate::onnx_graph::graph(&proto).unwrap();
        let tract = crate::tract_backend::load_plain(&onnx).unwrap();
        let mut kernel = LinearKernel::for_graph(graph, tract.signature()).unwrap();
        kernel.intercepts[0] += 0.5;
        assert!(!agrees(&kernel, tract.as_ref()));
    }

    fn attr(name: &str, kind: i32) -> pb::AttributeProto {
        pb::AttributeProto {
            name: name.into(),
            r#type: kind,
            ..Default::default()
        }
    }
    fn floats(name: &str, v: &[f32]) -> pb::AttributeProto {
        pb::AttributeProto {
            floats: v.to_vec(),
            ..attr(name, 6)
        }
    }
    fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
        pb::AttributeProto {
            ints: v.to_vec(),
            ..attr(name, 7)
        }
    }
    fn int(name: &str, i: i64) -> pb::AttributeProto {
        pb::AttributeProto { i, ..attr(name, 2) }
    }
    fn string(name: &str, s: &str) -> pb::AttributeProto {
        pb::AttributeProto {
            s: s.as_bytes().to_vec(),
            ..attr(name, 3)
        }
    }
    /// iris_logreg.onnx (4 features) with its first node's op and attributes replaced, and its
    /// Normalizer kept with `norm` or dropped.
    fn variant(op: &str, attributes: Vec<pb::AttributeProto>, norm: Option<&str>) -> Vec<u8> {
        use prost::Message;
        let mut proto = crate::onnx_graph::parse_model(&fixture("iris_logreg.onnx")).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        graph.node[0].op_type = op.into();
        graph.node[0].attribute = attributes;
        let template = graph.output[0].clone();
        let named = |name: &str| pb::ValueInfoProto {
            name: name.into(),
            ..template.clone()
        };
        if op == "LinearRegressor" {
            graph.node.truncate(1);
            graph.node[0].output = vec!["variable".into()];
            graph.output = vec![named("variable")];
        } else if let Some(norm) = norm {
            graph.node[1].attribute = vec![string("norm", norm)];
        } else {
            graph.node.truncate(1);
            graph.output = vec![named("label"), named("probability_tensor")];
        }
        proto.encode_to_vec()
    }

    #[test]
    fn every_layout_transform_and_norm_agrees_with_tract() {
        let coefficients = [0.5, -1.0, 2.0, 0.25];
        let three: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 3.0).collect();
        let mut cases = Vec::new();
        for post in ["NONE", "SOFTMAX", "LOGISTIC"] {
            // Binary: one row of coefficients, two labels.
            cases.push(variant(
                "LinearClassifier",
                vec![
                    // tract cannot load string labels ("String doesn't implement Zero").
                    ints("classlabels_ints", &[0, 1]),
                    floats("coefficients", &coefficients),
                    floats("intercepts", &[0.5]),
                    string("post_transform", post),
                ],
                None,
            ));
            for norm in [None, Some("MAX"), Some("L1"), Some("L2")] {
                cases.push(variant(
                    "LinearClassifier",
                    vec![
                        ints("classlabels_ints", &[7, 8, 9]),
                        floats("coefficients", &three),
                        floats("intercepts", &[0.1, -0.2, 0.3]),
                        int("multi_class", 1),
                        string("post_transform", post),
                    ],
                    norm,
                ));
            }
            cases.push(variant(
                "LinearRegressor",
                vec![
                    floats("coefficients", &three[..8]),
                    int("targets", 2),
                    string("post_transform", post),
                ],
                None,
            ));
        }
        for (i, onnx) in cases.iter().enumerate() {
            let proto = crate::onnx_graph::parse_model(onnx).unwrap();
            let graph = crate::onnx_graph::graph(&proto).unwrap();
            let tract = crate::tract_backend::load_plain(onnx).unwrap();
            let kernel = LinearKernel::for_graph(graph, tract.signature())
                .unwrap_or_else(|| panic!("case {i}: no kernel"));
            assert!(agrees(&kernel, tract.as_ref()), "case {i}");
        }
    }

    #[test]
    fn string_labels_tract_cannot_load_are_served_by_the_kernel() {
        let strings = |v: &[&str]| pb::AttributeProto {
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            ..attr("classlabels_strings", 8)
        };
        let three: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 3.0).collect();
        let onnx = variant(
            "LinearClassifier",
            vec![
                strings(&["setosa", "versicolor", "virginica"]),
                floats("coefficients", &three),
                floats("intercepts", &[0.1, -0.2, 0.3]),
                int("multi_class", 1),
                string("post_transform", "SOFTMAX"),
            ],
            Some("L1"),
        );
        assert!(
            crate::tract_backend::load_plain(&onnx).is_err(),
            "tract alone"
        );
        let loaded = crate::tract_backend::TractBackend.load(&onnx).unwrap();
        assert_eq!(loaded.kernel(), Some("linear"));
        assert_eq!(
            loaded.signature().outputs[0].element_type,
            ElementType::String
        );
        // Scores rise with the class index for positive features, so the last class wins.
        let x = Tensor {
            shape: vec![2, 4],
            data: TensorData::Float32(vec![1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]),
        };
        let out = loaded.infer(vec![x]).unwrap();
        assert_eq!(
            out[0].data,
            TensorData::String(vec!["virginica".into(), "setosa".into()])
        );
    }

    #[test]
    fn binary_layouts_and_transforms_match_the_spec() {
        let spec = |name: &str, element_type, shape| crate::TensorSpec {
            name: name.into(),
            element_type,
            shape,
        };
        let kernel = |post, norm| LinearKernel {
            signature: ModelSignature {
                inputs: vec![spec(
                    "x",
                    ElementType::Float32,
                    vec![Dim::Symbolic("N".into()), Dim::Fixed(2)],
                )],
                outputs: vec![],
            },
            features: 2,
            models: 1,
            coefficients: vec![1.0, 2.0],
            intercepts: vec![0.5],
            post,
            labels: Some(Labels::Strings(vec!["no".into(), "yes".into()])),
            binary: true,
            norm,
            outputs: vec![],
        };
        let mut out = [0.0; 2];
        // s = 1·1 + 2·(-1) + 0.5 = -0.5
        kernel(Post::None, None).score(&[1.0, -1.0], &mut out);
        assert_eq!(out, [0.5, -0.5]);
        kernel(Post::Logistic, None).score(&[1.0, -1.0], &mut out);
        assert!(close(&out, &[1.0 - sigmoid(-0.5), sigmoid(-0.5)]));
        kernel(Post::Softmax, None).score(&[1.0, -1.0], &mut out);
        assert!(close(&out, &[0.731_058_6, 0.268_941_43]));
        assert_eq!(arg_max(&out), 0);
        let mut v = [3.0, -4.0];
        normalize(Norm::L2, &mut v);
        assert!(close(&v, &[0.6, -0.8]));
        let mut v = [3.0, -1.0];
        normalize(Norm::L1, &mut v);
        assert!(close(&v, &[0.75, -0.25]));
        let mut v = [2.0, -4.0];
        normalize(Norm::Max, &mut v);
        assert!(close(&v, &[0.5, -1.0]));
        assert_eq!(
            arg_max(&[1.0, 3.0, 3.0]),
            1,
            "the first of equal scores wins"
        );
    }
}
