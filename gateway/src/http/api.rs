//! The JSON shapes of the public API (what OpenAPI documents), and their conversion from store
//! records. Kept apart from the handlers so the contract reads in one place.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::http::error::{ErrorKind, ServiceError};
use crate::services::actions::{ServiceAction, ServiceState};
use crate::services::models::LoadStatus;
use crate::store::{ModelRecord, VersionRecord, VersionState};

use maas_serving::{ServedVersion, ServingOptions};

pub use crate::store::{rfc3339, rfc3339_us};

/// The common query of listing routes (audit trail, prediction log): a time window, a page,
/// and JSON or CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub csv: bool,
    pub limit: u32,
    pub offset: u32,
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
}

impl Listing {
    /// JSON pages hold 1 to 1000 (default 100); a CSV export every match up to 100,000.
    pub fn parse(
        format: Option<&str>,
        limit: Option<u32>,
        offset: Option<u32>,
        since: Option<&str>,
        until: Option<&str>,
    ) -> Result<Listing, ServiceError> {
        let invalid = |message: String| ServiceError::new(ErrorKind::InvalidArgument, message);
        let csv = match format {
            None | Some("json") => false,
            Some("csv") => true,
            Some(other) => return Err(invalid(format!("`format` is json or csv, not '{other}'"))),
        };
        let limit = match limit {
            Some(n) if !csv && !(1..=1000).contains(&n) => {
                return Err(invalid(format!(
                    "`limit` must be between 1 and 1000, got {n}"
                )))
            }
            Some(n) => n.clamp(1, 100_000),
            None if csv => 100_000,
            None => 100,
        };
        let instant = |name: &str, text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_micros())
                .map_err(|e| {
                    invalid(format!(
                        "`{name}` must be an RFC 3339 time like 2026-11-24T10:00:00Z: {e}"
                    ))
                })
        };
        Ok(Listing {
            csv,
            limit,
            offset: offset.unwrap_or(0),
            since_us: since.map(|t| instant("since", t)).transpose()?,
            until_us: until.map(|t| instant("until", t)).transpose()?,
        })
    }
}

/// A model's service state and the actions it allows now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    #[schema(example = "iris")]
    pub model: String,
    pub state: ServiceState,
    pub actions: Vec<ServiceAction>,
}

impl From<&ModelRecord> for ServiceInfo {
    fn from(m: &ModelRecord) -> Self {
        let state = ServiceState::of(m);
        ServiceInfo {
            model: m.name.clone(),
            state,
            actions: state.actions().to_vec(),
        }
    }
}

/// A model to create, with no version yet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModelRequest {
    #[schema(example = "iris")]
    pub name: String,
}

/// How a version runs on this process: its backend and queue. Present while it is loaded here.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServingInfo {
    /// The engine running it: `tract`, `ort-cpu` or `ort-cuda`.
    #[schema(example = "ort-cpu")]
    pub backend: String,
    /// `cpu` or `cuda:<device>`.
    #[schema(example = "cpu")]
    pub execution_provider: String,
    /// `linear` when maas's own kernel computes this model instead of the backend's engine: on
    /// `tract`, an ONNX-ML `LinearClassifier` (optionally followed by a `Normalizer`) or
    /// `LinearRegressor`, whose answers on probe rows matched tract's when it loaded. Absent when
    /// the engine runs it. A classifier with string labels, which tract cannot load, is checked
    /// against tract with the labels numbered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "linear")]
    pub kernel: Option<String>,
    /// Why the backend differs from the one asked for (`auto` fell back), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_note: Option<String>,
    pub instances: usize,
    /// ONNX Runtime only: threads within one operator, per instance (by default the cores
    /// this process may use divided among the instances, at least 1; `serving.ort.intra_op_threads`
    /// sets it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 2)]
    pub intra_op_threads: Option<usize>,
    /// ONNX Runtime only: threads across operators, per instance (1, the default: sequential
    /// execution; `serving.ort.inter_op_threads` sets it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 1)]
    pub inter_op_threads: Option<usize>,
    /// Whether rows of concurrent requests are joined (needs a free batch axis on every input
    /// and output, and `max_batch_size` above 1).
    pub batching: bool,
    pub max_batch_size: usize,
    pub max_queue_delay_us: u64,
    pub queue_capacity: usize,
    pub queue_timeout_ms: u64,
    /// Requests expected to compute within this many microseconds run on the HTTP worker when
    /// the queue is idle.
    pub inline_max_us: u64,
    /// Requests waiting now.
    pub queue_depth: usize,
    /// How long the warmup inference took, in milliseconds.
    pub warmup_ms: f64,
}

