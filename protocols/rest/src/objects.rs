//! `/v1/objects`: the S3 front-end's buckets and objects for clients that do not speak S3. The
//! same records, the same rules: an upload streams into a pending blob in bounded memory and
//! becomes visible in one commit ([`ObjectWriter`], then `put_object`); a download streams chunk
//! by chunk; listings are core's [`list_objects_v2`]; ranges and read conditions are decided by
//! core. Objects are governed by the scopes `s3:read` and `s3:write` on every front-end.
//!
//! Upload bodies are not buffered: the gateway lets `PUT /v1/objects/{bucket}/{key}` through its
//! body-buffering layer ([`streams_body`]), and the size limit is [`MAX_PUT_BYTES`], as for an
//! S3 PUT. `Range` takes one `bytes=` range; a malformed or multi-range header is ignored
//! (RFC 9110 §14.2 lets a server answer 200 with the whole object), an unsatisfiable one is 416.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use p8fs_auth::Scope;
use p8fs_core::object::{
    ByteRange, MAX_PUT_BYTES, ObjectWriter, ReadPreconditions, ReadRefusal,
    check_read_preconditions, chunk_reads, from_after, hex, list_objects_v2, unhex,
};
use p8fs_core::{
    BucketInfo, BucketName, Error, Limit, ObjectAttributes, ObjectKey, ObjectMeta, ObjectPrefix,
    Precondition, Resource, TenantId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem, rename_field};
use crate::extract::{ApiPath, ApiQuery, Caller};
use crate::kv::ttl;
use crate::{DEFAULT_PAGE, RestState};

/// The path prefix of object routes.
const OBJECTS_PREFIX: &str = "/v1/objects/";

/// Whether a request is an object upload, whose body the handler streams itself (the gateway
/// must not buffer it): `PUT /v1/objects/{bucket}/{key}`.
pub fn streams_body(method: &Method, path: &str) -> bool {
    method == Method::PUT
        && path
            .strip_prefix(OBJECTS_PREFIX)
            .is_some_and(|rest| rest.split_once('/').is_some_and(|(_, key)| !key.is_empty()))
}

/// A bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    pub name: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// The caller's buckets, names ascending.
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketList {
    pub buckets: Vec<Bucket>,
}

/// An object's description (its bytes are at `GET /v1/objects/{bucket}/{key}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// The MD5 of the bytes in hex for a single upload, `md5(part md5s)-N` for an S3 multipart
    /// upload; quoted, it is the `ETag` header.
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Milliseconds since the Unix epoch after which the object is gone; absent means never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A page of a listing, keys ascending by raw UTF-8 bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ObjectPage {
    pub objects: Vec<ObjectInfo>,
    /// With a `delimiter`: the distinct key prefixes up to and including the first delimiter
    /// after `prefix`, listed once instead of their objects.
    pub common_prefixes: Vec<String>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A listing of objects.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only keys starting with this prefix: at most 1024 bytes of UTF-8 without U+0000.
    #[param(
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]*$"
    )]
    pub prefix: Option<String>,
    /// Roll keys holding this string after the prefix up into `common_prefixes` (usually `/`);
    /// empty is none.
    #[param(
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]*$"
    )]
    pub delimiter: Option<String>,
    /// Only keys after this one: 1..=1024 bytes of UTF-8. With `cursor` it is still checked, but
    /// the cursor decides where the page starts.
    #[param(
        min_length = 1,
        max_length = 1024,
        format = "utf8-max-1024-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub start_after: Option<String>,
    /// The previous page's `next`.
    #[param(min_length = 2, max_length = 2050, pattern = "^([0-9a-f]{2})+$")]
    pub cursor: Option<String>,
    /// Objects and common prefixes per page, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// Options of an upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Time to live in milliseconds (1 ..= 100 years), as decimal digits; absent means the
    /// object is permanent.
    #[param(minimum = 1, maximum = 3155760000000_i64)]
    pub ttl_ms: Option<i64>,
}

const BUCKET_DESCRIPTION: &str = "A bucket name, as S3 names buckets: 3..=63 characters of \
    lower-case letters, digits, `.` and `-`, beginning and ending with a letter or digit; not an \
    IPv4 address, and none of S3's reserved prefixes (`xn--`, `sthree-`, `amzn-s3-demo-`) or \
    suffixes (`-s3alias`, `--ol-s3`, `--x-s3`, `.mrap`)";
