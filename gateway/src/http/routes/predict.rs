//! Predict against the default version or a given one.

use actix_web::{web, HttpRequest, HttpResponse};
use maas_serving::io;
use maas_serving::{ServedVersion, Tensor};
use serde_json::{json, Map, Value};

use crate::http::api::{Listing, PredictRequest, PredictResponse};
use crate::http::auth::Authorized;
use crate::http::error::{ErrorBody, ErrorKind, ServiceError};
use crate::http::AppState;
use crate::services::auth::{Deploy, Predict, Principal};
use crate::services::drift::DriftResult;
use crate::services::inference::{Call, Codec};
use crate::services::predictions::PredictionRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig, predict_json: web::JsonConfig) {
    cfg.service(
        resource("/v1/models/{name}/predict")
            .app_data(predict_json.clone())
            .route(web::post().to(predict_default)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/predict")
            .app_data(predict_json)
            .route(web::post().to(predict_version)),
    )
    .service(
        resource("/v1/models/{name}/versions/{version}/predictions").route(web::get().to(saved)),
    );
}

/// The v1 codec: `instances` (rows, or values with a `shape`) or `records` (objects keyed by
/// feature name) in; labels, probabilities and other outputs out.
struct V1Codec {
    instances: Option<Value>,
    records: Option<Vec<Map<String, Value>>>,
    shape: Option<Vec<usize>>,
    /// A column of `records` that is not a feature (the label of labelled rows): dropped from
    /// each record before scoring.
    label_column: Option<String>,
    /// Rows in the request, known once decoded.
    batch: usize,
}

impl Codec for V1Codec {
    type Answer = PredictResponse;

    fn decode(
        &mut self,
        served: &ServedVersion,
        log: bool,
    ) -> Result<(Vec<Tensor>, Option<Value>), ServiceError> {
        let spec = io::single_input(served)?;
        let logged = log.then(
            || json!({"instances": self.instances, "records": self.records, "shape": self.shape}),
        );
        if self.label_column.is_some() && self.records.is_none() {
            return Err(ServiceError::new(
                ErrorKind::InvalidInput,
                "`label_column` goes with `records`, not `instances`",
            ));
        }
        let tensor = match (self.instances.take(), self.records.take()) {
            (Some(instances), None) => {
                io::instances_tensor(spec, &instances, self.shape.as_deref())?
            }
            (None, Some(records)) => {
                if self.shape.is_some() {
                    return Err(ServiceError::new(
                        ErrorKind::InvalidInput,
                        "`shape` goes with `instances`, not `records`",
                    ));
                }
                let features = served.meta.feature_names.as_deref();
                let mut records = records;
                if let Some(label) = &self.label_column {
                    if features.is_some_and(|f| f.contains(label)) {
                        return Err(ServiceError::new(
                            ErrorKind::InvalidInput,
                            format!(
                                "`label_column` '{label}' is one of the model's features; name the label column"
                            ),
                        ));
                    }
                    for record in &mut records {
                        record.remove(label);
                    }
                }
                io::records_tensor(spec, features, &records)?
            }
            (Some(_), Some(_)) => {
                return Err(ServiceError::new(
                    ErrorKind::InvalidInput,
                    "send either `instances` or `records`, not both",
                ))
            }
            (None, None) => return Err(ServiceError::new(
                ErrorKind::InvalidInput,
                "send `instances` (rows of values) or `records` (objects keyed by feature name)",
            )),
        };
        self.batch = tensor.shape.first().copied().unwrap_or(1);
        Ok((vec![tensor], logged))
    }

    fn encode(
        self,
        served: &ServedVersion,
        outputs: Vec<Tensor>,
        drift: Option<DriftResult>,
        log: bool,
    ) -> Result<(PredictResponse, Option<Value>), ServiceError> {
        let rendered = io::render_outputs(served, self.batch, outputs)?;
        let response = PredictResponse {
            model: served.model.clone(),
            version: served.version,
            predictions: rendered.predictions,
            probabilities: rendered.probabilities,
            outputs: rendered.outputs,
            drift,
        };
        let logged = log.then(|| {
            json!({
                "predictions": response.predictions,
                "probabilities": response.probabilities.as_ref().map(io::Rows::to_value),
                "outputs": response.outputs,
            })
        });
        Ok((response, logged))
    }
}

/// Run a predict through the inference pipeline.
async fn run(
    state: &AppState,
    principal: &Principal,
    name: &str,
    version: Option<u64>,
    body: PredictRequest,
    req: &HttpRequest,
) -> Result<PredictResponse, ServiceError> {
    let call = Call {
        model: name.to_owned(),
        version,
        codec: V1Codec {
            instances: body.instances,
            records: body.records,
            shape: body.shape,
            label_column: body.label_column,
            batch: 0,
        },
        drift: body.drift,
        save: body.save,
        actor: principal.username.clone(),
        client: crate::http::client::probe(req),
        protocol: crate::services::inference::Protocol::RestV1,
    };
    Ok(state.inference.run(call).await?.answer)
}

/// Predict with the default version (the newest deployed).
#[utoipa::path(post, path = "/v1/models/{name}/predict", security(("bearer" = ["predictor"])), tag = "predict",
    params(("name" = String, Path, description = "Model name", example = "iris")),
    request_body(content = PredictRequest, example = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})),
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 409, description = "No deployed version", body = ErrorBody),
        (status = 413, description = "Body over the predict limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Input does not fit the model", body = ErrorBody),
        (status = 429, description = "The version's queue is full (`queue_full`); retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Paused (`model_paused`), deployed but not loaded here yet (`version_unavailable`), or waited in the queue too long (`queue_timeout`)", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn predict_default(
    auth: Authorized<Predict>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<crate::http::json::Object<PredictRequest>>,
    req: HttpRequest,
) -> Result<web::Json<PredictResponse>, ServiceError> {
    let response = run(
        &state,
        &auth.principal,
        &name,
        None,
        body.into_inner().0,
        &req,
    )
    .await?;
    Ok(web::Json(response))
}

/// Predict with one version.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/predict", security(("bearer" = ["predictor"])), tag = "predict",
    params(("name" = String, Path, description = "Model name", example = "iris"), ("version" = u64, Path, description = "Version number", example = 1)),
    request_body(content = PredictRequest, example = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})),
    responses(
        (status = 200, body = PredictResponse),
        (status = 400, description = "Malformed JSON or path", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 409, description = "Version not deployed", body = ErrorBody),
        (status = 413, description = "Body over the predict limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Input does not fit the model", body = ErrorBody),
        (status = 429, description = "The version's queue is full (`queue_full`); retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Paused (`model_paused`), deployed but not loaded here yet (`version_unavailable`), or waited in the queue too long (`queue_timeout`)", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn predict_version(
    auth: Authorized<Predict>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    body: web::Json<crate::http::json::Object<PredictRequest>>,
    req: HttpRequest,
) -> Result<web::Json<PredictResponse>, ServiceError> {
    let (name, version) = path.into_inner();
    let response = run(
        &state,
        &auth.principal,
        &name,
        Some(version),
        body.into_inner().0,
        &req,
    )
    .await?;
    Ok(web::Json(response))
}

/// Saved predictions of one version, newest first: inputs, outputs, caller, latency and drift
/// flags. `since`/`until` (RFC 3339) filter by time; `limit` (default 100, at most 1000) and
/// `offset` page; `format=csv` exports every match (up to 100,000).
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/predictions", security(("bearer" = ["deployer"])), tag = "predict",
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number"), PredictionQuery),
    responses((status = 200, body = PredictionPage, description = "JSON, or CSV with format=csv"),
        (status = 400, description = "Unknown query parameter", body = ErrorBody), (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 422, description = "Bad time, limit or format", body = ErrorBody),
        (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody)))]
