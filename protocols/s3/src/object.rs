//! Objects: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects. Uploads stream into
//! a pending blob and become visible in one commit; reads stream chunk by chunk, with ranges
//! and read conditions decided by core.

use std::sync::Arc;

use p8fs_core::object::{
    ByteRange, MAX_PUT_BYTES, ReadPreconditions, ReadRefusal, check_read_preconditions,
};
use p8fs_core::{BucketName, ObjectMeta, Precondition, TenantId};
use s3s::dto::{
    ChecksumMode, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput,
    DeletedObject, ETagCondition, GetObjectInput, GetObjectOutput, HeadObjectInput,
    HeadObjectOutput, PutObjectInput, PutObjectOutput, Range,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::auth::principal;
use crate::checksum::{Expected, HeaderValues, WireChecksums};
use crate::error::{bucket_name, object_key, s3_error};
use crate::ssec::{self, Binding, Role, Sealer};
use crate::{S3Front, StoredHeaders, WireAttributes, etag, timestamp};

/// The condition of a write from `If-Match` / `If-None-Match` (S3 supports `If-None-Match: *`
/// and `If-Match: <etag>` on writes).
pub(crate) fn write_condition(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
) -> S3Result<Precondition> {
    match (if_match, if_none_match) {
        (None, None) => Ok(Precondition::None),
        (None, Some(ETagCondition::Any)) => Ok(Precondition::IfAbsent),
        (Some(ETagCondition::ETag(tag)), None) => Ok(Precondition::IfEtag(tag.value().to_owned())),
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "writes support If-None-Match: * or If-Match: <etag>, one of them",
        )),
    }
}

/// The tags of an `If-Match` / `If-None-Match` condition, unquoted, `*` for any.
pub(crate) fn tags(condition: Option<&ETagCondition>) -> Option<Vec<String>> {
    condition.map(|c| match c {
        ETagCondition::Any => vec!["*".to_owned()],
        ETagCondition::ETag(tag) => vec![tag.value().to_owned()],
    })
}

/// The refusal of a read as the S3 error (412, or 304 with the object's validators).
pub(crate) fn refusal(refusal: ReadRefusal, meta: &ObjectMeta) -> S3Error {
    match refusal {
        ReadRefusal::PreconditionFailed => S3Error::with_message(
            S3ErrorCode::PreconditionFailed,
            "at least one of the preconditions you specified did not hold",
        ),
        ReadRefusal::NotModified => {
            let mut error = S3Error::new(S3ErrorCode::NotModified);
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
                headers.insert(http::header::ETAG, value);
            }
            let mut date = Vec::new();
            if timestamp(meta.last_modified)
                .format(s3s::dto::TimestampFormat::HttpDate, &mut date)
                .is_ok()
                && let Ok(value) = http::HeaderValue::from_bytes(&date)
            {
                headers.insert(http::header::LAST_MODIFIED, value);
            }
            error.set_headers(headers);
            error
        }
    }
}

pub(crate) async fn put_object(
    front: &S3Front,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    let condition = write_condition(input.if_match.as_ref(), input.if_none_match.as_ref())?;
    let mut attributes = StoredHeaders {
        content_type: input.content_type.as_deref(),
        cache_control: input.cache_control.as_deref(),
        content_disposition: input.content_disposition.as_deref(),
        content_encoding: input.content_encoding.as_deref(),
        content_language: input.content_language.as_deref(),
        expires: input.expires.as_ref(),
        metadata: input.metadata.as_ref(),
    }
    .attributes()?;
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
    // Refused before the body is read: no bytes are stored for a bucket that does not exist.
    crate::existing_bucket(front, &tenant, &bucket).await?;
    let upload = crate::body::receive(
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
    attributes.checksums = upload.checksums;
    let meta = ObjectMeta {
        key,
        size: upload.written.size,
        etag: upload.written.md5.clone(),
        last_modified: front.clock.now(),
        expires_at: None,
        attributes,
        segments: vec![upload.written.segment()],
    };
    commit(front, &tenant, &bucket, &meta, &condition).await?;
    let checksums = WireChecksums::of(&meta.attributes.checksums);
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(etag(&meta.etag)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        size: i64::try_from(upload.plain_size).ok(),
        sse_customer_algorithm: customer_key.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: customer_key.map(|k| k.md5),
        ..PutObjectOutput::default()
    }))
}

