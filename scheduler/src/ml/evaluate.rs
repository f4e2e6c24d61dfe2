//! `evaluate` and `compare`: run ONNX models with tract on a test CSV and score them.
//!
//! The test CSV holds the model's inputs: its columns minus the label, in order, fed as one
//! float32 batch. A model trained by maas records its features, classes, task and label in its
//! metadata; they are checked against the CSV, and stand in for parameters not given. Other ONNX
//! classifiers work too: a `label` output (else the first integer or string output) holds
//! class indices (or names); regressors answer in `variable` (else the first float output).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{json, Map, Value};
use tract_onnx::pb;
use tract_onnx::prelude::{
    tvec, DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTValue,
    IntoTensor, Tensor,
};

use super::metrics;
use super::params::Params;
use super::table::{class_name, Table};
use super::{MlError, Task, TaskDir, TaskOutput};

pub(crate) const EVALUATE_PARAMS: &[&str] = &[
    "model", "test", "label", "task", "classes", "features", "metric",
];
pub(crate) const COMPARE_PARAMS: &[&str] = &[
    "models", "names", "test", "label", "task", "metric", "classes",
];

/// A model's scores on a test table.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub task: Task,
    /// Rows scored.
    pub rows: usize,
    /// Every score by name (`accuracy`, `f1_macro`, ..., `rmse`, ..., `silhouette`, ...), with
    /// `confusion_matrix` and `classes` for classifiers.
    pub metrics: Map<String, Value>,
}

impl Evaluation {
    /// The task's usual score: accuracy, rmse or silhouette.
    pub fn primary_metric(&self) -> &'static str {
        default_metric(self.task)
    }

    /// A score by name, and whether higher is better. None for a name this task has no score
    /// for.
    pub fn score(&self, metric: &str) -> Option<(f64, bool)> {
        let higher = metric_direction(self.task, metric)?;
        self.metrics
            .get(metric)
            .and_then(Value::as_f64)
            .map(|score| (score, higher))
    }
}

/// The scores each task offers, and whether higher is better.
const SCORES: &[(Task, &str, bool)] = &[
    (Task::Classification, "accuracy", true),
    (Task::Classification, "f1_macro", true),
    (Task::Classification, "precision_macro", true),
    (Task::Classification, "recall_macro", true),
    (Task::Regression, "rmse", false),
    (Task::Regression, "mae", false),
    (Task::Regression, "r2", true),
    (Task::Clustering, "silhouette", true),
    (Task::Clustering, "inertia", false),
];

fn default_metric(task: Task) -> &'static str {
    match task {
        Task::Classification => "accuracy",
        Task::Regression => "rmse",
        Task::Clustering => "silhouette",
    }
}

fn metric_direction(task: Task, metric: &str) -> Option<bool> {
    SCORES
        .iter()
        .find(|(t, m, _)| *t == task && *m == metric)
        .map(|(_, _, higher)| *higher)
}

fn metric_names(task: Task) -> Vec<&'static str> {
    SCORES
        .iter()
        .filter(|(t, _, _)| *t == task)
        .map(|(_, m, _)| *m)
        .collect()
}

/// Score an ONNX model on a test CSV. `label` may be empty for clustering; `task` is
/// `classification`, `regression` or `clustering`; `classes` names the class indices a
/// classifier returns (else the model's recorded classes, else the indices themselves).
pub fn evaluate_model(
    onnx_bytes: &[u8],
    test_csv: &Path,
    label: &str,
    task: &str,
    classes: Option<&[String]>,
) -> Result<Evaluation, MlError> {
    let task = Task::from_str(task).map_err(|reason| MlError::InvalidParam {
        kind: "evaluate".into(),
        param: "task".into(),
        reason,
    })?;
    let request = Request {
        label: Some(label.to_owned()).filter(|l| !l.trim().is_empty()),
        task: Some(task),
        classes: classes.map(<[String]>::to_vec),
        features: None,
    };
    let model = Model::parse("the model", onnx_bytes)?;
    evaluate(&model, &Table::read(test_csv)?, &request)
}

