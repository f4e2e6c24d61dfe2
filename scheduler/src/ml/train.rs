//! `train`: fit one of linfa's algorithms on a training CSV and export it as ONNX.
//!
//! The features are the CSV's columns except the label, in order. With `preprocess`, the
//! scaling it recorded is applied before fitting and baked into the ONNX graph, so the exported
//! model, like [`TrainedModel::predict`], takes unscaled values.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_bayes::GaussianNb;
use linfa_clustering::KMeans;
use linfa_elasticnet::ElasticNet;
use linfa_ensemble::{EnsembleLearner, EnsembleLearnerParams};
use linfa_linear::{FittedLinearRegression, LinearRegression};
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use linfa_nn::distance::L2Dist;
use linfa_trees::{DecisionTree, DecisionTreeParams, SplitQuality};
use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::linear::{non_negative, ridge_weights, Centered};
use super::onnx::{self, Body, ModelSpec, Tree, TreeNode};
use super::params::Params;
use super::preprocess::Preprocess;
use super::regression_tree::{self, RegressionTree};
use super::split::DEFAULT_SEED;
use super::table::{sort_classes, Table};
use super::target;
use super::{artifacts_dir, metrics, MlError, Task, TaskDir, TaskOutput};

/// The algorithms `train` knows, with the task each solves (decision trees and random forests
/// solve either: see the `target` module).
pub const ALGORITHMS: &[(&str, Task)] = &[
    ("linear_regression", Task::Regression),
    ("ridge", Task::Regression),
    ("lasso", Task::Regression),
    ("logistic_regression", Task::Classification),
    ("decision_tree", Task::Classification),
    ("random_forest", Task::Classification),
    ("kmeans", Task::Clustering),
    ("gaussian_nb", Task::Classification),
];

/// Parameters every algorithm takes.
const COMMON: &[&str] = &["train", "label", "algorithm", "preprocess"];

/// Hyper-parameters per algorithm.
fn hyper_parameters(algorithm: &str) -> &'static [&'static str] {
    match algorithm {
        "linear_regression" => &["fit_intercept"],
        "ridge" => &["alpha", "fit_intercept"],
        "lasso" => &["alpha", "max_iterations", "tolerance", "fit_intercept"],
        "logistic_regression" => &["alpha", "max_iterations", "tolerance", "fit_intercept"],
        "decision_tree" => &[
            "task",
            "max_depth",
            "min_samples_split",
            "min_samples_leaf",
            "criterion",
        ],
        "random_forest" => &[
            "task",
            "n_trees",
            "max_depth",
            "min_samples_split",
            "min_samples_leaf",
            "criterion",
            "sample_fraction",
            "feature_fraction",
            "seed",
        ],
        "kmeans" => &["k", "max_iterations", "tolerance", "n_runs", "seed"],
        "gaussian_nb" => &["var_smoothing"],
        _ => &[],
    }
}

/// Every parameter some algorithm takes.
pub(crate) fn all_params() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = COMMON.to_vec();
    for (algorithm, _) in ALGORITHMS {
        for p in hyper_parameters(algorithm) {
            if !all.contains(p) {
                all.push(p);
            }
        }
    }
    all
}

/// What a model predicts for some rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Class or cluster indices (into [`TrainedModel::classes`] for classifiers).
    Labels(Vec<usize>),
    /// Regression values.
    Values(Vec<f64>),
}

