//! `/v1/collections`: vector collections, their records, and nearest-neighbour search, exact or
//! approximate (`mode`, `ef`).
//!
//! What the document cannot say: a vector must have exactly its collection's dimension (and not
//! be all zero in a cosine collection), which depends on the stored collection. Such a vector is
//! a 400 naming `vector` or `query`, documented on the operations that take one. Everything else
//! (components within the range of a 32-bit float, 1..=4096 of them) is in the schema.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use p8fs_auth::Scope;
use p8fs_core::validate::{MAX_DIMENSION, MAX_FILTER_CLAUSES, MAX_PATH_BYTES};
use p8fs_core::vector::{
    MAX_EF, SearchHit, SearchMode, VectorRecord, components, require_collection, search_with,
    upsert,
};
use p8fs_core::{
    CollectionName, CollectionSpec, Error, Filter, JsonObject, Limit, Metric, RecordId, Resource,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, Array, ArrayBuilder, KnownFormat, Object, ObjectBuilder, Ref, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::error::{ApiError, Problem};
use crate::extract::{ApiObject, ApiPath, ApiQuery, Caller};
use crate::kv::{DOT_PATH_PATTERN, limit, ttl};
use crate::schema::{AnyJson, AnyJsonObject};
use crate::{RestState, integer};

/// The description of a record id path parameter.
const ID_DESCRIPTION: &str = "The record id, percent-encoded: 1..=256 bytes of UTF-8 without \
    U+0000 (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)";

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
#[schema(example = json!({"dimension": 3, "metric": "cosine"}))]
pub struct CreateCollection {
    /// Vector dimension, 1..=4096.
    #[schema(minimum = 1, maximum = 4096)]
    #[serde(deserialize_with = "integer::required_u64")]
    pub dimension: u64,
    /// `cosine`, `l2` or `dot`.
    #[schema(pattern = "^(cosine|l2|dot)$")]
    pub metric: String,
}

/// A record to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"vector": [0.1, 0.2, 0.3], "metadata": {"lang": "en"}}))]
pub struct PutVector {
    #[schema(schema_with = vector_schema)]
    pub vector: Vec<f64>,
    /// A JSON object, at most 64 KiB serialized.
    #[serde(default)]
    #[schema(value_type = Option<AnyJsonObject>)]
    pub metadata: Option<Map<String, Value>>,
    /// Time to live in milliseconds (1 ..= 100 years); absent means permanent.
    #[schema(minimum = 1, maximum = 3155760000000_i64)]
    #[serde(default, deserialize_with = "integer::optional_i64")]
    pub ttl_ms: Option<i64>,
}

/// The schema of a vector: what can be checked without the collection.
fn vector_schema() -> Array {
    let component = ObjectBuilder::new()
        .schema_type(Type::Number)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Float)))
        .minimum(Some(-f64::from(f32::MAX)))
        .maximum(Some(f64::from(f32::MAX)));
    ArrayBuilder::new()
        .items(component)
        .min_items(Some(1))
        .max_items(Some(MAX_DIMENSION as usize))
        .description(Some(
            "Exactly the collection's dimension (1..=4096) of finite 32-bit floats; not all zero \
             in a cosine collection. A vector of another length is a 400 naming the field.",
        ))
        .build()
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
    /// Only records after this id (the previous page's `next`): 1..=256 bytes of UTF-8.
    #[param(
        min_length = 1,
        max_length = 256,
        format = "utf8-max-256-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub start_after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A k-nearest search, exact unless `mode` is `approximate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"query": [0.1, 0.2, 0.3], "k": 5, "filter": {"lang": "en"}}))]
pub struct SearchRequest {
    #[schema(schema_with = vector_schema)]
    pub query: Vec<f64>,
    /// How many results, 1..=1000 (default 10).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "integer::optional_u64")]
    pub k: Option<u64>,
    #[serde(default)]
    #[schema(schema_with = filter_schema)]
    pub filter: BTreeMap<String, Value>,
    #[serde(default)]
    #[schema(schema_with = mode_schema)]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "integer::optional_u64")]
    #[schema(schema_with = ef_schema)]
    pub ef: Option<u64>,
}

/// The description of `mode`, shared by the searches that take one.
pub(crate) const MODE_DESCRIPTION: &str = "How the nearest are found. `exact` (the default): \
    every record is considered. `approximate`: a backend keeping a graph index of the collection \
    (RocksDB, from 10,000 records) walks it keeping the `ef` best records seen, reading far \
    fewer records but possibly missing some of the exact nearest; what it returns is still \
    ranked exactly and matches the filter. Smaller collections, and backends without a graph \
    index, answer an approximate search exactly.";

/// The description of `ef`, shared by the searches that take one.
pub(crate) const EF_DESCRIPTION: &str = "With `mode` `approximate` only (a 400 naming `ef` \
    otherwise): the candidate list kept while walking the graph, 1..=4096 (default 64; never \
    fewer than `k`). Larger finds more of the exact nearest, slower.";

