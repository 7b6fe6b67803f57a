//! The change log (`p8fs_core::change`): each write appends its changes to the same
//! `WriteBatch` as the write itself; this module allocates their cursors, and reads and trims
//! the log.
//!
//! Storage: a change is a `changes` record keyed `tenant 0 cursor`, so a tenant's log is one
//! ascending key range and its head (newest cursor) is its last key. Trimming writes the tenant's
//! `change_logs` record, its floor (last trimmed cursor) and the head at the time, so a reopened
//! database keeps the floor and resumes at head + 1 even when trimming left no change behind:
//! the head is the larger of the last key and the stored head (see [`crate::schema`]). Appending
//! therefore adds exactly one record per change to the write's batch; rewriting a position
//! record in every batch as well cost a third of key-value put throughput.
//!
//! Dense cursors in commit order: each tenant has a log lock, held from allocating the cursors
//! until the batch is written, so cursors are committed in the order they are handed out and a
//! failed write hands back nothing (the head in memory moves only after the write succeeds). The
//! log lock is always the innermost lock a write takes: writers take their own locks (key
//! stripes, the graph lock, a collection's index, bucket locks) first. The head and floor are
//! kept in memory, loaded the first time a tenant is touched (its `change_logs` record and its
//! last change), so appending reads nothing from the database.
//!
//! Reading: a page's iterator is created while the log lock is held, and RocksDB iterators read
//! one point in time, so the page agrees with the head and floor it was checked against even when
//! a trim or a write commits while it is read. Trimming deletes under the log lock for the same
//! reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rocksdb::{ReadOptions, WriteBatch};

use p8fs_core::change::check_cursor;
use p8fs_core::{
    BucketName, Change, ChangeCursor, ChangeKind, ChangeLog, ChangeOp, ChangePage, CollectionName,
    Error, Key, Limit, NodeId, ObjectKey, RecordId, Rel, Result, Subject, TenantId, Timestamp,
    Version,
};

use crate::RocksBackend;
use crate::error::{classify, corrupt};
use crate::schema::{self, CF_CHANGE_LOGS, CF_CHANGES, Reader};

/// A change a write appends. It borrows its subject from the write's own arguments, so the hot
/// path copies nothing it does not store. The parts follow [`Subject::parts`].
pub(crate) struct Event<'a> {
    op: ChangeOp,
    kind: ChangeKind,
    parts: [&'a str; 3],
    version: Option<Version>,
}