/// A fitted model, ready to predict in Rust or to be written as ONNX.
pub struct TrainedModel {
    algorithm: &'static str,
    task: Task,
    label: Option<String>,
    features: Vec<String>,
    classes: Vec<String>,
    /// `(offset, divisor)` per feature, from preprocess.
    scaling: Option<(Vec<f64>, Vec<f64>)>,
    /// The preprocess.json text, kept as the model's provenance.
    preprocess: Option<String>,
    fitted: Fitted,
    training_rows: usize,
    /// The training metric's name and value.
    training_score: (&'static str, f64),
}

enum Fitted {
    Linear(FittedLinearRegression<f64>),
    /// Ridge and lasso: `x · weights + intercept`.
    Hyperplane {
        weights: Array1<f64>,
        intercept: f64,
    },
    Logistic(MultiFittedLogisticRegression<f64, usize>),
    Tree(DecisionTree<f64, usize>),
    Forest(EnsembleLearner<DecisionTree<f64, usize>>),
    /// A regression tree, or a forest of them (their mean).
    RegressionTrees(Vec<RegressionTree>),
    KMeans(KMeans<f64, L2Dist>),
    GaussianNb(GaussianNb<f64, usize>),
}

impl TrainedModel {
    /// Fit what a `train` task's parameters describe.
    pub fn fit(values: &Map<String, Value>, workdir: &TaskDir) -> Result<TrainedModel, MlError> {
        let all = all_params();
        let p = Params::new("train", values, &all, workdir)?;
        let names: Vec<&str> = ALGORITHMS.iter().map(|(a, _)| *a).collect();
        let algorithm = p
            .choice("algorithm", &names)?
            .ok_or_else(|| p.missing("algorithm"))?;
        let mut task = ALGORITHMS
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map_or(Task::Classification, |(_, t)| *t);
        let valid: Vec<&str> = COMMON
            .iter()
            .chain(hyper_parameters(algorithm))
            .copied()
            .collect();
        let misplaced: Vec<String> = p
            .given()
            .filter(|name| !valid.contains(name))
            .map(str::to_owned)
            .collect();
        if !misplaced.is_empty() {
            return Err(MlError::UnknownParams {
                kind: format!("train with algorithm {algorithm}"),
                unknown: misplaced,
                valid: valid.iter().map(|v| (*v).to_owned()).collect(),
            });
        }

        let train_path = p.required_path("train")?;
        let label = match task {
            Task::Clustering => p.string("label")?,
            _ => Some(p.required_string("label")?),
        };
        let table = Table::read(&train_path)?;
        table.require_rows(2)?;
        let label_ix = label.as_deref().map(|l| table.column(l)).transpose()?;
        if let (true, Some(ix)) = (target::EITHER_TASK.contains(&algorithm), label_ix) {
            task = target::tree_task(&p, &table, ix)?;
        }
        let feature_ix: Vec<usize> = (0..table.header.len())
            .filter(|&i| Some(i) != label_ix)
            .collect();
        if feature_ix.is_empty() {
            return Err(MlError::data(
                &table.path,
                "has no feature column besides the label",
            ));
        }
        let features: Vec<String> = feature_ix
            .iter()
            .map(|&i| table.header[i].clone())
            .collect();

        let (scaling, preprocess) = match p.path("preprocess")? {
            Some(path) => {
                let transform = Preprocess::read(&path)?;
                check_preprocess(&transform, &path, &table, &features, label.as_deref())?;
                let text = std::fs::read_to_string(&path).map_err(|e| MlError::io(&path, e))?;
                let scaling = transform.scales().then(|| {
                    (
                        transform.features.iter().map(|f| f.offset).collect(),
                        transform.features.iter().map(|f| f.divisor).collect(),
                    )
                });
                (scaling, Some(text))
            }
            None => (None, None),
        };

        let raw = table.features(&feature_ix)?;
        let x = Array2::from_shape_vec((table.rows.len(), features.len()), raw)
            .map_err(|e| MlError::data(&table.path, e.to_string()))?;
        let x = scale(x, scaling.as_ref());

        let mut classes = Vec::new();
        let (fitted, truth) = match task {
            Task::Regression => {
                let ix = label_ix.unwrap_or_default();
                let y = Array1::from(table.numbers(ix)?);
                let truth = Truth::Values(y.to_vec());
                (fit_regressor(&p, algorithm, x.clone(), y)?, truth)
            }
            Task::Classification => {
                let ix = label_ix.unwrap_or_default();
                let names = table.class_names(ix)?;
                classes = names.clone();
                classes.sort();
                classes.dedup();
                sort_classes(&mut classes);
                target::check_class_count(&table, ix, &classes, algorithm)?;
                if classes.len() < 2 {
                    return Err(MlError::data(
                        &table.path,
                        format!(
                            "the label column '{}' holds a single class ({}); a classifier \
                             needs at least two",
                            table.header[ix],
                            classes.join(", ")
                        ),
                    ));
                }
                let y: Array1<usize> = names
                    .iter()
                    .map(|n| classes.iter().position(|c| c == n).unwrap_or_default())
                    .collect();
                let truth = Truth::Classes(y.to_vec());
                (
                    fit_classifier(&p, algorithm, x.clone(), y, classes.len())?,
                    truth,
                )
            }
            Task::Clustering => (fit_clusters(&p, x.clone())?, Truth::None),
        };
        let mut model = TrainedModel {
            algorithm,
            task,
            label,
            features,
            classes,
            scaling,
            preprocess,
            fitted,
            training_rows: table.rows.len(),
            training_score: ("none", 0.0),
        };
        model.training_score = model.score(&x, &truth);
        Ok(model)
    }

    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    pub fn task(&self) -> Task {
        self.task
    }

