//! Objects: buckets in `p8fs_buckets`, committed objects in `p8fs_objects`, their bytes as
//! chunks of data blobs in `p8fs_chunks`, the state of blobs not owned by an object or a part in
//! `p8fs_blobs`, and multipart uploads in `p8fs_uploads` and `p8fs_parts`.
//!
//! A bucket has an id from the version sequence; objects and uploads belong to that id, so a
//! bucket deleted and created again never sees what its earlier incarnation held. Every lookup
//! goes from `(tenant, name)` to the id in the same statement or transaction.
//!
//! Atomicity: each write that changes object or upload records is one transaction. The
//! transaction locks the row it decides on (`SELECT ... FOR UPDATE`): the object's row for
//! `put_object` and `delete_object` (an absent row is created by an `INSERT` that exactly one of
//! racing creators wins, the others retry and then find it, as in `kv.rs`), the upload's row for
//! `put_part`, `complete_upload` and `abort_upload`, the bucket's row for `delete_bucket`. A
//! blob's pending mark is cleared by deleting its `p8fs_blobs` row, so of two commits naming one
//! blob only the first finds it; `write_chunk` holds the same row locked while it stores a
//! chunk, so no chunk lands in a blob that is being committed, discarded or reaped.
//!
//! `delete_bucket` removes the bucket's row after checking, under its lock, that no visible
//! object remains, and records the id in `p8fs_deleted_buckets`; it then removes the expired
//! objects and the uploads of that id in bounded transactions. `put_object` and
//! `complete_upload` meet a racing `delete_bucket` on the tenant's change head (see
//! `recheck_bucket`), so an object never commits into a deleted bucket. Other writes that looked
//! the bucket up just before the delete (a new upload, a part) may still commit into the deleted
//! id, where nothing can see them; the reaper empties such ids again once they are older than
//! its `abandoned_before` and forgets them. No transaction grows with the size of a bucket or a
//! blob: blobs are removed a few chunks per statement, chunks first and the state row last, so
//! an interrupted removal is simply done again by the next reaper.
//!
//! Changes (`change.rs`), appended in the write's transaction once it has decided: a bucket
//! `Put` for `create_bucket` and `Delete` for `delete_bucket`, an object `Put` for `put_object`
//! and `complete_upload`, and an object `Delete` when `delete_object` removed a visible object.
//! Uploads, parts, blobs, purge and the reaper append nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Row, Transaction, Value};

use p8fs_core::object::{MAX_BUCKETS, MAX_STORED_CHUNK_BYTES};
use p8fs_core::{
    BucketInfo, BucketName, ChangeEvent, DataId, Error, Limit, ObjectAttributes, ObjectKey,
    ObjectMeta, ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Resource, Result,
    Segment, Subject, TenantId, Timestamp, UploadId, UploadInfo, is_visible,
};

use crate::error::{classify, corrupt};
use crate::kv::next_version;
use crate::schema::{self, bytes};
use crate::{TidbBackend, TxError, sql, transaction};

/// Rows the reaper and purge read per statement, and objects removed per transaction.
const BATCH: u64 = 100;
/// Chunks (of at most 1 MiB) deleted per statement when a blob is removed.
const CHUNK_DELETE_BATCH: u64 = 16;
/// Blobs named per statement when marking them freed or clearing their pending mark.
const BLOB_STATEMENT_ROWS: usize = 500;

/// Most blobs one transaction frees when it removes objects in a batch (an object may have
/// 10,000 segments), so no transaction outgrows TiDB's limits.
const BLOBS_PER_TRANSACTION: usize = 10_000;

/// How many of a batch of objects, given the byte lengths of their stored segments, one
/// transaction removes: at least one, and no more than [`BLOBS_PER_TRANSACTION`] blobs.
fn within_budget(segment_bytes: impl Iterator<Item = usize>) -> usize {
    let mut blobs = 0;
    let mut take = 0;
    for len in segment_bytes {
        blobs += len / schema::SEGMENT_BYTES;
        if take > 0 && blobs > BLOBS_PER_TRANSACTION {
            break;
        }
        take += 1;
    }
    take
}

/// An expired object's bucket id, key, tenant and segments.
type ExpiredObject = (u64, Vec<u8>, Vec<u8>, Vec<u8>);

/// The subject of a change to the object at `key` in `bucket`.
fn object_subject(bucket: &BucketName, key: &ObjectKey) -> Subject {
    Subject::Object {
        bucket: bucket.clone(),
        key: key.clone(),
    }
}

fn not_found_bucket(bucket: &BucketName) -> TxError {
    Error::not_found(Resource::Bucket, bucket).into()
}

fn not_found_blob(data: u64) -> TxError {
    Error::not_found(Resource::Object, format!("data blob {data}")).into()
}

fn not_found_upload(upload: UploadId) -> TxError {
    Error::not_found(Resource::Upload, upload).into()
}

