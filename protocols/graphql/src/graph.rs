//! The graph: `node(id)` with its `edges` and `neighbors(direction, rels, depth)`, `nodes`
//! (a connection), `edge`, `shortestPath`, and the writes. Scopes `graph:read`, `graph:write`.
//!
//! The nodes a list reaches (a node's neighbours, an edge's endpoints, a path's nodes) are
//! fetched through the request's [`NodeLoader`]: one `get_nodes` backend call per batch, not one
//! call per item.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, Json, Object, SimpleObject};
use p8fs_auth::Scope;
use p8fs_core::traverse::{Neighbor as Reached, PathQuery, neighbors, shortest_path};
use p8fs_core::validate::MAX_NODES_PER_GET;
use p8fs_core::{
    Backend, Depth, Direction, EdgeRecord, Error, JsonObject, Label, NodeId, NodeRecord, Rel,
    RelFilter, TenantId, Weight,
};
use serde_json::{Map, Value};

use crate::context::{caller, state};
use crate::error::{GqlResult, to_graphql};
use crate::kv::ttl;
use crate::page;
use crate::scalars::Long;

/// Loads a tenant's nodes by id, a batch per backend call.
pub struct NodeLoader {
    pub backend: Arc<dyn Backend>,
    pub tenant: TenantId,
}

impl Loader<NodeId> for NodeLoader {
    type Value = NodeRecord;
    type Error = async_graphql::Error;

    async fn load(&self, ids: &[NodeId]) -> Result<HashMap<NodeId, NodeRecord>, Self::Error> {
        let nodes = self
            .backend
            .get_nodes(&self.tenant, ids)
            .await
            .map_err(|e| to_graphql(&e))?;
        Ok(nodes
            .into_iter()
            .map(|node| (node.id.clone(), node))
            .collect())
    }
}

/// The request's node loader, for `tenant`.
pub fn node_loader(backend: Arc<dyn Backend>, tenant: TenantId) -> DataLoader<NodeLoader> {
    DataLoader::new(NodeLoader { backend, tenant }, tokio::spawn).max_batch_size(MAX_NODES_PER_GET)
}

/// The visible nodes of `ids` (null for one that is gone), through the request's loader when
/// there is one.
async fn load_nodes(
    ctx: &Context<'_>,
    tenant: &TenantId,
    ids: &[NodeId],
) -> async_graphql::Result<Vec<Option<Node>>> {
    let mut found = match ctx.data_opt::<DataLoader<NodeLoader>>() {
        Some(loader) if &loader.loader().tenant == tenant => {
            loader.load_many(ids.iter().cloned()).await?
        }
        _ => {
            let mut found = HashMap::new();
            for chunk in ids.chunks(MAX_NODES_PER_GET) {
                for node in state(ctx).backend.get_nodes(tenant, chunk).await.gql()? {
                    found.insert(node.id.clone(), node);
                }
            }
            found
        }
    };
    Ok(ids
        .iter()
        .map(|id| found.remove(id).map(Node::from))
        .collect())
}

/// Which edges a traversal follows.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "Direction")]
pub enum DirectionName {
    /// Edges leaving the node.
    Out,
    /// Edges entering the node.
    In,
    /// Both.
    Both,
}

impl From<DirectionName> for Direction {
    fn from(direction: DirectionName) -> Self {
        match direction {
            DirectionName::Out => Direction::Out,
            DirectionName::In => Direction::In,
            DirectionName::Both => Direction::Both,
        }
    }
}

fn rels(rels: Option<Vec<String>>) -> p8fs_core::Result<RelFilter> {
    match rels {
        None => Ok(RelFilter::any()),
        Some(rels) => RelFilter::new(rels).map_err(|e| e.renamed("rels")),
    }
}

/// A node.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub properties: Json<Map<String, Value>>,
    pub expires_at: Option<Long>,
}

impl From<NodeRecord> for Node {
    fn from(node: NodeRecord) -> Self {
        Node {
            id: node.id.into_string(),
            label: node.label.into_string(),
            properties: Json(node.properties),
            expires_at: node.expires_at.map(Long),
        }
    }
}

/// An edge `src -rel-> dst`.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Edge {
    pub src: String,
    pub rel: String,
    pub dst: String,
    pub weight: f64,
    pub properties: Json<Map<String, Value>>,
    pub expires_at: Option<Long>,
}

impl From<EdgeRecord> for Edge {
    fn from(edge: EdgeRecord) -> Self {
        Edge {
            src: edge.src.into_string(),
            rel: edge.rel.into_string(),
            dst: edge.dst.into_string(),
            weight: edge.weight,
            properties: Json(edge.properties),
            expires_at: edge.expires_at.map(Long),
        }
    }
}

/// A node reached by a traversal.
#[derive(SimpleObject)]
pub struct Neighbor {
    /// Hops from the start.
    pub hops: i32,
    /// The node; null if it went away since it was reached.
    pub node: Option<Node>,
}

