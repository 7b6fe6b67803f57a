//! Backend operation metrics: [`Metered`] wraps any backend and records every call's latency
//! in `backend_operation_duration_seconds{op, outcome}` (a histogram; its `_count` is the
//! number of calls). `op` is the trait method (`kv.get`, `vector.search_candidates`, ...);
//! `outcome` is `ok` or the error kind (`not_found`, `conflict`, `unavailable`, ...), never
//! anything from the request.
//!
//! It changes no result: every method passes its arguments and its answer through unchanged.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::Notify;

use async_trait::async_trait;
use p8fs_core::graph::NodePage;
use p8fs_core::kv::{KvPage, KvText};
use p8fs_core::vector::VectorPage;
use p8fs_core::{
    Backend, BucketInfo, BucketName, ChangeCursor, ChangeLog, ChangePage, CollectionName,
    CollectionSpec, DataId, Direction, EdgeRecord, Embedding, ErrorKind, Filter, GraphStore,
    JsonObject, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Label, Limit, Maintenance,
    NodeId, NodeRecord, ObjectAttributes, ObjectKey, ObjectMeta, ObjectPrefix, ObjectStore,
    PartRecord, Precondition, ReapPolicy, RecordId, Rel, RelFilter, Result, TenantId, Timestamp,
    Ttl, UploadId, UploadInfo, VectorRecord, VectorStore, Version, Weight,
};

/// The metric every backend call is recorded in.
pub const METRIC: &str = "backend_operation_duration_seconds";

/// One operation: its `op` label and the histogram of its successful calls, made on first use,
/// so that a call costs no label set and no registry lookup. [`Metered::new`] installs the
/// recorder first, and it is never replaced, so the handle stays valid.
struct Op {
    name: &'static str,
    ok: OnceLock<metrics::Histogram>,
}

impl Op {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            ok: OnceLock::new(),
        }
    }

    fn record(&self, outcome: &'static str, seconds: f64) {
        if outcome == "ok" {
            self.ok
                .get_or_init(|| metrics::histogram!(METRIC, "op" => self.name, "outcome" => "ok"))
                .record(seconds);
        } else {
            metrics::histogram!(METRIC, "op" => self.name, "outcome" => outcome).record(seconds);
        }
    }
}

/// The [`Op`] named `$name`, one static per call site.
macro_rules! op {
    ($name:literal) => {{
        static OP: Op = Op::new($name);
        &OP
    }};
}

/// A backend whose every call is timed, and whose successful writes wake the change hub.
pub struct Metered {
    inner: Arc<dyn Backend>,
    written: Arc<Notify>,
}

impl Metered {
    /// Times every call to `inner`; `written` is notified after each successful write, so
    /// change streams on this node learn of it at once (other nodes' by polling).
    pub fn new(inner: Arc<dyn Backend>, written: Arc<Notify>) -> Self {
        crate::metrics::handle();
        Self { inner, written }
    }

    /// [`timed`] for a write: notifies `written` when it succeeded.
    async fn wrote<T>(&self, op: &'static Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let result = timed(op, call).await;
        if result.is_ok() {
            self.written.notify_one();
        }
        result
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
        ErrorKind::Gone => "gone",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Internal => "internal",
    }
}

/// Awaits `call` and records its latency under `op`.
async fn timed<T>(op: &'static Op, call: impl Future<Output = Result<T>>) -> Result<T> {
    let started = Instant::now();
    let result = call.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => outcome(error.kind()),
    };
    op.record(outcome, started.elapsed().as_secs_f64());
    result
}

#[async_trait]
impl KvStore for Metered {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        timed(op!("kv.get"), self.inner.get(tenant, key)).await
    }

    async fn get_text(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvText>> {
        // The same read as `get`, counted as one.
        timed(op!("kv.get"), self.inner.get_text(tenant, key)).await
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        self.wrote(op!("kv.put"), self.inner.put(tenant, key, value, ttl))
            .await
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let call = self.inner.put_if_absent(tenant, key, value, ttl);
        self.wrote(op!("kv.put_if_absent"), call).await
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
        self.wrote(op!("kv.compare_and_swap"), call).await
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        self.wrote(op!("kv.delete"), self.inner.delete(tenant, key))
            .await
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let call = self.inner.scan(tenant, prefix, start_after, limit);
        timed(op!("kv.scan"), call).await
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
        timed(op!("kv.find_candidates"), call).await
    }
}

