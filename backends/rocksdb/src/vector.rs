//! Vector collections: specs in `collections`, records in `vectors`, and each collection held in
//! memory as one contiguous `n × dimension` f32 matrix beside its int8 copy
//! ([`QuantizedRows`], `dimension + 16` bytes a row). Exact search scans the int8 copy with a
//! rigorous error bound (split across the cores for large collections) and hands only the records
//! that could be in the exact top k to core's f64 ranking, read from the f32 matrix.
//!
//! Approximate search walks an HNSW graph ([`Graph`]) instead. A collection gets one the
//! first time it is searched approximately with at least [`GRAPH_MIN_ROWS`] records (smaller
//! ones are answered exactly, which is as fast there); a background thread inserts the existing
//! rows in short steps under the write lock, and until it is done approximate searches are
//! answered exactly. From then on every write keeps the graph current, a flag in the
//! collection's stored spec makes opening the database rebuild it the same way, and a graph worn
//! by deletes is rebuilt. A filter is applied during the walk; one that keeps under 2 % of a
//! sample of rows is answered exactly instead, and a wider one widens the walk in proportion, so
//! filtered recall holds.
//!
//! Consistency: every write to a collection holds its index's write lock while it writes RocksDB
//! and then updates memory, so memory always equals what is stored. Dropping a collection marks
//! its index dropped under the same lock, so a writer that raced the drop fails with `NotFound`
//! instead of leaving a record behind. Each write appends its change in its batch, taking the
//! tenant's log lock inside the index lock (see [`crate::change`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use rocksdb::{DB, WriteBatch};

use p8fs_core::vector::{CandidateSelector, Graph, MAX_EF, QuantizedRows, VectorPage};
use p8fs_core::{
    ChangeOp, CollectionName, CollectionSpec, Dimension, Embedding, Error, Filter, JsonMap,
    JsonObject, Limit, Metric, Page, RecordId, Resource, Result, TenantId, Timestamp, Ttl,
    VectorRecord, VectorStore, expires_at, is_visible,
};

use crate::RocksBackend;
use crate::change::Event;
use crate::error::{classify, corrupt};
use crate::schema::{self, CF_COLLECTIONS, CF_VECTORS, Reader};

/// Searches over more than this many f32 components run on the blocking pool.
const BLOCKING_SEARCH_FLOATS: usize = 1 << 20;
/// The default of [`crate::RocksOptions::graph_min_rows`].
pub const GRAPH_MIN_ROWS: usize = 10_000;
/// Rows a graph build inserts per hold of the collection's write lock.
const BUILD_STEP: usize = 64;
/// Rows sampled to estimate how much of a collection a filter keeps.
const FILTER_SAMPLE: usize = 512;
/// How many times `ef` rows a walk hands on to be ranked exactly: the best by the graph's int8
/// estimate, of all it scored. Near neighbours that are nearly equidistant are often misordered
/// by the estimate; ranking more of them exactly finds them at no cost to the walk.
const RANKED_PER_EF: usize = 2;

type CollectionKey = (TenantId, CollectionName);

/// Every collection's in-memory index.
pub(crate) struct Collections {
    map: RwLock<HashMap<CollectionKey, Arc<RwLock<Index>>>>,
    /// See [`crate::RocksOptions::graph_min_rows`].
    graph_min_rows: usize,
}

/// One collection in memory; row `i` of every column is one record.
struct Index {
    spec: CollectionSpec,
    dropped: bool,
    ids: Vec<RecordId>,
    /// Row-major `ids.len() × dimension` components.
    data: Vec<f32>,
    /// The int8 copy of `data` that searches scan, with each row's norm.
    codes: QuantizedRows,
    expires: Vec<Option<Timestamp>>,
    metadata: Vec<JsonMap>,
    rows: HashMap<RecordId, usize>,
    /// The approximate-search graph, once the collection has been searched approximately.
    graph: Option<Graph>,
}

