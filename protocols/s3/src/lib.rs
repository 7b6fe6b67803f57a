//! p8fs-s3: the S3 front-end. [`service`] builds s3s's service around an implementation of
//! its `S3` trait over `Arc<dyn Backend>` (the object capability, [`p8fs_core::ObjectStore`]),
//! one module per operation group: `bucket`, `object` (put, get, head, delete), `copy`,
//! `list`, `multipart`. Who calls and what they may do is `auth` (SigV4 secrets and principals
//! from `p8fs_auth::s3::S3Credentials`, scopes `s3:read` / `s3:write`); `sts` answers
//! `AssumeRoleWithWebIdentity` on the same listener; `error` is the one mapping from core's
//! error kinds to S3 codes; `body` streams bytes in and out; `checksum` checks them.
//!
//! Invariants:
//! - the tenant comes from the access key's principal, never from the request: each tenant has
//!   its own bucket namespace and never learns whether another tenant's bucket exists;
//! - bodies stream in bounded memory (one chunk in, one chunk out per request);
//! - object semantics (chunking, listing, multipart plans, ranges, read conditions) are core's
//!   free functions, never re-implemented here.

mod auth;
mod body;
mod bucket;
mod checksum;
mod copy;
mod error;
mod list;
mod multipart;
mod object;
pub mod presign;
pub mod ssec;
mod sts;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p8fs_auth::s3::S3Credentials;
use p8fs_core::{Backend, Clock, ObjectAttributes, Timestamp};
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::dto::{self, TimestampFormat};
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput,
    CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput, CreateBucketInput,
    CreateBucketOutput, CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput,
    DeleteBucketOutput, DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput,
    DeleteObjectsOutput, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput,
    GetObjectOutput, HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput,
    ListBucketsInput, ListBucketsOutput, ListMultipartUploadsInput, ListMultipartUploadsOutput,
    ListObjectsInput, ListObjectsOutput, ListObjectsV2Input, ListObjectsV2Output, ListPartsInput,
    ListPartsOutput, PutObjectInput, PutObjectOutput, UploadPartCopyInput, UploadPartCopyOutput,
    UploadPartInput, UploadPartOutput,
};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3, S3Request, S3Response, S3Result};

/// Largest XML request body (CompleteMultipartUpload of 10,000 parts, DeleteObjects of 1,000
/// keys), read in full after the request is authenticated.
pub const MAX_XML_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest form field s3s buffers before authentication (browser POST uploads, STS forms).
pub const MAX_FORM_FIELD_BYTES: usize = 16 * 1024;

/// How the S3 front-end is set up.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// The domain under which `bucket.<domain>` addresses a bucket (virtual-host style);
    /// without it every request is path-style.
    pub domain: Option<String>,
}

/// The S3 operations over a backend.
pub(crate) struct S3Front {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The S3 service: operations, SigV4 with keys from `credentials`, scope checks, STS, the
/// bucket-name rules of core and, with a domain, virtual-host-style addressing.
pub fn service(
    backend: Arc<dyn Backend>,
    credentials: Arc<S3Credentials>,
    clock: Arc<dyn Clock>,
    settings: &S3Settings,
) -> Result<S3Service, String> {
    let mut builder = S3ServiceBuilder::new(S3Front { backend, clock });
    builder.set_auth(auth::KeyAuth {
        credentials: credentials.clone(),
    });
    builder.set_access(auth::ScopeAccess {
        credentials: credentials.clone(),
    });
    builder.set_route(sts::Sts { credentials });
    builder.set_validation(auth::CoreNames);
    if let Some(domain) = &settings.domain {
        if domain.is_empty() || domain.contains(['/', ':', ' ']) {
            return Err(format!(
                "s3.domain: `{domain}` is not a domain name (no scheme, port or path)"
            ));
        }
        builder.set_host(auth::DomainHost {
            domain: domain.to_ascii_lowercase(),
        });
    }
    let mut config = S3Config::default();
    config.xml_max_body_size = MAX_XML_BODY_BYTES;
    // Browser POST uploads would be buffered whole before authentication: refused.
    config.post_object_max_file_size = 0;
    config.form_max_field_size = MAX_FORM_FIELD_BYTES;
    config.form_max_fields_size = 4 * MAX_FORM_FIELD_BYTES;
    config.form_max_parts = 32;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
    Ok(builder.build())
}

/// Milliseconds since the epoch as an S3 timestamp.
pub(crate) fn timestamp(millis: Timestamp) -> dto::Timestamp {
    let time = match u64::try_from(millis) {
        Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_millis(after),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs()),
    };
    dto::Timestamp::from(time)
}

