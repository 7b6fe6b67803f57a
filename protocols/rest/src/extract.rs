//! Request extractors whose rejections are problem documents naming the field: the bearer-token
//! principal, JSON bodies, query strings and path parameters. Body and query errors name the
//! field by its path (`ttl_ms`, `query[3]`, `limit`), so a client sees what to fix.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use p8fs_auth::Principal;
use p8fs_core::Error;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::RestState;
use crate::error::ApiError;

/// The caller, authenticated by an `Authorization: Bearer` access token.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<RestState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Error::Unauthorized("a bearer token is required".into()))?;
        let value = header
            .to_str()
            .map_err(|_| Error::Unauthorized("malformed authorization header".into()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(
                    Error::Unauthorized("the authorization scheme must be Bearer".into()).into(),
                );
            }
        };
        Ok(Self(state.verifier.verify(token).await?))
    }
}

/// A JSON body (`application/json` or any `+json` type). A body that does not parse is a 400
/// naming `body`; a value of the wrong type or out of range is a 400 naming its path in the body
/// (`ttl_ms`, `query[3]`); an oversized one is a 413.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(request, state).await?;
        parse_json(&bytes).map(Self)
    }
}

/// A JSON body that must be an object, as every request schema of this API is; serde would
/// also read a struct from an array of its fields, which the document does not allow.
pub(crate) struct ApiObject<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiObject<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = json_bytes(request, state).await?;
        parse_object(&bytes).map(Self)
    }
}

/// Parses a JSON body that must be an object, naming the field at fault.
fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid("body", "must be a JSON object"));
    }
    parse_json(bytes)
}

/// The bytes of a JSON request body.
async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    if !json_content_type(request.headers()) {
        return Err(ApiError::invalid(
            "content-type",
            "the body must be sent as application/json",
        ));
    }
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large()
            } else {
                ApiError::invalid("body", rejection.body_text())
            }
        })
}

fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body, naming the field at fault.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = field_path(error.path(), "body");
        ApiError::invalid(field, error.into_inner().to_string())
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::invalid("body", error.to_string()))?;
    Ok(value)
}

/// The field a deserialization error points at (`ttl_ms`, `query[3]`, `filter.color`), up to the
/// first segment the parser could not name; `fallback` when nothing is left.
fn field_path(path: &serde_path_to_error::Path, fallback: &'static str) -> Cow<'static, str> {
    let mut field = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    if field.is_empty() {
        Cow::Borrowed(fallback)
    } else {
        Cow::Owned(field)
    }
}

/// A query string. A parameter that does not parse (`limit=ten`, `limit=1.5`) is a 400 naming the
/// parameter; anything else wrong with the string is a 400 naming `query`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// Parses a query string, naming the parameter at fault.
fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = field_path(error.path(), "query");
        ApiError::invalid(field, error.into_inner().to_string())
    })
}

/// Path parameters; undecodable ones are a 400 naming `path`.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::invalid("path", rejection.body_text())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::http::HeaderValue;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default, deserialize_with = "crate::integer::optional_i64")]
        ttl_ms: Option<i64>,
        #[serde(default)]
        query: Vec<f32>,
        #[serde(default)]
        filter: BTreeMap<String, u8>,
    }

    #[derive(Debug, Deserialize)]
    struct Params {
        limit: Option<u64>,
    }

    fn body_field(text: &str) -> String {
        let error = parse_object::<Body>(text.as_bytes()).expect_err(text);
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        error.field().unwrap_or_default().to_owned()
    }

    #[test]
    fn body_errors_name_the_field_at_fault() {
        assert_eq!(body_field(r#"{"ttl_ms": 1.5}"#), "ttl_ms");
        assert_eq!(body_field(r#"{"ttl_ms": "5"}"#), "ttl_ms");
        assert_eq!(body_field(r#"{"query": [1, 2, 1e39]}"#), "query[2]");
        assert_eq!(body_field(r#"{"filter": {"a": 300}}"#), "filter.a");
        // A body cut short names the value it was reading.
        assert_eq!(body_field(r#"{"ttl_ms": "#), "ttl_ms");
        // Nothing more precise than the body: not JSON, trailing data, not an object.
        assert_eq!(body_field("{not json"), "body");
        assert_eq!(body_field(r#"{} {}"#), "body");
        assert_eq!(body_field(r#"[]"#), "body");
        assert_eq!(body_field(r#" [1]"#), "body");
        // Any JSON value where any is allowed.
        assert_eq!(
            parse_json::<serde_json::Value>(b"[]").unwrap(),
            serde_json::json!([])
        );
        let body = parse_json::<Body>(br#"{"ttl_ms": 200.0, "query": [0.5], "filter": {"a": 1}}"#)
            .unwrap();
        assert_eq!(body.ttl_ms, Some(200));
        assert_eq!(body.query, [0.5]);
        assert_eq!(body.filter.get("a"), Some(&1));
    }

    #[test]
    fn query_errors_name_the_parameter() {
        for (query, field) in [
            ("limit=ten", "limit"),
            ("limit=1.5", "limit"),
            ("limit=1.0", "limit"),
            ("limit=-1", "limit"),
        ] {
            let error = parse_query::<Params>(query).expect_err(query);
            assert_eq!(error.field(), Some(field), "{query}");
        }
        let params = parse_query::<Params>("limit=7&other=x").unwrap();
        assert_eq!(params.limit, Some(7));
        assert_eq!(parse_query::<Params>("").unwrap().limit, None);
    }

    #[test]
    fn json_media_types() {
        let mut headers = HeaderMap::new();
        assert!(!json_content_type(&headers));
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/problem+json", true),
            ("text/json", false),
            ("application/jsonx", false),
            ("text/plain", false),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(json_content_type(&headers), json, "{value}");
        }
    }
}