impl Index {
    fn new(spec: CollectionSpec) -> Self {
        Self {
            codes: QuantizedRows::new(spec.dimension.get()),
            spec,
            dropped: false,
            ids: Vec::new(),
            data: Vec::new(),
            expires: Vec::new(),
            metadata: Vec::new(),
            rows: HashMap::new(),
            graph: None,
        }
    }

    fn dim(&self) -> usize {
        self.spec.dimension.get()
    }

    fn vector(&self, row: usize) -> &[f32] {
        let dim = self.dim();
        &self.data[row * dim..(row + 1) * dim]
    }

    fn record(&self, row: usize) -> VectorRecord {
        VectorRecord {
            id: self.ids[row].clone(),
            vector: self.vector(row).to_vec(),
            metadata: self.metadata[row].clone(),
            expires_at: self.expires[row],
        }
    }

    fn visible_row(&self, id: &RecordId, now: Timestamp) -> Option<usize> {
        self.rows
            .get(id)
            .copied()
            .filter(|row| is_visible(self.expires[*row], now))
    }

    fn set(&mut self, record: VectorRecord) {
        let dim = self.dim();
        match self.rows.get(&record.id) {
            Some(&row) => {
                let moved = self.data[row * dim..(row + 1) * dim] != record.vector[..];
                if moved {
                    self.data[row * dim..(row + 1) * dim].copy_from_slice(&record.vector);
                    self.codes.set(row, &record.vector);
                    if let Some(graph) = self.graph.as_mut() {
                        graph.changed(&self.codes, row);
                    }
                }
                self.expires[row] = record.expires_at;
                self.metadata[row] = record.metadata;
            }
            None => {
                self.rows.insert(record.id.clone(), self.ids.len());
                self.ids.push(record.id);
                self.data.extend_from_slice(&record.vector);
                self.codes.push(&record.vector);
                self.expires.push(record.expires_at);
                self.metadata.push(record.metadata);
                if let Some(graph) = self.graph.as_mut() {
                    graph.pushed(&self.codes);
                }
            }
        }
    }

    fn remove(&mut self, id: &RecordId) -> Option<usize> {
        let row = self.rows.remove(id)?;
        let last = self.ids.len() - 1;
        let dim = self.dim();
        if row != last {
            self.data
                .copy_within(last * dim..(last + 1) * dim, row * dim);
            self.rows.insert(self.ids[last].clone(), row);
        }
        self.data.truncate(last * dim);
        self.ids.swap_remove(row);
        self.codes.swap_remove(row);
        self.expires.swap_remove(row);
        self.metadata.swap_remove(row);
        if let Some(graph) = self.graph.as_mut() {
            graph.swap_removed(&self.codes, row);
        }
        Some(row)
    }

    /// Whether a search of this collection should come from a graph it does not have yet.
    fn wants_graph(&self, min_rows: usize) -> bool {
        self.graph.is_none() && self.ids.len() >= min_rows
    }

    /// The candidates of an approximate search from the graph, or `None` when it cannot answer
    /// (no complete graph, or a filter too narrow for a walk) and an exact search must: of the
    /// rows the walk proposes, those that could be in their exact top `k` (see
    /// [`CandidateSelector`]), so only those are copied out.
    fn approximate(
        &self,
        query: &Embedding,
        k: Limit,
        ef: usize,
        filter: &Filter,
        now: Timestamp,
    ) -> Option<Vec<VectorRecord>> {
        let graph = self.graph.as_ref().filter(|graph| graph.is_complete())?;
        let no_filter = filter.clauses().is_empty();
        let accept = |row: usize| {
            is_visible(self.expires[row], now) && (no_filter || filter.matches(&self.metadata[row]))
        };
        let mut ef = ef;
        if !no_filter {
            let rows = self.ids.len();
            let sample = FILTER_SAMPLE.min(rows);
            let kept = (0..sample)
                .filter(|i| filter.matches(&self.metadata[i * rows / sample]))
                .count();
            if kept == 0 || kept * 50 < sample {
                return None;
            }
            ef = (ef * sample / kept).min(MAX_EF);
        }
        let rows = graph.search(&self.codes, query.values(), ef, RANKED_PER_EF * ef, accept);
        let mut selector = CandidateSelector::new(query, k);
        for (i, &row) in rows.iter().enumerate() {
            selector.offer(i, self.vector(row), self.codes.norm(row));
        }
        Some(
            selector
                .finish()
                .into_iter()
                .map(|i| self.record(rows[i]))
                .collect(),
        )
    }