const KEY_DESCRIPTION: &str = "The object key, percent-encoded: 1..=1024 bytes of UTF-8 without \
    U+0000 (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)";

fn bucket(info: BucketInfo) -> Bucket {
    Bucket {
        name: info.name.as_str().to_owned(),
        created_at: info.created_at,
    }
}

fn info(meta: ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.key.as_str().to_owned(),
        size: meta.size,
        etag: meta.etag,
        last_modified: meta.last_modified,
        content_type: meta.attributes.content_type,
        expires_at: meta.expires_at,
    }
}

/// Lists the caller's buckets.
#[utoipa::path(get, path = "/v1/objects", tag = "objects",
    responses(
        (status = 200, description = "The buckets, names ascending", body = BucketList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:read", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:read"])))]
pub(crate) async fn list_buckets(
    State(state): State<RestState>,
    Caller(caller): Caller,
) -> Result<Json<BucketList>, ApiError> {
    caller.require(Scope::S3Read)?;
    let buckets = state.backend.list_buckets(&caller.tenant).await?;
    Ok(Json(BucketList {
        buckets: buckets.into_iter().map(bucket).collect(),
    }))
}

/// Creates a bucket; a bucket the caller already has is left as it is (200).
#[utoipa::path(put, path = "/v1/objects/{bucket}", tag = "objects",
    params(("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes")),
    responses(
        (status = 201, description = "Created", body = Bucket),
        (status = 200, description = "The caller already had it", body = Bucket),
        (status = 400, description = "Bad input, or the caller has the most buckets allowed (1000)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:write"])))]
pub(crate) async fn create_bucket(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::S3Write)?;
    let name = BucketName::new(name)?;
    match state.backend.create_bucket(&caller.tenant, &name).await {
        Ok(info) => Ok((StatusCode::CREATED, Json(bucket(info))).into_response()),
        Err(Error::AlreadyExists { .. }) => {
            let info = state
                .backend
                .bucket(&caller.tenant, &name)
                .await?
                .ok_or_else(|| Error::not_found(Resource::Bucket, &name))?;
            Ok((StatusCode::OK, Json(bucket(info))).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

/// Deletes an empty bucket.
#[utoipa::path(delete, path = "/v1/objects/{bucket}", tag = "objects",
    params(("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes")),
    responses(
        (status = 204, description = "Deleted, with its unfinished multipart uploads"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The bucket holds objects", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:write"])))]
