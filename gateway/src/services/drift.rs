//! Drift monitoring in the server: baselines per model version (built in `services::baseline`),
//! drift reports on the rows a predict scores (per request, or continuously with
//! detectors that live across requests), stored drift events, a Prometheus counter and webhooks.
//!
//! The detectors are `maas-drift`'s, the same code the offline `maas drift` command runs. The
//! report is computed inline (a few microseconds for a small batch); storing events and calling
//! webhooks happen in the background and never delay the answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use maas_drift::{
    drift_report, ContinuousMonitor, DetectorConfig, DeviationOptions, FeatureStats, FeatureTable,
    ReportOptions, Scaling, DEFAULT_DEVIATION_THRESHOLD,
};
use maas_serving::{Tensor, TensorData};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::services::error::{ErrorKind, ServiceError};
use crate::services::metrics::Metrics;
use crate::store::drift::{DriftEventRecord, DriftRecord};
use crate::store::SqlStore;

/// Webhook attempts and the first back-off (doubled after each failure).
const WEBHOOK_ATTEMPTS: u32 = 4;
const WEBHOOK_BACKOFF: Duration = Duration::from_millis(250);

fn yes() -> bool {
    true
}

fn default_threshold() -> f64 {
    DEFAULT_DEVIATION_THRESHOLD
}

/// How a version watches for drift (the `drift` field of a deploy, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftSettings {
    /// Check every predict of this version, not only those that ask. On unless set to
    /// `false` (the seed's DRIFT_ENABLED): a version deployed with a baseline is watched.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The detector and its parameters, with river's names:
    /// `{"detector": "adwin", "delta": 0.002}`. Default: HDDM_A.
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"detector": "adwin"}))]
    pub detector: DetectorConfig,
    /// Keep one detector per feature across requests, so drift spread over many small requests
    /// is found. Reset when the version is (re)deployed or its baseline replaced.
    #[serde(default)]
    pub continuous: bool,
    /// Run the deviation check (the mean of the new rows against the training mean and std)
    /// beside the detectors; `false` leaves the detectors alone (the seed's
    /// DEVIATION_DETECTION).
    #[serde(default = "yes")]
    pub deviation_enabled: bool,
    /// Standard errors the mean of the new rows may move from the training mean.
    #[serde(default = "default_threshold")]
    pub deviation_threshold: f64,
    /// Called with a JSON notification for each request in which drift was found.
    pub webhook_url: Option<String>,
}

impl Default for DriftSettings {
    fn default() -> Self {
        DriftSettings {
            enabled: true,
            detector: DetectorConfig::default(),
            continuous: false,
            deviation_enabled: true,
            deviation_threshold: DEFAULT_DEVIATION_THRESHOLD,
            webhook_url: None,
        }
    }
}

