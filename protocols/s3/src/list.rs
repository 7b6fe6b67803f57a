//! Listings: ListObjectsV2 and ListObjects (v1), both over core's `list_objects_v2`. The v2
//! continuation token is the base64url of core's `next_from`; v1's marker is the last key or
//! common prefix returned. `encoding-type=url` (sent by the AWS CLI and boto3) percent-encodes
//! keys and prefixes in the response.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p8fs_core::object::{self as core_object, ObjectListing, after_prefix, from_after};
use p8fs_core::{ObjectMeta, ObjectPrefix, TenantId};
use s3s::dto::{
    CommonPrefix, EncodingType, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, Object, ObjectStorageClass,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::auth::principal;
use crate::error::{bucket_name, s3_error};
use crate::{S3Front, etag, timestamp};

/// Most keys one page returns, as in S3 (a larger `max-keys` is clamped).
const MAX_KEYS: i32 = 1000;

fn max_keys(value: Option<i32>) -> S3Result<u32> {
    match value {
        None => Ok(MAX_KEYS.unsigned_abs()),
        Some(n) if n < 0 => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "max-keys must not be negative",
        )),
        Some(n) => Ok(n.min(MAX_KEYS).unsigned_abs()),
    }
}

fn prefix(value: Option<&str>) -> S3Result<ObjectPrefix> {
    ObjectPrefix::new(value.unwrap_or_default())
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))
}

/// Whether the response percent-encodes keys (`encoding-type=url`); other values are refused.
fn url_encoded(value: Option<&EncodingType>) -> S3Result<bool> {
    match value {
        None => Ok(false),
        Some(e) if e.as_str() == EncodingType::URL => Ok(true),
        Some(_) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "encoding-type must be url",
        )),
    }
}

/// Percent-encodes everything but unreserved characters and `/`, which both `unquote` and
/// `unquote_plus` decoders read back exactly.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn wire(text: String, encoded: bool) -> String {
    if encoded { encode(&text) } else { text }
}

fn object(meta: ObjectMeta, encoded: bool) -> Object {
    Object {
        key: Some(wire(meta.key.as_str().to_owned(), encoded)),
        size: i64::try_from(crate::ssec::listed_size(&meta)).ok(),
        e_tag: Some(etag(&meta.etag)),
        last_modified: Some(timestamp(meta.last_modified)),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        ..Object::default()
    }
}

struct Page {
    contents: Vec<Object>,
    common_prefixes: Vec<CommonPrefix>,
    /// The last key or common prefix returned (v1's next marker).
    last: Option<String>,
    next_from: Option<Vec<u8>>,
    count: usize,
}

#[expect(
    clippy::too_many_arguments,
    reason = "the parameters of one S3 listing"
)]
async fn page(
    front: &S3Front,
    tenant: &TenantId,
    bucket: &str,
    prefix: &ObjectPrefix,
    delimiter: Option<&str>,
    from: &[u8],
    max_keys: u32,
    encoded: bool,
) -> S3Result<Page> {
    let bucket = bucket_name(bucket)?;
    let listing: ObjectListing = core_object::list_objects_v2(
        front.backend.as_ref(),
        tenant,
        &bucket,
        prefix,
        delimiter,
        from,
        max_keys,
    )
    .await
    .map_err(s3_error)?;
    let last_key = listing.objects.last().map(|m| m.key.as_str().to_owned());
    let last_prefix = listing.common_prefixes.last().cloned();
    let last = match (last_key, last_prefix) {
        (Some(key), Some(common)) => Some(key.max(common)),
        (key, common) => key.or(common),
    };
    let count = listing.objects.len() + listing.common_prefixes.len();
    Ok(Page {
        contents: listing
            .objects
            .into_iter()
            .map(|m| object(m, encoded))
            .collect(),
        common_prefixes: listing
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(wire(p, encoded)),
            })
            .collect(),
        last,
        next_from: listing.next_from,
        count,
    })
}

/// The start of the listing a continuation token stands for.
fn decode_token(token: &str) -> S3Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .filter(|from| !from.is_empty() && from.len() <= p8fs_core::validate::MAX_KEY_BYTES + 4)
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "the continuation token provided is incorrect",
            )
        })
}