    /// The model's input columns, in order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Class names, indexed by the predicted label (empty unless a classifier).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The weights and intercept of a linear regressor (linear regression, ridge, lasso), on the
    /// features as the model sees them (scaled when `preprocess` scaled); None for other models.
    pub fn coefficients(&self) -> Option<(Vec<f64>, f64)> {
        match &self.fitted {
            Fitted::Linear(m) => Some((m.params().to_vec(), m.intercept())),
            Fitted::Hyperplane { weights, intercept } => Some((weights.to_vec(), *intercept)),
            _ => None,
        }
    }

    /// Predict unscaled rows (row-major, as many values per row as there are features). Values
    /// are rounded to float32 first: that is what the served model receives.
    pub fn predict(&self, rows: &[f64]) -> Result<Predictions, MlError> {
        let f = self.features.len();
        let rows: Vec<f64> = rows.iter().map(|&v| f64::from(v as f32)).collect();
        let x = Array2::from_shape_vec((rows.len() / f.max(1), f), rows).map_err(|e| {
            MlError::Model {
                model: self.algorithm.into(),
                reason: format!("rows of {f} features expected: {e}"),
            }
        })?;
        Ok(self.predict_scaled(&scale(x, self.scaling.as_ref())))
    }

    fn predict_scaled(&self, x: &Array2<f64>) -> Predictions {
        match &self.fitted {
            Fitted::Linear(m) => Predictions::Values(m.predict(x).to_vec()),
            Fitted::Hyperplane { weights, intercept } => {
                Predictions::Values((x.dot(weights) + *intercept).to_vec())
            }
            Fitted::Logistic(m) => {
                Predictions::Labels(m.predict(x).iter().map(|&c| m.classes()[c]).collect())
            }
            Fitted::Tree(m) => Predictions::Labels(m.predict(x).to_vec()),
            Fitted::Forest(m) => Predictions::Labels(forest_votes(m, x, self.classes.len())),
            Fitted::RegressionTrees(trees) => {
                Predictions::Values(regression_tree::predict_forest(trees, x))
            }
            Fitted::KMeans(m) => Predictions::Labels(m.predict(x).to_vec()),
            Fitted::GaussianNb(m) => Predictions::Labels(m.predict(x).to_vec()),
        }
    }

    /// The model as ONNX bytes (see the `onnx` module for the graphs).
    pub fn to_onnx(&self) -> Result<Vec<u8>, MlError> {
        let body = self.onnx_body()?;
        let mut metadata = vec![
            ("maas.task".to_owned(), self.task.as_str().to_owned()),
            ("maas.algorithm".to_owned(), self.algorithm.to_owned()),
            ("maas.features".to_owned(), json_list(&self.features)),
        ];
        if self.task == Task::Classification {
            metadata.push(("maas.classes".to_owned(), json_list(&self.classes)));
        }
        if let Some(label) = &self.label {
            metadata.push(("maas.label".to_owned(), label.clone()));
        }
        if let Some(preprocess) = &self.preprocess {
            metadata.push(("maas.preprocess".to_owned(), preprocess.clone()));
        }
        // Tree thresholds are moved to the raw scale (see `convert_tree`); other graphs scale.
        let scaling = match body {
            Body::Trees { .. } | Body::RegressionTrees { .. } => None,
            _ => self.scaling.clone(),
        };
        let spec = ModelSpec {
            n_features: self.features.len(),
            scaling,
            body,
            metadata,
            doc: format!(
                "{} trained by maas on {} rows; input: {}",
                self.algorithm,
                self.training_rows,
                self.features.join(", ")
            ),
        };
        Ok(onnx::encode(&spec))
    }

