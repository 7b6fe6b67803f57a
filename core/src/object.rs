//! The object capability (S3 semantics): buckets per tenant, objects stored as chunked data
//! blobs, multipart uploads, and the reaper that reclaims what a crash or an abandoned upload left
//! behind.
//!
//! How an object is written, on every backend:
//! 1. [`ObjectStore::begin_data`] registers a *pending* data blob (invisible, owned by nothing);
//! 2. [`ObjectStore::write_chunk`] stores its chunks, each [`CHUNK_BYTES`] long except the last;
//! 3. [`ObjectStore::put_object`] (or [`ObjectStore::complete_upload`]) commits the object's
//!    metadata, whose segments name the blobs, and clears their pending mark, in one atomic step.
//!    The blobs of the object it replaces are *freed* in the same step.
//!
//! So an object is visible only when completely written, and a crash at any point leaves at worst
//! pending or freed blobs, which [`ObjectStore::reap_objects`] removes once they are older than
//! its policy says. Freed blobs outlive their object for a grace period, so a read that began
//! before an overwrite or a delete finishes with the bytes it started with.
//!
//! Semantics that must not drift between backends are free functions here: [`ObjectWriter`]
//! (chunking and the MD5 ETag), [`list_objects_v2`] (delimiters, common prefixes, cursors),
//! [`plan_completion`] (multipart part-list validation and the multipart ETag),
//! [`chunk_reads`] (byte ranges to chunk reads) and [`check_read_preconditions`].

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Resource, Result};
use crate::types::{BucketName, Limit, ObjectKey, ObjectPrefix, TenantId, Timestamp, is_visible};

/// The size of every chunk of a data blob except its last.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// The largest chunk a backend stores: [`CHUNK_BYTES`] of data plus what the sealing layer adds
/// to each chunk ([`crate::sealed::CHUNK_OVERHEAD`]), with room to spare.
pub const MAX_STORED_CHUNK_BYTES: usize = CHUNK_BYTES + 256;
/// Most buckets one tenant may own.
pub const MAX_BUCKETS: usize = 1000;
/// Largest object, as in S3 (5 TiB).
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Largest single PUT or upload part, as in S3 (5 GiB).
pub const MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part of a multipart upload, except its last.
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Highest part number, as in S3.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Largest user metadata (names and values, as S3 counts them).
pub const MAX_USER_METADATA_BYTES: usize = 2 * 1024;
/// Largest total of every attribute of an object (headers, metadata, checksums).
pub const MAX_ATTRIBUTE_BYTES: usize = 8 * 1024;

/// A data blob: the chunks of one single PUT or one upload part. Allocated by the backend,
/// unique for the life of the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct DataId(pub u64);

/// A multipart upload. Allocated by the backend, unique for the life of the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct UploadId(pub u64);

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl UploadId {
    /// Parses the wire form written by `Display` (16 lowercase hex digits).
    pub fn parse(value: &str) -> Result<Self> {
        let ok = value.len() == 16
            && value
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match u64::from_str_radix(value, 16) {
            Ok(id) if ok => Ok(UploadId(id)),
            _ => Err(Error::invalid(
                "uploadId",
                "is not an upload id of this server",
            )),
        }
    }
}

/// A bucket.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BucketInfo {
    pub name: BucketName,
    pub created_at: Timestamp,
}

/// One piece of an object's bytes: a whole data blob.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Segment {
    pub data: DataId,
    pub size: u64,
}

/// The stored header that marks an object whose bytes are encrypted with a key only its client
/// holds (S3's SSE-C; its value is the algorithm, `AES256`). The S3 front-end writes it; every
/// other reader asks [`ObjectAttributes::client_held_key`].
pub const CLIENT_KEY_HEADER: &str = "x-amz-server-side-encryption-customer-algorithm";

/// What an object carries besides its bytes, as the client sent it.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct ObjectAttributes {
    /// `Content-Type`; `None` when the client sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Other stored HTTP headers (`Cache-Control`, `Content-Disposition`, `Content-Encoding`,
    /// `Content-Language`, `Expires`), lower-case names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// User metadata (`x-amz-meta-*` without the prefix), lower-case names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Checksums by algorithm name (`CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`), base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
}