/// The schema of `mode` in a JSON body, where `null` is as good as absent.
pub(crate) fn mode_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([json!("exact"), json!("approximate"), Value::Null]))
        .default(Some(Value::from("exact")))
        .description(Some(MODE_DESCRIPTION))
        .build()
}

/// The schema of `ef` in a JSON body, where `null` is as good as absent.
pub(crate) fn ef_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(1))
        .maximum(Some(MAX_EF as u64))
        .description(Some(EF_DESCRIPTION))
        .build()
}

/// The schema of the query parameter `mode`.
pub(crate) fn mode_parameter_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["exact", "approximate"]))
        .default(Some(Value::from("exact")))
        .description(Some(MODE_DESCRIPTION))
        .build()
}

/// The schema of the query parameter `ef`.
pub(crate) fn ef_parameter_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_EF as u64))
        .description(Some(EF_DESCRIPTION))
        .build()
}

/// A request body's schema with an `ef` (other than `null`) allowed only beside
/// `"mode": "approximate"`, in JSON Schema's own terms (`dependentSchemas`), so that the document
/// describes exactly the bodies accepted.
pub(crate) fn ef_needs_approximate(schema: RefOr<Schema>) -> RefOr<Schema> {
    let RefOr::T(Schema::Object(mut object)) = schema else {
        return schema;
    };
    object
        .extensions
        .get_or_insert_with(Default::default)
        .insert(
            "dependentSchemas".to_owned(),
            json!({"ef": {"anyOf": [
                {"properties": {"ef": {"type": "null"}}},
                {"required": ["mode"], "properties": {"mode": {"const": "approximate"}}},
            ]}}),
        );
    RefOr::T(Schema::Object(object))
}

/// The document's [`SearchRequest`]: its derived schema with the dependency of `ef` on `mode`
/// ([`ef_needs_approximate`]), which the derive cannot state.
pub struct SearchBody;

impl PartialSchema for SearchBody {
    fn schema() -> RefOr<Schema> {
        ef_needs_approximate(<SearchRequest as PartialSchema>::schema())
    }
}

impl ToSchema for SearchBody {
    fn name() -> Cow<'static, str> {
        <SearchRequest as ToSchema>::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <SearchRequest as ToSchema>::schemas(schemas);
    }
}