pub(crate) async fn delete_bucket(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::S3Write)?;
    let name = BucketName::new(name)?;
    state.backend.delete_bucket(&caller.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a bucket's objects, keys ascending by raw UTF-8 bytes.
#[utoipa::path(get, path = "/v1/objects/{bucket}", tag = "objects",
    params(
        ("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes"),
        ListParams,
    ),
    responses(
        (status = 200, description = "A page of objects", body = ObjectPage),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:read"])))]
pub(crate) async fn list_objects(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ObjectPage>, ApiError> {
    caller.require(Scope::S3Read)?;
    let name = BucketName::new(name)?;
    let prefix = ObjectPrefix::new(params.prefix.unwrap_or_default())?;
    let limit = Limit::new(params.limit.unwrap_or(DEFAULT_PAGE))?;
    // `start_after` is checked even when a cursor overrides it: a malformed parameter is an
    // error wherever it appears.
    let after = params
        .start_after
        .map(|after| ObjectKey::new(after).map_err(|e| rename_field(e, "start_after")))
        .transpose()?;
    let from = match (params.cursor, after) {
        (Some(cursor), _) => unhex(&cursor)
            .filter(|from| !from.is_empty())
            .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API issued"))?,
        (None, Some(after)) => from_after(after.as_str()),
        (None, None) => Vec::new(),
    };
    let listing = list_objects_v2(
        state.backend.as_ref(),
        &caller.tenant,
        &name,
        &prefix,
        params.delimiter.as_deref(),
        &from,
        u32::try_from(limit.get()).unwrap_or(u32::MAX),
    )
    .await?;
    Ok(Json(ObjectPage {
        objects: listing.objects.into_iter().map(info).collect(),
        common_prefixes: listing.common_prefixes,
        next: listing.next_from.as_deref().map(hex),
    }))
}

/// Uploads the body as the object's bytes, replacing any object at the key.
#[utoipa::path(put, path = "/v1/objects/{bucket}/{key}", tag = "objects",
    params(
        ("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes"),
        ("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "2026/12/plan.txt"),
        UploadParams,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^("[0-9a-f]{32}(-[0-9]{1,5})?")?$"#,
            description = "Replace only the object with this ETag (empty: no condition)"),
        ("If-None-Match" = Option<String>, Header, nullable = false, pattern = "^\\*?$",
            description = "`*`: create only if no object exists at the key (empty: no condition)"),
    ),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream", description = "The object's bytes, at most 5 GiB (none: an empty object); the `Content-Type` header is stored and returned on download"),
    responses(
        (status = 200, description = "Stored", body = ObjectInfo),
        (status = 201, description = "Created (If-None-Match: *)", body = ObjectInfo),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket, or If-Match with no object at the key", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The precondition failed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 5 GiB", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:write"])))]
pub(crate) async fn put_object(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, key)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(Scope::S3Write)?;
    let name = BucketName::new(name)?;
    let key = ObjectKey::new(key)?;
    let ttl = ttl(params.ttl_ms)?;
    let condition = write_condition(&headers)?;
    let content_type = header_text(&headers, header::CONTENT_TYPE, "content-type")?;
    let attributes = ObjectAttributes {
        content_type,
        ..ObjectAttributes::default()
    };
    attributes.validate()?;
    if let Some(length) = header_text(&headers, header::CONTENT_LENGTH, "content-length")?
        && length.parse::<u64>().is_ok_and(|l| l > MAX_PUT_BYTES)
    {
        return Err(ApiError::with_status(
            Error::invalid("body", format!("is larger than {MAX_PUT_BYTES} bytes")),
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    let tenant = &caller.tenant;
    let backend = state.backend.as_ref();
    // Refused before the body is read: nothing is stored for a bucket that does not exist.
    if backend.bucket(tenant, &name).await?.is_none() {
        return Err(Error::not_found(Resource::Bucket, &name).into());
    }
    let written = receive(backend, tenant, body).await?;
    let now = state.clock.now();
    let meta = ObjectMeta {
        key,
        size: written.size,
        etag: written.md5.clone(),
        last_modified: now,
        expires_at: p8fs_core::expires_at(now, ttl),
        attributes,
        segments: vec![written.segment()],
    };
    if let Err(error) = backend.put_object(tenant, &name, &meta, &condition).await {
        if let Err(error) = backend.discard_data(tenant, written.data).await {
            tracing::warn!(%error, "discarding the blob of a refused upload failed");
        }
        return Err(match condition {
            Precondition::None => error.into(),
            _ => ApiError::conditional(error),
        });
    }
    let status = match condition {
        Precondition::IfAbsent => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let tag = quoted(&meta.etag);
    Ok((status, [(header::ETAG, tag)], Json(info(meta))).into_response())
}

/// Streams `body` into a new pending blob; on any failure the blob is discarded.
async fn receive(
    backend: &dyn p8fs_core::Backend,
    tenant: &TenantId,
    body: Body,
) -> Result<p8fs_core::object::WrittenData, ApiError> {
    let mut writer = ObjectWriter::begin(backend, tenant, MAX_PUT_BYTES).await?;
    let data = writer.data();
    let mut stream = body.into_data_stream();
    let result = async {
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(|error| {
                tracing::debug!(%error, "cannot read an upload body");
                ApiError::invalid("body", "the request body ended early or is malformed")
            })?;
            writer.write(&bytes).await.map_err(|error| match error {
                Error::InvalidInput { .. } => {
                    ApiError::with_status(error, StatusCode::PAYLOAD_TOO_LARGE)
                }
                other => other.into(),
            })?;
        }
        Ok(writer.finish().await?)
    }
    .await;
    if result.is_err()
        && let Err(error) = backend.discard_data(tenant, data).await
    {
        tracing::warn!(%error, "discarding the blob of a failed upload failed");
    }
    result
}

/// Downloads an object (or one byte range of it); `HEAD` answers the same headers.
#[utoipa::path(get, path = "/v1/objects/{bucket}/{key}", tag = "objects",
    params(
        ("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes"),
        ("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "2026/12/plan.txt"),
        ("Range" = Option<String>, Header, nullable = false, description = "One range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; anything else is ignored"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Entity tags, or `*`: 412 unless one matches"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "Entity tags, or `*`: 304 if one matches"),
        ("If-Modified-Since" = Option<String>, Header, nullable = false, description = "An HTTP date: 304 unless modified after it"),
        ("If-Unmodified-Since" = Option<String>, Header, nullable = false, description = "An HTTP date: 412 if modified after it"),
    ),
    responses(
        (status = 200, description = "The object's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket or object", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The precondition failed", body = Problem, content_type = "application/problem+json"),
        (status = 416, description = "The range is not satisfiable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:read"])))]
pub(crate) async fn get_object(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, key)): ApiPath<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Scope::S3Read)?;
    let name = BucketName::new(name)?;
    let key = ObjectKey::new(key)?;
    let tenant = caller.tenant;
    let backend = state.backend.clone();
    if backend.bucket(&tenant, &name).await?.is_none() {
        return Err(Error::not_found(Resource::Bucket, &name).into());
    }
    let meta = backend
        .object(&tenant, &name, &key)
        .await?
        .ok_or_else(|| Error::not_found(Resource::Object, &key))?;
    // Its stored bytes are ciphertext under a key only the client holds (SSE-C), which this
    // API cannot carry: refused rather than served as if they were the object.
    meta.refuse_client_held_key()?;
    let conditions = read_conditions(&headers);
    let mut response = Response::builder()
        .header(header::ETAG, quoted(&meta.etag))
        .header(header::LAST_MODIFIED, http_date(meta.last_modified))
        .header(header::ACCEPT_RANGES, "bytes");
    match check_read_preconditions(&meta, &conditions) {
        Ok(()) => {}
        Err(ReadRefusal::NotModified) => {
            return Ok(response
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .unwrap_or_default());
        }
        Err(ReadRefusal::PreconditionFailed) => {
            return Err(ApiError::with_status(
                Error::conflict("a precondition of the request did not hold"),
                StatusCode::PRECONDITION_FAILED,
            ));
        }
    }
    let (status, start, end) = match range(&headers) {
        None => (StatusCode::OK, 0, meta.size),
        Some(range) => match range.resolve(meta.size) {
            Ok((start, end)) => {
                response = response.header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{}/{}", end - 1, meta.size),
                );
                (StatusCode::PARTIAL_CONTENT, start, end)
            }
            Err(error) => {
                let mut refused =
                    ApiError::with_status(error, StatusCode::RANGE_NOT_SATISFIABLE).into_response();
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                    refused.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return Ok(refused);
            }
        },
    };
    let content_type = meta
        .attributes
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    response = response
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, end - start);
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let reads = chunk_reads(&meta.segments, start, end);
        let chunks = futures::stream::iter(reads)
            .map(move |read| {
                let backend = backend.clone();
                let tenant = tenant.clone();
                async move {
                    let bytes = backend.read_chunk(&tenant, read.data, read.index).await?;
                    bytes
                        .get(read.start..read.end)
                        .map(Bytes::copy_from_slice)
                        .ok_or_else(|| {
                            Error::internal("a stored chunk is shorter than its object says", None)
                        })
                }
            })
            // One chunk read ahead while the client takes the previous one.
            .buffered(2)
            .inspect_err(|error| tracing::warn!(%error, "reading an object chunk failed"));
        Body::from_stream(chunks)
    };
    response.body(body).map_err(|e| {
        Error::internal(
            "cannot build a download response",
            Some(Box::new(e) as p8fs_core::error::Source),
        )
        .into()
    })
}

