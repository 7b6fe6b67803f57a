//! Resealing a tenant (`p8fs keys reseal`): what a store holds in the clear (written before
//! encryption was turned on) or in an older ciphertext format is rewritten in the current one,
//! through the inner backend's own trait methods, so it works the same on every backend.
//!
//! Every key-value record, vector, node, edge and object of the tenant is read as stored; one
//! that is not a ciphertext of the current format is opened as the layer opens it and written
//! back sealed, with its expiry kept:
//! - key-value records by compare-and-swap on the version read, so a concurrent write wins and
//!   is never undone (its version moves on: a client's next compare-and-swap on the old version
//!   fails as after any write);
//! - objects by copying their bytes into new blobs, chunk by chunk, and committing the sealed
//!   record on the condition that the stored ETag is still the one read; the old blobs are freed
//!   and reaped like those of any replaced object. Key, size, times and ETag stay, so the index
//!   of search by meaning sees the same version;
//! - vectors, nodes and edges have no conditional write in the contract: each is rewritten only
//!   if the tenant's change log shows no write of it since its page was read, and the log is read
//!   again afterwards. A client's write that landed in the one backend call between that check
//!   and the rewrite, and was replaced by it, is reported by name ([`Resealed::overwritten`]).
//!
//! Multipart uploads in progress cannot be rewritten in place (their ids are the clients'):
//! one holding plain or older records is counted and sealed when completed (or reaped when
//! abandoned). A tenant with none left, and nothing overwritten, is marked resealed in the
//! keyring, and later runs skip it: every write through the layer seals in the current format,
//! so nothing plain or older can appear again (as long as every node runs this version).
//!
//! Each rewrite appears in the change log as a write of the same record. Running it again is
//! harmless: what is current is only read. What rewriting leaves behind (overwritten values,
//! freed blobs) leaves the store's files as the backend reclaims space: see
//! [`crate::Maintenance::compact_storage`].

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

mod objects;

use super::json::{ciphertext_format, is_sealed_object, open_object, seal, sealed_format};
use super::keys::{DataKey, FORMAT};
use super::object::CHUNK_MAGIC;
use super::{KEYRING_TENANT, Sealed, ctx};
use crate::backend::Backend;
use crate::change::{ChangeCursor, Subject};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::graph::{Direction, EdgeRecord, NodeRecord};
use crate::kv::KvEntry;
use crate::types::{
    CollectionSpec, Embedding, JsonMap, KeyPrefix, Limit, NodeId, RelFilter, TenantId, Timestamp,
    Ttl, Weight,
};
use crate::validate::stored;
use crate::vector::VectorRecord;

/// What resealing one tenant did.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Resealed {
    /// The tenant was marked resealed by an earlier run: nothing was read.
    pub skipped: bool,
    /// Records read: key-value records, vectors, nodes, edges and objects.
    pub examined: u64,
    /// Of those, the records rewritten in the current format (they were plain or older).
    pub rewritten: u64,
    /// Object chunks rewritten (the bytes of the objects among them).
    pub chunks: u64,
    /// Multipart uploads in progress holding plain or older records: sealed when completed,
    /// reaped when abandoned. While there are any, the tenant is not marked resealed.
    pub uploads_pending: u64,
    /// Vectors, nodes and edges a client wrote while they were being rewritten, where the
    /// rewrite (their value before that write) is what stands: that write may be lost.
    pub overwritten: Vec<String>,
    /// Whether the tenant now holds only current ciphertexts and is marked so.
    pub complete: bool,
}

