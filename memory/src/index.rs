//! Indexing uploaded objects: [`Memory::index_object`] brings an object's chunks in line with
//! the object as it is now (called by the ingest worker for every object change, and safe to
//! call again: work is idempotent per object version), and [`Memory::index_status`] says where
//! an object stands (`pending`, `indexed` or `failed` with the reason).
//!
//! An object's version is its *generation*: 12 hex digits of SHA-256 over its ETag, size and
//! last-modified time. Its source record `p8fs.index/<hash>` (32 hex digits of SHA-256 over
//! bucket and key) holds the generation last indexed; the chunks of that generation are the
//! visible ones.

use p8fs_core::object::chunk_reads;
use p8fs_core::{
    Backend, BucketName, Error, ErrorKind, JsonMap, JsonObject, JsonValue, Key, Label, NodeId,
    ObjectKey, ObjectMeta, Result, TenantId, Timestamp, Ttl,
};
use p8fs_text::{ExtractError, Format, Limits as TextLimits, chunk, extract};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Memory;
use crate::memories::internal;
use crate::source::Generation;

/// The prefix of object index records in a tenant's key space.
pub(crate) const INDEX_PREFIX: &str = "p8fs.index/";
/// The label of an object's node.
const OBJECT_LABEL: &str = "object";

/// Where an object's indexing stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    /// Stored, not indexed yet (or a newer version is waiting).
    Pending,
    Indexed,
    /// Not indexable; the status says why.
    Failed,
}

impl IndexState {
    /// `pending`, `indexed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            IndexState::Pending => "pending",
            IndexState::Indexed => "indexed",
            IndexState::Failed => "failed",
        }
    }
}

/// An object's source record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct IndexRecord {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) generation: String,
    pub(crate) state: IndexState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) format: Option<String>,
    pub(crate) chunks: usize,
    pub(crate) truncated: bool,
    pub(crate) indexed_at: Timestamp,
    /// The generation this one replaced and its chunk count, until its chunks are removed (a
    /// crash between the switch and the removal leaves it here for the next call to finish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stale: Option<(String, usize)>,
    /// A generation whose chunks are being written and its chunk count, noted before the first
    /// is written: a crash before the switch leaves them named here, for the next call (or the
    /// object's deletion) to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) writing: Option<(String, usize)>,
}

/// An object's index status.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexStatus {
    pub state: IndexState,
    /// For `failed`: a stable short code (`unsupported`, `not_text`, `corrupt`, `too_large`,
    /// `empty`, or `client_held_key` for an SSE-C object, whose reason is
    /// [`CLIENT_HELD_KEY`]) and a sentence for people.
    pub code: Option<String>,
    pub reason: Option<String>,
    /// The format the text was extracted as.
    pub format: Option<String>,
    pub chunks: usize,
    /// Whether text past a limit was left out.
    pub truncated: bool,
    pub indexed_at: Option<Timestamp>,
}

