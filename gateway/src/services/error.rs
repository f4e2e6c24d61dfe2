//! The one error type of the services: a kind (what went wrong, as the domain sees it), a message
//! a person can act on, and an optional retry hint. The HTTP layer's table
//! (`http::error::row`) gives each kind its stable code and status; nothing here knows either.

use maas_serving::artifacts::StorageFault;
use maas_serving::ServingError;

use crate::store::StoreError;

/// Every failure a client can see. Adding one is fine; each needs its row in the HTTP table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    // The request itself, before any service sees it.
    InvalidJson,
    InvalidRequest,
    InvalidPath,
    UnsupportedMediaType,
    PayloadTooLarge,
    RouteNotFound,
    MethodNotAllowed,
    // Models and versions.
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
    BaselineUrlFailed,
    ModelExists,
    ModelPaused,
    InvalidAction,
    /// The version has no drift baseline to compare with.
    BaselineNotFound,
    // Inference.
    InvalidInput,
    InferenceFailed,
    VersionUnavailable,
    /// A readiness probe's "no": the model, version or server cannot answer yet.
    NotReady,
    QueueFull,
    QueueTimeout,
    BackendUnavailable,
    /// The request body did not arrive within its time limit.
    BodyTimeout,
    /// The client closed its connection before the answer: the work was abandoned and nothing
    /// recorded. Nobody reads this answer; logs and metrics do.
    ClientGone,
    // The server's own resources.
    /// More connections are open than `server.max_connections`.
    TooManyConnections,
    StorageUnavailable,
    Internal,
    // Auth.
    Unauthorized,
    Forbidden,
    TooManyRequests,
    UserExists,
    UserNotFound,
    KeyNotFound,
    // Jobs and workflows.
    JobNotFound,
    TaskNotFound,
    ArtifactNotFound,
    WorkflowNotFound,
    InvalidWorkflow,
}

impl ErrorKind {
    /// How a predict that failed this way is counted in `maas_predictions_total`: `overloaded`
    /// (refused for capacity: a full queue, a wait too long, a version going away),
    /// `invalid_input` (the caller's request was at fault) or `error` (the server's fault).
    pub fn prediction_outcome(self) -> &'static str {
        use ErrorKind::*;
        match self {
            QueueFull | QueueTimeout | VersionUnavailable | ModelPaused | TooManyConnections => {
                "overloaded"
            }
            InvalidJson | InvalidRequest | InvalidPath | UnsupportedMediaType | PayloadTooLarge
            | RouteNotFound | MethodNotAllowed | ModelNotFound | VersionNotFound
            | BaselineNotFound | VersionExists | VersionNotDeployed | NoDeployedVersion
            | InvalidModelName | InvalidArgument | InvalidModel | UnsupportedModel
            | ModelUrlFailed | BaselineUrlFailed | ModelExists | InvalidAction | InvalidInput
            | BackendUnavailable | Unauthorized | Forbidden | TooManyRequests | UserExists
            | UserNotFound | KeyNotFound | JobNotFound | TaskNotFound | ArtifactNotFound
            | WorkflowNotFound | InvalidWorkflow | NotReady | BodyTimeout | ClientGone => {
                "invalid_input"
            }
            InferenceFailed | StorageUnavailable | Internal => "error",
        }
    }
}

/// A failure on its way up: to the HTTP layer, the CLI or a scheduler task.
#[derive(Debug, Clone)]
pub struct ServiceError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds a client should wait before trying again, when waiting helps.
    pub retry_after: Option<u64>,
}

impl ServiceError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ServiceError {
            kind,
            message: capped(message.into()),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ServiceError::new(ErrorKind::Internal, message)
    }
}

