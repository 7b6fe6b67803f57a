//! Multipart uploads: CreateMultipartUpload, UploadPart, ListParts, ListMultipartUploads,
//! CompleteMultipartUpload (validated by core's `plan_completion`), AbortMultipartUpload. Parts
//! are invisible until the upload completes; an upload is addressed by its id and must be
//! addressed with the key it was begun for.

use p8fs_core::object::{MAX_PART_NUMBER, MAX_PUT_BYTES, PartRecord, plan_completion};
use p8fs_core::{
    BucketName, Error, Limit, ObjectKey, ObjectMeta, ObjectPrefix, Resource, TenantId, UploadId,
    UploadInfo,
};
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CreateMultipartUploadInput,
    CreateMultipartUploadOutput, ListMultipartUploadsInput, ListMultipartUploadsOutput,
    ListPartsInput, ListPartsOutput, MultipartUpload, Part, UploadPartInput, UploadPartOutput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::auth::principal;
use crate::checksum::{Expected, HeaderValues, WireChecksums, composite};
use crate::error::{bucket_name, completion_error, object_key, s3_error};
use crate::object::write_condition;
use crate::ssec::{self, Binding, Role, Sealer};
use crate::{S3Front, StoredHeaders, etag, timestamp};

fn no_such_upload() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchUpload,
        "the specified upload does not exist; it may have been aborted or completed",
    )
}

/// The upload `id` of `key` in `bucket`: `NoSuchUpload` if it is gone, belongs to another key
/// or is not an id of this server.
pub(crate) async fn existing_upload(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &BucketName,
    key: &ObjectKey,
    id: &str,
) -> S3Result<UploadInfo> {
    let id = UploadId::parse(id).map_err(|_| no_such_upload())?;
    match front
        .backend
        .upload(tenant, bucket, id)
        .await
        .map_err(s3_error)?
    {
        Some(upload) if upload.key == *key => Ok(upload),
        _ => Err(no_such_upload()),
    }
}

/// A part number from the wire: 1..=10,000.
pub(crate) fn part_number(value: i32) -> S3Result<u32> {
    u32::try_from(value)
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!("part number must be an integer between 1 and {MAX_PART_NUMBER}"),
            )
        })
}

pub(crate) async fn create(
    front: &S3Front,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    if input
        .checksum_type
        .as_ref()
        .is_some_and(|t| t.as_str() == s3s::dto::ChecksumType::FULL_OBJECT)
    {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "multipart uploads keep COMPOSITE checksums only",
        ));
    }
    let attributes = StoredHeaders {
        content_type: input.content_type.as_deref(),
        cache_control: input.cache_control.as_deref(),
        content_disposition: input.content_disposition.as_deref(),
        content_encoding: input.content_encoding.as_deref(),
        content_language: input.content_language.as_deref(),
        expires: input.expires.as_ref(),
        metadata: input.metadata.as_ref(),
    }
    .attributes()?;
    let mut attributes = attributes;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    if let Some(customer_key) = &customer_key {
        ssec::mark(&mut attributes, customer_key)?;
    }
    let algorithm = input.checksum_algorithm.clone();
    let upload = front
        .backend
        .create_upload(&tenant, &bucket, &key, &attributes, None)
        .await
        .map_err(s3_error)?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload.id.to_string()),
        checksum_type: algorithm
            .is_some()
            .then(|| s3s::dto::ChecksumType::from_static(s3s::dto::ChecksumType::COMPOSITE)),
        checksum_algorithm: algorithm,
        sse_customer_algorithm: customer_key.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: customer_key.map(|k| k.md5),
        ..CreateMultipartUploadOutput::default()
    }))
}

pub(crate) async fn upload_part(
    front: &S3Front,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let number = part_number(input.part_number)?;
    let upload = existing_upload(front, &tenant, &bucket, &key, &input.upload_id).await?;
    let expected = Expected::from_request(
        &HeaderValues {
            crc32: input.checksum_crc32.as_deref(),
            crc32c: input.checksum_crc32c.as_deref(),
            crc64nvme: input.checksum_crc64nvme.as_deref(),
            sha1: input.checksum_sha1.as_deref(),
            sha256: input.checksum_sha256.as_deref(),
        },
        input.checksum_algorithm.as_ref(),
        input.content_md5.as_deref(),
        &req.headers,
    )?;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let encryption = ssec::check(&upload.attributes, customer_key.as_ref(), Role::Object)?;
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
    let received = crate::body::receive(
        front.backend.as_ref(),
        &tenant,
        input.body,
        input.content_length,
        MAX_PUT_BYTES,
        expected,
        req.trailing_headers.as_ref(),
        sealer,
    )
    .await?;
    let part = PartRecord {
        number,
        data: received.written.data,
        size: received.written.size,
        etag: received.written.md5.clone(),
        checksums: received.checksums,
        last_modified: front.clock.now(),
    };
    record_part(front, &tenant, &bucket, upload.id, &part).await?;
    let checksums = WireChecksums::of(&part.checksums);
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&part.etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        sse_customer_algorithm: encryption.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: encryption.map(|k| k.md5),
        ..UploadPartOutput::default()
    }))
}