pub(crate) async fn list_objects_v2(
    front: &S3Front,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let principal = principal(&req.extensions)?;
    let input = &req.input;
    let encoded = url_encoded(input.encoding_type.as_ref())?;
    let prefix = prefix(input.prefix.as_deref())?;
    let max_keys = max_keys(input.max_keys)?;
    let from = match (&input.continuation_token, &input.start_after) {
        (Some(token), _) => decode_token(token)?,
        (None, Some(after)) => from_after(after),
        (None, None) => Vec::new(),
    };
    let page = page(
        front,
        &principal.tenant,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        &from,
        max_keys,
        encoded,
    )
    .await?;
    let owner = input
        .fetch_owner
        .unwrap_or(false)
        .then(|| crate::owner(principal));
    let contents = page
        .contents
        .into_iter()
        .map(|o| Object {
            owner: owner.clone(),
            ..o
        })
        .collect();
    Ok(S3Response::new(ListObjectsV2Output {
        name: Some(input.bucket.clone()),
        prefix: Some(wire(prefix.as_str().to_owned(), encoded)),
        delimiter: input.delimiter.clone().map(|d| wire(d, encoded)),
        start_after: input.start_after.clone().map(|s| wire(s, encoded)),
        max_keys: Some(i32::try_from(max_keys).unwrap_or(MAX_KEYS)),
        key_count: Some(i32::try_from(page.count).unwrap_or(MAX_KEYS)),
        continuation_token: input.continuation_token.clone(),
        is_truncated: Some(page.next_from.is_some()),
        next_continuation_token: page.next_from.map(|from| URL_SAFE_NO_PAD.encode(from)),
        contents: Some(contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type.clone(),
        ..ListObjectsV2Output::default()
    }))
}

/// Where a v1 listing after `marker` starts: after every key the marker stands for (a common
/// prefix stands for all keys under it).
fn from_marker(marker: &str, prefix: &ObjectPrefix, delimiter: Option<&str>) -> Vec<u8> {
    let is_common_prefix = delimiter.is_some_and(|d| {
        marker
            .strip_prefix(prefix.as_str())
            .and_then(|rest| rest.find(d).map(|at| at + d.len() == rest.len()))
            .unwrap_or(false)
    });
    if is_common_prefix {
        after_prefix(marker)
    } else {
        from_after(marker)
    }
}

pub(crate) async fn list_objects(
    front: &S3Front,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let principal = principal(&req.extensions)?;
    let input = &req.input;
    let encoded = url_encoded(input.encoding_type.as_ref())?;
    let prefix = prefix(input.prefix.as_deref())?;
    let max_keys = max_keys(input.max_keys)?;
    let from = input
        .marker
        .as_deref()
        .map(|m| from_marker(m, &prefix, input.delimiter.as_deref()))
        .unwrap_or_default();
    let page = page(
        front,
        &principal.tenant,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        &from,
        max_keys,
        encoded,
    )
    .await?;
    let truncated = page.next_from.is_some();
    Ok(S3Response::new(ListObjectsOutput {
        name: Some(input.bucket.clone()),
        prefix: Some(wire(prefix.as_str().to_owned(), encoded)),
        delimiter: input.delimiter.clone().map(|d| wire(d, encoded)),
        marker: input.marker.clone().map(|m| wire(m, encoded)),
        max_keys: Some(i32::try_from(max_keys).unwrap_or(MAX_KEYS)),
        is_truncated: Some(truncated),
        next_marker: page.last.filter(|_| truncated).map(|l| wire(l, encoded)),
        contents: Some(page.contents),
        common_prefixes: Some(page.common_prefixes),
        encoding_type: input.encoding_type.clone(),
        ..ListObjectsOutput::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_slashes_and_unreserved_characters() {
        assert_eq!(encode("a b/c+d~é"), "a%20b/c%2Bd~%C3%A9");
    }

    #[test]
    fn a_common_prefix_marker_skips_the_whole_prefix() {
        let all = ObjectPrefix::all();
        assert_eq!(from_marker("a/", &all, Some("/")), b"a0".to_vec());
        assert_eq!(from_marker("a/b", &all, Some("/")), b"a/b\0".to_vec());
        assert_eq!(from_marker("a/", &all, None), b"a/\0".to_vec());
    }

    #[test]
    fn continuation_tokens_must_decode() {
        assert_eq!(
            decode_token(&URL_SAFE_NO_PAD.encode(b"k\0")).unwrap(),
            b"k\0"
        );
        for bad in ["", "!!!", "a"] {
            let error = decode_token(bad).unwrap_err();
            assert_eq!(error.code().clone(), S3ErrorCode::InvalidArgument, "{bad}");
        }
    }
}
