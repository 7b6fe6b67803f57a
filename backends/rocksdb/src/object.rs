//! Objects (S3 semantics): buckets, object records, data blobs and their chunks, multipart
//! uploads and their parts, each kind in its column family (see [`crate::schema`]).
//!
//! Atomicity: a write holds the lock stripes of every key it decides on — the object key, the
//! pending blobs it commits, the upload — taken together in stripe order, while it reads,
//! decides and writes one `WriteBatch`. Writes addressing a bucket also hold the bucket's stripe
//! shared, and deleting a bucket holds it exclusively, so nothing appears in a bucket while it is
//! being deleted. Reads take no lock: each record is written whole, so a reader sees it before
//! or after a write, never a mix. Bucket and object writes append their changes in their batch
//! (see [`crate::change`]); multipart uploads, parts and blobs append none until an upload is
//! completed, and neither do the reaper, purge or the removal of expired objects.
//!
//! A blob's life: `begin_data` writes its pending record; the write that commits it (an object or
//! a part) removes the record in the same batch; the write that replaces, deletes or expires what
//! references it writes a freed record; the reaper deletes the chunks with the record. Only a
//! holder of the blob's stripe moves it out of pending, and a committed blob changes only under
//! the lock of the object or upload that references it, so a blob is never both referenced and
//! reaped.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::{RwLockReadGuard, RwLockWriteGuard};
use rocksdb::WriteBatch;

use p8fs_core::object::{MAX_BUCKETS, MAX_STORED_CHUNK_BYTES};
use p8fs_core::{
    BucketInfo, BucketName, ChangeOp, DataId, Error, Limit, ObjectAttributes, ObjectKey,
    ObjectMeta, ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Resource, Result,
    Segment, TenantId, Timestamp, UploadId, UploadInfo, is_visible,
};

use crate::change::Event;
use crate::error::corrupt;
use crate::schema::{
    self, CF_BLOBS, CF_BUCKETS, CF_CHUNKS, CF_OBJECTS, CF_PARTS, CF_UPLOADS, CF_UPLOADS_BY_KEY,
    Reader,
};
use crate::{BUCKET_STRIPES, RocksBackend, stripe};

/// How many records the reaper, purge and bucket deletion handle per scan.
const BATCH: usize = 256;

const PENDING: u8 = 1;
const FREED: u8 = 2;

// ---- keys ----

fn bucket_key(tenant: &TenantId, bucket: &BucketName) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), bucket.as_bytes()])
}

fn object_key(tenant: &TenantId, bucket: &BucketName, key: &[u8]) -> Vec<u8> {
    schema::key(&[tenant.as_bytes(), bucket.as_bytes(), key])
}

/// `tenant 0 data`: the `blobs` key, and the prefix of the blob's chunks.
fn blob_key(tenant: &[u8], data: DataId) -> Vec<u8> {
    let mut out = schema::prefix(&[tenant]);
    out.extend_from_slice(&data.0.to_be_bytes());
    out
}

fn chunk_key(tenant: &TenantId, data: DataId, index: u32) -> Vec<u8> {
    let mut out = blob_key(tenant.as_bytes(), data);
    out.extend_from_slice(&index.to_be_bytes());
    out
}

/// The end (exclusive) of the chunk keys of the blob whose key is `blob`.
fn chunks_end(blob: &[u8]) -> Vec<u8> {
    let mut out = blob.to_vec();
    out.extend_from_slice(&[0xFF; 5]);
    out
}

fn upload_key(tenant: &[u8], bucket: &[u8], upload: UploadId) -> Vec<u8> {
    let mut out = schema::prefix(&[tenant, bucket]);
    out.extend_from_slice(&upload.0.to_be_bytes());
    out
}

fn upload_by_key_key(tenant: &[u8], bucket: &[u8], key: &[u8], upload: UploadId) -> Vec<u8> {
    let mut out = schema::prefix(&[tenant, bucket, key]);
    out.extend_from_slice(&upload.0.to_be_bytes());
    out
}

fn parts_prefix(tenant: &[u8], upload: UploadId) -> Vec<u8> {
    let mut out = schema::prefix(&[tenant]);
    out.extend_from_slice(&upload.0.to_be_bytes());
    out
}

fn part_key(tenant: &[u8], upload: UploadId, number: u32) -> Vec<u8> {
    let mut out = parts_prefix(tenant, upload);
    out.extend_from_slice(&number.to_be_bytes());
    out
}