/// A shortest path.
#[derive(SimpleObject)]
pub struct Path {
    /// The nodes from source to destination, both included; null for one gone since.
    pub nodes: Vec<Option<Node>>,
    /// The edge of each step.
    pub edges: Vec<Edge>,
    /// The sum of the weights (weighted) or the hop count.
    pub total: f64,
}

#[ComplexObject]
impl Node {
    /// The node's edges (`OUT`: leaving it, `IN`: entering it, `BOTH`), by source, relation,
    /// destination.
    async fn edges(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DirectionName::Both")] direction: DirectionName,
        rels: Option<Vec<String>>,
    ) -> async_graphql::Result<Vec<Edge>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let id = NodeId::new(self.id.clone()).gql()?;
        let rels = self::rels(rels).gql()?;
        let mut edges = state(ctx)
            .backend
            .edges_of(&caller.tenant, &[id], direction.into(), &rels)
            .await
            .gql()?;
        edges.sort_by(|a, b| (&a.src, &a.rel, &a.dst).cmp(&(&b.src, &b.rel, &b.dst)));
        Ok(edges.into_iter().map(Edge::from).collect())
    }

    /// Distinct nodes within `depth` hops (1..=6), by hop count, then id; at most `first`.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn neighbors(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "DirectionName::Out")] direction: DirectionName,
        rels: Option<Vec<String>>,
        #[graphql(default = 1)] depth: i32,
        #[graphql(default = 20)] first: i32,
    ) -> async_graphql::Result<Vec<Neighbor>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let id = NodeId::new(self.id.clone()).gql()?;
        let rels = self::rels(rels).gql()?;
        let depth = u64::try_from(depth)
            .map_err(|_| Error::invalid("depth", "must be between 1 and 6"))
            .and_then(Depth::neighbors)
            .gql()?;
        let limit = page::first(first).gql()?;
        let reached = neighbors(
            state(ctx).backend.as_ref(),
            &caller.tenant,
            &id,
            direction.into(),
            &rels,
            depth,
            limit,
        )
        .await
        .gql()?;
        let ids: Vec<NodeId> = reached.iter().map(|r| r.id.clone()).collect();
        let nodes = load_nodes(ctx, &caller.tenant, &ids).await?;
        Ok(reached
            .into_iter()
            .zip(nodes)
            .map(|(Reached { hops, .. }, node)| Neighbor {
                hops: i32::try_from(hops).unwrap_or(i32::MAX),
                node,
            })
            .collect())
    }
}

#[ComplexObject]
impl Edge {
    /// The source node; null if it is gone.
    async fn source(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Node>> {
        endpoint(ctx, &self.src).await
    }

    /// The destination node; null if it is gone.
    async fn target(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Node>> {
        endpoint(ctx, &self.dst).await
    }
}

async fn endpoint(ctx: &Context<'_>, id: &str) -> async_graphql::Result<Option<Node>> {
    let caller = caller(ctx, Scope::GraphRead)?;
    let id = NodeId::new(id).gql()?;
    Ok(load_nodes(ctx, &caller.tenant, &[id])
        .await?
        .pop()
        .flatten())
}

#[derive(Default)]
pub struct GraphQuery;

#[Object]
impl GraphQuery {
    /// The node `id`, or null.
    async fn node(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Node>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let id = NodeId::new(id).gql()?;
        let node = state(ctx)
            .backend
            .get_node(&caller.tenant, &id)
            .await
            .gql()?;
        Ok(node.map(Node::from))
    }

    /// Nodes in id order.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Node>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let limit = page::first(first).gql()?;
        let after = page::after(after.as_deref(), NodeId::new).gql()?;
        let found = state(ctx)
            .backend
            .list_nodes(&caller.tenant, after.as_ref(), limit)
            .await
            .gql()?;
        Ok(page::connection(
            found
                .items
                .into_iter()
                .map(|node| (node.id.as_str().to_owned(), Node::from(node))),
            after.is_some(),
            found.next.is_some(),
        ))
    }

    /// The edge `src -rel-> dst`, or null.
    async fn edge(
        &self,
        ctx: &Context<'_>,
        src: String,
        rel: String,
        dst: String,
    ) -> async_graphql::Result<Option<Edge>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let (src, rel, dst) = edge_key(src, rel, dst).gql()?;
        let edge = state(ctx)
            .backend
            .get_edge(&caller.tenant, &src, &rel, &dst)
            .await
            .gql()?;
        Ok(edge.map(Edge::from))
    }

