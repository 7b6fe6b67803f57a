//! Vector collections (`p8fs_collections`) and records (`p8fs_vectors`), exact-search candidates
//! from pgvector, and an approximate mode through a per-collection HNSW index.
//!
//! # Exact search
//! pgvector computes distances with f32 accumulation, so near the k-th place its order can differ
//! from core's f64 order. The candidates are therefore chosen with a rigorous error bound, in the
//! manner of `core/src/vector/bound.rs`: every record whose f64 distance can be at most the k-th
//! smallest f64 distance is returned, and core rescores and orders them.
//!
//! For a record `r` and the query `q`, with `n` the dimension, `γ = m u / (1 - m u)`,
//! `m = n + 32`, `u = 2^-24`, and norms of both within `[1e-10, 1e10]` (the *tame* range: no f32
//! overflow, and underflow costs at most `UNDERFLOW` absolutely):
//! - dot: pgvector's `-fl32(Σ q_i r_i)` is within `γ |q| |r| + UNDERFLOW` of the real value;
//! - l2: `fl32(Σ (q_i - r_i)²)` is within relative `γ` (plus `UNDERFLOW`) of the real square;
//! - cosine: the dot product and both squared norms carry those errors, so the similarity is off
//!   by at most `2(γ + 1e-17) / (1 - γ)` plus f64 rounding.
//!
//! Core's own f64 evaluation adds a relative `SLACK` (generous: its error is below 5e-13 for 4096
//! dimensions). Each candidate row thus gets `lower ≤ exact ≤ upper`. Rows arrive ordered by a
//! *rank* that is monotone in the lower bound: the distance itself for cosine and l2 (so the query
//! is pgvector's plain `ORDER BY embedding <=> $q LIMIT n`), `distance - c |r|` for dot, whose
//! error depends on the record's norm. With `U` the k-th smallest upper bound among the fetched
//! rows that pass the filter, every record of the exact top k has `lower ≤ U`; if the last fetched
//! rank already exceeds that, no unfetched record can qualify, which is the common case and costs
//! one query. Otherwise one more query takes every row whose rank admits `lower ≤ U`.
//!
//! Records outside the tame range (and queries outside it) are *extreme*: they are always
//! candidates (a partial index finds them) and core scores them exactly.
//!
//! # Writes
//! Each write is one statement that also appends its change when it changed something (see
//! `append_events` in `sql.rs`): a collection created or dropped, a record upserted, a visible
//! record deleted. Dropping a collection appends its `Delete` only; its records go with it.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;

use p8fs_core::vector::{SearchHit, VectorPage, distance, norm, rank};
use p8fs_core::{
    CollectionName, CollectionSpec, Dimension, Embedding, Error, Filter, JsonObject, Limit, Metric,
    Page, RecordId, Resource, Result, TenantId, Ttl, VectorRecord, VectorStore, expires_at,
};

use crate::PgBackend;
use crate::error::{classify, corrupt};
use crate::kv::{filter_probe, overfetch};
use crate::schema::{VectorColumn, VectorParam, json_object, json_text, metric_name, parse_metric};
use crate::sql;

/// Norms outside this range make a record or query extreme (see the module doc).
const TAME_NORMS: std::ops::RangeInclusive<f64> = 1e-10..=1e10;
/// Absolute error f32 underflow can add to a sum of at most 4128 products (each below 2^-150).
const UNDERFLOW: f64 = 1e-37;
/// Relative error allowed for core's f64 arithmetic and the f64 steps here.
const SLACK: f64 = 1e-10;
/// HNSW indexes on pgvector's `vector` type support at most this many dimensions.
const HNSW_MAX_DIMENSION: usize = 2000;
/// Collections with fewer records are searched exactly in either mode; see
/// [`PgBackend::approximate_index_ready`].
const APPROXIMATE_MIN_ROWS: i64 = 10_000;

/// Whether a vector of this norm is outside the range the rounding bound covers.
fn is_extreme(norm: f64) -> bool {
    !TAME_NORMS.contains(&norm)
}

/// How many rows the first candidate query takes for a top `k`.
fn first_fetch(k: usize) -> usize {
    k + (k / 4).max(8)
}

/// How often exact search took its second candidate query (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct SearchCounters {
    second_queries: AtomicU64,
}

