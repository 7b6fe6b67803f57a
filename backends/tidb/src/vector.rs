//! Vector collections in `p8fs_collections`, records in `p8fs_vectors`.
//!
//! Consistency: every write to a collection's records (upsert) and its drop run in a transaction
//! that locks the collection's row, so a record can never be written into a collection that a
//! concurrent drop has already emptied (and re-appear when the name is created again).
//!
//! Changes (`change.rs`): each write that happened appends its change as the last step of its
//! transaction: a collection `Put` when `create_collection` created one, one collection `Delete`
//! for a drop (its records go without a change each), a record `Put` per upsert and a `Delete`
//! when `delete_vector` removed a visible record (a transaction too, for that).
//!
//! Search: the server orders records by TiDB's `VEC_*_DISTANCE`, which is only approximate
//! (TiDB computes in f32; the MariaDB stand-in in f64 over the decimal text, whose components
//! differ from the stored f32 by up to half an f32 ulp). [`rounding_bound`] bounds that error
//! rigorously from the dimension and the norms, and [`TidbBackend::search_candidates`] fetches
//! nearest-first until every record it has not fetched is provably farther than the k-th best
//! match it has, so core's f64 rescoring always finds the exact top k.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, Value};

use p8fs_core::vector::{VectorPage, distance, norm};
use p8fs_core::{
    ChangeEvent, CollectionName, CollectionSpec, Embedding, Error, Filter, JsonObject, Limit,
    Metric, Page, RecordId, Resource, Result, Subject, TenantId, Ttl, VectorRecord, VectorStore,
    expires_at,
};

use crate::error::{classify, corrupt};
use crate::schema::{self, bytes};
use crate::{TidbBackend, TxError, sql, transaction};

/// Records fetched beyond `k` by the first query of a search.
const SEARCH_MARGIN: u64 = 16;
/// Norms below this may lose precision to f32 underflow in products.
const TINY_NORM_PRODUCT: f64 = 1e-30;
/// Norms above this may overflow f32 squares on TiDB.
const HUGE_NORM: f64 = 1e18;
/// The largest f32 rounding error of one product that underflows (2^-149, rounded up).
const UNDERFLOW: f64 = 1.5e-45;

/// How often exact search widened its candidate window.
#[derive(Debug, Default)]
pub(crate) struct SearchCounters {
    widenings: AtomicU64,
}

fn spec(name: CollectionName, dimension: i64, metric: &str) -> Result<CollectionSpec> {
    let dimension = u64::try_from(dimension).map_err(|_| corrupt("collection"))?;
    CollectionSpec::new(name.into_string(), dimension, schema::parse_metric(metric)?)
        .map_err(|_| corrupt("collection"))
}

async fn lock_collection(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    name: &CollectionName,
) -> Result<Option<CollectionSpec>, TxError> {
    let row: Option<(i64, String)> = tx
        .exec_first(
            sql::COLLECTION_LOCK,
            (bytes(tenant.as_str()), bytes(name.as_str())),
        )
        .await?;
    match row {
        Some((dimension, metric)) => Ok(Some(spec(name.clone(), dimension, &metric)?)),
        None => Ok(None),
    }
}

/// An `(id, embedding, metadata, expires_at)` row of a collection with `dimension`.
fn record(row: &mut Row, dimension: usize) -> Result<VectorRecord> {
    let id = RecordId::new(schema::text(row, 0, "vector id")?).map_err(|_| corrupt("vector id"))?;
    let text: String = schema::column(row, 1, "vector")?;
    let vector = schema::parse_embedding(&text)?;
    if vector.len() != dimension {
        return Err(corrupt("vector"));
    }
    Ok(VectorRecord {
        id,
        vector,
        metadata: schema::json(row, 2, "vector metadata")?,
        expires_at: schema::expiry(row, 3, "vector expiry")?,
    })
}