    /// The candidate records of an exact search: the visible rows matching `filter` that could
    /// be in the exact top k (see [`QuantizedRows::candidates`]).
    fn candidates(
        &self,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        now: Timestamp,
    ) -> Vec<VectorRecord> {
        let no_filter = filter.clauses().is_empty();
        self.codes
            .candidates(query, k, |row| {
                is_visible(self.expires[row], now)
                    && (no_filter || filter.matches(&self.metadata[row]))
            })
            .into_iter()
            .map(|row| self.record(row))
            .collect()
    }
}

fn collection_key(tenant: &TenantId, name: &CollectionName) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), name.as_bytes()])
}

fn record_prefix(tenant: &TenantId, name: &CollectionName) -> Vec<u8> {
    schema::prefix(&[tenant.as_bytes(), name.as_bytes()])
}

fn record_key(tenant: &TenantId, name: &CollectionName, id: &RecordId) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), name.as_bytes(), id.as_bytes()])
}

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::Cosine => 0,
        Metric::L2 => 1,
        Metric::Dot => 2,
    }
}

/// The stored spec; `graph` marks a collection that keeps an approximate-search graph (a byte
/// after the metric, absent in specs stored before graphs existed).
fn encode_spec(spec: &CollectionSpec, graph: bool) -> Vec<u8> {
    let mut out = (spec.dimension.get() as u32).to_be_bytes().to_vec();
    out.push(metric_code(spec.metric));
    if graph {
        out.push(1);
    }
    out
}

fn decode_spec(name: CollectionName, raw: &[u8]) -> Result<(CollectionSpec, bool)> {
    let mut reader = Reader::new(raw, "collection");
    let dimension = Dimension::new(u64::from(reader.u32()?)).map_err(|_| corrupt("collection"))?;
    let metric = match reader.u8()? {
        0 => Metric::Cosine,
        1 => Metric::L2,
        2 => Metric::Dot,
        _ => return Err(corrupt("collection")),
    };
    let graph = match reader.rest() {
        [] => false,
        [1] => true,
        _ => return Err(corrupt("collection")),
    };
    let spec = CollectionSpec {
        name,
        dimension,
        metric,
    };
    Ok((spec, graph))
}

fn encode_record(
    vector: &[f32],
    metadata: &JsonMap,
    expires_at: Option<Timestamp>,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(8 + vector.len() * 4 + 32);
    out.extend_from_slice(&schema::encode_expiry(expires_at).to_be_bytes());
    for component in vector {
        out.extend_from_slice(&component.to_le_bytes());
    }
    schema::json_bytes(metadata, &mut out)?;
    Ok(out)
}

fn decode_record(id: RecordId, dimension: usize, raw: &[u8]) -> Result<VectorRecord> {
    let mut reader = Reader::new(raw, "vector");
    let expires_at = schema::decode_expiry(reader.i64()?);
    let vector = reader.f32s(dimension)?;
    Ok(VectorRecord {
        id,
        vector,
        metadata: reader.json()?,
        expires_at,
    })
}

