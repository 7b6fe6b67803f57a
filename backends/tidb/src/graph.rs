//! Graph nodes in `p8fs_nodes` and edges in `p8fs_edges`, indexed both ways (the primary key
//! leads with the source, `p8fs_edges_in` with the destination).
//!
//! Atomicity: writers lock the node rows they depend on. `put_edge` locks both endpoints
//! (`SELECT ... FOR UPDATE`, in key order) and checks they are visible before it writes the
//! edge; `delete_node` locks the node and deletes it together with every edge touching it;
//! `put_node` locks the node and, when no visible node had the id, deletes edges left from an
//! earlier incarnation. A `put_edge` racing a `delete_node` of an endpoint therefore either
//! commits first (and its edge is deleted with the node) or finds the node gone (`NotFound`), so
//! no visible edge ever dangles. Reads need no lock: an edge is returned only when it and both
//! endpoints are visible, checked by joins in the same statement.
//!
//! Changes (`change.rs`), each the last step of its write's transaction: `put_node` and
//! `put_edge` append a `Put`. `delete_node` of a visible node appends the node's `Delete`, then
//! a `Delete` for each visible edge it removes: it locks every edge row touching the node first,
//! so of two transactions removing one edge (`delete_node` of either endpoint, `delete_edge`)
//! only the one that gets the row's lock first still finds it and reports it. `delete_edge`
//! locks the edge's row the same way before it decides. Removing what was already invisible
//! (expired edges, edges of an expired node, the edges `put_node` clears from an earlier node
//! with its id) appends nothing.

use std::collections::HashMap;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, Value};

use p8fs_core::graph::NodePage;
use p8fs_core::{
    ChangeEvent, Direction, EdgeRecord, Error, GraphStore, JsonObject, Label, Limit, NodeId,
    NodeRecord, Page, Rel, RelFilter, Resource, Result, Subject, TenantId, Timestamp, Ttl, Weight,
    expires_at, is_visible,
};

use crate::error::{classify, corrupt};
use crate::schema::{self, bytes};
use crate::sql::EdgeSide;
use crate::{PURGE_BATCH, TidbBackend, TxError, sql, transaction};

/// Locks the node's row and tells whether it exists and whether it is visible at `now`.
async fn lock_node(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    id: &NodeId,
    now: Timestamp,
) -> Result<(bool, bool), TxError> {
    let row: Option<Option<i64>> = tx
        .exec_first(sql::NODE_LOCK, (bytes(tenant.as_str()), bytes(id.as_str())))
        .await?;
    Ok(match row {
        Some(expires) => (true, is_visible(expires, now)),
        None => (false, false),
    })
}

/// Deletes every edge leaving or entering `id`; returns how many.
async fn delete_edges_touching(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    id: &NodeId,
) -> Result<u64, TxError> {
    let key = (bytes(tenant.as_str()), bytes(id.as_str()));
    tx.exec_drop(sql::EDGES_DELETE_FROM, key.clone()).await?;
    let leaving = tx.affected_rows();
    tx.exec_drop(sql::EDGES_DELETE_TO, key).await?;
    Ok(leaving + tx.affected_rows())
}

/// Locks every edge touching `id` and returns the visible ones (it and both endpoints visible at
/// `now`), sorted by source, relation and destination. With the rows locked, the plain read that
/// checks visibility sees them as this transaction will delete them.
async fn lock_visible_edges(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    id: &NodeId,
    now: Timestamp,
) -> Result<Vec<EdgeRecord>, TxError> {
    let key = (bytes(tenant.as_str()), bytes(id.as_str()));
    tx.exec_drop(sql::EDGES_LOCK_FROM, key.clone()).await?;
    tx.exec_drop(sql::EDGES_LOCK_TO, key).await?;
    let sides = [EdgeSide::Out, EdgeSide::In];
    let mut params: Vec<Value> = Vec::new();
    for side in sides {
        params.extend([
            bytes(tenant.as_str()),
            Value::from(now),
            Value::from(now),
            Value::from(now),
            bytes(id.as_str()),
        ]);
        if side == EdgeSide::In {
            params.push(bytes(id.as_str()));
        }
    }
    let rows: Vec<Row> = tx.exec(sql::edges_of(&sides, 1, 0), params).await?;
    let mut edges = rows.into_iter().map(edge).collect::<Result<Vec<_>>>()?;
    edges.sort_by(|x, y| {
        (x.src.as_str(), x.rel.as_str(), x.dst.as_str()).cmp(&(
            y.src.as_str(),
            y.rel.as_str(),
            y.dst.as_str(),
        ))
    });
    Ok(edges)
}

