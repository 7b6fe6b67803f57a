//! The wire forms of the OAuth endpoints: form and query parsing with limits (no parameter
//! twice, RFC 6749 3.1), JSON bodies, and the error responses of RFC 6749 5.2 / RFC 7591 3.2.2.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p8fs_core::{Error, ErrorKind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::limits::{MAX_FORM_BYTES, MAX_PARAM_BYTES, MAX_PARAMS};

/// An OAuth error response: a status, an error code and a description for humans.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: Cow<'static, str>,
    /// Extra `WWW-Authenticate` challenge (401 responses).
    pub(crate) challenge: Option<&'static str>,
    /// `Retry-After` (429 and 503 responses).
    pub(crate) retry_after: Option<Duration>,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// 429 `temporarily_unavailable` with `Retry-After` (RFC 6749 has no code of its own for a
    /// rate limit).
    pub(crate) fn rate_limited(
        description: impl Into<Cow<'static, str>>,
        retry_after: Duration,
    ) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                description,
            )
        }
    }

    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            challenge: Some("Basic realm=\"p8fs\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }

    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// RFC 8707 2: the `resource` is malformed, unknown, or not the one granted.
    pub(crate) fn invalid_target(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    pub(crate) fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            challenge: Some("Bearer error=\"invalid_token\""),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }

    pub(crate) fn insufficient_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            challenge: Some("Bearer error=\"insufficient_scope\""),
            ..Self::new(StatusCode::FORBIDDEN, "insufficient_scope", description)
        }
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the body is larger than {MAX_FORM_BYTES} bytes"),
        )
    }

    /// A failure of the server itself: logged, reported without detail.
    pub(crate) fn server(error: Error) -> Self {
        match error.kind() {
            ErrorKind::Unavailable => {
                tracing::warn!(error = %error, "oauth: the store is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the server is temporarily unavailable; retry later",
                )
            }
            _ => {
                tracing::error!(error = %error, "oauth: internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the server failed to process the request",
                )
            }
        }
    }
}

impl From<Error> for OAuthError {
    /// Bad input becomes `invalid_request` naming the field; store and internal failures become
    /// `temporarily_unavailable` / `server_error`.
    fn from(error: Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidInput => Self::invalid_request(error.to_string()),
            ErrorKind::Unauthorized => Self::invalid_token(error.to_string()),
            ErrorKind::Forbidden => Self::insufficient_scope(error.to_string()),
            ErrorKind::Conflict | ErrorKind::AlreadyExists => {
                Self::new(StatusCode::CONFLICT, "invalid_request", error.to_string())
            }
            ErrorKind::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "invalid_request", error.to_string())
            }
            ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::Gone => Self::server(error),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if let Some(challenge) = self.challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(after) = self.retry_after {
            set_retry_after(headers, after);
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn set_retry_after(headers: &mut HeaderMap, after: Duration) {
    let seconds = after
        .as_secs()
        .saturating_add(u64::from(after.subsec_nanos() > 0))
        .max(1);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 5.1).
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON response that must not be cached.
pub(crate) fn json_no_store<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let mut response = (status, Json(value)).into_response();
    no_store(response.headers_mut());
    response
}

/// Form or query parameters, each present at most once. Empty values count as absent
/// (RFC 6749 3.1).
#[derive(Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text. `InvalidInput` naming the parameter for
    /// a repeated or overlong one, or for too many.
    pub(crate) fn parse(input: &[u8]) -> Result<Self, Error> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(input) {
            if params.len() >= MAX_PARAMS {
                return Err(Error::invalid(
                    "body",
                    format!("at most {MAX_PARAMS} parameters are accepted"),
                ));
            }
            if name.len() > 64 {
                return Err(Error::invalid("body", "a parameter name is too long"));
            }
            let name = name.into_owned();
            if value.len() > MAX_PARAM_BYTES {
                return Err(Error::invalid(
                    name,
                    format!("is longer than {MAX_PARAM_BYTES} bytes"),
                ));
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(Error::invalid(name, "must not be repeated"));
            }
            params.push((name, value.into_owned()));
        }
        Ok(Self(params))
    }

    /// The value of `name`, if present and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or `invalid_request` naming it.
    pub(crate) fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("the parameter {name} is missing")))
    }
}

/// Reads the body, at most [`MAX_FORM_BYTES`].
pub(crate) async fn read_body(body: Body) -> Result<axum::body::Bytes, OAuthError> {
    axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| OAuthError::too_large())
}

/// Reads a form body: the content type must be `application/x-www-form-urlencoded`.
pub(crate) async fn read_form(headers: &HeaderMap, body: Body) -> Result<Params, OAuthError> {
    if !has_content_type(headers, "application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = read_body(body).await?;
    Ok(Params::parse(&bytes)?)
}

/// Reads a JSON body into `T`: the content type must be `application/json`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, Error> {
    if !has_content_type(headers, "application/json") {
        return Err(Error::invalid(
            "content-type",
            "the body must be application/json",
        ));
    }
    let bytes = read_body(body)
        .await
        .map_err(|_| Error::invalid("body", format!("is larger than {MAX_FORM_BYTES} bytes")))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::invalid("body", format!("{e}")))
}

fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}
