//! Deploy a version from a multipart upload or a URL. The file is streamed to staging with the
//! size limit enforced as it arrives; nothing is recorded unless the backend loads it.

use actix_multipart::{Field, Multipart};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use maas_serving::StagedArtifact;

use crate::http::api::{DeployForm, VersionInfo};
use crate::http::auth::Authorized;
use crate::http::connections::until_form_stalls;
use crate::http::error::{ErrorBody, ErrorKind, ServiceError};
use crate::http::AppState;
use crate::services::auth::Deploy;
use crate::services::baseline::BaselineUpload;
use crate::services::drift::DriftSettings;
use crate::services::fetch::Fetched;
use crate::services::models::{
    validate_model_name, DeployRequest, DeploySource, Placement, Upload,
};
use maas_serving::ServingOptions;

use crate::http::resource;

/// Register this group's routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/v1/models/{name}/versions/{version}/baseline")
            .route(web::put().to(replace_baseline)),
    );
}

/// Largest text field of the form (class names of a big classifier fit comfortably).
const MAX_TEXT_FIELD: usize = 1024 * 1024;
const FIELDS: &str = "model, model_url, version, class_names, feature_names, append, serving, \
                      log_predictions, baseline, baseline_url, training_data, training_data_url, \
                      baseline_size, label_column, training_stats, drift";
/// The fields of a baseline update.
const BASELINE_FIELDS: &str = "baseline, baseline_url, training_data, training_data_url, \
                               baseline_size, label_column, training_stats, drift";

fn too_large(limit: u64) -> ServiceError {
    ServiceError::new(
        ErrorKind::PayloadTooLarge,
        format!("the model is larger than the limit of {limit} bytes (limits.max_model_bytes)"),
    )
}

fn cut_short(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::new(
        ErrorKind::InvalidRequest,
        format!("the upload was cut short or is not valid multipart: {e}"),
    )
}

fn stage_error(e: std::io::Error) -> ServiceError {
    ServiceError::new(
        crate::services::error::file_write_kind(&e),
        format!("cannot write the upload: {e}"),
    )
}

#[derive(Default)]
struct Form {
    staged: Option<(StagedArtifact, String)>,
    model_url: Option<String>,
    version: Option<String>,
    class_names: Option<String>,
    feature_names: Option<String>,
    append: Option<String>,
    serving: Option<String>,
    log_predictions: Option<String>,
    drift: DriftForm,
}

/// The drift part of a deploy form, also the whole of a baseline update.
#[derive(Default)]
struct DriftForm {
    baseline: Option<Vec<u8>>,
    baseline_url: Option<String>,
    training_data: Option<Vec<u8>>,
    training_data_url: Option<String>,
    baseline_size: Option<String>,
    label_column: Option<String>,
    training_stats: Option<String>,
    settings: Option<String>,
}

