//! The scheduler's built-in ML tasks: load data, split it, preprocess it, train a model and
//! export it as ONNX, evaluate and compare models. Pure Rust and synchronous: the algorithms
//! come from linfa, exported graphs are written with tract's ONNX protobuf types and run with
//! tract; no Python at run time.
//!
//! [`run_builtin`] runs one task. Its parameters arrive after the runner substituted `${VAR}`
//! references, so every value may be a JSON string, number, boolean or array: numbers may be
//! written as strings (`"0.8"`), lists as JSON arrays, as a string holding a JSON array (what
//! `${FEATURES}` expands to) or as a comma-separated string, and an empty string counts as not
//! given. A parameter a kind does not know is an error naming it. Relative paths are taken from
//! the task's folder; every file a task writes goes to `<task folder>/artifacts/`, and paths
//! are exported absolute.
//!
//! Tasks hand data to each other as CSV files with a header row, through the exported
//! variables below (UPPERCASE). A parameter is never filled from a predecessor implicitly:
//! write `train: ${TRAIN}` in the workflow. "required" means the task fails without it.
//!
//! | kind | parameter | default | meaning |
//! |---|---|---|---|
//! | `load_csv` | `path` | required | CSV file (in the job's folder or under `scheduler.data_roots`), or an `http://`/`https://` URL fetched at run time |
//! | | `delimiter` | `,` | one character; `tab` (or `\t`) for tab-separated |
//! | | `label` | required | the label column (must exist) |
//! | | `columns` | all | columns to keep, in this order; the label is always kept |
//! | `load_dataset` | `name` | required | `iris` (label `species`: setosa, versicolor, virginica) or `house_prices` (label `price`) |
//! | `split` | `data` | required | CSV to split (`${DATA}`) |
//! | | `label` | required | label column (`${LABEL}`) |
//! | | `train_size` | `0.8` | fraction of rows for training, strictly between 0 and 1 |
//! | | `seed` | `42` | shuffle seed; the same seed gives the same split |
//! | | `stratify` | `false` | keep each class's share of rows in both parts |
//! | `preprocess` | `train`, `test` | required | the split's CSVs (`${TRAIN}`, `${TEST}`) |
//! | | `label` | required | label column, copied unchanged |
//! | | `drop` | none | columns to remove |
//! | | `missing` | `drop` | `drop` rows with a missing value, or fill with the training `mean`, `median` or `zero` |
//! | | `scale` | `none` | `standard` (mean 0, std 1) or `minmax` ([0, 1]) scaling of numeric features, fitted on train, applied by `train` and baked into the model |
//! | | `encode` | none | categorical columns to one-hot encode as `column=category` 0/1 columns (categories of train; an unknown category, or a missing value when `missing` fills, is all 0) |
//! | `train` | `train` | required | training CSV (`${TRAIN}`); features are all columns but the label, in order |
//! | | `label` | required (optional for `kmeans`) | label column; for `kmeans` it is only left out of the features |
//! | | `algorithm` | required | `linear_regression`, `ridge`, `lasso`, `logistic_regression`, `decision_tree`, `random_forest`, `kmeans`, `gaussian_nb` |
//! | | `task` | from the label | decision tree, random forest: `classification` or `regression`; without it, a numeric label holding a value that is not a whole number trains a regressor, any other label a classifier. A classifier (of any algorithm) refuses a numeric label with more than 50 distinct values |
//! | | `preprocess` | none | `${PREPROCESS}`: apply its scaling before fitting and bake it into the ONNX graph |
//! | | `fit_intercept` | `true` | linear, ridge, lasso and logistic regression (the intercept is never penalised) |
//! | | `alpha` | `1.0` | ridge, lasso: the penalty, at least 0, as scikit-learn's: ridge minimises ‖y − Xw − b‖² + alpha‖w‖²; lasso ‖y − Xw − b‖² / 2n + alpha‖w‖₁; logistic regression: L2 penalty |
//! | | `max_iterations` | `100` (logistic), `300` (kmeans), `1000` (lasso) | iteration limit |
//! | | `tolerance` | `1e-4` | logistic regression: gradient tolerance; kmeans: centroid movement; lasso: stop once the largest coefficient change, relative to the largest coefficient, and the duality gap, relative to ‖y‖² (y centered with an intercept), are below it |
//! | | `max_depth` | unlimited | decision tree, random forest |
//! | | `min_samples_split` | `2` | decision tree, random forest: rows needed to split a node |
//! | | `min_samples_leaf` | `1` | decision tree, random forest: rows each side of a split needs |
//! | | `criterion` | `gini`, `squared_error` | decision tree, random forest: `gini` or `entropy` for classification; `squared_error` (the only one) for regression |
//! | | `n_trees` | `100` | random forest |
//! | | `sample_fraction` | `1.0` | random forest: bootstrap sample size as a fraction of the rows |
//! | | `feature_fraction` | ⌈√F⌉ / F, `1.0` | random forest: classification: share of the features each tree sees (drawn per tree), default ⌈√F⌉ / F; regression: share of the features each split may use (drawn at each node, as scikit-learn), default 1.0 |
//! | | `k` | `3` | kmeans: number of clusters |
//! | | `n_runs` | `10` | kmeans: restarts, the best one kept |
//! | | `seed` | `42` | random forest, kmeans |
//! | | `var_smoothing` | `1e-9` | gaussian_nb: share of the largest variance added to all |
//! | `evaluate` | `model` | required | ONNX file (`${MODEL}`) |
//! | | `test` | required | test CSV in the model's input format (`${TEST}`) |
//! | | `label` | the model's | label column (`${LABEL}`); optional for clustering |
//! | | `task` | the model's | `classification`, `regression` or `clustering` (`${TASK}`) |
//! | | `classes` | the model's | class names of the label indices (`${CLASSES}`) |
//! | | `features` | none | `${FEATURES}`: fail unless the test CSV's feature columns are these |
//! | | `metric` | `accuracy`, `rmse`, `silhouette` | the score exported as `SCORE`: classification `accuracy`, `f1_macro`, `precision_macro`, `recall_macro`; regression `rmse`, `mae`, `r2`; clustering `silhouette`, `inertia` |
//! | `compare` | `models` | required | ONNX files: a list or a comma-separated string |
//! | | `names` | task folder names | one name per model |
//! | | `test`, `label`, `task`, `classes` | as for `evaluate` | |
//! | | `metric` | `accuracy`, `rmse`, `silhouette` | what picks the best model (the scores of `evaluate`); ties go to the first |
//!
//! | kind | exports | metrics |
//! |---|---|---|
//! | `load_csv`, `load_dataset` | `DATA` (artifacts/data.csv, comma-separated), `LABEL` | `rows`, `columns` |
//! | `split` | `TRAIN`, `TEST` (artifacts/train.csv, test.csv), `LABEL` | `train_rows`, `test_rows`, `stratified` |
//! | `preprocess` | `TRAIN`, `TEST` (filled, one-hot encoded, unscaled), `LABEL`, `PREPROCESS` (artifacts/preprocess.json) | `train_rows`, `test_rows`, `train_rows_dropped`, `test_rows_dropped`, `features` |
//! | `train` | `MODEL` (artifacts/model.onnx), `FEATURES` (JSON array), `CLASSES` (JSON array, classifiers), `TASK`, `ALGORITHM`, `LABEL` (when given) | `training_rows`, `features`, `classes`, `training_metric` (accuracy, r2 or inertia), `training_score` |
//! | `evaluate` | `METRIC`, `SCORE`, `HIGHER_IS_BETTER` (`true`/`false`) | classification: `accuracy`, `f1_macro`, `precision_macro`, `recall_macro`, `confusion_matrix` (rows true, columns predicted) with `classes`; regression: `rmse`, `mae`, `r2`; clustering: `silhouette`, `inertia`, `cluster_sizes`; `rows` |
//! | `compare` | `MODEL` (the best one's path), `BEST` (its name), `METRIC`, `SCORE`, `HIGHER_IS_BETTER` | `models` (each model's metrics by name), `best`, `metric` |
//!
//! The exported model takes one float32 input `input` of shape `[N, F]`, the feature columns of
//! the training CSV, unscaled (one-hot columns included, as preprocess wrote them). Classifiers
//! answer `label` (int64 `[N]`, an index into `CLASSES`) and `probabilities` (float32
//! `[N, C]`; vote shares for trees), regressors (regression trees and forests too) `variable`
//! (float32 `[N, 1]`), kmeans `label` (the nearest centroid) and `distances` (float32
//! `[N, K]`). See the `onnx` module for the graphs.
//!
//! What "the served model predicts what the Rust model predicts" means: on the same float32
//! inputs ([`TrainedModel::predict`] rounds its rows to float32, as serving does), tree labels
//! are equal by construction; labels of the other classifiers and k-means are equal unless a
//! row's two best scores are within float32 rounding of each other; regression values agree to
//! about 1e-6 relative.
//!
//! Reproducibility: `split` is a function of its seed; linear, ridge, lasso and logistic
//! regression, naive Bayes, k-means and regression trees and forests (seeded) train to the
//! same ONNX bytes every time. linfa grows classification trees from hash-ordered class
//! counts, so a tie between two equally good splits or leaf classes can be broken differently
//! from one run to the next: a retrained classification tree or forest may differ slightly.
//!
//! `evaluate` reads the whole test CSV and computes the silhouette over all pairs of rows
//! (Euclidean, on the unscaled test features), which is quadratic in the rows; it is 0 when
//! every row falls in one cluster.

