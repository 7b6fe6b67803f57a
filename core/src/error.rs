//! The one error type of p8fs. Backends map driver errors into it; front-ends map it to their
//! wire forms at the edge. Callers branch on [`ErrorKind`], never on message text.

use std::borrow::Cow;
use std::fmt;

use crate::change::ChangeCursor;

/// The result type used across p8fs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed underlying cause, kept for logs; never shown on the wire.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of thing an error is about, so front-ends can choose a precise wire code
/// (`NoSuchKey` versus `NoSuchBucket`, for instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Key,
    Collection,
    VectorRecord,
    Node,
    Edge,
    Bucket,
    Object,
    Upload,
    Part,
    Memory,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Key => "key",
            Resource::Collection => "collection",
            Resource::VectorRecord => "vector record",
            Resource::Node => "node",
            Resource::Edge => "edge",
            Resource::Bucket => "bucket",
            Resource::Object => "object",
            Resource::Upload => "multipart upload",
            Resource::Part => "part",
            Resource::Memory => "memory",
        })
    }
}

/// Every failure a backend or a shared algorithm can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The addressed record is absent or invisible (expired).
    #[error("{resource} not found: {id}")]
    NotFound { resource: Resource, id: String },
    /// A create-only operation met a visible record.
    #[error("{resource} already exists: {id}")]
    AlreadyExists { resource: Resource, id: String },
    /// A version or shape mismatch (compare-and-swap, collection spec).
    #[error("conflict: {reason}")]
    Conflict { reason: Cow<'static, str> },
    /// Input outside the contract; `field` names the offending field.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        field: Cow<'static, str>,
        reason: Cow<'static, str>,
    },
    /// No valid credentials.
    #[error("unauthorized: {0}")]
    Unauthorized(Cow<'static, str>),
    /// Valid credentials without the right to do this.
    #[error("forbidden: {0}")]
    Forbidden(Cow<'static, str>),
    /// What was asked for has been removed for good: a change-log cursor older than the log's
    /// retention. `oldest` is the oldest cursor a reader may resume after.
    #[error(
        "changes up to cursor {oldest} were removed by retention; read after cursor {oldest} or later"
    )]
    Gone { oldest: ChangeCursor },
    /// A transient failure; the caller may retry.
    #[error("unavailable: {reason}")]
    Unavailable {
        reason: Cow<'static, str>,
        #[source]
        source: Option<Source>,
    },
    /// A bug or an unexpected state; details go to logs only.
    #[error("internal error: {reason}")]
    Internal {
        reason: Cow<'static, str>,
        #[source]
        source: Option<Source>,
    },
}

/// The variant of an [`Error`] without its payload, for matching and comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidInput,
    Unauthorized,
    Forbidden,
    Gone,
    Unavailable,
    Internal,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Gone { .. } => ErrorKind::Gone,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// What a front-end tells its client: the error itself, except that an internal error or an
    /// unavailable backend says only that (the front-end logs the details, never sends them).
    pub fn client_message(&self) -> String {
        match self {
            Error::Internal { .. } => "internal error; see the server log".to_owned(),
            Error::Unavailable { .. } => {
                "the service is temporarily unavailable; retry later".to_owned()
            }
            _ => self.to_string(),
        }
    }

    /// This error naming `field` instead, when it is bad input: a front-end whose argument has
    /// another name than the contract's (GraphQL's camelCase, a tool's `vector` for the
    /// contract's `query`) reports its own. Any other error is returned as it is.
    pub fn renamed(self, field: &'static str) -> Self {
        match self {
            Error::InvalidInput { reason, .. } => Error::InvalidInput {
                field: field.into(),
                reason,
            },
            other => other,
        }
    }

    /// The field named by an `InvalidInput` error.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidInput { field, .. } => Some(field),
            _ => None,
        }
    }

    /// An `InvalidInput` error naming `field`.
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A `NotFound` error.
    pub fn not_found(resource: Resource, id: impl fmt::Display) -> Self {
        Error::NotFound {
            resource,
            id: id.to_string(),
        }
    }

    /// An `AlreadyExists` error.
    pub fn already_exists(resource: Resource, id: impl fmt::Display) -> Self {
        Error::AlreadyExists {
            resource,
            id: id.to_string(),
        }
    }

    /// A `Conflict` error.
    pub fn conflict(reason: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict {
            reason: reason.into(),
        }
    }

    /// An `Unavailable` error with its cause.
    pub fn unavailable(
        reason: impl Into<Cow<'static, str>>,
        source: impl Into<Option<Source>>,
    ) -> Self {
        Error::Unavailable {
            reason: reason.into(),
            source: source.into(),
        }
    }

    /// An `Internal` error with its cause.
    pub fn internal(
        reason: impl Into<Cow<'static, str>>,
        source: impl Into<Option<Source>>,
    ) -> Self {
        Error::Internal {
            reason: reason.into(),
            source: source.into(),
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }
}
