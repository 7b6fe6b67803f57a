//! `/v1/kv`: key-value records. `PUT` stores the request body (any JSON value) as the value;
//! `If-None-Match: *` makes it create-only and `If-Match: "<version>"` a compare-and-swap, both
//! answered with 412 when the precondition fails.
//!
//! `If-None-Match` takes only `*`: a list of entity tags ("store unless the version is one of
//! these") has no atomic backend operation, so the document declares the header's pattern as
//! `^\*?$` (empty is an empty list, no condition) and anything else is a 400. `If-Match` takes one
//! version, as `"42"`, `W/"42"` or `42`. Both together cannot hold (RFC 9110, 13.2.2: If-Match
//! needs the record, If-None-Match: * its absence): 404 without a record, 412 with one.
//!
//! Lengths: JSON Schema's `maxLength` counts characters, the contract (`p8fs_core::validate`)
//! counts UTF-8 bytes. The document gives the byte limit N as `maxLength`, which every accepted
//! string meets, and as `format: utf8-max-N-bytes`, which says what the limit really is.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p8fs_auth::Scope;
use p8fs_core::kv::{KvPage, KvText, find_by_field};
use p8fs_core::{Error, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, Limit, Ttl, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem, rename_field};
use crate::extract::{ApiJson, ApiObject, ApiPath, ApiQuery, Caller};
use crate::schema::AnyJson;
use crate::{DEFAULT_PAGE, RestState, integer};

/// A stored record.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvRecord {
    pub key: String,
    pub value: Value,
    /// Opaque, strictly increasing per key; pass it back in `If-Match`.
    pub version: String,
    /// Milliseconds since the Unix epoch after which the record is gone; absent means never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The outcome of a write.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvWritten {
    pub key: String,
    /// The new version; pass it back in `If-Match`.
    pub version: String,
}

/// A page of records in key order (raw UTF-8 bytes).
#[derive(Debug, Serialize, ToSchema)]
pub struct KvRecordPage {
    pub items: Vec<KvRecord>,
    /// Pass as `start_after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Options of a write.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// Time to live in milliseconds (1 ..= 100 years), as decimal digits; absent means the
    /// record is permanent.
    #[param(minimum = 1, maximum = 3155760000000_i64)]
    pub ttl_ms: Option<i64>,
}

/// A scan.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    /// Only keys starting with this prefix: at most 1024 bytes of UTF-8 without U+0000
    /// (`maxLength` counts characters; multi-byte characters reach the byte limit sooner).
    #[param(
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]*$"
    )]
    pub prefix: Option<String>,
    /// Only keys after this one (the previous page's `next`): a key, 1..=1024 bytes of UTF-8.
    #[param(
        min_length = 1,
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A find-by-field query: records whose JSON value holds `value` at the dot `path`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindRequest {
    /// A dot path through object keys, e.g. `owner.id`: 1..=256 bytes of UTF-8, no empty
    /// segment (`maxLength` counts characters; multi-byte characters reach the byte limit sooner).
    #[schema(
        pattern = "^[^.\\u0000]+(\\.[^.\\u0000]+)*$",
        min_length = 1,
        max_length = 256,
        format = "utf8-max-256-bytes"
    )]
    pub path: String,
    /// The value to match: type-strict JSON equality, except that numbers compare by value.
    #[schema(value_type = AnyJson)]
    pub value: Value,
    /// Only keys after this one (the previous page's `next`): a key, 1..=1024 bytes of UTF-8.
    #[schema(
        min_length = 1,
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "integer::optional_u64")]
    pub limit: Option<u64>,
}

pub(crate) fn record(entry: KvEntry) -> KvRecord {
    KvRecord {
        key: entry.key.into_string(),
        value: entry.value,
        version: entry.version.to_string(),
        expires_at: entry.expires_at,
    }
}

/// A record as [`get_record`] answers it, borrowed from the store's answer: the same JSON as
/// [`KvRecord`], the value written as the stored text, without parsing it.
#[derive(Serialize)]
struct RecordView<'a> {
    key: &'a str,
    value: &'a RawValue,
    #[serde(serialize_with = "as_text")]
    version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// A version as a JSON string (`"42"`), as [`KvRecord::version`] holds it.
fn as_text<S: serde::Serializer>(version: &Version, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(version)
}