impl Collections {
    /// Loads every collection and record from the database.
    pub(crate) fn load(db: &DB, graph_min_rows: usize) -> Result<Self> {
        let mut map = HashMap::new();
        for item in db.iterator_cf(crate::cf(db, CF_COLLECTIONS)?, rocksdb::IteratorMode::Start) {
            let (raw_key, raw) = item.map_err(classify)?;
            let mut parts = schema::split(&raw_key);
            let tenant = TenantId::new(schema::text(
                parts.next().unwrap_or_default(),
                "collection",
            )?)?;
            let name = CollectionName::new(schema::text(
                parts.next().unwrap_or_default(),
                "collection",
            )?)?;
            let (spec, graph) = decode_spec(name.clone(), &raw)?;
            let mut index = Index::new(spec);
            if graph {
                // Marked; the graph itself is built below, once the rows are loaded.
                index.graph = Some(Graph::new(index.spec.metric, 0));
            }
            map.insert((tenant, name), Arc::new(RwLock::new(index)));
        }
        for item in db.iterator_cf(crate::cf(db, CF_VECTORS)?, rocksdb::IteratorMode::Start) {
            let (raw_key, raw) = item.map_err(classify)?;
            let mut parts = schema::split(&raw_key);
            let tenant = TenantId::new(schema::text(
                parts.next().unwrap_or_default(),
                "vector key",
            )?)?;
            let name = CollectionName::new(schema::text(
                parts.next().unwrap_or_default(),
                "vector key",
            )?)?;
            let id = RecordId::new(schema::text(
                parts.next().unwrap_or_default(),
                "vector key",
            )?)?;
            let Some(index) = map.get(&(tenant, name)) else {
                return Err(corrupt("vector (no collection)"));
            };
            let mut index = index.write();
            let record = decode_record(id, index.dim(), &raw)?;
            // Loaded without the graph, which catches up in the background.
            let graph = index.graph.take();
            index.set(record);
            index.graph = graph;
        }
        for index in map.values() {
            let marked = {
                let mut guard = index.write();
                let (metric, rows) = (guard.spec.metric, guard.ids.len());
                let marked = guard.graph.is_some();
                if marked {
                    guard.graph = Some(Graph::new(metric, rows));
                }
                marked
            };
            if marked {
                build_graph(index.clone());
            }
        }
        Ok(Self {
            map: RwLock::new(map),
            graph_min_rows,
        })
    }

    fn get(&self, tenant: &TenantId, name: &CollectionName) -> Result<Arc<RwLock<Index>>> {
        self.map
            .read()
            .get(&(tenant.clone(), name.clone()))
            .cloned()
            .ok_or_else(|| Error::not_found(Resource::Collection, name))
    }
}

/// Inserts the collection's rows into its graph in the background, [`BUILD_STEP`] at a time
/// under the write lock, until the graph covers them all (writes meanwhile insert their own).
fn build_graph(index: Arc<RwLock<Index>>) {
    let spawned = std::thread::Builder::new()
        .name("p8fs-graph".into())
        .spawn(move || {
            let started = std::time::Instant::now();
            loop {
                let mut guard = index.write();
                let Index {
                    dropped,
                    graph,
                    codes,
                    spec,
                    ..
                } = &mut *guard;
                let Some(graph) = graph.as_mut().filter(|_| !*dropped) else {
                    return;
                };
                if graph.catch_up(codes, BUILD_STEP) {
                    tracing::info!(
                        collection = %spec.name,
                        rows = codes.len(),
                        seconds = started.elapsed().as_secs_f64(),
                        "approximate-search graph built"
                    );
                    return;
                }
                drop(guard);
                std::thread::yield_now();
            }
        });
    if let Err(error) = spawned {
        // Searches stay exact; the next approximate one tries again.
        tracing::warn!(%error, "could not start a graph build");
    }
}

impl RocksBackend {
    /// Gives `index` an approximate-search graph: marks it in the stored spec and starts the
    /// build. A no-op when it has one.
    fn start_graph(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
        index: &Arc<RwLock<Index>>,
    ) -> Result<()> {
        {
            let mut guard = index.write();
            if guard.dropped || !guard.wants_graph(self.vectors.graph_min_rows) {
                return Ok(());
            }
            let mut batch = WriteBatch::default();
            batch.put_cf(
                self.cf(CF_COLLECTIONS)?,
                collection_key(tenant, name),
                encode_spec(&guard.spec, true),
            );
            self.write(batch)?;
            let (metric, rows) = (guard.spec.metric, guard.ids.len());
            guard.graph = Some(Graph::new(metric, rows));
        }
        build_graph(index.clone());
        Ok(())
    }

