//! Graph records: nodes in `nodes`, each edge twice (`edges_out` keyed by source, `edges_in` keyed
//! by destination) so both directions are prefix scans.
//!
//! Atomicity: graph writes hold one graph lock while they check endpoints or cascade to edges and
//! then write one `WriteBatch`, so an edge is never written beside a node being deleted and both
//! copies of an edge always change together. Reads take no lock. Each write appends its changes
//! in its batch (see [`crate::change`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use rocksdb::WriteBatch;

use p8fs_core::graph::NodePage;
use p8fs_core::{
    ChangeOp, Direction, EdgeRecord, Error, GraphStore, JsonMap, JsonObject, Label, Limit, NodeId,
    NodeRecord, Page, Rel, RelFilter, Resource, Result, TenantId, Timestamp, Ttl, Weight,
    expires_at, is_visible,
};

use crate::RocksBackend;
use crate::change::Event;
use crate::schema::{self, CF_EDGES_IN, CF_EDGES_OUT, CF_NODES, Reader};

fn node_key(tenant: &TenantId, id: &NodeId) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), id.as_bytes()])
}

/// `tenant 0 a 0 rel 0 b`: `(src, dst)` in `edges_out`, `(dst, src)` in `edges_in`.
fn edge_key(tenant: &TenantId, a: &[u8], rel: &[u8], b: &[u8]) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), a, rel, b])
}

fn encode_node(
    label: &Label,
    properties: &JsonMap,
    expires_at: Option<Timestamp>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + label.as_bytes().len());
    out.extend_from_slice(&schema::encode_expiry(expires_at).to_be_bytes());
    out.extend_from_slice(&(label.as_bytes().len() as u32).to_be_bytes());
    out.extend_from_slice(label.as_bytes());
    schema::json_bytes(properties, &mut out)?;
    Ok(out)
}

fn node_expiry(raw: &[u8]) -> Result<Option<Timestamp>> {
    Ok(schema::decode_expiry(Reader::new(raw, "node").i64()?))
}

fn decode_node(id: NodeId, raw: &[u8]) -> Result<NodeRecord> {
    let mut reader = Reader::new(raw, "node");
    let expires_at = schema::decode_expiry(reader.i64()?);
    let label_len = reader.u32()? as usize;
    let label = Label::new(schema::text(reader.bytes(label_len)?, "node label")?)?;
    Ok(NodeRecord {
        id,
        label,
        properties: reader.json()?,
        expires_at,
    })
}

fn encode_edge(
    weight: f64,
    properties: &JsonMap,
    expires_at: Option<Timestamp>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&schema::encode_expiry(expires_at).to_be_bytes());
    out.extend_from_slice(&weight.to_le_bytes());
    schema::json_bytes(properties, &mut out)?;
    Ok(out)
}

fn edge_expiry(raw: &[u8]) -> Result<Option<Timestamp>> {
    Ok(schema::decode_expiry(Reader::new(raw, "edge").i64()?))
}

fn decode_edge(src: NodeId, rel: Rel, dst: NodeId, raw: &[u8]) -> Result<EdgeRecord> {
    let mut reader = Reader::new(raw, "edge");
    let expires_at = schema::decode_expiry(reader.i64()?);
    let weight = reader.f64()?;
    Ok(EdgeRecord {
        src,
        rel,
        dst,
        weight,
        properties: reader.json()?,
        expires_at,
    })
}

/// The `(a, rel, b)` components of an edge key.
fn edge_parts(raw_key: &[u8]) -> Result<(&[u8], &[u8], &[u8])> {
    let mut parts = schema::split(raw_key).skip(1);
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(rel), Some(b), None) => Ok((a, rel, b)),
        _ => Err(crate::error::corrupt("edge key")),
    }
}

/// Edges to delete, each with its expiry.
type Doomed = HashMap<RawEdge, Option<Timestamp>>;

/// The raw components of an edge key, for deleting both copies.
#[derive(PartialEq, Eq, Hash)]
struct RawEdge {
    tenant: Vec<u8>,
    src: Vec<u8>,
    rel: Vec<u8>,
    dst: Vec<u8>,
}

impl RawEdge {
    fn new(tenant: &[u8], src: &[u8], rel: &[u8], dst: &[u8]) -> Self {
        Self {
            tenant: tenant.to_vec(),
            src: src.to_vec(),
            rel: rel.to_vec(),
            dst: dst.to_vec(),
        }
    }
}

fn text_node(bytes: &[u8]) -> Result<NodeId> {
    NodeId::new(schema::text(bytes, "node id")?)
}

