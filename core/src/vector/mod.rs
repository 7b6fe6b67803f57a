//! The vector capability: collections of fixed-dimension f32 vectors with JSON metadata, and
//! k-nearest search, exact or approximate ([`SearchMode`]). Scoring and ordering are decided
//! once, here: backends return candidates ([`VectorStore::search_candidates`],
//! [`VectorStore::approximate_candidates`]) and [`search_with`] rescores them in f64 and orders
//! by distance, then id.

mod bound;
mod distance;
mod graph;
mod quant;

use std::cmp::Ordering;

use async_trait::async_trait;

pub use bound::{CandidateSelector, f32_sum_error};
pub use distance::{distance, norm};
pub use graph::Graph;
pub use quant::QuantizedRows;

use crate::error::{Error, Resource, Result};
use crate::types::{
    CollectionName, CollectionSpec, Embedding, Filter, JsonMap, JsonObject, Limit, Page, RecordId,
    TenantId, Timestamp, Ttl,
};

/// A visible vector record.
#[derive(Clone, PartialEq, Debug)]
pub struct VectorRecord {
    pub id: RecordId,
    pub vector: Vec<f32>,
    pub metadata: JsonMap,
    /// When the record stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
}

/// One result of a search.
#[derive(Clone, PartialEq, Debug)]
pub struct SearchHit {
    pub id: RecordId,
    /// The metric's distance, computed in f64 from the stored f32 values.
    pub distance: f64,
    pub metadata: JsonMap,
}

/// The widest candidate list an approximate search may ask for.
pub const MAX_EF: usize = 4096;

/// How a search finds its records.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SearchMode {
    /// Every visible record is considered: the result is exactly the `k` nearest.
    #[default]
    Exact,
    /// A backend with a graph index walks it keeping the `ef` best records seen (never fewer
    /// than `k`): far fewer records are read on a large collection, and some of the exact `k`
    /// nearest may be missed (recall below 1). What is returned is still ranked exactly
    /// (distances in f64 from the stored values), matches the filter and is visible. A backend
    /// without such an index, or a collection too small to need one, answers exactly.
    Approximate { ef: usize },
}

impl SearchMode {
    /// The mode a request names: `exact` (the default) or `approximate`, with `ef` in
    /// `1..=MAX_EF` (default 64; only for `approximate`). Errors name `mode` or `ef`.
    pub fn parse(mode: Option<&str>, ef: Option<u64>) -> Result<Self> {
        match mode.unwrap_or("exact") {
            "exact" => match ef {
                None => Ok(Self::Exact),
                Some(_) => Err(Error::invalid("ef", "applies only to mode \"approximate\"")),
            },
            "approximate" => {
                let ef = ef.unwrap_or(64);
                if (1..=MAX_EF as u64).contains(&ef) {
                    Ok(Self::Approximate { ef: ef as usize })
                } else {
                    Err(Error::invalid(
                        "ef",
                        format!("must be between 1 and {MAX_EF}"),
                    ))
                }
            }
            _ => Err(Error::invalid(
                "mode",
                "must be \"exact\" or \"approximate\"",
            )),
        }
    }
}

/// A page of records; the cursor is the last id of the page.
pub type VectorPage = Page<VectorRecord, RecordId>;

/// Vector storage. Every method is scoped to one tenant and sees only records visible at the
/// backend clock's `now`.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Creates a collection: `Ok(true)` when created, `Ok(false)` when an identical one exists,
    /// `Conflict` when one of that name has another dimension or metric.
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool>;

    /// The collection's spec, or `None`.
    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>>;

    /// Every collection of the tenant, names ascending by raw bytes.
    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>>;

    /// Drops a collection and all its records; returns whether it existed.
    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool>;

    /// Upserts a record. `NotFound` if the collection does not exist, `Conflict` if `vector` was
    /// validated for another dimension or metric than the collection now has.
    async fn upsert_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
        vector: &Embedding,
        metadata: &JsonObject,
        ttl: Option<Ttl>,
    ) -> Result<()>;

    /// The visible record, or `None`; `NotFound` if the collection does not exist.
    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>>;

    /// Deletes a record; returns whether a visible one existed. `NotFound` if the collection
    /// does not exist.
    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool>;

    /// Visible records with ids after `start_after`, ascending by raw bytes, at most `limit`;
    /// `next` is `Some` exactly when more exist.
    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage>;

    /// The primitive behind [`search`]: a set of visible records matching `filter` that
    /// contains every record among the exact top `k` (ties at the k-th distance included).
    /// Extra candidates are fine; a missing one is a contract violation. `NotFound` if the
    /// collection does not exist, `Conflict` if `query` does not fit it.
    async fn search_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
    ) -> Result<Vec<VectorRecord>>;

    /// The primitive behind an approximate search: visible records matching `filter`, found
    /// with a candidate list of `ef` (at least `k`); they should contain most of the exact top
    /// `k`. Backends without a graph index answer with [`Self::search_candidates`], which is
    /// exact. Same errors as [`Self::search_candidates`].
    async fn approximate_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        ef: usize,
    ) -> Result<Vec<VectorRecord>> {
        let _ = ef;
        self.search_candidates(tenant, collection, query, k, filter)
            .await
    }
}

