//! Objects through the sealing layer: every chunk sealed on its own (so a range reads only its
//! chunks), bound to its blob and index; ETags stored as tokens (so `If-Match` still compares
//! in the backend) and the real ETag with every attribute sealed. Bucket names, object keys,
//! sizes, times, blob ids and part numbers stay as they are: listings order and page by them.

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::keys::{Context, DataKey, OVERHEAD};
use super::{Sealed, ctx};
use crate::error::{Error, Result};
use crate::object::{
    BucketInfo, CHUNK_BYTES, DataId, ObjectAttributes, ObjectMeta, ObjectStore, PartRecord,
    Precondition, ReapPolicy, UploadId, UploadInfo,
};
use crate::types::{BucketName, Limit, ObjectKey, ObjectPrefix, TenantId, Timestamp};

/// What marks a sealed chunk, before its ciphertext.
pub(super) const CHUNK_MAGIC: [u8; 4] = [0xF0, b'p', b'8', b's'];
/// Bytes a sealed chunk takes beyond its plaintext.
pub const CHUNK_OVERHEAD: usize = CHUNK_MAGIC.len() + OVERHEAD;
/// The one attribute a sealed object, upload or part stores.
pub(super) const SEALED_ATTRIBUTE: &str = "p8fs-sealed";

/// What the sealed attribute holds.
#[derive(Serialize, Deserialize)]
struct SealedAttributes {
    etag: String,
    attributes: ObjectAttributes,
}

/// What a sealed part's checksums hold.
#[derive(Serialize, Deserialize)]
struct SealedPart {
    etag: String,
    checksums: BTreeMap<String, String>,
}

fn seal_json<T: Serialize>(key: &DataKey, context: &Context<'_>, value: &T) -> Result<String> {
    let plain = serde_json::to_vec(value)
        .map_err(|e| Error::internal("cannot serialize attributes", Some(e.into())))?;
    Ok(URL_SAFE_NO_PAD.encode(key.seal(context, &plain)?))
}

fn open_json<T: for<'de> Deserialize<'de>>(
    key: &DataKey,
    context: &Context<'_>,
    text: &str,
) -> Result<T> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.as_bytes())
        .map_err(|_| Error::internal("sealed attributes are not base64url", None))?;
    let plain = key.open_in(context, bytes, 0)?;
    serde_json::from_slice(&plain)
        .map_err(|e| Error::internal("sealed attributes do not parse", Some(e.into())))
}

fn etag_token(key: &DataKey, etag: &str) -> String {
    let mut canonical = b"etag\0".to_vec();
    canonical.extend_from_slice(etag.as_bytes());
    key.token(&canonical)
}

pub(super) fn sealed_only(attributes: &ObjectAttributes) -> Option<&str> {
    let only = attributes.content_type.is_none()
        && attributes.headers.is_empty()
        && attributes.checksums.is_empty()
        && attributes.metadata.len() == 1;
    if only {
        attributes
            .metadata
            .get(SEALED_ATTRIBUTE)
            .map(String::as_str)
    } else {
        None
    }
}

fn holding(text: String) -> ObjectAttributes {
    ObjectAttributes {
        metadata: BTreeMap::from([(SEALED_ATTRIBUTE.to_owned(), text)]),
        ..ObjectAttributes::default()
    }
}

impl Sealed {
    pub(super) fn seal_meta(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
    ) -> Result<ObjectMeta> {
        let record = [bucket.as_bytes(), meta.key.as_bytes()];
        let context = ctx(tenant, "object", &record);
        let text = seal_json(
            key,
            &context,
            &SealedAttributes {
                etag: meta.etag.clone(),
                attributes: meta.attributes.clone(),
            },
        )?;
        Ok(ObjectMeta {
            etag: etag_token(key, &meta.etag),
            attributes: holding(text),
            ..meta.clone()
        })
    }

    pub(super) fn open_meta(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        bucket: &BucketName,
        mut meta: ObjectMeta,
    ) -> Result<ObjectMeta> {
        let Some(text) = sealed_only(&meta.attributes) else {
            return self.plain(meta);
        };
        let record = [bucket.as_bytes(), meta.key.as_bytes()];
        let context = ctx(tenant, "object", &record);
        let sealed: SealedAttributes = open_json(key, &context, text)?;
        meta.etag = sealed.etag;
        meta.attributes = sealed.attributes;
        Ok(meta)
    }

    fn plain<T>(&self, record: T) -> Result<T> {
        if self.plain_ok() {
            Ok(record)
        } else {
            Err(Error::internal(
                "a stored object record is not sealed, in a store sealed since it was created",
                None,
            ))
        }
    }

    fn condition(&self, key: &DataKey, condition: &Precondition) -> Precondition {
        match condition {
            Precondition::IfEtag(etag) => Precondition::IfEtag(etag_token(key, etag)),
            other => other.clone(),
        }
    }

    fn open_upload(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        bucket: &BucketName,
        mut upload: UploadInfo,
    ) -> Result<UploadInfo> {
        let Some(text) = sealed_only(&upload.attributes) else {
            return self.plain(upload);
        };
        let record = [bucket.as_bytes(), upload.key.as_bytes()];
        let context = ctx(tenant, "upload", &record);
        upload.attributes = open_json(key, &context, text)?;
        Ok(upload)
    }

