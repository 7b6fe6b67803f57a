//! Server-side copies: CopyObject and UploadPartCopy. The source's bytes stream chunk by chunk
//! into a new blob of the tenant (never through the client, never whole in memory); the source
//! must be the tenant's own object.

use std::collections::BTreeMap;
use std::sync::Arc;

use p8fs_core::object::{
    ByteRange, MAX_PUT_BYTES, ObjectWriter, PartRecord, WrittenData, check_read_preconditions,
    chunk_reads,
};
use p8fs_core::{ObjectMeta, Precondition, TenantId};
use s3s::dto::{
    CopyObjectInput, CopyObjectOutput, CopyObjectResult, CopyPartResult, CopySource,
    MetadataDirective, Range, UploadPartCopyInput, UploadPartCopyOutput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use tokio::sync::mpsc;

use crate::auth::principal;
use crate::checksum::WireChecksums;
use crate::error::{bucket_name, object_key, s3_error};
use crate::multipart::{existing_upload, part_number, record_part};
use crate::object::{commit, existing_object, tags};
use crate::ssec::{self, Binding, CustomerKey, Role, Sealer};
use crate::{S3Front, StoredHeaders, etag, timestamp};

/// The bucket and key of a copy source (`x-amz-copy-source`); versions do not exist here.
fn source(copy_source: &CopySource) -> S3Result<(&str, &str)> {
    match copy_source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => {
            if version_id.as_deref().is_some_and(|v| v != "null") {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    "objects have no versions here; remove versionId from x-amz-copy-source",
                ));
            }
            Ok((bucket, key))
        }
        CopySource::AccessPoint { .. } | CopySource::Outpost { .. } => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "copy sources are bucket/key",
        )),
    }
}

/// The copy-source conditions; a refusal of either kind is 412, as S3 answers copies.
fn check_source(
    meta: &ObjectMeta,
    if_match: Option<&s3s::dto::ETagCondition>,
    if_none_match: Option<&s3s::dto::ETagCondition>,
    if_modified_since: Option<&s3s::dto::Timestamp>,
    if_unmodified_since: Option<&s3s::dto::Timestamp>,
) -> S3Result<()> {
    let conditions = p8fs_core::object::ReadPreconditions {
        if_match: tags(if_match),
        if_none_match: tags(if_none_match),
        if_modified_since: if_modified_since.map(crate::millis),
        if_unmodified_since: if_unmodified_since.map(crate::millis),
    };
    check_read_preconditions(meta, &conditions).map_err(|_| {
        S3Error::with_message(
            S3ErrorCode::PreconditionFailed,
            "at least one of the copy-source preconditions you specified did not hold",
        )
    })
}

/// Where copied bytes go: a new pending blob of the tenant, sealed when the destination is
/// SSE-C.
struct Sink<'a> {
    writer: ObjectWriter<'a>,
    sealer: Option<Sealer>,
    sealed: Vec<u8>,
    copied: u64,
}

impl Sink<'_> {
    async fn put(&mut self, bytes: &[u8]) -> S3Result<()> {
        self.copied += bytes.len() as u64;
        match &mut self.sealer {
            Some(sealer) => {
                sealer.push(bytes, &mut self.sealed)?;
                self.writer.write(&self.sealed).await.map_err(s3_error)?;
                self.sealed.clear();
                Ok(())
            }
            None => self.writer.write(bytes).await.map_err(s3_error),
        }
    }

    async fn finish(mut self) -> S3Result<(WrittenData, u64)> {
        if let Some(sealer) = self.sealer.take() {
            sealer.finish(&mut self.sealed)?;
            self.writer.write(&self.sealed).await.map_err(s3_error)?;
        }
        Ok((self.writer.finish().await.map_err(s3_error)?, self.copied))
    }
}

/// The source of a copy: its stored record, and its key and binding when it is SSE-C.
struct Source {
    meta: ObjectMeta,
    decrypt: Option<(CustomerKey, Binding)>,
}

impl Source {
    /// The source as the client sees it (plaintext sizes).
    fn view(&self) -> S3Result<ObjectMeta> {
        match self.decrypt {
            Some(_) => ssec::plain_view(&self.meta),
            None => Ok(self.meta.clone()),
        }
    }
}

