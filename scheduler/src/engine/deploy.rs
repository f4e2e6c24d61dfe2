//! The `deploy` task: it runs in the server's process, not on an executor, and puts a trained
//! model live through the same deploy a user calls: the new version replaces the serving ones
//! (kept, one rollback away) unless `append: true` keeps them serving beside it. Its rule
//! closes the retraining loop: with a holdout and a label, the candidate goes live only if it
//! scores at least as well as the version serving now, on the same rows; otherwise it is kept
//! out and the rejection recorded.
//!
//! The registry is reached through [`ModelDeployer`], which the gateway implements.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::runner::{self, TaskFile, TaskResult};
use crate::workflow::DEPLOY_PARAMS;

use super::executor::Outcome;
use super::store::JobRecord;

/// A new version for the registry, as the deploy task asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewModelVersion {
    pub model: String,
    /// The ONNX file.
    pub onnx: Vec<u8>,
    /// Training data (CSV) to sample the drift baseline from.
    pub training_csv: Option<Vec<u8>>,
    pub baseline_size: Option<usize>,
    /// The label column, left out of the baseline.
    pub label_column: Option<String>,
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    /// Where the version comes from (`job:ID`).
    pub source: String,
    /// Serve it beside the deployed versions; by default it replaces them.
    pub append: bool,
}

/// A version the registry deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedVersion {
    pub model: String,
    pub version: u64,
}

/// Why a deployed version's file cannot be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VersionFileError {
    #[error("cannot find version {version}'s file: {error}")]
    Missing { version: u64, error: String },
    #[error("cannot read version {version}'s file: {error}")]
    Unreadable { version: u64, error: String },
}

/// Why a deploy did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeployError {
    /// The file could not be put where the registry takes it from.
    #[error("cannot stage the model file: {0}")]
    Stage(String),
    /// The registry refused the version (its message, as a user's deploy gets it).
    #[error("{0}")]
    Refused(String),
}

/// What the deploy task needs from the model registry.
pub trait ModelDeployer: Send + Sync + 'static {
    /// Why a model name is not allowed, if it is not.
    fn check_name(&self, model: &str) -> Result<(), String>;

    /// The version the model serves by default; `None` when the model does not exist or
    /// serves none.
    fn serving_version(&self, model: &str) -> impl Future<Output = Option<u64>> + Send;

    /// The ONNX bytes of one of the model's versions.
    fn version_file(
        &self,
        model: &str,
        version: u64,
    ) -> impl Future<Output = Result<Vec<u8>, VersionFileError>> + Send;

    /// Deploy a new version, as a user's deploy would (the next version number).
    fn deploy(
        &self,
        version: NewModelVersion,
    ) -> impl Future<Output = Result<DeployedVersion, DeployError>> + Send;

    /// Record in the audit trail that a retrained candidate was worse than `version` and was
    /// kept out.
    fn record_rejection(
        &self,
        model: &str,
        version: u64,
        details: Value,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// Run a deploy task whose `task.json` is `file`, in its attempt folder `dir`: its log lines
/// go to the folder's stdout, its failure to its stderr, its result to `result.json`, as a task
/// process would leave them.
pub async fn run<D: ModelDeployer>(
    deployer: &D,
    job: &JobRecord,
    file: &TaskFile,
    dir: &Path,
) -> Outcome {
    let log = |line: String| {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(runner::STDOUT_FILE))
        {
            let _ = writeln!(f, "{line}");
        }
    };
    // Readable by the server's user alone, like every task's logs.
    for name in [runner::STDOUT_FILE, runner::STDERR_FILE] {
        let _ = runner::create_private(&dir.join(name));
    }
    match deploy(deployer, job, file, &log).await {
        Ok(result) => {
            for (k, v) in &result.variables {
                log(format!("maas: export {k}={v}"));
            }
            if let Ok(mut f) = runner::create_private(&dir.join(runner::RESULT_FILE)) {
                use std::io::Write;
                let _ = f.write_all(&serde_json::to_vec_pretty(&result).unwrap_or_default());
            }
            Outcome::finished(result)
        }
        Err(e) => {
            if let Ok(mut f) = runner::create_private(&dir.join(runner::STDERR_FILE)) {
                use std::io::Write;
                let _ = writeln!(f, "maas: task failed: {e}");
            }
            Outcome::failed(e)
        }
    }
}