    /// Rebuilds `index`'s graph when deletes have worn it.
    fn renew_worn_graph(index: &Arc<RwLock<Index>>, guard: &mut Index) {
        if guard.graph.as_ref().is_some_and(Graph::worn) {
            guard.graph = Some(Graph::new(guard.spec.metric, guard.ids.len()));
            build_graph(index.clone());
        }
    }

    /// Whether approximate searches of the collection are answered from a complete graph (for
    /// tests and benchmarks, which wait for a build).
    pub fn graph_ready(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let index = self.vectors.get(tenant, name)?;
        let index = index.read();
        Ok(index.graph.as_ref().is_some_and(Graph::is_complete))
    }

    /// Bytes held by the collection's graph (0 without one).
    pub fn graph_bytes(&self, tenant: &TenantId, name: &CollectionName) -> Result<usize> {
        let index = self.vectors.get(tenant, name)?;
        let index = index.read();
        Ok(index.graph.as_ref().map_or(0, Graph::bytes))
    }

    /// Physically removes expired vector records.
    pub(crate) fn purge_vectors(&self, now: Timestamp) -> Result<u64> {
        let indexes: Vec<(CollectionKey, Arc<RwLock<Index>>)> = self
            .vectors
            .map
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut removed = 0;
        for ((tenant, name), arc) in indexes {
            let mut index = arc.write();
            if index.dropped {
                continue;
            }
            let expired: Vec<RecordId> = (0..index.ids.len())
                .filter(|row| !is_visible(index.expires[*row], now))
                .map(|row| index.ids[row].clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut batch = WriteBatch::default();
            for id in &expired {
                batch.delete_cf(self.cf(CF_VECTORS)?, record_key(&tenant, &name, id));
            }
            self.write(batch)?;
            for id in &expired {
                index.remove(id);
            }
            Self::renew_worn_graph(&arc, &mut index);
            removed += expired.len() as u64;
        }
        Ok(removed)
    }
}

#[async_trait]
impl VectorStore for RocksBackend {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        let mut map = self.vectors.map.write();
        let key = (tenant.clone(), spec.name.clone());
        if let Some(existing) = map.get(&key) {
            let existing = &existing.read().spec;
            if existing == spec {
                return Ok(false);
            }
            return Err(Error::conflict(format!(
                "collection {} exists with dimension {} and metric {}",
                spec.name,
                existing.dimension.get(),
                existing.metric
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_COLLECTIONS)?,
            collection_key(tenant, &spec.name),
            encode_spec(spec, false),
        );
        self.write_changes(
            tenant,
            batch,
            &[Event::collection(ChangeOp::Put, &spec.name)],
        )?;
        map.insert(key, Arc::new(RwLock::new(Index::new(spec.clone()))));
        Ok(true)
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        let map = self.vectors.map.read();
        Ok(map
            .get(&(tenant.clone(), name.clone()))
            .map(|index| index.read().spec.clone()))
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let map = self.vectors.map.read();
        let mut specs: Vec<CollectionSpec> = map
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, index)| index.read().spec.clone())
            .collect();
        specs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(specs)
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let mut map = self.vectors.map.write();
        let Some(index) = map.get(&(tenant.clone(), name.clone())).cloned() else {
            return Ok(false);
        };
        let mut index = index.write();
        let prefix = record_prefix(tenant, name);
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_COLLECTIONS)?, collection_key(tenant, name));
        batch.delete_range_cf(self.cf(CF_VECTORS)?, prefix, end);
        // One change for the collection; its records go with it without one each.
        self.write_changes(tenant, batch, &[Event::collection(ChangeOp::Delete, name)])?;
        index.dropped = true;
        map.remove(&(tenant.clone(), name.clone()));
        Ok(true)
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
        let index = self.vectors.get(tenant, collection)?;
        let mut index = index.write();
        if index.dropped {
            return Err(Error::not_found(Resource::Collection, collection));
        }
        if !vector.fits(&index.spec) {
            return Err(Error::conflict(format!(
                "the vector does not fit collection {collection}"
            )));
        }
        let expires_at = expires_at(self.now(), ttl);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_VECTORS)?,
            record_key(tenant, collection, id),
            encode_record(vector.values(), metadata.get(), expires_at)?,
        );
        self.write_changes(
            tenant,
            batch,
            &[Event::vector(ChangeOp::Put, collection, id)],
        )?;
        index.set(VectorRecord {
            id: id.clone(),
            vector: vector.values().to_vec(),
            metadata: metadata.get().clone(),
            expires_at,
        });
        Ok(())
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let now = self.now();
        let index = self.vectors.get(tenant, collection)?;
        let index = index.read();
        Ok(index.visible_row(id, now).map(|row| index.record(row)))
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        let now = self.now();
        let arc = self.vectors.get(tenant, collection)?;
        let mut index = arc.write();
        if index.dropped {
            return Err(Error::not_found(Resource::Collection, collection));
        }
        let Some(&row) = index.rows.get(id) else {
            return Ok(false);
        };
        let visible = is_visible(index.expires[row], now);
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_VECTORS)?, record_key(tenant, collection, id));
        let event = visible.then(|| Event::vector(ChangeOp::Delete, collection, id));
        self.write_changes(tenant, batch, event.as_slice())?;
        index.remove(id);
        Self::renew_worn_graph(&arc, &mut index);
        Ok(visible)
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let now = self.now();
        let dimension = self.vectors.get(tenant, collection)?.read().dim();
        let prefix = record_prefix(tenant, collection);
        let start = start_after.map(|id| record_key(tenant, collection, id));
        let mut items = Vec::new();
        self.scan_raw(CF_VECTORS, &prefix, start.as_deref(), |raw_key, raw| {
            if start.as_deref() == Some(raw_key) {
                return Ok(true);
            }
            let id = RecordId::new(schema::text(&raw_key[prefix.len()..], "vector key")?)?;
            let record = decode_record(id, dimension, raw)?;
            if is_visible(record.expires_at, now) {
                items.push(record);
            }
            Ok(items.len() <= limit.get())
        })?;
        Ok(Page::from_overfetch(items, limit, |r| r.id.clone()))
    }

    async fn search_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
    ) -> Result<Vec<VectorRecord>> {
        let now = self.now();
        let index = self.vectors.get(tenant, collection)?;
        {
            let guard = index.read();
            if !query.fits(&guard.spec) {
                return Err(Error::conflict(format!(
                    "the query does not fit collection {collection}"
                )));
            }
            if guard.data.len() < BLOCKING_SEARCH_FLOATS {
                return Ok(guard.candidates(query, k, filter, now));
            }
        }
        let (query, filter) = (query.clone(), filter.clone());
        tokio::task::spawn_blocking(move || index.read().candidates(&query, k, &filter, now))
            .await
            .map_err(|e| Error::internal("vector search task failed", Some(Box::new(e) as _)))
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
        let now = self.now();
        let index = self.vectors.get(tenant, collection)?;
        let wants_graph = {
            let guard = index.read();
            if !query.fits(&guard.spec) {
                return Err(Error::conflict(format!(
                    "the query does not fit collection {collection}"
                )));
            }
            if let Some(found) = guard.approximate(query, k, ef, filter, now) {
                return Ok(found);
            }
            guard.wants_graph(self.vectors.graph_min_rows)
        };
        if wants_graph {
            self.start_graph(tenant, collection, &index)?;
        }
        self.search_candidates(tenant, collection, query, k, filter)
            .await
    }
}
