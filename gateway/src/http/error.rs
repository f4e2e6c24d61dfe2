//! The one error table: every failure a client can see has a stable snake_case code, one HTTP
//! status and one JSON body `{code, message, request_id}`. Services return
//! [`ServiceError`]s; this is the only place that turns their kinds into codes and statuses.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request_id;
pub use crate::services::error::{ErrorKind, ServiceError};

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Stable, snake_case; clients branch on it. Renaming one breaks them.
    pub code: &'static str,
    pub status: StatusCode,
    /// What it means, for the documentation.
    pub meaning: &'static str,
}

const fn row(code: &'static str, status: StatusCode, meaning: &'static str) -> Row {
    Row {
        code,
        status,
        meaning,
    }
}

/// The table: one row per kind, every kind mapped here and nowhere else.
pub fn table(kind: ErrorKind) -> Row {
    use ErrorKind as K;
    use StatusCode as S;
    match kind {
        K::InvalidJson => row(
            "invalid_json",
            S::BAD_REQUEST,
            "the body is not JSON, or is empty",
        ),
        K::InvalidRequest => row(
            "invalid_request",
            S::BAD_REQUEST,
            "the body, query or form does not fit the route's schema",
        ),
        K::InvalidPath => row(
            "invalid_path",
            S::BAD_REQUEST,
            "a path parameter has the wrong type",
        ),
        K::UnsupportedMediaType => row(
            "unsupported_media_type",
            S::UNSUPPORTED_MEDIA_TYPE,
            "the body's Content-Type is not one the route takes",
        ),
        K::PayloadTooLarge => row(
            "payload_too_large",
            S::PAYLOAD_TOO_LARGE,
            "the body is larger than the route's limit",
        ),
        K::RouteNotFound => row("route_not_found", S::NOT_FOUND, "no route has this path"),
        K::MethodNotAllowed => row(
            "method_not_allowed",
            S::METHOD_NOT_ALLOWED,
            "the route exists but not with this method",
        ),
        K::ModelNotFound => row("model_not_found", S::NOT_FOUND, "no model has this name"),
        K::BaselineNotFound => row(
            "baseline_not_found",
            S::NOT_FOUND,
            "the version has no drift baseline (deploy it with training data or a baseline)",
        ),
        K::VersionNotFound => row(
            "version_not_found",
            S::NOT_FOUND,
            "the model has no version with this number",
        ),
        K::VersionExists => row("version_exists", S::CONFLICT, "the version number is taken"),
        K::VersionNotDeployed => row(
            "version_not_deployed",
            S::CONFLICT,
            "the version exists but is undeployed",
        ),
        K::NoDeployedVersion => row(
            "no_deployed_version",
            S::CONFLICT,
            "the model has no deployed version to answer",
        ),
        K::InvalidModelName => row(
            "invalid_model_name",
            S::UNPROCESSABLE_ENTITY,
            "the model name is not 1 to 128 plain characters",
        ),
        K::InvalidArgument => row(
            "invalid_argument",
            S::UNPROCESSABLE_ENTITY,
            "a field is well-formed but its value is not allowed",
        ),
        K::InvalidModel => row(
            "invalid_model",
            S::UNPROCESSABLE_ENTITY,
            "the uploaded file is not a loadable ONNX model",
        ),
        K::UnsupportedModel => row(
            "unsupported_model",
            S::UNPROCESSABLE_ENTITY,
            "the model uses something the backend cannot run",
        ),
        K::ModelUrlFailed => row(
            "model_url_failed",
            S::UNPROCESSABLE_ENTITY,
            "the model could not be fetched from its URL",
        ),
        K::BaselineUrlFailed => row(
            "baseline_url_failed",
            S::UNPROCESSABLE_ENTITY,
            "the drift baseline or training data could not be fetched from its URL",
        ),
        K::ModelExists => row("model_exists", S::CONFLICT, "a model with this name exists"),
        K::ModelPaused => row(
            "model_paused",
            S::SERVICE_UNAVAILABLE,
            "the model's service is paused",
        ),
        K::InvalidAction => row(
            "invalid_action",
            S::CONFLICT,
            "the service action does not fit the model's state",
        ),
        K::InvalidInput => row(
            "invalid_input",
            S::UNPROCESSABLE_ENTITY,
            "the inputs do not fit the model's signature",
        ),
        K::InferenceFailed => row(
            "inference_failed",
            S::INTERNAL_SERVER_ERROR,
            "the backend failed while running the model",
        ),
        K::VersionUnavailable => row(
            "version_unavailable",
            S::SERVICE_UNAVAILABLE,
            "the version is deployed but not serving here yet, or is going away",
        ),
        K::NotReady => row("not_ready", S::BAD_REQUEST, "an Open Inference Protocol readiness probe's no: the model, version or server is not ready (4xx, as the protocol says)"),
        K::QueueFull => row(
            "queue_full",
            S::TOO_MANY_REQUESTS,
            "the version's request queue is full; retry after the given seconds",
        ),
        K::QueueTimeout => row(
            "queue_timeout",
            S::SERVICE_UNAVAILABLE,
            "the request waited in the queue longer than its limit",
        ),
        K::BackendUnavailable => row(
            "backend_unavailable",
            S::UNPROCESSABLE_ENTITY,
            "the asked-for backend is not available on this server",
        ),
        K::BodyTimeout => row(
            "body_timeout",
            S::REQUEST_TIMEOUT,
            "the request body did not arrive within server.body_timeout_secs (uploads: server.upload_timeout_secs); the connection is closed",
        ),
        K::ClientGone => row(
            "client_closed_request",
            // nginx's 499: no client reads it, the access log and metrics do.
            S::from_u16(499).unwrap_or(S::BAD_REQUEST),
            "the client closed its connection before the answer; the work was abandoned and nothing recorded (seen only in logs and metrics)",
        ),
        K::TooManyConnections => row(
            "too_many_connections",
            S::SERVICE_UNAVAILABLE,
            "more connections are open than server.max_connections; retry after the given seconds, reusing a connection",
        ),
        K::StorageUnavailable => row(
            "storage_unavailable",
            S::SERVICE_UNAVAILABLE,
            "the database or artifact folder cannot take writes (full, read-only, down)",
        ),
        K::Internal => row(
            "internal",
            S::INTERNAL_SERVER_ERROR,
            "a bug or an unexpected failure; quote the request id",
        ),
        K::Unauthorized => row(
            "unauthorized",
            S::UNAUTHORIZED,
            "no valid bearer token or API key",
        ),
        K::Forbidden => row(
            "forbidden",
            S::FORBIDDEN,
            "the credential's role or scope does not allow this",
        ),
        K::TooManyRequests => row(
            "too_many_requests",
            S::TOO_MANY_REQUESTS,
            "too many attempts; retry after the given seconds",
        ),
        K::UserExists => row("user_exists", S::CONFLICT, "a user with this name exists"),
        K::UserNotFound => row("user_not_found", S::NOT_FOUND, "no user has this name"),
        K::KeyNotFound => row("key_not_found", S::NOT_FOUND, "no API key has this id"),
        K::JobNotFound => row("job_not_found", S::NOT_FOUND, "no job has this id"),
        K::TaskNotFound => row(
            "task_not_found",
            S::NOT_FOUND,
            "the job has no task with this name",
        ),
        K::ArtifactNotFound => row(
            "artifact_not_found",
            S::NOT_FOUND,
            "the task wrote no file at this path",
        ),
        K::WorkflowNotFound => row(
            "workflow_not_found",
            S::NOT_FOUND,
            "no workflow with this name (and version) is in the catalog",
        ),
        K::InvalidWorkflow => row(
            "invalid_workflow",
            S::UNPROCESSABLE_ENTITY,
            "the workflow definition is not valid",
        ),
    }
}

