//! The prediction log: predicts saved with their inputs, outputs, version, caller, latency and
//! drift flags, for the `GET /v1/models/{name}/versions/{v}/predictions` preview and export.
//!
//! Saving never waits on the store: a predict hands its record to a bounded queue
//! ([`PredictionLog::log`] is one `try_send`) and a writer task inserts records in batches. A
//! full queue drops the record and counts it (`maas_prediction_log_dropped_total`) rather than
//! slow the answer. The writer also applies the retention limits, by count per version and by age.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::metrics::Metrics;
use crate::store::{SqlStore, StoreError};

/// Retention and queue limits (`[predictions]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionLogSettings {
    /// Records kept per model version; older ones are removed first.
    pub max_rows_per_version: u64,
    /// Records older than this are removed, in seconds.
    pub max_age_secs: u64,
    /// Records waiting to be written; more are dropped (and counted), never waited for.
    pub queue_capacity: usize,
    /// How often the retention limits are applied, in seconds (0: after every write).
    pub retention_interval_secs: u64,
}

impl Default for PredictionLogSettings {
    fn default() -> Self {
        PredictionLogSettings {
            max_rows_per_version: 100_000,
            max_age_secs: 30 * 24 * 3600,
            queue_capacity: 10_000,
            retention_interval_secs: 60,
        }
    }
}

/// One saved predict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PredictionRecord {
    pub id: String,
    #[schema(example = "iris")]
    pub model: String,
    pub version: u64,
    /// RFC 3339, microsecond precision.
    pub at: String,
    pub actor: String,
    pub request_id: String,
    /// Time to answer, in microseconds.
    pub latency_us: u64,
    /// The request's `instances`, `records` and `shape`, as sent.
    #[schema(value_type = Object)]
    pub inputs: Value,
    /// The answer's `predictions`, `probabilities` and `outputs`.
    #[schema(value_type = Object)]
    pub outputs: Value,
    /// Drift flags of the request (`features` and `deviation`), when it was checked.
    #[schema(value_type = Option<Object>)]
    pub drift: Option<Value>,
}

/// A page of saved predictions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PredictionPage {
    pub predictions: Vec<PredictionRecord>,
    /// Records matching the filters in all.
    pub total: u64,
}

/// Filters of the predictions route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PredictionQuery {
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100; CSV: every match up to 100,000).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A record on its way to the store.
pub struct Pending {
    pub model: String,
    pub version: u64,
    pub at_us: i64,
    pub actor: String,
    pub request_id: String,
    pub latency_us: u64,
    pub inputs: Value,
    pub outputs: Value,
    pub drift: Option<Value>,
}

/// The queue in front of the writer task.
#[derive(Clone)]
pub struct PredictionLog {
    queue: mpsc::Sender<Pending>,
    metrics: Arc<Metrics>,
}

/// Records written per transaction at most.
const BATCH: usize = 256;

impl PredictionLog {
    /// Start the writer task on the current runtime.
    pub fn start(store: SqlStore, metrics: Arc<Metrics>, settings: PredictionLogSettings) -> Self {
        let (queue, records) = mpsc::channel(settings.queue_capacity.max(1));
        tokio::spawn(write_loop(store, records, settings));
        PredictionLog { queue, metrics }
    }

    /// A log whose records go to the returned receiver instead of a writer task (benchmarks).
    pub fn detached(capacity: usize, metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<Pending>) {
        let (queue, records) = mpsc::channel(capacity.max(1));
        (PredictionLog { queue, metrics }, records)
    }

    /// Hand a record to the writer; never waits. A full queue drops it and counts the drop.
    pub fn log(&self, record: Pending) {
        if self.queue.try_send(record).is_err() {
            self.metrics.observe_prediction_log_drop();
        }
    }
}

async fn write_loop(
    store: SqlStore,
    mut records: mpsc::Receiver<Pending>,
    settings: PredictionLogSettings,
) {
    let interval = Duration::from_secs(settings.retention_interval_secs);
    let mut last_retention = std::time::Instant::now();
    while let Some(first) = records.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match records.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if let Err(e) = store.insert_predictions(&batch).await {
            tracing::warn!(error = %e, records = batch.len(), "could not save predictions");
        }
        if last_retention.elapsed() >= interval {
            last_retention = std::time::Instant::now();
            if let Err(e) = store.apply_prediction_retention(&settings).await {
                tracing::warn!(error = %e, "could not apply the prediction log's retention");
            }
        }
    }
}

