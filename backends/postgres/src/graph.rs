//! Graph nodes (`p8fs_nodes`) and edges (`p8fs_edges`), and the traversal primitive.
//!
//! Consistency: an edge row references both node rows (foreign keys with `ON DELETE CASCADE`), so
//! deleting a node deletes its edges in the same statement (a purge deletes the edges of expired
//! nodes first, so that it counts them). `put_edge` locks the
//! visible endpoint rows `FOR KEY SHARE` in the statement that writes the edge, so it serialises
//! with a concurrent `delete_node` (which deletes the row) and with the slow path of `put_node`
//! (which locks it `FOR UPDATE`): an edge is never left next to a deleted node, nor written into an
//! incarnation of a node that ended. `put_node` on an expired row runs in a transaction that locks
//! the row, deletes the edges the old incarnation left, and replaces it; an absent row has no
//! edges (the foreign keys see to it). `edges_of` is one query per call, joining the visibility of
//! both endpoints; so is `get_nodes` (`id = ANY($2)`).
//!
//! Changes: `put_node`, `put_edge` and `delete_edge` append theirs in the statement that writes
//! (the slow path of `put_node` in its last statement). `delete_node` is a transaction: it locks
//! the node row `FOR UPDATE` (so no edge can be added to it any more), then one statement deletes
//! its edges and the row and appends the node's `Delete` and one edge `Delete` per visible edge,
//! edges in (src, rel, dst) order. Removing what was already invisible (an expired node, the edges
//! an earlier incarnation left) appends nothing.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use p8fs_core::graph::NodePage;
use p8fs_core::{
    Direction, EdgeRecord, Error, GraphStore, JsonObject, Label, Limit, NodeId, NodeRecord, Page,
    Rel, RelFilter, Resource, Result, TenantId, Ttl, Weight, expires_at,
};

use crate::PgBackend;
use crate::error::{classify, corrupt};
use crate::kv::overfetch;
use crate::schema::{json_object, json_text};
use crate::sql;

fn node_id(raw: String) -> Result<NodeId> {
    NodeId::new(raw).map_err(|_| corrupt("node id"))
}

/// A row of `id, label, properties, expires_at`.
fn node(row: &PgRow) -> Result<NodeRecord> {
    let label: String = row.try_get(1).map_err(classify)?;
    Ok(NodeRecord {
        id: node_id(row.try_get(0).map_err(classify)?)?,
        label: Label::new(label).map_err(|_| corrupt("node label"))?,
        properties: json_object(row.try_get(2).map_err(classify)?, "node properties")?,
        expires_at: row.try_get(3).map_err(classify)?,
    })
}

/// A row of `src, rel, dst, weight, properties, expires_at`.
fn edge(row: &PgRow) -> Result<EdgeRecord> {
    let rel: String = row.try_get(1).map_err(classify)?;
    Ok(EdgeRecord {
        src: node_id(row.try_get(0).map_err(classify)?)?,
        rel: Rel::new(rel).map_err(|_| corrupt("edge relation"))?,
        dst: node_id(row.try_get(2).map_err(classify)?)?,
        weight: row.try_get(3).map_err(classify)?,
        properties: json_object(row.try_get(4).map_err(classify)?, "edge properties")?,
        expires_at: row.try_get(5).map_err(classify)?,
    })
}

impl PgBackend {
    /// Physically removes expired edges, then expired nodes with their edges, in batches; every
    /// edge removed counts, also one removed because its node expired.
    pub(crate) async fn purge_graph(&self, now: i64) -> Result<u64> {
        let expired_edges = self.purge_batches(sql::EDGE_PURGE, now).await?;
        let edges_of_nodes = self.purge_batches(sql::NODE_PURGE_EDGES, now).await?;
        let nodes = self.purge_batches(sql::NODE_PURGE, now).await?;
        Ok(expired_edges + edges_of_nodes + nodes)
    }

    /// `put_node` when an expired row of that id exists: lock it, remove the edges its
    /// incarnation left, and replace it, in one transaction.
    async fn replace_expired_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &str,
        expires: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let visible: Option<bool> = sqlx::query_scalar(sql::NODE_LOCK)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if visible == Some(false) {
            sqlx::query(sql::NODE_DELETE_EDGES)
                .bind(tenant.as_str())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        sqlx::query(sql::NODE_UPSERT)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(label.as_str())
            .bind(properties)
            .bind(expires)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }
}