pub async fn saved(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    query: web::Query<PredictionQuery>,
) -> Result<HttpResponse, ServiceError> {
    let (name, version) = path.into_inner();
    let query = query.into_inner();
    let listing = Listing::parse(
        query.format.as_deref(),
        query.limit,
        query.offset,
        query.since.as_deref(),
        query.until.as_deref(),
    )?;
    let (predictions, total) = state
        .models
        .saved_predictions(
            &name,
            version,
            (listing.since_us, listing.until_us),
            listing.limit,
            listing.offset,
        )
        .await?;
    if listing.csv {
        let text = predictions_csv(&predictions)?;
        let file = format!("{name}-v{version}-predictions.csv");
        return Ok(crate::http::csv_attachment(text, &file));
    }
    Ok(HttpResponse::Ok().json(PredictionPage { predictions, total }))
}

/// A page of saved predictions, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PredictionPage {
    pub predictions: Vec<PredictionRecord>,
    /// Records matching the filters in all.
    pub total: u64,
}

/// Filters of the predictions route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PredictionQuery {
    /// RFC 3339 lower bound (inclusive).
    pub since: Option<String>,
    /// RFC 3339 upper bound (exclusive).
    pub until: Option<String>,
    /// Page size, 1 to 1000 (default 100; CSV: every match up to 100,000).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Records as CSV, JSON columns as JSON text.
fn predictions_csv(records: &[PredictionRecord]) -> Result<String, ServiceError> {
    let header = [
        "at",
        "model",
        "version",
        "actor",
        "request_id",
        "latency_us",
        "inputs",
        "outputs",
        "drift",
        "id",
    ];
    crate::http::csv_table(
        &header,
        records.iter().map(|r| {
            vec![
                r.at.clone(),
                r.model.clone(),
                r.version.to_string(),
                r.actor.clone(),
                r.request_id.clone(),
                r.latency_us.to_string(),
                r.inputs.to_string(),
                r.outputs.to_string(),
                r.drift
                    .as_ref()
                    .map(serde_json::Value::to_string)
                    .unwrap_or_default(),
                r.id.clone(),
            ]
        }),
    )
}