fn parse_json(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

impl SqlStore {
    pub async fn insert_predictions(&self, batch: &[Pending]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for r in batch {
            sqlx::query(
                "INSERT INTO predictions (id, model, version, at, actor, request_id, latency_us, \
                 inputs, outputs, drift) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(&r.model)
            .bind(i64::try_from(r.version).unwrap_or(i64::MAX))
            .bind(r.at_us)
            .bind(&r.actor)
            .bind(&r.request_id)
            .bind(i64::try_from(r.latency_us).unwrap_or(i64::MAX))
            .bind(r.inputs.to_string())
            .bind(r.outputs.to_string())
            .bind(r.drift.as_ref().map(Value::to_string))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Remove records past the age limit, then, per version, all but the newest
    /// `max_rows_per_version`.
    pub async fn apply_prediction_retention(
        &self,
        settings: &PredictionLogSettings,
    ) -> Result<(), StoreError> {
        let cutoff = chrono::Utc::now().timestamp_micros()
            - i64::try_from(settings.max_age_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000);
        sqlx::query("DELETE FROM predictions WHERE at < $1")
            .bind(cutoff)
            .execute(self.pool())
            .await?;
        let keep = i64::try_from(settings.max_rows_per_version).unwrap_or(i64::MAX);
        let over = sqlx::query(
            "SELECT model, version FROM predictions GROUP BY model, version HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(self.pool())
        .await?;
        for row in &over {
            let model: String = row.try_get("model")?;
            let version: i64 = row.try_get("version")?;
            // The `at` of the newest record to drop: everything at or before it goes.
            let edge = sqlx::query(
                "SELECT at FROM predictions WHERE model = $1 AND version = $2 \
                 ORDER BY at DESC LIMIT 1 OFFSET $3",
            )
            .bind(&model)
            .bind(version)
            .bind(keep)
            .fetch_optional(self.pool())
            .await?;
            if let Some(edge) = edge {
                let at: i64 = edge.try_get("at")?;
                sqlx::query(
                    "DELETE FROM predictions WHERE model = $1 AND version = $2 AND at <= $3",
                )
                .bind(&model)
                .bind(version)
                .bind(at)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// A page of a version's saved predictions, newest first, and how many match.
    pub async fn predictions(
        &self,
        model: &str,
        version: u64,
        since_us: Option<i64>,
        until_us: Option<i64>,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<PredictionRecord>, u64), StoreError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let since = since_us.unwrap_or(i64::MIN);
        let until = until_us.unwrap_or(i64::MAX);
        let filter = "WHERE model = $1 AND version = $2 AND at >= $3 AND at < $4";
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM predictions {filter}"))
            .bind(model)
            .bind(version)
            .bind(since)
            .bind(until)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT id, model, version, at, actor, request_id, latency_us, inputs, outputs, drift \
             FROM predictions {filter} ORDER BY at DESC, id DESC LIMIT {limit} OFFSET {offset}"
        ))
        .bind(model)
        .bind(version)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            records.push(PredictionRecord {
                id: row.try_get("id")?,
                model: row.try_get("model")?,
                version: row.try_get::<i64, _>("version")?.max(0) as u64,
                at: crate::api::rfc3339_us(row.try_get("at")?),
                actor: row.try_get("actor")?,
                request_id: row.try_get("request_id")?,
                latency_us: row.try_get::<i64, _>("latency_us")?.max(0) as u64,
                inputs: parse_json(Some(row.try_get("inputs")?)).unwrap_or_default(),
                outputs: parse_json(Some(row.try_get("outputs")?)).unwrap_or_default(),
                drift: parse_json(row.try_get("drift")?),
            });
        }
        Ok((records, total.max(0) as u64))
    }

    /// Models whose predicts are saved by default.
    pub async fn logged_models(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT name FROM models WHERE log_predictions = 1 AND deleted = 0")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get("name").map_err(StoreError::from))
            .collect()
    }

    /// Save (or stop saving) a model's predicts by default.
    pub async fn set_log_predictions(&self, model: &str, on: bool) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE models SET log_predictions = $1, updated_at = $2 WHERE name = $3 AND deleted = 0",
        )
        .bind(i64::from(on))
        .bind(crate::store::now_ms())
        .bind(model)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::ModelNotFound(model.to_owned()));
        }
        crate::audit::record(
            &mut *tx,
            self.audit(),
            crate::audit::Change::new("logging_update")
                .model(model)
                .details(serde_json::json!({"log_predictions": on})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Records as CSV, JSON columns as JSON text.
pub fn to_csv(records: &[PredictionRecord]) -> Result<String, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "at",
        "model",
        "version",
        "actor",
        "request_id",
        "latency_us",
        "inputs",
        "outputs",
        "drift",
        "id",
    ])?;
    for r in records {
        writer.write_record([
            r.at.as_str(),
            &r.model,
            &r.version.to_string(),
            &r.actor,
            &r.request_id,
            &r.latency_us.to_string(),
            &r.inputs.to_string(),
            &r.outputs.to_string(),
            &r.drift.as_ref().map(Value::to_string).unwrap_or_default(),
            &r.id,
        ])?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