impl ObjectAttributes {
    /// Whether the object's bytes are encrypted with a key only its client holds (S3's SSE-C,
    /// marked by [`CLIENT_KEY_HEADER`]). To every reader without that key they are ciphertext:
    /// only the S3 front-end, given the key, serves them; nothing indexes or extracts them.
    pub fn client_held_key(&self) -> bool {
        self.headers.contains_key(CLIENT_KEY_HEADER)
    }

    /// Checks the attribute limits, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        let metadata: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if metadata > MAX_USER_METADATA_BYTES {
            return Err(Error::invalid(
                "metadata",
                format!("is {metadata} bytes; at most {MAX_USER_METADATA_BYTES} are allowed"),
            ));
        }
        let total = metadata
            + self.content_type.as_ref().map_or(0, String::len)
            + self
                .headers
                .iter()
                .chain(&self.checksums)
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if total > MAX_ATTRIBUTE_BYTES {
            return Err(Error::invalid(
                "headers",
                format!("total {total} bytes; at most {MAX_ATTRIBUTE_BYTES} are allowed"),
            ));
        }
        let all = self.content_type.iter().chain(
            self.headers
                .iter()
                .chain(&self.metadata)
                .chain(&self.checksums)
                .flat_map(|(k, v)| [k, v]),
        );
        for text in all {
            if text.contains('\0') {
                return Err(Error::invalid("metadata", "must not contain U+0000"));
            }
        }
        Ok(())
    }
}

/// A committed object.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectMeta {
    pub key: ObjectKey,
    pub size: u64,
    /// Without quotes: the MD5 in hex for a single PUT, `md5(part md5s)-N` for a multipart one.
    pub etag: String,
    pub last_modified: Timestamp,
    /// When the object stops being visible; `None` is forever.
    pub expires_at: Option<Timestamp>,
    pub attributes: ObjectAttributes,
    /// The blobs holding the bytes, in order; their sizes sum to `size`.
    pub segments: Vec<Segment>,
}

impl ObjectMeta {
    /// Whether the object's bytes are encrypted with a key only its client holds (see
    /// [`ObjectAttributes::client_held_key`]).
    pub fn client_held_key(&self) -> bool {
        self.attributes.client_held_key()
    }

    /// For a front-end that cannot carry the client's key (REST, gRPC, MCP, indexing): `Ok`
    /// when the object's bytes may be served as they are, `Forbidden` saying why when they are
    /// encrypted with a key only its client holds.
    pub fn refuse_client_held_key(&self) -> Result<()> {
        if self.client_held_key() {
            return Err(Error::Forbidden(
                "the object is encrypted with a key its client holds (SSE-C); only the S3 API, \
                 with that key, can read it"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// A stored part of a multipart upload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PartRecord {
    /// 1..=10,000.
    pub number: u32,
    pub data: DataId,
    pub size: u64,
    /// The part's MD5 in hex, without quotes.
    pub etag: String,
    /// Checksums of the part by algorithm name, base64.
    pub checksums: BTreeMap<String, String>,
    pub last_modified: Timestamp,
}

/// A multipart upload in progress.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct UploadInfo {
    pub id: UploadId,
    pub key: ObjectKey,
    pub initiated: Timestamp,
    /// The attributes the completed object will carry.
    pub attributes: ObjectAttributes,
    /// The expiry the completed object will carry.
    pub expires_at: Option<Timestamp>,
}

/// A condition a write checks atomically with itself.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum Precondition {
    /// Write unconditionally.
    #[default]
    None,
    /// Write only if no visible object exists at the key (`If-None-Match: *`).
    IfAbsent,
    /// Write only if the visible object has this ETag (`If-Match`), unquoted.
    IfEtag(String),
}

/// What the reaper removes: pending blobs and multipart uploads begun before `abandoned_before`,
/// and freed blobs freed before `freed_before`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReapPolicy {
    pub abandoned_before: Timestamp,
    pub freed_before: Timestamp,
}

/// Object storage. Every method is scoped to one tenant and sees only objects visible at the
/// backend clock's `now` (`now < expires_at`). Methods addressing a bucket fail with
/// `NotFound(Bucket)` when the tenant has no such bucket.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Creates a bucket; `AlreadyExists(Bucket)` if the tenant has one of that name,
    /// `InvalidInput` (field `bucket`) if the tenant already has [`MAX_BUCKETS`].
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo>;

    /// The bucket, or `None`.
    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>>;

    /// The tenant's buckets, names ascending.
    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>>;

    /// Deletes an empty bucket: `Conflict` if it holds a visible object. Its multipart uploads
    /// are aborted with it.
    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()>;