/// A rigorous bound on `|server distance - exact f64 distance|` for any record of the
/// collection, given the query's norm and the smallest and largest record norms. `γ` bounds the
/// relative error of an f32 dot product or sum of squares of `n` terms (`n u / (1 - n u)`, taken
/// with `n + 32` terms for the final operations, `u = 2^-24`); it also covers the stand-in, whose
/// inputs differ from the stored f32 by a relative `u` and which computes in f64. Infinite when
/// f32 could underflow to nothing or overflow.
fn rounding_bound(
    metric: Metric,
    dimension: usize,
    query_norm: f64,
    min_norm: f64,
    max_norm: f64,
) -> f64 {
    let n = dimension as f64;
    let gamma = p8fs_core::vector::f32_sum_error(dimension) + 1e-12;
    if query_norm > HUGE_NORM || max_norm > HUGE_NORM {
        return f64::INFINITY;
    }
    match metric {
        Metric::Cosine => {
            let scale = query_norm * min_norm;
            if scale < TINY_NORM_PRODUCT {
                return f64::INFINITY;
            }
            // The dot product is off by γ|q||a|, each norm by a relative γ: the similarity by
            // at most 2γ + O(γ²); 4γ leaves room for the final division and clamp.
            4.0 * gamma + 3.0 * n * UNDERFLOW / scale
        }
        // Relative γ on the squared distance (at most γ on the distance), plus the stand-in's
        // absolute input error u(|q| + |a|), both below γ(|q| + |a|) since |q - a| <= |q| + |a|.
        Metric::L2 => 2.0 * gamma * (query_norm + max_norm) + (n * UNDERFLOW).sqrt(),
        Metric::Dot => gamma * query_norm * max_norm + n * UNDERFLOW,
    }
}

fn search_statement(metric: Metric) -> &'static str {
    match metric {
        Metric::Cosine => sql::VECTOR_SEARCH_COSINE,
        Metric::L2 => sql::VECTOR_SEARCH_L2,
        Metric::Dot => sql::VECTOR_SEARCH_DOT,
    }
}

impl TidbBackend {
    /// How many times exact searches of this backend widened their candidate window (each
    /// widening is one more query, for four times as many rows), because fewer than `k` fetched
    /// records passed the filter or the rounding bound did not yet prove the top `k` complete.
    /// For tests and diagnostics.
    pub fn search_widenings(&self) -> u64 {
        self.search_counters.widenings.load(Ordering::Relaxed)
    }

    async fn require_collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<CollectionSpec> {
        self.collection(tenant, name)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Collection, name))
    }
}

#[async_trait]
impl VectorStore for TidbBackend {
    async fn create_collection(&self, tenant: &TenantId, spec: &CollectionSpec) -> Result<bool> {
        transaction!(self, tx => {
            match lock_collection(&mut tx, tenant, &spec.name).await? {
                Some(existing) if existing == *spec => false,
                Some(existing) => {
                    return Err(Error::conflict(format!(
                        "collection {} exists with dimension {} and metric {}",
                        spec.name,
                        existing.dimension.get(),
                        existing.metric
                    ))
                    .into());
                }
                None => {
                    tx.exec_drop(
                        sql::COLLECTION_INSERT,
                        (
                            bytes(tenant.as_str()),
                            bytes(spec.name.as_str()),
                            spec.dimension.get() as u64,
                            schema::metric_name(spec.metric),
                        ),
                    )
                    .await?;
                    let event = ChangeEvent::put(Subject::Collection { name: spec.name.clone() }, None);
                    self.append(&mut tx, tenant, &[event]).await?;
                    true
                }
            }
        })
    }

    async fn collection(
        &self,
        tenant: &TenantId,
        name: &CollectionName,
    ) -> Result<Option<CollectionSpec>> {
        let row: Option<(i64, String)> = self
            .conn()
            .await?
            .exec_first(
                sql::COLLECTION_GET,
                (bytes(tenant.as_str()), bytes(name.as_str())),
            )
            .await
            .map_err(classify)?;
        row.map(|(dimension, metric)| spec(name.clone(), dimension, &metric))
            .transpose()
    }