/// What the caller said; gaps are filled from the model's metadata.
struct Request {
    label: Option<String>,
    task: Option<Task>,
    classes: Option<Vec<String>>,
    features: Option<Vec<String>>,
}

/// A parsed ONNX model and what maas recorded in it.
struct Model {
    name: String,
    proto: pb::ModelProto,
}

impl Model {
    fn parse(name: &str, bytes: &[u8]) -> Result<Model, MlError> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| MlError::Model {
                model: name.to_owned(),
                reason: format!("not an ONNX model ({e})"),
            })?;
        Ok(Model {
            name: name.to_owned(),
            proto,
        })
    }

    fn read(path: &Path) -> Result<Model, MlError> {
        let bytes = std::fs::read(path).map_err(|e| MlError::io(path, e))?;
        Model::parse(&path.display().to_string(), &bytes)
    }

    fn metadata(&self, key: &str) -> Option<&str> {
        self.proto
            .metadata_props
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    fn metadata_list(&self, key: &str) -> Option<Vec<String>> {
        serde_json::from_str(self.metadata(key)?).ok()
    }

    fn error(&self, reason: impl Into<String>) -> MlError {
        MlError::Model {
            model: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Run the model on a float32 batch; outputs by name.
    fn run(&self, x: Vec<f32>, n: usize, f: usize) -> Result<Vec<(String, Tensor)>, MlError> {
        let graph = self
            .proto
            .graph
            .as_ref()
            .ok_or_else(|| self.error("no graph"))?;
        let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let fed: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(&i.name.as_str()))
            .collect();
        if fed.len() != 1 {
            return Err(self.error(format!(
                "it has {} inputs; evaluate feeds one float32 [N, features] input",
                fed.len()
            )));
        }
        if let Some(width) = declared_width(fed[0]) {
            if width != f {
                return Err(self.error(format!(
                    "it takes {width} values per row but the test CSV has {f} feature columns"
                )));
            }
        }
        let names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        let failed = |e: tract_onnx::prelude::TractError| self.error(format!("{e:#}"));
        let outputs = catch_unwind(AssertUnwindSafe(|| {
            let mut model = tract_onnx::onnx().model_for_proto_model(&self.proto)?;
            model.set_input_fact(0, InferenceFact::dt_shape(DatumType::F32, tvec![n, f]))?;
            for ix in 0..names.len() {
                model.set_output_fact(ix, InferenceFact::default())?;
            }
            let plan = model.into_optimized()?.into_runnable()?;
            let input = tract_onnx::prelude::tract_ndarray::Array2::from_shape_vec((n, f), x)?
                .into_tensor();
            plan.run(tvec![input.into_tvalue()])
        }))
        .map_err(|_| self.error("tract panicked while running it"))?
        .map_err(failed)?;
        Ok(names
            .into_iter()
            .zip(outputs)
            .map(|(name, value)| (name, value.into_tensor()))
            .collect())
    }
}

/// The fixed size of an input's second axis, if it declares one.
fn declared_width(input: &pb::ValueInfoProto) -> Option<usize> {
    use pb::tensor_shape_proto::dimension::Value as DimValue;
    use pb::type_proto::Value as TypeValue;
    let Some(TypeValue::TensorType(tensor)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    match tensor.shape.as_ref()?.dim.get(1)?.value {
        Some(DimValue::DimValue(n)) if n > 0 => usize::try_from(n).ok(),
        _ => None,
    }
}

fn floats(model: &Model, t: &Tensor) -> Result<Vec<f64>, MlError> {
    let cast = t
        .cast_to::<f64>()
        .map_err(|e| model.error(format!("{e:#}")))?;
    let view = cast
        .to_plain_array_view::<f64>()
        .map_err(|e| model.error(format!("{e:#}")))?;
    Ok(view.iter().copied().collect())
}

/// Predicted class names from a classifier's (or clusterer's) label output.
fn label_names(
    model: &Model,
    t: &Tensor,
    classes: Option<&[String]>,
) -> Result<Vec<String>, MlError> {
    if t.datum_type() == DatumType::String {
        let view = t
            .to_plain_array_view::<String>()
            .map_err(|e| model.error(format!("{e:#}")))?;
        return Ok(view.iter().map(|s| class_name(s)).collect());
    }
    let values = floats(model, t)?;
    values
        .iter()
        .map(|&v| {
            let index = v as i64;
            match classes {
                Some(classes) => usize::try_from(index)
                    .ok()
                    .and_then(|i| classes.get(i))
                    .cloned()
                    .ok_or_else(|| {
                        model.error(format!(
                            "it predicted class index {index}, but only {} classes are named",
                            classes.len()
                        ))
                    }),
                None => Ok(index.to_string()),
            }
        })
        .collect()
}

fn is_integer(dt: DatumType) -> bool {
    matches!(
        dt,
        DatumType::I64
            | DatumType::I32
            | DatumType::I16
            | DatumType::I8
            | DatumType::U8
            | DatumType::U16
            | DatumType::U32
            | DatumType::U64
    )
}

fn evaluate(model: &Model, table: &Table, request: &Request) -> Result<Evaluation, MlError> {
    let recorded_task = model
        .metadata("maas.task")
        .map(Task::from_str)
        .transpose()
        .ok()
        .flatten();
    let task = match (request.task, recorded_task) {
        (Some(given), Some(recorded)) if given != recorded => {
            return Err(model.error(format!(
                "it is a {} model, not {}",
                recorded.as_str(),
                given.as_str()
            )))
        }
        (Some(task), _) | (None, Some(task)) => task,
        (None, None) => {
            return Err(MlError::MissingParam {
                kind: "evaluate".into(),
                param: "task".into(),
            })
        }
    };
    // The label the model recorded, unless it clusters a table that has no such column.
    let recorded_label = model
        .metadata("maas.label")
        .filter(|l| task != Task::Clustering || table.header.iter().any(|h| h == l));
    let label = request
        .label
        .clone()
        .or_else(|| recorded_label.map(str::to_owned));
    let label_ix = match (&label, task) {
        (Some(label), _) => Some(table.column(label)?),
        (None, Task::Clustering) => None,
        (None, _) => {
            return Err(MlError::MissingParam {
                kind: "evaluate".into(),
                param: "label".into(),
            })
        }
    };
    table.require_rows(1)?;
    let feature_ix: Vec<usize> = (0..table.header.len())
        .filter(|&i| Some(i) != label_ix)
        .collect();
    let features: Vec<String> = feature_ix
        .iter()
        .map(|&i| table.header[i].clone())
        .collect();
    for expected in [
        request.features.clone(),
        model.metadata_list("maas.features"),
    ]
    .into_iter()
    .flatten()
    {
        if expected != features {
            return Err(MlError::FeatureMismatch {
                path: table.path.clone(),
                expected,
                found: features,
            });
        }
    }

    let (n, f) = (table.rows.len(), features.len());
    let x: Vec<f64> = table.features(&feature_ix)?;
    let outputs = model.run(x.iter().map(|&v| v as f32).collect(), n, f)?;
    let output = |name: &str, fallback: &dyn Fn(&Tensor) -> bool| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| outputs.iter().find(|(_, t)| fallback(t)))
            .map(|(_, t)| t)
    };
    let is_label = |t: &Tensor| is_integer(t.datum_type()) || t.datum_type() == DatumType::String;
    let is_float = |t: &Tensor| t.datum_type().is_float();

    let mut scores = Map::new();
    match task {
        Task::Classification => {
            let classes = request
                .classes
                .clone()
                .or_else(|| model.metadata_list("maas.classes"));
            let predicted =
                output("label", &is_label).ok_or_else(|| model.error("it has no label output"))?;
            let predicted = label_names(model, predicted, classes.as_deref())?;
            let truth = table.class_names(label_ix.unwrap_or_default())?;
            let order = classes.unwrap_or_else(|| {
                let mut seen = truth.clone();
                super::table::sort_classes(&mut seen);
                seen.dedup();
                seen
            });
            let s = metrics::classification(&truth, &sized(model, predicted, n)?, &order);
            scores.insert("accuracy".into(), json!(s.accuracy));
            scores.insert("f1_macro".into(), json!(s.f1_macro));
            scores.insert("precision_macro".into(), json!(s.precision_macro));
            scores.insert("recall_macro".into(), json!(s.recall_macro));
            scores.insert("confusion_matrix".into(), json!(s.confusion));
            scores.insert("classes".into(), json!(s.labels));
        }
        Task::Regression => {
            let predicted = output("variable", &is_float)
                .ok_or_else(|| model.error("it has no float output"))?;
            let predicted = sized(model, floats(model, predicted)?, n)?;
            let truth = table.numbers(label_ix.unwrap_or_default())?;
            let s = metrics::regression(&truth, &predicted);
            scores.insert("rmse".into(), json!(s.rmse));
            scores.insert("mae".into(), json!(s.mae));
            scores.insert("r2".into(), json!(s.r2));
        }
        Task::Clustering => {
            let predicted =
                output("label", &is_label).ok_or_else(|| model.error("it has no label output"))?;
            let clusters: Vec<usize> = sized(model, floats(model, predicted)?, n)?
                .iter()
                .map(|&c| c.max(0.0) as usize)
                .collect();
            let silhouette = metrics::silhouette(&x, f, &clusters).unwrap_or(0.0);
            scores.insert("silhouette".into(), json!(silhouette));
            if let Some((_, distances)) = outputs.iter().find(|(name, _)| name == "distances") {
                let d = floats(model, distances)?;
                let k = d.len() / n.max(1);
                let inertia: f64 = d
                    .chunks(k.max(1))
                    .map(|row| row.iter().copied().fold(f64::INFINITY, f64::min).powi(2))
                    .sum();
                scores.insert("inertia".into(), json!(inertia));
            }
            let mut sizes = vec![0u64; clusters.iter().copied().max().map_or(0, |m| m + 1)];
            for &c in &clusters {
                sizes[c] += 1;
            }
            scores.insert("cluster_sizes".into(), json!(sizes));
        }
    }
    Ok(Evaluation {
        task,
        rows: n,
        metrics: scores,
    })
}