/// The smallest key after `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut out = key.to_vec();
    out.push(0);
    out
}

/// The tenant of a key (its bytes up to the first 0x00) and the rest after the separator.
fn split_tenant(key: &[u8]) -> Result<(&[u8], &[u8])> {
    let at = key
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| corrupt("object key"))?;
    Ok((&key[..at], &key[at + 1..]))
}

/// The big-endian u64 ending a key.
fn trailing_u64(key: &[u8]) -> Result<u64> {
    let raw = key.last_chunk::<8>().ok_or_else(|| corrupt("object key"))?;
    Ok(u64::from_be_bytes(*raw))
}

// ---- records ----

fn encode_object(meta: &ObjectMeta) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + meta.etag.len() + 16 * meta.segments.len());
    out.extend_from_slice(&schema::encode_expiry(meta.expires_at).to_be_bytes());
    out.extend_from_slice(&meta.last_modified.to_be_bytes());
    out.extend_from_slice(&meta.size.to_be_bytes());
    out.extend_from_slice(&(meta.etag.len() as u32).to_be_bytes());
    out.extend_from_slice(meta.etag.as_bytes());
    out.extend_from_slice(&(meta.segments.len() as u32).to_be_bytes());
    for segment in &meta.segments {
        out.extend_from_slice(&segment.data.0.to_be_bytes());
        out.extend_from_slice(&segment.size.to_be_bytes());
    }
    schema::json_bytes(&meta.attributes, &mut out)?;
    Ok(out)
}

/// An `objects` value without its attributes, which stay in `rest` until asked for.
struct StoredObject<'a> {
    expires_at: Option<Timestamp>,
    last_modified: Timestamp,
    size: u64,
    etag: String,
    segments: Vec<Segment>,
    rest: Reader<'a>,
}

fn decode_object_header(raw: &[u8]) -> Result<StoredObject<'_>> {
    let mut reader = Reader::new(raw, "object");
    let expires_at = schema::decode_expiry(reader.i64()?);
    let last_modified = reader.i64()?;
    let size = reader.u64()?;
    let etag_len = reader.u32()? as usize;
    let etag = schema::text(reader.bytes(etag_len)?, "object etag")?;
    let count = reader.u32()? as usize;
    let mut segments = Vec::with_capacity(count.min(raw.len() / 16));
    for _ in 0..count {
        let data = DataId(reader.u64()?);
        let size = reader.u64()?;
        segments.push(Segment { data, size });
    }
    Ok(StoredObject {
        expires_at,
        last_modified,
        size,
        etag,
        segments,
        rest: reader,
    })
}

fn object_expiry(raw: &[u8]) -> Result<Option<Timestamp>> {
    Ok(schema::decode_expiry(Reader::new(raw, "object").i64()?))
}

fn decode_object(key: ObjectKey, raw: &[u8]) -> Result<ObjectMeta> {
    let stored = decode_object_header(raw)?;
    Ok(ObjectMeta {
        key,
        size: stored.size,
        etag: stored.etag,
        last_modified: stored.last_modified,
        expires_at: stored.expires_at,
        attributes: stored.rest.json()?,
        segments: stored.segments,
    })
}

fn encode_blob(state: u8, since: Timestamp) -> [u8; 9] {
    let mut out = [0; 9];
    out[0] = state;
    out[1..].copy_from_slice(&since.to_be_bytes());
    out
}

fn decode_blob(raw: &[u8]) -> Result<(u8, Timestamp)> {
    let mut reader = Reader::new(raw, "blob");
    Ok((reader.u8()?, reader.i64()?))
}

