//! Vector collections and records: `collections`, `collection(name)` with its `records`
//! (a connection), `record(id)` and `search` (nearest neighbours with a metadata filter, exact or
//! approximate: `mode`, `ef`), and the writes. Scopes `vectors:read`, `vectors:write`.

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Enum, Json, Object, SimpleObject};
use p8fs_auth::Scope;
use p8fs_core::vector::{SearchMode, VectorRecord, components, search_with, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Error, Filter, JsonObject, Limit, Metric, RecordId,
};
use serde_json::{Map, Value};

use crate::context::{caller, state};
use crate::error::GqlResult;
use crate::kv::ttl;
use crate::page;
use crate::scalars::Long;

/// How a collection measures distance.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "Metric")]
pub enum MetricName {
    /// `1 - cos(a, b)`.
    Cosine,
    /// Euclidean distance.
    L2,
    /// `-(a · b)`.
    Dot,
}

impl From<Metric> for MetricName {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::Cosine => MetricName::Cosine,
            Metric::L2 => MetricName::L2,
            Metric::Dot => MetricName::Dot,
        }
    }
}

impl From<MetricName> for Metric {
    fn from(metric: MetricName) -> Self {
        match metric {
            MetricName::Cosine => Metric::Cosine,
            MetricName::L2 => Metric::L2,
            MetricName::Dot => Metric::Dot,
        }
    }
}

/// How a search finds the nearest records.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "SearchMode")]
pub enum SearchModeName {
    /// Every record is considered: exactly the nearest.
    Exact,
    /// A backend keeping a graph index of the collection (RocksDB, from 10,000 records) walks
    /// it keeping the `ef` best records seen: far fewer records read, and some of the exact
    /// nearest may be missed; what is returned is still ranked exactly. Smaller collections,
    /// and backends without a graph index, answer exactly.
    Approximate,
}

/// The contract's mode of a search's `mode` and `ef` arguments, checked as every front-end
/// checks them ([`SearchMode::parse`]): `ef` in 1..=4096 and only with APPROXIMATE, errors
/// naming `ef`.
pub(crate) fn search_mode(mode: SearchModeName, ef: Option<i32>) -> p8fs_core::Result<SearchMode> {
    let mode = match mode {
        SearchModeName::Exact => "exact",
        SearchModeName::Approximate => "approximate",
    };
    // A negative `ef` is out of range as 0 is.
    SearchMode::parse(Some(mode), ef.map(|ef| u64::try_from(ef).unwrap_or(0)))
}

/// A collection of fixed-dimension vectors.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Collection {
    pub name: String,
    pub dimension: i32,
    pub metric: MetricName,
}

impl From<CollectionSpec> for Collection {
    fn from(spec: CollectionSpec) -> Self {
        Collection {
            name: spec.name.into_string(),
            dimension: i32::try_from(spec.dimension.get()).unwrap_or(i32::MAX),
            metric: spec.metric.into(),
        }
    }
}

/// A stored vector record.
#[derive(SimpleObject)]
pub struct VectorItem {
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Json<Map<String, Value>>,
    pub expires_at: Option<Long>,
}

impl From<VectorRecord> for VectorItem {
    fn from(record: VectorRecord) -> Self {
        VectorItem {
            id: record.id.into_string(),
            vector: record.vector,
            metadata: Json(record.metadata),
            expires_at: record.expires_at.map(Long),
        }
    }
}

/// One result of a search.
#[derive(SimpleObject)]
pub struct VectorHit {
    pub id: String,
    /// The metric's distance; smaller is nearer.
    pub distance: f64,
    pub metadata: Json<Map<String, Value>>,
}

