//! Gateway administration: runtime settings and the audit trail.

use actix_web::{web, HttpResponse};

use crate::http::api::Listing;
use crate::http::auth::Authorized;
use crate::http::error::{ErrorBody, ServiceError};
use crate::http::json::Json;
use crate::services::auth::{Admin, Authenticator};
use crate::services::runtime::{self, RuntimeSettings, SettingsPatch};
use crate::store::audit::{AuditEvent, AuditFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/settings")
            .route(web::get().to(settings))
            .route(web::patch().to(update_settings)),
    )
    .service(resource("/v1/audit").route(web::get().to(audit)));
}

/// The runtime settings: debug logging and tracing (the audit trail).
#[utoipa::path(get, path = "/v1/settings", security(("bearer" = ["admin"])), tag = "admin",
    responses((status = 200, body = RuntimeSettings), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn settings(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
) -> Result<web::Json<RuntimeSettings>, ServiceError> {
    Ok(web::Json(runtime::current(&authn.store).await?))
}

/// Change runtime settings (`{"debug": true}`, `{"trace": false}`); they apply at once here,
/// on other replicas within `serving.sync_interval_ms`, and survive restarts. The change is
/// recorded in the audit trail even when it turns tracing off.
#[utoipa::path(patch, path = "/v1/settings", security(("bearer" = ["admin"])), tag = "admin",
    request_body = SettingsPatch,
    responses((status = 200, body = RuntimeSettings), (status = 400, description = "Malformed JSON or unknown field", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: nothing was changed", body = ErrorBody)))]
pub async fn update_settings(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    body: Json<SettingsPatch>,
) -> Result<web::Json<RuntimeSettings>, ServiceError> {
    let after = runtime::change(&authn.store, &body).await?;
    Ok(web::Json(after))
}

/// The audit trail, newest first: every change with its time, actor, client address, request
/// id, model and version, and details. Filters: `actor`, `model`, `kind`, `since`, `until`
/// (RFC 3339); pages with `limit` (default 100, at most 1000) and `offset`; `format=csv`
/// exports every matching event (up to 100,000) as CSV.
#[utoipa::path(get, path = "/v1/audit", security(("bearer" = ["admin"])), tag = "admin",
    params(AuditQuery),
    responses((status = 200, body = AuditPage, description = "JSON, or CSV with format=csv"),
        (status = 400, description = "Unknown query parameter", body = ErrorBody), (status = 422, description = "Bad time or limit", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn audit(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ServiceError> {
    let query = query.into_inner();
    let listing = Listing::parse(
        query.format.as_deref(),
        query.limit,
        query.offset,
        query.since.as_deref(),
        query.until.as_deref(),
    )?;
    let filter = AuditFilter {
        actor: query.actor,
        model: query.model,
        kind: query.kind,
        since_us: listing.since_us,
        until_us: listing.until_us,
        limit: listing.limit,
        offset: listing.offset,
    };
    let (events, total) = crate::services::audit::events(&authn.store, &filter).await?;
    if listing.csv {
        let text = audit_csv(&events)?;
        return Ok(crate::http::csv_attachment(text, "maas-audit.csv"));
    }
    Ok(HttpResponse::Ok().json(AuditPage { events, total }))
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub model: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<u32>,
    /// Events to skip (newest first).
    pub offset: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Events matching the filters in all.
    pub total: u64,
}

/// The events as CSV, one row each, details as JSON text.
fn audit_csv(events: &[AuditEvent]) -> Result<String, ServiceError> {
    let header = [
        "at",
        "actor",
        "client",
        "request_id",
        "kind",
        "model",
        "version",
        "details",
        "id",
    ];
    crate::http::csv_table(
        &header,
        events.iter().map(|e| {
            vec![
                e.at.clone(),
                e.actor.clone(),
                e.client.clone(),
                e.request_id.clone(),
                e.kind.clone(),
                e.model.clone().unwrap_or_default(),
                e.version.map(|v| v.to_string()).unwrap_or_default(),
                e.details.to_string(),
                e.id.clone(),
            ]
        }),
    )
}
