//! `/v1/memories`, `/v1/search` and `/v1/index`: notes stored as memories, search by meaning
//! over memories and indexed objects (exact, or approximate with `mode` and `ef` as the vector
//! search takes them), and the index status of an object (scopes
//! `memories:read` and `memories:write`). The work is [`p8fs_memory::Memory`]'s; with
//! `[embeddings] provider = "none"` these routes answer 503.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use p8fs_auth::Scope;
use p8fs_core::validate::MAX_PATH_BYTES;
use p8fs_core::vector::SearchMode;
use p8fs_core::{BucketName, Error, Limit, ObjectKey};
use p8fs_memory::{
    Found, IndexStatus, MAX_QUERY_METADATA, MAX_QUERY_TAGS, MAX_TAG_BYTES, MAX_TAGS, MemoryRecord,
    NewMemory, Origin, Query, SourceKind,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayBuilder, Object, ObjectBuilder, Ref, Schema, SchemaFormat,
    Type,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::{ApiError, Problem};
use crate::extract::{ApiObject, ApiPath, ApiQuery, Caller};
use crate::kv::{DOT_PATH_PATTERN, limit, ttl};
use crate::schema::{AnyJson, AnyJsonObject};
use crate::vectors::{
    ef_needs_approximate, ef_parameter_schema, ef_schema, mode_parameter_schema, mode_schema,
};
use crate::{RestState, integer};

/// Search results when a request names no `k`.
const DEFAULT_K: u64 = 10;

/// A memory to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "The quarterly review moved to Friday 10:00.", "tags": ["work"], "metadata": {"project": "apollo"}}))]
pub struct CreateMemory {
    /// The note: 1..=65536 bytes of UTF-8 without U+0000 by default (the server's
    /// `embeddings.max_memory_bytes`; a longer text is a 400 naming `text`).
    #[schema(
        min_length = 1,
        max_length = 65536,
        format = "utf8-max-65536-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub text: String,
    /// A JSON object, at most 8 KiB serialized; searches can filter on it.
    #[serde(default)]
    #[schema(value_type = Option<AnyJsonObject>)]
    pub metadata: Option<Map<String, Value>>,
    /// At most 32 tags of 1..=64 bytes, without `.` or control characters.
    #[serde(default)]
    #[schema(schema_with = tags_schema)]
    pub tags: Vec<String>,
    /// Time to live in milliseconds (a minute ..= 100 years); the memory and its chunks expire
    /// together.
    #[schema(minimum = 60000, maximum = 3155760000000_i64)]
    #[serde(default, deserialize_with = "integer::optional_i64")]
    pub ttl_ms: Option<i64>,
}

/// A stored memory.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryItem {
    /// `m` and 28 hex digits; ids sort by creation time.
    pub id: String,
    pub text: String,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// How many chunks the text was cut into for search.
    pub chunks: u64,
    /// Whether text past the chunk limit was left out of the index.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A page of memories, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryPage {
    pub items: Vec<MemoryItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMemories {
    /// Only memories after this id (the previous page's `next`).
    #[param(pattern = "^m[0-9a-f]{28}$")]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A link from one memory to another.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "m018f3a2b4c5d6e7f8091a2b3c4d5", "rel": "follows"}))]
pub struct CreateLink {
    /// The other memory's id.
    #[schema(pattern = "^m[0-9a-f]{28}$")]
    pub to: String,
    /// The relation, 1..=128 bytes of UTF-8 without U+0000 (default `link`).
    #[schema(
        min_length = 1,
        max_length = 128,
        format = "utf8-max-128-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub rel: Option<String>,
    /// A positive, finite weight (default 1).
    #[schema(exclusive_minimum = 0)]
    pub weight: Option<f64>,
}

/// A search by meaning (the query string of `GET /v1/search`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// What to look for, in plain words: 1..=4096 bytes of UTF-8.
    #[param(min_length = 1, max_length = 4096, format = "utf8-max-4096-bytes")]
    pub q: String,
    /// How many chunks, 1..=1000 (default 10).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<u64>,
    /// Only chunks of memories, or only chunks of objects.
    #[param(pattern = "^(memory|object)$")]
    pub source: Option<String>,
    /// Only chunks of objects in this bucket.
    #[param(
        min_length = 3,
        max_length = 63,
        pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$"
    )]
    pub bucket: Option<String>,
    /// Only chunks of memories carrying all these tags: 1..=8 comma-separated tags of 1..=64
    /// bytes, without `.` or control characters.
    #[param(
        pattern = "^[^,.\\u0000-\\u001f\\u007f-\\u009f]{1,64}(,[^,.\\u0000-\\u001f\\u007f-\\u009f]{1,64}){0,7}$",
        format = "comma-separated-utf8-max-64-bytes"
    )]
    pub tags: Option<String>,
    /// `exact` (the default) or `approximate`, as in a vector search.
    #[param(schema_with = mode_parameter_schema)]
    pub mode: Option<String>,
    /// With `mode=approximate` only: the candidate list, 1..=4096 (default 64).
    #[param(schema_with = ef_parameter_schema)]
    pub ef: Option<u64>,
}