mod error;
mod evaluate;
mod linear;
mod load;
mod metrics;
mod onnx;
mod params;
mod preprocess;
mod regression_tree;
mod split;
mod table;
mod target;
mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::sandbox::ReadPolicy;

pub use error::MlError;
pub use evaluate::{evaluate_model, Evaluation};
pub use preprocess::{FeatureTransform, Preprocess};
pub use train::{Predictions, TrainedModel, ALGORITHMS};

/// The kinds [`run_builtin`] runs.
pub const BUILTIN_KINDS: &[&str] = &[
    "load_csv",
    "load_dataset",
    "split",
    "preprocess",
    "train",
    "evaluate",
    "compare",
];

/// What a finished task hands to the workflow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    /// Exported variables, for the tasks that follow.
    pub variables: BTreeMap<String, String>,
    pub metrics: Map<String, Value>,
}

impl TaskOutput {
    fn export(&mut self, name: &str, value: &str) {
        self.variables.insert(name.to_owned(), value.to_owned());
    }

    fn export_path(&mut self, name: &str, path: &Path) {
        self.export(name, &path.display().to_string());
    }

    fn metric(&mut self, name: &str, value: impl Into<Value>) {
        self.metrics.insert(name.to_owned(), value.into());
    }
}

/// Run one built-in task in `workdir` (the task's own folder, which exists).
pub fn run_builtin(
    kind: &str,
    params: &Map<String, Value>,
    workdir: &Path,
    reads: &ReadPolicy,
) -> Result<TaskOutput, MlError> {
    let workdir = &TaskDir {
        path: workdir,
        reads,
    };
    match kind {
        "load_csv" => load::load_csv(params, workdir),
        "load_dataset" => load::load_dataset(params, workdir),
        "split" => split::run(params, workdir),
        "preprocess" => preprocess::run(params, workdir),
        "train" => train::run(params, workdir),
        "evaluate" => evaluate::run_evaluate(params, workdir),
        "compare" => evaluate::run_compare(params, workdir),
        other => Err(MlError::UnknownKind {
            kind: other.to_owned(),
        }),
    }
}

