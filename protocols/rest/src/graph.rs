//! `/v1/graph`: nodes, edges, neighbors and shortest paths.
//!
//! Node ids are 1..=256 bytes of UTF-8, labels and relation names 1..=128 (`p8fs_core::validate`);
//! the document gives those byte limits as `maxLength` (which counts characters, so every accepted
//! string meets it) and as `format: utf8-max-N-bytes`. A node's edges and neighbors are 404 when
//! the node does not exist (an empty list means it exists and has none).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use p8fs_auth::Scope;
use p8fs_core::traverse::{Neighbor, Path as GraphPath, PathQuery, neighbors, shortest_path};
use p8fs_core::validate::{MAX_NAME_BYTES, MAX_RELS};
use p8fs_core::{
    Depth, Direction, EdgeRecord, Error, JsonObject, Label, NodeId, NodeRecord, Rel, RelFilter,
    Resource, Weight,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Problem};
use crate::extract::{ApiObject, ApiPath, ApiQuery, Caller};
use crate::kv::{limit, ttl};
use crate::schema::AnyJsonObject;
use crate::{RestState, integer};

/// A node to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "person", "properties": {"name": "Alice"}}))]
pub struct PutNode {
    /// 1..=128 bytes of UTF-8 without U+0000 (`maxLength` counts characters; multi-byte
    /// characters reach the byte limit sooner).
    #[schema(
        min_length = 1,
        max_length = 128,
        format = "utf8-max-128-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub label: String,
    /// A JSON object, at most 64 KiB serialized.
    #[serde(default)]
    #[schema(value_type = Option<AnyJsonObject>)]
    pub properties: Option<Map<String, Value>>,
    /// Time to live in milliseconds (1 ..= 100 years); absent means permanent.
    #[schema(minimum = 1, maximum = 3155760000000_i64)]
    #[serde(default, deserialize_with = "integer::optional_i64")]
    pub ttl_ms: Option<i64>,
}

/// A stored node.
#[derive(Debug, Serialize, ToSchema)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub properties: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A page of nodes in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodePage {
    pub items: Vec<Node>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// An edge to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEdge {
    /// Finite and greater than 0 (default 1).
    #[schema(exclusive_minimum = 0.0, maximum = 1.7976931348623157e308)]
    pub weight: Option<f64>,
    /// A JSON object, at most 64 KiB serialized.
    #[serde(default)]
    #[schema(value_type = Option<AnyJsonObject>)]
    pub properties: Option<Map<String, Value>>,
    /// Time to live in milliseconds (1 ..= 100 years); absent means permanent.
    #[schema(minimum = 1, maximum = 3155760000000_i64)]
    #[serde(default, deserialize_with = "integer::optional_i64")]
    pub ttl_ms: Option<i64>,
}

/// A stored edge.
#[derive(Debug, Serialize, ToSchema)]
pub struct Edge {
    pub src: String,
    pub rel: String,
    pub dst: String,
    pub weight: f64,
    pub properties: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Edges of a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeList {
    pub items: Vec<Edge>,
}

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodeListParams {
    /// Only nodes after this id (the previous page's `next`): 1..=256 bytes of UTF-8.
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

/// Which edges of a node.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EdgeParams {
    /// `out` (default), `in` or `both`.
    #[param(pattern = "^(out|in|both)$")]
    pub direction: Option<String>,
    /// Comma-separated relations to follow: at most 16, each 1..=128 bytes of UTF-8 (the
    /// pattern's `{1,128}` counts characters; multi-byte characters reach the byte limit
    /// sooner). Absent or empty means all.
    #[param(
        pattern = "^([^,\\u0000]{1,128}(,[^,\\u0000]{1,128}){0,15})?$",
        max_length = 2063,
        format = "comma-separated-utf8-max-128-bytes"
    )]
    pub rels: Option<String>,
}

/// Traversal options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TraversalParams {
    /// `out` (default), `in` or `both`.
    #[param(pattern = "^(out|in|both)$")]
    pub direction: Option<String>,
    /// Comma-separated relations to follow: at most 16, each 1..=128 bytes of UTF-8 (the
    /// pattern's `{1,128}` counts characters; multi-byte characters reach the byte limit
    /// sooner). Absent or empty means all.
    #[param(
        pattern = "^([^,\\u0000]{1,128}(,[^,\\u0000]{1,128}){0,15})?$",
        max_length = 2063,
        format = "comma-separated-utf8-max-128-bytes"
    )]
    pub rels: Option<String>,
    /// Hops, 1..=6 (default 1).
    #[param(minimum = 1, maximum = 6)]
    pub depth: Option<u64>,
    /// Most results, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A reached node.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reached {
    pub id: String,
    pub hops: u32,
}

