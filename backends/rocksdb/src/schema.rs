//! Column families, key encoding and record encoding.
//!
//! Keys start with `tenant 0x00`. Tenant ids never contain 0x00 and no other component may
//! (core rejects U+0000), so the tenant prefix keeps tenants apart and, within a tenant, keys
//! sort by the raw bytes of their components, which RocksDB's bytewise comparator preserves.
//!
//! | column family | key                                 | value                                   |
//! |---------------|-------------------------------------|-----------------------------------------|
//! | `kv`          | tenant 0 key                        | version u64, expires i64, JSON          |
//! | `collections` | tenant 0 name                       | dimension u32, metric u8                |
//! | `vectors`     | tenant 0 collection 0 id            | expires i64, f32 × dimension, JSON      |
//! | `nodes`       | tenant 0 id                         | expires i64, label length u32, label, JSON |
//! | `edges_out`   | tenant 0 src 0 rel 0 dst            | expires i64, weight f64, JSON           |
//! | `edges_in`    | tenant 0 dst 0 rel 0 src            | the same record as `edges_out`          |
//! | `meta`        | name                                | store-wide values (version reservation) |
//! | `buckets`     | tenant 0 bucket                     | created_at i64                          |
//! | `objects`     | tenant 0 bucket 0 key               | expires i64, last_modified i64, size u64, etag length u32, etag, segment count u32, (data u64, size u64) × count, attributes JSON |
//! | `blobs`       | tenant 0 data u64                   | state u8 (1 pending, 2 freed), since i64 |
//! | `chunks`      | tenant 0 data u64 index u32         | the chunk's bytes                       |
//! | `uploads`     | tenant 0 bucket 0 upload u64        | initiated i64, expires i64, key length u32, key, attributes JSON |
//! | `uploads_by_key` | tenant 0 bucket 0 key 0 upload u64 | the same record as `uploads`          |
//! | `parts`       | tenant 0 upload u64 number u32      | data u64, size u64, last_modified i64, etag length u32, etag, checksums JSON |
//! | `changes`     | tenant 0 cursor u64                 | at i64, op u8, kind u8, has version u8, [version u64], (length u32, part) × 2, last part |
//! | `change_logs` | tenant                              | head u64, floor u64 (as of the last trim) |
//!
//! Integers are big-endian, f32 and f64 little-endian; an expiry of `i64::MAX` means never.
//! Data ids, upload ids and part numbers are fixed-width and end the key, so a 0x00 byte inside
//! them never splits a component; big-endian keeps their numeric order.
//!
//! A change's subject is stored as [`p8fs_core::Subject::parts`]: the first two parts with their
//! length, the last one (the record's own key or id) as the rest of the value. A tenant's head is
//! its last `changes` key; its `change_logs` record, written only by trimming, holds the last
//! cursor trimmed away and the head at that time, which outlives the changes (see
//! [`crate::change`]).
//!
//! A data blob has a `blobs` record only while it is pending (begun, not yet committed) or freed
//! (its object or part was replaced, deleted, expired or aborted); a blob that a committed object
//! or a stored part references has none. The reaper deletes a blob's chunks with one range
//! deletion over `tenant 0 data`.

use p8fs_core::{Error, Result, Timestamp};

use crate::error::corrupt;

pub(crate) const CF_KV: &str = "kv";
pub(crate) const CF_COLLECTIONS: &str = "collections";
pub(crate) const CF_VECTORS: &str = "vectors";
pub(crate) const CF_NODES: &str = "nodes";
pub(crate) const CF_EDGES_OUT: &str = "edges_out";
pub(crate) const CF_EDGES_IN: &str = "edges_in";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_BUCKETS: &str = "buckets";
pub(crate) const CF_OBJECTS: &str = "objects";
pub(crate) const CF_BLOBS: &str = "blobs";
pub(crate) const CF_CHUNKS: &str = "chunks";
pub(crate) const CF_UPLOADS: &str = "uploads";
pub(crate) const CF_UPLOADS_BY_KEY: &str = "uploads_by_key";
pub(crate) const CF_PARTS: &str = "parts";
pub(crate) const CF_CHANGES: &str = "changes";
pub(crate) const CF_CHANGE_LOGS: &str = "change_logs";

/// Every column family. Opening a database creates the ones it lacks, so a database written
/// before a family existed opens with it empty.
pub(crate) const ALL_CFS: [&str; 16] = [
    CF_KV,
    CF_COLLECTIONS,
    CF_VECTORS,
    CF_NODES,
    CF_EDGES_OUT,
    CF_EDGES_IN,
    CF_META,
    CF_BUCKETS,
    CF_OBJECTS,
    CF_BLOBS,
    CF_CHUNKS,
    CF_UPLOADS,
    CF_UPLOADS_BY_KEY,
    CF_PARTS,
    CF_CHANGES,
    CF_CHANGE_LOGS,
];

/// The change log's families, tuned for appending and reading in key order.
pub(crate) const LOG_CFS: [&str; 2] = [CF_CHANGES, CF_CHANGE_LOGS];

/// The `meta` key holding the end of the reserved version range.
pub(crate) const META_VERSION_RESERVED: &[u8] = b"version_reserved";

const NEVER: i64 = i64::MAX;

/// Joins components with 0x00 separators: `a 0 b 0 c`.
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part);
    }
    out
}

/// The prefix shared by every key that begins with `parts`: `a 0 b 0`.
pub(crate) fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = key(parts);
    out.push(0);
    out
}

/// Splits an encoded key into its 0x00-separated components.
pub(crate) fn split(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    key.split(|b| *b == 0)
}

/// The UTF-8 text of a key component.
pub(crate) fn text(bytes: &[u8], what: &'static str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(what))
}

pub(crate) fn encode_expiry(expires_at: Option<Timestamp>) -> i64 {
    expires_at.unwrap_or(NEVER)
}

pub(crate) fn decode_expiry(raw: i64) -> Option<Timestamp> {
    (raw != NEVER).then_some(raw)
}

/// A cursor over an encoded record.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or_else(|| corrupt(self.what))?;
        self.buf = rest;
        Ok(*head)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    pub(crate) fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        let bytes = n.checked_mul(4).ok_or_else(|| corrupt(self.what))?;
        if self.buf.len() < bytes {
            return Err(corrupt(self.what));
        }
        let (head, rest) = self.buf.split_at(bytes);
        self.buf = rest;
        Ok(head
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(corrupt(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The remaining bytes.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    /// The remaining bytes, parsed as JSON.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        serde_json::from_slice(self.buf).map_err(|_| corrupt(self.what))
    }
}

/// Serialises JSON for storage.
pub(crate) fn json_bytes<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    serde_json::to_writer(out, value)
        .map_err(|e| Error::internal("cannot serialise JSON", Some(Box::new(e) as _)))
}