/// A search by meaning with every filter (the body of `POST /v1/search`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"q": "when is the quarterly review", "k": 5, "tags": ["work"], "metadata": {"project": "apollo"}}))]
pub struct MemorySearchRequest {
    /// What to look for, in plain words: 1..=4096 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 4096, format = "utf8-max-4096-bytes")]
    pub q: String,
    /// How many chunks, 1..=1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "integer::optional_u64")]
    pub k: Option<u64>,
    /// Only chunks of memories, or only chunks of objects.
    #[schema(pattern = "^(memory|object)$")]
    pub source: Option<String>,
    /// Only chunks of objects in this bucket.
    #[schema(
        min_length = 3,
        max_length = 63,
        pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$"
    )]
    pub bucket: Option<String>,
    /// Only chunks of memories carrying all these tags (at most 8).
    #[serde(default)]
    #[schema(schema_with = query_tags_schema)]
    pub tags: Vec<String>,
    /// Only chunks of memories whose metadata holds these values.
    #[serde(default)]
    #[schema(schema_with = metadata_filter_schema)]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default)]
    #[schema(schema_with = mode_schema)]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "integer::optional_u64")]
    #[schema(schema_with = ef_schema)]
    pub ef: Option<u64>,
}

/// The document's [`MemorySearchRequest`]: its derived schema with the dependency of `ef` on
/// `mode` ([`ef_needs_approximate`]).
pub struct MemorySearchBody;

impl PartialSchema for MemorySearchBody {
    fn schema() -> RefOr<Schema> {
        ef_needs_approximate(<MemorySearchRequest as PartialSchema>::schema())
    }
}

impl ToSchema for MemorySearchBody {
    fn name() -> Cow<'static, str> {
        <MemorySearchRequest as ToSchema>::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <MemorySearchRequest as ToSchema>::schemas(schemas);
    }
}

/// One tag: 1..=64 bytes, no `.`, no control characters.
fn tag_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TAG_BYTES))
        .format(Some(SchemaFormat::Custom(format!(
            "utf8-max-{MAX_TAG_BYTES}-bytes"
        ))))
        .pattern(Some("^[^.\\u0000-\\u001f\\u007f-\\u009f]+$"))
        .build()
}

/// A memory's tags.
fn tags_schema() -> Array {
    ArrayBuilder::new()
        .items(tag_schema())
        .max_items(Some(MAX_TAGS))
        .description(Some(format!(
            "At most {MAX_TAGS} tags of 1..=64 bytes of UTF-8, without `.` or control characters \
             (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)."
        )))
        .build()
}

/// A search's tags.
fn query_tags_schema() -> Array {
    ArrayBuilder::new()
        .items(tag_schema())
        .max_items(Some(MAX_QUERY_TAGS))
        .build()
}

/// A search's metadata equalities, `{"dot.path": value}`.
fn metadata_filter_schema() -> Object {
    // The path is looked up under `metadata.`, within the contract's 256-byte path limit.
    let limit = MAX_PATH_BYTES - "metadata.".len();
    let path = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(limit))
        .format(Some(SchemaFormat::Custom(format!(
            "utf8-max-{limit}-bytes"
        ))))
        .pattern(Some(DOT_PATH_PATTERN));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(path))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::Ref(
            Ref::from_schema_name(AnyJson::name()),
        ))))
        .max_properties(Some(MAX_QUERY_METADATA))
        .description(Some(format!(
            "Equalities on the memory's metadata that must all hold: at most \
             {MAX_QUERY_METADATA}, each dot path 1..={limit} bytes with no empty segment."
        )))
        .build()
}

/// Where a chunk comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkSource {
    /// `memory` or `object`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A chunk found by a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemorySearchHit {
    /// Cosine similarity to the query, -1..=1; higher is nearer.
    pub score: f64,
    pub text: String,
    pub source: ChunkSource,
    /// The chunk's position among its source's chunks (from 0) and their number.
    pub chunk: u64,
    pub chunks: u64,
    /// The chunk's byte range in its source's text.
    pub start: u64,
    pub end: u64,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

/// Search results, nearest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemorySearchResults {
    pub hits: Vec<MemorySearchHit>,
}