/// Nodes by hop count, then id.
#[derive(Debug, Serialize, ToSchema)]
pub struct NeighborList {
    pub items: Vec<Reached>,
}

/// A shortest-path query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"src": "alice", "dst": "alice", "direction": "both", "max_depth": 3}))]
pub struct PathRequest {
    /// A node id: 1..=256 bytes of UTF-8 (`maxLength` counts characters).
    #[schema(
        min_length = 1,
        max_length = 256,
        format = "utf8-max-256-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub src: String,
    /// A node id: 1..=256 bytes of UTF-8 (`maxLength` counts characters).
    #[schema(
        min_length = 1,
        max_length = 256,
        format = "utf8-max-256-bytes",
        pattern = "^[^\\u0000]+$"
    )]
    pub dst: String,
    /// `out` (default), `in` or `both`.
    #[schema(pattern = "^(out|in|both)$")]
    pub direction: Option<String>,
    /// Relations to follow (at most 16, each 1..=128 bytes of UTF-8; `maxLength` counts
    /// characters); absent or empty means all.
    #[serde(default)]
    #[schema(schema_with = rels_schema)]
    pub rels: Vec<String>,
    /// 1..=12 (default 6).
    #[schema(minimum = 1, maximum = 12)]
    #[serde(default, deserialize_with = "integer::optional_u64")]
    pub max_depth: Option<u64>,
    /// Least total weight instead of fewest hops.
    #[serde(default)]
    pub weighted: bool,
}

/// A path, or none.
#[derive(Debug, Serialize, ToSchema)]
pub struct PathResult {
    /// The path, absent when none exists within `max_depth`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<FoundPath>,
}

/// A found path.
#[derive(Debug, Serialize, ToSchema)]
pub struct FoundPath {
    pub nodes: Vec<String>,
    pub edges: Vec<Edge>,
    /// Total weight (weighted) or hop count.
    pub total: f64,
}

/// The schema of a shortest-path relation list.
fn rels_schema() -> Array {
    let rel = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_BYTES))
        .format(Some(SchemaFormat::Custom("utf8-max-128-bytes".to_owned())))
        .pattern(Some("^[^\\u0000]+$"));
    ArrayBuilder::new()
        .items(rel)
        .max_items(Some(MAX_RELS))
        .description(Some(
            "Relations to follow: at most 16, each 1..=128 bytes of UTF-8 without U+0000 \
             (`maxLength` counts characters; multi-byte characters reach the byte limit sooner). \
             Absent or empty means all.",
        ))
        .build()
}

fn node(record: NodeRecord) -> Node {
    Node {
        id: record.id.into_string(),
        label: record.label.into_string(),
        properties: record.properties,
        expires_at: record.expires_at,
    }
}

fn edge(record: EdgeRecord) -> Edge {
    Edge {
        src: record.src.into_string(),
        rel: record.rel.into_string(),
        dst: record.dst.into_string(),
        weight: record.weight,
        properties: record.properties,
        expires_at: record.expires_at,
    }
}

fn direction(value: Option<&str>) -> Result<Direction, Error> {
    value.map_or(Ok(Direction::Out), Direction::parse)
}

fn rel_list(value: Option<&str>) -> Result<RelFilter, Error> {
    match value {
        None | Some("") => Ok(RelFilter::any()),
        Some(list) => RelFilter::new(list.split(',')),
    }
}

fn edge_key(src: String, rel: String, dst: String) -> Result<(NodeId, Rel, NodeId), Error> {
    Ok((
        NodeId::named("src", src)?,
        Rel::new(rel)?,
        NodeId::named("dst", dst)?,
    ))
}

const PROBLEM: &str = "application/problem+json";

/// The description of a node id path parameter.
const NODE_ID_DESCRIPTION: &str = "A node id, percent-encoded: 1..=256 bytes of UTF-8 without \
    U+0000 (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)";

/// The description of a relation path parameter.
const REL_DESCRIPTION: &str = "A relation, percent-encoded: 1..=128 bytes of UTF-8 without \
    U+0000 (`maxLength` counts characters; multi-byte characters reach the byte limit sooner)";

/// Stores a node (upsert).
#[utoipa::path(put, path = "/v1/graph/nodes/{id}", tag = "graph",
    params(("id" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    request_body = PutNode,
    responses(
        (status = 204, description = "Stored", links(
            ("PathFromHere" = (operation_id = "find_path", request_body = json!({"src": "$request.path.id", "dst": "$request.path.id"}))),
        )),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:write", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:write"])))]