/// Deletes an object.
#[utoipa::path(delete, path = "/v1/objects/{bucket}/{key}", tag = "objects",
    params(
        ("bucket" = String, Path, description = BUCKET_DESCRIPTION, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes"),
        ("key" = String, Path, description = KEY_DESCRIPTION, min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "2026/12/plan.txt"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope s3:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket or object", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["s3:write"])))]
pub(crate) async fn delete_object(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::S3Write)?;
    let name = BucketName::new(name)?;
    let key = ObjectKey::new(key)?;
    if state
        .backend
        .delete_object(&caller.tenant, &name, &key)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(Resource::Object, &key).into())
    }
}

/// A header's value as text, `None` when absent; non-visible-ASCII is a 400 naming `field`.
fn header_text(
    headers: &HeaderMap,
    name: header::HeaderName,
    field: &'static str,
) -> Result<Option<String>, Error> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| Error::invalid(field, "must be visible ASCII"))
        })
        .transpose()
}

/// The write condition of `If-Match: "<etag>"` or `If-None-Match: *`, one of them. A header with
/// an empty value is an empty list of entity tags (RFC 9110 section 5.6.1), so no condition, as on
/// `PUT /v1/kv/{key}`. Both at once cannot hold (`If-Match` needs the object, `If-None-Match: *`
/// its absence), so the answer is 412 whatever is stored (RFC 9110 section 13.2.2).
fn write_condition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let present = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
    // Checked first, so a malformed `If-Match` is a 400 whatever else was sent.
    let if_match = present(header_text(headers, header::IF_MATCH, "if-match")?)
        .map(|tag| entity_tag(&tag))
        .transpose()?;
    let if_none_match = present(header_text(
        headers,
        header::IF_NONE_MATCH,
        "if-none-match",
    )?);
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (Some(etag), None) => Ok(Precondition::IfEtag(etag)),
        (None, Some(tag)) if tag.trim() == "*" => Ok(Precondition::IfAbsent),
        (Some(_), Some(tag)) if tag.trim() == "*" => Err(ApiError::conditional(Error::conflict(
            "If-Match and If-None-Match: * cannot both hold",
        ))),
        (_, Some(_)) => Err(Error::invalid(
            "if-none-match",
            "only `*` is supported on uploads (create only if absent)",
        )
        .into()),
    }
}