    fn onnx_body(&self) -> Result<Body, MlError> {
        let f = self.features.len();
        Ok(match &self.fitted {
            Fitted::Linear(m) => Body::Linear {
                weights: m.params().to_vec(),
                intercept: m.intercept(),
            },
            Fitted::Hyperplane { weights, intercept } => Body::Linear {
                weights: weights.to_vec(),
                intercept: *intercept,
            },
            Fitted::Logistic(m) => {
                // Columns follow m.classes(); put them in class-index order.
                let c = self.classes.len();
                let (params, intercept) = (m.params(), m.intercept());
                let mut weights = vec![0.0; f * c];
                let mut intercepts = vec![0.0; c];
                for (column, &class) in m.classes().iter().enumerate() {
                    intercepts[class] = intercept[column];
                    for j in 0..f {
                        weights[j * c + class] = params[(j, column)];
                    }
                }
                Body::Softmax {
                    weights,
                    intercepts,
                    classes: c,
                }
            }
            Fitted::Tree(m) => Body::Trees {
                trees: vec![convert_tree(m, None, self.scaling.as_ref())?],
                classes: self.classes.len(),
            },
            Fitted::Forest(m) => Body::Trees {
                trees: m
                    .models
                    .iter()
                    .zip(&m.model_features)
                    .map(|(tree, columns)| convert_tree(tree, Some(columns), self.scaling.as_ref()))
                    .collect::<Result<_, _>>()?,
                classes: self.classes.len(),
            },
            Fitted::RegressionTrees(trees) => Body::RegressionTrees {
                trees: trees
                    .iter()
                    .map(|t| regression_tree::to_graph_tree(t, self.scaling.as_ref()))
                    .collect(),
            },
            Fitted::KMeans(m) => Body::KMeans {
                centroids: m.centroids().iter().copied().collect(),
                k: m.centroids().nrows(),
            },
            Fitted::GaussianNb(m) => gaussian_nb_body(m, self.classes.len(), f)?,
        })
    }

