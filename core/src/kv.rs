//! The key-value capability: versioned JSON values with optional ttl, atomic create and
//! compare-and-swap, prefix scans with cursors, and find-by-field.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;
use crate::json;
use crate::types::{
    JsonPath, JsonText, JsonValue, Key, KeyPrefix, Limit, Page, TenantId, Timestamp, Ttl, Version,
};

/// A visible key-value record.
#[derive(Clone, PartialEq, Debug)]
pub struct KvEntry {
    pub key: Key,
    pub value: Value,
    pub version: Version,
    /// When the record stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
}

/// A visible record's value as JSON text, with its version and expiry: what
/// [`KvStore::get_text`] answers.
#[derive(Clone, PartialEq, Debug)]
pub struct KvText {
    /// The value, exactly as `serde_json` writes [`KvEntry::value`] compactly.
    pub value: JsonText,
    pub version: Version,
    /// When the record stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
}

impl From<KvEntry> for KvText {
    fn from(entry: KvEntry) -> Self {
        Self {
            value: JsonText::of(&entry.value),
            version: entry.version,
            expires_at: entry.expires_at,
        }
    }
}

/// A page of entries; the cursor is the last key of the page.
pub type KvPage = Page<KvEntry, Key>;

/// Key-value storage. Every method is scoped to one tenant and sees only records visible at the
/// backend clock's `now` (`now < expires_at`).
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The visible record at `key`, or `None`.
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>>;

    /// [`KvStore::get`] with the value as JSON text, for a caller that hands the value on as it
    /// is (a REST read): the same record, its value exactly as `serde_json` writes `get`'s value
    /// compactly. By default `get`'s value written out; a store that keeps that very text
    /// answers it without parsing it.
    async fn get_text(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvText>> {
        Ok(self.get(tenant, key).await?.map(KvText::from))
    }

    /// Upserts `value` at `key` and returns its new version. The record's ttl is set from this
    /// call: `None` makes it permanent.
    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version>;

    /// Creates the record only if no visible record exists at `key`; otherwise
    /// `AlreadyExists`. Atomic: among concurrent callers exactly one succeeds.
    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version>;

    /// Replaces the record only if its visible version is `expected`; `NotFound` if no visible
    /// record exists, `Conflict` (changing nothing) if the version differs. Atomic: among
    /// concurrent callers with the same `expected`, exactly one succeeds.
    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version>;

    /// Deletes the record; returns whether a visible record existed.
    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool>;

    /// Visible records whose key starts with `prefix` and sorts after `start_after`, keys
    /// ascending by raw UTF-8 bytes, at most `limit`; `next` is `Some` exactly when more exist.
    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage>;

    /// The primitive behind [`find_by_field`]: visible records after `start_after`, keys
    /// ascending, at most `limit`, that *may* hold `operand` at `path`. It must never leave out
    /// a record that does; extra candidates are filtered in core. `next` is the last key
    /// examined, `Some` exactly when more records may follow.
    async fn find_candidates(
        &self,
        tenant: &TenantId,
        path: &JsonPath,
        operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage>;
}

/// Visible records holding `operand` at the dot `path` (contract JSON equality), keys ascending
/// after `start_after`, at most `limit`; `next` is `Some` exactly when more matches exist.
pub async fn find_by_field(
    store: &dyn KvStore,
    tenant: &TenantId,
    path: &JsonPath,
    operand: &JsonValue,
    start_after: Option<&Key>,
    limit: Limit,
) -> Result<KvPage> {
    let mut found = Vec::new();
    let mut after = start_after.cloned();
    loop {
        let page = store
            .find_candidates(tenant, path, operand, after.as_ref(), Limit::MAX)
            .await?;
        for entry in page.items {
            if json::path_equals(&entry.value, path, operand.get()) {
                found.push(entry);
                if found.len() > limit.get() {
                    return Ok(Page::from_overfetch(found, limit, |e| e.key.clone()));
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(Page::from_overfetch(found, limit, |e| e.key.clone())),
        }
    }
}
