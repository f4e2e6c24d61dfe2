//! Prometheus metrics, all under the `maas_` prefix, with units in their names. HTTP metrics are
//! labelled by route template, never by raw path; model labels only ever name deployed models.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets for every histogram, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    predictions: IntCounterVec,
    prediction_duration: HistogramVec,
    versions_loaded: IntGaugeVec,
    deploys: IntCounterVec,
    drift_events: IntCounterVec,
    webhook_failures: prometheus::IntCounter,
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
        let predictions = IntCounterVec::new(
            Opts::new(
                "maas_predictions_total",
                "Predict requests by model, version and outcome.",
            ),
            &["model", "version", "outcome"],
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
        registry.register(Box::new(predictions.clone()))?;
        registry.register(Box::new(prediction_duration.clone()))?;
        registry.register(Box::new(versions_loaded.clone()))?;
        registry.register(Box::new(deploys.clone()))?;
        registry.register(Box::new(drift_events.clone()))?;
        registry.register(Box::new(webhook_failures.clone()))?;
        registry.register(Box::new(build_info))?;
        Ok(Metrics {
            registry,
            http_requests,
            http_duration,
            predictions,
            prediction_duration,
            versions_loaded,
            deploys,
            drift_events,
            webhook_failures,
        })
    }

    pub fn observe_prediction(&self, model: &str, version: u64, outcome: &str, seconds: f64) {
        let version = version.to_string();
        self.predictions
            .with_label_values(&[model, &version, outcome])
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

/// Count and time every HTTP request by its route template.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        let status = response.status().as_u16().to_string();
        metrics
            .http_requests
            .with_label_values(&[&method, &route, &status])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[&method, &route])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(response)
}