#[ComplexObject]
impl Collection {
    /// The collection's records in id order.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn records(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, VectorItem>> {
        let caller = caller(ctx, Scope::VectorsRead)?;
        let name = CollectionName::new(self.name.clone()).gql()?;
        let limit = page::first(first).gql()?;
        let after = page::after(after.as_deref(), RecordId::new).gql()?;
        let found = state(ctx)
            .backend
            .list_vectors(&caller.tenant, &name, after.as_ref(), limit)
            .await
            .gql()?;
        Ok(page::connection(
            found
                .items
                .into_iter()
                .map(|record| (record.id.as_str().to_owned(), VectorItem::from(record))),
            after.is_some(),
            found.next.is_some(),
        ))
    }

    /// The record `id`, or null.
    async fn record(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<VectorItem>> {
        let caller = caller(ctx, Scope::VectorsRead)?;
        let name = CollectionName::new(self.name.clone()).gql()?;
        let id = RecordId::new(id).gql()?;
        let record = state(ctx)
            .backend
            .get_vector(&caller.tenant, &name, &id)
            .await
            .gql()?;
        Ok(record.map(VectorItem::from))
    }

    /// The `k` records nearest to `vector` whose metadata holds every `filter` value at its dot
    /// path: distance ascending, then id. `mode` APPROXIMATE searches the collection's graph
    /// index keeping `ef` candidates (1..=4096, default 64; only with APPROXIMATE), where the
    /// backend keeps one.
    #[graphql(complexity = "k.clamp(1, 1000) as usize * child_complexity")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        vector: Vec<f64>,
        #[graphql(default = 10)] k: i32,
        filter: Option<Json<Map<String, Value>>>,
        #[graphql(default_with = "SearchModeName::Exact")] mode: SearchModeName,
        ef: Option<i32>,
    ) -> async_graphql::Result<Vec<VectorHit>> {
        let caller = caller(ctx, Scope::VectorsRead)?;
        let name = CollectionName::new(self.name.clone()).gql()?;
        let k = Limit::top_k(u64::try_from(k).unwrap_or(0)).gql()?;
        let filter = Filter::new(filter.map(|f| f.0).unwrap_or_default()).gql()?;
        let mode = search_mode(mode, ef).gql()?;
        let query = components("vector", vector).gql()?;
        let hits = search_with(
            state(ctx).backend.as_ref(),
            &caller.tenant,
            &name,
            query,
            k,
            &filter,
            mode,
        )
        .await
        .gql()?;
        Ok(hits
            .into_iter()
            .map(|hit| VectorHit {
                id: hit.id.into_string(),
                distance: hit.distance,
                metadata: Json(hit.metadata),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct VectorQuery;

#[Object]
impl VectorQuery {
    /// Every collection, names ascending.
    async fn collections(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Collection>> {
        let caller = caller(ctx, Scope::VectorsRead)?;
        let specs = state(ctx)
            .backend
            .list_collections(&caller.tenant)
            .await
            .gql()?;
        Ok(specs.into_iter().map(Collection::from).collect())
    }

    /// The collection `name`, or null.
    async fn collection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Option<Collection>> {
        let caller = caller(ctx, Scope::VectorsRead)?;
        let name = CollectionName::new(name).gql()?;
        let spec = state(ctx)
            .backend
            .collection(&caller.tenant, &name)
            .await
            .gql()?;
        Ok(spec.map(Collection::from))
    }
}

#[derive(Default)]
pub struct VectorMutation;

#[Object]
impl VectorMutation {
    /// Creates a collection, or returns the identical one that exists; CONFLICT when one of
    /// that name has another dimension or metric.
    async fn create_collection(
        &self,
        ctx: &Context<'_>,
        name: String,
        dimension: i32,
        metric: MetricName,
    ) -> async_graphql::Result<Collection> {
        let caller = caller(ctx, Scope::VectorsWrite)?;
        let dimension = u64::try_from(dimension)
            .map_err(|_| Error::invalid("dimension", "must be positive"))
            .gql()?;
        let spec = CollectionSpec::new(name, dimension, metric.into()).gql()?;
        state(ctx)
            .backend
            .create_collection(&caller.tenant, &spec)
            .await
            .gql()?;
        Ok(spec.into())
    }

    /// Drops a collection and its records; returns whether it existed.
    async fn drop_collection(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::VectorsWrite)?;
        let name = CollectionName::new(name).gql()?;
        state(ctx)
            .backend
            .drop_collection(&caller.tenant, &name)
            .await
            .gql()
    }

    /// Stores a record, replacing any of that id.
    async fn upsert_vector(
        &self,
        ctx: &Context<'_>,
        collection: String,
        id: String,
        vector: Vec<f64>,
        metadata: Option<Json<Value>>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<VectorItem> {
        let caller = caller(ctx, Scope::VectorsWrite)?;
        let name = CollectionName::new(collection).gql()?;
        let id = RecordId::new(id).gql()?;
        let values = components("vector", vector).gql()?;
        let metadata = match metadata {
            Some(Json(value)) => JsonObject::new("metadata", value).gql()?,
            None => JsonObject::empty(),
        };
        let ttl = ttl(ttl_ms).gql()?;
        let backend = state(ctx).backend.as_ref();
        upsert(backend, &caller.tenant, &name, &id, values, &metadata, ttl)
            .await
            .gql()?;
        let stored = backend
            .get_vector(&caller.tenant, &name, &id)
            .await
            .gql()?
            .ok_or_else(|| Error::not_found(p8fs_core::Resource::VectorRecord, &id))
            .gql()?;
        Ok(stored.into())
    }

    /// Deletes a record; returns whether one was there.
    async fn delete_vector(
        &self,
        ctx: &Context<'_>,
        collection: String,
        id: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::VectorsWrite)?;
        let name = CollectionName::new(collection).gql()?;
        let id = RecordId::new(id).gql()?;
        state(ctx)
            .backend
            .delete_vector(&caller.tenant, &name, &id)
            .await
            .gql()
    }
}