/// The error bounds of pgvector's distances for one query (see the module doc).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    metric: Metric,
    gamma: f64,
    /// Dot only: the coefficient `c` of the rank `distance - c |r|`.
    coefficient: f64,
    /// Cosine only: the bound on `|pgvector - exact|`.
    cosine_error: f64,
}

impl Bounds {
    fn new(query: &Embedding, query_norm: f64) -> Self {
        let gamma = p8fs_core::vector::f32_sum_error(query.dimension());
        let (coefficient, cosine_error) = match query.metric() {
            Metric::Dot => ((gamma + SLACK) * query_norm * (1.0 + SLACK), 0.0),
            Metric::Cosine => {
                let t = gamma + 1e-17;
                let with_rounding = t + 4e-16;
                (0.0, (t + with_rounding) / (1.0 - with_rounding) + SLACK)
            }
            Metric::L2 => (0.0, 0.0),
        };
        Self {
            metric: query.metric(),
            gamma,
            coefficient,
            cosine_error,
        }
    }

    /// Lower and upper bounds of core's distance, from pgvector's `distance` and the `rank` of a
    /// tame record of norm `record_norm`.
    fn of(&self, distance: f64, rank: f64, record_norm: f64) -> (f64, f64) {
        match self.metric {
            Metric::Cosine => (distance - self.cosine_error, distance + self.cosine_error),
            Metric::L2 => (self.l2_lower(distance), {
                let squared = distance * distance * (1.0 + SLACK) + UNDERFLOW;
                (squared / (1.0 - self.gamma)).sqrt() * (1.0 + SLACK)
            }),
            Metric::Dot => (
                rank - UNDERFLOW - rank.abs() * SLACK,
                distance + self.coefficient * record_norm + UNDERFLOW,
            ),
        }
    }

    fn l2_lower(&self, distance: f64) -> f64 {
        let squared = (distance * distance / (1.0 + SLACK) - UNDERFLOW).max(0.0);
        (squared / (1.0 + self.gamma)).sqrt() * (1.0 - SLACK)
    }

    /// A lower bound of core's distance for every row of rank at least `rank`: the rank orders
    /// the rows and the lower bound grows with it.
    fn lower_at_rank(&self, rank: f64) -> f64 {
        match self.metric {
            Metric::Cosine => rank - self.cosine_error,
            Metric::L2 => self.l2_lower(rank),
            Metric::Dot => rank - UNDERFLOW - rank.abs() * SLACK,
        }
    }

    /// A rank bound that every row with `lower ≤ upper` satisfies (a little generous).
    fn rank_threshold(&self, upper: f64) -> f64 {
        if !upper.is_finite() {
            return f64::INFINITY;
        }
        match self.metric {
            Metric::Cosine => upper + self.cosine_error + upper.abs() * SLACK,
            Metric::L2 => {
                let scaled = upper.max(0.0) / (1.0 - SLACK);
                ((scaled * scaled * (1.0 + self.gamma) + UNDERFLOW) * (1.0 + SLACK)).sqrt()
                    * (1.0 + SLACK)
            }
            Metric::Dot => upper + UNDERFLOW + upper.abs() * 2.0 * SLACK,
        }
    }
}

/// A candidate row: the record, and for tame records pgvector's distance and the rank.
struct Candidate {
    record: VectorRecord,
    norm: f64,
    scored: Option<(f64, f64)>,
}

fn record_id(raw: String) -> Result<RecordId> {
    RecordId::new(raw).map_err(|_| corrupt("vector record id"))
}

/// A row starting `id, embedding, metadata, expires_at`.
fn record(row: &PgRow) -> Result<VectorRecord> {
    let VectorColumn(vector) = row.try_get(1).map_err(classify)?;
    Ok(VectorRecord {
        id: record_id(row.try_get(0).map_err(classify)?)?,
        vector,
        metadata: json_object(row.try_get(2).map_err(classify)?, "vector metadata")?,
        expires_at: row.try_get(3).map_err(classify)?,
    })
}