fn text_rel(bytes: &[u8]) -> Result<Rel> {
    Rel::new(schema::text(bytes, "rel")?)
}

impl RocksBackend {
    fn node_visible(&self, tenant: &TenantId, id: &[u8], now: Timestamp) -> Result<bool> {
        match self.get_raw(CF_NODES, &schema::key(&[tenant.as_bytes(), id]))? {
            Some(raw) => Ok(is_visible(node_expiry(&raw)?, now)),
            None => Ok(false),
        }
    }

    /// Collects into `doomed` every edge touching `id`, from both column families, with its
    /// expiry.
    fn edges_touching(&self, tenant: &TenantId, id: &NodeId, doomed: &mut Doomed) -> Result<()> {
        let prefix = schema::prefix(&[tenant.as_bytes(), id.as_bytes()]);
        let tenant = tenant.as_bytes();
        self.scan_raw(CF_EDGES_OUT, &prefix, None, |raw_key, raw| {
            let (src, rel, dst) = edge_parts(raw_key)?;
            doomed.insert(RawEdge::new(tenant, src, rel, dst), edge_expiry(raw)?);
            Ok(true)
        })?;
        self.scan_raw(CF_EDGES_IN, &prefix, None, |raw_key, raw| {
            let (dst, rel, src) = edge_parts(raw_key)?;
            doomed.insert(RawEdge::new(tenant, src, rel, dst), edge_expiry(raw)?);
            Ok(true)
        })
    }

    /// Adds to `batch` the deletion of both copies of each edge.
    fn delete_edges(&self, doomed: &Doomed, batch: &mut WriteBatch) -> Result<()> {
        for edge in doomed.keys() {
            let (tenant, src, rel, dst) = (&edge.tenant, &edge.src, &edge.rel, &edge.dst);
            batch.delete_cf(
                self.cf(CF_EDGES_OUT)?,
                schema::key(&[tenant, src, rel, dst]),
            );
            batch.delete_cf(self.cf(CF_EDGES_IN)?, schema::key(&[tenant, dst, rel, src]));
        }
        Ok(())
    }

    /// Physically removes expired nodes (with their edges) and expired edges.
    pub(crate) fn purge_graph(&self, now: Timestamp) -> Result<u64> {
        let _guard = self.graph_lock.lock();
        let mut expired_nodes = Vec::new();
        self.scan_raw(CF_NODES, &[], None, |raw_key, raw| {
            if !is_visible(node_expiry(raw)?, now) {
                expired_nodes.push(raw_key.to_vec());
            }
            Ok(true)
        })?;
        let mut batch = WriteBatch::default();
        let mut doomed = Doomed::new();
        for raw_key in &expired_nodes {
            let mut parts = schema::split(raw_key);
            let tenant =
                TenantId::new(schema::text(parts.next().unwrap_or_default(), "node key")?)?;
            let id = text_node(parts.next().unwrap_or_default())?;
            batch.delete_cf(self.cf(CF_NODES)?, raw_key);
            self.edges_touching(&tenant, &id, &mut doomed)?;
        }
        self.scan_raw(CF_EDGES_OUT, &[], None, |raw_key, raw| {
            let expires_at = edge_expiry(raw)?;
            if !is_visible(expires_at, now) {
                let tenant = schema::split(raw_key).next().unwrap_or_default();
                let (src, rel, dst) = edge_parts(raw_key)?;
                doomed.insert(RawEdge::new(tenant, src, rel, dst), expires_at);
            }
            Ok(true)
        })?;
        self.delete_edges(&doomed, &mut batch)?;
        self.write(batch)?;
        Ok((expired_nodes.len() + doomed.len()) as u64)
    }

    /// The edges in `doomed` (all touching the visible node `id`) that are visible: unexpired,
    /// with the other end visible. Ascending by `(src, rel, dst)`, the order their changes take.
    fn visible_edges(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        doomed: &Doomed,
        now: Timestamp,
    ) -> Result<Vec<(NodeId, Rel, NodeId)>> {
        let mut nodes: HashMap<&[u8], bool> = HashMap::new();
        let mut edges = Vec::new();
        for (edge, expires_at) in doomed {
            if !is_visible(*expires_at, now) {
                continue;
            }
            let other = if edge.src == id.as_bytes() {
                edge.dst.as_slice()
            } else {
                edge.src.as_slice()
            };
            let other_visible = match nodes.get(other) {
                Some(known) => *known,
                None => {
                    let known = other == id.as_bytes() || self.node_visible(tenant, other, now)?;
                    nodes.insert(other, known);
                    known
                }
            };
            if other_visible {
                edges.push((
                    text_node(&edge.src)?,
                    text_rel(&edge.rel)?,
                    text_node(&edge.dst)?,
                ));
            }
        }
        edges.sort_unstable();
        Ok(edges)
    }

