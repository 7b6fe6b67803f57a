//! Objects: not implemented yet (being written).
#![allow(unused_variables)]

use async_trait::async_trait;
use p8fs_core::{
    BucketInfo, BucketName, DataId, Error, Limit, ObjectAttributes, ObjectKey, ObjectMeta,
    ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Result, TenantId, Timestamp,
    UploadId, UploadInfo,
};

#[async_trait]
impl ObjectStore for crate::TidbBackend {
    async fn create_bucket(&self, _tenant: &TenantId, _bucket: &BucketName) -> Result<BucketInfo> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn bucket(&self, _tenant: &TenantId, _bucket: &BucketName) -> Result<Option<BucketInfo>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn list_buckets(&self, _tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn begin_data(&self, _tenant: &TenantId) -> Result<DataId> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn read_chunk(&self, _tenant: &TenantId, _data: DataId, _index: u32) -> Result<Vec<u8>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn object(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn delete_object(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _key: &ObjectKey,
    ) -> Result<bool> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn list_objects(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _prefix: &ObjectPrefix,
        _from: &[u8],
        _limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn create_upload(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _attributes: &ObjectAttributes,
        _expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn upload(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _upload: UploadId,
    ) -> Result<Option<UploadInfo>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn list_uploads(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _prefix: &ObjectPrefix,
        _after: Option<(&ObjectKey, UploadId)>,
        _limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn list_parts(
        &self,
        _tenant: &TenantId,
        _bucket: &BucketName,
        _upload: UploadId,
        _after: u32,
        _limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn reap_objects(&self, _policy: ReapPolicy) -> Result<u64> {
        Err(Error::internal("objects are not implemented yet", None))
    }

    async fn stored_bytes(&self, _tenant: &TenantId) -> Result<u64> {
        Err(Error::internal("objects are not implemented yet", None))
    }
}