impl DriftForm {
    /// Read one field if it is a drift field; `Ok(false)` when it is not.
    async fn take(
        &mut self,
        name: &str,
        field: &mut Field,
        limit: u64,
    ) -> Result<bool, ServiceError> {
        let twice = || {
            ServiceError::new(
                ErrorKind::InvalidArgument,
                format!("the form has `{name}` twice"),
            )
        };
        match name {
            "baseline" | "training_data" => {
                let slot = if name == "baseline" {
                    &mut self.baseline
                } else {
                    &mut self.training_data
                };
                let named = field
                    .content_disposition()
                    .is_some_and(|d| d.get_filename().is_some());
                let bytes =
                    read_bytes(name, field, usize::try_from(limit).unwrap_or(usize::MAX)).await?;
                // An empty, nameless part is a file input left empty.
                if bytes.is_empty() && !named {
                    return Ok(true);
                }
                if slot.is_some() {
                    return Err(twice());
                }
                *slot = Some(bytes);
            }
            "baseline_size" | "label_column" | "drift" | "baseline_url" | "training_data_url"
            | "training_stats" => {
                let slot = match name {
                    "baseline_size" => &mut self.baseline_size,
                    "label_column" => &mut self.label_column,
                    "baseline_url" => &mut self.baseline_url,
                    "training_data_url" => &mut self.training_data_url,
                    "training_stats" => &mut self.training_stats,
                    _ => &mut self.settings,
                };
                let text = read_text(name, field).await?;
                if text.is_empty() {
                    return Ok(true);
                }
                if slot.is_some() {
                    return Err(twice());
                }
                *slot = Some(text);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The upload, with a `baseline_url` or `training_data_url` fetched (after every field is
    /// checked, so a bad form fetches nothing). One source of rows at most.
    async fn into_upload(self, state: &AppState) -> Result<BaselineUpload, ServiceError> {
        let sources: Vec<&str> = [
            ("baseline", self.baseline.is_some()),
            ("baseline_url", self.baseline_url.is_some()),
            ("training_data", self.training_data.is_some()),
            ("training_data_url", self.training_data_url.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect();
        if let [first, second, ..] = sources.as_slice() {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "send one of `baseline`, `baseline_url`, `training_data` or \
                     `training_data_url`, not both `{first}` and `{second}`"
                ),
            ));
        }
        let baseline_size = self
            .baseline_size
            .map(|t| {
                t.parse::<usize>().map_err(|_| {
                    ServiceError::new(
                        ErrorKind::InvalidArgument,
                        format!("`baseline_size` must be a positive integer, got '{t}'"),
                    )
                })
            })
            .transpose()?;
        let settings = self
            .settings
            .map(|t| {
                serde_json::from_str::<DriftSettings>(&t).map_err(|e| {
                    ServiceError::new(
                        ErrorKind::InvalidArgument,
                        format!("`drift` must be JSON drift settings: {e}"),
                    )
                })
            })
            .transpose()?;
        let training_stats = self
            .training_stats
            .map(|t| {
                serde_json::from_str::<serde_json::Value>(&t).map_err(|_| {
                    ServiceError::new(
                        ErrorKind::InvalidArgument,
                        "`training_stats` must be JSON: {\"feature\": {\"mean\": 5.8, \"std\": 0.8}, ...} \
                         or [[means...], [stds...]] in feature order",
                    )
                })
            })
            .transpose()?;
        let limit = state.settings.limits.max_model_bytes;
        let mut baseline_csv = self.baseline;
        if let Some(url) = &self.baseline_url {
            let mut bytes = Vec::new();
            state
                .fetcher
                .fetch(url, Fetched::Drift("baseline_url"), limit, &mut bytes)
                .await?;
            baseline_csv = Some(bytes);
        }
        let mut training_csv = self.training_data;
        if let Some(url) = &self.training_data_url {
            let mut bytes = Vec::new();
            state
                .fetcher
                .fetch(url, Fetched::Drift("training_data_url"), limit, &mut bytes)
                .await?;
            training_csv = Some(bytes);
        }
        Ok(BaselineUpload {
            baseline_csv,
            training_csv,
            baseline_size,
            label_column: self.label_column,
            training_stats,
            settings,
        })
    }
}

/// Deploy a new version (multipart form: `model` file or `model_url`, optional `version`,
/// `class_names`, `feature_names`, `append`, `serving`, `log_predictions`, and the drift fields).
/// The file must load and run before anything is recorded; a failed deploy leaves the previous
/// state serving.
#[utoipa::path(post, path = "/v1/models/{name}/versions", security(("bearer" = ["deployer"])), tag = "models",
    params(("name" = String, Path, description = "Model name", example = "iris")),
    request_body(content = DeployForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Deployed", body = VersionInfo),
        (status = 400, description = "Malformed or truncated form", body = ErrorBody),
        (status = 409, description = "Version number already used", body = ErrorBody),
        (status = 413, description = "Model over limits.max_model_bytes", body = ErrorBody),
        (status = 415, description = "Not multipart/form-data", body = ErrorBody),
        (status = 422, description = "Invalid model, name or field; `model_url_failed` or `baseline_url_failed` when a URL cannot be fetched", body = ErrorBody), (status = 401, description = "No valid bearer", body = ErrorBody), (status = 403, description = "Role or model scope too narrow", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: the data folder or the database is full, read-only or unreachable; nothing was recorded", body = ErrorBody)))]
pub async fn deploy(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ServiceError> {
    let name = name.into_inner();
    validate_model_name(&name)?;
    require_multipart(&req, FIELDS)?;
    let limit = state.settings.limits.max_model_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit.saturating_add(MAX_TEXT_FIELD as u64 * 8)) {
        return Err(too_large(limit));
    }

    let form = until_form_stalls(
        &req,
        read_form(&state, Multipart::new(req.headers(), payload), limit),
    )
    .await?;
    let (staged, source) = match (form.staged, form.model_url) {
        (Some(_), Some(_)) => {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                "send either `model` or `model_url`, not both",
            ))
        }
        (None, None) => {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!("the form has no `model` file and no `model_url` (fields: {FIELDS})"),
            ))
        }
        (Some(staged), None) => staged,
        (None, Some(url)) => {
            let mut staged = state.models.artifacts().stage().map_err(stage_error)?;
            state
                .fetcher
                .fetch(&url, Fetched::Model, limit, &mut staged)
                .await?;
            (staged, crate::store::redact::url(&url))
        }
    };
    let placement = Placement::from_append(
        form.append
            .as_deref()
            .map(|t| parse_bool("append", t))
            .transpose()?,
    );
    let log_predictions = form
        .log_predictions
        .as_deref()
        .map(|t| parse_bool("log_predictions", t))
        .transpose()?;
    let upload = Upload {
        staged,
        version: form.version.as_deref().map(parse_version).transpose()?,
        class_names: form
            .class_names
            .as_deref()
            .map(|t| parse_names("class_names", t))
            .transpose()?,
        feature_names: form
            .feature_names
            .as_deref()
            .map(|t| parse_names("feature_names", t))
            .transpose()?,
        source,
        drift: form.drift.into_upload(&state).await?,
        log_predictions,
        serving: form
            .serving
            .as_deref()
            .map(|t| parse_serving(&state, t))
            .transpose()?
            .unwrap_or_default(),
        client: crate::http::client::probe(&req),
    };
    let record = state
        .models
        .deploy(DeployRequest {
            model: name,
            source: DeploySource::Upload(Box::new(upload)),
            placement,
        })
        .await?;
    let default = state.models.model(&record.model).await?.default_version();
    let status = state.models.load_status(&record.model, record.version);
    let info = VersionInfo::new(&record, default, status);
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/v1/models/{}/versions/{}", record.model, record.version),
        ))
        .json(info))
}