/// The longest error message sent back, in bytes. Every sentence of ours fits many times over;
/// what does not is an echo of what was sent (a 10 MB string where a number belongs), which a
/// client has no use for and an attacker could use to double what a bad request costs.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// A message over [`MAX_MESSAGE_BYTES`] keeps its beginning and its end (where the reason and
/// the list of what is allowed usually are), and says how much was cut between them.
fn capped(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let floor = |mut at: usize| {
        while !message.is_char_boundary(at) {
            at -= 1;
        }
        at
    };
    let head = floor(MAX_MESSAGE_BYTES * 3 / 4 - 64);
    let tail = floor(message.len() - MAX_MESSAGE_BYTES / 4);
    format!(
        "{}… ({} bytes not shown) …{}",
        &message[..head],
        tail - head,
        &message[tail..]
    )
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<ServingError> for ServiceError {
    fn from(e: ServingError) -> Self {
        let kind = match &e {
            ServingError::InvalidModel(_) => ErrorKind::InvalidModel,
            ServingError::UnsupportedModel(_) => ErrorKind::UnsupportedModel,
            ServingError::InvalidInput(_) => ErrorKind::InvalidInput,
            ServingError::InvalidOptions(_) => ErrorKind::InvalidArgument,
            ServingError::Inference(_) => ErrorKind::InferenceFailed,
            ServingError::NotLoaded(_) => ErrorKind::NoDeployedVersion,
            ServingError::VersionNotLoaded { .. } => ErrorKind::VersionNotDeployed,
            ServingError::Io(_) => ErrorKind::Internal,
            ServingError::BackendUnavailable(_) => ErrorKind::BackendUnavailable,
            ServingError::QueueFull { .. } => ErrorKind::QueueFull,
            ServingError::QueueTimeout { .. } => ErrorKind::QueueTimeout,
            ServingError::Stopped { .. } => ErrorKind::VersionUnavailable,
        };
        let retry_after = match kind {
            ErrorKind::QueueFull | ErrorKind::QueueTimeout | ErrorKind::VersionUnavailable => {
                Some(1)
            }
            _ => None,
        };
        ServiceError {
            retry_after,
            ..ServiceError::new(kind, e.to_string())
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::VersionExists { .. } => ErrorKind::VersionExists,
            StoreError::ModelNotFound(_) => ErrorKind::ModelNotFound,
            StoreError::ModelExists(_) => ErrorKind::ModelExists,
            StoreError::VersionNotFound { .. } => ErrorKind::VersionNotFound,
            StoreError::Database(_) => ErrorKind::StorageUnavailable,
            StoreError::Artifact(io) => file_write_kind(io),
            StoreError::Corrupt(_) => ErrorKind::Internal,
            StoreError::UserExists(_) => ErrorKind::UserExists,
            StoreError::UserNotFound(_) => ErrorKind::UserNotFound,
            StoreError::KeyNotFound(_) => ErrorKind::KeyNotFound,
        };
        let message = match &e {
            StoreError::Database(db) => match database_advice(db) {
                Some(advice) => format!("{e}; {advice}"),
                None => e.to_string(),
            },
            _ => e.to_string(),
        };
        ServiceError::new(kind, message)
    }
}

/// A file write that failed: `StorageUnavailable` when the folder is full or not writable (the
/// same write can succeed once someone acts; the error names the folder), `Internal` otherwise.
pub fn file_write_kind(e: &std::io::Error) -> ErrorKind {
    match StorageFault::of(e) {
        Some(StorageFault::Full | StorageFault::NotWritable) => ErrorKind::StorageUnavailable,
        None => ErrorKind::Internal,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_keep_their_ends() {
        let echo = "é".repeat(1_000_000);
        let e = ServiceError::new(
            ErrorKind::InvalidInput,
            format!("element 3: expected a number, got \"{echo}\"; send numbers"),
        );
        assert!(e.message.len() <= MAX_MESSAGE_BYTES, "{}", e.message.len());
        assert!(e
            .message
            .starts_with("element 3: expected a number, got \"é"));
        assert!(e.message.ends_with("é\"; send numbers"));
        assert!(e.message.contains("bytes not shown"));
        let short = ServiceError::new(ErrorKind::InvalidInput, "unknown model 'x'");
        assert_eq!(short.message, "unknown model 'x'");
    }
}
