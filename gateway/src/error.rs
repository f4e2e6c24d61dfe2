//! The one error table: every failure a client can see has a stable snake_case code, one HTTP
//! status, and one JSON body `{code, message, request_id}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use maas_serving::artifacts::StorageFault;
use maas_serving::ServingError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;
use crate::store::StoreError;

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    InvalidPath,
    UnsupportedMediaType,
    PayloadTooLarge,
    RouteNotFound,
    MethodNotAllowed,
    ModelNotFound,
    VersionNotFound,
    VersionExists,
    VersionNotDeployed,
    NoDeployedVersion,
    InvalidModelName,
    InvalidArgument,
    InvalidModel,
    UnsupportedModel,
    ModelUrlFailed,
    InvalidInput,
    InferenceFailed,
    VersionUnavailable,
    StorageUnavailable,
    Internal,
    Unauthorized,
    Forbidden,
    TooManyRequests,
    UserExists,
    UserNotFound,
    KeyNotFound,
    QueueFull,
    QueueTimeout,
    BackendUnavailable,
    ModelExists,
    ModelPaused,
    InvalidAction,
    JobNotFound,
    TaskNotFound,
    ArtifactNotFound,
    WorkflowNotFound,
    InvalidWorkflow,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::VersionNotFound => "version_not_found",
            ErrorCode::VersionExists => "version_exists",
            ErrorCode::VersionNotDeployed => "version_not_deployed",
            ErrorCode::NoDeployedVersion => "no_deployed_version",
            ErrorCode::InvalidModelName => "invalid_model_name",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::InvalidModel => "invalid_model",
            ErrorCode::UnsupportedModel => "unsupported_model",
            ErrorCode::ModelUrlFailed => "model_url_failed",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::InferenceFailed => "inference_failed",
            ErrorCode::VersionUnavailable => "version_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::QueueTimeout => "queue_timeout",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::ModelExists => "model_exists",
            ErrorCode::ModelPaused => "model_paused",
            ErrorCode::InvalidAction => "invalid_action",
            ErrorCode::JobNotFound => "job_not_found",
            ErrorCode::TaskNotFound => "task_not_found",
            ErrorCode::ArtifactNotFound => "artifact_not_found",
            ErrorCode::WorkflowNotFound => "workflow_not_found",
            ErrorCode::InvalidWorkflow => "invalid_workflow",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest | ErrorCode::InvalidPath => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RouteNotFound | ErrorCode::ModelNotFound | ErrorCode::VersionNotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::VersionExists
            | ErrorCode::VersionNotDeployed
            | ErrorCode::NoDeployedVersion => StatusCode::CONFLICT,
            ErrorCode::InvalidModelName
            | ErrorCode::InvalidArgument
            | ErrorCode::InvalidModel
            | ErrorCode::UnsupportedModel
            | ErrorCode::ModelUrlFailed
            | ErrorCode::BackendUnavailable
            | ErrorCode::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::VersionUnavailable
            | ErrorCode::StorageUnavailable
            | ErrorCode::QueueTimeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ModelPaused => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ModelExists | ErrorCode::InvalidAction => StatusCode::CONFLICT,
            ErrorCode::InferenceFailed | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UserExists => StatusCode::CONFLICT,
            ErrorCode::UserNotFound
            | ErrorCode::KeyNotFound
            | ErrorCode::JobNotFound
            | ErrorCode::TaskNotFound
            | ErrorCode::ArtifactNotFound
            | ErrorCode::WorkflowNotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidWorkflow => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for `Retry-After` on 429 and 503 answers.
    pub retry_after: Option<u64>,
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

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body = ErrorBody {
            code: self.code.as_str().to_owned(),
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

impl From<ServingError> for ApiError {
    fn from(e: ServingError) -> Self {
        let code = match &e {
            ServingError::InvalidModel(_) => ErrorCode::InvalidModel,
            ServingError::UnsupportedModel(_) => ErrorCode::UnsupportedModel,
            ServingError::InvalidInput(_) => ErrorCode::InvalidInput,
            ServingError::Inference(_) => ErrorCode::InferenceFailed,
            ServingError::NotLoaded(_) => ErrorCode::NoDeployedVersion,
            ServingError::VersionNotLoaded { .. } => ErrorCode::VersionNotDeployed,
            ServingError::Io(_) => ErrorCode::Internal,
            ServingError::BackendUnavailable(_) => ErrorCode::BackendUnavailable,
            ServingError::QueueFull { .. } => ErrorCode::QueueFull,
            ServingError::QueueTimeout { .. } => ErrorCode::QueueTimeout,
            ServingError::Stopped { .. } => ErrorCode::VersionUnavailable,
        };
        let retry_after = match code {
            ErrorCode::QueueFull | ErrorCode::QueueTimeout | ErrorCode::VersionUnavailable => {
                Some(1)
            }
            _ => None,
        };
        ApiError {
            retry_after,
            ..ApiError::new(code, e.to_string())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::VersionExists { .. } => ErrorCode::VersionExists,
            StoreError::ModelNotFound(_) => ErrorCode::ModelNotFound,
            StoreError::ModelExists(_) => ErrorCode::ModelExists,
            StoreError::VersionNotFound { .. } => ErrorCode::VersionNotFound,
            StoreError::Database(_) => ErrorCode::StorageUnavailable,
            StoreError::Artifact(io) => file_write_code(io),
            StoreError::Corrupt(_) => ErrorCode::Internal,
            StoreError::UserExists(_) => ErrorCode::UserExists,
            StoreError::UserNotFound(_) => ErrorCode::UserNotFound,
            StoreError::KeyNotFound(_) => ErrorCode::KeyNotFound,
        };
        let message = match &e {
            StoreError::Database(db) => match database_advice(db) {
                Some(advice) => format!("{e}; {advice}"),
                None => e.to_string(),
            },
            _ => e.to_string(),
        };
        ApiError::new(code, message)
    }
}

/// A file write that failed: 503 when the folder is full or not writable (the same write can
/// succeed once someone acts; the error names the folder), 500 otherwise.
pub fn file_write_code(e: &std::io::Error) -> ErrorCode {
    match StorageFault::of(e) {
        Some(StorageFault::Full | StorageFault::NotWritable) => ErrorCode::StorageUnavailable,
        None => ErrorCode::Internal,
    }
}

/// What a person can do about a database error that is the storage's fault.
fn database_advice(e: &sqlx::Error) -> Option<&'static str> {
    const FULL: &str = "the disk holding the database is full; free space there and retry";
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_none() {
        // PostgreSQL's disk_full
        return (db.code().as_deref() == Some("53100")).then_some(FULL);
    }
    // SQLite's primary result code is the low byte of the extended one.
    let code = db.code()?.parse::<i32>().ok()? & 0xff;
    match code {
        // SQLITE_FULL
        13 => Some(FULL),
        // SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_PERM
        8 | 14 | 3 => Some(
            "the database's folder or files are not writable; fix their permissions or mount and \
             retry",
        ),
        // SQLITE_IOERR
        10 => Some("the disk holding the database failed a read or write; check it and retry"),
        _ => None,
    }
}