/// An object's index status.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexStatusBody {
    /// `pending`, `indexed` or `failed`.
    pub state: String,
    /// For `failed`: `unsupported`, `not_text`, `corrupt`, `too_large` or `empty`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For `failed`: why, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The format the text was extracted as (`text`, `markdown`, `html`, `pdf`, `json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    pub chunks: u64,
    /// Whether text past a limit (`embeddings.max_text_bytes`, `max_chunks`) was left out.
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_at: Option<i64>,
}

fn memory_service(state: &RestState) -> Result<&p8fs_memory::Memory, Error> {
    state.memory.as_deref().ok_or_else(|| {
        Error::unavailable(
            "search by meaning is off on this server ([embeddings] provider = \"none\")",
            None,
        )
    })
}

fn item(record: MemoryRecord) -> MemoryItem {
    MemoryItem {
        id: record.id,
        text: record.text,
        metadata: record.metadata,
        tags: record.tags,
        created_at: record.created_at,
        chunks: record.chunks as u64,
        truncated: record.truncated,
        expires_at: record.expires_at,
    }
}

fn hit(found: Found) -> MemorySearchHit {
    let source = match found.origin {
        Origin::Memory { id } => ChunkSource {
            kind: "memory".to_owned(),
            memory: Some(id),
            bucket: None,
            key: None,
        },
        Origin::Object { bucket, key } => ChunkSource {
            kind: "object".to_owned(),
            memory: None,
            bucket: Some(bucket),
            key: Some(key),
        },
    };
    MemorySearchHit {
        score: found.score,
        text: found.text,
        source,
        chunk: found.chunk,
        chunks: found.chunks,
        start: found.start,
        end: found.end,
        tags: found.tags,
        metadata: found.metadata,
    }
}

/// Stores a memory: chunked and embedded before the answer, so it is searchable at once.
#[utoipa::path(post, path = "/v1/memories", tag = "memories",
    request_body = CreateMemory,
    responses(
        (status = 201, description = "Stored", body = MemoryItem),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:write", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over the server's limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off, or the embedder is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:write"])))]
pub(crate) async fn create_memory(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiObject(request): ApiObject<CreateMemory>,
) -> Result<(StatusCode, Json<MemoryItem>), ApiError> {
    caller.require(Scope::MemoriesWrite)?;
    let memory = memory_service(&state)?;
    let new = NewMemory {
        text: request.text,
        metadata: request.metadata.unwrap_or_default(),
        tags: request.tags,
        ttl: ttl(request.ttl_ms)?,
    };
    let stored = memory.remember(&caller.tenant, new).await?;
    Ok((StatusCode::CREATED, Json(item(stored))))
}