/// Copies plaintext bytes `start..end` of `source` into a new pending blob of `tenant`, chunk
/// by chunk (decrypted if the source is SSE-C, sealed by `sealer` if the destination is); on
/// failure the new blob is discarded. Returns the blob and the plaintext size copied.
async fn copy_bytes(
    front: &S3Front,
    tenant: &TenantId,
    source: &Source,
    (start, end): (u64, u64),
    sealer: Option<Sealer>,
) -> S3Result<(WrittenData, u64)> {
    let store = front.backend.as_ref();
    let limit = match sealer {
        Some(_) => ssec::sealed_limit(MAX_PUT_BYTES),
        None => MAX_PUT_BYTES,
    };
    let mut writer = ObjectWriter::begin(store, tenant, limit)
        .await
        .map_err(s3_error)?;
    let data = writer.data();
    let result = async {
        let mut sealed = Vec::new();
        if let Some(sealer) = &sealer {
            sealed.extend_from_slice(sealer.header());
        }
        writer.write(&sealed).await.map_err(s3_error)?;
        sealed.clear();
        let mut sink = Sink {
            writer,
            sealer,
            sealed,
            copied: 0,
        };
        match &source.decrypt {
            None => {
                for read in chunk_reads(&source.meta.segments, start, end) {
                    let chunk = store
                        .read_chunk(tenant, read.data, read.index)
                        .await
                        .map_err(s3_error)?;
                    let bytes = chunk.get(read.start..read.end).ok_or_else(|| {
                        tracing::warn!("a stored chunk is shorter than its object says");
                        S3Error::new(S3ErrorCode::InternalError)
                    })?;
                    sink.put(bytes).await?;
                }
            }
            Some((key, binding)) => {
                let view = ssec::plain_view(&source.meta)?;
                let (sender, mut receiver) = mpsc::channel(1);
                tokio::spawn(ssec::read_plain(
                    Arc::clone(&front.backend),
                    tenant.clone(),
                    view.segments,
                    key.clone(),
                    binding.clone(),
                    (start, end),
                    sender,
                ));
                while let Some(piece) = receiver.recv().await {
                    let piece = piece.map_err(|_| S3Error::new(S3ErrorCode::InternalError))?;
                    sink.put(&piece).await?;
                }
            }
        }
        let (written, copied) = sink.finish().await?;
        if copied != end - start {
            tracing::warn!("a copy's source ended early");
            return Err(S3Error::new(S3ErrorCode::InternalError));
        }
        Ok((written, copied))
    }
    .await;
    if result.is_err()
        && let Err(error) = store.discard_data(tenant, data).await
    {
        tracing::warn!(%error, "discarding the blob of a failed copy failed");
    }
    result
}

/// The copy source with its key checked (`x-amz-copy-source-server-side-encryption-customer-*`).
fn source_of(
    meta: ObjectMeta,
    (bucket, key): (&str, &str),
    customer_key: Option<&CustomerKey>,
) -> S3Result<Source> {
    let decrypt = ssec::check(&meta.attributes, customer_key, Role::CopySource)?.map(|k| {
        (
            k,
            Binding {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            },
        )
    });
    Ok(Source { meta, decrypt })
}