/// Errors of actix's own extractors go through the same body as ours.
pub mod extractors {
    use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
    use actix_web::HttpRequest;

    use super::{ApiError, ErrorCode};

    pub fn json(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
        let api = match &err {
            JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is {length} bytes; this route takes at most {limit}"),
            ),
            JsonPayloadError::Overflow { limit } => ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than this route's limit of {limit} bytes"),
            ),
            JsonPayloadError::ContentType => ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the JSON does not fit: {e}"),
            ),
            JsonPayloadError::Deserialize(e) if e.is_eof() && e.line() == 1 && e.column() == 0 => {
                ApiError::new(
                    ErrorCode::InvalidJson,
                    "the body is empty; send a JSON object",
                )
            }
            JsonPayloadError::Deserialize(e) => ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            ),
            JsonPayloadError::Serialize(e) => ApiError::new(ErrorCode::Internal, e.to_string()),
            JsonPayloadError::Payload(e) => ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the body could not be read: {e}"),
            ),
            other => ApiError::new(ErrorCode::InvalidRequest, other.to_string()),
        };
        api.into()
    }

    pub fn path(err: PathError, _req: &HttpRequest) -> actix_web::Error {
        ApiError::new(ErrorCode::InvalidPath, format!("bad path parameter: {err}")).into()
    }

    pub fn query(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("bad query string: {err}"),
        )
        .into()
    }
}