/// A row of `id, embedding, metadata, expires_at, norm, rank`; the distance is
/// `rank + coefficient * norm` (the f64 rounding of that is far inside the bounds' slack).
fn candidate(row: &PgRow, coefficient: f64) -> Result<Candidate> {
    let norm: f64 = row.try_get(4).map_err(classify)?;
    let rank: Option<f64> = row.try_get(5).map_err(classify)?;
    Ok(Candidate {
        record: record(row)?,
        norm,
        scored: rank.map(|rank| (rank + coefficient * norm, rank)),
    })
}

/// A collection row: `id, dimension, metric`.
fn spec_of(name: &CollectionName, row: &PgRow, first: usize) -> Result<CollectionSpec> {
    let dimension: i32 = row.try_get(first).map_err(classify)?;
    let metric: String = row.try_get(first + 1).map_err(classify)?;
    Ok(CollectionSpec {
        name: name.clone(),
        dimension: Dimension::new(u64::try_from(dimension).map_err(|_| corrupt("dimension"))?)
            .map_err(|_| corrupt("dimension"))?,
        metric: parse_metric(&metric)?,
    })
}

fn dimension_param(spec: &CollectionSpec) -> i32 {
    // Dimensions are at most 4096 (validated in core).
    i32::try_from(spec.dimension.get()).unwrap_or(i32::MAX)
}

/// The name of a collection's approximate-search index.
fn hnsw_index_name(collection_id: i64) -> String {
    format!("p8fs_vectors_hnsw_{collection_id}")
}

/// Fills the placeholders of an approximate-search statement; every value is an integer or a
/// fixed name, never client text.
fn hnsw_statement(template: &str, collection_id: i64, spec: &CollectionSpec) -> String {
    let (ops, operator) = match spec.metric {
        Metric::Cosine => ("vector_cosine_ops", "<=>"),
        Metric::L2 => ("vector_l2_ops", "<->"),
        Metric::Dot => ("vector_ip_ops", "<#>"),
    };
    template
        .replace("{index}", &hnsw_index_name(collection_id))
        .replace("{collection}", &collection_id.to_string())
        .replace("{dimension}", &spec.dimension.get().to_string())
        .replace("{ops}", ops)
        .replace("{operator}", operator)
}

impl PgBackend {
    /// How many exact searches of this backend (and of its [`PgBackend::with_clock`] copies)
    /// needed the second candidate query, because the rounding bound did not separate the k-th
    /// place from the rows beyond the first `k + max(8, k/4)`. For tests and diagnostics.
    pub fn second_candidate_queries(&self) -> u64 {
        self.search_counters.second_queries.load(Ordering::Relaxed)
    }

    /// The id and spec of a collection.
    async fn collection_row(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<(i64, CollectionSpec)>> {
        let row = sqlx::query(sql::COLLECTION_GET)
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| Ok((row.try_get(0).map_err(classify)?, spec_of(name, &row, 1)?)))
            .transpose()
    }