    /// Accuracy (classification), R² (regression) or inertia (clustering) on scaled rows.
    fn score(&self, x: &Array2<f64>, truth: &Truth) -> (&'static str, f64) {
        match (self.predict_scaled(x), truth, &self.fitted) {
            (Predictions::Values(v), Truth::Values(t), _) => ("r2", metrics::regression(t, &v).r2),
            (Predictions::Labels(l), Truth::Classes(t), _) => {
                let right = l.iter().zip(t).filter(|(p, t)| p == t).count();
                ("accuracy", right as f64 / t.len().max(1) as f64)
            }
            (_, _, Fitted::KMeans(m)) => ("inertia", inertia(x, m.centroids())),
            _ => ("none", 0.0),
        }
    }
}

/// The training targets, for the training score.
enum Truth {
    Values(Vec<f64>),
    Classes(Vec<usize>),
    None,
}

pub(crate) fn run(values: &Map<String, Value>, workdir: &TaskDir) -> Result<TaskOutput, MlError> {
    let model = TrainedModel::fit(values, workdir)?;
    let (score_name, score) = model.training_score;

    let path = artifacts_dir(workdir)?.join("model.onnx");
    let bytes = model.to_onnx()?;
    std::fs::write(&path, bytes).map_err(|e| MlError::io(&path, e))?;

    let mut out = TaskOutput::default();
    out.export_path("MODEL", &path);
    out.export("FEATURES", &json_list(&model.features));
    if model.task == Task::Classification {
        out.export("CLASSES", &json_list(&model.classes));
    }
    out.export("TASK", model.task.as_str());
    out.export("ALGORITHM", model.algorithm);
    if let Some(label) = &model.label {
        out.export("LABEL", label);
    }
    out.metric("training_rows", model.training_rows);
    out.metric("features", model.features.len());
    out.metric("training_metric", score_name);
    out.metric("training_score", score);
    if !model.classes.is_empty() {
        out.metric("classes", model.classes.len());
    }
    Ok(out)
}

pub(crate) fn json_list(items: &[String]) -> String {
    Value::Array(items.iter().cloned().map(Value::String).collect()).to_string()
}

/// The training CSV must be the one the preprocess task wrote.
fn check_preprocess(
    transform: &Preprocess,
    path: &Path,
    table: &Table,
    features: &[String],
    label: Option<&str>,
) -> Result<(), MlError> {
    let expected = transform.feature_names();
    if expected != features {
        return Err(MlError::data(
            &table.path,
            format!(
                "its feature columns ({}) are not those {} describes ({}); pass the train CSV \
                 that the same preprocess task wrote",
                features.join(", "),
                path.display(),
                expected.join(", ")
            ),
        ));
    }
    if let Some(label) = label {
        if label != transform.label {
            return Err(MlError::data(
                path,
                format!(
                    "it was fitted with label '{}', not '{label}'",
                    transform.label
                ),
            ));
        }
    }
    Ok(())
}

fn scale(mut x: Array2<f64>, scaling: Option<&(Vec<f64>, Vec<f64>)>) -> Array2<f64> {
    if let Some((offsets, divisors)) = scaling {
        for mut row in x.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (*v - offsets[j]) / divisors[j];
            }
        }
    }
    x
}

/// Run a linfa fit, turning its error or its panic into a training error.
fn guarded<T, E: std::fmt::Display>(
    algorithm: &str,
    fit: impl FnOnce() -> Result<T, E>,
) -> Result<T, MlError> {
    let failed = |reason: String| MlError::Training {
        algorithm: algorithm.to_owned(),
        reason,
    };
    match catch_unwind(AssertUnwindSafe(fit)) {
        Ok(Ok(model)) => Ok(model),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(panic) => Err(failed(
            panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the library panicked".to_owned()),
        )),
    }
}

fn fit_regressor(
    p: &Params,
    algorithm: &str,
    x: Array2<f64>,
    y: Array1<f64>,
) -> Result<Fitted, MlError> {
    if target::EITHER_TASK.contains(&algorithm) {
        let trees = regression_tree::fit_from_params(p, algorithm, &x, &y.to_vec())?;
        return Ok(Fitted::RegressionTrees(trees));
    }
    let with_intercept = p.boolean("fit_intercept")?.unwrap_or(true);
    match algorithm {
        "ridge" => {
            let alpha = non_negative(p, "alpha", 1.0)?;
            let centered = Centered::new(x, y, with_intercept);
            let weights = ridge_weights(&centered, alpha).ok_or_else(|| MlError::Training {
                algorithm: algorithm.into(),
                reason: "the features are collinear (or a column is a copy of another), so \
                         alpha 0 has no unique solution; use an alpha above 0"
                    .into(),
            })?;
            let intercept = centered.intercept(&weights);
            Ok(Fitted::Hyperplane { weights, intercept })
        }
        "lasso" => {
            let alpha = non_negative(p, "alpha", 1.0)?;
            let max_iterations = p.count("max_iterations", 1000, 1)?;
            let params = ElasticNet::<f64>::lasso()
                .penalty(alpha)
                .max_iterations(u32::try_from(max_iterations).unwrap_or(u32::MAX))
                .tolerance(p.positive("tolerance", 1e-4)?)
                .with_intercept(false);
            // linfa-elasticnet centers y but not X, which biases the intercept: fit the
            // centered data without one and put it back.
            let centered = Centered::new(x, y, with_intercept);
            let data = DatasetBase::new(centered.x.view(), centered.y.view());
            let model = guarded(algorithm, || params.fit(&data))?;
            let weights = model.hyperplane().clone();
            let intercept = centered.intercept(&weights);
            Ok(Fitted::Hyperplane { weights, intercept })
        }
        _ => {
            let data = DatasetBase::new(x, y);
            let model = guarded(algorithm, || {
                LinearRegression::new()
                    .with_intercept(with_intercept)
                    .fit(&data)
            })?;
            Ok(Fitted::Linear(model))
        }
    }
}

