//! The daemon's one error type, and its conversion from each layer's errors.
//!
//! Every handler returns [`Error`]; the server maps [`ErrorKind`] to an HTTP
//! status in exactly one place (`server::error`). The message is what the
//! client sees: it says what failed, why, and what to do. Detail that must
//! not reach the client (internal errors) goes in `detail`, which is logged
//! and never sent.

use crate::pve::PveError;

/// What kind of failure, which decides the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: bad input; `field` names it (`"memory"`, `"body.settings.url"`).
    BadRequest {
        /// The offending field, if one is to blame.
        field: Option<String>,
    },
    /// 403: the caller's role does not allow this.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 409: conflicts with existing state (already exists, name taken).
    Conflict,
    /// 409: a container is held by another operation.
    Locked {
        /// The id of the operation holding it.
        holder_op: String,
    },
    /// 422: the resource is in a state that does not allow this.
    InvalidState,
    /// 503: a dependency (the Proxmox tools, storage) is down or missing.
    DependencyDown,
    /// 500: a bug or an unclassified failure; details are logged, not sent.
    Internal,
}

impl ErrorKind {
    /// The stable snake_case code sent in the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorKind::BadRequest { .. } => "bad_request",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Locked { .. } => "locked",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::DependencyDown => "dependency_down",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with its kind, the client-facing message and optional detail
/// for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Decides the status.
    pub kind: ErrorKind,
    /// Sent to the client (except for [`ErrorKind::Internal`]).
    pub message: String,
    /// Logged only.
    pub detail: Option<String>,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
        }
    }

    /// 400 naming `field`.
    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::BadRequest {
                field: Some(field.into()),
            },
            message,
        )
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// 422.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidState, message)
    }

    /// 503.
    pub fn dependency_down(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::DependencyDown, message)
    }

    /// 500: `detail` is logged; the client sees only a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: "internal error; see the daemon's log (journalctl -u 1ld)".to_string(),
            detail: Some(detail.to_string()),
        }
    }
}

impl From<PveError> for Error {
    fn from(e: PveError) -> Self {
        use crate::pve::runner::RunError;
        let message = e.to_string();
        let kind = match &e {
            PveError::NotFound { .. } | PveError::TemplateMissing { .. } => ErrorKind::NotFound,
            PveError::AlreadyExists { .. } => ErrorKind::Conflict,
            PveError::AlreadyRunning { .. } | PveError::NotRunning { .. } => {
                ErrorKind::InvalidState
            }
            PveError::Locked { lock, .. } => {
                return Error::new(
                    ErrorKind::Conflict,
                    format!("{message} (Proxmox lock '{lock}')"),
                )
            }
            PveError::StorageUnsuitable { .. } | PveError::Invalid { .. } => {
                ErrorKind::BadRequest { field: None }
            }
            PveError::Unsupported { .. } => ErrorKind::InvalidState,
            PveError::Timeout { .. } => ErrorKind::DependencyDown,
            PveError::Run(RunError::ProgramNotFound { .. }) => ErrorKind::DependencyDown,
            PveError::Run(_) | PveError::Failed { .. } | PveError::Parse { .. } => {
                return Error::internal(message)
            }
        };
        Error::new(kind, message)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::internal(format!("state database: {e}"))
    }
}

/// Shorthand for results of this crate's daemon layers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
