//! The reference model: every backend trait implemented in plain in-memory Rust, written to be
//! obviously correct rather than fast. Every read filters by visibility at the clock's `now`;
//! nothing is ever purged except by [`Maintenance::purge_expired`]. Objects are in
//! `model/object.rs`; data and upload ids come from the same counter as versions. Every write
//! appends its change (`model/change.rs`) while it holds the state lock, after everything that
//! can fail has been checked, so a failed write appends nothing; `delete_node` appends the
//! node's `Delete`, then one edge `Delete` per visible edge it removed, edges ordered by
//! (src, rel, dst) as raw bytes, which every backend follows too.

mod change;
mod object;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use p8fs_core::graph::{MAX_NODES_PER_GET, NodePage};
use p8fs_core::kv::KvPage;
use p8fs_core::vector::VectorPage;
use p8fs_core::{
    ChangeEvent, Clock, CollectionName, CollectionSpec, Direction, EdgeRecord, Embedding, Error,
    Filter, GraphStore, JsonObject, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Label,
    Limit, Maintenance, NodeId, NodeRecord, Page, RecordId, Rel, RelFilter, Resource, Result,
    Subject, TenantId, Timestamp, Ttl, VectorRecord, VectorStore, Version, Weight, expires_at,
    is_visible,
};

/// The in-memory reference backend.
#[derive(Debug)]
pub struct ModelBackend {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_version: u64,
    kv: BTreeMap<(TenantId, Key), KvEntry>,
    collections: BTreeMap<(TenantId, CollectionName), Collection>,
    nodes: BTreeMap<(TenantId, NodeId), NodeRecord>,
    edges: BTreeMap<(TenantId, NodeId, Rel, NodeId), EdgeRecord>,
    objects: object::Objects,
    changes: change::Changes,
}

#[derive(Debug)]
struct Collection {
    spec: CollectionSpec,
    records: BTreeMap<RecordId, VectorRecord>,
}

impl ModelBackend {
    /// A model reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }
}

impl State {
    fn visible_kv(&self, tenant: &TenantId, key: &Key, now: Timestamp) -> Option<&KvEntry> {
        self.kv
            .get(&(tenant.clone(), key.clone()))
            .filter(|e| is_visible(e.expires_at, now))
    }

    fn write_kv(
        &mut self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
        now: Timestamp,
    ) -> Version {
        self.last_version += 1;
        let version = Version(self.last_version);
        let entry = KvEntry {
            key: key.clone(),
            value: value.get().clone(),
            version,
            expires_at: expires_at(now, ttl),
        };
        self.kv.insert((tenant.clone(), key.clone()), entry);
        self.changes.append(
            tenant,
            now,
            ChangeEvent::put(Subject::Kv { key: key.clone() }, Some(version)),
        );
        version
    }

    fn collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<&Collection> {
        self.collections
            .get(&(tenant.clone(), name.clone()))
            .ok_or_else(|| Error::not_found(Resource::Collection, name))
    }

    fn visible_node(&self, tenant: &TenantId, id: &NodeId, now: Timestamp) -> Option<&NodeRecord> {
        self.nodes
            .get(&(tenant.clone(), id.clone()))
            .filter(|n| is_visible(n.expires_at, now))
    }

    fn edge_visible(&self, tenant: &TenantId, edge: &EdgeRecord, now: Timestamp) -> bool {
        is_visible(edge.expires_at, now)
            && self.visible_node(tenant, &edge.src, now).is_some()
            && self.visible_node(tenant, &edge.dst, now).is_some()
    }

    fn remove_edges_touching(&mut self, tenant: &TenantId, id: &NodeId) {
        self.edges
            .retain(|(t, src, _, dst), _| !(t == tenant && (src == id || dst == id)));
    }
}

