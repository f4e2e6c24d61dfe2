//! The prediction log's records: saved predicts with their inputs, outputs, version, caller,
//! latency and drift flags.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use utoipa::ToSchema;

use super::{SqlStore, StoreError};

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
        max_age_secs: u64,
        max_rows_per_version: u64,
    ) -> Result<(), StoreError> {
        let cutoff = chrono::Utc::now().timestamp_micros()
            - i64::try_from(max_age_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000);
        sqlx::query("DELETE FROM predictions WHERE at < $1")
            .bind(cutoff)
            .execute(self.pool())
            .await?;
        let keep = i64::try_from(max_rows_per_version).unwrap_or(i64::MAX);
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
                at: super::rfc3339_us(row.try_get("at")?),
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
        crate::store::audit::record(
            &mut *tx,
            self.audit(),
            crate::store::audit::Change::new("logging_update")
                .model(model)
                .details(serde_json::json!({"log_predictions": on})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