impl<'a> Event<'a> {
    fn new(op: ChangeOp, kind: ChangeKind, parts: [&'a str; 3]) -> Self {
        Self {
            op,
            kind,
            parts,
            version: None,
        }
    }

    /// A key-value `Put` of the record's new version.
    pub(crate) fn kv_put(key: &'a Key, version: Version) -> Self {
        Self {
            version: Some(version),
            ..Self::new(ChangeOp::Put, ChangeKind::Kv, ["", "", key.as_str()])
        }
    }

    pub(crate) fn kv_delete(key: &'a Key) -> Self {
        Self::new(ChangeOp::Delete, ChangeKind::Kv, ["", "", key.as_str()])
    }

    pub(crate) fn collection(op: ChangeOp, name: &'a CollectionName) -> Self {
        Self::new(op, ChangeKind::Collection, ["", "", name.as_str()])
    }

    pub(crate) fn vector(op: ChangeOp, collection: &'a CollectionName, id: &'a RecordId) -> Self {
        Self::new(
            op,
            ChangeKind::Vector,
            ["", collection.as_str(), id.as_str()],
        )
    }

    pub(crate) fn node(op: ChangeOp, id: &'a NodeId) -> Self {
        Self::new(op, ChangeKind::Node, ["", "", id.as_str()])
    }

    pub(crate) fn edge(op: ChangeOp, src: &'a NodeId, rel: &'a Rel, dst: &'a NodeId) -> Self {
        Self::new(
            op,
            ChangeKind::Edge,
            [src.as_str(), rel.as_str(), dst.as_str()],
        )
    }

    pub(crate) fn bucket(op: ChangeOp, name: &'a BucketName) -> Self {
        Self::new(op, ChangeKind::Bucket, ["", "", name.as_str()])
    }

    pub(crate) fn object(op: ChangeOp, bucket: &'a BucketName, key: &'a ObjectKey) -> Self {
        Self::new(op, ChangeKind::Object, ["", bucket.as_str(), key.as_str()])
    }
}

/// The stored codes of operations and kinds. They are part of the file format: never renumber.
fn op_code(op: ChangeOp) -> u8 {
    match op {
        ChangeOp::Put => 0,
        ChangeOp::Delete => 1,
    }
}

fn op_from(code: u8) -> Result<ChangeOp> {
    match code {
        0 => Ok(ChangeOp::Put),
        1 => Ok(ChangeOp::Delete),
        _ => Err(corrupt("change")),
    }
}

fn kind_code(kind: ChangeKind) -> u8 {
    match kind {
        ChangeKind::Kv => 0,
        ChangeKind::Collection => 1,
        ChangeKind::Vector => 2,
        ChangeKind::Node => 3,
        ChangeKind::Edge => 4,
        ChangeKind::Bucket => 5,
        ChangeKind::Object => 6,
    }
}

fn kind_from(code: u8) -> Result<ChangeKind> {
    Ok(match code {
        0 => ChangeKind::Kv,
        1 => ChangeKind::Collection,
        2 => ChangeKind::Vector,
        3 => ChangeKind::Node,
        4 => ChangeKind::Edge,
        5 => ChangeKind::Bucket,
        6 => ChangeKind::Object,
        _ => return Err(corrupt("change")),
    })
}

/// `tenant 0 cursor`.
fn change_key(tenant: &[u8], cursor: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(tenant.len() + 9);
    out.extend_from_slice(tenant);
    out.push(0);
    out.extend_from_slice(&cursor.to_be_bytes());
    out
}

/// The end (exclusive) of `tenant`'s changes up to `last`.
fn change_end(tenant: &[u8], last: u64) -> Vec<u8> {
    match last.checked_add(1) {
        Some(next) => change_key(tenant, next),
        None => {
            let mut out = tenant.to_vec();
            out.push(1);
            out
        }
    }
}

/// The cursor ending a `changes` key under `prefix` (`tenant 0`).
fn key_cursor(prefix: &[u8], key: &[u8]) -> Result<u64> {
    key.strip_prefix(prefix)
        .and_then(|rest| <[u8; 8]>::try_from(rest).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| corrupt("change key"))
}

fn encode_change(at: Timestamp, event: &Event<'_>) -> Vec<u8> {
    let [a, b, c] = event.parts;
    let mut out = Vec::with_capacity(27 + a.len() + b.len() + c.len());
    out.extend_from_slice(&at.to_be_bytes());
    out.push(op_code(event.op));
    out.push(kind_code(event.kind));
    match event.version {
        Some(version) => {
            out.push(1);
            out.extend_from_slice(&version.0.to_be_bytes());
        }
        None => out.push(0),
    }
    for part in [a, b] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(c.as_bytes());
    out
}

/// The commit time of a stored change, without decoding the rest.
fn change_at(raw: &[u8]) -> Result<Timestamp> {
    Reader::new(raw, "change").i64()
}

fn decode_change(cursor: u64, raw: &[u8]) -> Result<Change> {
    let mut reader = Reader::new(raw, "change");
    let at = reader.i64()?;
    let op = op_from(reader.u8()?)?;
    let kind = kind_from(reader.u8()?)?;
    let version = match reader.u8()? {
        0 => None,
        1 => Some(Version(reader.u64()?)),
        _ => return Err(corrupt("change")),
    };
    let a_len = reader.u32()? as usize;
    let a = std::str::from_utf8(reader.bytes(a_len)?).map_err(|_| corrupt("change"))?;
    let b_len = reader.u32()? as usize;
    let b = std::str::from_utf8(reader.bytes(b_len)?).map_err(|_| corrupt("change"))?;
    let c = std::str::from_utf8(reader.rest()).map_err(|_| corrupt("change"))?;
    let subject = Subject::from_parts(kind, [a, b, c]).map_err(|_| corrupt("change"))?;
    Ok(Change {
        cursor: ChangeCursor(cursor),
        at,
        op,
        subject,
        version,
    })
}

/// The cursor of `tenant`'s last change, if it has one, moving `iter` there.
fn last_cursor(iter: &mut rocksdb::DBRawIterator<'_>, tenant: &[u8]) -> Result<Option<u64>> {
    let prefix = schema::prefix(&[tenant]);
    iter.seek_for_prev(change_key(tenant, u64::MAX));
    if !iter.valid() {
        iter.status().map_err(classify)?;
        return Ok(None);
    }
    match iter.key() {
        Some(key) if key.starts_with(&prefix) => Ok(Some(key_cursor(&prefix, key)?)),
        _ => Ok(None),
    }
}

/// One tenant's log position: the cursor of its newest change and the last one trimmed away.
#[derive(Clone, Copy, Default)]
struct LogState {
    head: u64,
    floor: u64,
}

fn encode_log(state: LogState) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&state.head.to_be_bytes());
    out[8..].copy_from_slice(&state.floor.to_be_bytes());
    out
}