    fn part_context<'a>(
        tenant: &'a TenantId,
        bucket: &'a BucketName,
        record: &'a [&'a [u8]],
    ) -> Context<'a> {
        let _ = bucket;
        ctx(tenant, "part", record)
    }

    fn open_part(
        &self,
        key: &DataKey,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        mut part: PartRecord,
    ) -> Result<PartRecord> {
        let text = match part.checksums.get(SEALED_ATTRIBUTE) {
            Some(text) if part.checksums.len() == 1 => text.clone(),
            _ => return self.plain(part),
        };
        let id = upload.0.to_be_bytes();
        let number = part.number.to_be_bytes();
        let record: [&[u8]; 3] = [bucket.as_bytes(), &id, &number];
        let sealed: SealedPart =
            open_json(key, &Self::part_context(tenant, bucket, &record), &text)?;
        part.etag = sealed.etag;
        part.checksums = sealed.checksums;
        Ok(part)
    }
}

fn chunk_record(data: DataId, index: u32) -> ([u8; 8], [u8; 4]) {
    (data.0.to_be_bytes(), index.to_be_bytes())
}

#[async_trait]
impl ObjectStore for Sealed {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        Self::refuse_keyring(tenant)?;
        self.inner.create_bucket(tenant, bucket).await
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        Self::refuse_keyring(tenant)?;
        self.inner.bucket(tenant, bucket).await
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        Self::refuse_keyring(tenant)?;
        self.inner.list_buckets(tenant).await
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete_bucket(tenant, bucket).await
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        Self::refuse_keyring(tenant)?;
        self.inner.begin_data(tenant).await
    }

    async fn write_chunk(
        &self,
        tenant: &TenantId,
        data: DataId,
        index: u32,
        bytes: &[u8],
    ) -> Result<()> {
        if bytes.len() > CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk",
                format!(
                    "is {} bytes; at most {CHUNK_BYTES} are allowed",
                    bytes.len()
                ),
            ));
        }
        let dk = self.key(tenant).await?;
        let (id, at) = chunk_record(data, index);
        let mut stored = Vec::with_capacity(bytes.len() + CHUNK_OVERHEAD);
        stored.extend_from_slice(&CHUNK_MAGIC);
        dk.seal_into(&ctx(tenant, "chunk", &[&id, &at]), bytes, &mut stored)?;
        self.inner.write_chunk(tenant, data, index, &stored).await
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        let dk = self.key(tenant).await?;
        let stored = self.inner.read_chunk(tenant, data, index).await?;
        let (id, at) = chunk_record(data, index);
        let record: [&[u8]; 2] = [&id, &at];
        let context = ctx(tenant, "chunk", &record);
        if stored.starts_with(&CHUNK_MAGIC) {
            dk.open_in(&context, stored, CHUNK_MAGIC.len())
        } else {
            self.plain(stored)
        }
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        Self::refuse_keyring(tenant)?;
        self.inner.discard_data(tenant, data).await
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_meta(&dk, tenant, bucket, meta)?;
        self.inner
            .put_object(tenant, bucket, &sealed, &self.condition(&dk, condition))
            .await
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        let dk = self.key(tenant).await?;
        match self.inner.object(tenant, bucket, key).await? {
            Some(meta) => Ok(Some(self.open_meta(&dk, tenant, bucket, meta)?)),
            None => Ok(None),
        }
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        Self::refuse_keyring(tenant)?;
        self.inner.delete_object(tenant, bucket, key).await
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        let dk = self.key(tenant).await?;
        self.inner
            .list_objects(tenant, bucket, prefix, from, limit)
            .await?
            .into_iter()
            .map(|m| self.open_meta(&dk, tenant, bucket, m))
            .collect()
    }

    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        let dk = self.key(tenant).await?;
        let record = [bucket.as_bytes(), key.as_bytes()];
        let context = ctx(tenant, "upload", &record);
        let sealed = holding(seal_json(&dk, &context, attributes)?);
        let upload = self
            .inner
            .create_upload(tenant, bucket, key, &sealed, expires_at)
            .await?;
        self.open_upload(&dk, tenant, bucket, upload)
    }

    async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<Option<UploadInfo>> {
        let dk = self.key(tenant).await?;
        match self.inner.upload(tenant, bucket, upload).await? {
            Some(info) => Ok(Some(self.open_upload(&dk, tenant, bucket, info)?)),
            None => Ok(None),
        }
    }

    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        let dk = self.key(tenant).await?;
        self.inner
            .list_uploads(tenant, bucket, prefix, after, limit)
            .await?
            .into_iter()
            .map(|u| self.open_upload(&dk, tenant, bucket, u))
            .collect()
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let id = upload.0.to_be_bytes();
        let number = part.number.to_be_bytes();
        let record: [&[u8]; 3] = [bucket.as_bytes(), &id, &number];
        let text = seal_json(
            &dk,
            &Self::part_context(tenant, bucket, &record),
            &SealedPart {
                etag: part.etag.clone(),
                checksums: part.checksums.clone(),
            },
        )?;
        let sealed = PartRecord {
            etag: etag_token(&dk, &part.etag),
            checksums: BTreeMap::from([(SEALED_ATTRIBUTE.to_owned(), text)]),
            ..part.clone()
        };
        self.inner.put_part(tenant, bucket, upload, &sealed).await
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        let dk = self.key(tenant).await?;
        self.inner
            .list_parts(tenant, bucket, upload, after, limit)
            .await?
            .into_iter()
            .map(|p| self.open_part(&dk, tenant, bucket, upload, p))
            .collect()
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let dk = self.key(tenant).await?;
        let sealed = self.seal_meta(&dk, tenant, bucket, meta)?;
        self.inner
            .complete_upload(
                tenant,
                bucket,
                upload,
                &sealed,
                &self.condition(&dk, condition),
            )
            .await
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        Self::refuse_keyring(tenant)?;
        self.inner.abort_upload(tenant, bucket, upload).await
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        self.inner.reap_objects(policy).await
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        Self::refuse_keyring(tenant)?;
        self.inner.stored_bytes(tenant).await
    }
}
