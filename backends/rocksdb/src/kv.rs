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

use p8fs_core::kv::{KvPage, KvText};
use p8fs_core::{
    Error, JsonPath, JsonText, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Limit, Page, Resource,
    Result, TenantId, Timestamp, Ttl, Version, expires_at, is_visible,
};

use crate::RocksBackend;
use crate::change::Event;
use crate::error::corrupt;
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

    async fn get_text(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvText>> {
        let now = self.now();
        let Some(raw) = self.get_raw(CF_KV, &kv_key(tenant, key))? else {
            return Ok(None);
        };
        let (stored, reader) = decode_header(&raw)?;
        if !is_visible(stored.expires_at, now) {
            return Ok(None);
        }
        // The value was stored as `serde_json` writes it (`encode`): that text is the answer.
        let text = String::from_utf8(reader.rest().to_vec()).map_err(|_| corrupt("kv"))?;
        Ok(Some(KvText {
            value: JsonText::stored(text, "kv value")?,
            version: Version(stored.version),
            expires_at: stored.expires_at,
        }))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use p8fs_core::{KvStore, ManualClock};
    use serde_json::json;

    use super::*;
    use crate::RocksOptions;

    #[tokio::test]
    async fn text_reads_answer_what_reads_answer_written_out() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let db = RocksBackend::open(dir.path(), clock.clone(), RocksOptions::default()).unwrap();
        let tenant = TenantId::new("t").unwrap();
        let values = [
            json!({"kind": "note", "n": 42, "tags": ["a", "b"], "z": {"y": null, "x": true}}),
            json!([
                1.5,
                -0.0,
                1e300,
                0.1,
                u64::MAX,
                i64::MIN,
                9_007_199_254_740_993_u64
            ]),
            json!("\u{e9}\u{1f600} \"quoted\" \\ \n\t\u{1}\u{7f}"),
            json!(null),
            json!({}),
        ];
        for (i, value) in values.into_iter().enumerate() {
            let key = Key::new(format!("k{i}")).unwrap();
            let ttl = (i % 2 == 0).then(|| Ttl::from_millis(10).unwrap());
            db.put(&tenant, &key, &JsonValue::new(value).unwrap(), ttl)
                .await
                .unwrap();
            let entry = db.get(&tenant, &key).await.unwrap().unwrap();
            let text = db.get_text(&tenant, &key).await.unwrap().unwrap();
            assert_eq!(text, KvText::from(entry.clone()));
            assert_eq!(text.value.parse().unwrap(), entry.value);
        }
        assert_eq!(
            db.get_text(&tenant, &Key::new("none").unwrap())
                .await
                .unwrap(),
            None
        );
        clock.advance(10);
        assert_eq!(
            db.get_text(&tenant, &Key::new("k0").unwrap())
                .await
                .unwrap(),
            None
        );
        assert!(
            db.get_text(&tenant, &Key::new("k1").unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_corrupt_stored_value_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let db = RocksBackend::open(dir.path(), clock, RocksOptions::default()).unwrap();
        let tenant = TenantId::new("t").unwrap();
        let key = Key::new("k").unwrap();
        let mut raw = encode(1, None, &JsonValue::new(json!({"a": 1})).unwrap()).unwrap();
        raw.truncate(raw.len() - 1);
        db.db
            .put_cf(db.cf(CF_KV).unwrap(), kv_key(&tenant, &key), &raw)
            .unwrap();
        let err = db.get_text(&tenant, &key).await.unwrap_err();
        assert_eq!(err.kind(), p8fs_core::ErrorKind::Internal);
    }
}