#[async_trait]
impl KvStore for ModelBackend {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        let now = self.clock.now();
        Ok(self.state.lock().visible_kv(tenant, key, now).cloned())
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let now = self.clock.now();
        Ok(self.state.lock().write_kv(tenant, key, value, ttl, now))
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        if state.visible_kv(tenant, key, now).is_some() {
            return Err(Error::already_exists(Resource::Key, key));
        }
        Ok(state.write_kv(tenant, key, value, ttl, now))
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        match state.visible_kv(tenant, key, now) {
            None => Err(Error::not_found(Resource::Key, key)),
            Some(entry) if entry.version != expected => Err(Error::conflict(format!(
                "key {key} is at version {}, not {expected}",
                entry.version
            ))),
            Some(_) => Ok(state.write_kv(tenant, key, value, ttl, now)),
        }
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let existed = state.visible_kv(tenant, key, now).is_some();
        state.kv.remove(&(tenant.clone(), key.clone()));
        if existed {
            let subject = Subject::Kv { key: key.clone() };
            state
                .changes
                .append(tenant, now, ChangeEvent::delete(subject));
        }
        Ok(existed)
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let now = self.clock.now();
        let state = self.state.lock();
        let mut items: Vec<KvEntry> = state
            .kv
            .iter()
            .filter(|((t, k), e)| {
                t == tenant
                    && prefix.matches(k)
                    && start_after.is_none_or(|after| k.as_bytes() > after.as_bytes())
                    && is_visible(e.expires_at, now)
            })
            .map(|(_, e)| e.clone())
            .collect();
        items.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        items.truncate(limit.get() + 1);
        Ok(Page::from_overfetch(items, limit, |e| e.key.clone()))
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        _path: &JsonPath,
        _operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        // Every visible record is a candidate; core decides which match.
        self.scan(tenant, &KeyPrefix::all(), start_after, limit)
            .await
    }
}