async fn read_form(
    state: &AppState,
    mut multipart: Multipart,
    limit: u64,
) -> Result<Form, ServiceError> {
    let mut form = Form::default();
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(cut_short)?;
        let name = field.name().unwrap_or_default().to_owned();
        let slot = match name.as_str() {
            "model" => {
                if form.staged.is_some() {
                    return Err(ServiceError::new(
                        ErrorKind::InvalidArgument,
                        "the form has more than one `model` file",
                    ));
                }
                let given_name = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_owned);
                let staged = stream_field(state, &mut field, limit).await?;
                // A form's empty, nameless `model` (Swagger UI with no file chosen) is no file.
                if staged.size() > 0 || given_name.is_some() {
                    let file_name = given_name.unwrap_or_else(|| "model.onnx".into());
                    form.staged = Some((staged, format!("upload:{file_name}")));
                }
                continue;
            }
            drift_field if form.drift.take(drift_field, &mut field, limit).await? => continue,
            "model_url" => &mut form.model_url,
            "version" => &mut form.version,
            "class_names" => &mut form.class_names,
            "feature_names" => &mut form.feature_names,
            "append" => &mut form.append,
            "serving" => &mut form.serving,
            "log_predictions" => &mut form.log_predictions,
            other => {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown form field '{}'; fields: {FIELDS}",
                        other.chars().take(64).collect::<String>()
                    ),
                ))
            }
        };
        let text = read_text(&name, &mut field).await?;
        // An optional field left empty counts as absent, as forms (and Swagger UI) send them.
        if text.is_empty() {
            continue;
        }
        if slot.is_some() {
            return Err(ServiceError::new(
                ErrorKind::InvalidArgument,
                format!("the form has `{name}` twice"),
            ));
        }
        *slot = Some(text);
    }
    Ok(form)
}

async fn stream_field(
    state: &AppState,
    field: &mut Field,
    limit: u64,
) -> Result<StagedArtifact, ServiceError> {
    let mut staged = state.models.artifacts().stage().map_err(stage_error)?;
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(cut_short)?;
        if staged.size() + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        staged.write(&chunk).map_err(stage_error)?;
    }
    Ok(staged)
}