/// The entity tag of an `If-Match` on an upload: one quoted ETag as p8fs makes them, 32
/// lowercase hex digits with an optional `-<parts>` (the documented pattern); a 400 naming
/// `if-match` otherwise.
fn entity_tag(value: &str) -> Result<String, Error> {
    let invalid = || {
        Error::invalid(
            "if-match",
            "must be one quoted entity tag: 32 lowercase hex digits, optionally -<parts>",
        )
    };
    let tag = value
        .trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(invalid)?;
    let (digest, parts) = match tag.split_once('-') {
        Some((digest, parts)) => (digest, Some(parts)),
        None => (tag, None),
    };
    let hex = digest.len() == 32
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let parts_ok =
        parts.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if hex && parts_ok {
        Ok(tag.to_owned())
    } else {
        Err(invalid())
    }
}

/// The read conditions of a download. A header that does not parse is ignored, as RFC 9110
/// says of an invalid date.
fn read_conditions(headers: &HeaderMap) -> ReadPreconditions {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let tags = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(|t| {
                let t = t.trim();
                let t = t.strip_prefix("W/").unwrap_or(t);
                t.trim_matches('"').to_owned()
            })
            .filter(|t| !t.is_empty())
            .collect()
    };
    let date = |value: &str| {
        httpdate::parse_http_date(value).ok().and_then(|time| {
            let millis = time.duration_since(UNIX_EPOCH).ok()?.as_millis();
            i64::try_from(millis).ok()
        })
    };
    ReadPreconditions {
        if_match: text(header::IF_MATCH).map(tags),
        if_none_match: text(header::IF_NONE_MATCH).map(tags),
        if_modified_since: text(header::IF_MODIFIED_SINCE).and_then(date),
        if_unmodified_since: text(header::IF_UNMODIFIED_SINCE).and_then(date),
    }
}

