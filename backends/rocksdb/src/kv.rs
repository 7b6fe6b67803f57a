//! Key-value records in the `kv` column family.
//!
//! Atomicity: every write to a key (put, put-if-absent, compare-and-swap, delete, purge) holds
//! that key's lock stripe while it reads the current record, decides, and writes one
//! `WriteBatch`. Reads take no lock: RocksDB makes each single-key write atomic, so a reader sees
//! the old or the new record, never a mix. Concurrent compare-and-swap callers on one key are
//! thereby serialised, and exactly one sees the expected version. Each write appends its change
//! in the same batch (see [`crate::change`]).

use async_trait::async_trait;
use rocksdb::WriteBatch;

use p8fs_core::kv::KvPage;
use p8fs_core::{
    Error, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Limit, Page, Resource, Result,
    TenantId, Timestamp, Ttl, Version, expires_at, is_visible,
};

use crate::RocksBackend;
use crate::change::Event;
use crate::schema::{self, CF_KV, Reader};

/// A decoded `kv` value.
struct Stored {
    version: u64,
    expires_at: Option<Timestamp>,
}

fn decode_header(raw: &[u8]) -> Result<(Stored, Reader<'_>)> {
    let mut reader = Reader::new(raw, "kv");
    let version = reader.u64()?;
    let expires_at = schema::decode_expiry(reader.i64()?);
    Ok((
        Stored {
            version,
            expires_at,
        },
        reader,
    ))
}

fn decode_entry(key: Key, raw: &[u8]) -> Result<KvEntry> {
    let (stored, reader) = decode_header(raw)?;
    Ok(KvEntry {
        key,
        value: reader.json()?,
        version: Version(stored.version),
        expires_at: stored.expires_at,
    })
}

fn encode(version: u64, expires_at: Option<Timestamp>, value: &JsonValue) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&schema::encode_expiry(expires_at).to_be_bytes());
    schema::json_bytes(value.get(), &mut out)?;
    Ok(out)
}

fn kv_key(tenant: &TenantId, key: &Key) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), key.as_bytes()])
}

impl RocksBackend {
    /// The visible header of the record at `raw_key`, if any.
    fn visible_header(&self, raw_key: &[u8], now: Timestamp) -> Result<Option<Stored>> {
        match self.get_raw(CF_KV, raw_key)? {
            Some(raw) => {
                let (stored, _) = decode_header(&raw)?;
                Ok(is_visible(stored.expires_at, now).then_some(stored))
            }
            None => Ok(None),
        }
    }

    /// Writes a new version of the record with its `Put` change; the caller holds the key's
    /// stripe lock.
    fn write_kv(
        &self,
        tenant: &TenantId,
        key: &Key,
        raw_key: &[u8],
        value: &JsonValue,
        ttl: Option<Ttl>,
        now: Timestamp,
    ) -> Result<Version> {
        let version = self.versions.allocate(self)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_KV)?,
            raw_key,
            encode(version, expires_at(now, ttl), value)?,
        );
        let version = Version(version);
        self.write_changes(tenant, batch, &[Event::kv_put(key, version)])?;
        Ok(version)
    }

    /// Visible entries of `tenant` whose key starts with `prefix`, after `start_after`, at most
    /// `limit` plus one to tell whether more exist.
    fn scan_kv(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let now = self.now();
        let tenant_prefix = schema::prefix(&[tenant.as_bytes()]);
        let raw_prefix = schema::key(&[tenant.as_bytes(), prefix.as_bytes()]);
        let start = start_after.map(|k| kv_key(tenant, k));
        let mut items = Vec::new();
        self.scan_raw(CF_KV, &raw_prefix, start.as_deref(), |raw_key, raw| {
            if start.as_deref() == Some(raw_key) {
                return Ok(true);
            }
            let (stored, _) = decode_header(raw)?;
            if is_visible(stored.expires_at, now) {
                let key = Key::new(schema::text(&raw_key[tenant_prefix.len()..], "kv key")?)?;
                items.push(decode_entry(key, raw)?);
            }
            Ok(items.len() <= limit.get())
        })?;
        Ok(Page::from_overfetch(items, limit, |e| e.key.clone()))
    }

    /// Physically removes expired key-value records.
    pub(crate) fn purge_kv(&self, now: Timestamp) -> Result<u64> {
        let mut expired = Vec::new();
        self.scan_raw(CF_KV, &[], None, |raw_key, raw| {
            let (stored, _) = decode_header(raw)?;
            if !is_visible(stored.expires_at, now) {
                expired.push(raw_key.to_vec());
            }
            Ok(true)
        })?;
        let mut removed = 0;
        for raw_key in expired {
            let _guard = self.kv_lock(&raw_key);
            // Re-check under the lock: the key may have been rewritten since the scan.
            let still_expired = match self.get_raw(CF_KV, &raw_key)? {
                Some(raw) => !is_visible(decode_header(&raw)?.0.expires_at, now),
                None => false,
            };
            if still_expired {
                let mut batch = WriteBatch::default();
                batch.delete_cf(self.cf(CF_KV)?, &raw_key);
                self.write(batch)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl KvStore for RocksBackend {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        let now = self.now();
        match self.get_raw(CF_KV, &kv_key(tenant, key))? {
            Some(raw) => {
                let entry = decode_entry(key.clone(), &raw)?;
                Ok(is_visible(entry.expires_at, now).then_some(entry))
            }
            None => Ok(None),
        }
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let raw_key = kv_key(tenant, key);
        let _guard = self.kv_lock(&raw_key);
        self.write_kv(tenant, key, &raw_key, value, ttl, self.now())
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let raw_key = kv_key(tenant, key);
        let _guard = self.kv_lock(&raw_key);
        let now = self.now();
        if self.visible_header(&raw_key, now)?.is_some() {
            return Err(Error::already_exists(Resource::Key, key));
        }
        self.write_kv(tenant, key, &raw_key, value, ttl, now)
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let raw_key = kv_key(tenant, key);
        let _guard = self.kv_lock(&raw_key);
        let now = self.now();
        match self.visible_header(&raw_key, now)? {
            None => Err(Error::not_found(Resource::Key, key)),
            Some(stored) if stored.version != expected.0 => Err(Error::conflict(format!(
                "key {key} is at version {}, not {expected}",
                stored.version
            ))),
            Some(_) => self.write_kv(tenant, key, &raw_key, value, ttl, now),
        }
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        let raw_key = kv_key(tenant, key);
        let _guard = self.kv_lock(&raw_key);
        let now = self.now();
        let Some(raw) = self.get_raw(CF_KV, &raw_key)? else {
            return Ok(false);
        };
        let (stored, _) = decode_header(&raw)?;
        let visible = is_visible(stored.expires_at, now);
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_KV)?, &raw_key);
        // Removing an expired leftover is not a change anyone saw.
        let event = visible.then(|| Event::kv_delete(key));
        self.write_changes(tenant, batch, event.as_slice())?;
        Ok(visible)
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        self.scan_kv(tenant, prefix, start_after, limit)
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        _path: &JsonPath,
        _operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        // No secondary index: every visible record is a candidate, and core decides.
        self.scan_kv(tenant, &KeyPrefix::all(), start_after, limit)
    }
}
