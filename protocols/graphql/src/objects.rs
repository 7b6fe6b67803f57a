//! Buckets and objects, the same as the S3 front-end's: `buckets`, `objects(bucket, prefix,
//! delimiter)` as ListObjectsV2 pages them, an object's metadata and its indexing status, and
//! the writes that need no bytes (`createBucket`, `deleteBucket`, `deleteObject`); bytes go
//! through S3 or REST, or a presigned `downloadUrl` on the S3 listener. Scopes `s3:read`,
//! `s3:write` (and `memories:read` for `indexStatus`).

use std::time::Duration;

use async_graphql::{ComplexObject, Context, Json, Object, SimpleObject};
use p8fs_auth::Scope;
use p8fs_core::object::{from_after, hex, list_objects_v2, unhex};
use p8fs_core::{BucketInfo, BucketName, Error, ObjectKey, ObjectMeta, ObjectPrefix};
use serde_json::Value;

use crate::context::{caller, state};
use crate::error::GqlResult;
use crate::memories::{IndexStatusView, memory_service};
use crate::page;
use crate::scalars::Long;

/// A bucket.
#[derive(SimpleObject)]
pub struct Bucket {
    pub name: String,
    pub created_at: Long,
}

impl From<BucketInfo> for Bucket {
    fn from(info: BucketInfo) -> Self {
        Bucket {
            name: info.name.into_string(),
            created_at: Long(info.created_at),
        }
    }
}

/// An object's metadata.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ObjectInfo {
    #[graphql(skip)]
    pub bucket: String,
    pub key: String,
    pub size: Long,
    /// The S3 ETag, without quotes.
    pub etag: String,
    pub content_type: Option<String>,
    pub last_modified: Long,
    pub expires_at: Option<Long>,
    /// User metadata (`x-amz-meta-*` without the prefix).
    pub metadata: Json<Value>,
}

impl ObjectInfo {
    fn of(bucket: &BucketName, meta: ObjectMeta) -> Self {
        ObjectInfo {
            bucket: bucket.as_str().to_owned(),
            key: meta.key.into_string(),
            size: Long::from(meta.size),
            etag: meta.etag,
            content_type: meta.attributes.content_type,
            last_modified: Long(meta.last_modified),
            expires_at: meta.expires_at.map(Long),
            metadata: Json(serde_json::to_value(meta.attributes.metadata).unwrap_or_default()),
        }
    }
}

#[ComplexObject]
impl ObjectInfo {
    /// Where indexing the object for search by meaning stands.
    async fn index_status(&self, ctx: &Context<'_>) -> async_graphql::Result<IndexStatusView> {
        let caller = caller(ctx, Scope::MemoriesRead)?;
        let memory = memory_service(ctx).gql()?;
        let bucket = BucketName::new(self.bucket.clone()).gql()?;
        let key = ObjectKey::new(self.key.clone()).gql()?;
        let status = memory
            .index_status(&caller.tenant, &bucket, &key)
            .await
            .gql()?;
        Ok(status.into())
    }

    /// A URL that downloads the object with a plain `GET`, no token needed, from the S3
    /// listener: signed with credentials minted for the caller (`s3:read` only), it lasts
    /// `expiresIn` seconds (1 to 604800, default 900) or until the caller's token expires or
    /// is revoked, whichever comes first. `UNAVAILABLE` when S3 is not served.
    async fn download_url(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 900)] expires_in: i64,
    ) -> async_graphql::Result<DownloadUrl> {
        let caller = caller(ctx, Scope::S3Read)?;
        let presigner = state(ctx)
            .presigner
            .as_ref()
            .ok_or_else(|| {
                Error::unavailable("S3 is not served, so there is no download URL", None)
            })
            .gql()?;
        let expires_in = u64::try_from(expires_in)
            .map(Duration::from_secs)
            .map_err(|_| Error::invalid("expiresIn", "must be between 1 and 604800 seconds"))
            .gql()?;
        let bucket = BucketName::new(self.bucket.clone()).gql()?;
        let key = ObjectKey::new(self.key.clone()).gql()?;
        let signed = presigner
            .download_url(caller, &bucket, &key, expires_in)
            .await
            .gql()?;
        Ok(DownloadUrl {
            url: signed.url,
            expires_at: Long(signed.expires_at),
        })
    }
}

/// A presigned download URL.
#[derive(SimpleObject)]
pub struct DownloadUrl {
    pub url: String,
    /// When the URL stops working (milliseconds since the Unix epoch).
    pub expires_at: Long,
}

