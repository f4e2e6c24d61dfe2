//! Gateway administration: runtime settings and the audit trail.

use actix_web::{web, HttpResponse};

use crate::api::Listing;
use crate::audit::{AuditFilter, AuditPage, AuditQuery};
use crate::auth::{Admin, Authenticator, Authorized};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::runtime::{self, RuntimeSettings, SettingsPatch};

/// The runtime settings: debug logging and tracing (the audit trail).
#[utoipa::path(get, path = "/v1/settings", security(("bearer" = ["admin"])), tag = "admin",
    responses((status = 200, body = RuntimeSettings), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Not an admin", body = ErrorBody)))]
pub async fn settings(
    _auth: Authorized<Admin>,
    authn: web::Data<Authenticator>,
) -> Result<web::Json<RuntimeSettings>, ApiError> {
    Ok(web::Json(authn.store.runtime_settings().await?))
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
    body: web::Json<SettingsPatch>,
) -> Result<web::Json<RuntimeSettings>, ApiError> {
    let before = authn.store.runtime_settings().await?;
    let after = before.patched(&body);
    authn.store.put_runtime_settings(before, after).await?;
    apply(&authn.store, after);
    tracing::info!(
        debug = after.debug,
        trace = after.trace,
        "runtime settings changed"
    );
    Ok(web::Json(after))
}

/// Make runtime settings take effect on this process.
pub fn apply(store: &crate::store::SqlStore, settings: RuntimeSettings) {
    runtime::apply_debug(settings.debug);
    store.audit().set(settings.trace);
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
) -> Result<HttpResponse, ApiError> {
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
    let (events, total) = authn.store.audit_events(&filter).await?;
    if listing.csv {
        let text = crate::audit::to_csv(&events)
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        return Ok(super::csv_attachment(text, "maas-audit.csv"));
    }
    Ok(HttpResponse::Ok().json(AuditPage { events, total }))
}