impl DriftSettings {
    pub fn validate(&self) -> Result<(), ServiceError> {
        self.detector
            .validate()
            .map_err(|e| invalid(format!("drift.detector: {e}")))?;
        if !(self.deviation_threshold.is_finite() && self.deviation_threshold > 0.0) {
            return Err(invalid(
                "drift.deviation_threshold must be a positive number",
            ));
        }
        if let Some(url) = &self.webhook_url {
            let parsed =
                url::Url::parse(url).map_err(|e| invalid(format!("drift.webhook_url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid("drift.webhook_url must be an http or https URL"));
            }
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorKind::InvalidArgument, message)
}

/// A version's baseline, decoded, with its continuous monitor.
pub struct VersionDrift {
    pub columns: Vec<String>,
    pub baseline: FeatureTable,
    pub stats: BTreeMap<String, FeatureStats>,
    pub settings: DriftSettings,
    pub source: String,
    updated_at: i64,
    monitor: Mutex<Option<ContinuousMonitor>>,
}

impl VersionDrift {
    fn decode(record: &DriftRecord) -> Result<VersionDrift, ServiceError> {
        let corrupt = |e: String| {
            ServiceError::new(
                ErrorKind::Internal,
                format!("stored baseline is unreadable: {e}"),
            )
        };
        let columns: Vec<String> =
            serde_json::from_str(&record.columns).map_err(|e| corrupt(e.to_string()))?;
        // A missing value (NaN) is stored as JSON null.
        let rows: Vec<Vec<Option<f64>>> =
            serde_json::from_str(&record.rows).map_err(|e| corrupt(e.to_string()))?;
        let rows = rows
            .into_iter()
            .map(|row| row.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            .collect();
        Ok(VersionDrift {
            baseline: FeatureTable::new(columns.clone(), rows)
                .map_err(|e| corrupt(e.to_string()))?,
            columns,
            stats: serde_json::from_str(&record.stats).map_err(|e| corrupt(e.to_string()))?,
            settings: serde_json::from_str(&record.settings).map_err(|e| corrupt(e.to_string()))?,
            source: record.source.clone(),
            updated_at: record.updated_at,
            monitor: Mutex::new(None),
        })
    }
}

/// The drift part of a predict response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DriftResult {
    #[schema(example = "adwin")]
    pub detector: String,
    /// `request` (baseline then this request's rows through fresh detectors) or `continuous`
    /// (the version's long-lived detectors).
    pub mode: String,
    /// Per feature, the rows of this request (0-based) at which drift was flagged.
    #[schema(value_type = Object, example = json!({"petal_length": [12, 40]}))]
    pub features: BTreeMap<String, Vec<usize>>,
    /// Per feature, rows in the detector's warning zone (HDDM only).
    #[schema(value_type = Object)]
    pub warnings: BTreeMap<String, Vec<usize>>,
    /// Per feature, the mean of this request's values against the training mean and std.
    #[schema(value_type = Object)]
    pub deviation: BTreeMap<String, maas_drift::DeviationCheck>,
}

impl DriftResult {
    pub fn found(&self) -> bool {
        !self.features.is_empty() || self.deviation.values().any(|d| d.flagged)
    }
}

/// Where a predict stands with drift, decided before it runs.
pub struct DriftPlan {
    version: Arc<VersionDrift>,
    /// A detector the request asked for; `None` runs the version's settings.
    requested: Option<DetectorConfig>,
}

/// A model name and version number.
type VersionKey = (String, u64);

pub struct DriftService {
    store: SqlStore,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    global_webhook: Option<String>,
    /// Decoded baselines, and the versions known to have none (so a predict without drift never
    /// asks the store).
    cache: RwLock<HashMap<VersionKey, Option<Arc<VersionDrift>>>>,
}

impl DriftService {
    pub fn new(store: SqlStore, metrics: Arc<Metrics>, global_webhook: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        DriftService {
            store,
            metrics,
            http,
            global_webhook,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The version's baseline, from the cache or the store.
    pub async fn version(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<Arc<VersionDrift>>, ServiceError> {
        let key = (model.to_owned(), version);
        if let Some(found) = self.cache.read().get(&key) {
            return Ok(found.clone());
        }
        let decoded = match self.store.baseline(model, version).await? {
            Some(record) => Some(Arc::new(VersionDrift::decode(&record)?)),
            None => None,
        };
        Ok(self.cache.write().entry(key).or_insert(decoded).clone())
    }

    /// Drop a version's decoded baseline and continuous state (redeploy, new baseline).
    pub fn forget(&self, model: &str, version: u64) {
        self.cache.write().remove(&(model.to_owned(), version));
    }

    pub fn forget_model(&self, model: &str) {
        self.cache.write().retain(|(m, _), _| m != model);
    }

    /// Drop cached baselines that another replica replaced or added.
    pub async fn refresh(&self) -> Result<(), ServiceError> {
        let current: HashMap<(String, u64), i64> = self
            .store
            .baseline_versions()
            .await?
            .into_iter()
            .map(|(m, v, at)| ((m, v), at))
            .collect();
        self.cache.write().retain(|key, cached| match cached {
            Some(cached) => current.get(key) == Some(&cached.updated_at),
            None => !current.contains_key(key),
        });
        Ok(())
    }

    /// Decide whether this predict checks drift, and fail early when it cannot.
    pub async fn plan(
        &self,
        model: &str,
        version: u64,
        requested: Option<DetectorConfig>,
    ) -> Result<Option<DriftPlan>, ServiceError> {
        if let Some(config) = &requested {
            config
                .validate()
                .map_err(|e| ServiceError::new(ErrorKind::InvalidInput, format!("drift: {e}")))?;
        }
        let stored = self.version(model, version).await?;
        match (stored, requested) {
            (Some(version), requested) if requested.is_some() || version.settings.enabled => {
                Ok(Some(DriftPlan { version, requested }))
            }
            (None, Some(_)) => Err(ServiceError::new(
                ErrorKind::InvalidInput,
                format!(
                    "version {version} of '{model}' has no drift baseline; deploy it with `baseline` or \
                     `training_data`, or PUT /v1/models/{model}/versions/{version}/baseline"
                ),
            )),
            _ => Ok(None),
        }
    }

    /// The rows of a predict as a feature table, read before the tensor goes to the backend.
    pub fn table(plan: &DriftPlan, tensor: &Tensor) -> Result<FeatureTable, ServiceError> {
        let columns = &plan.version.columns;
        let width = columns.len();
        let values: Vec<f64> = match &tensor.data {
            TensorData::Float32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Float64(v) => v.clone(),
            TensorData::Int32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TensorData::Int64(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::Bool(_) | TensorData::String(_) => {
                return Err(ServiceError::new(
                    ErrorKind::InvalidInput,
                    "drift detection needs numeric input",
                ))
            }
        };
        if tensor.shape.len() != 2 || tensor.shape[1] != width {
            return Err(ServiceError::new(
                ErrorKind::InvalidInput,
                format!("drift detection needs rows of {width} features"),
            ));
        }
        let rows = values.chunks(width).map(<[f64]>::to_vec).collect();
        FeatureTable::new(columns.clone(), rows)
            .map_err(|e| ServiceError::new(ErrorKind::InvalidInput, e.to_string()))
    }

    /// Run the plan on a predict's rows.
    pub fn evaluate(plan: &DriftPlan, rows: &FeatureTable) -> Result<DriftResult, ServiceError> {
        let version = &plan.version;
        let settings = &version.settings;
        let training = version
            .stats
            .iter()
            .map(|(k, s)| (k.clone(), s.moments()))
            .collect();
        let deviation = settings.deviation_enabled.then_some(DeviationOptions {
            threshold: settings.deviation_threshold,
            training,
        });
        let failed = |e: maas_drift::DriftError| {
            ServiceError::new(ErrorKind::InvalidInput, format!("drift: {e}"))
        };
        let (detector, mode, features, warnings, checks) = match &plan.requested {
            Some(config) => {
                let options = ReportOptions {
                    detector: config.clone(),
                    scaling: Scaling::Auto,
                    deviation: deviation.clone(),
                };
                let report = drift_report(&version.baseline, rows, &options).map_err(failed)?;
                (
                    config.name(),
                    "request",
                    report.drift,
                    report.warnings,
                    report.deviation.unwrap_or_default(),
                )
            }
            None if settings.continuous => {
                let options = ReportOptions {
                    detector: settings.detector.clone(),
                    scaling: Scaling::Auto,
                    deviation: None,
                };
                let mut monitor = version.monitor.lock();
                if monitor.is_none() {
                    *monitor =
                        Some(ContinuousMonitor::new(&version.baseline, &options).map_err(failed)?);
                }
                let signals = match monitor.as_mut() {
                    Some(m) => m.update(rows).map_err(failed)?,
                    None => {
                        return Err(ServiceError::new(
                            ErrorKind::Internal,
                            "the drift monitor vanished",
                        ))
                    }
                };
                drop(monitor);
                // The mean check only: the detectors already ran in the monitor.
                let checks = match &deviation {
                    Some(deviation) => {
                        maas_drift::deviation_report(rows, deviation).map_err(failed)?
                    }
                    None => BTreeMap::new(),
                };
                (
                    settings.detector.name(),
                    "continuous",
                    signals.drift,
                    signals.warnings,
                    checks,
                )
            }
            None => {
                let options = ReportOptions {
                    detector: settings.detector.clone(),
                    scaling: Scaling::Auto,
                    deviation,
                };
                let report = drift_report(&version.baseline, rows, &options).map_err(failed)?;
                (
                    settings.detector.name(),
                    "request",
                    report.drift,
                    report.warnings,
                    report.deviation.unwrap_or_default(),
                )
            }
        };
        Ok(DriftResult {
            detector: detector.to_owned(),
            mode: mode.to_owned(),
            features,
            warnings,
            deviation: checks,
        })
    }

    /// Count, store and announce what a predict found; the storing and the webhook run in the
    /// background.
    pub fn record(
        self: &Arc<Self>,
        plan: &DriftPlan,
        model: &str,
        version: u64,
        result: &DriftResult,
    ) {
        if !result.found() {
            return;
        }
        let request_id = crate::store::audit::current().request_id;
        let now = crate::store::now_ms();
        let mut events = Vec::new();
        let event = |feature: &str, kind: &str, rows: &[usize]| DriftEventRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            model: model.to_owned(),
            version,
            feature: feature.to_owned(),
            detector: result.detector.clone(),
            kind: kind.to_owned(),
            mode: result.mode.clone(),
            rows: serde_json::json!(rows).to_string(),
            request_id: request_id.clone(),
            created_at: now,
        };
        for (feature, rows) in &result.features {
            self.metrics
                .observe_drift(model, version, feature, &result.detector);
            events.push(event(feature, "drift", rows));
        }
        for feature in result
            .deviation
            .iter()
            .filter(|(_, c)| c.flagged)
            .map(|(f, _)| f)
        {
            self.metrics
                .observe_drift(model, version, feature, "deviation");
            events.push(DriftEventRecord {
                detector: "deviation".into(),
                ..event(feature, "deviation", &[])
            });
        }
        let payload = serde_json::json!({
            "event": "drift",
            "model": model,
            "version": version,
            "request_id": request_id,
            "detector": result.detector,
            "mode": result.mode,
            "features": result.features,
            "deviation": result.deviation.iter().filter(|(_, c)| c.flagged).collect::<BTreeMap<_, _>>(),
            "created_at": crate::store::rfc3339(now),
        });
        let webhook = plan
            .version
            .settings
            .webhook_url
            .clone()
            .or_else(|| self.global_webhook.clone());
        let service = self.clone();
        // Off the request's path, but still on its behalf: its audit records name the caller,
        // the client and the request that scored the drifted rows.
        let context = crate::store::audit::current();
        let trace = crate::services::telemetry::current();
        tokio::spawn(crate::store::audit::scope(context, async move {
            let started = std::time::SystemTime::now();
            let written = service.store.insert_drift_events(&events).await;
            trace.phase(
                "store.drift_events",
                started,
                std::time::SystemTime::now(),
                vec![
                    opentelemetry::KeyValue::new("maas.records", events.len() as i64),
                    opentelemetry::KeyValue::new("maas.ok", written.is_ok()),
                ],
            );
            if let Err(e) = written {
                tracing::error!(error = %e, "could not store drift events");
            }
            if let Some(url) = webhook {
                service.notify(&url, &payload).await;
            }
        }));
    }

    async fn notify(&self, url: &str, payload: &serde_json::Value) {
        let mut wait = WEBHOOK_BACKOFF;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            match self.http.post(url).json(payload).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(attempt, status = %r.status(), "drift webhook refused the notification")
                }
                Err(e) => tracing::warn!(attempt, error = %e, "drift webhook unreachable"),
            }
            if attempt < WEBHOOK_ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        self.metrics.observe_webhook_failure();
        tracing::error!(
            attempts = WEBHOOK_ATTEMPTS,
            "gave up on a drift webhook notification"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::baseline::{build_record, BaselineUpload};
    use maas_serving::{Dim, ElementType, ModelSignature, TensorSpec};

    #[test]
    fn missing_values_are_kept_as_nan_and_skipped_by_the_statistics() {
        let signature = ModelSignature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                element_type: ElementType::Float32,
                shape: vec![Dim::Symbolic("N".into()), Dim::Fixed(2)],
            }],
            outputs: vec![],
        };
        let upload = BaselineUpload {
            baseline_csv: Some(b"a,b\n1,2\n,4\nNA,6\n3,\n".to_vec()),
            ..BaselineUpload::default()
        };
        let record = build_record(upload, &signature, None).unwrap().unwrap();
        assert_eq!(record.rows, "[[1.0,2.0],[null,4.0],[null,6.0],[3.0,null]]");
        let stats: BTreeMap<String, FeatureStats> = serde_json::from_str(&record.stats).unwrap();
        assert_eq!((stats["a"].count, stats["a"].mean), (2, 2.0));
        assert_eq!((stats["b"].count, stats["b"].mean), (3, 4.0));
        // Stored as null, read back as NaN: the detectors skip it.
        let drift = VersionDrift::decode(&record).unwrap();
        let a: Vec<f64> = drift.baseline.column("a").unwrap().collect();
        assert!(a[0] == 1.0 && a[1].is_nan() && a[2].is_nan() && a[3] == 3.0);
    }
}