/// A page of a bucket's listing.
#[derive(SimpleObject)]
pub struct ObjectListing {
    pub objects: Vec<ObjectInfo>,
    /// With a delimiter: the key prefixes up to and including it, ascending.
    pub common_prefixes: Vec<String>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

#[derive(Default)]
pub struct ObjectQuery;

#[Object]
impl ObjectQuery {
    /// Every bucket, names ascending.
    async fn buckets(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Bucket>> {
        let caller = caller(ctx, Scope::S3Read)?;
        let buckets = state(ctx)
            .backend
            .list_buckets(&caller.tenant)
            .await
            .gql()?;
        Ok(buckets.into_iter().map(Bucket::from).collect())
    }

    /// The object `key` of `bucket`, or null; NOT_FOUND when there is no such bucket.
    async fn object(
        &self,
        ctx: &Context<'_>,
        bucket: String,
        key: String,
    ) -> async_graphql::Result<Option<ObjectInfo>> {
        let caller = caller(ctx, Scope::S3Read)?;
        let bucket = BucketName::new(bucket).gql()?;
        let key = ObjectKey::new(key).gql()?;
        let backend = &state(ctx).backend;
        if backend
            .bucket(&caller.tenant, &bucket)
            .await
            .gql()?
            .is_none()
        {
            return Err(Error::not_found(p8fs_core::Resource::Bucket, &bucket)).gql();
        }
        let meta = backend.object(&caller.tenant, &bucket, &key).await.gql()?;
        Ok(meta.map(|meta| ObjectInfo::of(&bucket, meta)))
    }

    /// Objects of `bucket` whose key starts with `prefix`, in key order; with a `delimiter`,
    /// keys that continue past it are rolled up into `commonPrefixes`.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a GraphQL field takes its arguments one by one"
    )]
    async fn objects(
        &self,
        ctx: &Context<'_>,
        bucket: String,
        #[graphql(default)] prefix: String,
        delimiter: Option<String>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
        start_after: Option<String>,
    ) -> async_graphql::Result<ObjectListing> {
        let caller = caller(ctx, Scope::S3Read)?;
        let bucket = BucketName::new(bucket).gql()?;
        let prefix = ObjectPrefix::new(prefix).gql()?;
        let limit = page::first(first).gql()?;
        let from = match (after, start_after) {
            (Some(cursor), _) => unhex(&cursor)
                .filter(|from| !from.is_empty())
                .ok_or_else(|| Error::invalid("after", "is not a cursor this API issued"))
                .gql()?,
            (None, Some(key)) => {
                let key = ObjectKey::new(key)
                    .map_err(|e| e.renamed("startAfter"))
                    .gql()?;
                from_after(key.as_str())
            }
            (None, None) => Vec::new(),
        };
        let listing = list_objects_v2(
            state(ctx).backend.as_ref(),
            &caller.tenant,
            &bucket,
            &prefix,
            delimiter.as_deref(),
            &from,
            u32::try_from(limit.get()).unwrap_or(u32::MAX),
        )
        .await
        .gql()?;
        Ok(ObjectListing {
            objects: listing
                .objects
                .into_iter()
                .map(|meta| ObjectInfo::of(&bucket, meta))
                .collect(),
            common_prefixes: listing.common_prefixes,
            next: listing.next_from.as_deref().map(hex),
        })
    }
}

#[derive(Default)]
pub struct ObjectMutation;

#[Object]
impl ObjectMutation {
    /// Creates a bucket (S3 naming rules); CONFLICT when the tenant has one of that name.
    async fn create_bucket(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Bucket> {
        let caller = caller(ctx, Scope::S3Write)?;
        let name = BucketName::new(name).gql()?;
        let info = state(ctx)
            .backend
            .create_bucket(&caller.tenant, &name)
            .await
            .gql()?;
        Ok(info.into())
    }

    /// Deletes an empty bucket; CONFLICT when it holds objects.
    async fn delete_bucket(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::S3Write)?;
        let name = BucketName::new(name).gql()?;
        state(ctx)
            .backend
            .delete_bucket(&caller.tenant, &name)
            .await
            .gql()?;
        Ok(true)
    }

    /// Deletes an object; returns whether one was there.
    async fn delete_object(
        &self,
        ctx: &Context<'_>,
        bucket: String,
        key: String,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::S3Write)?;
        let bucket = BucketName::new(bucket).gql()?;
        let key = ObjectKey::new(key).gql()?;
        state(ctx)
            .backend
            .delete_object(&caller.tenant, &bucket, &key)
            .await
            .gql()
    }
}