/// A JSON body of about this many bytes or fewer is written without growing its buffer.
const JSON_BODY_CAPACITY: usize = 512;

/// `200 OK` with `body` as `application/json` and the record's `ETag`: what
/// `([(ETAG, etag)], Json(body))` answers, serialized straight into one buffer.
fn json_with_etag(body: &impl Serialize, version: Version) -> Result<Response, ApiError> {
    let mut bytes = Vec::with_capacity(JSON_BODY_CAPACITY);
    serde_json::to_writer(&mut bytes, body)
        .map_err(|e| Error::internal("cannot write the record as JSON", Some(e.into())))?;
    let mut response = Response::new(axum::body::Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, etag(version));
    Ok(response)
}

fn page(page: KvPage) -> KvRecordPage {
    KvRecordPage {
        items: page.items.into_iter().map(record).collect(),
        next: page.next.map(Key::into_string),
    }
}

/// `"<version>"`, written without an intermediate string.
fn etag(version: Version) -> HeaderValue {
    use std::io::Write;
    // A quote, at most 20 digits and a quote.
    let mut text = [0u8; 22];
    let mut rest = &mut text[..];
    let written = write!(rest, "\"{version}\"").map(|()| 22 - rest.len());
    written
        .ok()
        .and_then(|n| text.get(..n))
        .and_then(|tag| HeaderValue::from_bytes(tag).ok())
        .unwrap_or(HeaderValue::from_static("\"\""))
}

pub(crate) fn ttl(ttl_ms: Option<i64>) -> Result<Option<Ttl>, Error> {
    ttl_ms
        .map(|ms| Ttl::from_millis(ms).map_err(|e| rename_field(e, "ttl_ms")))
        .transpose()
}

/// A JSON dot path: segments separated by `.`, none empty, no U+0000.
pub(crate) const DOT_PATH_PATTERN: &str = "^[^.\\u0000]+(\\.[^.\\u0000]+)*$";

/// The description of a key path parameter.
const KEY_DESCRIPTION: &str = "The key, percent-encoded: 1..=1024 bytes of UTF-8 without U+0000 \
    (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)";

pub(crate) fn limit(limit: Option<u64>) -> Result<Limit, Error> {
    Limit::new(limit.unwrap_or(DEFAULT_PAGE))
}

/// What an `If-Match` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// A version this API could have issued.
    Version(Version),
    /// Well-formed, but larger than any version: it matches no record.
    Unmatchable,
}

/// Reads `If-Match`: one version, `"42"`, `W/"42"` or `42` (the pattern in the document);
/// anything else is a 400 naming the header.
fn if_match(headers: &HeaderMap) -> Result<Option<Expected>, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let invalid = || {
        Error::invalid(
            "if-match",
            "must be one version returned by this API, e.g. \"42\"",
        )
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let quoted = |tag: &str| {
        tag.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .map(str::to_owned)
    };
    let digits = match (text.strip_prefix("W/"), text.starts_with('"')) {
        (Some(weak), _) => quoted(weak).ok_or_else(invalid)?,
        (None, true) => quoted(text).ok_or_else(invalid)?,
        (None, false) => text.to_owned(),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    Ok(Some(
        digits
            .parse::<u64>()
            .map_or(Expected::Unmatchable, |v| Expected::Version(Version(v))),
    ))
}

/// Whether `If-None-Match: *` was sent; any other value is a 400 naming the header.
fn if_none_match_any(headers: &HeaderMap) -> Result<bool, Error> {
    // An empty field is an empty list of entity tags (RFC 9110, 5.6.1), which no current
    // representation matches: the condition holds, as when the header is absent.
    let value = headers
        .get(header::IF_NONE_MATCH)
        .filter(|v| !v.as_bytes().trim_ascii().is_empty());
    match value {
        None => Ok(false),
        Some(value) if value.as_bytes().trim_ascii() == b"*" => Ok(true),
        Some(_) => Err(Error::invalid(
            "if-none-match",
            "only `*` is supported (create only if absent)",
        )),
    }
}

/// Reads a record.
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "greeting")),
    responses(
        (status = 200, description = "The record", body = KvRecord),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No visible record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:read"])))]
pub(crate) async fn get_record(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::KvRead)?;
    let key = Key::new(key)?;
    let record = state
        .backend
        .get_text(&caller.tenant, &key)
        .await?
        .ok_or_else(|| Error::not_found(p8fs_core::Resource::Key, &key))?;
    json_with_etag(&view(&key, &record), record.version)
}