/// Commits a single-blob object; on failure its pending blob is discarded.
pub(crate) async fn commit(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &BucketName,
    meta: &ObjectMeta,
    condition: &Precondition,
) -> S3Result<()> {
    if let Err(error) = front
        .backend
        .put_object(tenant, bucket, meta, condition)
        .await
    {
        for segment in &meta.segments {
            if let Err(error) = front.backend.discard_data(tenant, segment.data).await {
                tracing::warn!(%error, "discarding the blob of a refused upload failed");
            }
        }
        return Err(s3_error(error));
    }
    Ok(())
}

/// The visible object at `bucket`/`key`: `NoSuchBucket` or `NoSuchKey` when there is none.
pub(crate) async fn existing_object(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &str,
    key: &str,
) -> S3Result<ObjectMeta> {
    let bucket = bucket_name(bucket)?;
    let key = object_key("key", key)?;
    front
        .backend
        .object(tenant, &bucket, &key)
        .await
        .map_err(s3_error)?
        .ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::NoSuchKey, "the specified key does not exist")
        })
}

/// What a GET or HEAD returns: the byte range and the headers.
struct Selection {
    start: u64,
    end: u64,
    content_range: Option<String>,
    parts_count: Option<i32>,
    whole: bool,
}

/// Applies read conditions, `partNumber` and `Range` to an object.
fn select(
    meta: &ObjectMeta,
    conditions: &ReadPreconditions,
    part_number: Option<i32>,
    range: Option<Range>,
) -> S3Result<Selection> {
    check_read_preconditions(meta, conditions).map_err(|r| refusal(r, meta))?;
    let multipart = meta.etag.contains('-');
    let parts_count = multipart.then(|| i32::try_from(meta.segments.len()).unwrap_or(i32::MAX));
    if let Some(number) = part_number {
        if range.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidRequest,
                "Range and partNumber cannot both be given",
            ));
        }
        let index = usize::try_from(number)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|i| *i < meta.segments.len().max(1))
            .ok_or_else(|| {
                crate::error::custom(
                    "InvalidPartNumber",
                    http::StatusCode::RANGE_NOT_SATISFIABLE,
                    "the requested part number is not satisfiable",
                )
            })?;
        let start: u64 = meta.segments[..index.min(meta.segments.len())]
            .iter()
            .map(|s| s.size)
            .sum();
        let end = start + meta.segments.get(index).map_or(0, |s| s.size);
        let content_range =
            (multipart && end > start).then(|| format!("bytes {start}-{}/{}", end - 1, meta.size));
        return Ok(Selection {
            start,
            end,
            content_range,
            parts_count,
            whole: !multipart,
        });
    }
    match range {
        None => Ok(Selection {
            start: 0,
            end: meta.size,
            content_range: None,
            parts_count,
            whole: true,
        }),
        Some(range) => {
            let range = match range {
                Range::Int { first, last } => ByteRange::FromTo { first, last },
                Range::Suffix { length } => ByteRange::Suffix(length),
            };
            let (start, end) = range.resolve(meta.size).map_err(s3_error)?;
            Ok(Selection {
                start,
                end,
                content_range: Some(format!("bytes {start}-{}/{}", end - 1, meta.size)),
                parts_count,
                whole: start == 0 && end == meta.size,
            })
        }
    }
}

fn conditions(
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&s3s::dto::Timestamp>,
    if_unmodified_since: Option<&s3s::dto::Timestamp>,
) -> ReadPreconditions {
    ReadPreconditions {
        if_match: tags(if_match),
        if_none_match: tags(if_none_match),
        if_modified_since: if_modified_since.map(crate::millis),
        if_unmodified_since: if_unmodified_since.map(crate::millis),
    }
}