    /// Registers a new pending data blob, begun now.
    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId>;

    /// Stores chunk `index` of a pending blob (at most [`CHUNK_BYTES`]); rewriting a chunk
    /// replaces it. `NotFound(Object)` if the blob is not pending.
    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()>;

    /// Chunk `index` of a blob; `NotFound(Object)` if it is gone (reaped).
    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>>;

    /// Removes a pending blob and its chunks now (an upload that failed); a blob that is not
    /// pending is left alone.
    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()>;

    /// Commits `meta` at `meta.key` if `condition` holds (else `Conflict`, changing nothing),
    /// replacing any object there. Atomically: the segments' blobs stop being pending (each must
    /// be pending, else `NotFound(Object)`), and the replaced object's blobs are freed.
    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()>;

    /// The visible object at `key`, or `None`.
    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>>;

    /// Deletes the object and frees its blobs; returns whether a visible object existed.
    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool>;

    /// Visible objects whose key starts with `prefix` and whose key bytes are `>= from`, keys
    /// ascending by raw bytes, at most `limit`. `from` is raw bytes and need not be UTF-8.
    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>>;

    /// Starts a multipart upload for `key`.
    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo>;

    /// The upload, or `None` (completed, aborted, reaped, or never begun).
    async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<Option<UploadInfo>>;

    /// Uploads whose key starts with `prefix`, ordered by key bytes then id, strictly after
    /// `after`, at most `limit`.
    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>>;

    /// Records a part, replacing (and freeing) a part of the same number. The part's blob must
    /// be pending (else `NotFound(Object)`) and stops being so. `NotFound(Upload)` if the upload
    /// is gone.
    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()>;

    /// Parts numbered above `after`, ascending, at most `limit`. `NotFound(Upload)` if the
    /// upload is gone.
    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>>;

    /// Completes an upload: commits `meta` as [`ObjectStore::put_object`] does (same
    /// `condition`), removes the upload, and frees the blobs of its parts that `meta` does not
    /// use. `NotFound(Upload)` if the upload is gone; `NotFound(Part)` if a segment of `meta` is
    /// not the blob of one of its parts (a part was replaced meanwhile).
    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()>;

    /// Aborts an upload and frees its parts' blobs. `NotFound(Upload)` if it is gone.
    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()>;

    /// Across all tenants, removes pending blobs and uploads older than the policy allows (with
    /// their parts' blobs) and freed blobs, chunks included. Returns how many blobs were removed.
    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64>;

    /// The bytes of every chunk the tenant stores, whatever state its blob is in.
    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64>;
}

/// The MD5 of some bytes, in lower-case hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// Bytes in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of a hex string, `None` when it is not one.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A blob written by an [`ObjectWriter`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WrittenData {
    pub data: DataId,
    pub size: u64,
    /// The MD5 of the bytes, in hex: the ETag of a single PUT and of an upload part.
    pub md5: String,
}

impl WrittenData {
    /// The blob as an object segment.
    pub fn segment(&self) -> Segment {
        Segment {
            data: self.data,
            size: self.size,
        }
    }
}

/// Streams bytes into a new pending blob in [`CHUNK_BYTES`] chunks, computing their MD5, and
/// refuses more than `max_bytes`. Memory is one chunk, whatever the size written.
pub struct ObjectWriter<'a> {
    store: &'a dyn ObjectStore,
    tenant: &'a TenantId,
    data: DataId,
    buffer: Vec<u8>,
    next_index: u32,
    size: u64,
    max_bytes: u64,
    md5: Md5,
}

impl<'a> ObjectWriter<'a> {
    /// Begins a pending blob.
    pub async fn begin(
        store: &'a dyn ObjectStore,
        tenant: &'a TenantId,
        max_bytes: u64,
    ) -> Result<Self> {
        let data = store.begin_data(tenant).await?;
        Ok(Self {
            store,
            tenant,
            data,
            buffer: Vec::new(),
            next_index: 0,
            size: 0,
            max_bytes,
            md5: Md5::new(),
        })
    }

    /// The blob being written.
    pub fn data(&self) -> DataId {
        self.data
    }

