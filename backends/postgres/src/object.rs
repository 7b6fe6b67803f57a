//! Objects (S3): buckets (`p8fs_buckets`), object records (`p8fs_objects`), multipart uploads and
//! their parts (`p8fs_uploads`, `p8fs_parts`), the states of data blobs that nothing owns
//! (`p8fs_blobs`: pending or freed) and the chunks of every blob (`p8fs_chunks`); the tables are
//! described in `migrations/0002_objects.sql`.
//!
//! Atomicity: committing an object ([`sql::OBJECT_COMMIT`]) and recording a part
//! ([`sql::PART_PUT`]) are single statements that check, claim the pending blobs, write, and free
//! what they replace; they lock the bucket or upload row `FOR KEY SHARE`, so `delete_bucket`,
//! completion and abort (transactions that lock those rows `FOR UPDATE` first) never race them.
//! A chunk is written only while its blob's pending row is locked `FOR SHARE`
//! ([`sql::CHUNK_WRITE`]), so no chunk outlives the pending state it was written in unnoticed.
//! The reaper works in bounded batches and removes a blob's chunks before its state row, so a
//! crash at any point leaves the blob for the next reap. Keys are `bytea`: listings order and
//! start by raw bytes.
//!
//! Changes: creating and deleting a bucket, committing an object and deleting a visible one
//! append their change in the statement that writes (`append_events` in `sql.rs`); a completion
//! appends the object's `Put` as the last statement of its transaction. Uploads, parts, blobs,
//! the reaper and purges append nothing: none of them changes what a reader sees.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};

use p8fs_core::object::MAX_BUCKETS;
use p8fs_core::{
    BucketInfo, BucketName, ChangeEvent, DataId, Error, Limit, ObjectAttributes, ObjectKey,
    ObjectMeta, ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Resource, Result,
    Segment, Subject, TenantId, Timestamp, UploadId, UploadInfo,
};

use crate::PgBackend;
use crate::change::append_changes;
use crate::error::{classify, corrupt};
use crate::schema::json_text;
use crate::sql;

/// How often a commit runs again when a concurrent writer created the row it meant to write
/// after its snapshot was taken (each attempt then sees the rows committed before it).
const COMMIT_ATTEMPTS: usize = 16;

/// What an object commit is part of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Commit {
    /// `put_object`: every segment's blob must be pending and stops being so, and the statement
    /// appends the object's `Put`.
    Put,
    /// `complete_upload`: the segments are the upload's parts, and the completion appends the
    /// `Put` itself once the upload is removed, as the last statement of its transaction.
    Completion,
}

/// Blobs (or uploads) the reaper takes per batch.
const REAP_BATCH: i64 = 256;

/// Chunks one statement removes (at most 64 MiB), so that removing a large blob is many short
/// statements rather than one long one.
const CHUNK_BATCH: i64 = 64;

/// The `since` of blobs that nothing can ever read (never committed, or parts of an upload the
/// reaper aborted): freed as of the earliest time, so any reap removes them.
const FREED_AT_ONCE: Timestamp = Timestamp::MIN;

/// An id as a bind parameter. Ids come from a bigint sequence; one beyond it was never issued,
/// so it becomes -1, which no row has.
fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

fn id_column(raw: i64, what: &'static str) -> Result<u64> {
    u64::try_from(raw).map_err(|_| corrupt(what))
}

/// A size as a bind parameter (sizes are at most 5 TiB).
fn size_param(size: u64, field: &'static str) -> Result<i64> {
    i64::try_from(size).map_err(|_| Error::invalid(field, "is too large"))
}

/// The bytes every key in the listing of `prefix` is below: the prefix with its last byte
/// incremented (the last byte of UTF-8 is below 0xF5, so it never overflows), or 0xFF, above every
/// UTF-8 string, for the empty prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return end;
        }
    }
    vec![0xFF]
}

/// `(kind, expected ETag)` of a precondition, as [`sql::OBJECT_COMMIT`] takes them.
fn condition_params(condition: &Precondition) -> (i16, &str) {
    match condition {
        Precondition::None => (0, ""),
        Precondition::IfAbsent => (1, ""),
        Precondition::IfEtag(etag) => (2, etag.as_str()),
    }
}