/// One prediction per row, or an error saying the output has the wrong size.
fn sized<T>(model: &Model, values: Vec<T>, n: usize) -> Result<Vec<T>, MlError> {
    if values.len() == n {
        Ok(values)
    } else {
        Err(model.error(format!(
            "it returned {} values for {n} rows; expected one per row",
            values.len()
        )))
    }
}

/// The primary metric to report: the one asked for, else the task's default.
fn chosen_metric(p: &Params, task: Task) -> Result<&'static str, MlError> {
    let names = metric_names(task);
    Ok(p.choice("metric", &names)?.unwrap_or(default_metric(task)))
}

fn task_param(p: &Params) -> Result<Option<Task>, MlError> {
    let names: Vec<&str> = Task::ALL.iter().map(|t| t.as_str()).collect();
    Ok(p.choice("task", &names)?
        .and_then(|t| Task::from_str(t).ok()))
}

fn export_score(out: &mut TaskOutput, metric: &str, score: f64, higher: bool) {
    out.export("METRIC", metric);
    out.export("SCORE", &score.to_string());
    out.export("HIGHER_IS_BETTER", if higher { "true" } else { "false" });
}

pub(crate) fn run_evaluate(
    values: &Map<String, Value>,
    workdir: &TaskDir,
) -> Result<TaskOutput, MlError> {
    let p = Params::new("evaluate", values, EVALUATE_PARAMS, workdir)?;
    let model = Model::read(&p.required_path("model")?)?;
    let table = Table::read(&p.required_path("test")?)?;
    let request = Request {
        label: p.string("label")?,
        task: task_param(&p)?,
        classes: p.list("classes")?,
        features: p.list("features")?,
    };
    let evaluation = evaluate(&model, &table, &request)?;
    let metric = chosen_metric(&p, evaluation.task)?;
    let (score, higher) = evaluation
        .score(metric)
        .ok_or_else(|| p.invalid("metric", format!("the model has no {metric} score")))?;
    let mut out = TaskOutput::default();
    export_score(&mut out, metric, score, higher);
    out.metrics = evaluation.metrics;
    out.metric("rows", evaluation.rows);
    Ok(out)
}