/// The exclusive upper bound of keys starting with `prefix`: no UTF-8 text contains 0xFF.
fn prefix_end(prefix: &str) -> Value {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xFF);
    Value::Bytes(end)
}

/// The distinct data ids of some segments.
fn blob_ids(segments: &[Segment]) -> Vec<u64> {
    let mut seen = HashSet::new();
    segments
        .iter()
        .map(|s| s.data.0)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The id of the tenant's bucket, if it has one.
async fn bucket_id<Q: Queryable>(
    q: &mut Q,
    tenant: &TenantId,
    bucket: &BucketName,
) -> std::result::Result<Option<u64>, mysql_async::Error> {
    let row: Option<(u64, i64)> = q
        .exec_first(
            sql::BUCKET_GET,
            (bytes(tenant.as_str()), bytes(bucket.as_str())),
        )
        .await?;
    Ok(row.map(|(id, _)| id))
}

/// Checks, after the write has appended its change (so it holds the tenant's change head), that
/// the bucket it wrote into still exists: `NotFound(Bucket)` if a `delete_bucket` committed
/// since the write looked the bucket up, which rolls the write back. A bucket's row is not
/// locked by object writes (TiDB has no shared row locks; an exclusive one would serialise every
/// write to a bucket), and without this check such a write would commit into the deleted
/// bucket's id and log a `Put` after the bucket's `Delete`. `delete_bucket` takes the head
/// before its emptiness check, so of the two, whichever takes the head first decides.
async fn recheck_bucket(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    bucket: &BucketName,
    id: u64,
) -> Result<(), TxError> {
    if bucket_id(tx, tenant, bucket).await? == Some(id) {
        Ok(())
    } else {
        Err(not_found_bucket(bucket))
    }
}

/// Clears the pending mark of every blob in `ids`; `NotFound(Object)` unless all were pending.
async fn claim_pending(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    ids: &[u64],
) -> Result<(), TxError> {
    for batch in ids.chunks(BLOB_STATEMENT_ROWS) {
        let mut params = Vec::with_capacity(batch.len() + 1);
        params.push(bytes(tenant.as_str()));
        params.extend(batch.iter().map(|id| Value::from(*id)));
        tx.exec_drop(sql::blobs_claim(batch.len()), params).await?;
        if tx.affected_rows() != batch.len() as u64 {
            // Name one that was not pending (the statement is rolled back with the transaction).
            return Err(not_found_blob(batch[0]));
        }
    }
    Ok(())
}

/// Marks blobs freed at `since`.
async fn free_blobs(
    tx: &mut Transaction<'_>,
    tenant: &[u8],
    ids: &[u64],
    since: Timestamp,
) -> Result<(), TxError> {
    for batch in ids.chunks(BLOB_STATEMENT_ROWS) {
        let mut params = Vec::with_capacity(batch.len() * 3);
        for id in batch {
            params.push(Value::Bytes(tenant.to_vec()));
            params.push(Value::from(*id));
            params.push(Value::from(since));
        }
        tx.exec_drop(sql::blobs_free(batch.len()), params).await?;
    }
    Ok(())
}

/// What a locked object row holds that a write needs.
struct Previous {
    etag: String,
    expires_at: Option<Timestamp>,
    segments: Vec<Segment>,
}

/// Locks the object's row (visible or not) and reads it.
async fn lock_object(
    tx: &mut Transaction<'_>,
    bucket: u64,
    key: &ObjectKey,
) -> Result<Option<Previous>, TxError> {
    let row: Option<Row> = tx
        .exec_first(sql::OBJECT_LOCK, (bucket, bytes(key.as_str())))
        .await?;
    let Some(mut row) = row else {
        return Ok(None);
    };
    let segments: Vec<u8> = schema::column(&mut row, 2, "object segments")?;
    Ok(Some(Previous {
        etag: schema::text(&mut row, 0, "object etag")?,
        expires_at: schema::expiry(&mut row, 1, "object expiry")?,
        segments: schema::parse_segments(&segments)?,
    }))
}

/// Checks a write's precondition against the visible object (an expired one counts as absent).
fn check_condition(
    previous: Option<&Previous>,
    condition: &Precondition,
    key: &ObjectKey,
    now: Timestamp,
) -> Result<()> {
    let visible = previous.filter(|p| is_visible(p.expires_at, now));
    match (condition, visible) {
        (Precondition::None, _) => Ok(()),
        (Precondition::IfAbsent, None) => Ok(()),
        (Precondition::IfAbsent, Some(_)) => {
            Err(Error::conflict(format!("an object exists at key {key}")))
        }
        (Precondition::IfEtag(etag), Some(p)) if p.etag == *etag => Ok(()),
        (Precondition::IfEtag(etag), _) => Err(Error::conflict(format!(
            "the object at key {key} does not have ETag {etag}"
        ))),
    }
}

/// Writes `meta` at its key in a locked bucket, replacing (and freeing the blobs of) any
/// object there, if `condition` holds. The caller has already checked the segments' blobs.
async fn commit_object(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    bucket: u64,
    meta: &ObjectMeta,
    previous: Option<Previous>,
    now: Timestamp,
) -> Result<(), TxError> {
    let attributes = schema::json_text(&meta.attributes)?;
    let segments = schema::segments_bytes(&meta.segments);
    match previous {
        Some(previous) => {
            free_blobs(
                tx,
                tenant.as_str().as_bytes(),
                &blob_ids(&previous.segments),
                now,
            )
            .await?;
            tx.exec_drop(
                sql::OBJECT_UPDATE,
                vec![
                    Value::from(meta.size),
                    bytes(&meta.etag),
                    Value::from(meta.last_modified),
                    Value::from(meta.expires_at),
                    Value::from(attributes),
                    Value::Bytes(segments),
                    Value::from(bucket),
                    bytes(meta.key.as_str()),
                ],
            )
            .await?;
        }
        None => {
            tx.exec_drop(
                sql::OBJECT_INSERT,
                vec![
                    Value::from(bucket),
                    bytes(meta.key.as_str()),
                    bytes(tenant.as_str()),
                    Value::from(meta.size),
                    bytes(&meta.etag),
                    Value::from(meta.last_modified),
                    Value::from(meta.expires_at),
                    Value::from(attributes),
                    Value::Bytes(segments),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// An object from `size, etag, last_modified, expires_at, attributes, segments` at `first..`.
fn object_meta(key: ObjectKey, row: &mut Row, first: usize) -> Result<ObjectMeta> {
    let segments: Vec<u8> = schema::column(row, first + 5, "object segments")?;
    Ok(ObjectMeta {
        key,
        size: schema::column(row, first, "object size")?,
        etag: schema::text(row, first + 1, "object etag")?,
        last_modified: schema::column(row, first + 2, "object last_modified")?,
        expires_at: schema::expiry(row, first + 3, "object expiry")?,
        attributes: schema::json(row, first + 4, "object attributes")?,
        segments: schema::parse_segments(&segments)?,
    })
}

fn object_key(row: &mut Row, idx: usize) -> Result<ObjectKey> {
    ObjectKey::new(schema::text(row, idx, "object key")?).map_err(|_| corrupt("object key"))
}

/// An upload from `id, k, initiated, attributes, expires_at`.
fn upload_info(mut row: Row) -> Result<UploadInfo> {
    Ok(UploadInfo {
        id: UploadId(schema::column(&mut row, 0, "upload id")?),
        key: object_key(&mut row, 1)?,
        initiated: schema::column(&mut row, 2, "upload initiated")?,
        attributes: schema::json(&mut row, 3, "upload attributes")?,
        expires_at: schema::expiry(&mut row, 4, "upload expiry")?,
    })
}

/// A part from `number, data, size, etag, checksums, last_modified`.
fn part_record(mut row: Row) -> Result<PartRecord> {
    Ok(PartRecord {
        number: schema::column(&mut row, 0, "part number")?,
        data: DataId(schema::column(&mut row, 1, "part data")?),
        size: schema::column(&mut row, 2, "part size")?,
        etag: schema::text(&mut row, 3, "part etag")?,
        checksums: schema::json::<BTreeMap<String, String>>(&mut row, 4, "part checksums")?,
        last_modified: schema::column(&mut row, 5, "part last_modified")?,
    })
}

impl TidbBackend {
    /// How far behind the clock purge and the reaper stay (see `TidbOptions::purge_grace`).
    fn grace_millis(&self) -> i64 {
        i64::try_from(self.options.purge_grace.as_millis()).unwrap_or(i64::MAX)
    }

    /// Removes a freed blob: its chunks a few per statement, then its state row. Returns 1 if
    /// this call removed the row (a concurrent reaper may have).
    async fn remove_blob(&self, tenant: &[u8], data: u64) -> Result<u64> {
        let mut conn = self.conn().await?;
        loop {
            conn.exec_drop(sql::CHUNKS_DELETE_SOME, (tenant, data, CHUNK_DELETE_BATCH))
                .await
                .map_err(classify)?;
            if conn.affected_rows() < CHUNK_DELETE_BATCH {
                break;
            }
        }
        conn.exec_drop(sql::BLOB_DELETE_FREED, (tenant, data))
            .await
            .map_err(classify)?;
        Ok(conn.affected_rows())
    }

    /// Aborts an upload of a bucket id: removes it and its parts and frees their blobs at
    /// `since`. Returns the tenant and the freed blobs, or `None` if the upload is gone.
    async fn abort_by_id(
        &self,
        bucket: u64,
        upload: u64,
        since: Timestamp,
    ) -> Result<Option<(Vec<u8>, Vec<u64>)>> {
        transaction!(self, tx => {
            let tenant: Option<Vec<u8>> = tx.exec_first(sql::UPLOAD_LOCK, (bucket, upload)).await?;
            match tenant {
                Some(tenant) => {
                    let blobs = abort_locked(&mut tx, &tenant, bucket, upload, since).await?;
                    Some((tenant, blobs))
                }
                None => None,
            }
        })
    }

    /// Removes what a deleted bucket id still holds: objects (their blobs freed at `since`) a
    /// batch per transaction, then uploads one per transaction.
    async fn empty_deleted_bucket(&self, bucket: u64, since: Timestamp) -> Result<()> {
        loop {
            let (fetched, removed) = transaction!(self, tx => {
                let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = tx
                    .exec(sql::OBJECTS_OF_BUCKET_LOCK, (bucket, BATCH))
                    .await?;
                let take = within_budget(rows.iter().map(|(_, _, s)| s.len()));
                for (key, tenant, segments) in &rows[..take] {
                    let segments = schema::parse_segments(segments)?;
                    free_blobs(&mut tx, tenant, &blob_ids(&segments), since).await?;
                    tx.exec_drop(sql::OBJECT_DELETE, (bucket, key.as_slice())).await?;
                }
                (rows.len(), take)
            })?;
            if fetched < BATCH as usize && removed == fetched {
                break;
            }
        }
        loop {
            let uploads: Vec<u64> = self
                .conn()
                .await?
                .exec(sql::UPLOADS_OF_BUCKET, (bucket, BATCH))
                .await
                .map_err(classify)?;
            for upload in &uploads {
                self.abort_by_id(bucket, *upload, since).await?;
            }
            if (uploads.len() as u64) < BATCH {
                return Ok(());
            }
        }
    }

    /// Deletes expired objects (those that expired at or before `before`) and frees their
    /// blobs at `now`, a batch per transaction. Returns how many objects were removed.
    pub(crate) async fn purge_objects(&self, before: Timestamp, now: Timestamp) -> Result<u64> {
        let mut removed = 0;
        loop {
            let (fetched, taken) = transaction!(self, tx => {
                let rows: Vec<ExpiredObject> = tx
                    .exec(sql::OBJECTS_EXPIRED_LOCK, (before, BATCH))
                    .await?;
                let take = within_budget(rows.iter().map(|(_, _, _, s)| s.len()));
                for (bucket, key, tenant, segments) in &rows[..take] {
                    let segments = schema::parse_segments(segments)?;
                    free_blobs(&mut tx, tenant, &blob_ids(&segments), now).await?;
                    tx.exec_drop(sql::OBJECT_DELETE, (*bucket, key.as_slice())).await?;
                }
                (rows.len(), take)
            })?;
            removed += taken as u64;
            if fetched < BATCH as usize && taken == fetched {
                return Ok(removed);
            }
        }
    }

    /// Runs `statement` (params: a time, a batch size) for `(tenant, data)` rows and applies
    /// `each` to every row, batch after batch, until a batch comes back short.
    async fn for_each_due<F, Fut>(
        &self,
        statement: &str,
        before: Timestamp,
        mut each: F,
    ) -> Result<u64>
    where
        F: FnMut(Vec<u8>, u64) -> Fut,
        Fut: std::future::Future<Output = Result<u64>>,
    {
        let mut total = 0;
        loop {
            let rows: Vec<(Vec<u8>, u64)> = self
                .conn()
                .await?
                .exec(statement, (before, BATCH))
                .await
                .map_err(classify)?;
            let n = rows.len() as u64;
            for (tenant, data) in rows {
                total += each(tenant, data).await?;
            }
            if n < BATCH {
                return Ok(total);
            }
        }
    }
}

/// Removes a locked upload and its parts and frees the parts' blobs; returns them.
async fn abort_locked(
    tx: &mut Transaction<'_>,
    tenant: &[u8],
    bucket: u64,
    upload: u64,
    since: Timestamp,
) -> Result<Vec<u64>, TxError> {
    let parts: Vec<(u32, u64)> = tx.exec(sql::PARTS_DATA, (upload,)).await?;
    let blobs: Vec<u64> = parts.iter().map(|(_, data)| *data).collect();
    free_blobs(tx, tenant, &blobs, since).await?;
    tx.exec_drop(sql::PARTS_DELETE, (upload,)).await?;
    tx.exec_drop(sql::UPLOAD_DELETE, (bucket, upload)).await?;
    Ok(blobs)
}

/// Locks an upload of a bucket the tenant has: `NotFound(Bucket)` or `NotFound(Upload)`.
async fn lock_upload(
    tx: &mut Transaction<'_>,
    tenant: &TenantId,
    bucket: &BucketName,
    upload: UploadId,
) -> Result<u64, TxError> {
    let id = bucket_id(tx, tenant, bucket)
        .await?
        .ok_or_else(|| not_found_bucket(bucket))?;
    let locked: Option<Vec<u8>> = tx.exec_first(sql::UPLOAD_LOCK, (id, upload.0)).await?;
    match locked {
        Some(_) => Ok(id),
        None => Err(not_found_upload(upload)),
    }
}

#[async_trait]
impl ObjectStore for TidbBackend {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        transaction!(self, tx => {
            let now = self.now();
            let names: Vec<Vec<u8>> = tx
                .exec(sql::BUCKETS_LOCK_TENANT, (bytes(tenant.as_str()),))
                .await?;
            if names.iter().any(|n| n.as_slice() == bucket.as_str().as_bytes()) {
                return Err(Error::already_exists(Resource::Bucket, bucket).into());
            }
            if names.len() >= MAX_BUCKETS {
                return Err(Error::invalid(
                    "bucket",
                    format!("the tenant already has {MAX_BUCKETS} buckets, the most allowed"),
                )
                .into());
            }
            let id = next_version(&mut tx).await?;
            tx.exec_drop(
                sql::BUCKET_INSERT,
                (bytes(tenant.as_str()), bytes(bucket.as_str()), id, now),
            )
            .await?;
            let event = ChangeEvent::put(Subject::Bucket { name: bucket.clone() }, None);
            self.append(&mut tx, tenant, &[event]).await?;
            BucketInfo {
                name: bucket.clone(),
                created_at: now,
            }
        })
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        let row: Option<(u64, i64)> = self
            .conn()
            .await?
            .exec_first(
                sql::BUCKET_GET,
                (bytes(tenant.as_str()), bytes(bucket.as_str())),
            )
            .await
            .map_err(classify)?;
        Ok(row.map(|(_, created_at)| BucketInfo {
            name: bucket.clone(),
            created_at,
        }))
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        let rows: Vec<(Vec<u8>, i64)> = self
            .conn()
            .await?
            .exec(sql::BUCKET_LIST, (bytes(tenant.as_str()),))
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|(name, created_at)| {
                let name = String::from_utf8(name)
                    .ok()
                    .and_then(|n| BucketName::new(n).ok())
                    .ok_or_else(|| corrupt("bucket name"))?;
                Ok(BucketInfo { name, created_at })
            })
            .collect()
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        let (id, now) = transaction!(self, tx => {
            let now = self.now();
            let id: Option<u64> = tx
                .exec_first(sql::BUCKET_LOCK, (bytes(tenant.as_str()), bytes(bucket.as_str())))
                .await?;
            let id = id.ok_or_else(|| not_found_bucket(bucket))?;
            // The change is appended before the emptiness check, unlike everywhere else: holding
            // the tenant's change head, the check sees every object write of the tenant that
            // committed before, and every later one finds the bucket gone (`recheck_bucket`).
            let event = ChangeEvent::delete(Subject::Bucket { name: bucket.clone() });
            self.append(&mut tx, tenant, &[event]).await?;
            let visible: Option<i64> = tx.exec_first(sql::BUCKET_HAS_VISIBLE, (id, now)).await?;
            if visible.is_some() {
                return Err(Error::conflict(format!("bucket {bucket} is not empty")).into());
            }
            tx.exec_drop(sql::BUCKET_DELETE, (bytes(tenant.as_str()), bytes(bucket.as_str())))
                .await?;
            tx.exec_drop(sql::DELETED_BUCKET_INSERT, (id, bytes(tenant.as_str()), now))
                .await?;
            (id, now)
        })?;
        // The bucket is gone; what it still holds is invisible. If emptying it fails here, the
        // reaper finishes the job (the id stays in p8fs_deleted_buckets until it has).
        if let Err(error) = self.empty_deleted_bucket(id, now).await {
            tracing::warn!(%error, bucket = %bucket, "a deleted bucket is left for the reaper to empty");
        }
        Ok(())
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        let mut conn = self.conn().await?;
        let id: Option<u64> = conn
            .query_first(sql::NEXT_VERSION)
            .await
            .map_err(classify)?;
        let id = id.ok_or_else(|| corrupt("version sequence"))?;
        conn.exec_drop(sql::BLOB_BEGIN, (bytes(tenant.as_str()), id, self.now()))
            .await
            .map_err(classify)?;
        Ok(DataId(id))
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        chunk: &[u8],
    ) -> Result<()> {
        if chunk.len() > MAX_STORED_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                format!(
                    "is {} bytes; at most {MAX_STORED_CHUNK_BYTES} are allowed",
                    chunk.len()
                ),
            ));
        }
        transaction!(self, tx => {
            let pending: Option<i64> = tx
                .exec_first(sql::BLOB_LOCK_PENDING, (bytes(tenant.as_str()), data.0))
                .await?;
            if pending.is_none() {
                return Err(not_found_blob(data.0));
            }
            tx.exec_drop(
                sql::CHUNK_UPSERT,
                (bytes(tenant.as_str()), data.0, index, chunk.len() as u64, chunk),
            )
            .await?;
        })
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        let chunk: Option<Vec<u8>> = self
            .conn()
            .await?
            .exec_first(sql::CHUNK_GET, (bytes(tenant.as_str()), data.0, index))
            .await
            .map_err(classify)?;
        chunk.ok_or_else(|| {
            Error::not_found(
                Resource::Object,
                format!("chunk {index} of data blob {}", data.0),
            )
        })
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        let mut conn = self.conn().await?;
        conn.exec_drop(
            sql::BLOB_FREE_PENDING,
            (self.now(), bytes(tenant.as_str()), data.0),
        )
        .await
        .map_err(classify)?;
        let freed = conn.affected_rows() > 0;
        drop(conn);
        if freed {
            self.remove_blob(tenant.as_str().as_bytes(), data.0).await?;
        }
        Ok(())
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let blobs = blob_ids(&meta.segments);
        transaction!(self, tx => {
            let now = self.now();
            let id = bucket_id(&mut tx, tenant, bucket)
                .await?
                .ok_or_else(|| not_found_bucket(bucket))?;
            let previous = lock_object(&mut tx, id, &meta.key).await?;
            check_condition(previous.as_ref(), condition, &meta.key, now)?;
            claim_pending(&mut tx, tenant, &blobs).await?;
            commit_object(&mut tx, tenant, id, meta, previous, now).await?;
            let event = ChangeEvent::put(object_subject(bucket, &meta.key), None);
            self.append(&mut tx, tenant, &[event]).await?;
            recheck_bucket(&mut tx, tenant, bucket, id).await?;
        })
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                sql::OBJECT_GET,
                (
                    bytes(key.as_str()),
                    self.now(),
                    bytes(tenant.as_str()),
                    bytes(bucket.as_str()),
                ),
            )
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Err(Error::not_found(Resource::Bucket, bucket));
        };
        // The LEFT JOIN found no visible object: its columns are NULL.
        if matches!(row.as_ref(1), None | Some(Value::NULL)) {
            return Ok(None);
        }
        object_meta(key.clone(), &mut row, 1).map(Some)
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        transaction!(self, tx => {
            let now = self.now();
            let id = bucket_id(&mut tx, tenant, bucket)
                .await?
                .ok_or_else(|| not_found_bucket(bucket))?;
            match lock_object(&mut tx, id, key).await? {
                Some(previous) => {
                    free_blobs(
                        &mut tx,
                        tenant.as_str().as_bytes(),
                        &blob_ids(&previous.segments),
                        now,
                    )
                    .await?;
                    tx.exec_drop(sql::OBJECT_DELETE, (id, bytes(key.as_str()))).await?;
                    let visible = is_visible(previous.expires_at, now);
                    if visible {
                        let event = ChangeEvent::delete(object_subject(bucket, key));
                        self.append(&mut tx, tenant, &[event]).await?;
                    }
                    visible
                }
                None => false,
            }
        })
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        let mut conn = self.conn().await?;
        let params = vec![
            bytes(tenant.as_str()),
            bytes(bucket.as_str()),
            bytes(prefix.as_str()),
            prefix_end(prefix.as_str()),
            Value::Bytes(from.to_vec()),
            Value::from(self.now()),
            Value::from(limit.get() as u64),
        ];
        let rows: Vec<Row> = conn
            .exec(sql::OBJECT_LIST_PAGE, params)
            .await
            .map_err(classify)?;
        if rows.is_empty()
            && bucket_id(&mut conn, tenant, bucket)
                .await
                .map_err(classify)?
                .is_none()
        {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        rows.into_iter()
            .map(|mut row| {
                let key = object_key(&mut row, 0)?;
                object_meta(key, &mut row, 1)
            })
            .collect()
    }

    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        let text = schema::json_text(attributes)?;
        let mut conn = self.conn().await?;
        let bucket_id = bucket_id(&mut conn, tenant, bucket)
            .await
            .map_err(classify)?
            .ok_or_else(|| Error::not_found(Resource::Bucket, bucket))?;
        let id: Option<u64> = conn
            .query_first(sql::NEXT_VERSION)
            .await
            .map_err(classify)?;
        let id = id.ok_or_else(|| corrupt("version sequence"))?;
        let now = self.now();
        conn.exec_drop(
            sql::UPLOAD_INSERT,
            (
                bucket_id,
                id,
                bytes(tenant.as_str()),
                bytes(key.as_str()),
                now,
                text,
                expires_at,
            ),
        )
        .await
        .map_err(classify)?;
        Ok(UploadInfo {
            id: UploadId(id),
            key: key.clone(),
            initiated: now,
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
        let row: Option<Row> = self
            .conn()
            .await?
            .exec_first(
                sql::UPLOAD_GET,
                (upload.0, bytes(tenant.as_str()), bytes(bucket.as_str())),
            )
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Err(Error::not_found(Resource::Bucket, bucket));
        };
        let key: Option<Vec<u8>> = schema::column(&mut row, 1, "upload key")?;
        let Some(key) = key else {
            return Ok(None);
        };
        let key = String::from_utf8(key)
            .ok()
            .and_then(|k| ObjectKey::new(k).ok())
            .ok_or_else(|| corrupt("upload key"))?;
        Ok(Some(UploadInfo {
            id: upload,
            key,
            initiated: schema::column(&mut row, 2, "upload initiated")?,
            attributes: schema::json(&mut row, 3, "upload attributes")?,
            expires_at: schema::expiry(&mut row, 4, "upload expiry")?,
        }))
    }

    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        let mut conn = self.conn().await?;
        let id = bucket_id(&mut conn, tenant, bucket)
            .await
            .map_err(classify)?
            .ok_or_else(|| Error::not_found(Resource::Bucket, bucket))?;
        // No key is empty, so `("", 0)` is before every upload.
        let (after_key, after_id) = after.map_or(("", 0), |(k, u)| (k.as_str(), u.0));
        let params = vec![
            Value::from(id),
            bytes(prefix.as_str()),
            prefix_end(prefix.as_str()),
            bytes(after_key),
            bytes(after_key),
            Value::from(after_id),
            Value::from(limit.get() as u64),
        ];
        let rows: Vec<Row> = conn
            .exec(sql::UPLOAD_LIST_PAGE, params)
            .await
            .map_err(classify)?;
        rows.into_iter().map(upload_info).collect()
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        let checksums = schema::json_text(&part.checksums)?;
        transaction!(self, tx => {
            let now = self.now();
            lock_upload(&mut tx, tenant, bucket, upload).await?;
            claim_pending(&mut tx, tenant, &[part.data.0]).await?;
            let replaced: Option<u64> =
                tx.exec_first(sql::PART_DATA, (upload.0, part.number)).await?;
            if let Some(old) = replaced {
                free_blobs(&mut tx, tenant.as_str().as_bytes(), &[old], now).await?;
            }
            tx.exec_drop(
                sql::PART_UPSERT,
                (
                    upload.0,
                    part.number,
                    part.data.0,
                    part.size,
                    bytes(&part.etag),
                    checksums.as_str(),
                    part.last_modified,
                ),
            )
            .await?;
        })
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = conn
            .exec_first(
                sql::UPLOAD_GET,
                (upload.0, bytes(tenant.as_str()), bytes(bucket.as_str())),
            )
            .await
            .map_err(classify)?;
        let Some(mut row) = row else {
            return Err(Error::not_found(Resource::Bucket, bucket));
        };
        let key: Option<Vec<u8>> = schema::column(&mut row, 1, "upload key")?;
        if key.is_none() {
            return Err(Error::not_found(Resource::Upload, upload));
        }
        let rows: Vec<Row> = conn
            .exec(sql::PART_LIST_PAGE, (upload.0, after, limit.get() as u64))
            .await
            .map_err(classify)?;
        rows.into_iter().map(part_record).collect()
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let used = blob_ids(&meta.segments);
        transaction!(self, tx => {
            let now = self.now();
            let id = lock_upload(&mut tx, tenant, bucket, upload).await?;
            let parts: Vec<(u32, u64)> = tx.exec(sql::PARTS_DATA, (upload.0,)).await?;
            let stored: HashMap<u64, u32> = parts.iter().map(|(n, d)| (*d, *n)).collect();
            if let Some(missing) = used.iter().find(|d| !stored.contains_key(d)) {
                return Err(Error::not_found(
                    Resource::Part,
                    format!("the part holding data blob {missing}"),
                )
                .into());
            }
            let previous = lock_object(&mut tx, id, &meta.key).await?;
            check_condition(previous.as_ref(), condition, &meta.key, now)?;
            let used: HashSet<u64> = used.iter().copied().collect();
            let unused: Vec<u64> = parts
                .iter()
                .map(|(_, d)| *d)
                .filter(|d| !used.contains(d))
                .collect();
            free_blobs(&mut tx, tenant.as_str().as_bytes(), &unused, now).await?;
            tx.exec_drop(sql::PARTS_DELETE, (upload.0,)).await?;
            tx.exec_drop(sql::UPLOAD_DELETE, (id, upload.0)).await?;
            commit_object(&mut tx, tenant, id, meta, previous, now).await?;
            let event = ChangeEvent::put(object_subject(bucket, &meta.key), None);
            self.append(&mut tx, tenant, &[event]).await?;
            recheck_bucket(&mut tx, tenant, bucket, id).await?;
        })
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        transaction!(self, tx => {
            let now = self.now();
            let id = lock_upload(&mut tx, tenant, bucket, upload).await?;
            abort_locked(&mut tx, tenant.as_str().as_bytes(), id, upload.0, now).await?;
        })
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        // As purge does, stay `purge_grace` behind: every process sharing the database reaps
        // for all of them, and their clocks may disagree.
        let grace = self.grace_millis();
        let abandoned_before = policy.abandoned_before.saturating_sub(grace);
        let freed_before = policy.freed_before.saturating_sub(grace);
        let mut removed = 0;

        // Deleted buckets old enough that no write can still be committing into them.
        loop {
            let due: Vec<(u64, Vec<u8>, i64)> = self
                .conn()
                .await?
                .exec(sql::DELETED_BUCKETS_DUE, (abandoned_before, BATCH))
                .await
                .map_err(classify)?;
            for (id, _tenant, deleted_at) in &due {
                self.empty_deleted_bucket(*id, *deleted_at).await?;
                self.conn()
                    .await?
                    .exec_drop(sql::DELETED_BUCKET_DELETE, (*id,))
                    .await
                    .map_err(classify)?;
            }
            if (due.len() as u64) < BATCH {
                break;
            }
        }

        // Abandoned uploads: aborted, and their parts' blobs (never readable) removed at once.
        loop {
            let due: Vec<(u64, u64)> = self
                .conn()
                .await?
                .exec(sql::UPLOADS_DUE, (abandoned_before, BATCH))
                .await
                .map_err(classify)?;
            for (bucket, upload) in &due {
                let now = self.now();
                if let Some((tenant, blobs)) = self.abort_by_id(*bucket, *upload, now).await? {
                    for data in blobs {
                        removed += self.remove_blob(&tenant, data).await?;
                    }
                }
            }
            if (due.len() as u64) < BATCH {
                break;
            }
        }

        // Abandoned pending blobs: freed (so nothing can commit or extend them) and removed.
        removed += self
            .for_each_due(
                sql::BLOBS_PENDING_DUE,
                abandoned_before,
                |tenant, data| async move {
                    let mut conn = self.conn().await?;
                    conn.exec_drop(sql::BLOB_FREE_ABANDONED, (&tenant, data, abandoned_before))
                        .await
                        .map_err(classify)?;
                    let freed = conn.affected_rows() > 0;
                    drop(conn);
                    if freed {
                        self.remove_blob(&tenant, data).await
                    } else {
                        Ok(0)
                    }
                },
            )
            .await?;

        // Freed blobs past their grace.
        removed += self
            .for_each_due(
                sql::BLOBS_FREED_DUE,
                freed_before,
                |tenant, data| async move { self.remove_blob(&tenant, data).await },
            )
            .await?;
        Ok(removed)
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        let total: Option<u64> = self
            .conn()
            .await?
            .exec_first(sql::STORED_BYTES, (bytes(tenant.as_str()),))
            .await
            .map_err(classify)?;
        Ok(total.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn previous(etag: &str, expires_at: Option<Timestamp>) -> Previous {
        Previous {
            etag: etag.to_owned(),
            expires_at,
            segments: Vec::new(),
        }
    }

    #[test]
    fn conditions_see_only_the_visible_object() {
        let key = ObjectKey::new("k".to_owned()).unwrap();
        let live = previous("abc", None);
        let expired = previous("abc", Some(10));
        let etag = Precondition::IfEtag("abc".to_owned());
        assert!(check_condition(Some(&live), &Precondition::None, &key, 20).is_ok());
        assert!(check_condition(Some(&live), &Precondition::IfAbsent, &key, 20).is_err());
        assert!(check_condition(Some(&expired), &Precondition::IfAbsent, &key, 20).is_ok());
        assert!(check_condition(None, &Precondition::IfAbsent, &key, 20).is_ok());
        assert!(check_condition(Some(&live), &etag, &key, 20).is_ok());
        assert!(check_condition(Some(&expired), &etag, &key, 20).is_err());
        assert!(check_condition(None, &etag, &key, 20).is_err());
        let other = Precondition::IfEtag("abd".to_owned());
        assert!(check_condition(Some(&live), &other, &key, 20).is_err());
    }

    #[test]
    fn batches_stay_within_the_blob_budget() {
        let seg = schema::SEGMENT_BYTES;
        assert_eq!(within_budget([seg; 100].into_iter()), 100);
        assert_eq!(within_budget([seg * 10_000; 3].into_iter()), 1);
        assert_eq!(
            within_budget([seg * 20_000, seg].into_iter()),
            1,
            "at least one"
        );
        assert_eq!(within_budget([seg * 9_999, seg, seg].into_iter()), 2);
        assert_eq!(within_budget(std::iter::empty()), 0);
    }

    #[test]
    fn blob_ids_are_distinct_in_order() {
        let seg = |d| Segment {
            data: DataId(d),
            size: 1,
        };
        assert_eq!(blob_ids(&[seg(3), seg(1), seg(3), seg(2)]), [3, 1, 2]);
    }
}