fn decode_log(raw: &[u8]) -> Result<LogState> {
    let mut reader = Reader::new(raw, "change log");
    Ok(LogState {
        head: reader.u64()?,
        floor: reader.u64()?,
    })
}

/// Every tenant's log lock and position, loaded on first use.
#[derive(Default)]
pub(crate) struct Logs {
    map: RwLock<HashMap<TenantId, Arc<Mutex<LogState>>>>,
}

impl RocksBackend {
    /// The log lock of `tenant`, loading its position from the database the first time.
    fn log(&self, tenant: &TenantId) -> Result<Arc<Mutex<LogState>>> {
        if let Some(log) = self.logs.map.read().get(tenant) {
            return Ok(log.clone());
        }
        let mut map = self.logs.map.write();
        if let Some(log) = map.get(tenant) {
            return Ok(log.clone());
        }
        let mut state = match self.get_raw(CF_CHANGE_LOGS, tenant.as_bytes())? {
            Some(raw) => decode_log(&raw)?,
            None => LogState::default(),
        };
        let mut iter = self.db.raw_iterator_cf(self.cf(CF_CHANGES)?);
        if let Some(last) = last_cursor(&mut iter, tenant.as_bytes())? {
            state.head = state.head.max(last);
        }
        let log = Arc::new(Mutex::new(state));
        map.insert(tenant.clone(), log.clone());
        Ok(log)
    }

