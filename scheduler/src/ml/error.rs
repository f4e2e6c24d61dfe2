//! The one error type of the built-in ML tasks. Every message names what a person has to fix: the
//! parameter, the file, the line, the column.

use std::path::PathBuf;

/// Why a built-in ML task failed.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    #[error("unknown task kind '{kind}'; the built-in kinds are {}", super::BUILTIN_KINDS.join(", "))]
    UnknownKind { kind: String },

    #[error(
        "{kind}: unknown parameter{} {}; valid parameters are {}",
        if .unknown.len() == 1 { "" } else { "s" },
        quoted(.unknown),
        .valid.join(", ")
    )]
    UnknownParams {
        kind: String,
        unknown: Vec<String>,
        valid: Vec<String>,
    },

    #[error("{kind}: parameter '{param}' is required")]
    MissingParam { kind: String, param: String },

    #[error("{kind}: parameter '{param}': {reason}")]
    InvalidParam {
        kind: String,
        param: String,
        reason: String,
    },

    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A local file outside the folders tasks may read, or missing.
    #[error(transparent)]
    Unreadable(#[from] crate::sandbox::Unreadable),

    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },

    /// The file is not a CSV table this module can use (bad quoting, ragged rows, no header...).
    #[error("{}: {reason}", .path.display())]
    Csv { path: PathBuf, reason: String },

    /// Names the column asked for; never the file's own header (it is the file's content).
    #[error(
        "{} has no column '{column}' (its header names {} column{}); check the name, the \
         delimiter and that the first line is the header",
        .path.display(), .available.len(), if .available.len() == 1 { "" } else { "s" }
    )]
    MissingColumn {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },

    /// One cell cannot be used. `line` is the line in the file (the header is line 1).
    #[error("{} line {line}, column '{column}': {reason}", .path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        column: String,
        reason: String,
    },

    /// The data as a whole cannot be used (too few rows, a single class, ...).
    #[error("{}: {reason}", .path.display())]
    Data { path: PathBuf, reason: String },

    #[error("training {algorithm} failed: {reason}")]
    Training { algorithm: String, reason: String },

    /// An ONNX model that cannot be read, or that fails to run on the data.
    #[error("model {model}: {reason}")]
    Model { model: String, reason: String },

    #[error(
        "the feature columns of {} ({}) are not the model's features ({}); \
         pass the CSV the model was trained for, with its columns in the same order",
        .path.display(), quoted(.found), quoted(.expected)
    )]
    FeatureMismatch {
        path: PathBuf,
        expected: Vec<String>,
        found: Vec<String>,
    },
}

fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    names.join(", ")
}

impl MlError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MlError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        MlError::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
