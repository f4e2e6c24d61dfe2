//! ONNX export of fitted models, written with the protobuf types of `tract_onnx::pb`.
//!
//! Every graph uses default-domain operators of opset 13 only, so tract and ONNX Runtime both run
//! it, and computes what the Rust model computes, in float32:
//!
//! - one input `input`, float32 `[N, F]`, `N` a symbolic batch size, `F` the raw features;
//! - a baked-in scaling prefix `(input - offset) / divisor` when `preprocess` scaled features
//!   (trees excepted: their thresholds are moved to the raw scale instead);
//! - classifiers: `label` (int64 `[N]`, an index into the model's classes, ties going to the
//!   lowest index as ONNX ArgMax does) and `probabilities` (float32 `[N, C]`);
//! - regressors: `variable` (float32 `[N, 1]`);
//! - clustering: `label` (int64 `[N]`, the nearest centroid) and `distances` (float32 `[N, K]`).
//!
//! Linear models: MatMul + Add (logistic regression: Softmax and ArgMax of the logits).
//! Gaussian naive Bayes: the joint log-likelihood as Unsqueeze, Sub, Mul, ReduceSum, then
//! Softmax and ArgMax. k-means: squared distances to the centroids the same way, ArgMin, Sqrt.
//!
//! Trees are walked, not looked up in an `ai.onnx.ml` TreeEnsemble: all trees of a forest
//! advance one level per step (Gather the node's feature, threshold and children, compare with
//! Less, choose a child with Where), leaves pointing to themselves, for as many steps as the
//! deepest tree is deep; then each tree's leaf casts one vote (Gather, ReduceSum), `label` is
//! the ArgMax of the votes and `probabilities` the vote shares; a regression forest's leaves
//! hold their value over the tree count, and `variable` is their sum (ReduceSum), the mean of
//! the trees. Thresholds are the exact
//! float32 boundaries of linfa's `x < threshold` (see `train::float32_boundary`) and votes are
//! small integers, so served labels equal the Rust model's for every float32 input.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

/// The opset the graphs are written for.
const OPSET: i64 = 13;
/// The IR version that goes with opset 13.
const IR_VERSION: i64 = 7;

/// The symbolic batch dimension of every input and output.
pub(crate) const BATCH: &str = "N";

/// A fitted model reduced to the numbers its graph needs.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// `variable = x · weights + intercept`.
    Linear { weights: Vec<f64>, intercept: f64 },
    /// Multinomial logistic regression: `logits = x · weights + intercepts`, weights `[F, C]`
    /// row-major.
    Softmax {
        weights: Vec<f64>,
        intercepts: Vec<f64>,
        classes: usize,
    },
    /// Gaussian naive Bayes: per class `c`, joint log-likelihood
    /// `bias[c] - Σ_j (x_j - mean[c,j])² · half_inverse_variance[c,j]`.
    GaussianNb {
        means: Vec<f64>,
        half_inverse_variances: Vec<f64>,
        biases: Vec<f64>,
        classes: usize,
    },
    /// Nearest centroid by Euclidean distance; centroids `[K, F]` row-major.
    KMeans { centroids: Vec<f64>, k: usize },
    /// A vote among trees (one tree for a decision tree).
    Trees { trees: Vec<Tree>, classes: usize },
    /// The mean of regression trees' leaf values (one tree for a decision tree).
    RegressionTrees { trees: Vec<Tree> },
}

/// A classification or regression tree with nodes numbered from its root (0).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    pub nodes: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TreeNode {
    /// `x[feature] < threshold` goes to `left`, anything else (NaN too) to `right`.
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        class: usize,
    },
    /// A regression tree's leaf.
    Value {
        value: f64,
    },
}

impl Tree {
    /// Edges on the longest path from the root.
    pub(crate) fn depth(&self) -> usize {
        fn depth(nodes: &[TreeNode], at: usize) -> usize {
            match nodes[at] {
                TreeNode::Leaf { .. } | TreeNode::Value { .. } => 0,
                TreeNode::Split { left, right, .. } => {
                    1 + depth(nodes, left).max(depth(nodes, right))
                }
            }
        }
        depth(&self.nodes, 0)
    }

    /// The class of the leaf a row reaches, in f64 as linfa compares.
    #[cfg(test)]
    pub(crate) fn predict(&self, row: &[f64]) -> usize {
        let mut at = 0;
        loop {
            match self.nodes[at] {
                TreeNode::Leaf { class } => return class,
                TreeNode::Value { .. } => return usize::MAX,
                TreeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    at = if row[feature] < threshold {
                        left
                    } else {
                        right
                    }
                }
            }
        }
    }
}