    /// Writes `batch` with `events` appended to `tenant`'s log, in that order, as one atomic
    /// write. With no events it is a plain write: a write that changed nothing visible appends
    /// nothing. The caller holds its own locks; this takes the tenant's log lock last.
    pub(crate) fn write_changes(
        &self,
        tenant: &TenantId,
        mut batch: WriteBatch,
        events: &[Event<'_>],
    ) -> Result<()> {
        if events.is_empty() {
            return self.write(batch);
        }
        let changes = self.cf(CF_CHANGES)?;
        let log = self.log(tenant)?;
        let mut state = log.lock();
        // Taken under the lock, so commit times never go back along the cursors of a tenant
        // (with a clock that does not), which is what trimming by time relies on.
        let at = self.now();
        let mut head = state.head;
        for event in events {
            head = head
                .checked_add(1)
                .ok_or_else(|| Error::internal("the change log's cursors are exhausted", None))?;
            batch.put_cf(
                changes,
                change_key(tenant.as_bytes(), head),
                encode_change(at, event),
            );
        }
        self.write(batch)?;
        state.head = head;
        Ok(())
    }

    /// Removes `tenant`'s changes committed before `before` (a prefix of what remains) and
    /// returns how many.
    fn trim_tenant(&self, tenant: &TenantId, before: Timestamp) -> Result<u64> {
        let log = self.log(tenant)?;
        let LogState { head, floor } = *log.lock();
        if head == floor {
            return Ok(0);
        }
        // Found without the lock: appends only add cursors after `head`, and a concurrent trim
        // only raises the floor, which is re-read below.
        let prefix = schema::prefix(&[tenant.as_bytes()]);
        let mut last = floor;
        self.scan_raw(
            CF_CHANGES,
            &prefix,
            Some(&change_key(tenant.as_bytes(), floor + 1)),
            |key, raw| {
                let cursor = key_cursor(&prefix, key)?;
                if cursor > head || change_at(raw)? >= before {
                    return Ok(false);
                }
                last = cursor;
                Ok(true)
            },
        )?;
        let mut state = log.lock();
        if last <= state.floor {
            return Ok(0);
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            self.cf(CF_CHANGES)?,
            change_key(tenant.as_bytes(), state.floor + 1),
            change_end(tenant.as_bytes(), last),
        );
        let next = LogState {
            head: state.head,
            floor: last,
        };
        batch.put_cf(
            self.cf(CF_CHANGE_LOGS)?,
            tenant.as_bytes(),
            encode_log(next),
        );
        self.write(batch)?;
        let removed = last - state.floor;
        *state = next;
        Ok(removed)
    }

    /// Every tenant with a log (a change, or a `change_logs` record left by trimming),
    /// ascending by raw bytes, with its committed head.
    fn stored_heads(&self) -> Result<Vec<(TenantId, u64)>> {
        // Both families read at one point in time: a trim that removed a tenant's last changes
        // is seen with the position record it wrote, or not at all.
        let snapshot = self.db.snapshot();
        let mut heads: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut iter = snapshot.raw_iterator_cf(self.cf(CF_CHANGE_LOGS)?);
        iter.seek_to_first();
        while iter.valid() {
            let (Some(key), Some(raw)) = (iter.key(), iter.value()) else {
                break;
            };
            heads.insert(key.to_vec(), decode_log(raw)?.head);
            iter.next();
        }
        iter.status().map_err(classify)?;
        // One seek to each tenant's last change, one past it: the work is per tenant, not per
        // change.
        let mut iter = snapshot.raw_iterator_cf(self.cf(CF_CHANGES)?);
        iter.seek_to_first();
        while iter.valid() {
            let Some(key) = iter.key() else {
                break;
            };
            let tenant = schema::split(key).next().unwrap_or_default().to_vec();
            let last = last_cursor(&mut iter, &tenant)?.ok_or_else(|| corrupt("change key"))?;
            let head = heads.entry(tenant.clone()).or_default();
            *head = (*head).max(last);
            let mut next = tenant;
            next.push(1);
            iter.seek(&next);
        }
        iter.status().map_err(classify)?;
        heads
            .into_iter()
            .map(|(tenant, head)| {
                let tenant = TenantId::new(schema::text(&tenant, "change key")?)
                    .map_err(|_| corrupt("change key"))?;
                Ok((tenant, head))
            })
            .collect()
    }
}

#[async_trait]
impl ChangeLog for RocksBackend {
    async fn changes(
        &self,
        tenant: &TenantId,
        after: ChangeCursor,
        limit: Limit,
    ) -> Result<ChangePage> {
        let prefix = schema::prefix(&[tenant.as_bytes()]);
        let log = self.log(tenant)?;
        let (head, mut iter) = {
            let state = log.lock();
            check_cursor(after, ChangeCursor(state.floor), ChangeCursor(state.head))?;
            let mut options = ReadOptions::default();
            options.set_iterate_upper_bound(change_end(tenant.as_bytes(), u64::MAX));
            // Created under the lock: the iterator's point in time has exactly the changes
            // up to `head` and none trimmed beyond `floor`.
            let iter = self.db.raw_iterator_cf_opt(self.cf(CF_CHANGES)?, options);
            (state.head, iter)
        };
        let wanted = (head - after.0).min(limit.get() as u64);
        let mut changes = Vec::with_capacity(wanted as usize);
        iter.seek(change_key(tenant.as_bytes(), after.0.saturating_add(1)));
        while (changes.len() as u64) < wanted && iter.valid() {
            let (Some(key), Some(raw)) = (iter.key(), iter.value()) else {
                break;
            };
            let cursor = key_cursor(&prefix, key)?;
            // Cursors are dense: anything but the next one means the log is damaged.
            if cursor != after.0 + 1 + changes.len() as u64 {
                return Err(corrupt("change log (a cursor is missing)"));
            }
            changes.push(decode_change(cursor, raw)?);
            iter.next();
        }
        iter.status().map_err(classify)?;
        if (changes.len() as u64) < wanted {
            return Err(corrupt("change log (changes before the head are missing)"));
        }
        let next = changes.last().map_or(after, |change| change.cursor);
        Ok(ChangePage {
            changes,
            next,
            head: ChangeCursor(head),
        })
    }