    async fn require_collection_row(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<(i64, CollectionSpec)> {
        self.collection_row(tenant, name)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Collection, name))
    }

    /// Runs one candidate statement.
    async fn candidates(
        &self,
        statement: &'static str,
        request: &CandidateQuery<'_>,
        bound: Bound,
    ) -> Result<Vec<Candidate>> {
        // Planned for the actual parameters every time (an unnamed statement): a cached generic
        // plan cannot see how large this collection is and may scan the whole table.
        let mut q = sqlx::query(statement)
            .persistent(false)
            .bind(request.collection_id)
            .bind(VectorParam(request.query.values()))
            .bind(request.now);
        q = match bound {
            Bound::Limit(n) => q.bind(i64::try_from(n).unwrap_or(i64::MAX)),
            Bound::Rank(r) => q.bind(r),
        };
        q = q.bind(request.coefficient);
        if let Some(probe) = request.probe {
            q = q.bind(probe);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(classify)?;
        rows.iter()
            .map(|row| candidate(row, request.coefficient))
            .collect()
    }

    /// Physically removes expired vector records, in batches.
    pub(crate) async fn purge_vectors(&self, now: i64) -> Result<u64> {
        self.purge_batches(sql::VECTOR_PURGE, now).await
    }

    /// Builds the HNSW index of a collection for [`PgBackend::search_approximate`] (cosine, l2
    /// or dot operator class by the collection's metric). Idempotent; built without blocking
    /// writes (`CREATE INDEX CONCURRENTLY`). `InvalidInput` above 2000 dimensions, pgvector's
    /// limit for HNSW.
    pub async fn create_approximate_index(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
    ) -> Result<()> {
        let (id, spec) = self.require_collection_row(tenant, collection).await?;
        if spec.dimension.get() > HNSW_MAX_DIMENSION {
            return Err(Error::invalid(
                "collection",
                format!("approximate search supports at most {HNSW_MAX_DIMENSION} dimensions"),
            ));
        }
        let statement = hnsw_statement(sql::HNSW_INDEX_CREATE, id, &spec);
        let mut connection = self.pool.acquire().await.map_err(classify)?;
        let built = build_index(&mut connection, &statement).await;
        if built.is_err() {
            // Its settings may not have been restored: do not return it to the pool.
            connection.close_on_drop();
        }
        built.map_err(classify)?;
        Ok(())
    }

    /// Approximate nearest neighbours through the collection's HNSW index (see
    /// [`PgBackend::create_approximate_index`]; without one this is an exact scan). The index
    /// proposes up to `max(k, ef_search)` records, explored with `ef_search` (pgvector's `hnsw.ef_search`, 1..=1000,
    /// at least `k` for full results); core scores them in f64 and orders them like the exact
    /// search. Recall@10 against the exact search, measured by the benchmark
    /// (`conformance/benches/backends.rs`, 100k × 384 cosine): 1.000 with `ef_search = 100` on
    /// clustered data (0.94 with 40); on uniform random vectors, which have no neighbourhoods,
    /// HNSW finds little (0.13 with 100): use the exact search there. The bound recall@10 ≥ 0.95
    /// at `ef_search = 100` on clustered data is asserted on 3,000 × 128 vectors by
    /// `backends/postgres/tests/approximate.rs`.
    pub async fn search_approximate(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: Vec<f32>,
        k: Limit,
        ef_search: u32,
    ) -> Result<Vec<SearchHit>> {
        let (id, spec) = self.require_collection_row(tenant, collection).await?;
        let query = Embedding::new("query", &spec, query)?;
        if !(1..=1000).contains(&ef_search) {
            return Err(Error::invalid("ef_search", "must be between 1 and 1000"));
        }
        let candidates = self
            .hnsw_candidates(id, &spec, &query, k, ef_search)
            .await?;
        rank(&query, candidates, k, &Filter::none())
    }

    /// The records the collection's HNSW index proposes for `query`: up to `max(k, ef_search)`.
    async fn hnsw_candidates(
        &self,
        id: i64,
        spec: &CollectionSpec,
        query: &Embedding,
        k: Limit,
        ef_search: u32,
    ) -> Result<Vec<VectorRecord>> {
        let statement = hnsw_statement(sql::HNSW_SEARCH, id, spec);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(sql::HNSW_SET_EF_SEARCH)
            .bind(ef_search.to_string())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let rows = sqlx::query(&statement)
            .bind(VectorParam(query.values()))
            .bind(self.now())
            // With iterative scans pgvector may emit the neighbours it found slightly out of
            // order, so take every one it explored and let core rank them.
            .bind(i64::from(ef_search).max(i64::try_from(k.get()).unwrap_or(i64::MAX)))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        rows.iter().map(record).collect()
    }

    /// Whether the collection has its HNSW index, built and valid; asks for one to be built in
    /// the background when it has none and at least [`APPROXIMATE_MIN_ROWS`] records (once per
    /// collection and process: a build that fails is logged and not retried until a restart).
    async fn approximate_index_ready(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: i64,
        spec: &CollectionSpec,
    ) -> Result<bool> {
        let ready: bool = sqlx::query_scalar(sql::HNSW_INDEX_READY)
            .bind(hnsw_index_name(id))
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        if ready || spec.dimension.get() > HNSW_MAX_DIMENSION {
            return Ok(ready);
        }
        if !self.approximate_requested.lock().insert(id) {
            return Ok(false);
        }
        let rows: i64 = sqlx::query_scalar(sql::VECTOR_COUNT_UP_TO)
            .bind(id)
            .bind(APPROXIMATE_MIN_ROWS)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        if rows < APPROXIMATE_MIN_ROWS {
            // Asked again once it may have grown.
            self.approximate_requested.lock().remove(&id);
            return Ok(false);
        }
        let (backend, tenant, collection) = (self.clone(), tenant.clone(), collection.clone());
        tokio::spawn(async move {
            match backend.create_approximate_index(&tenant, &collection).await {
                Ok(()) => tracing::info!(%collection, "approximate-search index built"),
                Err(error) => {
                    tracing::warn!(%collection, %error, "approximate-search index not built");
                }
            }
        });
        Ok(false)
    }
}