fn fit_classifier(
    p: &Params,
    algorithm: &str,
    x: Array2<f64>,
    y: Array1<usize>,
    n_classes: usize,
) -> Result<Fitted, MlError> {
    let data = DatasetBase::new(x, y);
    match algorithm {
        "logistic_regression" => {
            let params = MultiLogisticRegression::default()
                .alpha(p.number("alpha")?.unwrap_or(1.0))
                .max_iterations(p.count("max_iterations", 100, 1)? as u64)
                .gradient_tolerance(p.positive("tolerance", 1e-4)?)
                .with_intercept(p.boolean("fit_intercept")?.unwrap_or(true));
            let model = guarded(algorithm, || params.fit(&data))?;
            Ok(Fitted::Logistic(model))
        }
        "decision_tree" => {
            let params = tree_params(p)?;
            Ok(Fitted::Tree(guarded(algorithm, || params.fit(&data))?))
        }
        "random_forest" => {
            let n_features = data.records().ncols();
            let default_fraction = (n_features as f64).sqrt().ceil() / n_features as f64;
            let feature_fraction = p.number("feature_fraction")?.unwrap_or(default_fraction);
            if feature_fraction <= 0.0 || feature_fraction > 1.0 {
                return Err(p.invalid(
                    "feature_fraction",
                    format!("expected a fraction in (0, 1], got {feature_fraction}"),
                ));
            }
            let rng = ChaCha8Rng::seed_from_u64(p.integer("seed")?.unwrap_or(DEFAULT_SEED));
            let params = EnsembleLearnerParams::new_fixed_rng(tree_params(p)?, rng)
                .ensemble_size(p.count("n_trees", 100, 1)?)
                .bootstrap_proportion(p.positive("sample_fraction", 1.0)?)
                .feature_proportion(feature_fraction);
            Ok(Fitted::Forest(guarded(algorithm, || params.fit(&data))?))
        }
        _ => {
            let smoothing = p.positive("var_smoothing", 1e-9)?;
            let params = GaussianNb::params().var_smoothing(smoothing);
            let model = guarded(algorithm, || params.fit(&data))?;
            if gaussian_nb_body(&model, n_classes, data.records().ncols()).is_err() {
                return Err(MlError::Training {
                    algorithm: algorithm.into(),
                    reason: "a class got no parameters".into(),
                });
            }
            Ok(Fitted::GaussianNb(model))
        }
    }
}

fn tree_params(p: &Params) -> Result<DecisionTreeParams<f64, usize>, MlError> {
    let criterion = match p
        .choice("criterion", &["gini", "entropy"])?
        .unwrap_or("gini")
    {
        "entropy" => SplitQuality::Entropy,
        _ => SplitQuality::Gini,
    };
    let max_depth = match p.integer("max_depth")? {
        Some(0) => return Err(p.invalid("max_depth", "expected at least 1")),
        Some(d) => Some(usize::try_from(d).unwrap_or(usize::MAX)),
        None => None,
    };
    Ok(DecisionTree::params()
        .split_quality(criterion)
        .max_depth(max_depth)
        .min_weight_split(p.count("min_samples_split", 2, 2)? as f32)
        .min_weight_leaf(p.count("min_samples_leaf", 1, 1)? as f32))
}

