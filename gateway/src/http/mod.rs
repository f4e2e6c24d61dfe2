//! HTTP routes. Handlers are adapters: extract, call one service function, map the result.
//! Each route is one resource with its methods, so a wrong method gets a JSON 405.

pub mod api;
pub mod auth;
pub mod client;
pub mod connections;
pub mod console;
pub mod error;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;

use routes::auth as auth_routes;
use routes::{admin, deploy, health, jobs, models, predict, v2};

use actix_web::{web, HttpRequest, HttpResponse};

use crate::http::error::{ErrorKind, ServiceError};

impl AppState {
    /// Largest Open Inference Protocol request body.
    pub fn v2_limit(&self) -> usize {
        usize::try_from(self.settings.limits.max_predict_bytes).unwrap_or(usize::MAX)
    }
}

/// What every handler can reach.
pub struct AppState {
    pub models: std::sync::Arc<crate::services::models::ModelService>,
    /// The one inference pipeline every protocol's predict goes through.
    pub inference: crate::services::inference::Inference,
    pub settings: crate::settings::Settings,
    /// Fetches `model_url`, `baseline_url` and `training_data_url` under `limits`' URL policy.
    pub fetcher: crate::services::fetch::UrlFetcher,
    /// Where each request's spans go.
    pub telemetry: crate::services::telemetry::Telemetry,
}

/// A route's resource: a wrong method on it gets a JSON 405, and its HTTP metrics are labelled
/// with `path`.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    scoped_resource("", path)
}

/// A route's resource inside the scope at `prefix`.
pub(crate) fn scoped_resource(prefix: &str, path: &str) -> actix_web::Resource {
    web::resource(path.to_owned())
        .app_data(metrics::RouteStats::new(format!("{prefix}{path}")))
        .default_service(web::to(method_not_allowed))
}

/// Register every route group; `predict_json` is the body limit of the predict routes.
pub fn configure(
    cfg: &mut web::ServiceConfig,
    predict_json: web::JsonConfig,
    v2_json_limit: usize,
) {
    // actix tries resources in the order they are registered, and each pattern with a `{…}`
    // segment costs a regex run (for routing, and again when the metrics middleware asks for the
    // matched pattern): the predict routes come first, so the hot path matches at once.
    predict::configure(cfg, predict_json);
    cfg.service(web::resource("/docs").route(web::get().to(docs_redirect)));
    health::configure(cfg);
    v2::configure(cfg, v2_json_limit);
    admin::configure(cfg);
    jobs::configure(cfg);
    auth_routes::configure(cfg);
    models::configure(cfg);
    deploy::configure(cfg);
}

/// Swagger UI lives at `/docs/`; `/docs` is what people type.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

async fn method_not_allowed(req: HttpRequest) -> ServiceError {
    ServiceError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
}

pub async fn not_found(req: HttpRequest) -> ServiceError {
    ServiceError::new(
        ErrorKind::RouteNotFound,
        format!("no route {} {}", req.method(), req.path()),
    )
}

/// CSV text: a header row, then one row per item (cells already rendered as text).
pub fn csv_table(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<String, ServiceError> {
    let failed = |e: &dyn std::fmt::Display| ServiceError::internal(format!("writing CSV: {e}"));
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header).map_err(|e| failed(&e))?;
    for row in rows {
        writer.write_record(&row).map_err(|e| failed(&e))?;
    }
    let bytes = writer.into_inner().map_err(|e| failed(&e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A CSV export, offered as a download.
pub fn csv_attachment(text: String, file_name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{file_name}\""),
        ))
        .body(text)
}
