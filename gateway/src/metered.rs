//! Backend operation metrics: [`Metered`] wraps any backend and records every call's latency
//! in `backend_operation_duration_seconds{op, outcome}` (a histogram; its `_count` is the
//! number of calls). `op` is the trait method (`kv.get`, `vector.search_candidates`, ...);
//! `outcome` is `ok` or the error kind (`not_found`, `conflict`, `unavailable`, ...), never
//! anything from the request.
//!
//! It changes no result: every method passes its arguments and its answer through unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use p8fs_core::graph::NodePage;
use p8fs_core::kv::KvPage;
use p8fs_core::vector::VectorPage;
use p8fs_core::{
    Backend, CollectionName, CollectionSpec, Direction, EdgeRecord, Embedding, ErrorKind, Filter,
    GraphStore, JsonObject, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Label, Limit,
    Maintenance, NodeId, NodeRecord, RecordId, Rel, RelFilter, Result, TenantId, Ttl, VectorRecord,
    VectorStore, Version, Weight,
};

/// The metric every backend call is recorded in.
pub const METRIC: &str = "backend_operation_duration_seconds";

/// A backend whose every call is timed.
pub struct Metered {
    inner: Arc<dyn Backend>,
}

impl Metered {
    /// Times every call to `inner`.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Self { inner }
    }
}

fn outcome(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::Conflict => "conflict",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

/// Awaits `call` and records its latency under `op`.
async fn timed<T>(op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => outcome(error.kind()),
    };
    metrics::histogram!(METRIC, "op" => op, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl KvStore for Metered {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        timed("kv.get", self.inner.get(tenant, key)).await
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        timed("kv.put", self.inner.put(tenant, key, value, ttl)).await
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let call = self.inner.put_if_absent(tenant, key, value, ttl);
        timed("kv.put_if_absent", call).await
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let call = self
            .inner
            .compare_and_swap(tenant, key, expected, value, ttl);
        timed("kv.compare_and_swap", call).await
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        timed("kv.delete", self.inner.delete(tenant, key)).await
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let call = self.inner.scan(tenant, prefix, start_after, limit);
        timed("kv.scan", call).await
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        path: &JsonPath,
        operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let call = self
            .inner
            .find_candidates(tenant, path, operand, start_after, limit);
        timed("kv.find_candidates", call).await
    }
}

#[async_trait]
impl VectorStore for Metered {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        let call = self.inner.create_collection(tenant, spec);
        timed("vector.create_collection", call).await
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        timed("vector.collection", self.inner.collection(tenant, name)).await
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let call = self.inner.list_collections(tenant);
        timed("vector.list_collections", call).await
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let call = self.inner.drop_collection(tenant, name);
        timed("vector.drop_collection", call).await
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
        let call = self
            .inner
            .upsert_vector(tenant, collection, id, vector, metadata, ttl);
        timed("vector.upsert", call).await
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let call = self.inner.get_vector(tenant, collection, id);
        timed("vector.get", call).await
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        let call = self.inner.delete_vector(tenant, collection, id);
        timed("vector.delete", call).await
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let call = self
            .inner
            .list_vectors(tenant, collection, start_after, limit);
        timed("vector.list", call).await
    }

    async fn search_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
    ) -> Result<Vec<VectorRecord>> {
        let call = self
            .inner
            .search_candidates(tenant, collection, query, k, filter);
        timed("vector.search_candidates", call).await
    }
}

#[async_trait]
impl GraphStore for Metered {
    async fn put_node(
        &self,
        tenant: &TenantId,
        id: &NodeId,
        label: &Label,
        properties: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()> {
        let call = self.inner.put_node(tenant, id, label, properties, ttl);
        timed("graph.put_node", call).await
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        timed("graph.get_node", self.inner.get_node(tenant, id)).await
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        timed("graph.delete_node", self.inner.delete_node(tenant, id)).await
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let call = self.inner.list_nodes(tenant, start_after, limit);
        timed("graph.list_nodes", call).await
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
        let call = self
            .inner
            .put_edge(tenant, src, rel, dst, weight, properties, ttl);
        timed("graph.put_edge", call).await
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let call = self.inner.get_edge(tenant, src, rel, dst);
        timed("graph.get_edge", call).await
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        let call = self.inner.delete_edge(tenant, src, rel, dst);
        timed("graph.delete_edge", call).await
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        let call = self.inner.edges_of(tenant, nodes, direction, rels);
        timed("graph.edges_of", call).await
    }
}

#[async_trait]
impl Maintenance for Metered {
    async fn purge_expired(&self) -> Result<u64> {
        timed("maintenance.purge_expired", self.inner.purge_expired()).await
    }
}