#[async_trait]
impl GraphStore for PgBackend {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let now = self.now();
        let properties = json_text(properties.get())?;
        let expires = expires_at(now, ttl);
        // The common case, one statement: a new node, or a visible one updated in place.
        let written: Option<i32> = sqlx::query_scalar(sql::NODE_UPSERT_UNLESS_EXPIRED)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(label.as_str())
            .bind(&properties)
            .bind(expires)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        if written.is_some() {
            return Ok(());
        }
        self.replace_expired_node(tenant, id, label, &properties, expires, now)
            .await
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        let row = sqlx::query(sql::NODE_GET)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            let label: String = row.try_get(0).map_err(classify)?;
            Ok(NodeRecord {
                id: id.clone(),
                label: Label::new(label).map_err(|_| corrupt("node label"))?,
                properties: json_object(row.try_get(1).map_err(classify)?, "node properties")?,
                expires_at: row.try_get(2).map_err(classify)?,
            })
        })
        .transpose()
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        let ids: Vec<&str> = NodeId::batch(ids)?
            .into_iter()
            .map(NodeId::as_str)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::NODES_GET)
            .bind(tenant.as_str())
            .bind(&ids)
            .bind(self.now())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(node).collect()
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        let now = self.now();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let visible: Option<bool> = sqlx::query_scalar(sql::NODE_LOCK)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        match visible {
            None => return Ok(false),
            Some(false) => {
                sqlx::query(sql::NODE_DELETE_INVISIBLE)
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            Some(true) => {
                sqlx::query(sql::NODE_DELETE_VISIBLE)
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
        }
        tx.commit().await.map_err(classify)?;
        Ok(visible == Some(true))
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let rows = sqlx::query(sql::NODE_LIST)
            .bind(tenant.as_str())
            .bind(start_after.map_or("", NodeId::as_str))
            .bind(self.now())
            .bind(overfetch(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let items = rows.iter().map(node).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |n| n.id.clone()))
    }

    async fn put_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
        weight: Weight,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let now = self.now();
        let row = sqlx::query(sql::EDGE_PUT)
            .bind(tenant.as_str())
            .bind(src.as_str())
            .bind(rel.as_str())
            .bind(dst.as_str())
            .bind(weight.get())
            .bind(json_text(properties.get())?)
            .bind(expires_at(now, ttl))
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let written: i64 = row.try_get(1).map_err(classify)?;
        if written > 0 {
            return Ok(());
        }
        let found: Vec<String> = row.try_get(0).map_err(classify)?;
        let missing = if found.iter().any(|f| f == src.as_str()) {
            dst
        } else {
            src
        };
        Err(Error::not_found(Resource::Node, missing))
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let row = sqlx::query(sql::EDGE_GET)
            .bind(tenant.as_str())
            .bind(src.as_str())
            .bind(rel.as_str())
            .bind(dst.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(EdgeRecord {
                src: src.clone(),
                rel: rel.clone(),
                dst: dst.clone(),
                weight: row.try_get(0).map_err(classify)?,
                properties: json_object(row.try_get(1).map_err(classify)?, "edge properties")?,
                expires_at: row.try_get(2).map_err(classify)?,
            })
        })
        .transpose()
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        let visible: Option<bool> = sqlx::query_scalar(sql::EDGE_DELETE)
            .bind(tenant.as_str())
            .bind(src.as_str())
            .bind(rel.as_str())
            .bind(dst.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(visible.unwrap_or(false))
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let statement = match direction {
            Direction::Out => sql::EDGES_OUT,
            Direction::In => sql::EDGES_IN,
            Direction::Both => sql::EDGES_BOTH,
        };
        let ids: Vec<&str> = nodes.iter().map(NodeId::as_str).collect();
        let rel_names: Vec<&str> = rels.rels().iter().map(Rel::as_str).collect();
        // Planned for the actual node list every time: an index probe per node for a small
        // frontier, a different plan for a large one.
        let rows = sqlx::query(statement)
            .persistent(false)
            .bind(tenant.as_str())
            .bind(&ids)
            .bind(&rel_names)
            .bind(self.now())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(edge).collect()
    }
}