/// An S3 timestamp as milliseconds since the epoch.
pub(crate) fn millis(timestamp: &dto::Timestamp) -> Timestamp {
    let time = time::OffsetDateTime::from(timestamp.clone());
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The stored HTTP headers an upload may carry, by their lower-case names.
pub(crate) struct StoredHeaders<'a> {
    pub(crate) content_type: Option<&'a str>,
    pub(crate) cache_control: Option<&'a str>,
    pub(crate) content_disposition: Option<&'a str>,
    pub(crate) content_encoding: Option<&'a str>,
    pub(crate) content_language: Option<&'a str>,
    pub(crate) expires: Option<&'a dto::Timestamp>,
    pub(crate) metadata: Option<&'a dto::Metadata>,
}

impl StoredHeaders<'_> {
    /// The object attributes, validated by core (sizes, no U+0000).
    pub(crate) fn attributes(&self) -> S3Result<ObjectAttributes> {
        let mut headers = BTreeMap::new();
        for (name, value) in [
            ("cache-control", self.cache_control),
            ("content-disposition", self.content_disposition),
            ("content-encoding", self.content_encoding),
            ("content-language", self.content_language),
        ] {
            if let Some(value) = value {
                headers.insert(name.to_owned(), value.to_owned());
            }
        }
        if let Some(expires) = self.expires {
            let mut text = Vec::new();
            if expires.format(TimestampFormat::HttpDate, &mut text).is_ok() {
                headers.insert("expires".to_owned(), String::from_utf8_lossy(&text).into());
            }
        }
        let metadata = self
            .metadata
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        let attributes = ObjectAttributes {
            content_type: self.content_type.map(str::to_owned),
            headers,
            metadata,
            checksums: BTreeMap::new(),
        };
        attributes.validate().map_err(error::s3_error)?;
        Ok(attributes)
    }
}

/// The response fields of stored attributes.
pub(crate) struct WireAttributes {
    pub(crate) content_type: Option<String>,
    pub(crate) cache_control: Option<String>,
    pub(crate) content_disposition: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) content_language: Option<String>,
    pub(crate) expires: Option<dto::Timestamp>,
    pub(crate) metadata: Option<dto::Metadata>,
}

impl WireAttributes {
    pub(crate) fn of(attributes: &ObjectAttributes) -> Self {
        let header = |name: &str| attributes.headers.get(name).cloned();
        Self {
            content_type: attributes.content_type.clone(),
            cache_control: header("cache-control"),
            content_disposition: header("content-disposition"),
            content_encoding: header("content-encoding"),
            content_language: header("content-language"),
            expires: attributes
                .headers
                .get("expires")
                .and_then(|v| dto::Timestamp::parse(TimestampFormat::HttpDate, v).ok()),
            metadata: (!attributes.metadata.is_empty()).then(|| {
                attributes
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
        }
    }
}

/// An ETag as S3 sends it (quoted by s3s).
pub(crate) fn etag(value: &str) -> dto::ETag {
    dto::ETag::Strong(value.to_owned())
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        bucket::list_buckets(self, req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket::create_bucket(self, req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        bucket::head_bucket(self, req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        bucket::delete_bucket(self, req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        bucket::get_bucket_location(self, req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        object::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        object::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        object::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        object::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        object::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        copy::copy_object(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        copy::upload_part_copy(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        list::list_objects(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        list::list_objects_v2(self, req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }
}

/// The owner shown in listings: the tenant.
pub(crate) fn owner(principal: &p8fs_auth::Principal) -> dto::Owner {
    dto::Owner {
        display_name: Some(principal.tenant.as_str().to_owned()),
        id: Some(principal.tenant.as_str().to_owned()),
    }
}

/// `NoSuchBucket` unless the tenant has the bucket.
pub(crate) async fn existing_bucket(
    front: &S3Front,
    tenant: &p8fs_core::TenantId,
    bucket: &p8fs_core::BucketName,
) -> S3Result<()> {
    match front
        .backend
        .bucket(tenant, bucket)
        .await
        .map_err(error::s3_error)?
    {
        Some(_) => Ok(()),
        None => Err(error::s3_error(p8fs_core::Error::not_found(
            p8fs_core::Resource::Bucket,
            bucket,
        ))),
    }
}