fn view<'a>(key: &'a Key, record: &'a KvText) -> RecordView<'a> {
    RecordView {
        key: key.as_str(),
        value: record.value.as_raw(),
        version: record.version,
        expires_at: record.expires_at,
    }
}

/// Stores the body as the record's value.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv",
    params(
        ("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "greeting"),
        WriteParams,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^((W/)?"[0-9]{1,20}"|[0-9]{1,20})$"#,
            description = "Compare-and-swap: the expected version, as returned in `ETag` (`\"42\"`; `W/\"42\"` and `42` are read the same)"),
        ("If-None-Match" = Option<String>, Header, nullable = false, pattern = "^\\*?$",
            description = "`*`: create only if absent (an empty value is no condition). Lists of entity tags are not supported (400)"),
    ),
    request_body(content = AnyJson, description = "Any JSON value without U+0000 in its strings and keys, at most 1 MiB serialized", example = json!({"hello": "world"})),
    responses(
        (status = 200, description = "Stored", body = KvWritten, links(
            ("GetRecord" = (operation_id = "get_record", parameters(("key" = "$request.path.key")))),
            ("DeleteRecord" = (operation_id = "delete_record", parameters(("key" = "$request.path.key")))),
        )),
        (status = 201, description = "Created (If-None-Match: *)", body = KvWritten, links(
            ("GetRecord" = (operation_id = "get_record", parameters(("key" = "$request.path.key")))),
            ("DeleteRecord" = (operation_id = "delete_record", parameters(("key" = "$request.path.key")))),
        )),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "If-Match on a key with no visible record", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The precondition failed: the record's version is not the one in If-Match, or a record exists (If-None-Match: *)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:write"])))]
pub(crate) async fn put_record(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(key): ApiPath<String>,
    ApiQuery(params): ApiQuery<WriteParams>,
    headers: HeaderMap,
    ApiJson(value): ApiJson<Value>,
) -> Result<Response, ApiError> {
    caller.require(Scope::KvWrite)?;
    let key = Key::new(key)?;
    let value = JsonValue::new(value)?;
    let ttl = ttl(params.ttl_ms)?;
    let expected = if_match(&headers)?;
    let create_only = if_none_match_any(&headers)?;
    let backend = &state.backend;
    let (status, version) = match (expected, create_only) {
        (Some(_), true) => {
            // If-Match needs a record, If-None-Match: * needs none: evaluated in RFC 9110's
            // order, the answer is If-Match's 404 without a record and 412 with one.
            let error = match backend.get(&caller.tenant, &key).await? {
                None => Error::not_found(p8fs_core::Resource::Key, &key),
                Some(_) => Error::already_exists(p8fs_core::Resource::Key, &key),
            };
            return Err(ApiError::conditional(error));
        }
        (Some(Expected::Version(expected)), false) => (
            StatusCode::OK,
            backend
                .compare_and_swap(&caller.tenant, &key, expected, &value, ttl)
                .await
                .map_err(ApiError::conditional)?,
        ),
        (Some(Expected::Unmatchable), false) => {
            // The same answers as a compare-and-swap with a version the record does not have.
            let error = match backend.get(&caller.tenant, &key).await? {
                None => Error::not_found(p8fs_core::Resource::Key, &key),
                Some(_) => Error::conflict("the record's version is not the one in If-Match"),
            };
            return Err(ApiError::conditional(error));
        }
        (None, true) => (
            StatusCode::CREATED,
            backend
                .put_if_absent(&caller.tenant, &key, &value, ttl)
                .await
                .map_err(ApiError::conditional)?,
        ),
        (None, false) => (
            StatusCode::OK,
            backend.put(&caller.tenant, &key, &value, ttl).await?,
        ),
    };
    let written = KvWritten {
        key: key.into_string(),
        version: version.to_string(),
    };
    Ok((status, [(header::ETAG, etag(version))], Json(written)).into_response())
}

/// Deletes a record.
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "greeting")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No visible record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:write"])))]
pub(crate) async fn delete_record(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::KvWrite)?;
    let key = Key::new(key)?;
    if state.backend.delete(&caller.tenant, &key).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(p8fs_core::Resource::Key, &key).into())
    }
}