fn encode_upload(
    key: &ObjectKey,
    initiated: Timestamp,
    expires_at: Option<Timestamp>,
    attributes: &ObjectAttributes,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + key.as_bytes().len());
    out.extend_from_slice(&initiated.to_be_bytes());
    out.extend_from_slice(&schema::encode_expiry(expires_at).to_be_bytes());
    out.extend_from_slice(&(key.as_bytes().len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    schema::json_bytes(attributes, &mut out)?;
    Ok(out)
}

fn decode_upload(id: UploadId, raw: &[u8]) -> Result<UploadInfo> {
    let mut reader = Reader::new(raw, "upload");
    let initiated = reader.i64()?;
    let expires_at = schema::decode_expiry(reader.i64()?);
    let key_len = reader.u32()? as usize;
    let key = ObjectKey::new(schema::text(reader.bytes(key_len)?, "upload key")?)?;
    Ok(UploadInfo {
        id,
        key,
        initiated,
        attributes: reader.json()?,
        expires_at,
    })
}

fn encode_part(part: &PartRecord) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + part.etag.len());
    out.extend_from_slice(&part.data.0.to_be_bytes());
    out.extend_from_slice(&part.size.to_be_bytes());
    out.extend_from_slice(&part.last_modified.to_be_bytes());
    out.extend_from_slice(&(part.etag.len() as u32).to_be_bytes());
    out.extend_from_slice(part.etag.as_bytes());
    schema::json_bytes(&part.checksums, &mut out)?;
    Ok(out)
}

fn decode_part(number: u32, raw: &[u8]) -> Result<PartRecord> {
    let mut reader = Reader::new(raw, "part");
    let data = DataId(reader.u64()?);
    let size = reader.u64()?;
    let last_modified = reader.i64()?;
    let etag_len = reader.u32()? as usize;
    let etag = schema::text(reader.bytes(etag_len)?, "part etag")?;
    Ok(PartRecord {
        number,
        data,
        size,
        etag,
        checksums: reader.json()?,
        last_modified,
    })
}

/// The data id of a part record, without decoding the rest.
fn part_data(raw: &[u8]) -> Result<DataId> {
    Ok(DataId(Reader::new(raw, "part").u64()?))
}

/// What becomes of the blobs of an upload's parts when the upload goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PartBlobs {
    /// Freed: reaped after the grace period (abort, bucket deletion).
    Free,
    /// Removed with their chunks now (the reaper, for an abandoned upload).
    Remove,
}