pub(crate) fn run_compare(
    values: &Map<String, Value>,
    workdir: &TaskDir,
) -> Result<TaskOutput, MlError> {
    let p = Params::new("compare", values, COMPARE_PARAMS, workdir)?;
    let paths: Vec<PathBuf> = p
        .list("models")?
        .ok_or_else(|| p.missing("models"))?
        .iter()
        .map(|m| p.resolve(m))
        .collect::<Result<_, _>>()?;
    if paths.is_empty() {
        return Err(p.missing("models"));
    }
    let names = match p.list("names")? {
        Some(names) if names.len() != paths.len() => {
            return Err(p.invalid(
                "names",
                format!("{} names for {} models", names.len(), paths.len()),
            ))
        }
        Some(names) => names,
        None => default_names(&paths),
    };
    let table = Table::read(&p.required_path("test")?)?;
    let request = Request {
        label: p.string("label")?,
        task: task_param(&p)?,
        classes: p.list("classes")?,
        features: None,
    };

    let mut results = Vec::with_capacity(paths.len());
    for path in &paths {
        results.push(evaluate(&Model::read(path)?, &table, &request)?);
    }
    let task = results[0].task;
    if let Some(other) = results.iter().position(|r| r.task != task) {
        return Err(p.invalid(
            "models",
            format!(
                "{} is a {} model but {} is a {} model",
                paths[0].display(),
                task.as_str(),
                paths[other].display(),
                results[other].task.as_str()
            ),
        ));
    }
    let metric = chosen_metric(&p, task)?;
    let mut best: Option<(usize, f64)> = None;
    let mut table_out = Map::new();
    let mut higher_is_better = true;
    for (i, result) in results.iter().enumerate() {
        let (score, higher) = result
            .score(metric)
            .ok_or_else(|| p.invalid("metric", format!("{} has no {metric} score", names[i])))?;
        higher_is_better = higher;
        let better = match best {
            None => true,
            Some((_, b)) if higher => score > b,
            Some((_, b)) => score < b,
        };
        if better {
            best = Some((i, score));
        }
        let mut row = result.metrics.clone();
        row.insert("model".into(), json!(paths[i].display().to_string()));
        table_out.insert(names[i].clone(), Value::Object(row));
    }
    let (best, score) = best.ok_or_else(|| p.missing("models"))?;

    let mut out = TaskOutput::default();
    out.export_path("MODEL", &paths[best]);
    out.export("BEST", &names[best]);
    export_score(&mut out, metric, score, higher_is_better);
    out.metrics
        .insert("models".into(), Value::Object(table_out));
    out.metric("best", names[best].as_str());
    out.metric("metric", metric);
    Ok(out)
}