/// The parameters a kind accepts (for `train`, those of every algorithm), or None for a kind
/// that is not built in. Lets a workflow be checked before it runs.
pub fn builtin_params(kind: &str) -> Option<Vec<&'static str>> {
    Some(match kind {
        "load_csv" => load::LOAD_CSV_PARAMS.to_vec(),
        "load_dataset" => load::LOAD_DATASET_PARAMS.to_vec(),
        "split" => split::PARAMS.to_vec(),
        "preprocess" => preprocess::PARAMS.to_vec(),
        "train" => train::all_params(),
        "evaluate" => evaluate::EVALUATE_PARAMS.to_vec(),
        "compare" => evaluate::COMPARE_PARAMS.to_vec(),
        _ => return None,
    })
}

/// The variables a kind may export (see the table above; `CLASSES` only from classifiers),
/// or None for a kind that is not built in. Lets a workflow's `${NAME}` references be checked
/// before it runs.
pub fn builtin_exports(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "load_csv" | "load_dataset" => &["DATA", "LABEL"],
        "split" => &["TRAIN", "TEST", "LABEL"],
        "preprocess" => &["TRAIN", "TEST", "LABEL", "PREPROCESS"],
        "train" => &["MODEL", "FEATURES", "CLASSES", "TASK", "ALGORITHM", "LABEL"],
        "evaluate" => &["METRIC", "SCORE", "HIGHER_IS_BETTER"],
        "compare" => &["MODEL", "BEST", "METRIC", "SCORE", "HIGHER_IS_BETTER"],
        _ => return None,
    })
}

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Classification,
    Regression,
    Clustering,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Classification, Task::Regression, Task::Clustering];

    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
            Task::Clustering => "clustering",
        }
    }
}

impl FromStr for Task {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Task::ALL
            .into_iter()
            .find(|t| t.as_str() == s.trim())
            .ok_or_else(|| format!("'{s}' is not one of classification, regression, clustering"))
    }
}

/// A task's own folder, and which local files it may read.
pub struct TaskDir<'a> {
    pub path: &'a Path,
    pub reads: &'a ReadPolicy,
}

impl std::ops::Deref for TaskDir<'_> {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.path
    }
}

/// `<workdir>/artifacts`, created, as an absolute path.
fn artifacts_dir(workdir: &Path) -> Result<PathBuf, MlError> {
    let dir = std::path::absolute(workdir.join("artifacts"))
        .map_err(|e| MlError::io(workdir.join("artifacts"), e))?;
    std::fs::create_dir_all(&dir).map_err(|e| MlError::io(&dir, e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_lists_the_valid_ones() {
        let err = run_builtin(
            "trian",
            &Map::new(),
            Path::new("/nonexistent"),
            &ReadPolicy::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'trian'"), "{text}");
        assert!(text.contains(&BUILTIN_KINDS.join(", ")), "{text}");
    }

    #[test]
    fn every_kind_has_its_parameters() {
        for kind in BUILTIN_KINDS {
            assert!(builtin_params(kind).is_some(), "{kind}");
            assert!(builtin_exports(kind).is_some(), "{kind}");
        }
        assert!(builtin_params("script").is_none());
    }
}