impl From<&ServedVersion> for ServingInfo {
    fn from(served: &ServedVersion) -> Self {
        let config = served.queue.config();
        ServingInfo {
            backend: served.backend.as_str().to_owned(),
            execution_provider: served.execution_provider.clone(),
            kernel: served.loaded.kernel().map(str::to_owned),
            backend_note: served.backend_note.clone(),
            instances: served.queue.instances(),
            intra_op_threads: served.ort_threads.map(|t| t.intra_op),
            inter_op_threads: served.ort_threads.map(|t| t.inter_op),
            batching: served.queue.is_batching(),
            max_batch_size: config.max_batch_size,
            max_queue_delay_us: config.max_queue_delay.as_micros() as u64,
            queue_capacity: config.queue_capacity,
            queue_timeout_ms: config.queue_timeout.as_millis() as u64,
            inline_max_us: config.inline_max.as_micros() as u64,
            queue_depth: served.queue.depth(),
            warmup_ms: served.warmup.as_secs_f64() * 1000.0,
        }
    }
}

/// A model input or output as the model declares it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TensorInfo {
    #[schema(example = "float_input")]
    pub name: String,
    /// float32, float64, int32, int64, bool or string.
    #[schema(example = "float32")]
    pub element_type: String,
    /// Sizes; a symbolic dimension (such as the batch size) is shown by its name.
    #[schema(value_type = Vec<Dimension>, example = json!(["N", 4]))]
    pub shape: Vec<Value>,
}

/// One dimension of a declared shape, as the API shows it: its size, or the name of a symbolic
/// dimension such as the batch size `N`. (Only its schema is used; values are built as JSON.)
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum Dimension {
    Size(u64),
    Symbol(String),
}

impl From<&maas_serving::TensorSpec> for TensorInfo {
    fn from(spec: &maas_serving::TensorSpec) -> Self {
        TensorInfo {
            name: spec.name.clone(),
            element_type: spec.element_type.as_str().to_owned(),
            shape: spec
                .shape
                .iter()
                .map(|d| match d {
                    maas_serving::Dim::Fixed(n) => Value::from(*n),
                    maas_serving::Dim::Symbolic(name) => Value::from(name.as_str()),
                })
                .collect(),
        }
    }
}

/// One version of a model, in full.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    #[schema(example = "iris")]
    pub name: String,
    #[schema(example = 1)]
    pub version: u64,
    /// `deployed` or `undeployed`.
    #[schema(example = "deployed")]
    pub state: String,
    /// True when unversioned predicts run this version (the newest deployed).
    pub default: bool,
    /// True when this process has the version loaded and answering.
    pub ready: bool,
    /// Why a deployed version failed to load on this process, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
    /// The backend the version was deployed with (see `serving` for what runs it here).
    #[schema(example = "tract")]
    pub backend: String,
    /// The serving options the deploy asked for.
    pub serving_options: ServingOptions,
    /// How this process runs the version, while it is loaded here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<ServingInfo>,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub class_names: Option<Vec<String>>,
    pub feature_names: Option<Vec<String>>,
    pub size_bytes: u64,
    pub sha256: String,
    /// Where the file came from: `upload:<file name>` or the URL it was fetched from.
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
    /// The drift baseline and settings, when the version has them (shown on the version's own
    /// route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftInfo>,
}

impl VersionInfo {
    pub fn new(record: &VersionRecord, default: Option<u64>, status: LoadStatus) -> Self {
        let (ready, load_error, serving) = match status {
            LoadStatus::Loaded(served) => (true, None, Some(ServingInfo::from(served.as_ref()))),
            LoadStatus::NotLoaded => (false, None, None),
            LoadStatus::Failed(reason) => (false, Some(reason), None),
        };
        VersionInfo {
            name: record.model.clone(),
            version: record.version,
            state: record.state.as_str().to_owned(),
            default: default == Some(record.version),
            ready,
            load_error,
            backend: record.backend.clone(),
            serving_options: record.serving.clone(),
            serving,
            inputs: record
                .signature
                .inputs
                .iter()
                .map(TensorInfo::from)
                .collect(),
            outputs: record
                .signature
                .outputs
                .iter()
                .map(TensorInfo::from)
                .collect(),
            class_names: record.class_names.clone(),
            feature_names: record.feature_names.clone(),
            size_bytes: record.size_bytes,
            sha256: record.sha256.clone(),
            // Versions stored before sources were redacted on the way in.
            source: crate::store::redact::url(&record.source),
            created_at: rfc3339(record.created_at),
            updated_at: rfc3339(record.updated_at),
            drift: None,
        }
    }
}

/// A version's drift baseline.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DriftInfo {
    /// Feature names, in the model's order.
    pub columns: Vec<String>,
    pub baseline_rows: usize,
    /// `baseline` (uploaded) or `training_data` (sampled).
    pub source: String,
    /// Per feature: count, mean, std, min, max (of the training data when it was given). With
    /// `training_stats`, the mean and std given, count 0, and the baseline's min and max.
    #[schema(value_type = Object)]
    pub stats: std::collections::BTreeMap<String, maas_drift::FeatureStats>,
    pub settings: crate::services::drift::DriftSettings,
}