fn object_key(raw: Vec<u8>) -> Result<ObjectKey> {
    String::from_utf8(raw)
        .ok()
        .and_then(|key| ObjectKey::new(key).ok())
        .ok_or_else(|| corrupt("object key"))
}

/// A row of [`sql::OBJECT_GET`] or [`sql::OBJECT_LIST`], or `None` when its columns are NULL.
fn object_meta(row: &PgRow) -> Result<Option<ObjectMeta>> {
    let Some(key) = row.try_get::<Option<Vec<u8>>, _>(0).map_err(classify)? else {
        return Ok(None);
    };
    let data: Vec<i64> = row.try_get(6).map_err(classify)?;
    let sizes: Vec<i64> = row.try_get(7).map_err(classify)?;
    if data.len() != sizes.len() {
        return Err(corrupt("object segments"));
    }
    let segments = data
        .into_iter()
        .zip(sizes)
        .map(|(data, size)| {
            Ok(Segment {
                data: DataId(id_column(data, "data id")?),
                size: u64::try_from(size).map_err(|_| corrupt("segment size"))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let size: i64 = row.try_get(1).map_err(classify)?;
    let Json(attributes) = row
        .try_get::<Json<ObjectAttributes>, _>(5)
        .map_err(|_| corrupt("object attributes"))?;
    Ok(Some(ObjectMeta {
        key: object_key(key)?,
        size: u64::try_from(size).map_err(|_| corrupt("object size"))?,
        etag: row.try_get(2).map_err(classify)?,
        last_modified: row.try_get(3).map_err(classify)?,
        expires_at: row.try_get(4).map_err(classify)?,
        attributes,
        segments,
    }))
}

/// A row of [`sql::UPLOAD_GET`] or [`sql::UPLOAD_LIST`], or `None` when its columns are NULL.
fn upload_info(row: &PgRow) -> Result<Option<UploadInfo>> {
    let Some(id) = row.try_get::<Option<i64>, _>(0).map_err(classify)? else {
        return Ok(None);
    };
    let Json(attributes) = row
        .try_get::<Json<ObjectAttributes>, _>(3)
        .map_err(|_| corrupt("upload attributes"))?;
    Ok(Some(UploadInfo {
        id: UploadId(id_column(id, "upload id")?),
        key: object_key(row.try_get(1).map_err(classify)?)?,
        initiated: row.try_get(2).map_err(classify)?,
        attributes,
        expires_at: row.try_get(4).map_err(classify)?,
    }))
}

/// A row of [`sql::PART_LIST`], or `None` when its columns are NULL.
fn part_record(row: &PgRow) -> Result<Option<PartRecord>> {
    let Some(number) = row.try_get::<Option<i32>, _>(0).map_err(classify)? else {
        return Ok(None);
    };
    let size: i64 = row.try_get(2).map_err(classify)?;
    let Json(checksums) = row
        .try_get::<Json<_>, _>(4)
        .map_err(|_| corrupt("part checksums"))?;
    Ok(Some(PartRecord {
        number: u32::try_from(number).map_err(|_| corrupt("part number"))?,
        data: DataId(id_column(row.try_get(1).map_err(classify)?, "data id")?),
        size: u64::try_from(size).map_err(|_| corrupt("part size"))?,
        etag: row.try_get(3).map_err(classify)?,
        checksums,
        last_modified: row.try_get(5).map_err(classify)?,
    }))
}

impl PgBackend {
    /// Whether the tenant has the bucket (for the error of a call that found nothing else).
    async fn bucket_exists(&self, tenant: &TenantId, bucket: &BucketName) -> Result<bool> {
        Ok(ObjectStore::bucket(self, tenant, bucket).await?.is_some())
    }

    /// `NotFound(Upload)`, or `NotFound(Bucket)` when the bucket is what is missing.
    async fn upload_missing(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Error {
        match self.bucket_exists(tenant, bucket).await {
            Ok(true) => Error::not_found(Resource::Upload, upload),
            Ok(false) => Error::not_found(Resource::Bucket, bucket),
            Err(e) => e,
        }
    }

    /// Runs [`sql::OBJECT_COMMIT`] on `connection` until it writes or a check fails.
    async fn commit_object(
        &self,
        connection: &mut PgConnection,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
        commit: Commit,
    ) -> Result<()> {
        // A single PUT claims its pending blobs and appends its change in this statement.
        let (claim, append) = (commit == Commit::Put, commit == Commit::Put);
        let data: Vec<i64> = meta.segments.iter().map(|s| id_param(s.data.0)).collect();
        let sizes = meta
            .segments
            .iter()
            .map(|s| size_param(s.size, "segments"))
            .collect::<Result<Vec<_>>>()?;
        let size = size_param(meta.size, "size")?;
        let attributes = json_text(&meta.attributes)?;
        let (kind, etag) = condition_params(condition);
        for _ in 0..COMMIT_ATTEMPTS {
            let row = sqlx::query(sql::OBJECT_COMMIT)
                .bind(tenant.as_str())
                .bind(bucket.as_str())
                .bind(meta.key.as_str().as_bytes())
                .bind(size)
                .bind(&meta.etag)
                .bind(meta.last_modified)
                .bind(meta.expires_at)
                .bind(&attributes)
                .bind(&data)
                .bind(&sizes)
                .bind(self.now())
                .bind(kind)
                .bind(etag)
                .bind(claim)
                .bind(append)
                .bind(meta.key.as_str())
                .fetch_one(&mut *connection)
                .await
                .map_err(classify)?;
            let checks: (bool, bool, bool, bool) = (
                row.try_get(0).map_err(classify)?,
                row.try_get(1).map_err(classify)?,
                row.try_get(2).map_err(classify)?,
                row.try_get(3).map_err(classify)?,
            );
            match checks {
                (false, ..) => return Err(Error::not_found(Resource::Bucket, bucket)),
                (true, _, false, _) => {
                    return Err(Error::conflict(format!(
                        "the precondition on object {} does not hold",
                        meta.key
                    )));
                }
                (true, false, true, _) => {
                    return Err(Error::not_found(
                        Resource::Object,
                        format!("pending data of {}", meta.key),
                    ));
                }
                (true, true, true, true) => return Ok(()),
                // A concurrent writer created the key after this attempt's snapshot.
                (true, true, true, false) => {}
            }
        }
        Err(Error::unavailable(
            format!("object {} kept changing during the write", meta.key),
            None,
        ))
    }

    /// Removes freed blobs, chunks first (in batches), then their state rows; returns how many
    /// blobs were removed.
    async fn remove_blobs(&self, tenants: Vec<String>, data: Vec<i64>) -> Result<u64> {
        loop {
            let removed = sqlx::query(sql::BLOB_REMOVE_CHUNKS)
                .bind(&tenants)
                .bind(&data)
                .bind(CHUNK_BATCH)
                .execute(&self.pool)
                .await
                .map_err(classify)?
                .rows_affected();
            if removed < CHUNK_BATCH as u64 {
                break;
            }
        }
        Ok(sqlx::query(sql::BLOB_REMOVE)
            .bind(&tenants)
            .bind(&data)
            .execute(&self.pool)
            .await
            .map_err(classify)?
            .rows_affected())
    }

    /// Aborts an upload whose row `connection`'s transaction locked: removes it and its parts,
    /// freeing as of `since` the parts' blobs not in `kept`.
    async fn remove_upload(
        connection: &mut PgConnection,
        tenant: &str,
        bucket: &str,
        upload: i64,
        since: Timestamp,
        kept: &[i64],
    ) -> Result<()> {
        sqlx::query(sql::UPLOAD_REMOVE)
            .bind(tenant)
            .bind(bucket)
            .bind(upload)
            .bind(since)
            .bind(kept)
            .execute(&mut *connection)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The reaper's bound for a policy time: as given when the backend has no purge grace;
    /// otherwise no later than the grace before now, so that a reaper whose clock runs ahead of
    /// another gateway's does not take what that gateway still writes (as for purges).
    fn reap_bound(&self, at: Timestamp) -> Timestamp {
        if self.purge_grace == 0 {
            at
        } else {
            at.min(self.now().saturating_sub(self.purge_grace))
        }
    }

    /// Aborts the uploads initiated before `before`, one transaction each; their parts' blobs
    /// are freed for this reap to remove.
    async fn abort_abandoned_uploads(&self, before: Timestamp) -> Result<()> {
        loop {
            let rows = sqlx::query(sql::UPLOAD_ABANDONED)
                .bind(before)
                .bind(REAP_BATCH)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            for row in &rows {
                let tenant: String = row.try_get(0).map_err(classify)?;
                let bucket: String = row.try_get(1).map_err(classify)?;
                let id: i64 = row.try_get(2).map_err(classify)?;
                let mut tx = self.pool.begin().await.map_err(classify)?;
                let locked = sqlx::query(sql::UPLOAD_LOCK)
                    .bind(&tenant)
                    .bind(&bucket)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(classify)?;
                // Completed or aborted meanwhile: nothing left to do.
                if locked.is_some() {
                    Self::remove_upload(&mut tx, &tenant, &bucket, id, FREED_AT_ONCE, &[]).await?;
                }
                tx.commit().await.map_err(classify)?;
            }
            if rows.len() < REAP_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Physically removes expired object records in batches, freeing their blobs at now; the
    /// number of records removed.
    pub(crate) async fn purge_objects(&self, expired_by: Timestamp) -> Result<u64> {
        let mut removed = 0;
        loop {
            let done: i64 = sqlx::query_scalar(sql::OBJECT_PURGE)
                .bind(expired_by)
                .bind(REAP_BATCH)
                .bind(self.now())
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
            removed += done as u64;
            if done < REAP_BATCH {
                return Ok(removed);
            }
        }
    }
}

#[async_trait]
impl ObjectStore for PgBackend {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        let now = self.now();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(sql::BUCKET_CREATE_LOCK)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let row = sqlx::query(sql::BUCKET_CREATE)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(now)
            .bind(MAX_BUCKETS as i64)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        let existing: bool = row.try_get(0).map_err(classify)?;
        let count: i64 = row.try_get(1).map_err(classify)?;
        let created: bool = row.try_get(2).map_err(classify)?;
        if existing {
            return Err(Error::already_exists(Resource::Bucket, bucket));
        }
        if !created {
            return Err(Error::invalid(
                "bucket",
                format!("the tenant has {count} buckets; at most {MAX_BUCKETS} are allowed"),
            ));
        }
        Ok(BucketInfo {
            name: bucket.clone(),
            created_at: now,
        })
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        let created_at: Option<i64> = sqlx::query_scalar(sql::BUCKET_GET)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(created_at.map(|created_at| BucketInfo {
            name: bucket.clone(),
            created_at,
        }))
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        let rows = sqlx::query(sql::BUCKET_LIST)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).map_err(classify)?;
                Ok(BucketInfo {
                    name: BucketName::new(name).map_err(|_| corrupt("bucket name"))?,
                    created_at: row.try_get(1).map_err(classify)?,
                })
            })
            .collect()
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        let now = self.now();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let locked = sqlx::query(sql::BUCKET_LOCK)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if locked.is_none() {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        // A new statement, so its snapshot sees every write that held the bucket before the lock.
        let row = sqlx::query(sql::BUCKET_CHECK_EMPTY)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        let occupied: bool = row.try_get(0).map_err(classify)?;
        if occupied {
            return Err(Error::conflict(format!("bucket {bucket} is not empty")));
        }
        sqlx::query(sql::BUCKET_DELETE)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        let raw: i64 = sqlx::query_scalar(sql::BLOB_BEGIN)
            .bind(tenant.as_str())
            .bind(self.now())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(DataId(id_column(raw, "data id")?))
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()> {
        if bytes.len() > p8fs_core::object::MAX_STORED_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                format!(
                    "is {} bytes; at most {} are allowed",
                    bytes.len(),
                    p8fs_core::object::MAX_STORED_CHUNK_BYTES
                ),
            ));
        }
        let written = sqlx::query(sql::CHUNK_WRITE)
            .bind(tenant.as_str())
            .bind(id_param(data.0))
            .bind(i64::from(index))
            .bind(bytes)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match written {
            Some(_) => Ok(()),
            None => Err(Error::not_found(
                Resource::Object,
                format!("pending data {}", data.0),
            )),
        }
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(sql::CHUNK_READ)
            .bind(tenant.as_str())
            .bind(id_param(data.0))
            .bind(i64::from(index))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        bytes.ok_or_else(|| {
            Error::not_found(
                Resource::Object,
                format!("chunk {index} of data {}", data.0),
            )
        })
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        let id = id_param(data.0);
        let freed = sqlx::query(sql::BLOB_DISCARD)
            .bind(tenant.as_str())
            .bind(id)
            .bind(FREED_AT_ONCE)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        if freed.is_some() {
            // Freed first, so if this stops halfway the reaper finishes the job.
            self.remove_blobs(vec![tenant.as_str().to_owned()], vec![id])
                .await?;
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
        let mut connection = self.pool.acquire().await.map_err(classify)?;
        self.commit_object(
            &mut connection,
            tenant,
            bucket,
            meta,
            condition,
            Commit::Put,
        )
        .await
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        let row = sqlx::query(sql::OBJECT_GET)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(key.as_str().as_bytes())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match row {
            None => Err(Error::not_found(Resource::Bucket, bucket)),
            Some(row) => object_meta(&row),
        }
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        let row = sqlx::query(sql::OBJECT_DELETE)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(key.as_str().as_bytes())
            .bind(self.now())
            .bind(key.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let found: bool = row.try_get(0).map_err(classify)?;
        if !found {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        row.try_get(1).map_err(classify)
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        let start = from.max(prefix.as_str().as_bytes());
        let rows = sqlx::query(sql::OBJECT_LIST)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(start)
            .bind(prefix_end(prefix.as_str()))
            .bind(self.now())
            .bind(limit.get() as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        let mut objects = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(meta) = object_meta(row)? {
                objects.push(meta);
            }
        }
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
        let now = self.now();
        // A missing bucket fails the foreign key: `NotFound(Bucket)`.
        let raw: i64 = sqlx::query_scalar(sql::UPLOAD_CREATE)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(key.as_str().as_bytes())
            .bind(now)
            .bind(json_text(attributes)?)
            .bind(expires_at)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        Ok(UploadInfo {
            id: UploadId(id_column(raw, "upload id")?),
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
        let row = sqlx::query(sql::UPLOAD_GET)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(id_param(upload.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match row {
            None => Err(Error::not_found(Resource::Bucket, bucket)),
            Some(row) => upload_info(&row),
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
        // Every key is above the empty string, so "after nothing" is after ("", any id).
        let (after_key, after_id) = after.map_or((&[][..], i64::MIN), |(key, id)| {
            (
                key.as_str().as_bytes(),
                i64::try_from(id.0).unwrap_or(i64::MAX),
            )
        });
        let rows = sqlx::query(sql::UPLOAD_LIST)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(prefix.as_str().as_bytes())
            .bind(prefix_end(prefix.as_str()))
            .bind(after_key)
            .bind(after_id)
            .bind(limit.get() as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        let mut uploads = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(info) = upload_info(row)? {
                uploads.push(info);
            }
        }
        Ok(uploads)
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        let number = i32::try_from(part.number)
            .map_err(|_| Error::invalid("partNumber", "must be 1 to 10000"))?;
        let size = size_param(part.size, "size")?;
        let checksums = json_text(&part.checksums)?;
        for _ in 0..COMMIT_ATTEMPTS {
            let row = sqlx::query(sql::PART_PUT)
                .bind(tenant.as_str())
                .bind(bucket.as_str())
                .bind(id_param(upload.0))
                .bind(number)
                .bind(id_param(part.data.0))
                .bind(size)
                .bind(&part.etag)
                .bind(&checksums)
                .bind(part.last_modified)
                .bind(self.now())
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
            let checks: (bool, bool, bool, bool) = (
                row.try_get(0).map_err(classify)?,
                row.try_get(1).map_err(classify)?,
                row.try_get(2).map_err(classify)?,
                row.try_get(3).map_err(classify)?,
            );
            match checks {
                (false, ..) => return Err(Error::not_found(Resource::Bucket, bucket)),
                (true, false, ..) => return Err(Error::not_found(Resource::Upload, upload)),
                (true, true, false, _) => {
                    return Err(Error::not_found(
                        Resource::Object,
                        format!("pending data {}", part.data.0),
                    ));
                }
                (true, true, true, true) => return Ok(()),
                // A concurrent writer created the part after this attempt's snapshot.
                (true, true, true, false) => {}
            }
        }
        Err(Error::unavailable(
            format!("part {} kept changing during the write", part.number),
            None,
        ))
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        let rows = sqlx::query(sql::PART_LIST)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(id_param(upload.0))
            .bind(i64::from(after))
            .bind(limit.get() as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() {
            return Err(self.upload_missing(tenant, bucket, upload).await);
        }
        let mut parts = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(part) = part_record(row)? {
                parts.push(part);
            }
        }
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
        let id = id_param(upload.0);
        let used: Vec<i64> = meta.segments.iter().map(|s| id_param(s.data.0)).collect();
        let mut distinct = used.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        // The bucket first, then the upload: the lock order of every writer (see `sql.rs`).
        let bucket_found = sqlx::query(sql::BUCKET_SHARE)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if bucket_found.is_none() {
            return Err(Error::not_found(Resource::Bucket, bucket));
        }
        let key: Option<Vec<u8>> = sqlx::query_scalar(sql::UPLOAD_LOCK)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        match key {
            None => return Err(Error::not_found(Resource::Upload, upload)),
            Some(key) if key != meta.key.as_str().as_bytes() => {
                return Err(Error::invalid(
                    "key",
                    format!("is not the key of upload {upload}"),
                ));
            }
            Some(_) => {}
        }
        let holding: i64 = sqlx::query_scalar(sql::UPLOAD_PARTS_HOLDING)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(id)
            .bind(&distinct)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if holding != distinct.len() as i64 {
            return Err(Error::not_found(
                Resource::Part,
                format!("a part of upload {upload} named in the completion"),
            ));
        }
        self.commit_object(&mut tx, tenant, bucket, meta, condition, Commit::Completion)
            .await?;
        let now = self.now();
        Self::remove_upload(
            &mut tx,
            tenant.as_str(),
            bucket.as_str(),
            id,
            now,
            &distinct,
        )
        .await?;
        let subject = Subject::Object {
            bucket: bucket.clone(),
            key: meta.key.clone(),
        };
        append_changes(&mut tx, tenant, now, &[ChangeEvent::put(subject, None)]).await?;
        tx.commit().await.map_err(classify)
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        let id = id_param(upload.0);
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let locked = sqlx::query(sql::UPLOAD_LOCK)
            .bind(tenant.as_str())
            .bind(bucket.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        if locked.is_none() {
            drop(tx);
            return Err(self.upload_missing(tenant, bucket, upload).await);
        }
        Self::remove_upload(
            &mut tx,
            tenant.as_str(),
            bucket.as_str(),
            id,
            self.now(),
            &[],
        )
        .await?;
        tx.commit().await.map_err(classify)
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        let abandoned_before = self.reap_bound(policy.abandoned_before);
        let freed_before = self.reap_bound(policy.freed_before);
        self.abort_abandoned_uploads(abandoned_before).await?;
        loop {
            let abandoned = sqlx::query(sql::BLOB_ABANDON)
                .bind(abandoned_before)
                .bind(FREED_AT_ONCE)
                .bind(REAP_BATCH)
                .execute(&self.pool)
                .await
                .map_err(classify)?
                .rows_affected();
            if abandoned < REAP_BATCH as u64 {
                break;
            }
        }
        let mut removed = 0;
        loop {
            let rows = sqlx::query(sql::BLOB_FREED)
                .bind(freed_before)
                .bind(REAP_BATCH)
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            let mut tenants = Vec::with_capacity(rows.len());
            let mut data = Vec::with_capacity(rows.len());
            for row in &rows {
                tenants.push(row.try_get::<String, _>(0).map_err(classify)?);
                data.push(row.try_get::<i64, _>(1).map_err(classify)?);
            }
            removed += self.remove_blobs(tenants, data).await?;
            if rows.len() < REAP_BATCH as usize {
                return Ok(removed);
            }
        }
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(sql::CHUNK_STORED_BYTES)
            .bind(tenant.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        u64::try_from(bytes).map_err(|_| corrupt("stored bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_exactly_the_prefixed_keys() {
        assert_eq!(prefix_end(""), vec![0xFF]);
        assert_eq!(prefix_end("a/"), b"a0".to_vec());
        let end = prefix_end("é");
        for (inside, outside) in [("éz", "ê"), ("é\u{10FFFF}", "\u{100}")] {
            assert!(inside.as_bytes() >= "é".as_bytes() && inside.as_bytes() < end.as_slice());
            assert!(outside.as_bytes() >= end.as_slice());
        }
        assert!("\u{10FFFF}".repeat(3).as_bytes() < prefix_end("").as_slice());
    }

    #[test]
    fn ids_beyond_the_sequence_match_no_row() {
        assert_eq!(id_param(7), 7);
        assert_eq!(id_param(u64::MAX), -1);
    }
}