    /// Appends bytes, storing every chunk that fills up. `InvalidInput` (field `body`) past
    /// `max_bytes`.
    pub async fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        if self.size.saturating_add(len) > self.max_bytes {
            return Err(Error::invalid(
                "body",
                format!("is larger than the limit of {} bytes", self.max_bytes),
            ));
        }
        self.size += len;
        self.md5.update(bytes);
        while !bytes.is_empty() {
            if self.buffer.is_empty() && bytes.len() >= CHUNK_BYTES {
                let (chunk, rest) = bytes.split_at(CHUNK_BYTES);
                self.store_chunk(chunk).await?;
                bytes = rest;
                continue;
            }
            let take = (CHUNK_BYTES - self.buffer.len()).min(bytes.len());
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(CHUNK_BYTES);
            }
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == CHUNK_BYTES {
                let chunk = std::mem::take(&mut self.buffer);
                self.store_chunk(&chunk).await?;
                self.buffer = chunk;
                self.buffer.clear();
            }
        }
        Ok(())
    }

    async fn store_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.store
            .write_chunk(self.tenant, self.data, self.next_index, chunk)
            .await?;
        self.next_index += 1;
        Ok(())
    }

    /// Stores the last chunk and returns the blob, still pending: the caller commits it with
    /// [`ObjectStore::put_object`] or [`ObjectStore::put_part`], or discards it.
    pub async fn finish(mut self) -> Result<WrittenData> {
        if !self.buffer.is_empty() {
            let chunk = std::mem::take(&mut self.buffer);
            self.store_chunk(&chunk).await?;
        }
        Ok(WrittenData {
            data: self.data,
            size: self.size,
            md5: hex(&self.md5.finalize()),
        })
    }
}

/// One chunk read that serves part of a byte range: bytes `start..end` of chunk `index` of `data`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChunkRead {
    pub data: DataId,
    pub index: u32,
    pub start: usize,
    pub end: usize,
}

/// The chunk reads that yield bytes `start..end` of an object made of `segments`, in order.
/// `end` is clamped to the object's size.
pub fn chunk_reads(segments: &[Segment], start: u64, end: u64) -> Vec<ChunkRead> {
    let mut reads = Vec::new();
    let mut base = 0u64;
    let chunk = CHUNK_BYTES as u64;
    for segment in segments {
        let seg_start = base;
        let seg_end = base + segment.size;
        base = seg_end;
        let from = start.max(seg_start);
        let to = end.min(seg_end);
        if from >= to {
            continue;
        }
        let (from, to) = (from - seg_start, to - seg_start);
        let mut index = from / chunk;
        while index * chunk < to {
            let chunk_start = index * chunk;
            reads.push(ChunkRead {
                data: segment.data,
                index: index as u32,
                start: (from.max(chunk_start) - chunk_start) as usize,
                end: (to.min(chunk_start + chunk) - chunk_start) as usize,
            });
            index += 1;
        }
    }
    reads
}

/// A byte range as a client asks for it (`Range: bytes=...`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ByteRange {
    /// `bytes=first-` or `bytes=first-last` (inclusive).
    FromTo { first: u64, last: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// The half-open range `start..end` this selects from an object of `size` bytes, or
    /// `InvalidInput` (field `range`) when it is not satisfiable (S3's `InvalidRange`).
    pub fn resolve(self, size: u64) -> Result<(u64, u64)> {
        let unsatisfiable = || {
            Error::invalid(
                "range",
                format!("is not satisfiable for an object of {size} bytes"),
            )
        };
        match self {
            ByteRange::FromTo { first, last } => {
                if first >= size {
                    return Err(unsatisfiable());
                }
                if last.is_some_and(|l| l < first) {
                    return Err(Error::invalid("range", "ends before it starts"));
                }
                let end = last.map_or(size, |l| l.saturating_add(1).min(size));
                Ok((first, end))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(unsatisfiable());
                }
                Ok((size.saturating_sub(n), size))
            }
        }
    }
}

/// The conditions of a read (`If-Match`, `If-None-Match`, `If-Modified-Since`,
/// `If-Unmodified-Since`). ETags are unquoted; `*` in `if_match` matches any object.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ReadPreconditions {
    pub if_match: Option<Vec<String>>,
    pub if_none_match: Option<Vec<String>>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

/// The outcome of [`check_read_preconditions`] when the read must not return the object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadRefusal {
    /// 412 Precondition Failed.
    PreconditionFailed,
    /// 304 Not Modified.
    NotModified,
}