fn param<'a>(params: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    params
        .get(name)
        .filter(|v| !v.is_null() && v.as_str() != Some(""))
}

fn param_text(params: &Map<String, Value>, name: &str) -> Option<String> {
    param(params, name).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// A list given as a JSON array or as a string holding one (what `train` exports).
fn param_list(params: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, String> {
    let Some(value) = param(params, name) else {
        return Ok(None);
    };
    let array = match value {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .map_err(|_| format!("params.{name} must be a JSON array of names, got \"{s}\""))?,
        other => other.clone(),
    };
    match array {
        Value::Array(items) => Ok(Some(
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
        )),
        _ => Err(format!("params.{name} must be an array of names")),
    }
}

/// A true/false parameter.
fn flag(params: &Map<String, Value>, name: &str, default: bool) -> Result<bool, String> {
    match param(params, name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(format!("params.{name} must be true or false, got {other}")),
    }
}

/// The deploy task's parameters, checked, with the candidate's file.
struct DeployParams {
    model: String,
    onnx: Vec<u8>,
    features: Option<Vec<String>>,
    classes: Option<Vec<String>>,
    label: Option<String>,
    holdout: Option<String>,
    task_kind: String,
    compare: bool,
    append: bool,
    baseline_size: Option<usize>,
    metric: Option<String>,
    training_data: Option<String>,
}

impl DeployParams {
    /// Check the parameters in the order a user sees their errors (the candidate's file is read
    /// before the optional parameters are looked at).
    async fn read<D: ModelDeployer>(deployer: &D, file: &TaskFile) -> Result<Self, String> {
        let params = &file.params;
        if let Some(unknown) = params.keys().find(|k| !DEPLOY_PARAMS.contains(&k.as_str())) {
            return Err(format!(
                "deploy has no parameter '{unknown}'; its parameters are {}",
                DEPLOY_PARAMS.join(", ")
            ));
        }
        let model = param_text(params, "model_name").ok_or("params.model_name is required")?;
        deployer.check_name(&model)?;
        let onnx_path = readable(
            file,
            param_text(params, "model")
                .ok_or("params.model (the ONNX file, usually ${MODEL}) is required")?,
        )?;
        let onnx_path = onnx_path.display().to_string();
        let onnx = tokio::fs::read(&onnx_path)
            .await
            .map_err(|e| format!("cannot read the model {onnx_path}: {e}"))?;
        let features = param_list(params, "features")?;
        let classes = param_list(params, "classes")?;
        let label = param_text(params, "label");
        let holdout = param_text(params, "holdout")
            .map(|h| readable(file, h))
            .transpose()?
            .map(|p| p.display().to_string());
        let task_kind = param_text(params, "task").unwrap_or_else(|| {
            if classes.is_some() {
                "classification"
            } else {
                "regression"
            }
            .to_owned()
        });
        let compare = flag(params, "compare", true)?;
        let append = flag(params, "append", false)?;
        let baseline_size = match param_text(params, "baseline_size") {
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                format!("params.baseline_size must be a positive integer, got {text}")
            })?),
            None => None,
        };
        Ok(DeployParams {
            model,
            onnx,
            features,
            classes,
            label,
            holdout,
            task_kind,
            compare,
            append,
            baseline_size,
            metric: param_text(params, "metric"),
            training_data: param_text(params, "training_data"),
        })
    }
}

/// `path` if the task may read it.
fn readable(file: &TaskFile, path: String) -> Result<std::path::PathBuf, String> {
    file.reads
        .check(Path::new(&path))
        .map_err(|e| e.to_string())
}