/// Reads a vector's components, sent as JSON numbers (doubles), as 32-bit floats, naming the
/// first one out of range (`query[3]`).
pub fn components(field: &str, values: Vec<f64>) -> Result<Vec<f32>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            if value.abs() <= f64::from(f32::MAX) {
                // In range, so the cast only rounds.
                Ok(value as f32)
            } else {
                Err(Error::invalid(
                    format!("{field}[{i}]"),
                    "is outside the range of a 32-bit float",
                ))
            }
        })
        .collect()
}

/// The spec of an existing collection, or `NotFound`.
pub async fn require_collection(
    store: &dyn VectorStore,
    tenant: &TenantId,
    name: &CollectionName,
) -> Result<CollectionSpec> {
    store
        .collection(tenant, name)
        .await?
        .ok_or_else(|| Error::not_found(Resource::Collection, name))
}

/// Validates `vector` against the collection and upserts the record.
pub async fn upsert(
    store: &dyn VectorStore,
    tenant: &TenantId,
    collection: &CollectionName,
    id: &RecordId,
    vector: Vec<f32>,
    metadata: &JsonObject,
    ttl: Option<Ttl>,
) -> Result<()> {
    let spec = require_collection(store, tenant, collection).await?;
    let vector = Embedding::new("vector", &spec, vector)?;
    store
        .upsert_vector(tenant, collection, id, &vector, metadata, ttl)
        .await
}

/// The `k` visible records nearest to `query` that match `filter`: distance ascending, then id
/// ascending by raw bytes. Exact: distances are computed here, in f64, from the stored values.
pub async fn search(
    store: &dyn VectorStore,
    tenant: &TenantId,
    collection: &CollectionName,
    query: Vec<f32>,
    k: Limit,
    filter: &Filter,
) -> Result<Vec<SearchHit>> {
    search_with(
        store,
        tenant,
        collection,
        query,
        k,
        filter,
        SearchMode::Exact,
    )
    .await
}

/// [`search`] in the given mode: ordered and scored the same way; in
/// [`SearchMode::Approximate`] some of the exact nearest may be missing.
pub async fn search_with(
    store: &dyn VectorStore,
    tenant: &TenantId,
    collection: &CollectionName,
    query: Vec<f32>,
    k: Limit,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<SearchHit>> {
    let spec = require_collection(store, tenant, collection).await?;
    let query = Embedding::new("query", &spec, query)?;
    let candidates = match mode {
        SearchMode::Exact => {
            store
                .search_candidates(tenant, collection, &query, k, filter)
                .await?
        }
        SearchMode::Approximate { ef } => {
            store
                .approximate_candidates(tenant, collection, &query, k, filter, ef.max(k.get()))
                .await?
        }
    };
    rank(&query, candidates, k, filter)
}

/// Scores candidates in f64 and keeps the best `k` that match `filter`, ordered by distance, then
/// id. Shared by [`search`] and by backends' tests.
pub fn rank(
    query: &Embedding,
    candidates: Vec<VectorRecord>,
    k: Limit,
    filter: &Filter,
) -> Result<Vec<SearchHit>> {
    let mut hits = Vec::with_capacity(candidates.len());
    for record in candidates {
        if record.vector.len() != query.dimension() {
            return Err(Error::conflict("the collection changed during the search"));
        }
        if !filter.matches(&record.metadata) {
            continue;
        }
        hits.push(SearchHit {
            distance: distance(query.metric(), query.values(), &record.vector),
            id: record.id,
            metadata: record.metadata,
        });
    }
    hits.sort_by(compare_hits);
    hits.dedup_by(|a, b| a.id == b.id);
    hits.truncate(k.get());
    Ok(hits)
}

/// The result order: distance ascending, then id ascending by raw bytes.
pub fn compare_hits(a: &SearchHit, b: &SearchHit) -> Ordering {
    a.distance
        .total_cmp(&b.distance)
        .then_with(|| a.id.as_bytes().cmp(b.id.as_bytes()))
}