impl Sealed {
    /// Every tenant of the store (those with a change log or a data key), with whether it is
    /// marked resealed in the current format.
    pub async fn reseal_tenants(&self) -> Result<Vec<(TenantId, bool)>> {
        let mut tenants: BTreeSet<TenantId> = self
            .inner
            .change_heads()
            .await?
            .into_iter()
            .map(|(tenant, _)| tenant)
            .collect();
        tenants.extend(self.keyring.tenants().await?);
        tenants.retain(|t| t.as_str() != KEYRING_TENANT);
        let mut marked = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            let done = self.keyring.resealed(&tenant, FORMAT).await?;
            marked.push((tenant, done));
        }
        Ok(marked)
    }

    /// Rewrites every record of `tenant` that is plain or of an older format in the current one
    /// (see the module's documentation); `clock` dates the expiries kept. Online: readers and
    /// writers go on meanwhile. Skips a tenant marked resealed.
    pub async fn reseal(&self, tenant: &TenantId, clock: &dyn Clock) -> Result<Resealed> {
        Self::refuse_keyring(tenant)?;
        if self.keyring.resealed(tenant, FORMAT).await? {
            return Ok(Resealed {
                skipped: true,
                complete: true,
                ..Resealed::default()
            });
        }
        let key = self.key(tenant).await?;
        let mut run = Run {
            layer: self,
            inner: self.inner.as_ref(),
            key: &key,
            tenant,
            clock,
            done: Resealed::default(),
        };
        run.kv().await?;
        run.vectors().await?;
        run.graph().await?;
        run.objects().await?;
        let mut done = run.done;
        if done.uploads_pending == 0 && done.overwritten.is_empty() {
            self.keyring.mark_resealed(tenant, FORMAT).await?;
            done.complete = true;
        }
        Ok(done)
    }
}

/// One tenant's reseal.
struct Run<'a> {
    layer: &'a Sealed,
    inner: &'a dyn Backend,
    key: &'a DataKey,
    tenant: &'a TenantId,
    clock: &'a dyn Clock,
    done: Resealed,
}

/// How long a record expiring at `expires_at` has left: `None` when it has expired already,
/// `Some(None)` when it never expires.
fn remaining(expires_at: Option<Timestamp>, now: Timestamp) -> Result<Option<Option<Ttl>>> {
    match expires_at {
        None => Ok(Some(None)),
        Some(at) if at > now => Ok(Some(Some(Ttl::from_millis(at - now)?))),
        Some(_) => Ok(None),
    }
}

fn current_object(map: &JsonMap) -> bool {
    sealed_format(map) == Some(FORMAT)
}

fn current_value(value: &Value) -> bool {
    matches!(value, Value::Object(map) if current_object(map))
}

fn current_text(text: &str) -> bool {
    ciphertext_format(text) == Some(FORMAT)
}

/// Whether a stored chunk is sealed in the current format.
fn current_chunk(stored: &[u8]) -> bool {
    stored.starts_with(&CHUNK_MAGIC) && stored.get(CHUNK_MAGIC.len()) == Some(&FORMAT)
}

/// The ciphertext a stored record of the sealed shape holds.
fn ciphertext(map: &JsonMap) -> Option<&str> {
    if is_sealed_object(map) {
        map.get(super::json::SEALED).and_then(Value::as_str)
    } else {
        None
    }
}