async fn deploy<D: ModelDeployer>(
    deployer: &D,
    job: &JobRecord,
    file: &TaskFile,
    log: &(dyn Fn(String) + Sync),
) -> Result<TaskResult, String> {
    let p = DeployParams::read(deployer, file).await?;
    let mut metrics = Map::new();
    // The closed loop's rule: a new version goes live only if it scores at least as well as
    // the one serving, on the same holdout.
    if let (true, Some(holdout), Some(label)) = (p.compare, &p.holdout, &p.label) {
        if let Some(version) = deployer.serving_version(&p.model).await {
            let current = deployer
                .version_file(&p.model, version)
                .await
                .map_err(|e| e.to_string())?;
            if let Some((comparison, deployed)) =
                compare(&p, holdout, label, version, current, log).await?
            {
                metrics.insert("comparison".into(), comparison);
                if !deployed {
                    log(format!("maas: the new model is worse than version {version}: kept undeployed (its file stays in the training task's artifacts)"));
                    let details = json!({"job": job.id, "comparison": metrics["comparison"]});
                    if let Err(e) = deployer.record_rejection(&p.model, version, details).await {
                        tracing::warn!(error = %e, "cannot record the rejected retraining");
                    }
                    return Ok(TaskResult {
                        ok: true,
                        variables: BTreeMap::from([
                            ("DEPLOYED".to_owned(), "false".to_owned()),
                            ("MODEL_NAME".to_owned(), p.model.clone()),
                            ("MODEL_VERSION".to_owned(), version.to_string()),
                        ]),
                        metrics,
                        error: None,
                        exit_code: None,
                    });
                }
            }
        }
    }

    let training_csv = match p.training_data.map(|t| readable(file, t)).transpose()? {
        Some(path) => Some(
            tokio::fs::read(&path)
                .await
                .map_err(|e| format!("cannot read the training data {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let record = deployer
        .deploy(NewModelVersion {
            model: p.model.clone(),
            onnx: p.onnx,
            training_csv,
            baseline_size: p.baseline_size,
            label_column: p.label,
            class_names: p.classes,
            feature_names: p.features,
            source: format!("job:{}", job.id),
            append: p.append,
        })
        .await
        .map_err(|e| e.to_string())?;
    log(format!(
        "maas: deployed {} version {} (from job {})",
        record.model, record.version, job.id
    ));
    Ok(TaskResult {
        ok: true,
        variables: BTreeMap::from([
            ("DEPLOYED".to_owned(), "true".to_owned()),
            ("MODEL_NAME".to_owned(), record.model.clone()),
            ("MODEL_VERSION".to_owned(), record.version.to_string()),
        ]),
        metrics,
        error: None,
        exit_code: None,
    })
}

/// Score the serving version (`current`, its file) and the candidate on the holdout. The
/// comparison to record and whether the candidate is at least as good, or `None` when the
/// serving version cannot be scored (the candidate then goes live).
async fn compare(
    p: &DeployParams,
    holdout: &str,
    label: &str,
    version: u64,
    current: Vec<u8>,
    log: &(dyn Fn(String) + Sync),
) -> Result<Option<(Value, bool)>, String> {
    let (h, l, t, c) = (
        holdout.to_owned(),
        label.to_owned(),
        p.task_kind.clone(),
        p.classes.clone(),
    );
    let candidate = p.onnx.clone();
    let scores = tokio::task::spawn_blocking(move || {
        let old = crate::ml::evaluate_model(&current, Path::new(&h), &l, &t, c.as_deref());
        let new = crate::ml::evaluate_model(&candidate, Path::new(&h), &l, &t, c.as_deref());
        (old, new)
    })
    .await
    .map_err(|e| e.to_string())?;
    let new = scores
        .1
        .map_err(|e| format!("cannot evaluate the new model: {e}"))?;
    let metric = p
        .metric
        .clone()
        .unwrap_or_else(|| new.primary_metric().to_owned());
    let (new_score, higher_is_better) = new.score(&metric).ok_or_else(|| {
        format!(
            "params.metric '{metric}' is not a score of a {} model",
            p.task_kind
        )
    })?;
    match scores.0.map(|old| old.score(&metric)) {
        Ok(Some((old_score, _))) => {
            let better_or_equal = if higher_is_better {
                new_score >= old_score
            } else {
                new_score <= old_score
            };
            log(format!(
                "maas: {metric} on the holdout: current version {version} {old_score:.6}, new model {new_score:.6}"
            ));
            let comparison = json!({
                "metric": metric,
                "higher_is_better": higher_is_better,
                "current_version": version,
                "current_score": old_score,
                "candidate_score": new_score,
                "deployed": better_or_equal,
            });
            Ok(Some((comparison, better_or_equal)))
        }
        Ok(None) => {
            log(format!("maas: the current version {version} has no {metric} on this holdout; deploying the new model"));
            Ok(None)
        }
        Err(e) => {
            log(format!("maas: the current version {version} cannot be scored on this holdout ({e}); deploying the new model"));
            Ok(None)
        }
    }
}