async fn read_bytes(name: &str, field: &mut Field, limit: usize) -> Result<Vec<u8>, ServiceError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(cut_short)?;
        if bytes.len() + chunk.len() > limit {
            return Err(ServiceError::new(
                ErrorKind::PayloadTooLarge,
                format!("`{name}` is larger than {limit} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn read_text(name: &str, field: &mut Field) -> Result<String, ServiceError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(cut_short)?;
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(ServiceError::new(
                ErrorKind::PayloadTooLarge,
                format!("`{name}` is longer than {MAX_TEXT_FIELD} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| {
            ServiceError::new(
                ErrorKind::InvalidArgument,
                format!("`{name}` is not UTF-8 text"),
            )
        })
}

fn parse_version(text: &str) -> Result<u64, ServiceError> {
    match text.parse::<u64>() {
        Ok(v) if v >= 1 && v <= i64::MAX as u64 => Ok(v),
        _ => Err(ServiceError::new(
            ErrorKind::InvalidArgument,
            format!("`version` must be a positive integer, got '{text}'"),
        )),
    }
}

fn parse_bool(field: &str, text: &str) -> Result<bool, ServiceError> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ServiceError::new(
            ErrorKind::InvalidArgument,
            format!("`{field}` must be true or false, got '{text}'"),
        )),
    }
}

/// The `serving` field: JSON serving options, checked against the limits before any load.
fn parse_serving(state: &AppState, text: &str) -> Result<ServingOptions, ServiceError> {
    let options: ServingOptions = serde_json::from_str(text).map_err(|e| {
        ServiceError::new(
            ErrorKind::InvalidArgument,
            format!(
                "`serving` must be JSON serving options, like {{\"backend\": \"auto\", \"max_batch_size\": 32}}: {e}"
            ),
        )
    })?;
    options.resolve(&state.settings.serving.defaults())?;
    Ok(options)
}

fn parse_names(field: &str, text: &str) -> Result<Vec<String>, ServiceError> {
    serde_json::from_str::<Vec<String>>(text).map_err(|_| {
        ServiceError::new(
            ErrorKind::InvalidArgument,
            format!("`{field}` must be a JSON array of strings, like [\"a\", \"b\"]"),
        )
    })
}

/// Replace the drift baseline of a version (multipart: `baseline`, `baseline_url`,
/// `training_data` or `training_data_url`, optional `baseline_size`, `label_column`,
/// `training_stats`, `drift` settings). Continuous drift state starts afresh.
#[utoipa::path(put, path = "/v1/models/{name}/versions/{version}/baseline", tag = "drift",
    security(("bearer" = ["deployer"])),
    params(("name" = String, Path, description = "Model name"), ("version" = u64, Path, description = "Version number")),
    request_body(content = DeployForm, content_type = "multipart/form-data", description = "Only the drift fields"),
    responses(
        (status = 200, description = "Replaced", body = VersionInfo),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid field or CSV; `baseline_url_failed` when a URL cannot be fetched", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: nothing was recorded", body = ErrorBody),
    ))]
pub async fn replace_baseline(
    _auth: Authorized<Deploy>,
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<web::Json<VersionInfo>, ServiceError> {
    let (name, version) = path.into_inner();
    require_multipart(&req, BASELINE_FIELDS)?;
    let limit = state.settings.limits.max_model_bytes;
    let mut multipart = Multipart::new(req.headers(), payload);
    let drift = until_form_stalls(&req, async {
        let mut drift = DriftForm::default();
        while let Some(field) = multipart.next().await {
            let mut field = field.map_err(cut_short)?;
            let field_name = field.name().unwrap_or_default().to_owned();
            if !drift.take(&field_name, &mut field, limit).await? {
                return Err(ServiceError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "unknown form field '{}'; fields: {BASELINE_FIELDS}",
                        field_name.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
        Ok(drift)
    })
    .await?;
    state
        .models
        .replace_baseline(&name, version, drift.into_upload(&state).await?)
        .await?;
    Ok(web::Json(
        super::models::full_version_info(&state, &name, version).await?,
    ))
}

fn require_multipart(req: &HttpRequest, fields: &str) -> Result<(), ServiceError> {
    let is_multipart = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if is_multipart {
        Ok(())
    } else {
        Err(ServiceError::new(
            ErrorKind::UnsupportedMediaType,
            format!("send a multipart/form-data form with fields: {fields}"),
        ))
    }
}