/// Everything written into the ONNX file.
#[derive(Debug, Clone)]
pub(crate) struct ModelSpec {
    pub n_features: usize,
    /// `(offset, divisor)` per raw feature, when preprocess scaled them.
    pub scaling: Option<(Vec<f64>, Vec<f64>)>,
    pub body: Body,
    /// Written as the model's `metadata_props`.
    pub metadata: Vec<(String, String)>,
    pub doc: String,
}

/// Encode a model as ONNX bytes.
pub(crate) fn encode(spec: &ModelSpec) -> Vec<u8> {
    build(spec).encode_to_vec()
}

fn build(spec: &ModelSpec) -> pb::ModelProto {
    let mut g = GraphBuilder::default();
    let f = spec.n_features;
    let x = match &spec.scaling {
        Some((offsets, divisors)) => {
            let offsets = g.floats("offset", &[f], offsets);
            let divisors = g.floats("divisor", &[f], divisors);
            let shifted = g.op("Sub", &["input", &offsets], vec![]);
            g.op("Div", &[&shifted, &divisors], vec![])
        }
        None => "input".to_owned(),
    };
    let outputs = match &spec.body {
        Body::Linear { weights, intercept } => {
            let w = g.floats("weights", &[f, 1], weights);
            let b = g.floats("intercept", &[1], &[*intercept]);
            let product = g.op("MatMul", &[&x, &w], vec![]);
            g.op_into("Add", &[&product, &b], "variable", vec![]);
            vec![output("variable", DataType::Float, Some(1))]
        }
        Body::Softmax {
            weights,
            intercepts,
            classes,
        } => {
            let w = g.floats("weights", &[f, *classes], weights);
            let b = g.floats("intercepts", &[*classes], intercepts);
            let product = g.op("MatMul", &[&x, &w], vec![]);
            let logits = g.op("Add", &[&product, &b], vec![]);
            classifier_outputs(&mut g, &logits, *classes)
        }
        Body::GaussianNb {
            means,
            half_inverse_variances,
            biases,
            classes,
        } => {
            let means = g.floats("means", &[*classes, f], means);
            let weights = g.floats(
                "half_inverse_variances",
                &[*classes, f],
                half_inverse_variances,
            );
            let biases = g.floats("biases", &[*classes], biases);
            let squared = squared_differences(&mut g, &x, &means);
            let weighted = g.op("Mul", &[&squared, &weights], vec![]);
            let axes = g.ints("axes", &[1], &[2]);
            let sum = g.op(
                "ReduceSum",
                &[&weighted, &axes],
                vec![attr_int("keepdims", 0)],
            );
            let log_likelihood = g.op("Sub", &[&biases, &sum], vec![]);
            classifier_outputs(&mut g, &log_likelihood, *classes)
        }
        Body::KMeans { centroids, k } => {
            let centroids = g.floats("centroids", &[*k, f], centroids);
            let squared = squared_differences(&mut g, &x, &centroids);
            let axes = g.ints("axes", &[1], &[2]);
            let d2 = g.op(
                "ReduceSum",
                &[&squared, &axes],
                vec![attr_int("keepdims", 0)],
            );
            g.op_into(
                "ArgMin",
                &[&d2],
                "label",
                vec![attr_int("axis", 1), attr_int("keepdims", 0)],
            );
            g.op_into("Sqrt", &[&d2], "distances", vec![]);
            vec![
                output("label", DataType::Int64, None),
                output("distances", DataType::Float, Some(*k)),
            ]
        }
        Body::Trees { trees, classes } => {
            let votes = tree_votes(&mut g, &x, trees, *classes);
            let n_trees = g.floats("n_trees", &[], &[trees.len() as f64]);
            g.op_into(
                "ArgMax",
                &[&votes],
                "label",
                vec![attr_int("axis", 1), attr_int("keepdims", 0)],
            );
            g.op_into("Div", &[&votes, &n_trees], "probabilities", vec![]);
            vec![
                output("label", DataType::Int64, None),
                output("probabilities", DataType::Float, Some(*classes)),
            ]
        }
        Body::RegressionTrees { trees } => {
            let (node, leaves) = walk_trees(&mut g, &x, trees);
            // Each leaf holds its value over the tree count: the sum over trees is the mean.
            let share = 1.0 / trees.len().max(1) as f64;
            let values: Vec<f64> = leaves
                .iter()
                .map(|leaf| match leaf {
                    TreeNode::Value { value } => value * share,
                    _ => 0.0,
                })
                .collect();
            let values = g.floats("leaf_values", &[values.len()], &values);
            let per_tree = g.op("Gather", &[&values, &node], vec![]);
            let axes = g.ints("axes", &[1], &[1]);
            g.op_into(
                "ReduceSum",
                &[&per_tree, &axes],
                "variable",
                vec![attr_int("keepdims", 1)],
            );
            vec![output("variable", DataType::Float, Some(1))]
        }
    };
    let input = value_info("input", DataType::Float, &[None, Some(f)]);
    pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "maas".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: spec.doc.clone(),
        graph: Some(pb::GraphProto {
            name: "maas_model".into(),
            node: g.nodes,
            initializer: g.initializers,
            input: vec![input],
            output: outputs,
            ..Default::default()
        }),
        metadata_props: spec
            .metadata
            .iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

/// `label` = ArgMax of the scores, `probabilities` = Softmax of them.
fn classifier_outputs(
    g: &mut GraphBuilder,
    scores: &str,
    classes: usize,
) -> Vec<pb::ValueInfoProto> {
    g.op_into(
        "ArgMax",
        &[scores],
        "label",
        vec![attr_int("axis", 1), attr_int("keepdims", 0)],
    );
    g.op_into(
        "Softmax",
        &[scores],
        "probabilities",
        vec![attr_int("axis", 1)],
    );
    vec![
        output("label", DataType::Int64, None),
        output("probabilities", DataType::Float, Some(classes)),
    ]
}

/// `(x[n, 1, f] - points[k, f])²`, shape `[N, K, F]`.
fn squared_differences(g: &mut GraphBuilder, x: &str, points: &str) -> String {
    let axes = g.ints("axes", &[1], &[1]);
    let expanded = g.op("Unsqueeze", &[x, &axes], vec![]);
    let difference = g.op("Sub", &[&expanded, points], vec![]);
    g.op("Mul", &[&difference, &difference], vec![])
}

/// Per-class vote counts `[N, C]` of a tree ensemble.
fn tree_votes(g: &mut GraphBuilder, x: &str, trees: &[Tree], classes: usize) -> String {
    let (node, leaves) = walk_trees(g, x, trees);
    let mut leaf_votes = vec![0.0; leaves.len() * classes];
    for (i, leaf) in leaves.iter().enumerate() {
        if let TreeNode::Leaf { class } = leaf {
            leaf_votes[i * classes + class] = 1.0;
        }
    }
    let leaf_votes = g.floats("leaf_votes", &[leaves.len(), classes], &leaf_votes);
    let votes = g.op("Gather", &[&leaf_votes, &node], vec![]);
    let axes = g.ints("axes", &[1], &[1]);
    g.op("ReduceSum", &[&votes, &axes], vec![attr_int("keepdims", 0)])
}

/// Walk every tree of an ensemble to its leaf: the name of the `[N, T]` tensor of the node
/// each row reaches in each tree (in one numbering of all trees' nodes), and the nodes in that
/// numbering.
fn walk_trees<'t>(g: &mut GraphBuilder, x: &str, trees: &'t [Tree]) -> (String, Vec<&'t TreeNode>) {
    // All trees' nodes in one numbering; leaves loop onto themselves.
    let all: Vec<&TreeNode> = trees.iter().flat_map(|t| &t.nodes).collect();
    let total = all.len();
    let (mut feature, mut threshold, mut left, mut right) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    let mut roots = Vec::with_capacity(trees.len());
    for tree in trees {
        let base = feature.len();
        roots.push(base);
        for (i, node) in tree.nodes.iter().enumerate() {
            match *node {
                TreeNode::Split {
                    feature: f,
                    threshold: t,
                    left: l,
                    right: r,
                } => {
                    feature.push(f as i64);
                    threshold.push(t);
                    left.push((base + l) as i64);
                    right.push((base + r) as i64);
                }
                TreeNode::Leaf { .. } | TreeNode::Value { .. } => {
                    feature.push(0);
                    threshold.push(0.0);
                    left.push((base + i) as i64);
                    right.push((base + i) as i64);
                }
            }
        }
    }
    let steps = trees.iter().map(Tree::depth).max().unwrap_or(0).max(1);
    let t = trees.len();

    // Step one starts from the roots, the same for every row: plain constants.
    let at_roots = |v: &[i64]| roots.iter().map(|&r| v[r]).collect::<Vec<i64>>();
    let root_features = g.ints("root_feature", &[t], &at_roots(&feature));
    let root_thresholds: Vec<f64> = roots.iter().map(|&r| threshold[r]).collect();
    let root_thresholds = g.floats("root_threshold", &[t], &root_thresholds);
    let root_left = g.ints("root_left", &[t], &at_roots(&left));
    let root_right = g.ints("root_right", &[t], &at_roots(&right));
    let values = g.op("Gather", &[x, &root_features], vec![attr_int("axis", 1)]);
    let goes_left = g.op("Less", &[&values, &root_thresholds], vec![]);
    let mut node = g.op("Where", &[&goes_left, &root_left, &root_right], vec![]);

    let n = feature.len();
    let feature = g.ints("node_feature", &[n], &feature);
    let threshold = g.floats("node_threshold", &[n], &threshold);
    let left = g.ints("node_left", &[n], &left);
    let right = g.ints("node_right", &[n], &right);
    for _ in 1..steps {
        let features = g.op("Gather", &[&feature, &node], vec![]);
        let values = g.op("GatherElements", &[x, &features], vec![attr_int("axis", 1)]);
        let thresholds = g.op("Gather", &[&threshold, &node], vec![]);
        let goes_left = g.op("Less", &[&values, &thresholds], vec![]);
        let lefts = g.op("Gather", &[&left, &node], vec![]);
        let rights = g.op("Gather", &[&right, &node], vec![]);
        node = g.op("Where", &[&goes_left, &lefts, &rights], vec![]);
    }
    (node, all)
}