pub(crate) async fn put_node(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiObject(request): ApiObject<PutNode>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::GraphWrite)?;
    let id = NodeId::new(id)?;
    let label = Label::new(request.label)?;
    let properties = JsonObject::from_map("properties", request.properties.unwrap_or_default())?;
    let ttl = ttl(request.ttl_ms)?;
    state
        .backend
        .put_node(&caller.tenant, &id, &label, &properties, ttl)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads a node.
#[utoipa::path(get, path = "/v1/graph/nodes/{id}", tag = "graph",
    params(("id" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    responses(
        (status = 200, description = "The node", body = Node),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible node", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn get_node(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Node>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let id = NodeId::new(id)?;
    let record = state
        .backend
        .get_node(&caller.tenant, &id)
        .await?
        .ok_or_else(|| Error::not_found(Resource::Node, &id))?;
    Ok(Json(node(record)))
}

/// Deletes a node and its edges.
#[utoipa::path(delete, path = "/v1/graph/nodes/{id}", tag = "graph",
    params(("id" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible node", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:write"])))]
pub(crate) async fn delete_node(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::GraphWrite)?;
    let id = NodeId::new(id)?;
    if state.backend.delete_node(&caller.tenant, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(Resource::Node, &id).into())
    }
}

/// Lists nodes in id order.
#[utoipa::path(get, path = "/v1/graph/nodes", tag = "graph", params(NodeListParams),
    responses(
        (status = 200, description = "A page of nodes", body = NodePage),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn list_nodes(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiQuery(params): ApiQuery<NodeListParams>,
) -> Result<Json<NodePage>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let start_after = params
        .start_after
        .map(|s| NodeId::named("start_after", s))
        .transpose()?;
    let limit = limit(params.limit)?;
    let page = state
        .backend
        .list_nodes(&caller.tenant, start_after.as_ref(), limit)
        .await?;
    Ok(Json(NodePage {
        items: page.items.into_iter().map(node).collect(),
        next: page.next.map(NodeId::into_string),
    }))
}

/// Stores the edge `src -rel-> dst` (upsert); both nodes must exist.
#[utoipa::path(put, path = "/v1/graph/edges/{src}/{rel}/{dst}", tag = "graph",
    params(("src" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice"), ("rel" = String, Path, description = REL_DESCRIPTION, min_length = 1, max_length = 128, format = "utf8-max-128-bytes", pattern = "^[^\\u0000]+$", example = "knows"), ("dst" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    request_body = PutEdge,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "An endpoint does not exist", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:write"])))]
pub(crate) async fn put_edge(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((src, rel, dst)): ApiPath<(String, String, String)>,
    ApiObject(request): ApiObject<PutEdge>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::GraphWrite)?;
    let (src, rel, dst) = edge_key(src, rel, dst)?;
    let weight = request.weight.map_or(Ok(Weight::ONE), Weight::new)?;
    let properties = JsonObject::from_map("properties", request.properties.unwrap_or_default())?;
    let ttl = ttl(request.ttl_ms)?;
    state
        .backend
        .put_edge(&caller.tenant, &src, &rel, &dst, weight, &properties, ttl)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads an edge.
#[utoipa::path(get, path = "/v1/graph/edges/{src}/{rel}/{dst}", tag = "graph",
    params(("src" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice"), ("rel" = String, Path, description = REL_DESCRIPTION, min_length = 1, max_length = 128, format = "utf8-max-128-bytes", pattern = "^[^\\u0000]+$", example = "knows"), ("dst" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    responses(
        (status = 200, description = "The edge", body = Edge),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible edge", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn get_edge(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((src, rel, dst)): ApiPath<(String, String, String)>,
) -> Result<Json<Edge>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let (src, rel, dst) = edge_key(src, rel, dst)?;
    let record = state
        .backend
        .get_edge(&caller.tenant, &src, &rel, &dst)
        .await?
        .ok_or_else(|| Error::not_found(Resource::Edge, format!("{src} -{rel}-> {dst}")))?;
    Ok(Json(edge(record)))
}