/// Lists records in key order, optionally under a prefix.
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(ScanParams),
    responses(
        (status = 200, description = "A page of records", body = KvRecordPage),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:read", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:read"])))]
pub(crate) async fn scan(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<ScanParams>,
) -> Result<Json<KvRecordPage>, ApiError> {
    caller.require(Scope::KvRead)?;
    let prefix = KeyPrefix::new(params.prefix.unwrap_or_default())?;
    let start_after = params
        .start_after
        .map(|k| Key::named("start_after", k))
        .transpose()?;
    let limit = limit(params.limit)?;
    let result = state
        .backend
        .scan(&caller.tenant, &prefix, start_after.as_ref(), limit)
        .await?;
    Ok(Json(page(result)))
}

/// Finds records whose value holds `value` at `path`.
#[utoipa::path(post, path = "/v1/kv-find", tag = "kv", request_body = FindRequest,
    responses(
        (status = 200, description = "A page of matching records", body = KvRecordPage),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:read", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["kv:read"])))]
pub(crate) async fn find(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiObject(request): ApiObject<FindRequest>,
) -> Result<Json<KvRecordPage>, ApiError> {
    caller.require(Scope::KvRead)?;
    let path = JsonPath::new(request.path)?;
    let operand = JsonValue::operand("value", request.value)?;
    let start_after = request
        .start_after
        .map(|k| Key::named("start_after", k))
        .transpose()?;
    let limit = limit(request.limit)?;
    let result = find_by_field(
        state.backend.as_ref(),
        &caller.tenant,
        &path,
        &operand,
        start_after.as_ref(),
        limit,
    )
    .await?;
    Ok(Json(page(result)))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use p8fs_core::JsonText;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn if_match_takes_one_version() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        for (value, version) in [("\"42\"", 42), ("W/\"42\"", 42), ("42", 42), ("\"007\"", 7)] {
            assert_eq!(
                if_match(&headers(header::IF_MATCH, value)).unwrap(),
                Some(Expected::Version(Version(version))),
                "{value}"
            );
        }
        // Twenty digits are well-formed; past u64 they match nothing.
        assert_eq!(
            if_match(&headers(header::IF_MATCH, "\"99999999999999999999\"")).unwrap(),
            Some(Expected::Unmatchable)
        );
        for value in [
            "",
            "*",
            "\"\"",
            "\"42",
            "42\"",
            "W/42",
            "+42",
            "\"4 2\"",
            "\"1\", \"2\"",
            "123456789012345678901",
        ] {
            let error = if_match(&headers(header::IF_MATCH, value)).expect_err(value);
            assert_eq!(error.field(), Some("if-match"), "{value}");
        }
    }

    #[test]
    fn a_read_record_is_the_json_of_a_kv_record() {
        let value = serde_json::json!({"text": "a \"quoted\" line\n\u{1}", "n": [1, 2.5, null]});
        for expires_at in [None, Some(1_700_000_000_000)] {
            let key = "notes/\u{e9} \"x\"\\";
            let owned = KvRecord {
                key: key.to_owned(),
                value: value.clone(),
                version: "18446744073709551615".to_owned(),
                expires_at,
            };
            let record = KvText {
                value: JsonText::of(&value),
                version: Version(u64::MAX),
                expires_at,
            };
            assert_eq!(
                serde_json::to_vec(&view(&Key::new(key).unwrap(), &record)).unwrap(),
                serde_json::to_vec(&owned).unwrap()
            );
        }
        for version in [0, 42, u64::MAX] {
            assert_eq!(
                etag(Version(version)).to_str().unwrap(),
                format!("\"{version}\"")
            );
        }
    }

    #[test]
    fn if_none_match_takes_only_a_star() {
        assert!(!if_none_match_any(&HeaderMap::new()).unwrap());
        assert!(if_none_match_any(&headers(header::IF_NONE_MATCH, "*")).unwrap());
        // An empty list of entity tags is no condition.
        assert!(!if_none_match_any(&headers(header::IF_NONE_MATCH, "")).unwrap());
        for value in ["\"1\"", "W/\"1\"", "*, \"1\"", "x"] {
            let error = if_none_match_any(&headers(header::IF_NONE_MATCH, value)).expect_err(value);
            assert_eq!(error.field(), Some("if-none-match"), "{value}");
        }
    }
}
