//! Vector collections: specs in `collections`, records in `vectors`, and each collection held in
//! memory as one contiguous `n × dimension` f32 matrix beside its int8 copy
//! ([`QuantizedRows`], `dimension + 16` bytes a row). Exact search scans the int8 copy with a
//! rigorous error bound (split across the cores for large collections) and hands only the records
//! that could be in the exact top k to core's f64 ranking, read from the f32 matrix.
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

use p8fs_core::vector::{QuantizedRows, VectorPage};
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

type CollectionKey = (TenantId, CollectionName);

/// Every collection's in-memory index.
#[derive(Default)]
pub(crate) struct Collections {
    map: RwLock<HashMap<CollectionKey, Arc<RwLock<Index>>>>,
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
                self.data[row * dim..(row + 1) * dim].copy_from_slice(&record.vector);
                self.codes.set(row, &record.vector);
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
        Some(row)
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

fn encode_spec(spec: &CollectionSpec) -> Vec<u8> {
    let mut out = (spec.dimension.get() as u32).to_be_bytes().to_vec();
    out.push(metric_code(spec.metric));
    out
}

fn decode_spec(name: CollectionName, raw: &[u8]) -> Result<CollectionSpec> {
    let mut reader = Reader::new(raw, "collection");
    let dimension = Dimension::new(u64::from(reader.u32()?)).map_err(|_| corrupt("collection"))?;
    let metric = match reader.u8()? {
        0 => Metric::Cosine,
        1 => Metric::L2,
        2 => Metric::Dot,
        _ => return Err(corrupt("collection")),
    };
    Ok(CollectionSpec {
        name,
        dimension,
        metric,
    })
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
    pub(crate) fn load(db: &DB) -> Result<Self> {
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
            let spec = decode_spec(name.clone(), &raw)?;
            map.insert((tenant, name), Arc::new(RwLock::new(Index::new(spec))));
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
            index.set(record);
        }
        Ok(Self {
            map: RwLock::new(map),
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

impl RocksBackend {
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
        for ((tenant, name), index) in indexes {
            let mut index = index.write();
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
            encode_spec(spec),
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
        let index = self.vectors.get(tenant, collection)?;
        let mut index = index.write();
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
}