/// Records a part whose blob is pending; on failure the blob is discarded.
pub(crate) async fn record_part(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &BucketName,
    upload: UploadId,
    part: &PartRecord,
) -> S3Result<()> {
    if let Err(error) = front.backend.put_part(tenant, bucket, upload, part).await {
        if let Err(error) = front.backend.discard_data(tenant, part.data).await {
            tracing::warn!(%error, "discarding the blob of a refused part failed");
        }
        return Err(match error {
            Error::NotFound {
                resource: Resource::Upload,
                ..
            } => no_such_upload(),
            other => s3_error(other),
        });
    }
    Ok(())
}

fn page_size(value: Option<i32>, name: &str) -> S3Result<usize> {
    match value {
        None => Ok(1000),
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("{name} must not be negative"),
        )),
        Some(n) => Ok(n.clamp(0, 1000).unsigned_abs() as usize),
    }
}

pub(crate) async fn list_parts(
    front: &S3Front,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let principal = principal(&req.extensions)?;
    let tenant = &principal.tenant;
    let input = &req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let upload = existing_upload(front, tenant, &bucket, &key, &input.upload_id).await?;
    let max_parts = page_size(input.max_parts, "max-parts")?;
    let after = u32::try_from(input.part_number_marker.unwrap_or(0)).map_err(|_| {
        S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "part-number-marker must not be negative",
        )
    })?;
    let mut parts = if max_parts == 0 {
        Vec::new()
    } else {
        let limit = Limit::new(max_parts as u64).map_err(s3_error)?;
        // One more than asked, to tell whether more follow.
        let mut parts = front
            .backend
            .list_parts(tenant, &bucket, upload.id, after, limit)
            .await
            .map_err(s3_error)?;
        if parts.len() == max_parts
            && let Some(last) = parts.last()
        {
            let one = Limit::new(1).map_err(s3_error)?;
            let more = front
                .backend
                .list_parts(tenant, &bucket, upload.id, last.number, one)
                .await
                .map_err(s3_error)?;
            parts.extend(more);
        }
        parts
    };
    let truncated = parts.len() > max_parts;
    parts.truncate(max_parts);
    let encrypted = upload.attributes.client_held_key();
    let next = parts.last().map(|p| p.number);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        upload_id: Some(upload.id.to_string()),
        part_number_marker: Some(i32::try_from(after).unwrap_or(0)),
        next_part_number_marker: next
            .filter(|_| truncated)
            .and_then(|n| i32::try_from(n).ok()),
        max_parts: i32::try_from(max_parts).ok(),
        is_truncated: Some(truncated),
        owner: Some(crate::owner(principal)),
        initiator: Some(s3s::dto::Initiator {
            display_name: Some(tenant.as_str().to_owned()),
            id: Some(tenant.as_str().to_owned()),
        }),
        parts: Some(
            parts
                .into_iter()
                .map(|p| {
                    let checksums = WireChecksums::of(&p.checksums);
                    Part {
                        part_number: i32::try_from(p.number).ok(),
                        e_tag: Some(etag(&p.etag)),
                        size: i64::try_from(if encrypted {
                            ssec::plain_size(p.size).unwrap_or(p.size)
                        } else {
                            p.size
                        })
                        .ok(),
                        last_modified: Some(timestamp(p.last_modified)),
                        checksum_crc32: checksums.crc32,
                        checksum_crc32c: checksums.crc32c,
                        checksum_crc64nvme: checksums.crc64nvme,
                        checksum_sha1: checksums.sha1,
                        checksum_sha256: checksums.sha256,
                    }
                })
                .collect(),
        ),
        ..ListPartsOutput::default()
    }))
}

