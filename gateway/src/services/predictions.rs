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
use tokio::sync::mpsc;

use crate::services::metrics::Metrics;
use crate::services::telemetry::RequestTrace;
pub use crate::store::predictions::{Pending, PredictionRecord};
use crate::store::SqlStore;

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

/// The queue in front of the writer task.
#[derive(Clone)]
pub struct PredictionLog {
    /// Each record with the trace of the request that made it, which records the write.
    queue: mpsc::Sender<(Pending, RequestTrace)>,
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
    pub fn detached(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<(Pending, RequestTrace)>) {
        let (queue, records) = mpsc::channel(capacity.max(1));
        (PredictionLog { queue, metrics }, records)
    }

    /// Hand a record to the writer; never waits. A full queue drops it and counts the drop.
    pub fn log(&self, record: Pending) {
        let trace = crate::services::telemetry::current();
        if self.queue.try_send((record, trace)).is_err() {
            self.metrics.observe_prediction_log_drop();
        }
    }
}

async fn write_loop(
    store: SqlStore,
    mut records: mpsc::Receiver<(Pending, RequestTrace)>,
    settings: PredictionLogSettings,
) {
    let interval = Duration::from_secs(settings.retention_interval_secs);
    let mut last_retention = std::time::Instant::now();
    while let Some(first) = records.recv().await {
        let (record, trace) = first;
        let mut batch = vec![record];
        let mut traces = vec![trace];
        while batch.len() < BATCH {
            match records.try_recv() {
                Ok((record, trace)) => {
                    batch.push(record);
                    traces.push(trace);
                }
                Err(_) => break,
            }
        }
        let started = std::time::SystemTime::now();
        let written = store.insert_predictions(&batch).await;
        let ended = std::time::SystemTime::now();
        for trace in traces.iter().filter(|t| t.is_recording()) {
            trace.phase(
                "store.prediction_log",
                started,
                ended,
                vec![
                    opentelemetry::KeyValue::new("maas.records", batch.len() as i64),
                    opentelemetry::KeyValue::new("maas.ok", written.is_ok()),
                ],
            );
        }
        if let Err(e) = written {
            tracing::warn!(error = %e, records = batch.len(), "could not save predictions");
        }
        if last_retention.elapsed() >= interval {
            last_retention = std::time::Instant::now();
            if let Err(e) = store
                .apply_prediction_retention(settings.max_age_secs, settings.max_rows_per_version)
                .await
            {
                tracing::warn!(error = %e, "could not apply the prediction log's retention");
            }
        }
    }
}