    async fn list_collections(&self, tenant: &TenantId) -> Result<Vec<CollectionSpec>> {
        let rows: Vec<(Vec<u8>, i64, String)> = self
            .conn()
            .await?
            .exec(sql::COLLECTION_LIST, (bytes(tenant.as_str()),))
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|(name, dimension, metric)| {
                let name = String::from_utf8(name).map_err(|_| corrupt("collection"))?;
                let name = CollectionName::new(name).map_err(|_| corrupt("collection"))?;
                spec(name, dimension, &metric)
            })
            .collect()
    }

    async fn drop_collection(&self, tenant: &TenantId, name: &CollectionName) -> Result<bool> {
        // FIXME(scale): one transaction deletes every record; on TiDB a collection of millions
        // of records would exceed the transaction size limit and needs batched deletes behind a
        // generation number.
        transaction!(self, tx => {
            if lock_collection(&mut tx, tenant, name).await?.is_none() {
                false
            } else {
                let key = (bytes(tenant.as_str()), bytes(name.as_str()));
                tx.exec_drop(sql::VECTORS_DELETE_ALL, key.clone()).await?;
                tx.exec_drop(sql::COLLECTION_DELETE, key).await?;
                let event = ChangeEvent::delete(Subject::Collection { name: name.clone() });
                self.append(&mut tx, tenant, &[event]).await?;
                true
            }
        })
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
        let text = schema::embedding_text(vector.values());
        let record_norm = norm(vector.values());
        let metadata = schema::json_text(metadata.get())?;
        transaction!(self, tx => {
            let now = self.now();
            let Some(spec) = lock_collection(&mut tx, tenant, collection).await? else {
                return Err(Error::not_found(Resource::Collection, collection).into());
            };
            if !vector.fits(&spec) {
                return Err(Error::conflict(format!("the vector does not fit collection {collection}")).into());
            }
            let params: Vec<Value> = vec![
                bytes(tenant.as_str()),
                bytes(collection.as_str()),
                bytes(id.as_str()),
                Value::from(text.as_str()),
                Value::from(record_norm),
                Value::from(metadata.as_str()),
                Value::from(expires_at(now, ttl)),
            ];
            tx.exec_drop(sql::VECTOR_UPSERT, params).await?;
            let subject = Subject::Vector { collection: collection.clone(), id: id.clone() };
            self.append(&mut tx, tenant, &[ChangeEvent::put(subject, None)]).await?;
        })
    }

    async fn get_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<Option<VectorRecord>> {
        let spec = self.require_collection(tenant, collection).await?;
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                sql::VECTOR_GET,
                (
                    bytes(tenant.as_str()),
                    bytes(collection.as_str()),
                    bytes(id.as_str()),
                    self.now(),
                ),
            )
            .await
            .map_err(classify)?;
        row.map(|mut row| record(&mut row, spec.dimension.get()))
            .transpose()
    }

    async fn delete_vector(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        id: &RecordId,
    ) -> Result<bool> {
        self.require_collection(tenant, collection).await?;
        transaction!(self, tx => {
            tx.exec_drop(
                sql::VECTOR_DELETE,
                (
                    bytes(tenant.as_str()),
                    bytes(collection.as_str()),
                    bytes(id.as_str()),
                    self.now(),
                ),
            )
            .await?;
            let deleted = tx.affected_rows() > 0;
            if deleted {
                let subject = Subject::Vector { collection: collection.clone(), id: id.clone() };
                self.append(&mut tx, tenant, &[ChangeEvent::delete(subject)]).await?;
            }
            deleted
        })
    }

    async fn list_vectors(
        &self,
        tenant: &TenantId,
        collection: &CollectionName,
        start_after: Option<&RecordId>,
        limit: Limit,
    ) -> Result<VectorPage> {
        let spec = self.require_collection(tenant, collection).await?;
        let params: Vec<Value> = vec![
            bytes(tenant.as_str()),
            bytes(collection.as_str()),
            bytes(start_after.map_or("", RecordId::as_str)),
            Value::from(self.now()),
            Value::from(limit.get() as u64 + 1),
        ];
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(sql::VECTOR_LIST_PAGE, params)
            .await
            .map_err(classify)?;
        let items = rows
            .into_iter()
            .map(|mut row| record(&mut row, spec.dimension.get()))
            .collect::<Result<Vec<_>>>()?;
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
        let mut conn = self.conn().await?;
        let row: Option<(i64, String, Option<f64>, Option<f64>)> = conn
            .exec_first(
                sql::COLLECTION_NORMS,
                (now, bytes(tenant.as_str()), bytes(collection.as_str())),
            )
            .await
            .map_err(classify)?;
        let Some((dimension, metric, min_norm, max_norm)) = row else {
            return Err(Error::not_found(Resource::Collection, collection));
        };
        let spec = spec(collection.clone(), dimension, &metric)?;
        if !query.fits(&spec) {
            return Err(Error::conflict(format!(
                "the query does not fit collection {collection}"
            )));
        }
        let (Some(min_norm), Some(max_norm)) = (min_norm, max_norm) else {
            return Ok(Vec::new());
        };
        let bound = rounding_bound(
            spec.metric,
            spec.dimension.get(),
            norm(query.values()),
            min_norm,
            max_norm,
        );
        let query_text = schema::embedding_text(query.values());
        let k = k.get();
        let mut fetch = k as u64 + SEARCH_MARGIN;
        loop {
            let params: Vec<Value> = vec![
                Value::from(query_text.as_str()),
                bytes(tenant.as_str()),
                bytes(collection.as_str()),
                Value::from(now),
                Value::from(fetch),
            ];
            let rows: Vec<Row> = conn
                .exec(search_statement(spec.metric), params)
                .await
                .map_err(classify)?;
            let fetched_all = (rows.len() as u64) < fetch;
            let mut last_native: Option<f64> = None;
            let mut matching = Vec::new();
            for mut row in rows {
                last_native = schema::column(&mut row, 4, "vector distance")?;
                let candidate = record(&mut row, spec.dimension.get())?;
                if filter.matches(&candidate.metadata) {
                    matching.push(candidate);
                }
            }
            if fetched_all {
                return Ok(matching);
            }
            // Every record not fetched has a server distance of at least `last_native` (NULLs
            // sort first, so none is left out), hence an exact distance of at least
            // `last_native - bound`. Stop once that exceeds the k-th exact distance fetched.
            if matching.len() >= k
                && let Some(last) = last_native
            {
                let mut exact: Vec<f64> = matching
                    .iter()
                    .map(|r| distance(spec.metric, query.values(), &r.vector))
                    .collect();
                exact.sort_by(f64::total_cmp);
                if last - bound > exact[k - 1] {
                    return Ok(matching);
                }
            }
            self.search_counters
                .widenings
                .fetch_add(1, Ordering::Relaxed);
            fetch = fetch.saturating_mul(4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_is_finite_for_ordinary_vectors_and_infinite_at_the_edges() {
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let b = rounding_bound(metric, 384, 1.0, 0.5, 2.0);
            assert!(b.is_finite() && b > 0.0 && b < 1e-3, "{metric}: {b}");
        }
        assert!(rounding_bound(Metric::Cosine, 3, 1e-20, 1e-20, 1.0).is_infinite());
        assert!(rounding_bound(Metric::Dot, 3, 1.0, 1.0, 1e30).is_infinite());
    }

    #[test]
    fn bound_covers_f32_accumulation() {
        // A dot product accumulated in f32 in index order (as TiDB does) stays within the bound
        // of the f64 value.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed % 20_001) as f32 - 10_000.0) / 997.0
        };
        for dim in [3_usize, 64, 384, 1536] {
            let a: Vec<f32> = (0..dim).map(|_| next()).collect();
            let b: Vec<f32> = (0..dim).map(|_| next()).collect();
            let f32_dot: f32 = a.iter().zip(&b).fold(0.0, |acc, (x, y)| acc + x * y);
            let exact = distance(Metric::Dot, &a, &b);
            let bound = rounding_bound(Metric::Dot, dim, norm(&a), norm(&b), norm(&b));
            assert!((-f64::from(f32_dot) - exact).abs() <= bound, "dim {dim}");
        }
    }
}
