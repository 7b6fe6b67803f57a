//! The edge mapping of `core::Error` to HTTP: a status per kind and an RFC 9457
//! `application/problem+json` body that names the offending field. Internal details go to the
//! log, never to the client.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p8fs_core::{Error, ErrorKind};
use serde::Serialize;
use utoipa::ToSchema;

/// A `core::Error` on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    /// Whether the request was conditional (`If-Match`, `If-None-Match`): a failed precondition
    /// is then 412, not 409.
    conditional: bool,
    /// A status that says more than the error kind (413 for an oversized body).
    status: Option<StatusCode>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self {
            error,
            conditional: false,
            status: None,
        }
    }
}

impl ApiError {
    /// The error of a conditional request.
    pub(crate) fn conditional(error: Error) -> Self {
        Self {
            error,
            conditional: true,
            status: None,
        }
    }

    /// A body over the configured limit: 413, naming `body`.
    pub(crate) fn too_large() -> Self {
        Self {
            error: Error::invalid("body", "is larger than the server's limit"),
            conditional: false,
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    /// An error answered with `status` rather than its kind's (413, 416, 412 on a read).
    pub(crate) fn with_status(error: Error, status: StatusCode) -> Self {
        Self {
            error,
            conditional: false,
            status: Some(status),
        }
    }

    /// The field an `InvalidInput` error names.
    #[cfg(test)]
    pub(crate) fn field(&self) -> Option<&str> {
        self.error.field()
    }

    /// The status this error is answered with.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
            .unwrap_or_else(|| status(self.error.kind(), self.conditional))
    }

    /// A bad-input error naming `field`.
    pub(crate) fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error::invalid(field, reason).into()
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` for plain HTTP semantics).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for a human.
    pub detail: String,
    /// The request field at fault, for bad input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 410 Gone from the change log: the oldest cursor a reader may resume after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_cursor: Option<String>,
}

fn status(kind: ErrorKind, conditional: bool) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists | ErrorKind::Conflict if conditional => {
            StatusCode::PRECONDITION_FAILED
        }
        ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The problem document of an error (logging internal details, never sending them).
    pub(crate) fn problem_of(error: &Error) -> Problem {
        Self::problem(error, status(error.kind(), false))
    }

    fn problem(error: &Error, status: StatusCode) -> Problem {
        match error {
            Error::Internal { .. } => tracing::error!(?error, "internal error"),
            Error::Unavailable { .. } => tracing::warn!(?error, "backend unavailable"),
            _ => {}
        }
        let detail = error.client_message();
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
            field: error.field().map(str::to_owned),
            oldest_cursor: match error {
                Error::Gone { oldest } => Some(oldest.to_string()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = self.error.kind();
        let status = self
            .status
            .unwrap_or_else(|| status(kind, self.conditional));
        let problem = Self::problem(&self.error, status);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if kind == ErrorKind::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        if kind == ErrorKind::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Renames the field of an `InvalidInput` error to the name this API exposes.
pub(crate) fn rename_field(error: Error, exposed: &'static str) -> Error {
    match error {
        Error::InvalidInput { reason, .. } => Error::InvalidInput {
            field: exposed.into(),
            reason,
        },
        other => other,
    }
}