/// Lists memories, oldest first.
#[utoipa::path(get, path = "/v1/memories", tag = "memories",
    params(ListMemories),
    responses(
        (status = 200, description = "A page of memories", body = MemoryPage),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:read"])))]
pub(crate) async fn list_memories(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<ListMemories>,
) -> Result<Json<MemoryPage>, ApiError> {
    caller.require(Scope::MemoriesRead)?;
    let memory = memory_service(&state)?;
    let page = memory
        .memories(
            &caller.tenant,
            params.start_after.as_deref(),
            limit(params.limit)?,
        )
        .await?;
    Ok(Json(MemoryPage {
        items: page.items.into_iter().map(item).collect(),
        next: page.next,
    }))
}

/// Reads a memory.
#[utoipa::path(get, path = "/v1/memories/{id}", tag = "memories",
    params(("id" = String, Path, pattern = "^m[0-9a-f]{28}$")),
    responses(
        (status = 200, description = "The memory", body = MemoryItem),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such memory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:read"])))]
pub(crate) async fn get_memory(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MemoryItem>, ApiError> {
    caller.require(Scope::MemoriesRead)?;
    let memory = memory_service(&state)?;
    Ok(Json(item(memory.memory(&caller.tenant, &id).await?)))
}

/// Deletes a memory and all its chunks.
#[utoipa::path(delete, path = "/v1/memories/{id}", tag = "memories",
    params(("id" = String, Path, pattern = "^m[0-9a-f]{28}$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such memory", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:write"])))]
pub(crate) async fn delete_memory(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::MemoriesWrite)?;
    let memory = memory_service(&state)?;
    memory.forget(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Links a memory to another (a graph edge, visible to the graph API too).
#[utoipa::path(post, path = "/v1/memories/{id}/links", tag = "memories",
    params(("id" = String, Path, pattern = "^m[0-9a-f]{28}$")),
    request_body = CreateLink,
    responses(
        (status = 204, description = "Linked"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such memory", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The memory `to` does not exist", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:write"])))]
pub(crate) async fn link_memory(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiObject(request): ApiObject<CreateLink>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::MemoriesWrite)?;
    let memory = memory_service(&state)?;
    memory
        .link(
            &caller.tenant,
            &id,
            &request.to,
            request.rel.as_deref(),
            request.weight,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Finds the chunks of memories and indexed objects nearest to a question's meaning: exactly,
/// or approximately with `mode=approximate` (answered exactly by collections under 10,000
/// chunks and by backends without a graph index).
#[utoipa::path(get, path = "/v1/search", tag = "memories",
    params(SearchParams),
    responses(
        (status = 200, description = "The nearest chunks, nearest first", body = MemorySearchResults),
        (status = 400, description = "Bad input, including `ef` without `mode=approximate` (a dependency between two parameters that their schemas cannot state)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off, or the embedder is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:read"])))]
pub(crate) async fn search(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<MemorySearchResults>, ApiError> {
    let tags = match params.tags {
        None => Vec::new(),
        Some(tags) => tags.split(',').map(str::to_owned).collect(),
    };
    let request = MemorySearchRequest {
        q: params.q,
        k: params.k,
        source: params.source,
        bucket: params.bucket,
        tags,
        metadata: BTreeMap::new(),
        mode: params.mode,
        ef: params.ef,
    };
    run_search(&state, &caller, request).await
}

/// As `GET /v1/search`, with metadata filters in a JSON body.
#[utoipa::path(post, path = "/v1/search", tag = "memories",
    request_body = MemorySearchBody,
    responses(
        (status = 200, description = "The nearest chunks, nearest first", body = MemorySearchResults),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:read", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off, or the embedder is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:read"])))]
pub(crate) async fn search_with_filters(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiObject(request): ApiObject<MemorySearchRequest>,
) -> Result<Json<MemorySearchResults>, ApiError> {
    run_search(&state, &caller, request).await
}

async fn run_search(
    state: &RestState,
    caller: &p8fs_auth::Principal,
    request: MemorySearchRequest,
) -> Result<Json<MemorySearchResults>, ApiError> {
    caller.require(Scope::MemoriesRead)?;
    let memory = memory_service(state)?;
    let k = Limit::new(request.k.unwrap_or(DEFAULT_K))
        .map_err(|e| Error::invalid("k", e.to_string()))?;
    let source = request
        .source
        .as_deref()
        .map(|s| SourceKind::parse("source", s))
        .transpose()?;
    let bucket = request.bucket.map(BucketName::new).transpose()?;
    let mode = SearchMode::parse(request.mode.as_deref(), request.ef)?;
    let query = Query {
        text: request.q,
        k,
        source,
        bucket,
        tags: request.tags,
        metadata: request.metadata.into_iter().collect(),
        mode,
    };
    let found = memory.search(&caller.tenant, &query).await?;
    Ok(Json(MemorySearchResults {
        hits: found.into_iter().map(hit).collect(),
    }))
}

/// Where an uploaded object's indexing stands.
#[utoipa::path(get, path = "/v1/index/{bucket}/{key}", tag = "memories",
    params(
        ("bucket" = String, Path, min_length = 3, max_length = 63, pattern = "^(?!(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$)(?!xn--|sthree-|amzn-s3-demo-)(?!.*(-s3alias|--ol-s3|--x-s3|\\.mrap)$)[a-z0-9](([a-z0-9-]|\\.[a-z0-9-])*\\.?[a-z0-9])?$", example = "notes"),
        ("key" = String, Path, description = "The object key, percent-encoded: 1..=1024 bytes of UTF-8 without U+0000", min_length = 1, max_length = 1024, format = "utf8-max-1024-bytes", pattern = "^[^\\u0000]+$", example = "2026/12/plan.md"),
    ),
    responses(
        (status = 200, description = "The status", body = IndexStatusBody),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope memories:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such bucket or object", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Embeddings are off", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["memories:read"])))]
pub(crate) async fn index_status(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
) -> Result<Json<IndexStatusBody>, ApiError> {
    caller.require(Scope::MemoriesRead)?;
    let memory = memory_service(&state)?;
    let bucket = BucketName::new(bucket)?;
    let key = ObjectKey::new(key)?;
    let status: IndexStatus = memory.index_status(&caller.tenant, &bucket, &key).await?;
    Ok(Json(IndexStatusBody {
        state: status.state.as_str().to_owned(),
        code: status.code,
        reason: status.reason,
        format: status.format,
        chunks: status.chunks as u64,
        truncated: status.truncated,
        indexed_at: status.indexed_at,
    }))
}
