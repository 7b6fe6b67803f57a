//! Buckets: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation. Each
//! tenant has its own namespace: a name another tenant uses is simply free here.

use p8fs_core::ErrorKind;
use s3s::dto::{
    Bucket, CreateBucketInput, CreateBucketOutput, DeleteBucketInput, DeleteBucketOutput,
    GetBucketLocationInput, GetBucketLocationOutput, HeadBucketInput, HeadBucketOutput,
    ListBucketsInput, ListBucketsOutput,
};
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use crate::S3Front;
use crate::auth::principal;
use crate::error::{bucket_name, s3_error};

pub(crate) async fn list_buckets(
    front: &S3Front,
    req: S3Request<ListBucketsInput>,
) -> S3Result<S3Response<ListBucketsOutput>> {
    let principal = principal(&req.extensions)?;
    let buckets = front
        .backend
        .list_buckets(&principal.tenant)
        .await
        .map_err(s3_error)?;
    let prefix = req.input.prefix.unwrap_or_default();
    let buckets = buckets
        .into_iter()
        .filter(|b| b.name.as_str().starts_with(prefix.as_str()))
        .map(|b| Bucket {
            name: Some(b.name.as_str().to_owned()),
            creation_date: Some(crate::timestamp(b.created_at)),
            bucket_region: None,
        })
        .collect();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(buckets),
        owner: Some(crate::owner(principal)),
        ..ListBucketsOutput::default()
    }))
}

pub(crate) async fn create_bucket(
    front: &S3Front,
    req: S3Request<CreateBucketInput>,
) -> S3Result<S3Response<CreateBucketOutput>> {
    let principal = principal(&req.extensions)?;
    let bucket = bucket_name(&req.input.bucket)?;
    match front
        .backend
        .create_bucket(&principal.tenant, &bucket)
        .await
    {
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            return Err(S3Error::with_message(
                S3ErrorCode::BucketAlreadyOwnedByYou,
                "you already own a bucket of this name",
            ));
        }
        Err(error) => return Err(s3_error(error)),
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(format!("/{}", bucket.as_str())),
    }))
}

pub(crate) async fn head_bucket(
    front: &S3Front,
    req: S3Request<HeadBucketInput>,
) -> S3Result<S3Response<HeadBucketOutput>> {
    let principal = principal(&req.extensions)?;
    let bucket = bucket_name(&req.input.bucket)?;
    crate::existing_bucket(front, &principal.tenant, &bucket).await?;
    Ok(S3Response::new(HeadBucketOutput::default()))
}

pub(crate) async fn delete_bucket(
    front: &S3Front,
    req: S3Request<DeleteBucketInput>,
) -> S3Result<S3Response<DeleteBucketOutput>> {
    let principal = principal(&req.extensions)?;
    let bucket = bucket_name(&req.input.bucket)?;
    match front
        .backend
        .delete_bucket(&principal.tenant, &bucket)
        .await
    {
        Ok(()) => Ok(S3Response::new(DeleteBucketOutput::default())),
        Err(error) if error.kind() == ErrorKind::Conflict => Err(S3Error::with_message(
            S3ErrorCode::BucketNotEmpty,
            "the bucket you tried to delete is not empty",
        )),
        Err(error) => Err(s3_error(error)),
    }
}

pub(crate) async fn get_bucket_location(
    front: &S3Front,
    req: S3Request<GetBucketLocationInput>,
) -> S3Result<S3Response<GetBucketLocationOutput>> {
    let principal = principal(&req.extensions)?;
    let bucket = bucket_name(&req.input.bucket)?;
    crate::existing_bucket(front, &principal.tenant, &bucket).await?;
    // The default region (us-east-1) is an empty location constraint.
    Ok(S3Response::new(GetBucketLocationOutput::default()))
}