/// Nodes and constants, named as they are added.
#[derive(Default)]
struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    counter: usize,
}

impl GraphBuilder {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    fn floats(&mut self, hint: &str, dims: &[usize], data: &[f64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            float_data: data.iter().map(|&v| v as f32).collect(),
            ..Default::default()
        });
        name
    }

    fn ints(&mut self, hint: &str, dims: &[usize], data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    /// Add a node with one output and return the output's name.
    fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        let output = self.fresh(&op_type.to_ascii_lowercase());
        self.op_into(op_type, inputs, &output, attributes);
        output
    }

    fn op_into(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<pb::AttributeProto>,
    ) {
        let name = self.fresh(op_type);
        self.nodes.push(pb::NodeProto {
            name,
            op_type: op_type.to_owned(),
            input: inputs.iter().map(|i| (*i).to_owned()).collect(),
            output: vec![output.to_owned()],
            attribute: attributes,
            ..Default::default()
        });
    }
}

fn attr_int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

/// An output of shape `[N]` (`second` None) or `[N, second]`.
fn output(name: &str, element: DataType, second: Option<usize>) -> pb::ValueInfoProto {
    match second {
        Some(d) => value_info(name, element, &[None, Some(d)]),
        None => value_info(name, element, &[None]),
    }
}