/// Deletes an edge.
#[utoipa::path(delete, path = "/v1/graph/edges/{src}/{rel}/{dst}", tag = "graph",
    params(("src" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice"), ("rel" = String, Path, description = REL_DESCRIPTION, min_length = 1, max_length = 128, format = "utf8-max-128-bytes", pattern = "^[^\\u0000]+$", example = "knows"), ("dst" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible edge", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:write"])))]
pub(crate) async fn delete_edge(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath((src, rel, dst)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::GraphWrite)?;
    let (src, rel, dst) = edge_key(src, rel, dst)?;
    if state
        .backend
        .delete_edge(&caller.tenant, &src, &rel, &dst)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(Resource::Edge, format!("{src} -{rel}-> {dst}")).into())
    }
}

/// The edges leaving, entering or touching a node.
#[utoipa::path(get, path = "/v1/graph/nodes/{id}/edges", tag = "graph",
    params(("id" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice"), EdgeParams),
    responses(
        (status = 200, description = "The node's visible edges", body = EdgeList, links(
            ("GetFirstEdge" = (operation_id = "get_edge", parameters(
                ("src" = "$response.body#/items/0/src"),
                ("rel" = "$response.body#/items/0/rel"),
                ("dst" = "$response.body#/items/0/dst"),
            ))),
        )),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible node", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn node_edges(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<EdgeParams>,
) -> Result<Json<EdgeList>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let id = NodeId::new(id)?;
    let direction = direction(params.direction.as_deref())?;
    let rels = rel_list(params.rels.as_deref())?;
    // Edges never outlive their nodes, but "no edges" and "no node" are different answers.
    if state.backend.get_node(&caller.tenant, &id).await?.is_none() {
        return Err(Error::not_found(Resource::Node, &id).into());
    }
    let mut edges = state
        .backend
        .edges_of(&caller.tenant, &[id], direction, &rels)
        .await?;
    edges.sort_by(|a, b| (&a.src, &a.rel, &a.dst).cmp(&(&b.src, &b.rel, &b.dst)));
    Ok(Json(EdgeList {
        items: edges.into_iter().map(edge).collect(),
    }))
}

/// Distinct nodes within `depth` hops, by hop count, then id.
#[utoipa::path(get, path = "/v1/graph/nodes/{id}/neighbors", tag = "graph",
    params(("id" = String, Path, description = NODE_ID_DESCRIPTION, min_length = 1, max_length = 256, format = "utf8-max-256-bytes", pattern = "^[^\\u0000]+$", example = "alice"), TraversalParams),
    responses(
        (status = 200, description = "Reached nodes", body = NeighborList),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible start node", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn node_neighbors(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<TraversalParams>,
) -> Result<Json<NeighborList>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let id = NodeId::new(id)?;
    let direction = direction(params.direction.as_deref())?;
    let rels = rel_list(params.rels.as_deref())?;
    let depth = Depth::neighbors(params.depth.unwrap_or(1))?;
    let limit = limit(params.limit)?;
    let found = neighbors(
        state.backend.as_ref(),
        &caller.tenant,
        &id,
        direction,
        &rels,
        depth,
        limit,
    )
    .await?;
    Ok(Json(NeighborList {
        items: found
            .into_iter()
            .map(|Neighbor { id, hops }| Reached {
                id: id.into_string(),
                hops,
            })
            .collect(),
    }))
}

/// The shortest path between two nodes.
#[utoipa::path(post, path = "/v1/graph/shortest-path", tag = "graph", request_body = PathRequest,
    responses(
        (status = 200, description = "The path, or no path", body = PathResult),
        (status = 400, description = "Bad input", body = Problem, content_type = PROBLEM),
        (status = 401, description = "No valid token", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Missing scope graph:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No visible src or dst node", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = ["graph:read"])))]
pub(crate) async fn find_path(
    State(state): State<RestState>,
    Caller(caller): Caller,
    ApiObject(request): ApiObject<PathRequest>,
) -> Result<Json<PathResult>, ApiError> {
    caller.require(Scope::GraphRead)?;
    let query = PathQuery {
        src: NodeId::named("src", request.src)?,
        dst: NodeId::named("dst", request.dst)?,
        direction: direction(request.direction.as_deref())?,
        rels: RelFilter::new(request.rels)?,
        max_depth: Depth::path(request.max_depth.unwrap_or(6))?,
        weighted: request.weighted,
    };
    let found = shortest_path(state.backend.as_ref(), &caller.tenant, &query).await?;
    Ok(Json(PathResult {
        path: found.map(
            |GraphPath {
                 nodes,
                 edges,
                 total,
             }| FoundPath {
                nodes: nodes.into_iter().map(NodeId::into_string).collect(),
                edges: edges.into_iter().map(edge).collect(),
                total,
            },
        ),
    }))
}
