//! Key-value records: `kv`, `kvScan` and `kvFind` (connections in key order), and the writes
//! `kvPut`, `kvPutIfAbsent`, `kvCompareAndSwap` and `kvDelete`. Scopes `kv:read`, `kv:write`.

use async_graphql::connection::Connection;
use async_graphql::{Context, Json, Object, SimpleObject};
use p8fs_auth::Scope;
use p8fs_core::kv::find_by_field;
use p8fs_core::{Error, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, Ttl, Version};
use serde_json::Value;

use crate::context::{caller, state};
use crate::error::GqlResult;
use crate::page;
use crate::scalars::Long;

/// A stored record.
#[derive(SimpleObject)]
pub struct KvRecord {
    pub key: String,
    pub value: Json<Value>,
    /// Opaque, strictly increasing per key; pass it to `kvCompareAndSwap`.
    pub version: String,
    /// Milliseconds since the Unix epoch after which the record is gone; null means never.
    pub expires_at: Option<Long>,
}

impl From<KvEntry> for KvRecord {
    fn from(entry: KvEntry) -> Self {
        KvRecord {
            key: entry.key.into_string(),
            value: Json(entry.value),
            version: entry.version.to_string(),
            expires_at: entry.expires_at.map(Long),
        }
    }
}

/// The outcome of a write.
#[derive(SimpleObject)]
pub struct KvWritten {
    pub key: String,
    pub version: String,
}

/// The ttl of a write, from milliseconds.
pub(crate) fn ttl(ttl_ms: Option<Long>) -> p8fs_core::Result<Option<Ttl>> {
    ttl_ms
        .map(|Long(ms)| Ttl::from_millis(ms).map_err(|e| e.renamed("ttlMs")))
        .transpose()
}

fn value(value: Value) -> p8fs_core::Result<JsonValue> {
    JsonValue::new(value).map_err(|e| e.renamed("value"))
}

#[derive(Default)]
pub struct KvQuery;

#[Object]
impl KvQuery {
    /// The record at `key`, or null.
    async fn kv(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<Option<KvRecord>> {
        let caller = caller(ctx, Scope::KvRead)?;
        let key = Key::new(key).gql()?;
        let entry = state(ctx).backend.get(&caller.tenant, &key).await.gql()?;
        Ok(entry.map(KvRecord::from))
    }

    /// Records whose key starts with `prefix`, in key order (raw UTF-8 bytes).
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn kv_scan(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] prefix: String,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, KvRecord>> {
        let caller = caller(ctx, Scope::KvRead)?;
        let prefix = KeyPrefix::new(prefix).gql()?;
        let limit = page::first(first).gql()?;
        let after = page::after(after.as_deref(), Key::new).gql()?;
        let found = state(ctx)
            .backend
            .scan(&caller.tenant, &prefix, after.as_ref(), limit)
            .await
            .gql()?;
        Ok(page::connection(
            found
                .items
                .into_iter()
                .map(|entry| (entry.key.as_str().to_owned(), KvRecord::from(entry))),
            after.is_some(),
            found.next.is_some(),
        ))
    }

    /// Records whose value holds `equals` at the dot path `path`, in key order.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn kv_find(
        &self,
        ctx: &Context<'_>,
        path: String,
        equals: Json<Value>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, KvRecord>> {
        let caller = caller(ctx, Scope::KvRead)?;
        let path = JsonPath::new(path).gql()?;
        let operand = JsonValue::operand("equals", equals.0).gql()?;
        let limit = page::first(first).gql()?;
        let after = page::after(after.as_deref(), Key::new).gql()?;
        let found = find_by_field(
            state(ctx).backend.as_ref(),
            &caller.tenant,
            &path,
            &operand,
            after.as_ref(),
            limit,
        )
        .await
        .gql()?;
        Ok(page::connection(
            found
                .items
                .into_iter()
                .map(|entry| (entry.key.as_str().to_owned(), KvRecord::from(entry))),
            after.is_some(),
            found.next.is_some(),
        ))
    }
}

#[derive(Default)]
pub struct KvMutation;

#[Object]
impl KvMutation {
    /// Stores `value` at `key`, replacing any record there.
    async fn kv_put(
        &self,
        ctx: &Context<'_>,
        key: String,
        value: Json<Value>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<KvWritten> {
        let caller = caller(ctx, Scope::KvWrite)?;
        let key = Key::new(key).gql()?;
        let (value, ttl) = (self::value(value.0).gql()?, ttl(ttl_ms).gql()?);
        let version = state(ctx)
            .backend
            .put(&caller.tenant, &key, &value, ttl)
            .await
            .gql()?;
        Ok(written(key, version))
    }

    /// Stores `value` at `key` only if no record is there; otherwise a CONFLICT error.
    async fn kv_put_if_absent(
        &self,
        ctx: &Context<'_>,
        key: String,
        value: Json<Value>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<KvWritten> {
        let caller = caller(ctx, Scope::KvWrite)?;
        let key = Key::new(key).gql()?;
        let (value, ttl) = (self::value(value.0).gql()?, ttl(ttl_ms).gql()?);
        let version = state(ctx)
            .backend
            .put_if_absent(&caller.tenant, &key, &value, ttl)
            .await
            .gql()?;
        Ok(written(key, version))
    }

    /// Replaces the record at `key` only if its version is `version`; otherwise a CONFLICT
    /// error (NOT_FOUND when there is no record).
    async fn kv_compare_and_swap(
        &self,
        ctx: &Context<'_>,
        key: String,
        version: String,
        value: Json<Value>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<KvWritten> {
        let caller = caller(ctx, Scope::KvWrite)?;
        let key = Key::new(key).gql()?;
        let expected = version
            .parse::<u64>()
            .map(Version)
            .map_err(|_| Error::invalid("version", "must be a version this API returned"))
            .gql()?;
        let (value, ttl) = (self::value(value.0).gql()?, ttl(ttl_ms).gql()?);
        let version = state(ctx)
            .backend
            .compare_and_swap(&caller.tenant, &key, expected, &value, ttl)
            .await
            .gql()?;
        Ok(written(key, version))
    }

    /// Deletes the record at `key`; returns whether one was there.
    async fn kv_delete(&self, ctx: &Context<'_>, key: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::KvWrite)?;
        let key = Key::new(key).gql()?;
        state(ctx).backend.delete(&caller.tenant, &key).await.gql()
    }
}

fn written(key: Key, version: Version) -> KvWritten {
    KvWritten {
        key: key.into_string(),
        version: version.to_string(),
    }
}