    async fn change_heads(&self) -> Result<Vec<(TenantId, ChangeCursor)>> {
        // Read from the database, which holds exactly what has committed.
        Ok(self
            .stored_heads()?
            .into_iter()
            .map(|(tenant, head)| (tenant, ChangeCursor(head)))
            .collect())
    }

    async fn trim_changes(&self, before: Timestamp) -> Result<u64> {
        let mut removed = 0;
        for (tenant, _) in self.stored_heads()? {
            removed += self.trim_tenant(&tenant, before)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_changes_decode_to_what_was_appended() {
        let key = Key::new("k").unwrap();
        let (src, rel, dst) = (
            NodeId::new("a").unwrap(),
            Rel::new("r").unwrap(),
            NodeId::new("b").unwrap(),
        );
        let bucket = BucketName::new("bucket").unwrap();
        let object = ObjectKey::new("dir/file").unwrap();
        let collection = CollectionName::new("c").unwrap();
        let id = RecordId::new("v").unwrap();
        let cases = [
            (
                Event::kv_put(&key, Version(7)),
                Subject::Kv { key: key.clone() },
            ),
            (Event::kv_delete(&key), Subject::Kv { key: key.clone() }),
            (
                Event::collection(ChangeOp::Put, &collection),
                Subject::Collection {
                    name: collection.clone(),
                },
            ),
            (
                Event::vector(ChangeOp::Delete, &collection, &id),
                Subject::Vector {
                    collection: collection.clone(),
                    id: id.clone(),
                },
            ),
            (
                Event::node(ChangeOp::Put, &src),
                Subject::Node { id: src.clone() },
            ),
            (
                Event::edge(ChangeOp::Delete, &src, &rel, &dst),
                Subject::Edge {
                    src: src.clone(),
                    rel: rel.clone(),
                    dst: dst.clone(),
                },
            ),
            (
                Event::bucket(ChangeOp::Put, &bucket),
                Subject::Bucket {
                    name: bucket.clone(),
                },
            ),
            (
                Event::object(ChangeOp::Put, &bucket, &object),
                Subject::Object {
                    bucket: bucket.clone(),
                    key: object.clone(),
                },
            ),
        ];
        for (cursor, (event, subject)) in cases.into_iter().enumerate() {
            assert_eq!(event.parts, subject.parts());
            let change = decode_change(cursor as u64, &encode_change(-5, &event)).unwrap();
            assert_eq!(
                change,
                Change {
                    cursor: ChangeCursor(cursor as u64),
                    at: -5,
                    op: event.op,
                    subject,
                    version: event.version,
                }
            );
        }
    }

    #[test]
    fn damaged_changes_are_internal_errors() {
        let key = Key::new("k").unwrap();
        let raw = encode_change(1, &Event::kv_put(&key, Version(1)));
        for len in 0..raw.len() - 1 {
            assert!(decode_change(1, &raw[..len]).is_err(), "{len} bytes");
        }
        let mut bad_kind = raw.clone();
        bad_kind[9] = 99;
        assert!(decode_change(1, &bad_kind).is_err());
    }
}