fn node(mut row: Row) -> Result<NodeRecord> {
    Ok(NodeRecord {
        id: NodeId::new(schema::text(&mut row, 0, "node id")?).map_err(|_| corrupt("node id"))?,
        label: Label::new(schema::text(&mut row, 1, "node label")?)
            .map_err(|_| corrupt("node label"))?,
        properties: schema::json(&mut row, 2, "node properties")?,
        expires_at: schema::expiry(&mut row, 3, "node expiry")?,
    })
}

/// A `(src, rel, dst, weight, properties, expires_at)` row.
fn edge(mut row: Row) -> Result<EdgeRecord> {
    Ok(EdgeRecord {
        src: NodeId::new(schema::text(&mut row, 0, "edge src")?)
            .map_err(|_| corrupt("edge src"))?,
        rel: Rel::new(schema::text(&mut row, 1, "edge rel")?).map_err(|_| corrupt("edge rel"))?,
        dst: NodeId::new(schema::text(&mut row, 2, "edge dst")?)
            .map_err(|_| corrupt("edge dst"))?,
        weight: schema::column(&mut row, 3, "edge weight")?,
        properties: schema::json(&mut row, 4, "edge properties")?,
        expires_at: schema::expiry(&mut row, 5, "edge expiry")?,
    })
}