impl Memory {
    /// Brings the index of `bucket/key` in line with the object: indexes the current version
    /// unless it is already indexed (or failed), and removes the chunks of any other version;
    /// a missing object loses its index. Errors are only those worth retrying (the backend or
    /// the embedder unavailable); a file that cannot be indexed is recorded as `failed`.
    pub async fn index_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<IndexState> {
        let record_key = index_key(bucket, key)?;
        let node = object_node(bucket, key)?;
        let mut previous = self.index_record(tenant, &record_key).await?;
        let Some(meta) = self.backend.object(tenant, bucket, key).await? else {
            self.unindex(tenant, &record_key, &node, previous).await?;
            return Ok(IndexState::Pending);
        };
        let generation = generation(&meta);
        // Chunks of a write a crash interrupted, of another version than this one (this one's
        // are simply written again).
        if let Some(record) = &mut previous
            && let Some((writing, chunks)) = record.writing.take()
        {
            if writing != generation {
                self.remove_chunks(tenant, &node, &writing, chunks).await?;
            }
            self.put_record(tenant, &record_key, record, meta.expires_at)
                .await?;
        }
        if let Some(previous) = previous.clone()
            && previous.generation == generation
        {
            let state = previous.state;
            self.remove_stale(tenant, &record_key, &node, previous, meta.expires_at)
                .await?;
            return Ok(state);
        }

        let now = self.clock.now();
        let ttl = match meta.expires_at {
            None => None,
            Some(at) if at > now => Some(Ttl::from_millis(at - now)?),
            Some(_) => {
                // Expired already: it is as good as deleted.
                self.unindex(tenant, &record_key, &node, previous).await?;
                return Ok(IndexState::Pending);
            }
        };

        let format = Format::detect(meta.attributes.content_type.as_deref(), key.as_str());
        // Encrypted with a key only the client holds (SSE-C): its text must never persist in
        // the clear, so it is not read at all.
        let text = match format {
            _ if meta.client_held_key() => None,
            None => Some(Err(ExtractError::unsupported(
                meta.attributes.content_type.as_deref(),
                key.as_str(),
            ))),
            Some(format) => match self.read(tenant, &meta, format).await {
                Ok(Some(bytes)) => Some(extract(format, &bytes, &self.limits.text_limits())),
                // Replaced or deleted while being read: its own change follows.
                Ok(None) => return Ok(IndexState::Pending),
                Err(e) => return Err(e),
            },
        };

        let mut record = IndexRecord {
            bucket: bucket.as_str().to_owned(),
            key: key.as_str().to_owned(),
            generation: generation.clone(),
            state: IndexState::Failed,
            code: None,
            reason: None,
            format: format.map(|f| f.as_str().to_owned()),
            chunks: 0,
            truncated: false,
            indexed_at: now,
            stale: previous
                .as_ref()
                .filter(|previous| previous.generation != generation && previous.chunks > 0)
                .map(|previous| (previous.generation.clone(), previous.chunks)),
            writing: None,
        };
        match text {
            None => {
                record.code = Some("client_held_key".to_owned());
                record.reason = Some(CLIENT_HELD_KEY.to_owned());
            }
            Some(Err(e)) => {
                record.code = Some(e.code().to_owned());
                record.reason = Some(e.to_string());
            }
            Some(Ok(extracted)) => {
                let chunked = chunk(
                    &extracted.text,
                    self.counter.as_ref(),
                    &self.limits.chunk_options(),
                );
                let vectors = self.embed_chunks(&chunked.chunks).await?;
                self.ensure_collection(tenant).await?;
                // Note the write before it starts (keeping what searches see meanwhile).
                let mut marker = previous.clone().unwrap_or_else(|| IndexRecord {
                    generation: String::new(),
                    state: IndexState::Pending,
                    stale: None,
                    ..record.clone()
                });
                marker.writing = Some((generation.clone(), chunked.chunks.len()));
                self.put_record(tenant, &record_key, &marker, meta.expires_at)
                    .await?;
                let properties = JsonObject::new(
                    "properties",
                    json!({"bucket": bucket.as_str(), "key": key.as_str(), "etag": meta.etag}),
                )?;
                self.backend
                    .put_node(tenant, &node, &Label::new(OBJECT_LABEL)?, &properties, ttl)
                    .await?;
                let mut base = JsonMap::new();
                base.insert("source".into(), json!("object"));
                base.insert("bucket".into(), json!(bucket.as_str()));
                base.insert("key".into(), json!(key.as_str()));
                let source = Generation {
                    node: &node,
                    record: record_key.as_str(),
                    generation: &generation,
                    base: &base,
                    ttl,
                };
                self.write_chunks(tenant, &source, &chunked.chunks, &vectors)
                    .await?;
                record.state = IndexState::Indexed;
                record.chunks = chunked.chunks.len();
                record.truncated = extracted.truncated || chunked.truncated;
            }
        }
        let value = JsonValue::new(serde_json::to_value(&record).map_err(internal)?)?;
        // The switch: from here on searches see this generation's chunks and no other.
        self.backend.put(tenant, &record_key, &value, ttl).await?;
        let state = record.state;
        self.remove_stale(tenant, &record_key, &node, record.clone(), meta.expires_at)
            .await?;
        if record.state == IndexState::Failed {
            tracing::info!(
                tenant = tenant.as_str(),
                bucket = bucket.as_str(),
                code = record.code.as_deref().unwrap_or_default(),
                "object not indexable"
            );
        }
        Ok(state)
    }

    /// Removes the chunks of the generation `record` replaced, then forgets it.
    async fn remove_stale(
        &self,
        tenant: &TenantId,
        record_key: &Key,
        node: &NodeId,
        mut record: IndexRecord,
        expires_at: Option<Timestamp>,
    ) -> Result<()> {
        let Some((generation, chunks)) = record.stale.take() else {
            return Ok(());
        };
        self.remove_chunks(tenant, node, &generation, chunks)
            .await?;
        self.put_record(tenant, record_key, &record, expires_at)
            .await
    }

    /// Writes an object's record with the object's remaining ttl (nothing once it expired).
    async fn put_record(
        &self,
        tenant: &TenantId,
        record_key: &Key,
        record: &IndexRecord,
        expires_at: Option<Timestamp>,
    ) -> Result<()> {
        let now = self.clock.now();
        let ttl = match expires_at {
            None => None,
            Some(at) if at > now => Some(Ttl::from_millis(at - now)?),
            Some(_) => return Ok(()),
        };
        let value = JsonValue::new(serde_json::to_value(record).map_err(internal)?)?;
        self.backend.put(tenant, record_key, &value, ttl).await?;
        Ok(())
    }