impl From<&crate::services::drift::VersionDrift> for DriftInfo {
    fn from(d: &crate::services::drift::VersionDrift) -> Self {
        DriftInfo {
            columns: d.columns.clone(),
            baseline_rows: d.baseline.len(),
            source: d.source.clone(),
            stats: d.stats.clone(),
            settings: d.settings.clone(),
        }
    }
}

/// A stored drift event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DriftEvent {
    pub id: String,
    pub model: String,
    pub version: u64,
    pub feature: String,
    /// The detector, or `deviation` for the mean check.
    pub detector: String,
    /// `drift` or `deviation`.
    pub kind: String,
    /// `request` or `continuous`.
    pub mode: String,
    /// Rows of the request (0-based) where drift was flagged.
    pub rows: Vec<usize>,
    pub request_id: String,
    pub created_at: String,
}

impl From<&crate::store::drift::DriftEventRecord> for DriftEvent {
    fn from(e: &crate::store::drift::DriftEventRecord) -> Self {
        DriftEvent {
            id: e.id.clone(),
            model: e.model.clone(),
            version: e.version,
            feature: e.feature.clone(),
            detector: e.detector.clone(),
            kind: e.kind.clone(),
            mode: e.mode.clone(),
            rows: serde_json::from_str(&e.rows).unwrap_or_default(),
            request_id: e.request_id.clone(),
            created_at: rfc3339(e.created_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DriftEventList {
    pub events: Vec<DriftEvent>,
}

/// Which drift events to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    /// Only this version's events.
    pub version: Option<u64>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A version in a model's list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionSummary {
    pub version: u64,
    #[schema(example = "deployed")]
    pub state: String,
    pub created_at: String,
}

/// A model with its versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    #[schema(example = "iris")]
    pub name: String,
    /// The newest deployed version, which unversioned predicts run; null when none is deployed.
    pub default_version: Option<u64>,
    /// The service state: `created`, `running`, `paused` or `finished`.
    pub state: ServiceState,
    pub versions: Vec<VersionSummary>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&ModelRecord> for ModelInfo {
    fn from(m: &ModelRecord) -> Self {
        ModelInfo {
            name: m.name.clone(),
            default_version: m.default_version(),
            state: ServiceState::of(m),
            versions: m
                .versions
                .iter()
                .map(|v| VersionSummary {
                    version: v.version,
                    state: v.state.as_str().to_owned(),
                    created_at: rfc3339(v.created_at),
                })
                .collect(),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub name: String,
    pub default_version: Option<u64>,
    pub versions: Vec<VersionInfo>,
}

/// The multipart form of a deploy. Send `model` or `model_url`, not both. Every field but one of
/// those two is optional; a field sent empty counts as absent.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct DeployForm {
    /// The ONNX file.
    #[schema(value_type = String, format = Binary, required = false)]
    pub model: Vec<u8>,
    /// Fetch the ONNX file from here instead: http, https or file URL.
    #[schema(required = false, example = "")]
    pub model_url: String,
    /// The version number; by default the last number used plus one. Numbers are never reused.
    #[schema(required = false, example = "", pattern = "^[0-9]*$")]
    pub version: String,
    /// JSON array of class labels in class-index order, e.g. `["setosa","versicolor","virginica"]`.
    #[schema(required = false, example = "")]
    pub class_names: String,
    /// JSON array of column names in feature order, for `records` predicts.
    #[schema(required = false, example = "")]
    pub feature_names: String,
    /// `false` (default): this version replaces the deployed ones, which stay kept. `true`: they
    /// keep serving beside it (unversioned predicts go to the newest).
    #[schema(required = false)]
    pub append: bool,
    /// Serving options as JSON (see `ServingOptions`), e.g.
    /// `{"backend": "ort-cpu", "instances": 2, "max_batch_size": 64, "max_queue_delay_us": 500}`.
    #[schema(required = false, example = "")]
    pub serving: String,
    /// Save the model's predicts in the prediction log by default (the seed's
    /// LOGGING_PREDICTION; a predict's `"save": false` opts out). Left out, the model's setting
    /// stays as it is (off for a new model); the versions deployed after keep it.
    #[schema(required = false)]
    pub log_predictions: bool,
    /// Drift baseline rows as CSV (header row optional), used as they are. A missing cell (empty,
    /// `NA`, `NaN`, ...) is skipped by the detectors; a column with no value is refused (422).
    /// One of `baseline`, `baseline_url`, `training_data`, `training_data_url` at most. With one,
    /// drift is checked on every predict unless `drift` says `"enabled": false`.
    #[schema(value_type = String, format = Binary, required = false)]
    pub baseline: Vec<u8>,
    /// Fetch the baseline CSV from here instead (the seed's BASELINE_DATA_URL): http, https or
    /// file URL, with the rules and the size limit of `model_url`; a failed fetch is
    /// `baseline_url_failed` (422). E.g. `https://example.com/datasets/iris_baseline.csv`.
    #[schema(required = false, example = "")]
    pub baseline_url: String,
    /// Training data as CSV: `baseline_size` rows are sampled with a fixed seed, and the mean and
    /// standard deviation of every row are kept for the deviation check (missing cells left out).
    #[schema(value_type = String, format = Binary, required = false)]
    pub training_data: Vec<u8>,
    /// Fetch the training data CSV from here instead, with the rules of `baseline_url`.
    #[schema(required = false, example = "")]
    pub training_data_url: String,
    /// Rows sampled from `training_data` (default 50, or every row when there are fewer). More
    /// than the training data has is refused (422).
    #[schema(required = false, example = "", pattern = "^[0-9]*$")]
    pub baseline_size: String,
    /// A CSV column to drop (the label), e.g. `species`.
    #[schema(required = false, example = "")]
    pub label_column: String,
    /// Training mean and standard deviation per feature, given directly (the seed's
    /// MODEL_METADATA), for the deviation check: JSON keyed by feature name
    /// (`{"sepal_length": {"mean": 5.82, "std": 0.81}, ...}`), or the seed's
    /// `[[means...], [stds...]]` in feature order. Every feature, finite numbers, std > 0. Goes
    /// with a `baseline` (or `baseline_url`), whose own statistics it replaces.
    #[schema(required = false, example = "")]
    pub training_stats: String,
    /// Drift settings as JSON, e.g. `{"detector": {"detector": "adwin"}, "continuous": true}`;
    /// `{"enabled": false}` keeps the baseline without checking every predict,
    /// `{"deviation_enabled": false}` turns the deviation check off.
    #[schema(required = false, example = "")]
    pub drift: String,
}

/// Options of a redeploy (rollback).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeployRequest {
    /// `false` (default): this becomes the only deployed version, and so the default (a
    /// rollback). `true`: the deployed versions keep serving beside it.
    #[serde(default)]
    pub append: Option<bool>,
}

/// A predict request: `instances` (rows; nested arrays, or flat values with `shape`) or
/// `records` (objects keyed by feature name).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// One entry per instance, e.g. `[[5.1, 3.5, 1.4, 0.2]]`; or, with `shape`, the values in
    /// row-major order.
    #[schema(value_type = Option<Vec<Object>>, example = json!([[5.1, 3.5, 1.4, 0.2]]))]
    pub instances: Option<Value>,
    /// Objects keyed by the feature names given at deploy time.
    #[schema(value_type = Option<Vec<Object>>)]
    pub records: Option<Vec<Map<String, Value>>>,
    /// Shape of the whole input (`[2, 1, 28, 28]`) or of one instance (`[1, 28, 28]`) when
    /// `instances` is flat.
    pub shape: Option<Vec<usize>>,
    /// With `records`: a column that is not a feature (the label of labelled rows, the seed's
    /// LABEL_COLUMN), dropped from each record before scoring; records without it are fine. The
    /// prediction log keeps the records as sent.
    #[schema(example = "species")]
    pub label_column: Option<String>,
    /// Check these rows for drift against the version's baseline with this detector and its
    /// river parameters: `{"detector": "adwin"}` (adwin, page_hinkley, hddm_a, hddm_w). Versions
    /// deployed with drift enabled are checked without asking.
    #[schema(value_type = Option<Object>, example = json!({"detector": "adwin"}))]
    pub drift: Option<maas_drift::DetectorConfig>,
    /// Save this predict in the prediction log (default: the model's setting, off unless an
    /// `update` action turned it on).
    pub save: Option<bool>,
}

/// A model's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictResponse {
    #[schema(example = "iris")]
    pub model: String,
    /// The version that answered.
    #[schema(example = 1)]
    pub version: u64,
    /// One per instance: a label (through the class names when given) or a regression value.
    #[schema(value_type = Vec<Object>, example = json!(["setosa"]))]
    pub predictions: Vec<Value>,
    /// Class probabilities per instance, when the model outputs them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Vec<f64>>>)]
    pub probabilities: Option<maas_serving::io::Rows>,
    /// Every other output of the model, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Map<String, Value>>,
    /// The drift check, when the request asked for one or the version checks every predict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<crate::services::drift::DriftResult>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthStatus {
    #[schema(example = "ready")]
    pub status: String,
}

pub fn is_deployed(record: &VersionRecord) -> bool {
    record.state == VersionState::Deployed
}