impl Run<'_> {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- key-value records ----

    async fn kv(&mut self) -> Result<()> {
        let mut after = None;
        loop {
            let page = self
                .inner
                .scan(self.tenant, &KeyPrefix::all(), after.as_ref(), Limit::MAX)
                .await?;
            for entry in page.items {
                self.done.examined += 1;
                if !current_value(&entry.value) && self.kv_one(entry).await? {
                    self.done.rewritten += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// Rewrites one record by compare-and-swap; a concurrent write (sealed by its writer) wins.
    async fn kv_one(&self, mut entry: KvEntry) -> Result<bool> {
        loop {
            let Some(ttl) = remaining(entry.expires_at, self.now())? else {
                return Ok(false);
            };
            let key = entry.key.clone();
            let version = entry.version;
            let opened = self.layer.open_kv(self.key, self.tenant, entry)?;
            let sealed =
                self.layer
                    .seal_kv(self.key, self.tenant, &key, &stored::value(opened.value))?;
            match self
                .inner
                .compare_and_swap(self.tenant, &key, version, &sealed, ttl)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                    match self.inner.get(self.tenant, &key).await? {
                        Some(again) if !current_value(&again.value) => entry = again,
                        _ => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ---- vectors ----

    async fn vectors(&mut self) -> Result<()> {
        for spec in self.inner.list_collections(self.tenant).await? {
            let mut after = None;
            loop {
                let mut watch = Watch::start(self.inner, self.tenant).await?;
                let page = self
                    .inner
                    .list_vectors(self.tenant, &spec.name, after.as_ref(), Limit::MAX)
                    .await?;
                let mut written = Vec::new();
                for record in &page.items {
                    self.done.examined += 1;
                    if current_object(&record.metadata) {
                        continue;
                    }
                    let subject = Subject::Vector {
                        collection: spec.name.clone(),
                        id: record.id.clone(),
                    };
                    watch.catch_up(self.inner, self.tenant).await?;
                    if watch.count(&subject) > 0 {
                        // Written since the page was read: by a writer that sealed it.
                        continue;
                    }
                    if let Some(ours) = self.vector_one(&spec, record).await? {
                        written.push((subject, ours));
                    }
                }
                self.settle(&mut watch, written).await?;
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Rewrites one vector; returns the ciphertext written.
    async fn vector_one(
        &self,
        spec: &CollectionSpec,
        record: &VectorRecord,
    ) -> Result<Option<String>> {
        let Some(ttl) = remaining(record.expires_at, self.now())? else {
            return Ok(None);
        };
        // The context the layer seals vector metadata in (`sealed::vector`).
        let parts: [&[u8]; 2] = [spec.name.as_bytes(), record.id.as_bytes()];
        let context = ctx(self.tenant, "vector", &parts);
        let metadata = open_object(
            self.key,
            &context,
            record.metadata.clone(),
            self.layer.plain_ok(),
        )?;
        let sealed = seal(self.key, &context, &Value::Object(metadata), true)?;
        let ours = ciphertext(&sealed).map(str::to_owned);
        let embedding = Embedding::new("vector", spec, record.vector.clone())?;
        self.inner
            .upsert_vector(
                self.tenant,
                &spec.name,
                &record.id,
                &embedding,
                &stored::object(sealed),
                ttl,
            )
            .await?;
        Ok(ours)
    }

    // ---- nodes and edges ----

    async fn graph(&mut self) -> Result<()> {
        let mut after: Option<NodeId> = None;
        loop {
            let mut watch = Watch::start(self.inner, self.tenant).await?;
            let page = self
                .inner
                .list_nodes(self.tenant, after.as_ref(), Limit::MAX)
                .await?;
            let mut written = Vec::new();
            for node in &page.items {
                self.done.examined += 1;
                if current_object(&node.properties) {
                    continue;
                }
                let subject = Subject::Node {
                    id: node.id.clone(),
                };
                watch.catch_up(self.inner, self.tenant).await?;
                if watch.count(&subject) == 0
                    && let Some(ours) = self.node_one(node).await?
                {
                    written.push((subject, ours));
                }
            }
            let ids: Vec<NodeId> = page.items.iter().map(|n| n.id.clone()).collect();
            let edges = if ids.is_empty() {
                Vec::new()
            } else {
                self.inner
                    .edges_of(self.tenant, &ids, Direction::Out, &RelFilter::any())
                    .await?
            };
            for edge in &edges {
                self.done.examined += 1;
                if current_object(&edge.properties) {
                    continue;
                }
                let subject = Subject::Edge {
                    src: edge.src.clone(),
                    rel: edge.rel.clone(),
                    dst: edge.dst.clone(),
                };
                watch.catch_up(self.inner, self.tenant).await?;
                if watch.count(&subject) == 0
                    && let Some(ours) = self.edge_one(edge).await?
                {
                    written.push((subject, ours));
                }
            }
            self.settle(&mut watch, written).await?;
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }

    /// A node's or edge's properties opened and sealed again under the current format, with the
    /// ciphertext written (to recognise it in the change log).
    fn reseal_properties(
        &self,
        record: &[&[u8]],
        properties: &JsonMap,
    ) -> Result<(crate::types::JsonObject, Option<String>)> {
        let properties =
            self.layer
                .open_properties(self.key, self.tenant, record, properties.clone())?;
        let sealed = self.layer.seal_properties(
            self.key,
            self.tenant,
            record,
            &stored::object(properties),
        )?;
        let ours = ciphertext(sealed.get()).map(str::to_owned);
        Ok((sealed, ours))
    }

    async fn node_one(&self, node: &NodeRecord) -> Result<Option<String>> {
        let Some(ttl) = remaining(node.expires_at, self.now())? else {
            return Ok(None);
        };
        let record: [&[u8]; 2] = [b"node", node.id.as_bytes()];
        let (sealed, ours) = self.reseal_properties(&record, &node.properties)?;
        self.inner
            .put_node(self.tenant, &node.id, &node.label, &sealed, ttl)
            .await?;
        Ok(ours)
    }

    async fn edge_one(&self, edge: &EdgeRecord) -> Result<Option<String>> {
        let Some(ttl) = remaining(edge.expires_at, self.now())? else {
            return Ok(None);
        };
        let record: [&[u8]; 4] = [
            b"edge",
            edge.src.as_bytes(),
            edge.rel.as_bytes(),
            edge.dst.as_bytes(),
        ];
        let (sealed, ours) = self.reseal_properties(&record, &edge.properties)?;
        match self
            .inner
            .put_edge(
                self.tenant,
                &edge.src,
                &edge.rel,
                &edge.dst,
                Weight::new(edge.weight)?,
                &sealed,
                ttl,
            )
            .await
        {
            Ok(()) => Ok(ours),
            // An endpoint went meanwhile, and the edge with it.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// After a page's rewrites: counts them, and reports each that a client wrote too between
    /// the check and the rewrite, where the rewrite is what stands.
    async fn settle(&mut self, watch: &mut Watch, written: Vec<(Subject, String)>) -> Result<()> {
        watch.catch_up(self.inner, self.tenant).await?;
        for (subject, ours) in written {
            self.done.rewritten += 1;
            if watch.count(&subject) > 1 && self.stored_ciphertext(&subject).await? == Some(ours) {
                self.done.overwritten.push(describe(&subject));
            }
        }
        Ok(())
    }

    /// The ciphertext a vector, node or edge holds now.
    async fn stored_ciphertext(&self, subject: &Subject) -> Result<Option<String>> {
        let properties = match subject {
            Subject::Vector { collection, id } => self
                .inner
                .get_vector(self.tenant, collection, id)
                .await?
                .map(|r| r.metadata),
            Subject::Node { id } => self
                .inner
                .get_node(self.tenant, id)
                .await?
                .map(|n| n.properties),
            Subject::Edge { src, rel, dst } => self
                .inner
                .get_edge(self.tenant, src, rel, dst)
                .await?
                .map(|e| e.properties),
            _ => None,
        };
        Ok(properties.as_ref().and_then(ciphertext).map(str::to_owned))
    }
}

/// A record's name in [`Resealed::overwritten`].
fn describe(subject: &Subject) -> String {
    let kind = match subject {
        Subject::Vector { .. } => "vector",
        Subject::Node { .. } => "node",
        Subject::Edge { .. } => "edge",
        _ => "record",
    };
    format!("{kind} {}", subject.path())
}

/// The writes of one tenant since a point of its change log, counted per record.
struct Watch {
    seen: ChangeCursor,
    counts: HashMap<Subject, u32>,
}

impl Watch {
    /// Watching from the tenant's newest change on.
    async fn start(inner: &dyn Backend, tenant: &TenantId) -> Result<Self> {
        let mut after = ChangeCursor(0);
        loop {
            match inner.changes(tenant, after, Limit(1)).await {
                Ok(page) => {
                    return Ok(Self {
                        seen: page.head,
                        counts: HashMap::new(),
                    });
                }
                Err(Error::Gone { oldest }) if oldest > after => after = oldest,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the changes committed since the last look.
    async fn catch_up(&mut self, inner: &dyn Backend, tenant: &TenantId) -> Result<()> {
        loop {
            let page = match inner.changes(tenant, self.seen, Limit::MAX).await {
                Ok(page) => page,
                Err(Error::Gone { .. }) => {
                    return Err(Error::conflict(format!(
                        "the change log of tenant {tenant} was trimmed while it was being \
                         resealed; run the reseal again"
                    )));
                }
                Err(e) => return Err(e),
            };
            for change in page.changes {
                *self.counts.entry(change.subject).or_default() += 1;
            }
            self.seen = page.next;
            if self.seen >= page.head {
                return Ok(());
            }
        }
    }

    /// How many writes of `subject` were seen.
    fn count(&self, subject: &Subject) -> u32 {
        self.counts.get(subject).copied().unwrap_or(0)
    }
}
