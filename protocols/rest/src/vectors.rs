//! `/v1/collections`: vector collections, their records, and exact nearest-neighbour search.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use p8fs_auth::Scope;
use p8fs_core::vector::{SearchHit, VectorRecord, require_collection, search, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Error, Filter, JsonObject, Limit, Metric, RecordId, Resource,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::RestState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::kv::{limit, ttl};

/// A collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct Collection {
    pub name: String,
    /// Vector dimension, 1..=4096.
    pub dimension: u32,
    /// `cosine`, `l2` or `dot` (pgvector's definitions).
    pub metric: String,
}

/// The collections of the caller's tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    pub items: Vec<Collection>,
}

/// Creates a collection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Vector dimension, 1..=4096.
    #[schema(minimum = 1, maximum = 4096)]
    pub dimension: u64,
    /// `cosine`, `l2` or `dot`.
    #[schema(pattern = "^(cosine|l2|dot)$")]
    pub metric: String,
}

/// A record to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutVector {
    /// Exactly the collection's dimension, finite; not all zero in cosine collections.
    pub vector: Vec<f32>,
    /// A JSON object, at most 64 KiB.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Time to live in milliseconds (1 ..= 100 years); absent means permanent.
    #[schema(minimum = 1, maximum = 3155760000000_i64)]
    pub ttl_ms: Option<i64>,
}

/// A stored record.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorItem {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A page of records in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct VectorItemPage {
    pub items: Vec<VectorItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[param(min_length = 1, max_length = 64, pattern = "^[^\\u0000]+$")]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// An exact k-nearest search.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector: the collection's dimension, finite; not all zero in cosine collections.
    pub query: Vec<f32>,
    /// How many results, 1..=1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<u64>,
    /// Metadata equalities that must all hold: `{"dot.path": value}`.
    #[serde(default)]
    pub filter: BTreeMap<String, Value>,
}

/// One result.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hit {
    pub id: String,
    /// The metric's distance, computed in f64.
    pub distance: f64,
    pub metadata: Map<String, Value>,
}

/// Results, nearest first (ties by id).
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
}

fn collection(spec: CollectionSpec) -> Collection {
    Collection {
        name: spec.name.into_string(),
        dimension: spec.dimension.get() as u32,
        metric: spec.metric.as_str().to_owned(),
    }
}

fn item(record: VectorRecord) -> VectorItem {
    VectorItem {
        id: record.id.into_string(),
        vector: record.vector,
        metadata: record.metadata,
        expires_at: record.expires_at,
    }
}

fn hit(hit: SearchHit) -> Hit {
    Hit {
        id: hit.id.into_string(),
        distance: hit.distance,
        metadata: hit.metadata,
    }
}

/// Lists collections.
#[utoipa::path(get, path = "/v1/collections", tag = "vectors",
    responses(
        (status = 200, description = "The collections, by name", body = CollectionList),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn list_collections(
    State(state): State<RestState>,
    Caller(caller): Caller,
) -> Result<Json<CollectionList>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let specs = state.backend.list_collections(&caller.tenant).await?;
    Ok(Json(CollectionList {
        items: specs.into_iter().map(collection).collect(),
    }))
}

/// Creates a collection; idempotent for an identical spec.
#[utoipa::path(put, path = "/v1/collections/{name}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    request_body = CreateCollection,
    responses(
        (status = 200, description = "An identical collection exists", body = Collection),
        (status = 201, description = "Created", body = Collection),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:write", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Exists with another dimension or metric", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:write"])))]
pub(crate) async fn create_collection(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<CreateCollection>,
) -> Result<(StatusCode, Json<Collection>), ApiError> {
    caller.require(Scope::VectorsWrite)?;
    let spec = CollectionSpec::new(name, request.dimension, Metric::parse(&request.metric)?)?;
    let created = state
        .backend
        .create_collection(&caller.tenant, &spec)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(collection(spec))))
}

/// Reads a collection's spec.
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses(
        (status = 200, description = "The collection", body = Collection),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn get_collection(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Collection>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let name = CollectionName::new(name)?;
    let spec = require_collection(state.backend.as_ref(), &caller.tenant, &name).await?;
    Ok(Json(collection(spec)))
}

/// Drops a collection and its records.
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    responses(
        (status = 204, description = "Dropped"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:write"])))]
pub(crate) async fn drop_collection(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::VectorsWrite)?;
    let name = CollectionName::new(name)?;
    if state.backend.drop_collection(&caller.tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(Resource::Collection, &name).into())
    }
}

/// Stores a record (upsert).
#[utoipa::path(put, path = "/v1/collections/{name}/records/{id}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ("id" = String, Path, description = "1..=256 bytes, percent-encoded", min_length = 1, max_length = 64, pattern = "^[^\\u0000]+$")),
    request_body = PutVector,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:write"])))]
pub(crate) async fn put_vector(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<PutVector>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::VectorsWrite)?;
    let name = CollectionName::new(name)?;
    let id = RecordId::new(id)?;
    let metadata = JsonObject::from_map("metadata", request.metadata.unwrap_or_default())?;
    let ttl = ttl(request.ttl_ms)?;
    upsert(
        state.backend.as_ref(),
        &caller.tenant,
        &name,
        &id,
        request.vector,
        &metadata,
        ttl,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a record.
#[utoipa::path(get, path = "/v1/collections/{name}/records/{id}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[^\\u0000]+$")),
    responses(
        (status = 200, description = "The record", body = VectorItem),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection or record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn get_vector(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<Json<VectorItem>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let name = CollectionName::new(name)?;
    let id = RecordId::new(id)?;
    let record = state
        .backend
        .get_vector(&caller.tenant, &name, &id)
        .await?
        .ok_or_else(|| Error::not_found(Resource::VectorRecord, &id))?;
    Ok(Json(item(record)))
}

/// Deletes a record.
#[utoipa::path(delete, path = "/v1/collections/{name}/records/{id}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ("id" = String, Path, min_length = 1, max_length = 64, pattern = "^[^\\u0000]+$")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection or record", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:write"])))]
pub(crate) async fn delete_vector(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::VectorsWrite)?;
    let name = CollectionName::new(name)?;
    let id = RecordId::new(id)?;
    if state
        .backend
        .delete_vector(&caller.tenant, &name, &id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(Resource::VectorRecord, &id).into())
    }
}

/// Lists records in id order.
#[utoipa::path(get, path = "/v1/collections/{name}/records", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"), ListParams),
    responses(
        (status = 200, description = "A page of records", body = VectorItemPage),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn list_vectors(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<VectorItemPage>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let name = CollectionName::new(name)?;
    let start_after = params.start_after.map(RecordId::new).transpose()?;
    let limit = limit(params.limit)?;
    let page = state
        .backend
        .list_vectors(&caller.tenant, &name, start_after.as_ref(), limit)
        .await?;
    Ok(Json(VectorItemPage {
        items: page.items.into_iter().map(item).collect(),
        next: page.next.map(RecordId::into_string),
    }))
}

/// Exact k-nearest search with an optional metadata filter.
#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Nearest first", body = SearchResults),
        (status = 400, description = "Bad input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn search_vectors(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResults>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let name = CollectionName::new(name)?;
    let k = Limit::top_k(request.k.unwrap_or(10))?;
    let filter = Filter::new(request.filter)?;
    let hits = search(
        state.backend.as_ref(),
        &caller.tenant,
        &name,
        request.query,
        k,
        &filter,
    )
    .await?;
    Ok(Json(SearchResults {
        hits: hits.into_iter().map(hit).collect(),
    }))
}