fn checksums_wanted(mode: Option<&ChecksumMode>, selection: &Selection) -> bool {
    mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED)) && selection.whole
}

pub(crate) async fn get_object(
    front: &S3Front,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let stored = existing_object(front, &tenant, &input.bucket, &input.key).await?;
    let encryption = ssec::check(&stored.attributes, customer_key.as_ref(), Role::Object)?;
    let meta = match encryption {
        Some(_) => ssec::plain_view(&stored)?,
        None => stored,
    };
    let selection = select(
        &meta,
        &conditions(
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        ),
        input.part_number,
        input.range,
    )?;
    let checksums = if checksums_wanted(input.checksum_mode.as_ref(), &selection) {
        WireChecksums::of(&meta.attributes.checksums)
    } else {
        WireChecksums::default()
    };
    let wire = WireAttributes::of(&meta.attributes);
    let body = match &encryption {
        Some(customer_key) => crate::body::send_plain(
            Arc::clone(&front.backend),
            tenant,
            meta.segments.clone(),
            customer_key.clone(),
            Binding {
                bucket: input.bucket.clone(),
                key: input.key.clone(),
            },
            (selection.start, selection.end),
        ),
        None => crate::body::send(
            Arc::clone(&front.backend),
            tenant,
            meta.segments.clone(),
            selection.start,
            selection.end,
        ),
    };
    Ok(S3Response::new(GetObjectOutput {
        body: Some(body),
        accept_ranges: Some("bytes".to_owned()),
        content_length: i64::try_from(selection.end - selection.start).ok(),
        content_range: selection.content_range,
        parts_count: selection.parts_count,
        e_tag: Some(etag(&meta.etag)),
        last_modified: Some(timestamp(meta.last_modified)),
        content_type: wire.content_type,
        cache_control: wire.cache_control,
        content_disposition: wire.content_disposition,
        content_encoding: wire.content_encoding,
        content_language: wire.content_language,
        expires: wire.expires,
        metadata: wire.metadata,
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        sse_customer_algorithm: encryption.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: encryption.map(|k| k.md5),
        ..GetObjectOutput::default()
    }))
}

pub(crate) async fn head_object(
    front: &S3Front,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let customer_key = ssec::customer_key(
        Role::Object,
        input.sse_customer_algorithm.as_deref(),
        input.sse_customer_key.as_deref(),
        input.sse_customer_key_md5.as_deref(),
    )?;
    let stored = existing_object(front, &tenant, &input.bucket, &input.key).await?;
    let encryption = ssec::check(&stored.attributes, customer_key.as_ref(), Role::Object)?;
    let meta = match encryption {
        Some(_) => ssec::plain_view(&stored)?,
        None => stored,
    };
    let selection = select(
        &meta,
        &conditions(
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        ),
        input.part_number,
        input.range,
    )?;
    let checksums = if checksums_wanted(input.checksum_mode.as_ref(), &selection) {
        WireChecksums::of(&meta.attributes.checksums)
    } else {
        WireChecksums::default()
    };
    let wire = WireAttributes::of(&meta.attributes);
    Ok(S3Response::new(HeadObjectOutput {
        accept_ranges: Some("bytes".to_owned()),
        content_length: i64::try_from(selection.end - selection.start).ok(),
        content_range: selection.content_range,
        parts_count: selection.parts_count,
        e_tag: Some(etag(&meta.etag)),
        last_modified: Some(timestamp(meta.last_modified)),
        content_type: wire.content_type,
        cache_control: wire.cache_control,
        content_disposition: wire.content_disposition,
        content_encoding: wire.content_encoding,
        content_language: wire.content_language,
        expires: wire.expires,
        metadata: wire.metadata,
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_type: checksums.checksum_type,
        sse_customer_algorithm: encryption.as_ref().map(|_| ssec::ALGORITHM.to_owned()),
        sse_customer_key_md5: encryption.map(|k| k.md5),
        ..HeadObjectOutput::default()
    }))
}