/// A model's name from its path: the task folder for `<task>/artifacts/model.onnx`, else the
/// file stem; repeated names get `_2`, `_3`, ...
fn default_names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(paths.len());
    for path in paths {
        let parent = path.parent();
        let base = match parent.and_then(Path::file_name) {
            Some(dir) if dir == "artifacts" => parent
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .map(|d| d.to_string_lossy().into_owned()),
            _ => None,
        }
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".into());
        let mut name = base.clone();
        let mut i = 1;
        while names.contains(&name) {
            i += 1;
            name = format!("{base}_{i}");
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_task_folders() {
        let paths = [
            PathBuf::from("/jobs/1/train_rf/artifacts/model.onnx"),
            PathBuf::from("/jobs/1/train_lr/artifacts/model.onnx"),
            PathBuf::from("/m/a.onnx"),
            PathBuf::from("/n/a.onnx"),
        ];
        assert_eq!(default_names(&paths), ["train_rf", "train_lr", "a", "a_2"]);
    }

    #[test]
    fn metric_directions() {
        assert_eq!(metric_direction(Task::Regression, "rmse"), Some(false));
        assert_eq!(metric_direction(Task::Regression, "r2"), Some(true));
        assert_eq!(metric_direction(Task::Classification, "rmse"), None);
    }
}