pub(crate) async fn list_uploads(
    front: &S3Front,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let principal = principal(&req.extensions)?;
    let tenant = &principal.tenant;
    let input = &req.input;
    let bucket = bucket_name(&input.bucket)?;
    let prefix = ObjectPrefix::new(input.prefix.clone().unwrap_or_default())
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))?;
    let max_uploads = page_size(input.max_uploads, "max-uploads")?;
    let key_marker = match input.key_marker.as_deref().filter(|k| !k.is_empty()) {
        Some(marker) => Some(object_key("key-marker", marker)?),
        None => None,
    };
    let id_marker = match (&key_marker, input.upload_id_marker.as_deref()) {
        (Some(_), Some(id)) if !id.is_empty() => UploadId::parse(id).map_err(s3_error)?,
        // Past every upload of the marker key.
        _ => UploadId(u64::MAX),
    };
    let after = key_marker.as_ref().map(|k| (k, id_marker));
    let mut uploads = Vec::new();
    let mut common_prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut next: Option<(String, String)> = None;
    if max_uploads > 0 {
        let limit = Limit::new(1000).map_err(s3_error)?;
        let page = front
            .backend
            .list_uploads(tenant, &bucket, &prefix, after, limit)
            .await
            .map_err(s3_error)?;
        for upload in page {
            let key = upload.key.as_str();
            let rolled = input.delimiter.as_deref().and_then(|d| {
                let rest = &key[prefix.as_str().len()..];
                rest.find(d)
                    .map(|at| key[..prefix.as_str().len() + at + d.len()].to_owned())
            });
            if let Some(common) = &rolled
                && common_prefixes.last() == Some(common)
            {
                continue;
            }
            if uploads.len() + common_prefixes.len() == max_uploads {
                truncated = true;
                break;
            }
            next = Some((key.to_owned(), upload.id.to_string()));
            match rolled {
                Some(common) => common_prefixes.push(common),
                None => uploads.push(upload),
            }
        }
    } else {
        truncated = true;
    }
    let owner = crate::owner(principal);
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket.clone()),
        prefix: input.prefix.clone(),
        delimiter: input.delimiter.clone(),
        key_marker: input.key_marker.clone(),
        upload_id_marker: input.upload_id_marker.clone(),
        max_uploads: i32::try_from(max_uploads).ok(),
        is_truncated: Some(truncated),
        next_key_marker: next.as_ref().filter(|_| truncated).map(|n| n.0.clone()),
        next_upload_id_marker: next.filter(|_| truncated).map(|n| n.1),
        common_prefixes: Some(
            common_prefixes
                .into_iter()
                .map(|p| CommonPrefix { prefix: Some(p) })
                .collect(),
        ),
        uploads: Some(
            uploads
                .into_iter()
                .map(|u| MultipartUpload {
                    key: Some(u.key.as_str().to_owned()),
                    upload_id: Some(u.id.to_string()),
                    initiated: Some(timestamp(u.initiated)),
                    owner: Some(owner.clone()),
                    initiator: Some(s3s::dto::Initiator {
                        display_name: owner.display_name.clone(),
                        id: owner.id.clone(),
                    }),
                    ..MultipartUpload::default()
                })
                .collect(),
        ),
        ..ListMultipartUploadsOutput::default()
    }))
}

/// Every stored part of an upload, ascending.
async fn all_parts(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &BucketName,
    upload: UploadId,
) -> S3Result<Vec<PartRecord>> {
    let limit = Limit::MAX;
    let mut parts: Vec<PartRecord> = Vec::new();
    loop {
        let after = parts.last().map_or(0, |p| p.number);
        let page = front
            .backend
            .list_parts(tenant, bucket, upload, after, limit)
            .await
            .map_err(s3_error)?;
        let done = page.len() < limit.get();
        parts.extend(page);
        if done {
            return Ok(parts);
        }
    }
}

pub(crate) async fn complete(
    front: &S3Front,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let upload = existing_upload(front, &tenant, &bucket, &key, &input.upload_id).await?;
    // AWS asks for the key here only in some cases; when it is given, it must be the upload's.
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    if customer_key.is_some() {
        ssec::check(&upload.attributes, customer_key.as_ref(), Role::Object)?;
    }
    let mut requested = Vec::new();
    for part in input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
    {
        let number = part_number(part.part_number.ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::MalformedXML, "a part has no PartNumber")
        })?)?;
        let tag = part.e_tag.ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::MalformedXML, "a part has no ETag")
        })?;
        requested.push((number, tag.value().to_owned()));
    }
    let stored = all_parts(front, &tenant, &bucket, upload.id).await?;
    let plan = plan_completion(&requested, &stored).map_err(completion_error)?;
    let mut attributes = upload.attributes.clone();
    let part_checksums: Vec<_> = plan.parts.iter().map(|p| &p.checksums).collect();
    attributes.checksums = composite(&part_checksums);
    let meta = ObjectMeta {
        key,
        size: plan.size,
        etag: plan.etag.clone(),
        last_modified: front.clock.now(),
        expires_at: upload.expires_at,
        attributes,
        segments: plan.segments,
    };
    match front
        .backend
        .complete_upload(&tenant, &bucket, upload.id, &meta, &condition)
        .await
    {
        Ok(()) => {}
        Err(Error::NotFound {
            resource: Resource::Part,
            ..
        }) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidPart,
                "a part was replaced while the upload completed; list the parts and retry",
            ));
        }
        Err(Error::NotFound {
            resource: Resource::Upload,
            ..
        }) => return Err(no_such_upload()),
        Err(error) => return Err(s3_error(error)),
    }
    let checksums = WireChecksums::of(&meta.attributes.checksums);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(etag(&meta.etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        ..CompleteMultipartUploadOutput::default()
    }))
}

pub(crate) async fn abort(
    front: &S3Front,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let upload = existing_upload(front, &tenant, &bucket, &key, &input.upload_id).await?;
    match front
        .backend
        .abort_upload(&tenant, &bucket, upload.id)
        .await
    {
        Ok(()) => Ok(S3Response::new(AbortMultipartUploadOutput::default())),
        Err(Error::NotFound {
            resource: Resource::Upload,
            ..
        }) => Err(no_such_upload()),
        Err(error) => Err(s3_error(error)),
    }
}