    /// Where `bucket/key` stands: `NotFound` when there is no such object.
    pub async fn index_status(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<IndexStatus> {
        let Some(meta) = self.backend.object(tenant, bucket, key).await? else {
            return Err(Error::not_found(p8fs_core::Resource::Object, key.as_str()));
        };
        let record = self.index_record(tenant, &index_key(bucket, key)?).await?;
        Ok(match record {
            Some(record) if record.generation == generation(&meta) => IndexStatus {
                state: record.state,
                code: record.code,
                reason: record.reason,
                format: record.format,
                chunks: record.chunks,
                truncated: record.truncated,
                indexed_at: Some(record.indexed_at),
            },
            _ => IndexStatus {
                state: IndexState::Pending,
                code: None,
                reason: None,
                format: None,
                chunks: 0,
                truncated: false,
                indexed_at: None,
            },
        })
    }

    async fn index_record(&self, tenant: &TenantId, key: &Key) -> Result<Option<IndexRecord>> {
        Ok(self
            .backend
            .get(tenant, key)
            .await?
            .and_then(|entry| serde_json::from_value(entry.value).ok()))
    }

    /// Removes an object's index: the record first (its chunks vanish from searches), then its
    /// chunks and its node.
    async fn unindex(
        &self,
        tenant: &TenantId,
        record_key: &Key,
        node: &NodeId,
        previous: Option<IndexRecord>,
    ) -> Result<()> {
        let Some(previous) = previous else {
            return Ok(());
        };
        self.backend.delete(tenant, record_key).await?;
        self.remove_chunks(tenant, node, &previous.generation, previous.chunks)
            .await?;
        for (generation, chunks) in previous.stale.iter().chain(&previous.writing) {
            self.remove_chunks(tenant, node, generation, *chunks)
                .await?;
        }
        self.backend.delete_node(tenant, node).await?;
        Ok(())
    }

    /// The bytes to extract from (see [`extraction_input`]).
    async fn read(
        &self,
        tenant: &TenantId,
        meta: &ObjectMeta,
        format: Format,
    ) -> Result<Option<Vec<u8>>> {
        extraction_input(
            self.backend.as_ref(),
            tenant,
            meta,
            format,
            &self.limits.text_limits(),
        )
        .await
    }
}

/// What an object encrypted with a client-held key says instead of its bytes or its index.
pub const CLIENT_HELD_KEY: &str = "not indexed: client-held key";

/// The bytes of an object to extract its text from: a prefix of a text format (enough for
/// `limits.max_text_bytes`), the whole of a PDF or JSON object (`too_large` past
/// `limits.max_input_bytes` is the extractor's to say, from the size alone). `None` when the
/// object changed while being read. Indexing and the front-ends that show an object's text
/// (MCP's `read_file`) read the same way.
pub async fn extraction_input(
    backend: &dyn Backend,
    tenant: &TenantId,
    meta: &ObjectMeta,
    format: Format,
    limits: &TextLimits,
) -> Result<Option<Vec<u8>>> {
    meta.refuse_client_held_key()?;
    let wanted = if format.needs_whole_input() {
        if meta.size > limits.max_input_bytes as u64 {
            // Read one byte past the limit so the extractor reports the size.
            limits.max_input_bytes as u64 + 1
        } else {
            meta.size
        }
    } else {
        // A UTF-8 character cut at the end is tolerated by the extractor.
        (limits.max_text_bytes as u64 + 4).min(meta.size)
    };
    let mut bytes = Vec::with_capacity(wanted as usize);
    for read in chunk_reads(&meta.segments, 0, wanted) {
        match backend.read_chunk(tenant, read.data, read.index).await {
            Ok(chunk) => {
                let end = read.end.min(chunk.len());
                bytes.extend_from_slice(&chunk[read.start.min(end)..end]);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(bytes))
}

/// The source record's key of `bucket/key`.
fn index_key(bucket: &BucketName, key: &ObjectKey) -> Result<Key> {
    Key::new(format!("{INDEX_PREFIX}{}", object_hash(bucket, key)))
}

/// The graph node of `bucket/key`.
fn object_node(bucket: &BucketName, key: &ObjectKey) -> Result<NodeId> {
    NodeId::new(format!("o{}", object_hash(bucket, key)))
}

fn object_hash(bucket: &BucketName, key: &ObjectKey) -> String {
    let mut hash = Sha256::new();
    hash.update(bucket.as_str().as_bytes());
    hash.update([0]);
    hash.update(key.as_str().as_bytes());
    hex(&hash.finalize()[..16])
}

/// An object version's generation.
fn generation(meta: &ObjectMeta) -> String {
    let mut hash = Sha256::new();
    hash.update(meta.etag.as_bytes());
    hash.update(meta.size.to_be_bytes());
    hash.update(meta.last_modified.to_be_bytes());
    hex(&hash.finalize()[..6])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