    /// The shortest path from `src` to `dst` of at most `maxDepth` hops (1..=12): fewest hops,
    /// or least total weight when `weighted`; null when there is none.
    #[expect(
        clippy::too_many_arguments,
        reason = "a GraphQL field takes its arguments one by one"
    )]
    async fn shortest_path(
        &self,
        ctx: &Context<'_>,
        src: String,
        dst: String,
        #[graphql(default_with = "DirectionName::Out")] direction: DirectionName,
        rels: Option<Vec<String>>,
        #[graphql(default = 6)] max_depth: i32,
        #[graphql(default = false)] weighted: bool,
    ) -> async_graphql::Result<Option<Path>> {
        let caller = caller(ctx, Scope::GraphRead)?;
        let query = PathQuery {
            src: NodeId::named("src", src).gql()?,
            dst: NodeId::named("dst", dst).gql()?,
            direction: direction.into(),
            rels: self::rels(rels).gql()?,
            max_depth: u64::try_from(max_depth)
                .map_err(|_| Error::invalid("maxDepth", "must be between 1 and 12"))
                .and_then(|d| Depth::path(d).map_err(|e| e.renamed("maxDepth")))
                .gql()?,
            weighted,
        };
        let Some(found) = shortest_path(state(ctx).backend.as_ref(), &caller.tenant, &query)
            .await
            .gql()?
        else {
            return Ok(None);
        };
        let nodes = load_nodes(ctx, &caller.tenant, &found.nodes).await?;
        Ok(Some(Path {
            nodes,
            edges: found.edges.into_iter().map(Edge::from).collect(),
            total: found.total,
        }))
    }
}

fn edge_key(src: String, rel: String, dst: String) -> p8fs_core::Result<(NodeId, Rel, NodeId)> {
    Ok((
        NodeId::named("src", src)?,
        Rel::new(rel)?,
        NodeId::named("dst", dst)?,
    ))
}

#[derive(Default)]
pub struct GraphMutation;

#[Object]
impl GraphMutation {
    /// Stores a node, replacing any of that id.
    async fn put_node(
        &self,
        ctx: &Context<'_>,
        id: String,
        label: String,
        properties: Option<Json<Value>>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<Node> {
        let caller = caller(ctx, Scope::GraphWrite)?;
        let id = NodeId::new(id).gql()?;
        let label = Label::new(label).gql()?;
        let properties = object("properties", properties).gql()?;
        let ttl = ttl(ttl_ms).gql()?;
        let backend = &state(ctx).backend;
        backend
            .put_node(&caller.tenant, &id, &label, &properties, ttl)
            .await
            .gql()?;
        let stored = backend
            .get_node(&caller.tenant, &id)
            .await
            .gql()?
            .ok_or_else(|| Error::not_found(p8fs_core::Resource::Node, &id))
            .gql()?;
        Ok(stored.into())
    }

    /// Deletes a node and its edges; returns whether one was there.
    async fn delete_node(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::GraphWrite)?;
        let id = NodeId::new(id).gql()?;
        state(ctx)
            .backend
            .delete_node(&caller.tenant, &id)
            .await
            .gql()
    }

    /// Stores the edge `src -rel-> dst` (weight 1 unless given); NOT_FOUND when an endpoint is
    /// not a node.
    #[expect(
        clippy::too_many_arguments,
        reason = "a GraphQL field takes its arguments one by one"
    )]
    async fn put_edge(
        &self,
        ctx: &Context<'_>,
        src: String,
        rel: String,
        dst: String,
        weight: Option<f64>,
        properties: Option<Json<Value>>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<Edge> {
        let caller = caller(ctx, Scope::GraphWrite)?;
        let (src, rel, dst) = edge_key(src, rel, dst).gql()?;
        let weight = weight.map_or(Ok(Weight::ONE), Weight::new).gql()?;
        let properties = object("properties", properties).gql()?;
        let ttl = ttl(ttl_ms).gql()?;
        let backend = &state(ctx).backend;
        backend
            .put_edge(&caller.tenant, &src, &rel, &dst, weight, &properties, ttl)
            .await
            .gql()?;
        let stored = backend
            .get_edge(&caller.tenant, &src, &rel, &dst)
            .await
            .gql()?
            .ok_or_else(|| {
                Error::not_found(p8fs_core::Resource::Edge, format!("{src} -{rel}-> {dst}"))
            })
            .gql()?;
        Ok(stored.into())
    }

    /// Deletes an edge; returns whether one was there.
    async fn delete_edge(
        &self,
        ctx: &Context<'_>,
        src: String,
        rel: String,
        dst: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::GraphWrite)?;
        let (src, rel, dst) = edge_key(src, rel, dst).gql()?;
        state(ctx)
            .backend
            .delete_edge(&caller.tenant, &src, &rel, &dst)
            .await
            .gql()
    }
}

/// A JSON object argument, empty when absent.
pub(crate) fn object(
    field: &'static str,
    value: Option<Json<Value>>,
) -> p8fs_core::Result<JsonObject> {
    match value {
        Some(Json(value)) => JsonObject::new(field, value),
        None => Ok(JsonObject::empty()),
    }
}