#[async_trait]
impl VectorStore for Metered {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        let call = self.inner.create_collection(tenant, spec);
        self.wrote(op!("vector.create_collection"), call).await
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        timed(
            op!("vector.collection"),
            self.inner.collection(tenant, name),
        )
        .await
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let call = self.inner.list_collections(tenant);
        timed(op!("vector.list_collections"), call).await
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let call = self.inner.drop_collection(tenant, name);
        self.wrote(op!("vector.drop_collection"), call).await
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
        self.wrote(op!("vector.upsert"), call).await
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let call = self.inner.get_vector(tenant, collection, id);
        timed(op!("vector.get"), call).await
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        let call = self.inner.delete_vector(tenant, collection, id);
        self.wrote(op!("vector.delete"), call).await
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
        timed(op!("vector.list"), call).await
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
        timed(op!("vector.search_candidates"), call).await
    }

    async fn approximate_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        ef: usize,
    ) -> Result<Vec<VectorRecord>> {
        let call = self
            .inner
            .approximate_candidates(tenant, collection, query, k, filter, ef);
        timed(op!("vector.approximate_candidates"), call).await
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
        self.wrote(op!("graph.put_node"), call).await
    }

    async fn get_node(&self, tenant: &TenantId, id: &NodeId) -> Result<Option<NodeRecord>> {
        timed(op!("graph.get_node"), self.inner.get_node(tenant, id)).await
    }

    async fn get_nodes(&self, tenant: &TenantId, ids: &[NodeId]) -> Result<Vec<NodeRecord>> {
        timed(op!("graph.get_nodes"), self.inner.get_nodes(tenant, ids)).await
    }

    async fn delete_node(&self, tenant: &TenantId, id: &NodeId) -> Result<bool> {
        self.wrote(op!("graph.delete_node"), self.inner.delete_node(tenant, id))
            .await
    }

    async fn list_nodes(
        &self,
        tenant: &TenantId,
        start_after: Option<&NodeId>,
        limit: Limit,
    ) -> Result<NodePage> {
        let call = self.inner.list_nodes(tenant, start_after, limit);
        timed(op!("graph.list_nodes"), call).await
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
        self.wrote(op!("graph.put_edge"), call).await
    }

    async fn get_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<Option<EdgeRecord>> {
        let call = self.inner.get_edge(tenant, src, rel, dst);
        timed(op!("graph.get_edge"), call).await
    }

    async fn delete_edge(
        &self,
        tenant: &TenantId,
        src: &NodeId,
        rel: &Rel,
        dst: &NodeId,
    ) -> Result<bool> {
        let call = self.inner.delete_edge(tenant, src, rel, dst);
        self.wrote(op!("graph.delete_edge"), call).await
    }

    async fn edges_of(
        &self,
        tenant: &TenantId,
        nodes: &[NodeId],
        direction: Direction,
        rels: &RelFilter,
    ) -> Result<Vec<EdgeRecord>> {
        let call = self.inner.edges_of(tenant, nodes, direction, rels);
        timed(op!("graph.edges_of"), call).await
    }
}

#[async_trait]
impl ObjectStore for Metered {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        self.wrote(
            op!("object.create_bucket"),
            self.inner.create_bucket(tenant, bucket),
        )
        .await
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        timed(op!("object.bucket"), self.inner.bucket(tenant, bucket)).await
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        timed(op!("object.list_buckets"), self.inner.list_buckets(tenant)).await
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        self.wrote(
            op!("object.delete_bucket"),
            self.inner.delete_bucket(tenant, bucket),
        )
        .await
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        timed(op!("object.begin_data"), self.inner.begin_data(tenant)).await
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()> {
        timed(
            op!("object.write_chunk"),
            self.inner.write_chunk(tenant, data, index, bytes),
        )
        .await
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        timed(
            op!("object.read_chunk"),
            self.inner.read_chunk(tenant, data, index),
        )
        .await
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        timed(
            op!("object.discard_data"),
            self.inner.discard_data(tenant, data),
        )
        .await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        self.wrote(
            op!("object.put_object"),
            self.inner.put_object(tenant, bucket, meta, condition),
        )
        .await
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        timed(op!("object.object"), self.inner.object(tenant, bucket, key)).await
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        self.wrote(
            op!("object.delete_object"),
            self.inner.delete_object(tenant, bucket, key),
        )
        .await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        timed(
            op!("object.list_objects"),
            self.inner.list_objects(tenant, bucket, prefix, from, limit),
        )
        .await
    }

    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        timed(
            op!("object.create_upload"),
            self.inner
                .create_upload(tenant, bucket, key, attributes, expires_at),
        )
        .await
    }

    async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<Option<UploadInfo>> {
        timed(
            op!("object.upload"),
            self.inner.upload(tenant, bucket, upload),
        )
        .await
    }

    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        timed(
            op!("object.list_uploads"),
            self.inner
                .list_uploads(tenant, bucket, prefix, after, limit),
        )
        .await
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        timed(
            op!("object.put_part"),
            self.inner.put_part(tenant, bucket, upload, part),
        )
        .await
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        timed(
            op!("object.list_parts"),
            self.inner.list_parts(tenant, bucket, upload, after, limit),
        )
        .await
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        self.wrote(
            op!("object.complete_upload"),
            self.inner
                .complete_upload(tenant, bucket, upload, meta, condition),
        )
        .await
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        timed(
            op!("object.abort_upload"),
            self.inner.abort_upload(tenant, bucket, upload),
        )
        .await
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        timed(op!("object.reap_objects"), self.inner.reap_objects(policy)).await
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        timed(op!("object.stored_bytes"), self.inner.stored_bytes(tenant)).await
    }
}

#[async_trait]
impl ChangeLog for Metered {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        timed(
            op!("change.changes"),
            self.inner.changes(tenant, after, limit),
        )
        .await
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        timed(op!("change.change_heads"), self.inner.change_heads()).await
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        timed(op!("change.trim_changes"), self.inner.trim_changes(before)).await
    }
}

#[async_trait]
impl Maintenance for Metered {
    async fn purge_expired(&self) -> Result<u64> {
        timed(op!("maintenance.purge_expired"), self.inner.purge_expired()).await
    }

    async fn compact_storage(&self) -> Result<()> {
        timed(
            op!("maintenance.compact_storage"),
            self.inner.compact_storage(),
        )
        .await
    }
}
