//! Key-value records through the sealing layer: values sealed with their token tree, keys as
//! they are; find-by-field asks the backend for candidates on the token tree.

use async_trait::async_trait;
use serde_json::Value;

use super::json::{open, open_text, seal, token_path, tokens};
use super::keys::DataKey;
use super::{Sealed, ctx};
use crate::error::Result;
use crate::kv::{KvEntry, KvPage, KvStore, KvText};
use crate::types::{JsonPath, JsonValue, Key, KeyPrefix, Limit, Page, TenantId, Ttl, Version};
use crate::validate::stored;

impl Sealed {
    pub(super) fn seal_kv(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        k: &Key,
        value: &JsonValue,
    ) -> Result<JsonValue> {
        let map = seal(key, &ctx(tenant, "kv", &[k.as_bytes()]), value.get(), true)?;
        Ok(stored::value(Value::Object(map)))
    }

    pub(super) fn open_kv(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        mut entry: KvEntry,
    ) -> Result<KvEntry> {
        let value = std::mem::take(&mut entry.value);
        entry.value = open(
            key,
            &ctx(tenant, "kv", &[entry.key.as_bytes()]),
            value,
            self.plain_ok(),
        )?;
        Ok(entry)
    }

    fn open_page(&self, key: &DataKey, tenant: &TenantId, page: KvPage) -> Result<KvPage> {
        let items = page
            .items
            .into_iter()
            .map(|e| self.open_kv(key, tenant, e))
            .collect::<Result<_>>()?;
        Ok(Page {
            items,
            next: page.next,
        })
    }
}

/// Candidates from two lookups, in key order, up to where both are complete.
fn merge(a: KvPage, b: KvPage, limit: Limit) -> KvPage {
    let bound = match (a.next, b.next) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x),
        (Some(x), Some(y)) => Some(x.min(y)),
    };
    let mut items: Vec<KvEntry> = a.items.into_iter().chain(b.items).collect();
    items.sort_by(|x, y| x.key.cmp(&y.key));
    items.dedup_by(|x, y| x.key == y.key);
    if let Some(bound) = &bound {
        items.retain(|e| e.key <= *bound);
    }
    if items.len() > limit.get() {
        items.truncate(limit.get());
        let next = items.last().map(|e| e.key.clone());
        return Page { items, next };
    }
    Page { items, next: bound }
}

#[async_trait]
impl KvStore for Sealed {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        // A miss needs no data key (a token's revocation lookup is one on every request).
        Self::refuse_keyring(tenant)?;
        let Some(entry) = self.inner.get(tenant, key).await? else {
            return Ok(None);
        };
        let dk = self.key(tenant).await?;
        Ok(Some(self.open_kv(&dk, tenant, entry)?))
    }

    async fn get_text(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvText>> {
        Self::refuse_keyring(tenant)?;
        let Some(entry) = self.inner.get_text(tenant, key).await? else {
            return Ok(None);
        };
        let dk = self.key(tenant).await?;
        let record = [key.as_bytes()];
        let context = ctx(tenant, "kv", &record);
        Ok(Some(KvText {
            value: open_text(&dk, &context, entry.value, self.plain_ok())?,
            ..entry
        }))
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_kv(&dk, tenant, key, value)?;
        self.inner.put(tenant, key, &sealed, ttl).await
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_kv(&dk, tenant, key, value)?;
        self.inner.put_if_absent(tenant, key, &sealed, ttl).await
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_kv(&dk, tenant, key, value)?;
        self.inner
            .compare_and_swap(tenant, key, expected, &sealed, ttl)
            .await
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete(tenant, key).await
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let dk = self.key(tenant).await?;
        let page = self.inner.scan(tenant, prefix, start_after, limit).await?;
        self.open_page(&dk, tenant, page)
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        path: &JsonPath,
        operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let dk = self.key(tenant).await?;
        let operand_tokens = stored::value(tokens(&dk, operand.get()));
        let sealed = self
            .inner
            .find_candidates(
                tenant,
                &token_path(path),
                &operand_tokens,
                start_after,
                limit,
            )
            .await?;
        let page = if self.plain_ok() {
            let plain = self
                .inner
                .find_candidates(tenant, path, operand, start_after, limit)
                .await?;
            merge(sealed, plain, limit)
        } else {
            sealed
        };
        self.open_page(&dk, tenant, page)
    }
}