/// Runs an index build on `connection` with the build settings, then restores them.
async fn build_index(
    connection: &mut sqlx::pool::PoolConnection<sqlx::Postgres>,
    statement: &str,
) -> sqlx::Result<()> {
    use sqlx::Executor;
    // Through `Executor::execute`, whose boxed future is `Send` for a spawned build.
    let connection: &mut sqlx::PgConnection = connection;
    connection
        .execute(sqlx::raw_sql(sql::HNSW_BUILD_SETTINGS))
        .await?;
    connection.execute(sqlx::raw_sql(statement)).await?;
    connection
        .execute(sqlx::raw_sql(sql::HNSW_BUILD_RESET))
        .await?;
    Ok(())
}

/// The parameters a candidate statement shares between its first and second query.
struct CandidateQuery<'a> {
    collection_id: i64,
    query: &'a Embedding,
    now: i64,
    coefficient: f64,
    probe: Option<&'a Value>,
}

/// The bound parameter `$4` of a candidate statement.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// `_TOP`: how many rows.
    Limit(usize),
    /// `_WITHIN`: the largest rank.
    Rank(f64),
}

/// The candidate statements for a metric: (top, within), plain or filtered.
fn statements(metric: Metric, filtered: bool) -> (&'static str, &'static str) {
    match (metric, filtered) {
        (Metric::Cosine, false) => (sql::VECTOR_TOP_COSINE, sql::VECTOR_WITHIN_COSINE),
        (Metric::L2, false) => (sql::VECTOR_TOP_L2, sql::VECTOR_WITHIN_L2),
        (Metric::Dot, false) => (sql::VECTOR_TOP_DOT, sql::VECTOR_WITHIN_DOT),
        (Metric::Cosine, true) => (
            sql::VECTOR_TOP_COSINE_FILTERED,
            sql::VECTOR_WITHIN_COSINE_FILTERED,
        ),
        (Metric::L2, true) => (sql::VECTOR_TOP_L2_FILTERED, sql::VECTOR_WITHIN_L2_FILTERED),
        (Metric::Dot, true) => (
            sql::VECTOR_TOP_DOT_FILTERED,
            sql::VECTOR_WITHIN_DOT_FILTERED,
        ),
    }
}

/// The k-th smallest of `values` (infinite when there are fewer than `k`).
fn kth_smallest(mut values: Vec<f64>, k: usize) -> f64 {
    if values.len() < k || k == 0 {
        return f64::INFINITY;
    }
    let (_, kth, _) = values.select_nth_unstable_by(k - 1, f64::total_cmp);
    *kth
}