    /// Visits the visible edges stored in `family` under `a` (optionally only relation `rel`),
    /// calling `visit(a, rel, b, value)` for each whose edge record is unexpired.
    fn scan_edges(
        &self,
        family: &'static str,
        tenant: &TenantId,
        a: &NodeId,
        rel: Option<&Rel>,
        now: Timestamp,
        mut visit: impl FnMut(&[u8], &[u8], &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let prefix = match rel {
            Some(rel) => schema::prefix(&[tenant.as_bytes(), a.as_bytes(), rel.as_bytes()]),
            None => schema::prefix(&[tenant.as_bytes(), a.as_bytes()]),
        };
        self.scan_raw(family, &prefix, None, |raw_key, raw| {
            if is_visible(edge_expiry(raw)?, now) {
                let (a, rel, b) = edge_parts(raw_key)?;
                visit(a, rel, b, raw)?;
            }
            Ok(true)
        })
    }
}

#[async_trait]
impl GraphStore for RocksBackend {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let _guard = self.graph_lock.lock();
        let now = self.now();
        let mut batch = WriteBatch::default();
        if !self.node_visible(tenant, id.as_bytes(), now)? {
            // An earlier incarnation's edges were invisible already: removing them appends
            // nothing.
            let mut doomed = Doomed::new();
            self.edges_touching(tenant, id, &mut doomed)?;
            self.delete_edges(&doomed, &mut batch)?;
        }
        batch.put_cf(
            self.cf(CF_NODES)?,
            node_key(tenant, id),
            encode_node(label, properties.get(), expires_at(now, ttl))?,
        );
        self.write_changes(tenant, batch, &[Event::node(ChangeOp::Put, id)])
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        let now = self.now();
        match self.get_raw(CF_NODES, &node_key(tenant, id))? {
            Some(raw) => {
                let node = decode_node(id.clone(), &raw)?;
                Ok(is_visible(node.expires_at, now).then_some(node))
            }
            None => Ok(None),
        }
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        let ids = NodeId::batch(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| node_key(tenant, id)).collect();
        // One multi-get, which reads every key from one consistent view. Sorted ids give sorted
        // keys (one tenant prefix, then the id), so RocksDB may skip its own sort.
        let values = self
            .db
            .batched_multi_get_cf(self.cf(CF_NODES)?, &keys, true);
        let mut nodes = Vec::with_capacity(ids.len());
        for (id, value) in ids.into_iter().zip(values) {
            if let Some(raw) = value.map_err(crate::error::classify)? {
                let node = decode_node(id.clone(), &raw)?;
                if is_visible(node.expires_at, now) {
                    nodes.push(node);
                }
            }
        }
        Ok(nodes)
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        let _guard = self.graph_lock.lock();
        let now = self.now();
        let existed = self.node_visible(tenant, id.as_bytes(), now)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_NODES)?, node_key(tenant, id));
        let mut doomed = Doomed::new();
        self.edges_touching(tenant, id, &mut doomed)?;
        self.delete_edges(&doomed, &mut batch)?;
        // The node's change, then one per edge that was visible (unexpired, other end visible);
        // an invisible node had no visible edges.
        let removed = if existed {
            self.visible_edges(tenant, id, &doomed, now)?
        } else {
            Vec::new()
        };
        let mut events = Vec::with_capacity(1 + removed.len());
        if existed {
            events.push(Event::node(ChangeOp::Delete, id));
        }
        events.extend(
            removed
                .iter()
                .map(|(src, rel, dst)| Event::edge(ChangeOp::Delete, src, rel, dst)),
        );
        self.write_changes(tenant, batch, &events)?;
        Ok(existed)
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let now = self.now();
        let prefix = schema::prefix(&[tenant.as_bytes()]);
        let start = start_after.map(|id| node_key(tenant, id));
        let mut items = Vec::new();
        self.scan_raw(CF_NODES, &prefix, start.as_deref(), |raw_key, raw| {
            if start.as_deref() == Some(raw_key) {
                return Ok(true);
            }
            if is_visible(node_expiry(raw)?, now) {
                items.push(decode_node(text_node(&raw_key[prefix.len()..])?, raw)?);
            }
            Ok(items.len() <= limit.get())
        })?;
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
        let _guard = self.graph_lock.lock();
        let now = self.now();
        for endpoint in [src, dst] {
            if !self.node_visible(tenant, endpoint.as_bytes(), now)? {
                return Err(Error::not_found(Resource::Node, endpoint));
            }
        }
        let value = encode_edge(weight.get(), properties.get(), expires_at(now, ttl))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_EDGES_OUT)?,
            edge_key(tenant, src.as_bytes(), rel.as_bytes(), dst.as_bytes()),
            &value,
        );
        batch.put_cf(
            self.cf(CF_EDGES_IN)?,
            edge_key(tenant, dst.as_bytes(), rel.as_bytes(), src.as_bytes()),
            &value,
        );
        self.write_changes(tenant, batch, &[Event::edge(ChangeOp::Put, src, rel, dst)])
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let now = self.now();
        let raw_key = edge_key(tenant, src.as_bytes(), rel.as_bytes(), dst.as_bytes());
        let Some(raw) = self.get_raw(CF_EDGES_OUT, &raw_key)? else {
            return Ok(None);
        };
        let edge = decode_edge(src.clone(), rel.clone(), dst.clone(), &raw)?;
        let visible = is_visible(edge.expires_at, now)
            && self.node_visible(tenant, src.as_bytes(), now)?
            && self.node_visible(tenant, dst.as_bytes(), now)?;
        Ok(visible.then_some(edge))
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        let _guard = self.graph_lock.lock();
        let now = self.now();
        let raw_key = edge_key(tenant, src.as_bytes(), rel.as_bytes(), dst.as_bytes());
        let Some(raw) = self.get_raw(CF_EDGES_OUT, &raw_key)? else {
            return Ok(false);
        };
        let visible = is_visible(edge_expiry(&raw)?, now)
            && self.node_visible(tenant, src.as_bytes(), now)?
            && self.node_visible(tenant, dst.as_bytes(), now)?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_EDGES_OUT)?, raw_key);
        batch.delete_cf(
            self.cf(CF_EDGES_IN)?,
            edge_key(tenant, dst.as_bytes(), rel.as_bytes(), src.as_bytes()),
        );
        let event = visible.then(|| Event::edge(ChangeOp::Delete, src, rel, dst));
        self.write_changes(tenant, batch, event.as_slice())?;
        Ok(visible)
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        let now = self.now();
        let mut visible: HashMap<Vec<u8>, bool> = HashMap::new();
        let mut is_node_visible = |id: &[u8]| -> Result<bool> {
            if let Some(known) = visible.get(id) {
                return Ok(*known);
            }
            let known = self.node_visible(tenant, id, now)?;
            visible.insert(id.to_vec(), known);
            Ok(known)
        };
        let rel_list: Vec<Option<&Rel>> = if rels.rels().is_empty() {
            vec![None]
        } else {
            rels.rels().iter().map(Some).collect()
        };
        let mut edges = Vec::new();
        let mut seen: HashSet<(NodeId, Rel, NodeId)> = HashSet::new();
        for node in nodes {
            if !is_node_visible(node.as_bytes())? {
                continue;
            }
            for rel in &rel_list {
                if direction != Direction::In {
                    let mut found = Vec::new();
                    self.scan_edges(CF_EDGES_OUT, tenant, node, *rel, now, |_, rel, dst, raw| {
                        found.push((rel.to_vec(), dst.to_vec(), raw.to_vec()));
                        Ok(())
                    })?;
                    for (rel, dst, raw) in found {
                        if is_node_visible(&dst)? {
                            let edge =
                                decode_edge(node.clone(), text_rel(&rel)?, text_node(&dst)?, &raw)?;
                            if direction == Direction::Out
                                || seen.insert((
                                    edge.src.clone(),
                                    edge.rel.clone(),
                                    edge.dst.clone(),
                                ))
                            {
                                edges.push(edge);
                            }
                        }
                    }
                }
                if direction != Direction::Out {
                    let mut found = Vec::new();
                    self.scan_edges(CF_EDGES_IN, tenant, node, *rel, now, |_, rel, src, raw| {
                        found.push((rel.to_vec(), src.to_vec(), raw.to_vec()));
                        Ok(())
                    })?;
                    for (rel, src, raw) in found {
                        if is_node_visible(&src)? {
                            let edge =
                                decode_edge(text_node(&src)?, text_rel(&rel)?, node.clone(), &raw)?;
                            if direction == Direction::In
                                || seen.insert((
                                    edge.src.clone(),
                                    edge.rel.clone(),
                                    edge.dst.clone(),
                                ))
                            {
                                edges.push(edge);
                            }
                        }
                    }
                }
            }
        }
        Ok(edges)
    }
}
