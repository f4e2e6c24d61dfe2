//! Predict against the default version or a given one.

use actix_web::{web, HttpRequest};

use crate::api::{PredictRequest, PredictResponse};
use crate::auth::{Authorized, Predict};
use crate::error::{ApiError, ErrorBody};
use crate::models::PredictInput;
use crate::server::AppState;

fn input(body: PredictRequest, req: &HttpRequest) -> PredictInput {
    PredictInput {
        instances: body.instances,
        records: body.records,
        shape: body.shape,
        drift: body.drift,
        client: crate::client::probe(req),
    }
}

/// Predict with the default version (the newest deployed).
#[utoipa::path(post, path = "/v1/models/{name}/predict", security(("bearer" = ["predictor"])), tag = "predict",
    params(("name" = String, Path, description = "Model name")),
    request_body = PredictRequest,
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "No deployed version", body = ErrorBody),
        (status = 413, description = "Body over the predict limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Input does not fit the model", body = ErrorBody),
        (status = 503, description = "Deployed but not loaded here yet", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn predict_default(
    _auth: Authorized<Predict>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<PredictRequest>,
    req: HttpRequest,
) -> Result<web::Json<PredictResponse>, ApiError> {
    let output = state
        .models
        .predict(&name, None, input(body.into_inner(), &req))
        .await?;
    Ok(web::Json(output.into()))
}

/// Predict with one version.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/predict", security(("bearer" = ["predictor"])), tag = "predict",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    request_body = PredictRequest,
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 409, description = "Version not deployed", body = ErrorBody),
        (status = 413, description = "Body over the predict limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Input does not fit the model", body = ErrorBody),
        (status = 503, description = "Deployed but not loaded here yet", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn predict_version(
    _auth: Authorized<Predict>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    body: web::Json<PredictRequest>,
    req: HttpRequest,
) -> Result<web::Json<PredictResponse>, ApiError> {
    let (name, version) = path.into_inner();
    let output = state
        .models
        .predict(&name, Some(version), input(body.into_inner(), &req))
        .await?;
    Ok(web::Json(output.into()))
}
