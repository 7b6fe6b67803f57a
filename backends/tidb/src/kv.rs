//! Key-value records in `p8fs_kv`.
//!
//! Atomicity: `put`, `put_if_absent` and `compare_and_swap` each run one transaction that locks
//! the key's row (`SELECT ... FOR UPDATE`), decides from what it read, takes a version and writes.
//! Writers of an existing row queue on its lock, so concurrent compare-and-swap callers are
//! serialised and exactly one sees the expected version. When the row is absent there is nothing
//! to lock at `READ COMMITTED`: writers then `INSERT`, the unique key lets exactly one through,
//! and the others fail with a duplicate key, roll back and run again (see `transaction!`), now
//! finding (and locking) the winner's row.
//!
//! Versions come from the `NOCACHE` sequence `p8fs_version_seq`, taken only after the row lock is
//! held (or, for an absent row, inside the transaction whose `INSERT` must win): a later write to
//! a key therefore always takes a later number than the write it follows, across delete, expiry
//! and re-creation, and across every gateway sharing the database.
//!
//! Every write that happened appends its change (`change.rs`) as the last step of the same
//! transaction: a `Put` with the new version, or a `Delete` when `delete` removed a visible
//! record. `delete` is a transaction too, so the row it removed and its change commit together.

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, Value};

use p8fs_core::kv::KvPage;
use p8fs_core::{
    ChangeEvent, Error, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Limit, Page,
    Resource, Result, Subject, TenantId, Timestamp, Ttl, Version, expires_at, is_visible,
};

use crate::error::{classify, corrupt};
use crate::schema::{self, bytes};
use crate::{TidbBackend, TxError, sql, transaction};

/// The version and expiry of a locked row.
struct Locked {
    version: u64,
    expires_at: Option<Timestamp>,
}

/// Locks the key's row, if it exists, and reads its version and expiry.
async fn lock(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    key: &Key,
) -> Result<Option<Locked>, TxError> {
    let row: Option<Row> = tx
        .exec_first(sql::KV_LOCK, (bytes(tenant.as_str()), bytes(key.as_str())))
        .await?;
    match row {
        Some(mut row) => Ok(Some(Locked {
            version: schema::column(&mut row, 0, "kv")?,
            expires_at: schema::expiry(&mut row, 1, "kv")?,
        })),
        None => Ok(None),
    }
}

/// The next store-wide version.
pub(crate) async fn next_version(tx: &mut Transaction<'_>) -> Result<u64, TxError> {
    let version: Option<u64> = tx.query_first(sql::NEXT_VERSION).await?;
    Ok(version.ok_or_else(|| corrupt("version sequence"))?)
}

/// Writes a new version of the record: `UPDATE` of the locked row when `present`, else `INSERT`
/// (which fails with a duplicate key if a concurrent writer created the row first).
async fn write(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    key: &Key,
    value: &JsonValue,
    ttl: Option<Ttl>,
    now: Timestamp,
    present: bool,
) -> Result<Version, TxError> {
    let version = next_version(tx).await?;
    let text = schema::json_text(value.get())?;
    let expires = expires_at(now, ttl);
    if present {
        tx.exec_drop(
            sql::KV_UPDATE,
            (
                text,
                version,
                expires,
                bytes(tenant.as_str()),
                bytes(key.as_str()),
            ),
        )
        .await?;
    } else {
        tx.exec_drop(
            sql::KV_INSERT,
            (
                bytes(tenant.as_str()),
                bytes(key.as_str()),
                text,
                version,
                expires,
            ),
        )
        .await?;
    }
    Ok(Version(version))
}

/// The change a write of `key` at `version` appends.
fn put_event(key: &Key, version: Version) -> [ChangeEvent; 1] {
    [ChangeEvent::put(
        Subject::Kv { key: key.clone() },
        Some(version),
    )]
}

/// A `(key, value, version, expires_at)` row.
fn entry(mut row: Row) -> Result<KvEntry> {
    Ok(KvEntry {
        key: Key::new(schema::text(&mut row, 0, "kv key")?).map_err(|_| corrupt("kv key"))?,
        value: schema::json(&mut row, 1, "kv value")?,
        version: Version(schema::column(&mut row, 2, "kv version")?),
        expires_at: schema::expiry(&mut row, 3, "kv expiry")?,
    })
}

/// The JSON path `$.a.b` for a dot path whose segments are plain identifiers, which every server
/// reads the same way; `None` for anything else (quoting rules differ between servers).
fn simple_json_path(path: &JsonPath) -> Option<String> {
    let mut out = String::from("$");
    for segment in path.segments() {
        let mut chars = segment.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        out.push('.');
        out.push_str(segment);
    }
    Some(out)
}