impl RocksBackend {
    fn bucket_shared(&self, raw: &[u8]) -> RwLockReadGuard<'_, ()> {
        self.bucket_locks[stripe(raw, BUCKET_STRIPES)].read()
    }

    fn bucket_exclusive(&self, raw: &[u8]) -> RwLockWriteGuard<'_, ()> {
        self.bucket_locks[stripe(raw, BUCKET_STRIPES)].write()
    }

    /// `NotFound(Bucket)` unless the tenant has the bucket.
    fn require_bucket(&self, raw: &[u8], bucket: &BucketName) -> Result<()> {
        match self.get_raw(CF_BUCKETS, raw)? {
            Some(_) => Ok(()),
            None => Err(Error::not_found(Resource::Bucket, bucket)),
        }
    }

    /// Adds "free these blobs at `now`" to `batch`. The caller holds the lock of the record that
    /// referenced them, which it removes or replaces in the same batch.
    fn free_blobs(
        &self,
        batch: &mut WriteBatch,
        tenant: &[u8],
        blobs: impl IntoIterator<Item = DataId>,
        now: Timestamp,
    ) -> Result<()> {
        let cf = self.cf(CF_BLOBS)?;
        for data in blobs {
            batch.put_cf(cf, blob_key(tenant, data), encode_blob(FREED, now));
        }
        Ok(())
    }

    /// Adds "delete this blob's state record and chunks" to `batch`.
    fn remove_blob(&self, batch: &mut WriteBatch, blob: &[u8]) -> Result<()> {
        batch.delete_cf(self.cf(CF_BLOBS)?, blob);
        batch.delete_range_cf(self.cf(CF_CHUNKS)?, blob, &chunks_end(blob));
        Ok(())
    }

    /// Whether the blob at `blob` is pending.
    fn is_pending(&self, blob: &[u8]) -> Result<bool> {
        match self.get_raw(CF_BLOBS, blob)? {
            Some(raw) => Ok(decode_blob(&raw)?.0 == PENDING),
            None => Ok(false),
        }
    }

    /// The stored parts of an upload, ascending by number.
    fn parts_of(&self, tenant: &[u8], upload: UploadId) -> Result<Vec<PartRecord>> {
        let prefix = parts_prefix(tenant, upload);
        let mut parts = Vec::new();
        self.scan_raw(CF_PARTS, &prefix, None, |key, raw| {
            let number = key[prefix.len()..]
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt("part key"))?;
            parts.push(decode_part(number, raw)?);
            Ok(true)
        })?;
        Ok(parts)
    }

    /// Commits an object (a single PUT, or the completion of `upload`): see
    /// [`ObjectStore::put_object`] and [`ObjectStore::complete_upload`].
    fn commit_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: Option<UploadId>,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let t = tenant.as_bytes();
        let bucket_raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_shared(&bucket_raw);
        self.require_bucket(&bucket_raw, bucket)?;
        let object_raw = object_key(tenant, bucket, meta.key.as_bytes());
        let upload_raw = upload.map(|id| upload_key(t, bucket.as_bytes(), id));
        // A single PUT commits pending blobs; a completion commits its parts' blobs, which the
        // upload's lock protects.
        let pending: Vec<Vec<u8>> = match upload {
            None => meta.segments.iter().map(|s| blob_key(t, s.data)).collect(),
            Some(_) => Vec::new(),
        };
        let _guards = self.lock_keys(
            std::iter::once(object_raw.as_slice())
                .chain(upload_raw.as_deref())
                .chain(pending.iter().map(Vec::as_slice)),
        );
        let now = self.now();
        let previous = self.get_raw(CF_OBJECTS, &object_raw)?;
        let mut batch = WriteBatch::default();
        if let (Some(id), Some(upload_raw)) = (upload, &upload_raw) {
            let Some(raw) = self.get_raw(CF_UPLOADS, upload_raw)? else {
                return Err(Error::not_found(Resource::Upload, id));
            };
            let info = decode_upload(id, &raw)?;
            if info.key != meta.key {
                return Err(Error::invalid(
                    "key",
                    format!("is not the key of upload {id}"),
                ));
            }
            check_condition(previous.as_deref(), now, condition)?;
            let parts = self.parts_of(t, id)?;
            let sizes: HashMap<DataId, u64> = parts.iter().map(|p| (p.data, p.size)).collect();
            let mut used = HashSet::with_capacity(meta.segments.len());
            for segment in &meta.segments {
                if sizes.get(&segment.data) != Some(&segment.size) || !used.insert(segment.data) {
                    return Err(Error::not_found(Resource::Part, segment.data.0));
                }
            }
            let unused = parts
                .iter()
                .map(|p| p.data)
                .filter(|data| !used.contains(data));
            self.free_blobs(&mut batch, t, unused, now)?;
            batch.delete_cf(self.cf(CF_UPLOADS)?, upload_raw);
            batch.delete_cf(
                self.cf(CF_UPLOADS_BY_KEY)?,
                upload_by_key_key(t, bucket.as_bytes(), info.key.as_bytes(), id),
            );
            for part in &parts {
                batch.delete_cf(self.cf(CF_PARTS)?, part_key(t, id, part.number));
            }
        } else {
            check_condition(previous.as_deref(), now, condition)?;
            let mut seen = HashSet::with_capacity(pending.len());
            for (segment, blob) in meta.segments.iter().zip(&pending) {
                if !seen.insert(segment.data) || !self.is_pending(blob)? {
                    return Err(Error::not_found(Resource::Object, segment.data.0));
                }
                batch.delete_cf(self.cf(CF_BLOBS)?, blob);
            }
        }
        if let Some(previous) = previous {
            let previous = decode_object_header(&previous)?;
            self.free_blobs(&mut batch, t, previous.segments.iter().map(|s| s.data), now)?;
        }
        batch.put_cf(self.cf(CF_OBJECTS)?, &object_raw, encode_object(meta)?);
        self.write_changes(
            tenant,
            batch,
            &[Event::object(ChangeOp::Put, bucket, &meta.key)],
        )
    }

    /// Removes the object record at `raw` (if it is still there and `still` holds for its
    /// expiry) and frees its blobs; returns the removed record's expiry. A deletion the caller
    /// logs (`change`, with the tenant) appends its change when the object was visible; removing
    /// an expired one appends nothing.
    fn remove_object(
        &self,
        raw_key: &[u8],
        now: Timestamp,
        still: impl Fn(Option<Timestamp>) -> bool,
        change: Option<(&TenantId, Event<'_>)>,
    ) -> Result<Option<Option<Timestamp>>> {
        let _guard = self.lock_keys([raw_key]);
        let Some(raw) = self.get_raw(CF_OBJECTS, raw_key)? else {
            return Ok(None);
        };
        let stored = decode_object_header(&raw)?;
        if !still(stored.expires_at) {
            return Ok(None);
        }
        let (tenant, _) = split_tenant(raw_key)?;
        let mut batch = WriteBatch::default();
        self.free_blobs(
            &mut batch,
            tenant,
            stored.segments.iter().map(|s| s.data),
            now,
        )?;
        batch.delete_cf(self.cf(CF_OBJECTS)?, raw_key);
        match change {
            Some((tenant, event)) if is_visible(stored.expires_at, now) => {
                self.write_changes(tenant, batch, &[event])?;
            }
            _ => self.write(batch)?,
        }
        Ok(Some(stored.expires_at))
    }

    /// Removes the upload at `raw_key` (`tenant 0 bucket 0 id`) with its parts, whose blobs are
    /// freed or removed. Returns how many blobs were removed, or `None` if the upload is gone.
    fn drop_upload(&self, raw_key: &[u8], blobs: PartBlobs, now: Timestamp) -> Result<Option<u64>> {
        let _guard = self.lock_keys([raw_key]);
        let Some(raw) = self.get_raw(CF_UPLOADS, raw_key)? else {
            return Ok(None);
        };
        let (tenant, rest) = split_tenant(raw_key)?;
        let bucket = rest
            .split(|b| *b == 0)
            .next()
            .ok_or_else(|| corrupt("upload key"))?;
        let id = UploadId(trailing_u64(raw_key)?);
        let info = decode_upload(id, &raw)?;
        let mut batch = WriteBatch::default();
        let prefix = parts_prefix(tenant, id);
        let mut part_keys = Vec::new();
        let mut part_blobs = Vec::new();
        self.scan_raw(CF_PARTS, &prefix, None, |key, raw| {
            part_keys.push(key.to_vec());
            part_blobs.push(part_data(raw)?);
            Ok(true)
        })?;
        for key in &part_keys {
            batch.delete_cf(self.cf(CF_PARTS)?, key);
        }
        let removed = match blobs {
            PartBlobs::Free => {
                self.free_blobs(&mut batch, tenant, part_blobs, now)?;
                0
            }
            PartBlobs::Remove => {
                for data in &part_blobs {
                    self.remove_blob(&mut batch, &blob_key(tenant, *data))?;
                }
                part_blobs.len() as u64
            }
        };
        batch.delete_cf(self.cf(CF_UPLOADS)?, raw_key);
        batch.delete_cf(
            self.cf(CF_UPLOADS_BY_KEY)?,
            upload_by_key_key(tenant, bucket, info.key.as_bytes(), id),
        );
        self.write(batch)?;
        Ok(Some(removed))
    }

    /// Collects up to [`BATCH`] keys of `family` under `prefix` after `cursor` for which `pick`
    /// holds, scanning a bounded number of records and moving `cursor` to the last one scanned.
    /// Returns the keys and whether the scan reached the end.
    fn next_batch(
        &self,
        family: &'static str,
        prefix: &[u8],
        cursor: &mut Option<Vec<u8>>,
        mut pick: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<(Vec<Vec<u8>>, bool)> {
        let start = cursor.as_deref().map(successor);
        let mut keys = Vec::new();
        let mut scanned = 0;
        let mut stopped = false;
        self.scan_raw(family, prefix, start.as_deref(), |key, raw| {
            scanned += 1;
            *cursor = Some(key.to_vec());
            if pick(key, raw)? {
                keys.push(key.to_vec());
            }
            stopped = keys.len() == BATCH || scanned == 16 * BATCH;
            Ok(!stopped)
        })?;
        Ok((keys, !stopped))
    }

    /// Physically removes expired object records and frees their blobs.
    pub(crate) fn purge_objects(&self, now: Timestamp) -> Result<u64> {
        let expired = |expires_at: Option<Timestamp>| !is_visible(expires_at, now);
        let mut removed = 0;
        let mut cursor = None;
        loop {
            let (keys, done) = self.next_batch(CF_OBJECTS, &[], &mut cursor, |_, raw| {
                Ok(expired(object_expiry(raw)?))
            })?;
            for key in keys {
                if self.remove_object(&key, now, expired, None)?.is_some() {
                    removed += 1;
                }
            }
            if done {
                return Ok(removed);
            }
        }
    }
}

/// `Conflict` unless the visible object in `previous` (an `objects` value) satisfies `condition`.
fn check_condition(
    previous: Option<&[u8]>,
    now: Timestamp,
    condition: &Precondition,
) -> Result<()> {
    if *condition == Precondition::None {
        return Ok(());
    }
    let visible = match previous {
        Some(raw) => {
            let stored = decode_object_header(raw)?;
            is_visible(stored.expires_at, now).then_some(stored)
        }
        None => None,
    };
    match (condition, visible) {
        (Precondition::IfAbsent, Some(_)) => Err(Error::conflict("an object exists at the key")),
        (Precondition::IfEtag(etag), Some(stored)) if stored.etag != *etag => {
            Err(Error::conflict(format!("the object's ETag is not {etag}")))
        }
        (Precondition::IfEtag(_), None) => Err(Error::conflict("no object exists at the key")),
        _ => Ok(()),
    }
}

#[async_trait]
impl ObjectStore for RocksBackend {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        let _admin = self.bucket_admin.lock();
        let raw = bucket_key(tenant, bucket);
        if self.get_raw(CF_BUCKETS, &raw)?.is_some() {
            return Err(Error::already_exists(Resource::Bucket, bucket));
        }
        let mut count = 0;
        self.scan_raw(
            CF_BUCKETS,
            &schema::prefix(&[tenant.as_bytes()]),
            None,
            |_, _| {
                count += 1;
                Ok(count < MAX_BUCKETS)
            },
        )?;
        if count >= MAX_BUCKETS {
            return Err(Error::invalid(
                "bucket",
                format!("the tenant already has {MAX_BUCKETS} buckets, the most allowed"),
            ));
        }
        let created_at = self.now();
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_BUCKETS)?, &raw, created_at.to_be_bytes());
        self.write_changes(tenant, batch, &[Event::bucket(ChangeOp::Put, bucket)])?;
        Ok(BucketInfo {
            name: bucket.clone(),
            created_at,
        })
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        match self.get_raw(CF_BUCKETS, &bucket_key(tenant, bucket))? {
            Some(raw) => Ok(Some(BucketInfo {
                name: bucket.clone(),
                created_at: Reader::new(&raw, "bucket").i64()?,
            })),
            None => Ok(None),
        }
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        let prefix = schema::prefix(&[tenant.as_bytes()]);
        let mut buckets = Vec::new();
        self.scan_raw(CF_BUCKETS, &prefix, None, |key, raw| {
            buckets.push(BucketInfo {
                name: BucketName::new(schema::text(&key[prefix.len()..], "bucket name")?)?,
                created_at: Reader::new(raw, "bucket").i64()?,
            });
            Ok(true)
        })?;
        Ok(buckets)
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        let _admin = self.bucket_admin.lock();
        let raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_exclusive(&raw);
        self.require_bucket(&raw, bucket)?;
        let now = self.now();
        let prefix = schema::prefix(&[tenant.as_bytes(), bucket.as_bytes()]);
        let mut occupied = false;
        self.scan_raw(CF_OBJECTS, &prefix, None, |_, raw| {
            occupied = is_visible(object_expiry(raw)?, now);
            Ok(!occupied)
        })?;
        if occupied {
            return Err(Error::conflict(format!("bucket {bucket} is not empty")));
        }
        // Only expired objects remain, and no write can add one while the bucket is held.
        let mut cursor = None;
        loop {
            let (keys, done) =
                self.next_batch(CF_OBJECTS, &prefix, &mut cursor, |_, _| Ok(true))?;
            for key in keys {
                self.remove_object(&key, now, |_| true, None)?;
            }
            if done {
                break;
            }
        }
        let mut cursor = None;
        loop {
            let (keys, done) =
                self.next_batch(CF_UPLOADS, &prefix, &mut cursor, |_, _| Ok(true))?;
            for key in keys {
                self.drop_upload(&key, PartBlobs::Free, now)?;
            }
            if done {
                break;
            }
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_BUCKETS)?, &raw);
        self.write_changes(tenant, batch, &[Event::bucket(ChangeOp::Delete, bucket)])
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        let data = DataId(self.versions.allocate(self)?);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_BLOBS)?,
            blob_key(tenant.as_bytes(), data),
            encode_blob(PENDING, self.now()),
        );
        self.write(batch)?;
        Ok(data)
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()> {
        if bytes.len() > MAX_STORED_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                format!(
                    "is {} bytes; at most {MAX_STORED_CHUNK_BYTES} are allowed",
                    bytes.len()
                ),
            ));
        }
        let blob = blob_key(tenant.as_bytes(), data);
        // Held so that discarding or reaping the blob cannot pass between the check and the put.
        let _guard = self.lock_keys([blob.as_slice()]);
        if !self.is_pending(&blob)? {
            return Err(Error::not_found(Resource::Object, data.0));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_CHUNKS)?, chunk_key(tenant, data, index), bytes);
        self.write(batch)
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        match self.get_raw(CF_CHUNKS, &chunk_key(tenant, data, index))? {
            Some(raw) => Ok(raw.to_vec()),
            None => Err(Error::not_found(Resource::Object, data.0)),
        }
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        let blob = blob_key(tenant.as_bytes(), data);
        let _guard = self.lock_keys([blob.as_slice()]);
        if !self.is_pending(&blob)? {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        self.remove_blob(&mut batch, &blob)?;
        self.write(batch)
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        self.commit_object(tenant, bucket, None, meta, condition)
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        let now = self.now();
        if let Some(raw) = self.get_raw(CF_OBJECTS, &object_key(tenant, bucket, key.as_bytes()))? {
            let meta = decode_object(key.clone(), &raw)?;
            if is_visible(meta.expires_at, now) {
                // An object exists only in an existing bucket.
                return Ok(Some(meta));
            }
        }
        self.require_bucket(&bucket_key(tenant, bucket), bucket)?;
        Ok(None)
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        let bucket_raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_shared(&bucket_raw);
        self.require_bucket(&bucket_raw, bucket)?;
        let now = self.now();
        let removed = self.remove_object(
            &object_key(tenant, bucket, key.as_bytes()),
            now,
            |_| true,
            Some((tenant, Event::object(ChangeOp::Delete, bucket, key))),
        )?;
        Ok(removed.is_some_and(|expires_at| is_visible(expires_at, now)))
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        self.require_bucket(&bucket_key(tenant, bucket), bucket)?;
        let now = self.now();
        let base = schema::prefix(&[tenant.as_bytes(), bucket.as_bytes()]);
        let raw_prefix = object_key(tenant, bucket, prefix.as_bytes());
        let mut start = base.clone();
        start.extend_from_slice(from);
        let mut objects = Vec::new();
        self.scan_raw(CF_OBJECTS, &raw_prefix, Some(&start), |key, raw| {
            if is_visible(object_expiry(raw)?, now) {
                let key = ObjectKey::new(schema::text(&key[base.len()..], "object key")?)?;
                objects.push(decode_object(key, raw)?);
            }
            Ok(objects.len() < limit.get())
        })?;
        Ok(objects)
    }

    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        let bucket_raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_shared(&bucket_raw);
        self.require_bucket(&bucket_raw, bucket)?;
        let id = UploadId(self.versions.allocate(self)?);
        let initiated = self.now();
        let record = encode_upload(key, initiated, expires_at, attributes)?;
        let (t, b) = (tenant.as_bytes(), bucket.as_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_UPLOADS)?, upload_key(t, b, id), &record);
        batch.put_cf(
            self.cf(CF_UPLOADS_BY_KEY)?,
            upload_by_key_key(t, b, key.as_bytes(), id),
            &record,
        );
        self.write(batch)?;
        Ok(UploadInfo {
            id,
            key: key.clone(),
            initiated,
            attributes: attributes.clone(),
            expires_at,
        })
    }

    async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<Option<UploadInfo>> {
        let raw_key = upload_key(tenant.as_bytes(), bucket.as_bytes(), upload);
        match self.get_raw(CF_UPLOADS, &raw_key)? {
            Some(raw) => Ok(Some(decode_upload(upload, &raw)?)),
            None => {
                self.require_bucket(&bucket_key(tenant, bucket), bucket)?;
                Ok(None)
            }
        }
    }

    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        self.require_bucket(&bucket_key(tenant, bucket), bucket)?;
        let (t, b) = (tenant.as_bytes(), bucket.as_bytes());
        let raw_prefix = object_key(tenant, bucket, prefix.as_bytes());
        let start = after.map(|(key, id)| successor(&upload_by_key_key(t, b, key.as_bytes(), id)));
        let mut uploads = Vec::new();
        self.scan_raw(
            CF_UPLOADS_BY_KEY,
            &raw_prefix,
            start.as_deref(),
            |key, raw| {
                uploads.push(decode_upload(UploadId(trailing_u64(key)?), raw)?);
                Ok(uploads.len() < limit.get())
            },
        )?;
        Ok(uploads)
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        let t = tenant.as_bytes();
        let bucket_raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_shared(&bucket_raw);
        self.require_bucket(&bucket_raw, bucket)?;
        let upload_raw = upload_key(t, bucket.as_bytes(), upload);
        let blob = blob_key(t, part.data);
        let _guards = self.lock_keys([upload_raw.as_slice(), blob.as_slice()]);
        if self.get_raw(CF_UPLOADS, &upload_raw)?.is_none() {
            return Err(Error::not_found(Resource::Upload, upload));
        }
        if !self.is_pending(&blob)? {
            return Err(Error::not_found(Resource::Object, part.data.0));
        }
        let raw_part = part_key(t, upload, part.number);
        let now = self.now();
        let mut batch = WriteBatch::default();
        if let Some(previous) = self.get_raw(CF_PARTS, &raw_part)? {
            self.free_blobs(&mut batch, t, [part_data(&previous)?], now)?;
        }
        batch.delete_cf(self.cf(CF_BLOBS)?, &blob);
        batch.put_cf(self.cf(CF_PARTS)?, &raw_part, encode_part(part)?);
        self.write(batch)
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        let t = tenant.as_bytes();
        if self
            .get_raw(CF_UPLOADS, &upload_key(t, bucket.as_bytes(), upload))?
            .is_none()
        {
            self.require_bucket(&bucket_key(tenant, bucket), bucket)?;
            return Err(Error::not_found(Resource::Upload, upload));
        }
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = parts_prefix(t, upload);
        let start = part_key(t, upload, first);
        let mut parts = Vec::new();
        self.scan_raw(CF_PARTS, &prefix, Some(&start), |key, raw| {
            let number = key[prefix.len()..]
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| corrupt("part key"))?;
            parts.push(decode_part(number, raw)?);
            Ok(parts.len() < limit.get())
        })?;
        Ok(parts)
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        self.commit_object(tenant, bucket, Some(upload), meta, condition)
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        let bucket_raw = bucket_key(tenant, bucket);
        let _bucket = self.bucket_shared(&bucket_raw);
        self.require_bucket(&bucket_raw, bucket)?;
        let raw_key = upload_key(tenant.as_bytes(), bucket.as_bytes(), upload);
        match self.drop_upload(&raw_key, PartBlobs::Free, self.now())? {
            Some(_) => Ok(()),
            None => Err(Error::not_found(Resource::Upload, upload)),
        }
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        let now = self.now();
        let mut removed = 0;
        let mut cursor = None;
        loop {
            let (keys, done) = self.next_batch(CF_UPLOADS, &[], &mut cursor, |_, raw| {
                Ok(Reader::new(raw, "upload").i64()? < policy.abandoned_before)
            })?;
            for key in keys {
                // Upload records never change, so the upload found is still abandoned.
                removed += self.drop_upload(&key, PartBlobs::Remove, now)?.unwrap_or(0);
            }
            if done {
                break;
            }
        }
        let reapable = |raw: &[u8]| -> Result<bool> {
            Ok(match decode_blob(raw)? {
                (PENDING, since) => since < policy.abandoned_before,
                (FREED, since) => since < policy.freed_before,
                _ => return Err(corrupt("blob")),
            })
        };
        let mut cursor = None;
        loop {
            let (keys, done) =
                self.next_batch(CF_BLOBS, &[], &mut cursor, |_, raw| reapable(raw))?;
            for blob in keys {
                let _guard = self.lock_keys([blob.as_slice()]);
                // Re-checked under the lock: a pending blob may have been committed since.
                let still = match self.get_raw(CF_BLOBS, &blob)? {
                    Some(raw) => reapable(&raw)?,
                    None => false,
                };
                if still {
                    let mut batch = WriteBatch::default();
                    self.remove_blob(&mut batch, &blob)?;
                    self.write(batch)?;
                    removed += 1;
                }
            }
            if done {
                return Ok(removed);
            }
        }
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        let mut total = 0u64;
        self.scan_raw(
            CF_CHUNKS,
            &schema::prefix(&[tenant.as_bytes()]),
            None,
            |_, raw| {
                total += raw.len() as u64;
                Ok(true)
            },
        )?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
