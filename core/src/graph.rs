//! The graph capability: labelled nodes and weighted, directed, typed edges with JSON properties
//! and optional ttl. Traversals are not here: they live once in [`crate::traverse`], over the
//! [`GraphStore::edges_of`] primitive, so tie-breaking cannot drift between backends.

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{
    JsonMap, JsonObject, Label, Limit, NodeId, Page, Rel, RelFilter, TenantId, Timestamp, Ttl,
    Weight,
};
pub use crate::validate::MAX_NODES_PER_GET;

/// Which edges a traversal follows from a node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Direction {
    /// Edges leaving the node (`node -> other`).
    Out,
    /// Edges entering the node (`other -> node`).
    In,
    /// Both.
    Both,
}

impl Direction {
    /// The direction that walks the same edges backwards.
    pub fn reverse(self) -> Self {
        match self {
            Direction::Out => Direction::In,
            Direction::In => Direction::Out,
            Direction::Both => Direction::Both,
        }
    }

    /// Parses `out`, `in` or `both`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "out" => Ok(Direction::Out),
            "in" => Ok(Direction::In),
            "both" => Ok(Direction::Both),
            _ => Err(crate::Error::invalid(
                "direction",
                "must be one of out, in, both",
            )),
        }
    }

    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
            Direction::Both => "both",
        }
    }
}

/// A visible node.
#[derive(Clone, PartialEq, Debug)]
pub struct NodeRecord {
    pub id: NodeId,
    pub label: Label,
    pub properties: JsonMap,
    /// When the node stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
}

/// A visible edge; `(src, rel, dst)` is unique.
#[derive(Clone, PartialEq, Debug)]
pub struct EdgeRecord {
    pub src: NodeId,
    pub rel: Rel,
    pub dst: NodeId,
    pub weight: f64,
    pub properties: JsonMap,
    /// When the edge stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
}

/// A page of nodes; the cursor is the last id of the page.
pub type NodePage = Page<NodeRecord, NodeId>;

/// Graph storage. Every method is scoped to one tenant and sees only records visible at the
/// backend clock's `now`. An edge is visible only while it and both its endpoints are.
#[async_trait]
pub trait GraphStore: Send + Sync {
    /// Upserts a node. When no visible node had this id, edges left from an earlier (deleted or
    /// expired) node of that id are removed, so they never reappear.
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()>;

    /// The visible node, or `None`.
    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>>;

    /// The visible nodes among `ids`, each at most once, ascending by id (raw bytes): a batched
    /// [`GraphStore::get_node`] with the same visibility, read in one backend call.
    ///
    /// - An id that is not visible (never written, deleted, expired) is simply not in the
    ///   result; nodes of other tenants are never returned.
    /// - Duplicates in `ids` are allowed; each node appears once.
    /// - An empty `ids` is an empty result, without a backend round trip.
    /// - At most [`MAX_NODES_PER_GET`] ids: more is `InvalidInput` naming `ids`
    ///   ([`NodeId::batch`] checks it and gives the ids each once, in result order).
    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>>;

    /// Deletes a node and every edge touching it; returns whether a visible node existed.
    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool>;

    /// Visible nodes with ids after `start_after`, ascending by raw bytes, at most `limit`;
    /// `next` is `Some` exactly when more exist.
    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage>;

    /// Upserts the edge `(src, rel, dst)`. `NotFound` (naming the node) if an endpoint is not
    /// visible.
    #[expect(
        clippy::too_many_arguments,
        reason = "an edge is its key, weight, properties and ttl"
    )]
    async fn put_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
        weight: Weight,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()>;

    /// The visible edge, or `None`.
    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>>;

    /// Deletes an edge; returns whether a visible edge existed.
    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool>;

    /// The traversal primitive: every visible edge (with both endpoints visible) whose relation
    /// passes `rels` and that leaves (`Out`), enters (`In`) or touches (`Both`) one of `nodes`.
    /// Each edge appears once; order is unspecified.
    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>>;
}