fn fit_clusters(p: &Params, x: Array2<f64>) -> Result<Fitted, MlError> {
    let k = p.count("k", 3, 1)?;
    if k > x.nrows() {
        return Err(p.invalid(
            "k",
            format!(
                "{k} clusters need at least {k} rows; the data has {}",
                x.nrows()
            ),
        ));
    }
    let rng = ChaCha8Rng::seed_from_u64(p.integer("seed")?.unwrap_or(DEFAULT_SEED));
    let params = KMeans::params_with_rng(k, rng)
        .max_n_iterations(p.count("max_iterations", 300, 1)? as u64)
        .tolerance(p.positive("tolerance", 1e-4)?)
        .n_runs(p.count("n_runs", 10, 1)?);
    let data = DatasetBase::from(x);
    Ok(Fitted::KMeans(guarded("kmeans", || params.fit(&data))?))
}

/// Majority vote of the forest's trees, each tree predicting with linfa on its own columns;
/// a tie goes to the lowest class index (what ONNX ArgMax does), not to linfa's hash order.
fn forest_votes(
    forest: &EnsembleLearner<DecisionTree<f64, usize>>,
    x: &Array2<f64>,
    n_classes: usize,
) -> Vec<usize> {
    let mut votes = vec![0usize; x.nrows() * n_classes];
    for (tree, columns) in forest.models.iter().zip(&forest.model_features) {
        let predicted = tree.predict(&x.select(Axis(1), columns));
        for (row, &class) in predicted.iter().enumerate() {
            votes[row * n_classes + class] += 1;
        }
    }
    votes
        .chunks(n_classes.max(1))
        .map(|row| {
            let best = row.iter().copied().max().unwrap_or(0);
            row.iter().position(|&v| v == best).unwrap_or(0)
        })
        .collect()
}

/// linfa's tree as numbered nodes over the raw features; `columns` maps a forest tree's
/// feature indices back to the model's features.
///
/// Each threshold becomes the float32 boundary of its split on the unscaled input (see
/// [`float32_boundary`]), so the graph needs no scaling and decides every float32 row exactly
/// as linfa does on the scaled row.
fn convert_tree(
    tree: &DecisionTree<f64, usize>,
    columns: Option<&Vec<usize>>,
    scaling: Option<&(Vec<f64>, Vec<f64>)>,
) -> Result<Tree, MlError> {
    let mut nodes = Vec::new();
    let mut pending = vec![(tree.root_node(), None::<(usize, bool)>)];
    while let Some((node, parent)) = pending.pop() {
        let at = nodes.len();
        if let Some((parent, is_left)) = parent {
            if let Some(TreeNode::Split { left, right, .. }) = nodes.get_mut(parent) {
                *if is_left { left } else { right } = at;
            }
        }
        if let Some(class) = node.prediction() {
            nodes.push(TreeNode::Leaf { class });
            continue;
        }
        let (feature, threshold, _) = node.split();
        let feature = match columns {
            Some(columns) => columns.get(feature).copied().ok_or_else(broken_tree)?,
            None => feature,
        };
        let (offset, divisor) = scaling.map_or((0.0, 1.0), |(o, d)| (o[feature], d[feature]));
        nodes.push(TreeNode::Split {
            feature,
            threshold: f64::from(float32_boundary(threshold, offset, divisor)),
            left: at,
            right: at,
        });
        let children = node.children();
        let (Some(Some(left)), Some(Some(right))) = (children.first(), children.get(1)) else {
            return Err(broken_tree());
        };
        pending.push((right, Some((at, false))));
        pending.push((left, Some((at, true))));
    }
    Ok(Tree { nodes })
}

fn broken_tree() -> MlError {
    MlError::Training {
        algorithm: "decision_tree".into(),
        reason: "the fitted tree has a split without two children".into(),
    }
}

/// The least float32 `v` with `(v - offset) / divisor >= threshold` in f64 arithmetic, so that
/// for every float32 input `x`, `x < boundary` exactly when linfa's `(x - offset) / divisor <
/// threshold` holds (the scaled value is monotone in `x`). Found by stepping from the nearest
/// float32 to the unscaled threshold, a step or two at most.
pub(crate) fn float32_boundary(threshold: f64, offset: f64, divisor: f64) -> f32 {
    let scaled = |v: f32| (f64::from(v) - offset) / divisor;
    let mut boundary = (threshold * divisor + offset) as f32;
    for _ in 0..64 {
        if scaled(boundary) < threshold {
            boundary = boundary.next_up();
        } else if scaled(boundary.next_down()) >= threshold {
            boundary = boundary.next_down();
        } else {
            break;
        }
    }
    boundary
}