#[async_trait]
impl VectorStore for PgBackend {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        loop {
            let created: Option<i64> = sqlx::query_scalar(sql::COLLECTION_CREATE)
                .bind(tenant.as_str())
                .bind(spec.name.as_str())
                .bind(dimension_param(spec))
                .bind(metric_name(spec.metric))
                .bind(self.now())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            if created.is_some() {
                return Ok(true);
            }
            // It existed; a concurrent drop may have removed it since, then try again.
            if let Some((_, existing)) = self.collection_row(tenant, &spec.name).await? {
                if existing == *spec {
                    return Ok(false);
                }
                return Err(Error::conflict(format!(
                    "collection {} exists with dimension {} and metric {}",
                    spec.name,
                    existing.dimension.get(),
                    existing.metric
                )));
            }
        }
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        Ok(self
            .collection_row(tenant, name)
            .await?
            .map(|(_, spec)| spec))
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let rows = sqlx::query(sql::COLLECTION_LIST)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).map_err(classify)?;
                let name = CollectionName::new(name).map_err(|_| corrupt("collection name"))?;
                spec_of(&name, row, 1)
            })
            .collect()
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        let dropped: Option<i64> = sqlx::query_scalar(sql::COLLECTION_DROP)
            .bind(tenant.as_str())
            .bind(name.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(id) = dropped else {
            return Ok(false);
        };
        // The collection's approximate index, if any, now covers no row; remove it too.
        let index = hnsw_index_name(id);
        let exists: bool = sqlx::query_scalar(sql::HNSW_INDEX_EXISTS)
            .bind(&index)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        if exists {
            let statement = sql::HNSW_INDEX_DROP.replace("{index}", &index);
            sqlx::raw_sql(&statement)
                .execute(&self.pool)
                .await
                .map_err(classify)?;
        }
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
        let record_norm = norm(vector.values());
        let now = self.now();
        let written: Option<i32> = sqlx::query_scalar(sql::VECTOR_UPSERT)
            .bind(tenant.as_str())
            .bind(collection.as_str())
            .bind(id.as_str())
            .bind(VectorParam(vector.values()))
            .bind(record_norm)
            .bind(is_extreme(record_norm))
            .bind(json_text(metadata.get())?)
            .bind(expires_at(now, ttl))
            .bind(i32::try_from(vector.dimension()).unwrap_or(i32::MAX))
            .bind(metric_name(vector.metric()))
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        if written.is_some() {
            return Ok(());
        }
        match self.collection_row(tenant, collection).await? {
            None => Err(Error::not_found(Resource::Collection, collection)),
            Some(_) => Err(Error::conflict(format!(
                "the vector does not fit collection {collection}"
            ))),
        }
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let row = sqlx::query(sql::VECTOR_GET)
            .bind(tenant.as_str())
            .bind(collection.as_str())
            .bind(id.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .ok_or_else(|| Error::not_found(Resource::Collection, collection))?;
        let vector: Option<VectorColumn> = row.try_get(0).map_err(classify)?;
        let Some(VectorColumn(vector)) = vector else {
            return Ok(None);
        };
        let metadata: Value = row.try_get(1).map_err(classify)?;
        Ok(Some(VectorRecord {
            id: id.clone(),
            vector,
            metadata: json_object(metadata, "vector metadata")?,
            expires_at: row.try_get(2).map_err(classify)?,
        }))
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        let row = sqlx::query(sql::VECTOR_DELETE)
            .bind(tenant.as_str())
            .bind(collection.as_str())
            .bind(id.as_str())
            .bind(self.now())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let found: Option<i64> = row.try_get(0).map_err(classify)?;
        if found.is_none() {
            return Err(Error::not_found(Resource::Collection, collection));
        }
        let deleted: Option<bool> = row.try_get(1).map_err(classify)?;
        Ok(deleted.unwrap_or(false))
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let (collection_id, _) = self.require_collection_row(tenant, collection).await?;
        let rows = sqlx::query(sql::VECTOR_LIST)
            .bind(collection_id)
            .bind(start_after.map_or("", RecordId::as_str))
            .bind(self.now())
            .bind(overfetch(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let items = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |r| r.id.clone()))
    }

    /// From the collection's HNSW index when it has one (it gets one in the background the
    /// first time it is searched approximately with 10,000 records or more) and the search has
    /// no filter; otherwise exact.
    async fn approximate_candidates(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        query: &Embedding,
        k: Limit,
        filter: &Filter,
        ef: usize,
    ) -> Result<Vec<VectorRecord>> {
        if filter.clauses().is_empty() {
            let (id, spec) = self.require_collection_row(tenant, collection).await?;
            if query.fits(&spec)
                && self
                    .approximate_index_ready(tenant, collection, id, &spec)
                    .await?
            {
                let ef_search = u32::try_from(ef.clamp(1, 1000)).unwrap_or(1000);
                return self.hnsw_candidates(id, &spec, query, k, ef_search).await;
            }
        }
        self.search_candidates(tenant, collection, query, k, filter)
            .await
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
        let (collection_id, spec) = self.require_collection_row(tenant, collection).await?;
        if !query.fits(&spec) {
            return Err(Error::conflict(format!(
                "the query does not fit collection {collection}"
            )));
        }
        let filtered = !filter.clauses().is_empty();
        let probe = filter_probe(filter);
        let query_norm = norm(query.values());
        if is_extreme(query_norm) {
            // No bound holds for this query: every visible record passing the filter competes.
            let rows = sqlx::query(sql::VECTOR_ALL)
                .persistent(false)
                .bind(collection_id)
                .bind(now)
                .bind(&probe)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            let records = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
            return Ok(records
                .into_iter()
                .filter(|r| filter.matches(&r.metadata))
                .collect());
        }
        let bounds = Bounds::new(query, query_norm);
        let (top, within) = statements(spec.metric, filtered);
        let probe = filtered.then_some(&probe);
        let fetch = first_fetch(k.get());
        let request = CandidateQuery {
            collection_id,
            query,
            now,
            coefficient: bounds.coefficient,
            probe,
        };
        let first = self.candidates(top, &request, Bound::Limit(fetch)).await?;
        // Completeness is judged on the rows as SQL ordered them, before the exact filter.
        let tame_fetched = first.iter().filter(|c| c.scored.is_some()).count();
        let last_rank = first
            .iter()
            .filter_map(|c| c.scored.map(|(_, rank)| rank))
            .fold(f64::NEG_INFINITY, f64::max);
        let mut rows: Vec<Candidate> = first
            .into_iter()
            .filter(|c| filter.matches(&c.record.metadata))
            .collect();
        let bounds_of = |c: &Candidate| match c.scored {
            Some((distance, rank)) => bounds.of(distance, rank, c.norm),
            None => {
                let exact = distance(query.metric(), query.values(), &c.record.vector);
                (exact, exact)
            }
        };
        let upper = kth_smallest(rows.iter().map(|c| bounds_of(c).1).collect(), k.get());
        let complete = tame_fetched < fetch || bounds.lower_at_rank(last_rank) > upper;
        if !complete {
            self.search_counters
                .second_queries
                .fetch_add(1, Ordering::Relaxed);
            rows = self
                .candidates(within, &request, Bound::Rank(bounds.rank_threshold(upper)))
                .await?
                .into_iter()
                .filter(|c| filter.matches(&c.record.metadata))
                .collect();
        }
        Ok(rows
            .into_iter()
            .filter(|c| bounds_of(c).0 <= upper)
            .map(|c| c.record)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(metric: Metric, values: Vec<f32>) -> Embedding {
        let spec = CollectionSpec::new("c", values.len() as u64, metric).unwrap();
        Embedding::new("query", &spec, values).unwrap()
    }

    #[test]
    fn thresholds_admit_every_row_whose_lower_bound_is_below_the_limit() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let q = query(metric, vec![0.5, -1.25, 3.0]);
            let bounds = Bounds::new(&q, norm(q.values()));
            for upper in [0.0, 1e-9, 0.37, 1.0, 12.5, -4.0] {
                if metric != Metric::Dot && upper < 0.0 {
                    continue; // cosine and l2 distances are never negative
                }
                let threshold = bounds.rank_threshold(upper);
                // A rank just above the threshold has a lower bound above the limit.
                let beyond = threshold + threshold.abs() * 1e-9 + 1e-12;
                assert!(bounds.lower_at_rank(beyond) > upper, "{metric} {upper}");
                // And the threshold itself is not too generous to be useful.
                assert!(
                    threshold - upper < 1e-3 + upper.abs() * 1e-3,
                    "{metric} {upper} {threshold}"
                );
            }
        }
    }

    #[test]
    fn bounds_bracket_the_distance_they_were_computed_from() {
        let q = query(Metric::Dot, vec![1.0, 2.0, 3.0]);
        let bounds = Bounds::new(&q, norm(q.values()));
        let r = [4.0_f32, 5.0, 6.0];
        let d = distance(Metric::Dot, q.values(), &r);
        let rank = d - bounds.coefficient * norm(&r);
        let (lower, upper) = bounds.of(d, rank, norm(&r));
        assert!(lower < d && d < upper);
    }

    #[test]
    fn first_fetch_leaves_a_margin() {
        assert_eq!(first_fetch(1), 9);
        assert_eq!(first_fetch(10), 18);
        assert_eq!(first_fetch(1000), 1250);
        assert_eq!(kth_smallest(vec![3.0, 1.0, 2.0], 2), 2.0);
        assert_eq!(kth_smallest(vec![3.0], 2), f64::INFINITY);
    }

    #[test]
    fn extreme_norms_are_outside_the_tame_range() {
        assert!(is_extreme(1e-11));
        assert!(is_extreme(2e10));
        assert!(!is_extreme(1.0));
    }
}