/// Evaluates read conditions against an object as RFC 9110 §13.2.2 orders them (and as S3 does:
/// `If-Match` true makes `If-Unmodified-Since` irrelevant, `If-None-Match` false makes
/// `If-Modified-Since` irrelevant). Dates have second precision, like HTTP dates.
pub fn check_read_preconditions(
    meta: &ObjectMeta,
    conditions: &ReadPreconditions,
) -> std::result::Result<(), ReadRefusal> {
    let matches = |tags: &[String]| tags.iter().any(|t| t == "*" || *t == meta.etag);
    let modified_secs = meta.last_modified.div_euclid(1000);
    match &conditions.if_match {
        Some(tags) if !matches(tags) => return Err(ReadRefusal::PreconditionFailed),
        Some(_) => {}
        None => {
            if let Some(since) = conditions.if_unmodified_since
                && modified_secs > since.div_euclid(1000)
            {
                return Err(ReadRefusal::PreconditionFailed);
            }
        }
    }
    match &conditions.if_none_match {
        Some(tags) if matches(tags) => return Err(ReadRefusal::NotModified),
        Some(_) => {}
        None => {
            if let Some(since) = conditions.if_modified_since
                && modified_secs <= since.div_euclid(1000)
            {
                return Err(ReadRefusal::NotModified);
            }
        }
    }
    Ok(())
}

/// One page of [`list_objects_v2`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ObjectListing {
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes (each ends with the delimiter), ascending.
    pub common_prefixes: Vec<String>,
    /// Where the next page starts (raw key bytes, inclusive), `Some` exactly when the listing
    /// is truncated. Front-ends encode it as their continuation token.
    pub next_from: Option<Vec<u8>>,
}

/// Where a listing that shall return keys strictly after `key` starts.
pub fn from_after(key: &str) -> Vec<u8> {
    let mut from = key.as_bytes().to_vec();
    from.push(0);
    from
}

/// Where a listing that shall skip every key starting with `prefix` starts: the smallest byte
/// string above all of them (for a non-empty UTF-8 prefix the last byte is below 0xF5, so
/// incrementing it never overflows).
pub fn after_prefix(prefix: &str) -> Vec<u8> {
    let mut from = prefix.as_bytes().to_vec();
    if let Some(last) = from.last_mut() {
        *last += 1;
    }
    from
}

/// ListObjectsV2: visible objects under `prefix` from `from` (raw bytes, inclusive; a
/// continuation or `from_after(start_after)`), with keys that hold `delimiter` after the prefix
/// rolled up into common prefixes (an empty delimiter is none, as in S3). Keys and common
/// prefixes together number at most `max_keys` (0..=1000); `next_from` is `Some` exactly when
/// more follow.
pub async fn list_objects_v2(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    bucket: &BucketName,
    prefix: &ObjectPrefix,
    delimiter: Option<&str>,
    from: &[u8],
    max_keys: u32,
) -> Result<ObjectListing> {
    if max_keys > crate::validate::MAX_PAGE_SIZE {
        return Err(Error::invalid("max-keys", "must be at most 1000"));
    }
    // An empty delimiter is no delimiter, as S3 treats it (rclone sends `delimiter=`).
    let delimiter = delimiter.filter(|d| !d.is_empty());
    if delimiter.is_some_and(|d| d.contains('\0') || d.len() > 1024) {
        return Err(Error::invalid(
            "delimiter",
            "must be at most 1024 bytes without U+0000",
        ));
    }
    // The bucket must exist even when nothing is asked for.
    if store.bucket(tenant, bucket).await?.is_none() {
        return Err(Error::not_found(Resource::Bucket, bucket));
    }
    let mut listing = ObjectListing::default();
    if max_keys == 0 {
        return Ok(listing);
    }
    let wanted = max_keys as usize;
    let mut from = from.to_vec();
    if from.as_slice() < prefix.as_bytes() {
        from = prefix.as_bytes().to_vec();
    }
    loop {
        let page = store
            .list_objects(tenant, bucket, prefix, &from, Limit::MAX)
            .await?;
        let exhausted = page.len() < Limit::MAX.get();
        let mut restart = None;
        for meta in page {
            let key = meta.key.as_str();
            let rolled = delimiter.and_then(|d| {
                let rest = &key[prefix.as_str().len()..];
                rest.find(d)
                    .map(|at| key[..prefix.as_str().len() + at + d.len()].to_string())
            });
            let count = listing.objects.len() + listing.common_prefixes.len();
            if count == wanted {
                listing.next_from = Some(match &rolled {
                    Some(common) => common.as_bytes().to_vec(),
                    None => key.as_bytes().to_vec(),
                });
                return Ok(listing);
            }
            match rolled {
                Some(common) => {
                    let next = after_prefix(&common);
                    listing.common_prefixes.push(common);
                    restart = Some(next);
                    break;
                }
                None => {
                    from = from_after(key);
                    listing.objects.push(meta);
                }
            }
        }
        match restart {
            Some(next) => from = next,
            None if exhausted => return Ok(listing),
            None => {}
        }
    }
}

