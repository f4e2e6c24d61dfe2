//! Reading, redeploying, undeploying and deleting models and versions.

use actix_web::{web, HttpResponse};

use crate::http::api::{
    CreateModelRequest, DriftEvent, DriftEventList, DriftInfo, DriftQuery, ModelInfo, ModelList,
    RedeployRequest, ServiceInfo, VersionInfo, VersionList,
};
use crate::http::auth::Authorized;
use crate::http::error::{ErrorBody, ServiceError};
use crate::http::json::Json;
use crate::http::AppState;
use crate::services::actions::{ActionRequest, ServiceAction};
use crate::services::auth::{Deploy, Read};
use crate::services::distributions::{version_distribution, DriftDistribution};
use crate::services::models::{DeployRequest, DeploySource, Placement};
use crate::store::VersionRecord;

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/models")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(resource("/v1/models/{name}/actions").route(web::get().to(actions)))
    .service(resource("/v1/models/{name}/actions/{action}").route(web::post().to(act)))
    .service(
        resource("/v1/models/{name}")
            .route(web::get().to(get))
            .route(web::delete().to(delete_model)),
    )
    .service(
        resource("/v1/models/{name}/versions")
            .route(web::get().to(versions))
            .route(web::post().to(super::deploy::deploy)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}")
            .route(web::get().to(version))
            .route(web::delete().to(delete_version)),
    )
    .service(resource("/v1/models/{name}/drift").route(web::get().to(drift_events)))
    .service(
        resource("/v1/models/{name}/versions/{version}/drift/distribution")
            .route(web::get().to(drift_distribution)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/deploy").route(web::post().to(redeploy)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/undeploy").route(web::post().to(undeploy)),
    );
}

fn info(state: &AppState, record: &VersionRecord, default: Option<u64>) -> VersionInfo {
    VersionInfo::new(
        record,
        default,
        state.models.load_status(&record.model, record.version),
    )
}

async fn version_info(
    state: &AppState,
    record: &VersionRecord,
) -> Result<VersionInfo, ServiceError> {
    let default = state.models.model(&record.model).await?.default_version();
    Ok(info(state, record, default))
}

/// List models with their versions and default version.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", security(("bearer" = ["viewer"])), tag = "models",
    responses((status = 200, body = ModelList), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn list(
    auth: Authorized<Read>,
    state: web::Data<AppState>,
) -> Result<web::Json<ModelList>, ServiceError> {
    let models = state.models.models().await?;
    // A key limited to some models sees only those.
    let visible = models
        .iter()
        .filter(|m| auth.principal.may_use_model(&m.name));
    Ok(web::Json(ModelList {
        models: visible.map(ModelInfo::from).collect(),
    }))
}

/// One model: its versions, their states, and the default version.
#[utoipa::path(get, path = "/v1/models/{name}", operation_id = "get_model", security(("bearer" = ["viewer"])), tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = ModelInfo), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn get(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<ModelInfo>, ServiceError> {
    Ok(web::Json(ModelInfo::from(
        &state.models.model(&name).await?,
    )))
}

/// Every version of a model in full.
#[utoipa::path(get, path = "/v1/models/{name}/versions", security(("bearer" = ["viewer"])), tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn versions(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<VersionList>, ServiceError> {
    let model = state.models.model(&name).await?;
    let default = model.default_version();
    Ok(web::Json(VersionList {
        name: model.name.clone(),
        default_version: default,
        versions: model
            .versions
            .iter()
            .map(|v| info(&state, v, default))
            .collect(),
    }))
}

/// One version's metadata: inputs, outputs, shapes, backend, size, sha256, state.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", security(("bearer" = ["viewer"])), tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    responses((status = 200, body = VersionInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn version(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<web::Json<VersionInfo>, ServiceError> {
    let (name, version) = path.into_inner();
    Ok(web::Json(full_version_info(&state, &name, version).await?))
}

/// A version's metadata with its drift baseline.
pub async fn full_version_info(
    state: &AppState,
    name: &str,
    version: u64,
) -> Result<VersionInfo, ServiceError> {
    let model = state.models.model(name).await?;
    let record = state.models.version(name, version).await?;
    let mut info = info(state, &record, model.default_version());
    info.drift = state
        .models
        .version_drift(name, version)
        .await?
        .as_deref()
        .map(DriftInfo::from);
    Ok(info)
}

/// Drift events of a model, newest first.
#[utoipa::path(get, path = "/v1/models/{name}/drift", tag = "drift", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name"), DriftQuery),
    responses((status = 200, body = DriftEventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn drift_events(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    query: web::Query<DriftQuery>,
) -> Result<web::Json<DriftEventList>, ServiceError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .models
        .drift_events(&name, query.version, limit)
        .await?;
    Ok(web::Json(DriftEventList {
        events: events.iter().map(DriftEvent::from).collect(),
    }))
}

/// Query of the drift distribution.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DistributionQuery {
    /// Histogram bins per feature, 1 to 200 (default 20).
    pub bins: Option<usize>,
}

