//! `/v1/kv`: key-value records. `PUT` stores the request body (any JSON value) as the value;
//! `If-None-Match: *` makes it create-only and `If-Match: "<version>"` a compare-and-swap, both
//! answered with 412 when the precondition fails.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use p8fs_auth::Scope;
use p8fs_core::kv::{KvPage, find_by_field};
use p8fs_core::{Error, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, Limit, Ttl, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem, rename_field};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::{DEFAULT_PAGE, RestState};

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
    /// Time to live in milliseconds (1 ..= 100 years); absent means the record is permanent.
    #[param(minimum = 1, maximum = 3155760000000_i64)]
    pub ttl_ms: Option<i64>,
}

/// A scan.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    /// Only keys starting with this prefix (at most 1024 bytes).
    #[param(max_length = 256, pattern = "^[^\\u0000]*$")]
    pub prefix: Option<String>,
    /// Only keys after this one (the previous page's `next`).
    #[param(min_length = 1, max_length = 256, pattern = "^[^\\u0000]+$")]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A find-by-field query: records whose JSON value holds `value` at the dot `path`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindRequest {
    /// A dot path through object keys, e.g. `owner.id` (at most 256 bytes; no empty segment).
    #[schema(pattern = "^[^.\\u0000]+(\\.[^.\\u0000]+)*$", max_length = 64)]
    pub path: String,
    /// The value to match: type-strict JSON equality, except that numbers compare by value.
    pub value: Value,
    #[schema(min_length = 1, max_length = 256, pattern = "^[^\\u0000]+$")]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[schema(minimum = 1, maximum = 1000)]
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

fn page(page: KvPage) -> KvRecordPage {
    KvRecordPage {
        items: page.items.into_iter().map(record).collect(),
        next: page.next.map(Key::into_string),
    }
}

fn etag(version: Version) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

pub(crate) fn ttl(ttl_ms: Option<i64>) -> Result<Option<Ttl>, Error> {
    ttl_ms
        .map(|ms| Ttl::from_millis(ms).map_err(|e| rename_field(e, "ttl_ms")))
        .transpose()
}

pub(crate) fn limit(limit: Option<u64>) -> Result<Limit, Error> {
    Limit::new(limit.unwrap_or(DEFAULT_PAGE))
}

/// The version an `If-Match` header names: `"123"`, `W/"123"` or `123`.
fn if_match(headers: &HeaderMap) -> Result<Option<Version>, Error> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse::<u64>().map(|v| Some(Version(v))).map_err(|_| {
        Error::invalid(
            "if-match",
            "must be a version returned by this API, e.g. \"42\"",
        )
    })
}

fn if_none_match_any(headers: &HeaderMap) -> Result<bool, Error> {
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(false),
        Some(value) if value.as_bytes() == b"*" => Ok(true),
        Some(_) => Err(Error::invalid("if-none-match", "only `*` is supported")),
    }
}

/// Reads a record.
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv",
    params(("key" = String, Path, description = "The key: 1..=1024 bytes of UTF-8, percent-encoded", min_length = 1, max_length = 256, pattern = "^[^\\u0000]+$")),
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
    let entry = state
        .backend
        .get(&caller.tenant, &key)
        .await?
        .ok_or_else(|| Error::not_found(p8fs_core::Resource::Key, &key))?;
    let tag = etag(entry.version);
    Ok(([(header::ETAG, tag)], Json(record(entry))).into_response())
}

/// Stores the body as the record's value.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv",
    params(
        ("key" = String, Path, description = "The key: 1..=1024 bytes of UTF-8, percent-encoded", min_length = 1, max_length = 256, pattern = "^[^\\u0000]+$"),
        WriteParams,
        ("If-Match" = Option<String>, Header, description = "Compare-and-swap: the expected version, quoted"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only if absent"),
    ),
    request_body(content = Value, description = "Any JSON value, at most 1 MiB serialized"),
    responses(
        (status = 200, description = "Stored", body = KvWritten),
        (status = 201, description = "Created (If-None-Match: *)", body = KvWritten),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope kv:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "If-Match on a key with no visible record", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The precondition failed", body = Problem, content_type = "application/problem+json"),
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
            return Err(ApiError::invalid(
                "if-none-match",
                "cannot be combined with If-Match",
            ));
        }
        (Some(expected), false) => (
            StatusCode::OK,
            backend
                .compare_and_swap(&caller.tenant, &key, expected, &value, ttl)
                .await
                .map_err(ApiError::conditional)?,
        ),
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
    params(("key" = String, Path, description = "The key, percent-encoded", min_length = 1, max_length = 256, pattern = "^[^\\u0000]+$")),
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
    ApiJson(request): ApiJson<FindRequest>,
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