impl TidbBackend {
    /// Physically removes expired edges, then expired nodes with their edges; returns the count.
    pub(crate) async fn purge_graph(&self, now: Timestamp) -> Result<u64> {
        let mut removed = self.purge_batches(sql::EDGE_PURGE, now).await?;
        loop {
            let expired: Vec<(Vec<u8>, Vec<u8>)> = self
                .conn()
                .await?
                .exec(sql::NODE_EXPIRED, (now, PURGE_BATCH))
                .await
                .map_err(classify)?;
            let batch = expired.len() as u64;
            for (tenant, id) in expired {
                let tenant = String::from_utf8(tenant)
                    .ok()
                    .and_then(|t| TenantId::new(t).ok());
                let id = String::from_utf8(id).ok().and_then(|i| NodeId::new(i).ok());
                let (Some(tenant), Some(id)) = (tenant, id) else {
                    return Err(corrupt("node"));
                };
                removed += transaction!(self, tx => {
                    // Re-checked under the lock: the node may have been written again since.
                    let (exists, visible) = lock_node(&mut tx, &tenant, &id, now).await?;
                    if exists && !visible {
                        let edges = delete_edges_touching(&mut tx, &tenant, &id).await?;
                        tx.exec_drop(sql::NODE_DELETE_EXPIRED, (bytes(tenant.as_str()), bytes(id.as_str()), now))
                            .await?;
                        1 + edges
                    } else {
                        0
                    }
                })?;
            }
            if batch < PURGE_BATCH {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl GraphStore for TidbBackend {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let properties = schema::json_text(properties.get())?;
        transaction!(self, tx => {
            let now = self.now();
            let expires = expires_at(now, ttl);
            let (exists, visible) = lock_node(&mut tx, tenant, id, now).await?;
            if !visible {
                // Edges of an earlier (deleted or expired) node with this id must not reappear.
                delete_edges_touching(&mut tx, tenant, id).await?;
            }
            if exists {
                tx.exec_drop(
                    sql::NODE_UPDATE,
                    (bytes(label.as_str()), properties.as_str(), expires, bytes(tenant.as_str()), bytes(id.as_str())),
                )
                .await?;
            } else {
                tx.exec_drop(
                    sql::NODE_INSERT,
                    (bytes(tenant.as_str()), bytes(id.as_str()), bytes(label.as_str()), properties.as_str(), expires),
                )
                .await?;
            }
            let event = ChangeEvent::put(Subject::Node { id: id.clone() }, None);
            self.append(&mut tx, tenant, &[event]).await?;
        })
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                sql::NODE_GET,
                (bytes(tenant.as_str()), bytes(id.as_str()), self.now()),
            )
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        Ok(Some(NodeRecord {
            id: id.clone(),
            label: Label::new(schema::text(&mut row, 0, "node label")?)
                .map_err(|_| corrupt("node label"))?,
            properties: schema::json(&mut row, 1, "node properties")?,
            expires_at: schema::expiry(&mut row, 2, "node expiry")?,
        }))
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        let ids = NodeId::batch(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params: Vec<Value> = Vec::with_capacity(ids.len() + 2);
        params.push(bytes(tenant.as_str()));
        params.extend(ids.iter().map(|id| bytes(id.as_str())));
        params.push(Value::from(self.now()));
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(sql::nodes_get(ids.len()), params)
            .await
            .map_err(classify)?;
        rows.into_iter().map(node).collect()
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        transaction!(self, tx => {
            let now = self.now();
            let (_, visible) = lock_node(&mut tx, tenant, id, now).await?;
            // An invisible node has no visible edges: nothing it removes is a change.
            let mut events = Vec::new();
            if visible {
                events.push(ChangeEvent::delete(Subject::Node { id: id.clone() }));
                let edges = lock_visible_edges(&mut tx, tenant, id, now).await?;
                events.extend(edges.into_iter().map(|e| {
                    ChangeEvent::delete(Subject::Edge { src: e.src, rel: e.rel, dst: e.dst })
                }));
            }
            delete_edges_touching(&mut tx, tenant, id).await?;
            tx.exec_drop(sql::NODE_DELETE, (bytes(tenant.as_str()), bytes(id.as_str()))).await?;
            self.append(&mut tx, tenant, &events).await?;
            visible
        })
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let params: Vec<Value> = vec![
            bytes(tenant.as_str()),
            bytes(start_after.map_or("", NodeId::as_str)),
            Value::from(self.now()),
            Value::from(limit.get() as u64 + 1),
        ];
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(sql::NODE_LIST_PAGE, params)
            .await
            .map_err(classify)?;
        let items = rows.into_iter().map(node).collect::<Result<Vec<_>>>()?;
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
        let properties = schema::json_text(properties.get())?;
        transaction!(self, tx => {
            let now = self.now();
            let rows: Vec<(Vec<u8>, Option<i64>)> = tx
                .exec(sql::NODES_LOCK_PAIR, (bytes(tenant.as_str()), bytes(src.as_str()), bytes(dst.as_str())))
                .await?;
            let visible: HashMap<Vec<u8>, bool> = rows
                .into_iter()
                .map(|(id, expires)| (id, is_visible(expires, now)))
                .collect();
            for endpoint in [src, dst] {
                if !visible.get(endpoint.as_bytes()).copied().unwrap_or(false) {
                    return Err(Error::not_found(Resource::Node, endpoint).into());
                }
            }
            let params: Vec<Value> = vec![
                bytes(tenant.as_str()),
                bytes(src.as_str()),
                bytes(rel.as_str()),
                bytes(dst.as_str()),
                Value::from(weight.get()),
                Value::from(properties.as_str()),
                Value::from(expires_at(now, ttl)),
            ];
            tx.exec_drop(sql::EDGE_UPSERT, params).await?;
            let subject = Subject::Edge { src: src.clone(), rel: rel.clone(), dst: dst.clone() };
            self.append(&mut tx, tenant, &[ChangeEvent::put(subject, None)]).await?;
        })
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let now = self.now();
        let params: Vec<Value> = vec![
            bytes(tenant.as_str()),
            bytes(src.as_str()),
            bytes(rel.as_str()),
            bytes(dst.as_str()),
            Value::from(now),
            Value::from(now),
            Value::from(now),
        ];
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(sql::EDGE_GET, params)
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        Ok(Some(EdgeRecord {
            src: src.clone(),
            rel: rel.clone(),
            dst: dst.clone(),
            weight: schema::column(&mut row, 0, "edge weight")?,
            properties: schema::json(&mut row, 1, "edge properties")?,
            expires_at: schema::expiry(&mut row, 2, "edge expiry")?,
        }))
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        transaction!(self, tx => {
            let now = self.now();
            let key = || vec![bytes(tenant.as_str()), bytes(src.as_str()), bytes(rel.as_str()), bytes(dst.as_str())];
            // The row's lock decides between concurrent removers of the edge: a later one finds
            // no row, so only one of them reports (and logs) the removal.
            let locked: Option<Row> = tx.exec_first(sql::EDGE_LOCK, key()).await?;
            if locked.is_some() {
                let mut params = key();
                params.extend([Value::from(now), Value::from(now), Value::from(now)]);
                let visible = tx.exec_first::<Row, _, _>(sql::EDGE_GET, params).await?.is_some();
                tx.exec_drop(sql::EDGE_DELETE, key()).await?;
                if visible {
                    let subject = Subject::Edge { src: src.clone(), rel: rel.clone(), dst: dst.clone() };
                    self.append(&mut tx, tenant, &[ChangeEvent::delete(subject)]).await?;
                }
                visible
            } else {
                false
            }
        })
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
        let sides: &[EdgeSide] = match direction {
            Direction::Out => &[EdgeSide::Out],
            Direction::In => &[EdgeSide::In],
            Direction::Both => &[EdgeSide::Out, EdgeSide::In],
        };
        let now = self.now();
        let mut params: Vec<Value> = Vec::new();
        for side in sides {
            params.extend([
                bytes(tenant.as_str()),
                Value::from(now),
                Value::from(now),
                Value::from(now),
            ]);
            params.extend(nodes.iter().map(|n| bytes(n.as_str())));
            if *side == EdgeSide::In && sides.len() > 1 {
                params.extend(nodes.iter().map(|n| bytes(n.as_str())));
            }
            params.extend(rels.rels().iter().map(|r| bytes(r.as_str())));
        }
        let statement = sql::edges_of(sides, nodes.len(), rels.rels().len());
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(statement, params)
            .await
            .map_err(classify)?;
        rows.into_iter().map(edge).collect()
    }
}