/// The reason [`plan_completion`] refuses a part list, each an S3 error of its own.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CompletionError {
    /// The list is empty or longer than 10,000 (`MalformedXML`).
    NoParts,
    /// Part numbers are not strictly ascending (`InvalidPartOrder`).
    InvalidPartOrder,
    /// Part `number` was not uploaded or its ETag differs (`InvalidPart`).
    InvalidPart { number: u32 },
    /// Part `number`, not the last, is below [`MIN_PART_BYTES`] (`EntityTooSmall`).
    EntityTooSmall { number: u32 },
    /// The object would exceed [`MAX_OBJECT_BYTES`] (`EntityTooLarge`).
    EntityTooLarge,
}

impl From<CompletionError> for Error {
    fn from(e: CompletionError) -> Self {
        match e {
            CompletionError::NoParts => Error::invalid("parts", "must list 1 to 10000 parts"),
            CompletionError::InvalidPartOrder => {
                Error::invalid("parts", "part numbers must be strictly ascending")
            }
            CompletionError::InvalidPart { number } => Error::invalid(
                format!("parts[{number}]"),
                "was not uploaded or its ETag does not match",
            ),
            CompletionError::EntityTooSmall { number } => Error::invalid(
                format!("parts[{number}]"),
                format!("is smaller than the minimum part size of {MIN_PART_BYTES} bytes"),
            ),
            CompletionError::EntityTooLarge => Error::invalid(
                "parts",
                format!("the object would exceed {MAX_OBJECT_BYTES} bytes"),
            ),
        }
    }
}

/// A validated completion: the object's segments, size and ETag.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Completion {
    pub segments: Vec<Segment>,
    pub size: u64,
    /// `md5(concat(part md5s))-N`, unquoted.
    pub etag: String,
    /// The chosen parts, in order (their checksums make the object's composite checksums).
    pub parts: Vec<PartRecord>,
}

/// Validates a CompleteMultipartUpload part list (`(number, etag)`, ETags unquoted) against the
/// stored parts (ascending by number) as S3 does, and plans the object.
pub fn plan_completion(
    requested: &[(u32, String)],
    stored: &[PartRecord],
) -> std::result::Result<Completion, CompletionError> {
    if requested.is_empty() || requested.len() > MAX_PART_NUMBER as usize {
        return Err(CompletionError::NoParts);
    }
    if requested.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(CompletionError::InvalidPartOrder);
    }
    let mut parts = Vec::with_capacity(requested.len());
    for (number, etag) in requested {
        let part = stored
            .binary_search_by_key(number, |p| p.number)
            .ok()
            .map(|i| &stored[i])
            .filter(|p| p.etag == etag.trim_matches('"'))
            .ok_or(CompletionError::InvalidPart { number: *number })?;
        parts.push(part.clone());
    }
    if let Some(small) = parts[..parts.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART_BYTES)
    {
        return Err(CompletionError::EntityTooSmall {
            number: small.number,
        });
    }
    let size = parts
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.size))
        .filter(|s| *s <= MAX_OBJECT_BYTES)
        .ok_or(CompletionError::EntityTooLarge)?;
    let mut md5 = Md5::new();
    for part in &parts {
        // Stored ETags are the hex MD5 this module wrote.
        md5.update(unhex(&part.etag).unwrap_or_default());
    }
    Ok(Completion {
        segments: parts
            .iter()
            .map(|p| Segment {
                data: p.data,
                size: p.size,
            })
            .collect(),
        size,
        etag: format!("{}-{}", hex(&md5.finalize()), parts.len()),
        parts,
    })
}

/// Whether an object with this expiry is visible at `now`.
pub fn object_visible(meta: &ObjectMeta, now: Timestamp) -> bool {
    is_visible(meta.expires_at, now)
}

#[cfg(test)]
mod tests;
