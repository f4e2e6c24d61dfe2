//! Prometheus metrics, all under the `maas_` prefix, with units in their names. HTTP metrics are
//! labelled by route template, never by raw path; model labels only ever name deployed models.

use std::time::Duration;

use maas_serving::batching::{BatchObserver, DropReason};
use maas_serving::ServedVersion;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets for every histogram, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Rows per model run: powers of two up to the largest batch a version may be given.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Task attempt durations, in seconds: 10 ms to 6 h.
const TASK_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    task_attempts: IntCounterVec,
    task_duration: HistogramVec,
    tasks_running: prometheus::IntGauge,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    predictions: IntCounterVec,
    prediction_duration: HistogramVec,
    versions_loaded: IntGaugeVec,
    deploys: IntCounterVec,
    drift_events: IntCounterVec,
    webhook_failures: prometheus::IntCounter,
    queue_duration: HistogramVec,
    compute_duration: HistogramVec,
    batch_size: HistogramVec,
    queue_depth: IntGaugeVec,
    instances: IntGaugeVec,
    dropped: IntCounterVec,
    paused: IntGaugeVec,
    prediction_log_dropped: IntCounter,
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "maas_http_requests_total",
                "HTTP requests by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let http_duration = histogram(
            "maas_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            &["method", "route"],
        )?;
        let grpc_requests = IntCounterVec::new(
            Opts::new(
                "maas_grpc_requests_total",
                "gRPC calls by method and status code (OK, INVALID_ARGUMENT, ...).",
            ),
            &["method", "code"],
        )?;
        let grpc_duration = histogram(
            "maas_grpc_request_duration_seconds",
            "gRPC call latency by method.",
            &["method"],
        )?;
        let predictions = IntCounterVec::new(
            Opts::new(
                "maas_predictions_total",
                "Predict requests by model, version, protocol (v1, v2 or grpc) and outcome.",
            ),
            &["model", "version", "protocol", "outcome"],
        )?;
        let prediction_duration = histogram(
            "maas_prediction_duration_seconds",
            "Time to validate, run and render one predict request, by model and version.",
            &["model", "version"],
        )?;
        let versions_loaded = IntGaugeVec::new(
            Opts::new(
                "maas_model_versions_loaded",
                "Versions of each model loaded and serving on this process.",
            ),
            &["model"],
        )?;
        let deploys = IntCounterVec::new(
            Opts::new("maas_deploys_total", "Deploy requests by outcome."),
            &["outcome"],
        )?;
        let drift_events = IntCounterVec::new(
            Opts::new(
                "maas_drift_events_total",
                "Drift found in scored data, by model, version, feature and detector (or `deviation`).",
            ),
            &["model", "version", "feature", "detector"],
        )?;
        let webhook_failures = prometheus::IntCounter::new(
            "maas_drift_webhook_failures_total",
            "Drift notifications given up on after every retry.",
        )?;
        let queue_duration = histogram(
            "maas_inference_queue_duration_seconds",
            "Time a request waited in its version's queue before its batch started.",
            &["model", "version"],
        )?;
        let compute_duration = histogram(
            "maas_inference_compute_duration_seconds",
            "Time one model run took (one batch), by model and version.",
            &["model", "version"],
        )?;
        let batch_size = HistogramVec::new(
            HistogramOpts::new(
                "maas_inference_batch_size",
                "Rows per model run (requests joined by dynamic batching), by model and version.",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
            &["model", "version"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "maas_inference_queue_depth",
                "Requests waiting in each version's queue when metrics were read.",
            ),
            &["model", "version"],
        )?;
        let instances = IntGaugeVec::new(
            Opts::new(
                "maas_model_instances",
                "Model instances (threads with their own session) serving each version.",
            ),
            &["model", "version"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "maas_inference_dropped_total",
                "Requests not run, by model, version and reason (queue_full, timeout, client_gone).",
            ),
            &["model", "version", "reason"],
        )?;
        let paused = IntGaugeVec::new(
            Opts::new(
                "maas_model_paused",
                "1 while a model's service is paused (its predicts answer 503), 0 for every other model served.",
            ),
            &["model"],
        )?;
        let prediction_log_dropped = IntCounter::new(
            "maas_prediction_log_dropped_total",
            "Predictions not saved because the prediction log's queue was full.",
        )?;
        let jobs = IntGaugeVec::new(
            Opts::new(
                "maas_jobs",
                "Training jobs in the store by state (every replica reports the same counts).",
            ),
            &["state"],
        )?;
        let task_attempts = IntCounterVec::new(
            Opts::new(
                "maas_task_attempts_total",
                "Task attempts this process ran, by task kind and how they ended (finished, failed, retried, killed).",
            ),
            &["kind", "outcome"],
        )?;
        let task_duration = HistogramVec::new(
            HistogramOpts::new(
                "maas_task_duration_seconds",
                "Time from an attempt's start to its end, by task kind.",
            )
            .buckets(TASK_BUCKETS.to_vec()),
            &["kind"],
        )?;
        let tasks_running = prometheus::IntGauge::new(
            "maas_tasks_running",
            "Task attempts running on this process's executors now.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "maas_build_info",
                "Always 1; labels say which maas this is.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(grpc_requests.clone()))?;
        registry.register(Box::new(grpc_duration.clone()))?;
        registry.register(Box::new(predictions.clone()))?;
        registry.register(Box::new(prediction_duration.clone()))?;
        registry.register(Box::new(versions_loaded.clone()))?;
        registry.register(Box::new(deploys.clone()))?;
        registry.register(Box::new(drift_events.clone()))?;
        registry.register(Box::new(webhook_failures.clone()))?;
        registry.register(Box::new(queue_duration.clone()))?;
        registry.register(Box::new(compute_duration.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(instances.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        registry.register(Box::new(prediction_log_dropped.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(task_attempts.clone()))?;
        registry.register(Box::new(task_duration.clone()))?;
        registry.register(Box::new(tasks_running.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            jobs,
            task_attempts,
            task_duration,
            tasks_running,
            http_requests,
            http_duration,
            grpc_requests,
            grpc_duration,
            predictions,
            prediction_duration,
            versions_loaded,
            deploys,
            drift_events,
            webhook_failures,
            queue_duration,
            compute_duration,
            batch_size,
            queue_depth,
            instances,
            dropped,
            paused,
            prediction_log_dropped,
        })
    }

    /// Set the job gauges (at scrape time) from the store's counts per state.
    pub fn sample_jobs(&self, counts: &std::collections::BTreeMap<String, u64>, running: usize) {
        for (state, n) in counts {
            self.jobs
                .with_label_values(&[state])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.tasks_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    /// An attempt ended: `outcome` is finished, failed, retried or killed.
    pub fn observe_task(&self, kind: &str, outcome: &str, seconds: f64) {
        self.task_attempts.with_label_values(&[kind, outcome]).inc();
        self.task_duration
            .with_label_values(&[kind])
            .observe(seconds);
    }

    /// The request counter and latency histogram of one method, route template and status.
    pub fn http_handles(&self, method: &str, route: &str, status: &str) -> (IntCounter, Histogram) {
        (
            self.http_requests
                .with_label_values(&[method, route, status]),
            self.http_duration.with_label_values(&[method, route]),
        )
    }

    /// One gRPC call: its method (`ModelInfer`), status code name and latency.
    pub fn observe_grpc(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration
            .with_label_values(&[method])
            .observe(seconds);
    }

    pub fn observe_prediction_log_drop(&self) {
        self.prediction_log_dropped.inc();
    }

    /// Set the paused-model gauges (at scrape time): 1 for each paused model, 0 for every other
    /// model with a version loaded here, so a resume shows as a drop to 0 rather than a series
    /// that vanishes (which alerts and graphs cannot tell from a replica that stopped reporting).
    pub fn sample_paused(&self, served: &[std::sync::Arc<ServedVersion>], paused: &[String]) {
        self.paused.reset();
        for s in served {
            self.paused.with_label_values(&[s.model.as_str()]).set(0);
        }
        for model in paused {
            self.paused.with_label_values(&[model]).set(1);
        }
    }

    /// What a version's queue reports into, with its label values resolved once.
    pub fn version_observer(&self, model: &str, version: u64) -> VersionObserver {
        let version = version.to_string();
        let labels = [model, version.as_str()];
        let dropped = |reason: DropReason| {
            self.dropped
                .with_label_values(&[model, version.as_str(), reason.as_str()])
        };
        VersionObserver {
            compute: self.compute_duration.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
            queue_full: dropped(DropReason::QueueFull),
            timeout: dropped(DropReason::Timeout),
            client_gone: dropped(DropReason::ClientGone),
        }
    }

    pub fn observe_queue_wait(&self, model: &str, version: u64, wait: Duration) {
        self.queue_duration
            .with_label_values(&[model, &version.to_string()])
            .observe(wait.as_secs_f64());
    }

    /// Sample the queue depth and instance gauges of the versions loaded now (at scrape time, so
    /// versions that left stop being reported).
    pub fn sample_queues(&self, served: &[std::sync::Arc<ServedVersion>]) {
        self.queue_depth.reset();
        self.instances.reset();
        for s in served {
            let labels = [s.model.as_str(), &s.version.to_string()];
            self.queue_depth
                .with_label_values(&labels)
                .set(s.queue.depth() as i64);
            self.instances
                .with_label_values(&labels)
                .set(s.queue.instances() as i64);
        }
    }

    pub fn observe_prediction(
        &self,
        model: &str,
        version: u64,
        protocol: &str,
        outcome: &str,
        seconds: f64,
    ) {
        let version = version.to_string();
        self.predictions
            .with_label_values(&[model, &version, protocol, outcome])
            .inc();
        if outcome == "ok" {
            self.prediction_duration
                .with_label_values(&[model, &version])
                .observe(seconds);
        }
    }

    pub fn observe_drift(&self, model: &str, version: u64, feature: &str, detector: &str) {
        let version = version.to_string();
        self.drift_events
            .with_label_values(&[model, &version, feature, detector])
            .inc();
    }

    pub fn observe_webhook_failure(&self) {
        self.webhook_failures.inc();
    }

    pub fn observe_deploy(&self, outcome: &str) {
        self.deploys.with_label_values(&[outcome]).inc();
    }

    /// Set the per-model loaded-version gauges from the registry's current contents.
    pub fn set_loaded(&self, loaded: &[(String, u64)]) {
        self.versions_loaded.reset();
        for (model, _) in loaded {
            self.versions_loaded.with_label_values(&[model]).inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Batch metrics of one version, fed by its queue's threads.
pub struct VersionObserver {
    compute: Histogram,
    batch_size: Histogram,
    queue_full: IntCounter,
    timeout: IntCounter,
    client_gone: IntCounter,
}

impl BatchObserver for VersionObserver {
    fn batch_ran(&self, rows: usize, _requests: usize, compute: Duration) {
        self.compute.observe(compute.as_secs_f64());
        self.batch_size.observe(rows as f64);
    }

    fn dropped(&self, reason: DropReason) {
        match reason {
            DropReason::QueueFull => self.queue_full.inc(),
            DropReason::Timeout => self.timeout.inc(),
            DropReason::ClientGone => self.client_gone.inc(),
        }
    }
}