/// The exclusive upper bound of keys starting with `prefix`: no UTF-8 text contains 0xFF, so
/// every such key sorts below `prefix 0xFF`.
fn prefix_end(prefix: &str) -> Value {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xFF);
    Value::Bytes(end)
}

impl TidbBackend {
    async fn scan_page(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let params = vec![
            bytes(tenant.as_str()),
            bytes(prefix.as_str()),
            prefix_end(prefix.as_str()),
            bytes(start_after.map_or("", Key::as_str)),
            Value::from(self.now()),
            Value::from(limit.get() as u64 + 1),
        ];
        self.kv_page(sql::KV_SCAN_PAGE, params, limit).await
    }

    async fn kv_page(&self, statement: &str, params: Vec<Value>, limit: Limit) -> Result<KvPage> {
        let rows: Vec<Row> = self
            .conn()
            .await?
            .exec(statement, params)
            .await
            .map_err(classify)?;
        let items = rows.into_iter().map(entry).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.key.clone()))
    }
}

#[async_trait]
impl KvStore for TidbBackend {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                sql::KV_GET,
                (bytes(tenant.as_str()), bytes(key.as_str()), self.now()),
            )
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Ok(None);
        };
        Ok(Some(KvEntry {
            key: key.clone(),
            value: schema::json(&mut row, 0, "kv value")?,
            version: Version(schema::column(&mut row, 1, "kv version")?),
            expires_at: schema::expiry(&mut row, 2, "kv expiry")?,
        }))
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        transaction!(self, tx => {
            let now = self.now();
            let present = lock(&mut tx, tenant, key).await?.is_some();
            let version = write(&mut tx, tenant, key, value, ttl, now, present).await?;
            self.append(&mut tx, tenant, &put_event(key, version)).await?;
            version
        })
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        transaction!(self, tx => {
            let now = self.now();
            let locked = lock(&mut tx, tenant, key).await?;
            if locked.as_ref().is_some_and(|row| is_visible(row.expires_at, now)) {
                return Err(Error::already_exists(Resource::Key, key).into());
            }
            let version = write(&mut tx, tenant, key, value, ttl, now, locked.is_some()).await?;
            self.append(&mut tx, tenant, &put_event(key, version)).await?;
            version
        })
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        transaction!(self, tx => {
            let now = self.now();
            match lock(&mut tx, tenant, key).await? {
                Some(row) if is_visible(row.expires_at, now) => {
                    if row.version != expected.0 {
                        return Err(Error::conflict(format!(
                            "key {key} is at version {}, not {expected}",
                            row.version
                        ))
                        .into());
                    }
                    let version = write(&mut tx, tenant, key, value, ttl, now, true).await?;
                    self.append(&mut tx, tenant, &put_event(key, version)).await?;
                    version
                }
                _ => return Err(Error::not_found(Resource::Key, key).into()),
            }
        })
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        transaction!(self, tx => {
            tx.exec_drop(
                sql::KV_DELETE,
                (bytes(tenant.as_str()), bytes(key.as_str()), self.now()),
            )
            .await?;
            let deleted = tx.affected_rows() > 0;
            if deleted {
                let event = ChangeEvent::delete(Subject::Kv { key: key.clone() });
                self.append(&mut tx, tenant, &[event]).await?;
            }
            deleted
        })
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        self.scan_page(tenant, prefix, start_after, limit).await
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        path: &JsonPath,
        operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        // Only a string at a plain path is narrowed in SQL, by a predicate that is a superset of
        // the contract's equality (see `sql::KV_FIND_STRING_PAGE`). Numbers, booleans, null and
        // composite values compare differently on MySQL, MariaDB and TiDB, so for those every
        // visible record is a candidate and core decides.
        match (operand.get().as_str(), simple_json_path(path)) {
            (Some(text), Some(json_path)) => {
                let params = vec![
                    bytes(tenant.as_str()),
                    bytes(start_after.map_or("", Key::as_str)),
                    Value::from(self.now()),
                    Value::from(json_path),
                    Value::from(text),
                    Value::from(limit.get() as u64 + 1),
                ];
                self.kv_page(sql::KV_FIND_STRING_PAGE, params, limit).await
            }
            _ => {
                self.scan_page(tenant, &KeyPrefix::all(), start_after, limit)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_identifier_paths_are_pushed_down() {
        let path = |p: &str| JsonPath::new(p).unwrap();
        assert_eq!(simple_json_path(&path("a")).as_deref(), Some("$.a"));
        assert_eq!(
            simple_json_path(&path("user.name_1")).as_deref(),
            Some("$.user.name_1")
        );
        assert_eq!(simple_json_path(&path("a b")), None);
        assert_eq!(simple_json_path(&path("0")), None);
        assert_eq!(simple_json_path(&path("é")), None);
        assert_eq!(simple_json_path(&path("a\"")), None);
    }
}