/// Per feature, the version's drift baseline against the values it scored recently: the same
/// bin edges for both (spanning both), counts per bin, and the 5th/25th/50th/75th/95th
/// percentiles. The recent values are the last rows (at most `window`) that this replica scored
/// with a drift check, kept in memory: none yet (`recent_rows` 0, empty recent summaries) after a
/// start or before the first drift-checked predict.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/drift/distribution", tag = "drift", security(("bearer" = ["viewer"])),
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number"), DistributionQuery),
    responses((status = 200, body = DriftDistribution),
        (status = 400, description = "Unknown query parameter, or a version that is not a number", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody),
        (status = 403, description = "Model scope too narrow", body = ErrorBody),
        (status = 404, description = "`model_not_found`, `version_not_found`, or `baseline_not_found` (the version has no drift baseline)", body = ErrorBody),
        (status = 422, description = "`invalid_argument`: `bins` out of range", body = ErrorBody)))]
pub async fn drift_distribution(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    query: web::Query<DistributionQuery>,
) -> Result<web::Json<DriftDistribution>, ServiceError> {
    let (name, version) = path.into_inner();
    Ok(web::Json(
        version_distribution(
            &state.models,
            &state.inference.recent,
            &name,
            version,
            query.bins,
        )
        .await?,
    ))
}

/// Serve a kept version again. By default it becomes the only deployed version (a rollback);
/// with `{"append": true}` the deployed versions keep serving beside it.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/deploy", security(("bearer" = ["deployer"])), tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    request_body(content = Option<RedeployRequest>, content_type = "application/json", example = json!({"append": false})),
    responses((status = 200, body = VersionInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn redeploy(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    body: web::Bytes,
) -> Result<web::Json<VersionInfo>, ServiceError> {
    let (name, version) = path.into_inner();
    let options: RedeployRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedeployRequest::default()
    } else {
        crate::http::json::from_slice(&body).map_err(|e| {
            ServiceError::new(
                e.kind,
                format!(
                    "{}; the body must be empty or like {{\"append\": false}}",
                    e.message
                ),
            )
        })?
    };
    let record = state
        .models
        .deploy(DeployRequest {
            model: name,
            source: DeploySource::Kept(version),
            placement: Placement::from_append(options.append),
        })
        .await?;
    Ok(web::Json(version_info(&state, &record).await?))
}

/// Stop serving a version; it is kept and can be deployed again.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/undeploy", security(("bearer" = ["deployer"])), tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    responses((status = 200, body = VersionInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn undeploy(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<web::Json<VersionInfo>, ServiceError> {
    let (name, version) = path.into_inner();
    let record = state.models.undeploy(&name, version).await?;
    Ok(web::Json(version_info(&state, &record).await?))
}

/// Delete a version and its file. Its number is never reused.
#[utoipa::path(delete, path = "/v1/models/{name}/versions/{version}", security(("bearer" = ["deployer"])), tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn delete_version(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ServiceError> {
    let (name, version) = path.into_inner();
    state.models.delete_version(&name, version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Delete a model with all its versions and files.
#[utoipa::path(delete, path = "/v1/models/{name}", security(("bearer" = ["deployer"])), tag = "models",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn delete_model(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ServiceError> {
    state.models.delete_model(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Create a model with no version yet (service state `created`); upload versions to it next.
#[utoipa::path(post, path = "/v1/models", security(("bearer" = ["deployer"])), tag = "models",
    request_body = CreateModelRequest,
    responses((status = 201, body = ModelInfo), (status = 409, description = "The model exists", body = ErrorBody),
        (status = 422, description = "Invalid name", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role too narrow, or an API key limited to other models", body = ErrorBody)))]
pub async fn create(
    auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    body: Json<CreateModelRequest>,
) -> Result<HttpResponse, ServiceError> {
    // The name is in the body, not the path: the scope is checked here, before the store can
    // answer 409 and tell a key that a model outside its scope exists.
    auth.principal.require::<Deploy>(Some(&body.name))?;
    let model = state.models.create_model(&body.name).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/models/{}", model.name)))
        .json(ModelInfo::from(&model)))
}

/// The model's service state and the actions it allows now.
#[utoipa::path(get, path = "/v1/models/{name}/actions", security(("bearer" = ["viewer"])), tag = "actions",
    params(("name" = String, Path, description = "Model name")),
    responses((status = 200, body = ServiceInfo), (status = 404, body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn actions(
    _auth: Authorized<Read>,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<ServiceInfo>, ServiceError> {
    Ok(web::Json(ServiceInfo::from(
        &state.models.model(&name).await?,
    )))
}

/// Run a service action: `deploy` (serve a kept version again, the newest by default), `update`
/// (serving options, drift settings), `pause` (predicts answer 503 `model_paused`), `resume`,
/// `finish` (undeploy every version, keep the history). 409 when the state does not allow it.
#[utoipa::path(post, path = "/v1/models/{name}/actions/{action}", operation_id = "act_on_model", security(("bearer" = ["deployer"])), tag = "actions",
    params(("name" = String, Path, description = "Model name"), ("action" = String, Path, description = "deploy, update, pause, resume or finish")),
    request_body(content = Option<ActionRequest>, description = "Optional; `version`/`append` for deploy, `serving`/`drift`/`log_predictions`/`retrain_workflow` for update", example = json!({"log_predictions": true})),
    responses((status = 200, body = ServiceInfo), (status = 400, description = "Unknown action or malformed body", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not allowed in the model's state", body = ErrorBody),
        (status = 422, description = "Invalid options", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn act(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<web::Json<ServiceInfo>, ServiceError> {
    let (name, action) = path.into_inner();
    let action = ServiceAction::parse(&action)?;
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        ActionRequest::default()
    } else {
        crate::http::json::from_slice::<ActionRequest>(&body)?
    };
    let model = state.models.act(&name, action, request).await?;
    Ok(web::Json(ServiceInfo::from(&model)))
}