/// The one `bytes=` range of a `Range` header, `None` when absent or not one well-formed range.
fn range(headers: &HeaderMap) -> Option<ByteRange> {
    let spec = headers
        .get(header::RANGE)?
        .to_str()
        .ok()?
        .trim()
        .strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => number(suffix).map(ByteRange::Suffix),
        (first, "") => number(first).map(|first| ByteRange::FromTo { first, last: None }),
        (first, last) => Some(ByteRange::FromTo {
            first: number(first)?,
            last: Some(number(last)?),
        }),
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) of milliseconds since the epoch.
fn http_date(millis: i64) -> String {
    let millis = u64::try_from(millis).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn only_object_uploads_stream() {
        assert!(streams_body(&Method::PUT, "/v1/objects/notes/a/b.txt"));
        assert!(!streams_body(&Method::PUT, "/v1/objects/notes"));
        assert!(!streams_body(&Method::PUT, "/v1/objects/notes/"));
        assert!(!streams_body(&Method::GET, "/v1/objects/notes/a"));
        assert!(!streams_body(&Method::PUT, "/v1/kv/notes/a"));
    }

    #[test]
    fn ranges_parse_one_range_or_nothing() {
        let r = |v: &str| range(&headers(&[(header::RANGE, v)]));
        assert_eq!(
            r("bytes=0-9"),
            Some(ByteRange::FromTo {
                first: 0,
                last: Some(9)
            })
        );
        assert_eq!(
            r("bytes=5-"),
            Some(ByteRange::FromTo {
                first: 5,
                last: None
            })
        );
        assert_eq!(r("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(r("bytes=0-1,4-5"), None);
        assert_eq!(r("bytes=a-b"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=-"), None);
    }

    #[test]
    fn write_conditions() {
        assert_eq!(
            write_condition(&headers(&[(header::IF_NONE_MATCH, "*")])).unwrap(),
            Precondition::IfAbsent
        );
        let etag = "0cc175b9c0f1b6a831c399e269772661";
        let quoted = format!("\"{etag}\"");
        assert_eq!(
            write_condition(&headers(&[(header::IF_MATCH, quoted.as_str())])).unwrap(),
            Precondition::IfEtag(etag.into())
        );
        let multipart = format!("\"{etag}-12\"");
        assert_eq!(
            write_condition(&headers(&[(header::IF_MATCH, multipart.as_str())])).unwrap(),
            Precondition::IfEtag(format!("{etag}-12"))
        );
        // Not an ETag p8fs makes: a 400 naming if-match, also beside If-None-Match: *.
        for bad in [
            "\"abc\"",
            "-l 0Gk&K",
            "\"0CC175B9C0F1B6A831C399E269772661\"",
            "\"0cc175b9c0f1b6a831c399e269772661-\"",
            "\"0cc175b9c0f1b6a831c399e269772661-123456\"",
        ] {
            let err = write_condition(&headers(&[(header::IF_MATCH, bad)])).unwrap_err();
            assert_eq!(err.field(), Some("if-match"), "{bad}");
            let with_absent = [(header::IF_MATCH, bad), (header::IF_NONE_MATCH, "*")];
            let err = write_condition(&headers(&with_absent)).unwrap_err();
            assert_eq!(err.field(), Some("if-match"), "{bad}");
        }
        let err = write_condition(&headers(&[(header::IF_NONE_MATCH, "\"abc\"")])).unwrap_err();
        assert_eq!(err.field(), Some("if-none-match"));
        let err = write_condition(&headers(&[(header::IF_MATCH, "abc")])).unwrap_err();
        assert_eq!(err.field(), Some("if-match"));
        for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
            assert_eq!(
                write_condition(&headers(&[(name, " ")])).unwrap(),
                Precondition::None
            );
        }
        let both = [
            (header::IF_MATCH, quoted.as_str()),
            (header::IF_NONE_MATCH, "*"),
        ];
        let err = write_condition(&headers(&both)).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::PRECONDITION_FAILED);
    }

    #[test]
    fn cursors_round_trip() {
        let raw = b"a/\xff\x00z".to_vec();
        assert_eq!(unhex(&hex(&raw)), Some(raw));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn dates_round_trip_to_the_second() {
        let text = http_date(1_700_000_000_123);
        assert_eq!(text, "Tue, 14 Nov 2023 22:13:20 GMT");
        let conditions = read_conditions(&headers(&[(header::IF_MODIFIED_SINCE, &text)]));
        assert_eq!(conditions.if_modified_since, Some(1_700_000_000_000));
    }
}