/// The schema of a metadata filter.
fn filter_schema() -> Object {
    let path = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_PATH_BYTES))
        .format(Some(SchemaFormat::Custom("utf8-max-256-bytes".to_owned())))
        .pattern(Some(DOT_PATH_PATTERN));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(path))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::Ref(
            Ref::from_schema_name(AnyJson::name()),
        ))))
        .max_properties(Some(MAX_FILTER_CLAUSES))
        .description(Some(
            "Metadata equalities that must all hold, `{\"dot.path\": value}`: at most 16, each \
             path 1..=256 bytes of UTF-8 with no empty segment (`maxLength` counts characters; \
             multi-byte characters reach the byte limit sooner).",
        ))
        .build()
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs")),
    request_body = CreateCollection,
    responses(
        (status = 200, description = "An identical collection exists", body = Collection, links(
            ("PutRecord" = (operation_id = "put_vector", parameters(("name" = "$response.body#/name")))),
            ("Search" = (operation_id = "search_vectors", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 201, description = "Created", body = Collection, links(
            ("PutRecord" = (operation_id = "put_vector", parameters(("name" = "$response.body#/name")))),
            ("Search" = (operation_id = "search_vectors", parameters(("name" = "$response.body#/name")))),
        )),
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
    ApiObject(request): ApiObject<CreateCollection>,
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs")),
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs")),
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs"), ("id" = String, Path, description = ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "r1")),
    request_body = PutVector,
    responses(
        (status = 204, description = "Stored", links(
            ("GetRecord" = (operation_id = "get_vector", parameters(("name" = "$request.path.name"), ("id" = "$request.path.id")))),
            ("DeleteRecord" = (operation_id = "delete_vector", parameters(("name" = "$request.path.name"), ("id" = "$request.path.id")))),
        )),
        (status = 400, description = "Bad input, including a vector whose length is not the collection's dimension or a zero vector in a cosine collection: these depend on the stored collection, which the schema cannot know", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:write"])))]
pub(crate) async fn put_vector(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((name, id)): ApiPath<(String, String)>,
    ApiObject(request): ApiObject<PutVector>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::VectorsWrite)?;
    let name = CollectionName::new(name)?;
    let id = RecordId::new(id)?;
    let metadata = JsonObject::from_map("metadata", request.metadata.unwrap_or_default())?;
    let ttl = ttl(request.ttl_ms)?;
    let vector = components("vector", request.vector)?;
    upsert(
        state.backend.as_ref(),
        &caller.tenant,
        &name,
        &id,
        vector,
        &metadata,
        ttl,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a record.
#[utoipa::path(get, path = "/v1/collections/{name}/records/{id}", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs"), ("id" = String, Path, description = ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "r1")),
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs"), ("id" = String, Path, description = ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "r1")),
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
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs"), ListParams),
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

/// k-nearest search with an optional metadata filter: exact, or approximate with `mode`
/// `approximate` (answered exactly by collections under 10,000 records and by backends without
/// a graph index).
#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "vectors",
    params(("name" = String, Path, pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", example = "docs")),
    request_body = SearchBody,
    responses(
        (status = 200, description = "Nearest first", body = SearchResults),
        (status = 400, description = "Bad input, including a query whose length is not the collection's dimension or a zero query in a cosine collection: these depend on the stored collection, which the schema cannot know", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope vectors:read", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such collection", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["vectors:read"])))]
pub(crate) async fn search_vectors(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
    ApiObject(request): ApiObject<SearchRequest>,
) -> Result<Json<SearchResults>, ApiError> {
    caller.require(Scope::VectorsRead)?;
    let name = CollectionName::new(name)?;
    let k = Limit::top_k(request.k.unwrap_or(10))?;
    let filter = Filter::new(request.filter)?;
    let mode = SearchMode::parse(request.mode.as_deref(), request.ef)?;
    let query = components("query", request.query)?;
    let hits = search_with(
        state.backend.as_ref(),
        &caller.tenant,
        &name,
        query,
        k,
        &filter,
        mode,
    )
    .await?;
    Ok(Json(SearchResults {
        hits: hits.into_iter().map(hit).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_32_bit_floats_in_range() {
        let max = f64::from(f32::MAX);
        assert_eq!(
            components("vector", vec![0.5, -max, max, 1e-50]).unwrap(),
            vec![0.5, f32::MIN, f32::MAX, 0.0]
        );
        // The next double past the largest float is out of range, although it rounds to it.
        let error = components("query", vec![1.0, max.next_up()]).unwrap_err();
        assert_eq!(error.field(), Some("query[1]"));
        let error = components("vector", vec![-1e300]).unwrap_err();
        assert_eq!(error.field(), Some("vector[0]"));
    }

    /// The document states `mode` and `ef` as the handlers check them, on both search bodies
    /// and on `GET /v1/search`, `ef` depending on `mode` where JSON Schema can say so.
    #[test]
    fn search_modes_are_documented() {
        let document = crate::openapi_document();
        let components = &document["components"]["schemas"];
        for name in ["SearchRequest", "MemorySearchRequest"] {
            let schema = &components[name];
            // `null` is absent, as for the bodies' other optional fields.
            let mode = &schema["properties"]["mode"];
            assert_eq!(
                mode["enum"],
                json!(["exact", "approximate", null]),
                "{name}"
            );
            assert_eq!(mode["type"], json!(["string", "null"]), "{name}");
            assert_eq!(mode["default"], json!("exact"), "{name}");
            let ef = &schema["properties"]["ef"];
            assert_eq!(ef["type"], json!(["integer", "null"]), "{name}");
            assert_eq!(ef["minimum"], json!(1), "{name}");
            assert_eq!(ef["maximum"], json!(MAX_EF), "{name}");
            let branches = &schema["dependentSchemas"]["ef"]["anyOf"];
            assert_eq!(branches[0]["properties"]["ef"]["type"], json!("null"));
            assert_eq!(
                branches[1],
                json!({"required": ["mode"], "properties": {"mode": {"const": "approximate"}}}),
                "{name}"
            );
            assert!(schema["required"].as_array().is_some(), "{name}: {schema}");
        }
        let parameters = document["paths"]["/v1/search"]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|p| p["name"] == name)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            parameter("mode")["schema"]["enum"],
            json!(["exact", "approximate"])
        );
        assert_eq!(parameter("ef")["schema"]["maximum"], json!(MAX_EF));
        assert_eq!(parameter("ef")["in"], json!("query"));
        assert_ne!(parameter("ef")["required"], json!(true));
    }

    /// The handlers read `mode` and `ef` through the contract's own check.
    #[test]
    fn search_bodies_take_a_mode() {
        let body: SearchRequest =
            serde_json::from_value(json!({"query": [1.0], "mode": "approximate", "ef": 2e1}))
                .unwrap();
        assert_eq!(
            SearchMode::parse(body.mode.as_deref(), body.ef).unwrap(),
            SearchMode::Approximate { ef: 20 }
        );
        let body: SearchRequest = serde_json::from_value(json!({"query": [1.0]})).unwrap();
        assert_eq!(
            SearchMode::parse(body.mode.as_deref(), body.ef).unwrap(),
            SearchMode::Exact
        );
    }
}