/// linfa-bayes keeps a class's mean, variance and prior private; its serde form is how to read
/// them: `{"class_info": {"<class>": {"prior", "theta", "sigma", ...}}}`, arrays as
/// `{"data": [...]}`.
fn gaussian_nb_body(
    model: &GaussianNb<f64, usize>,
    classes: usize,
    f: usize,
) -> Result<Body, MlError> {
    let unreadable = |why: &str| MlError::Training {
        algorithm: "gaussian_nb".into(),
        reason: format!("cannot read the fitted parameters ({why})"),
    };
    let value = serde_json::to_value(model).map_err(|e| unreadable(&e.to_string()))?;
    let info = value
        .get("class_info")
        .and_then(Value::as_object)
        .ok_or_else(|| unreadable("no class_info"))?;
    let numbers = |v: Option<&Value>| -> Option<Vec<f64>> {
        v?.get("data")?
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect()
    };
    let mut means = vec![0.0; classes * f];
    let mut half_inverse_variances = vec![0.0; classes * f];
    let mut biases = vec![0.0; classes];
    let mut seen = vec![false; classes];
    for (class, entry) in info {
        let c: usize = class.parse().map_err(|_| unreadable("a class key"))?;
        let prior = entry.get("prior").and_then(Value::as_f64);
        let theta = numbers(entry.get("theta"));
        let sigma = numbers(entry.get("sigma"));
        let (Some(prior), Some(theta), Some(sigma)) = (prior, theta, sigma) else {
            return Err(unreadable("prior, theta or sigma"));
        };
        if c >= classes || theta.len() != f || sigma.len() != f {
            return Err(unreadable("unexpected sizes"));
        }
        seen[c] = true;
        // The same terms as linfa's joint_log_likelihood.
        let log_norm: f64 = sigma
            .iter()
            .map(|s| (2.0 * std::f64::consts::PI * s).ln())
            .sum();
        biases[c] = prior.ln() - 0.5 * log_norm;
        for j in 0..f {
            means[c * f + j] = theta[j];
            half_inverse_variances[c * f + j] = 0.5 / sigma[j];
        }
    }
    if seen.iter().any(|s| !s) {
        return Err(unreadable("a class is missing"));
    }
    Ok(Body::GaussianNb {
        means,
        half_inverse_variances,
        biases,
        classes,
    })
}

/// Sum of squared distances from each row to its nearest centroid.
fn inertia(x: &Array2<f64>, centroids: &Array2<f64>) -> f64 {
    x.rows()
        .into_iter()
        .map(|row| {
            centroids
                .rows()
                .into_iter()
                .map(|c| {
                    row.iter()
                        .zip(c)
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_boundaries_decide_as_f64_does() {
        // (6.2 + 6.4) / 2 is a hair above 6.3 in f64, and float32(6.3) a hair above that: the
        // nearest float32 to the threshold is float32(6.3), so rounding the threshold is not
        // enough, and with scaling the decision depends on the f64 arithmetic too.
        let threshold = (6.2f64 + 6.4) / 2.0;
        for (offset, divisor) in [(0.0, 1.0), (5.8, 0.83), (4.3, 3.6), (-2.0, 1e-3)] {
            let t = (threshold - offset) / divisor;
            let b = float32_boundary(t, offset, divisor);
            for v in [
                b.next_down().next_down(),
                b.next_down(),
                b,
                b.next_up(),
                6.3f32,
            ] {
                let linfa = (f64::from(v) - offset) / divisor < t;
                assert_eq!(v < b, linfa, "{v} offset {offset} divisor {divisor}");
            }
        }
    }

    #[test]
    fn every_algorithm_has_its_parameters_documented() {
        let doc = include_str!("mod.rs");
        for name in all_params() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not in the module doc"
            );
        }
    }
}