/// A tensor's declared type; `None` dimensions are the batch size `N`.
fn value_info(name: &str, element: DataType, dims: &[Option<usize>]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Some(n) => dimension::Value::DimValue(*n as i64),
                None => dimension::Value::DimParam(BATCH.into()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: element as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump() -> Tree {
        Tree {
            nodes: vec![
                TreeNode::Split {
                    feature: 1,
                    threshold: 2.5,
                    left: 1,
                    right: 2,
                },
                TreeNode::Leaf { class: 0 },
                TreeNode::Leaf { class: 1 },
            ],
        }
    }

    #[test]
    fn trees_walk_as_linfa_does() {
        let tree = stump();
        assert_eq!(tree.depth(), 1);
        assert_eq!(tree.predict(&[9.0, 2.4]), 0);
        assert_eq!(tree.predict(&[9.0, 2.5]), 1);
        assert_eq!(tree.predict(&[9.0, f64::NAN]), 1);
    }

    #[test]
    fn the_graph_declares_a_symbolic_batch() {
        let spec = ModelSpec {
            n_features: 2,
            scaling: None,
            body: Body::Trees {
                trees: vec![stump()],
                classes: 2,
            },
            metadata: vec![("k".into(), "v".into())],
            doc: String::new(),
        };
        let model = build(&spec);
        let graph = model.graph.unwrap();
        assert_eq!(graph.input[0].name, "input");
        let names: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["label", "probabilities"]);
        assert_eq!(model.opset_import[0].version, 13);
        assert_eq!(model.metadata_props[0].key, "k");
    }
}