pub(crate) async fn delete_object(
    front: &S3Front,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    if input.if_match.is_some()
        || input.if_match_size.is_some()
        || input.if_match_last_modified_time.is_some()
    {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "conditional deletes are not supported",
        ));
    }
    let bucket = bucket_name(&input.bucket)?;
    let key = object_key("key", &input.key)?;
    front
        .backend
        .delete_object(&tenant, &bucket, &key)
        .await
        .map_err(s3_error)?;
    Ok(S3Response::new(DeleteObjectOutput::default()))
}

/// Most keys one DeleteObjects request may name, as in S3.
const MAX_DELETE_KEYS: usize = 1000;

pub(crate) async fn delete_objects(
    front: &S3Front,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let tenant = principal(&req.extensions)?.tenant.clone();
    let input = req.input;
    let bucket = bucket_name(&input.bucket)?;
    if input.delete.objects.len() > MAX_DELETE_KEYS {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            format!("at most {MAX_DELETE_KEYS} keys may be deleted at once"),
        ));
    }
    crate::existing_bucket(front, &tenant, &bucket).await?;
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        let outcome = match object_key("key", &object.key) {
            Ok(key) => front
                .backend
                .delete_object(&tenant, &bucket, &key)
                .await
                .map_err(s3_error),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(_) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        ..DeletedObject::default()
                    });
                }
            }
            Err(error) => errors.push(s3s::dto::Error {
                code: Some(error.code().as_str().to_owned()),
                message: error.message().map(str::to_owned),
                key: Some(object.key),
                version_id: None,
            }),
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: Some(errors),
        ..DeleteObjectsOutput::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p8fs_core::{DataId, ObjectAttributes, ObjectKey, Segment};

    fn meta(segments: &[u64], etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::new("k").unwrap(),
            size: segments.iter().sum(),
            etag: etag.into(),
            last_modified: 1_000,
            expires_at: None,
            attributes: ObjectAttributes::default(),
            segments: segments
                .iter()
                .enumerate()
                .map(|(i, size)| Segment {
                    data: DataId(i as u64),
                    size: *size,
                })
                .collect(),
        }
    }

    #[test]
    fn ranges_select_bytes_and_report_content_range() {
        let object = meta(&[10], "abc");
        let none = ReadPreconditions::default();
        let s = select(&object, &none, None, Some(Range::Suffix { length: 3 })).unwrap();
        assert_eq!((s.start, s.end), (7, 10));
        assert_eq!(s.content_range.as_deref(), Some("bytes 7-9/10"));
        let error = select(
            &object,
            &none,
            None,
            Some(Range::Int {
                first: 10,
                last: None,
            }),
        )
        .err()
        .unwrap();
        assert_eq!(error.code().clone(), S3ErrorCode::InvalidRange);
    }

    #[test]
    fn part_numbers_select_segments() {
        let object = meta(&[5, 3], "abc-2");
        let none = ReadPreconditions::default();
        let s = select(&object, &none, Some(2), None).unwrap();
        assert_eq!((s.start, s.end, s.parts_count), (5, 8, Some(2)));
        assert!(select(&object, &none, Some(3), None).is_err());
    }

    #[test]
    fn conditions_refuse_with_412_or_304() {
        let object = meta(&[1], "abc");
        let wrong = ReadPreconditions {
            if_match: Some(vec!["zzz".into()]),
            ..ReadPreconditions::default()
        };
        let error = select(&object, &wrong, None, None).err().unwrap();
        assert_eq!(error.code().clone(), S3ErrorCode::PreconditionFailed);
        let same = ReadPreconditions {
            if_none_match: Some(vec!["abc".into()]),
            ..ReadPreconditions::default()
        };
        let error = select(&object, &same, None, None).err().unwrap();
        assert_eq!(error.code().clone(), S3ErrorCode::NotModified);
        assert!(error.headers().unwrap().contains_key("etag"));
    }
}