impl ErrorKind {
    /// The stable code of this kind.
    pub fn code(self) -> &'static str {
        table(self).code
    }

    pub fn status(self) -> StatusCode {
        table(self).status
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case; branch on this.
    #[schema(example = "model_not_found")]
    pub code: String,
    /// For people: what went wrong and what to do about it.
    #[schema(example = "model 'iris' does not exist")]
    pub message: String,
    /// The request's id (from `X-Request-Id` or generated); quote it when reporting a problem.
    pub request_id: String,
}

impl ResponseError for ServiceError {
    fn status_code(&self) -> StatusCode {
        self.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let Row { code, status, .. } = table(self.kind);
        if status.is_server_error() {
            tracing::error!(code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            code: code.to_owned(),
            message: self.message.clone(),
            request_id: request_id::current(),
        };
        let mut response = HttpResponse::build(status);
        match (status, self.retry_after) {
            (_, Some(seconds)) => {
                response.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
            }
            (StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS, None) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"maas\""));
        }
        response.json(body)
    }
}

impl actix_web::Responder for ServiceError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &HttpRequest) -> HttpResponse {
        ResponseError::error_response(&self)
    }
}

/// Errors of actix's own extractors go through the same body as ours.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::HttpRequest;

    use super::{ErrorKind, ServiceError};

    pub fn json(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
        payload_error(&err, None).into()
    }

    /// The predict routes' body errors add what a predict body looks like.
    pub fn predict_json(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
        payload_error(
            &err,
            Some(
                "a predict body is an object such as {\"instances\": [[5.1, 3.5, 1.4, 0.2]]} or \
                 {\"records\": [{\"feature\": 1.0}]}",
            ),
        )
        .into()
    }

    fn payload_error(err: &JsonPayloadError, hint: Option<&str>) -> ServiceError {
        match err {
            JsonPayloadError::OverflowKnownLength { length, limit } => ServiceError::new(
                ErrorKind::PayloadTooLarge,
                format!("the body is {length} bytes; this route takes at most {limit}"),
            ),
            JsonPayloadError::Overflow { limit } => ServiceError::new(
                ErrorKind::PayloadTooLarge,
                format!("the body is larger than this route's limit of {limit} bytes"),
            ),
            JsonPayloadError::ContentType => ServiceError::new(
                ErrorKind::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonPayloadError::Deserialize(e) if e.is_data() => {
                let what = crate::http::json::describe(e, "");
                let message = match hint {
                    Some(hint) => format!("{what}; {hint}"),
                    None => what,
                };
                ServiceError::new(ErrorKind::InvalidRequest, message)
            }
            JsonPayloadError::Deserialize(e) => crate::http::json::not_json(e),
            JsonPayloadError::Serialize(e) => ServiceError::new(ErrorKind::Internal, e.to_string()),
            JsonPayloadError::Payload(e) => ServiceError::new(
                ErrorKind::InvalidRequest,
                format!("the body could not be read: {e}"),
            ),
            other => ServiceError::new(ErrorKind::InvalidRequest, other.to_string()),
        }
    }

    pub fn path(err: PathError, _req: &HttpRequest) -> actix_web::Error {
        ServiceError::new(ErrorKind::InvalidPath, format!("bad path parameter: {err}")).into()
    }

    pub fn query(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
        ServiceError::new(
            ErrorKind::InvalidRequest,
            format!("bad query string: {err}"),
        )
        .into()
    }
}