pub(crate) async fn copy_object(
    front: &S3Front,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let (source_bucket, source_key) = source(&input.copy_source)?;
    let replace = match input
        .metadata_directive
        .as_ref()
        .map(MetadataDirective::as_str)
    {
        None | Some(MetadataDirective::COPY) => false,
        Some(MetadataDirective::REPLACE) => true,
        Some(_) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "x-amz-metadata-directive must be COPY or REPLACE",
            ));
        }
    };
    let source_customer_key = ssec::customer_key(
        Role::CopySource,
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    // Copying an object onto itself changes its encryption (a new key, or none) even when it
    // keeps its metadata.
    let reencrypts = source_customer_key.is_some() || customer_key.is_some();
    if !replace && !reencrypts && source_bucket == input.bucket && source_key == input.key {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidRequest,
            "this copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata",
        ));
    }
    let stored = existing_object(front, &tenant, source_bucket, source_key).await?;
    let source = source_of(
        stored,
        (source_bucket, source_key),
        source_customer_key.as_ref(),
    )?;
    let meta = source.view()?;
    check_source(
        &meta,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )?;
    let mut attributes = if replace {
        StoredHeaders {
            content_type: input.content_type.as_deref(),
            cache_control: input.cache_control.as_deref(),
            content_disposition: input.content_disposition.as_deref(),
            content_encoding: input.content_encoding.as_deref(),
            content_language: input.content_language.as_deref(),
            expires: input.expires.as_ref(),
            metadata: input.metadata.as_ref(),
        }
        .attributes()?
    } else {
        meta.attributes.clone()
    };
    // Whole-object checksums stay true of the copy; checksums of parts do not.
    attributes.checksums = meta
        .attributes
        .checksums
        .iter()
        .filter(|(_, value)| !value.contains('-'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect::<BTreeMap<_, _>>();
    // The source's encryption is not the copy's: the copy is SSE-C with its own key, or not.
    attributes.headers.remove(ssec::ALGORITHM_HEADER);
    attributes.headers.remove(ssec::DIGEST_HEADER);
    let sealer = match &customer_key {
        Some(customer_key) => {
            ssec::mark(&mut attributes, customer_key)?;
            let binding = Binding {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
            };
            Some(Sealer::new(customer_key, &binding, 0)?)
        }
        None => None,
    };
    crate::existing_bucket(front, &tenant, &bucket).await?;
    let (written, _) = copy_bytes(front, &tenant, &source, (0, meta.size), sealer).await?;
    let copy = ObjectMeta {
        key,
        size: written.size,
        etag: written.md5.clone(),
        last_modified: front.clock.now(),
        expires_at: None,
        attributes,
        segments: vec![written.segment()],
    };
    commit(front, &tenant, &bucket, &copy, &Precondition::None).await?;
    let checksums = WireChecksums::of(&copy.attributes.checksums);
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&copy.etag)),
            last_modified: Some(timestamp(copy.last_modified)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_crc64nvme: checksums.crc64nvme,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_type: checksums.checksum_type,
        }),
        sse_customer_algorithm: customer_key.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: customer_key.map(|k| k.md5),
        ..CopyObjectOutput::default()
    }))
}

pub(crate) async fn upload_part_copy(
    front: &S3Front,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let number = part_number(input.part_number)?;
    let upload = existing_upload(front, &tenant, &bucket, &key, &input.upload_id).await?;
    let (source_bucket, source_key) = source(&input.copy_source)?;
    let source_customer_key = ssec::customer_key(
        Role::CopySource,
        input.copy_source_sse_customer_algorithm.as_deref(),
        input.copy_source_sse_customer_key.as_deref(),
        input.copy_source_sse_customer_key_md5.as_deref(),
    )?;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let encryption = ssec::check(&upload.attributes, customer_key.as_ref(), Role::Object)?;
    let stored = existing_object(front, &tenant, source_bucket, source_key).await?;
    let source = source_of(
        stored,
        (source_bucket, source_key),
        source_customer_key.as_ref(),
    )?;
    let meta = source.view()?;
    check_source(
        &meta,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )?;
    let (start, end) = match input.copy_source_range.as_deref() {
        None => (0, meta.size),
        Some(text) => {
            let range = match Range::parse(text) {
                Ok(Range::Int {
                    first,
                    last: Some(last),
                }) => ByteRange::FromTo {
                    first,
                    last: Some(last),
                },
                _ => {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidArgument,
                        "x-amz-copy-source-range must be bytes=first-last",
                    ));
                }
            };
            range.resolve(meta.size).map_err(s3_error)?
        }
    };
    let sealer = match &encryption {
        Some(customer_key) => {
            let binding = Binding {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
            };
            Some(Sealer::new(customer_key, &binding, number)?)
        }
        None => None,
    };
    let (written, _) = copy_bytes(front, &tenant, &source, (start, end), sealer).await?;
    let part = PartRecord {
        number,
        data: written.data,
        size: written.size,
        etag: written.md5.clone(),
        checksums: BTreeMap::new(),
        last_modified: front.clock.now(),
    };
    record_part(front, &tenant, &bucket, upload.id, &part).await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&part.etag)),
            last_modified: Some(timestamp(part.last_modified)),
            ..CopyPartResult::default()
        }),
        sse_customer_algorithm: encryption.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: encryption.map(|k| k.md5),
        ..UploadPartCopyOutput::default()
    }))
}