#[async_trait]
impl VectorStore for ModelBackend {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let key = (tenant.clone(), spec.name.clone());
        match state.collections.get(&key) {
            Some(existing) if existing.spec == *spec => Ok(false),
            Some(existing) => Err(Error::conflict(format!(
                "collection {} exists with dimension {} and metric {}",
                spec.name,
                existing.spec.dimension.get(),
                existing.spec.metric
            ))),
            None => {
                state.collections.insert(
                    key,
                    Collection {
                        spec: spec.clone(),
                        records: BTreeMap::new(),
                    },
                );
                let subject = Subject::Collection {
                    name: spec.name.clone(),
                };
                state
                    .changes
                    .append(tenant, now, ChangeEvent::put(subject, None));
                Ok(true)
            }
        }
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        let state = self.state.lock();
        Ok(state
            .collections
            .get(&(tenant.clone(), name.clone()))
            .map(|c| c.spec.clone()))
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let state = self.state.lock();
        let mut specs: Vec<CollectionSpec> = state
            .collections
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, c)| c.spec.clone())
            .collect();
        specs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(specs)
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let existed = state
            .collections
            .remove(&(tenant.clone(), name.clone()))
            .is_some();
        if existed {
            // One change for the collection; its records go with it without one each.
            let subject = Subject::Collection { name: name.clone() };
            state
                .changes
                .append(tenant, now, ChangeEvent::delete(subject));
        }
        Ok(existed)
    }

    async fn upsert_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
        vector: &Embedding,
        metadata: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let entry = state
            .collections
            .get_mut(&(tenant.clone(), collection.clone()))
            .ok_or_else(|| Error::not_found(Resource::Collection, collection))?;
        if !vector.fits(&entry.spec) {
            return Err(Error::conflict(format!(
                "the vector does not fit collection {collection}"
            )));
        }
        entry.records.insert(
            id.clone(),
            VectorRecord {
                id: id.clone(),
                vector: vector.values().to_vec(),
                metadata: metadata.get().clone(),
                expires_at: expires_at(now, ttl),
            },
        );
        let subject = Subject::Vector {
            collection: collection.clone(),
            id: id.clone(),
        };
        state
            .changes
            .append(tenant, now, ChangeEvent::put(subject, None));
        Ok(())
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let now = self.clock.now();
        let state = self.state.lock();
        let entry = state.collection(tenant, collection)?;
        Ok(entry
            .records
            .get(id)
            .filter(|r| is_visible(r.expires_at, now))
            .cloned())
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let entry = state
            .collections
            .get_mut(&(tenant.clone(), collection.clone()))
            .ok_or_else(|| Error::not_found(Resource::Collection, collection))?;
        let existed = entry
            .records
            .remove(id)
            .is_some_and(|r| is_visible(r.expires_at, now));
        if existed {
            let subject = Subject::Vector {
                collection: collection.clone(),
                id: id.clone(),
            };
            state
                .changes
                .append(tenant, now, ChangeEvent::delete(subject));
        }
        Ok(existed)
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let now = self.clock.now();
        let state = self.state.lock();
        let entry = state.collection(tenant, collection)?;
        let mut items: Vec<VectorRecord> = entry
            .records
            .values()
            .filter(|r| {
                is_visible(r.expires_at, now)
                    && start_after.is_none_or(|after| r.id.as_bytes() > after.as_bytes())
            })
            .cloned()
            .collect();
        items.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        items.truncate(limit.get() + 1);
        Ok(Page::from_overfetch(items, limit, |r| r.id.clone()))
    }

    async fn search_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        _k: Limit,
        filter: &Filter,
    ) -> Result<Vec<VectorRecord>> {
        let now = self.clock.now();
        let state = self.state.lock();
        let entry = state.collection(tenant, collection)?;
        if !query.fits(&entry.spec) {
            return Err(Error::conflict(format!(
                "the query does not fit collection {collection}"
            )));
        }
        // Every visible record that passes the filter; core ranks them all.
        Ok(entry
            .records
            .values()
            .filter(|r| is_visible(r.expires_at, now) && filter.matches(&r.metadata))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl GraphStore for ModelBackend {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        if state.visible_node(tenant, id, now).is_none() {
            state.remove_edges_touching(tenant, id);
        }
        state.nodes.insert(
            (tenant.clone(), id.clone()),
            NodeRecord {
                id: id.clone(),
                label: label.clone(),
                properties: properties.get().clone(),
                expires_at: expires_at(now, ttl),
            },
        );
        let subject = Subject::Node { id: id.clone() };
        state
            .changes
            .append(tenant, now, ChangeEvent::put(subject, None));
        Ok(())
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        let now = self.clock.now();
        Ok(self.state.lock().visible_node(tenant, id, now).cloned())
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        if ids.len() > MAX_NODES_PER_GET {
            return Err(Error::invalid(
                "ids",
                format!("at most {MAX_NODES_PER_GET} node ids are allowed"),
            ));
        }
        let now = self.clock.now();
        let state = self.state.lock();
        // A set orders the ids by raw bytes (`NodeId` orders as its string) and drops repeats.
        let wanted: BTreeSet<&NodeId> = ids.iter().collect();
        Ok(wanted
            .into_iter()
            .filter_map(|id| state.visible_node(tenant, id, now).cloned())
            .collect())
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let existed = state.visible_node(tenant, id, now).is_some();
        // The visible edges this removes, each logged after the node in (src, rel, dst) byte
        // order. An invisible node has no visible edge: an edge is visible only with both ends.
        let mut removed: Vec<(NodeId, Rel, NodeId)> = state
            .edges
            .iter()
            .filter(|((t, src, _, dst), edge)| {
                t == tenant && (src == id || dst == id) && state.edge_visible(tenant, edge, now)
            })
            .map(|((_, src, rel, dst), _)| (src.clone(), rel.clone(), dst.clone()))
            .collect();
        removed.sort_by(|a, b| {
            (a.0.as_bytes(), a.1.as_bytes(), a.2.as_bytes()).cmp(&(
                b.0.as_bytes(),
                b.1.as_bytes(),
                b.2.as_bytes(),
            ))
        });
        state.nodes.remove(&(tenant.clone(), id.clone()));
        state.remove_edges_touching(tenant, id);
        if existed {
            let subject = Subject::Node { id: id.clone() };
            state
                .changes
                .append(tenant, now, ChangeEvent::delete(subject));
            for (src, rel, dst) in removed {
                let subject = Subject::Edge { src, rel, dst };
                state
                    .changes
                    .append(tenant, now, ChangeEvent::delete(subject));
            }
        }
        Ok(existed)
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let now = self.clock.now();
        let state = self.state.lock();
        let mut items: Vec<NodeRecord> = state
            .nodes
            .iter()
            .filter(|((t, id), n)| {
                t == tenant
                    && is_visible(n.expires_at, now)
                    && start_after.is_none_or(|after| id.as_bytes() > after.as_bytes())
            })
            .map(|(_, n)| n.clone())
            .collect();
        items.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        items.truncate(limit.get() + 1);
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
        let now = self.clock.now();
        let mut state = self.state.lock();
        for endpoint in [src, dst] {
            if state.visible_node(tenant, endpoint, now).is_none() {
                return Err(Error::not_found(Resource::Node, endpoint));
            }
        }
        state.edges.insert(
            (tenant.clone(), src.clone(), rel.clone(), dst.clone()),
            EdgeRecord {
                src: src.clone(),
                rel: rel.clone(),
                dst: dst.clone(),
                weight: weight.get(),
                properties: properties.get().clone(),
                expires_at: expires_at(now, ttl),
            },
        );
        let subject = Subject::Edge {
            src: src.clone(),
            rel: rel.clone(),
            dst: dst.clone(),
        };
        state
            .changes
            .append(tenant, now, ChangeEvent::put(subject, None));
        Ok(())
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let now = self.clock.now();
        let state = self.state.lock();
        Ok(state
            .edges
            .get(&(tenant.clone(), src.clone(), rel.clone(), dst.clone()))
            .filter(|e| state.edge_visible(tenant, e, now))
            .cloned())
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let removed = state
            .edges
            .remove(&(tenant.clone(), src.clone(), rel.clone(), dst.clone()));
        let existed = removed.is_some_and(|e| state.edge_visible(tenant, &e, now));
        if existed {
            let subject = Subject::Edge {
                src: src.clone(),
                rel: rel.clone(),
                dst: dst.clone(),
            };
            state
                .changes
                .append(tenant, now, ChangeEvent::delete(subject));
        }
        Ok(existed)
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        let now = self.clock.now();
        let state = self.state.lock();
        Ok(state
            .edges
            .iter()
            .filter(|((t, src, rel, dst), edge)| {
                let touches = match direction {
                    Direction::Out => nodes.contains(src),
                    Direction::In => nodes.contains(dst),
                    Direction::Both => nodes.contains(src) || nodes.contains(dst),
                };
                t == tenant && touches && rels.accepts(rel) && state.edge_visible(tenant, edge, now)
            })
            .map(|(_, e)| e.clone())
            .collect())
    }
}

#[async_trait]
impl Maintenance for ModelBackend {
    async fn purge_expired(&self) -> Result<u64> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let before = state.kv.len() + state.nodes.len() + state.edges.len();
        state.kv.retain(|_, e| is_visible(e.expires_at, now));
        let expired_nodes: Vec<(TenantId, NodeId)> = state
            .nodes
            .iter()
            .filter(|(_, n)| !is_visible(n.expires_at, now))
            .map(|(k, _)| k.clone())
            .collect();
        for (tenant, id) in expired_nodes {
            state.nodes.remove(&(tenant.clone(), id.clone()));
            state.remove_edges_touching(&tenant, &id);
        }
        state.edges.retain(|_, e| is_visible(e.expires_at, now));
        let mut removed = (before - state.kv.len() - state.nodes.len() - state.edges.len()) as u64;
        for collection in state.collections.values_mut() {
            let before = collection.records.len();
            collection
                .records
                .retain(|_, r| is_visible(r.expires_at, now));
            removed += (before - collection.records.len()) as u64;
        }
        removed += state.objects.purge_expired(now);
        Ok(removed)
    }
}
