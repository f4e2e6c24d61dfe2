//! Drift baselines and drift events in the store.

use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use super::{now_ms, SqlStore, StoreError};
use crate::store::audit::{self, Change};

/// A version's baseline as stored: JSON texts, decoded by the drift service.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftRecord {
    /// JSON array of feature names, in the model's feature order.
    pub columns: String,
    /// JSON array of rows.
    pub rows: String,
    /// JSON object of per-feature statistics (of the training data when it was given).
    pub stats: String,
    /// `baseline` (uploaded as is) or `training_data` (sampled).
    pub source: String,
    /// JSON of the version's drift settings.
    pub settings: String,
    pub updated_at: i64,
}

/// One stored drift event.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftEventRecord {
    pub id: String,
    pub model: String,
    pub version: u64,
    pub feature: String,
    pub detector: String,
    /// `drift` (a detector fired) or `deviation` (the mean moved beyond the threshold).
    pub kind: String,
    /// `request` or `continuous`.
    pub mode: String,
    /// JSON array of row indices within the request.
    pub rows: String,
    pub request_id: String,
    pub created_at: i64,
}

pub(crate) async fn put_baseline<'e, E>(
    executor: E,
    model: &str,
    version: u64,
    record: &DriftRecord,
    now: i64,
) -> Result<(), StoreError>
where
    E: Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO version_drift (model, version, columns, rows, stats, source, settings, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (model, version) DO UPDATE SET columns = $3, rows = $4, stats = $5, source = $6, \
         settings = $7, updated_at = $8",
    )
    .bind(model)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(&record.columns)
    .bind(&record.rows)
    .bind(&record.stats)
    .bind(&record.source)
    .bind(&record.settings)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

fn event_from_row(row: &AnyRow) -> Result<DriftEventRecord, StoreError> {
    Ok(DriftEventRecord {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        version: row.try_get::<i64, _>("version")?.max(0) as u64,
        feature: row.try_get("feature")?,
        detector: row.try_get("detector")?,
        kind: row.try_get("kind")?,
        mode: row.try_get("mode")?,
        rows: row.try_get("rows")?,
        request_id: row.try_get("request_id")?,
        created_at: row.try_get("created_at")?,
    })
}

impl SqlStore {
    /// Replace a version's baseline (the version must exist).
    pub async fn replace_baseline(
        &self,
        model: &str,
        version: u64,
        record: &DriftRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        put_baseline(&mut *tx, model, version, record, now_ms()).await?;
        let settings: serde_json::Value =
            serde_json::from_str(&record.settings).unwrap_or_default();
        audit::record(
            &mut *tx,
            self.audit(),
            Change::new("baseline_update")
                .model(model)
                .version(version)
                .details(serde_json::json!({"source": record.source, "settings": settings})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn baseline(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<DriftRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT columns, rows, stats, source, settings, updated_at FROM version_drift \
             WHERE model = $1 AND version = $2",
        )
        .bind(model)
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(DriftRecord {
            columns: row.try_get("columns")?,
            rows: row.try_get("rows")?,
            stats: row.try_get("stats")?,
            source: row.try_get("source")?,
            settings: row.try_get("settings")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }

    /// `(model, version, updated_at)` of every baseline: replicas use it to drop stale copies.
    pub async fn baseline_versions(&self) -> Result<Vec<(String, u64, i64)>, StoreError> {
        let rows = sqlx::query("SELECT model, version, updated_at FROM version_drift")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("model")?,
                    r.try_get::<i64, _>("version")?.max(0) as u64,
                    r.try_get("updated_at")?,
                ))
            })
            .collect()
    }

    pub async fn insert_drift_events(&self, events: &[DriftEventRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO drift_events (id, model, version, feature, detector, kind, mode, rows, request_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&e.id)
            .bind(&e.model)
            .bind(i64::try_from(e.version).unwrap_or(i64::MAX))
            .bind(&e.feature)
            .bind(&e.detector)
            .bind(&e.kind)
            .bind(&e.mode)
            .bind(&e.rows)
            .bind(&e.request_id)
            .bind(e.created_at)
            .execute(&mut *tx)
            .await?;
            let rows: serde_json::Value = serde_json::from_str(&e.rows).unwrap_or_default();
            audit::record(
                &mut *tx,
                self.audit(),
                Change::new("drift_event")
                    .model(&e.model)
                    .version(e.version)
                    .details(serde_json::json!({
                        "feature": e.feature,
                        "detector": e.detector,
                        "kind": e.kind,
                        "mode": e.mode,
                        "rows": rows,
                        "request_id": e.request_id,
                    })),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A model's drift events, newest first.
    pub async fn drift_events(
        &self,
        model: &str,
        version: Option<u64>,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DriftEventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, model, version, feature, detector, kind, mode, rows, request_id, created_at \
             FROM drift_events WHERE model = $1 AND ($2 < 0 OR version = $2) AND created_at >= $3 \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(model)
        .bind(version.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)))
        .bind(since_ms.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}
