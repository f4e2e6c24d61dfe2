//! Liveness, readiness and the Prometheus scrape.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::api::HealthStatus;
use crate::http::auth::authorize;
use crate::http::error::{ErrorBody, ErrorKind, ServiceError};
use crate::http::AppState;
use crate::services::auth::{Authenticator, Read};
use crate::services::metrics::Metrics;

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health/live").route(web::get().to(live)))
        .service(resource("/health/ready").route(web::get().to(ready)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub async fn live() -> web::Json<HealthStatus> {
    web::Json(HealthStatus {
        status: "live".into(),
    })
}

/// Every deployed version has been loaded once, and the store answers and takes writes: send
/// traffic.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "`storage_unavailable`: starting, or the store is unreachable or refuses writes (read-only, full, no permission); the message says which", body = ErrorBody),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<web::Json<HealthStatus>, ServiceError> {
    crate::services::open_inference::server_ready(&state.models)
        .await
        .map_err(|e| ServiceError::new(ErrorKind::StorageUnavailable, e.message))?;
    Ok(web::Json(HealthStatus {
        status: "ready".into(),
    }))
}

/// Prometheus metrics in the text exposition format. Open unless `auth.protect_metrics` is set,
/// then a viewer bearer is needed.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(
    metrics: web::Data<Metrics>,
    auth: web::Data<Authenticator>,
    state: web::Data<AppState>,
    jobs: web::Data<crate::services::jobs::JobService>,
    req: HttpRequest,
) -> Result<HttpResponse, ServiceError> {
    if auth.protect_metrics {
        authorize::<Read>(&req).await?;
    }
    if let Err(e) = jobs.sample_metrics().await {
        // A scrape still answers with what it has; the job gauges keep their last values.
        tracing::warn!(error = %e, "cannot count jobs for the metrics");
    }
    let served = state.models.served_versions();
    metrics.sample_queues(&served);
    metrics.sample_paused(&served, &state.models.paused_models());
    let text = metrics
        .render()
        .map_err(|e| ServiceError::new(ErrorKind::Internal, e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
