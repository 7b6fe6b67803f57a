//! Objects in the reference model: buckets, objects, data blobs with their chunks, and multipart
//! uploads, each in a plain map. A blob is *pending* from `begin_data` until an object or a part
//! takes it, *in use* while one holds it, and *freed* from the moment its holder is replaced,
//! deleted, aborted or purged, until the reaper removes it. Buckets and committed objects append
//! their changes; blobs, uploads and parts, which nothing can see, append none.

use std::collections::BTreeMap;

use async_trait::async_trait;

use p8fs_core::object::{CHUNK_BYTES, MAX_BUCKETS, object_visible};
use p8fs_core::{
    BucketInfo, BucketName, ChangeEvent, DataId, Error, Limit, ObjectAttributes, ObjectKey,
    ObjectMeta, ObjectPrefix, ObjectStore, PartRecord, Precondition, ReapPolicy, Resource, Result,
    Subject, TenantId, Timestamp, UploadId, UploadInfo,
};

use super::{ModelBackend, State};

/// Every object-related map of the model.
#[derive(Debug, Default)]
pub(super) struct Objects {
    buckets: BTreeMap<(TenantId, BucketName), BucketInfo>,
    /// Objects as stored, expired ones included until they are purged, replaced or deleted.
    objects: BTreeMap<(TenantId, BucketName, ObjectKey), ObjectMeta>,
    blobs: BTreeMap<(TenantId, DataId), Blob>,
    uploads: BTreeMap<(TenantId, BucketName, UploadId), Upload>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobState {
    /// Begun at this time, held by nothing yet.
    Pending { begun: Timestamp },
    /// Held by an object or an upload part.
    InUse,
    /// Released by its holder at this time.
    Freed { at: Timestamp },
}

#[derive(Debug)]
struct Blob {
    state: BlobState,
    chunks: BTreeMap<u32, Vec<u8>>,
}

#[derive(Debug)]
struct Upload {
    info: UploadInfo,
    parts: BTreeMap<u32, PartRecord>,
}

impl Objects {
    fn require_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        if self.buckets.contains_key(&(tenant.clone(), bucket.clone())) {
            Ok(())
        } else {
            Err(Error::not_found(Resource::Bucket, bucket))
        }
    }

    fn visible(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        now: Timestamp,
    ) -> Option<&ObjectMeta> {
        self.objects
            .get(&(tenant.clone(), bucket.clone(), key.clone()))
            .filter(|m| object_visible(m, now))
    }

    fn pending(&self, tenant: &TenantId, data: DataId) -> bool {
        self.blobs
            .get(&(tenant.clone(), data))
            .is_some_and(|b| matches!(b.state, BlobState::Pending { .. }))
    }

    fn set_state(&mut self, tenant: &TenantId, data: DataId, state: BlobState) {
        if let Some(blob) = self.blobs.get_mut(&(tenant.clone(), data)) {
            blob.state = state;
        }
    }

    fn free(&mut self, tenant: &TenantId, data: DataId, now: Timestamp) {
        self.set_state(tenant, data, BlobState::Freed { at: now });
    }

    fn upload_mut(
        &mut self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<&mut Upload> {
        self.uploads
            .get_mut(&(tenant.clone(), bucket.clone(), upload))
            .ok_or_else(|| Error::not_found(Resource::Upload, upload))
    }

    fn check(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        condition: &Precondition,
        now: Timestamp,
    ) -> Result<()> {
        let current = self.visible(tenant, bucket, key, now);
        let holds = match condition {
            Precondition::None => true,
            Precondition::IfAbsent => current.is_none(),
            Precondition::IfEtag(etag) => current.is_some_and(|m| m.etag == *etag),
        };
        if holds {
            Ok(())
        } else {
            Err(Error::conflict(format!(
                "the precondition on object {key} does not hold"
            )))
        }
    }

    /// Stores `meta`, taking its blobs and freeing those of the object it replaces.
    fn commit(
        &mut self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        now: Timestamp,
    ) {
        for segment in &meta.segments {
            self.set_state(tenant, segment.data, BlobState::InUse);
        }
        let replaced = self.objects.insert(
            (tenant.clone(), bucket.clone(), meta.key.clone()),
            meta.clone(),
        );
        if let Some(old) = replaced {
            for segment in old.segments {
                self.free(tenant, segment.data, now);
            }
        }
    }

    /// Removes an upload and frees the blobs of its parts that `keep` does not name.
    fn end_upload(
        &mut self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        keep: &[DataId],
        now: Timestamp,
    ) {
        if let Some(ended) = self
            .uploads
            .remove(&(tenant.clone(), bucket.clone(), upload))
        {
            for part in ended.parts.values() {
                if !keep.contains(&part.data) {
                    self.free(tenant, part.data, now);
                }
            }
        }
    }

    /// Removes every expired object, freeing its blobs; returns how many.
    pub(super) fn purge_expired(&mut self, now: Timestamp) -> u64 {
        let expired: Vec<(TenantId, BucketName, ObjectKey)> = self
            .objects
            .iter()
            .filter(|(_, m)| !object_visible(m, now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in &expired {
            if let Some(meta) = self.objects.remove(id) {
                for segment in meta.segments {
                    self.free(&id.0, segment.data, now);
                }
            }
        }
        expired.len() as u64
    }
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.last_version += 1;
        self.last_version
    }
}

fn bucket_subject(bucket: &BucketName) -> Subject {
    Subject::Bucket {
        name: bucket.clone(),
    }
}

fn object_subject(bucket: &BucketName, key: &ObjectKey) -> Subject {
    Subject::Object {
        bucket: bucket.clone(),
        key: key.clone(),
    }
}

#[async_trait]
impl ObjectStore for ModelBackend {
    async fn create_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<BucketInfo> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        if objects
            .buckets
            .contains_key(&(tenant.clone(), bucket.clone()))
        {
            return Err(Error::already_exists(Resource::Bucket, bucket));
        }
        let owned = objects.buckets.keys().filter(|(t, _)| t == tenant).count();
        if owned >= MAX_BUCKETS {
            return Err(Error::invalid(
                "bucket",
                format!("the tenant already has {MAX_BUCKETS} buckets"),
            ));
        }
        let info = BucketInfo {
            name: bucket.clone(),
            created_at: now,
        };
        objects
            .buckets
            .insert((tenant.clone(), bucket.clone()), info.clone());
        let event = ChangeEvent::put(bucket_subject(bucket), None);
        state.changes.append(tenant, now, event);
        Ok(info)
    }

    async fn bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<Option<BucketInfo>> {
        let state = self.state.lock();
        Ok(state
            .objects
            .buckets
            .get(&(tenant.clone(), bucket.clone()))
            .cloned())
    }

    async fn list_buckets(&self, tenant: &TenantId) -> Result<Vec<BucketInfo>> {
        let state = self.state.lock();
        // Map order is by name within a tenant: names compare as their bytes.
        Ok(state
            .objects
            .buckets
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, b)| b.clone())
            .collect())
    }

    async fn delete_bucket(&self, tenant: &TenantId, bucket: &BucketName) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        let inside = |t: &TenantId, b: &BucketName| t == tenant && b == bucket;
        if objects
            .objects
            .iter()
            .any(|((t, b, _), m)| inside(t, b) && object_visible(m, now))
        {
            return Err(Error::conflict(format!("bucket {bucket} is not empty")));
        }
        let expired: Vec<ObjectKey> = objects
            .objects
            .keys()
            .filter(|(t, b, _)| inside(t, b))
            .map(|(_, _, k)| k.clone())
            .collect();
        for key in expired {
            if let Some(meta) = objects
                .objects
                .remove(&(tenant.clone(), bucket.clone(), key))
            {
                for segment in meta.segments {
                    objects.free(tenant, segment.data, now);
                }
            }
        }
        let uploads: Vec<UploadId> = objects
            .uploads
            .keys()
            .filter(|(t, b, _)| inside(t, b))
            .map(|(_, _, u)| *u)
            .collect();
        for upload in uploads {
            objects.end_upload(tenant, bucket, upload, &[], now);
        }
        objects.buckets.remove(&(tenant.clone(), bucket.clone()));
        let event = ChangeEvent::delete(bucket_subject(bucket));
        state.changes.append(tenant, now, event);
        Ok(())
    }

    async fn begin_data(&self, tenant: &TenantId) -> Result<DataId> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let data = DataId(state.next_id());
        state.objects.blobs.insert(
            (tenant.clone(), data),
            Blob {
                state: BlobState::Pending { begun: now },
                chunks: BTreeMap::new(),
            },
        );
        Ok(data)
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
        let mut state = self.state.lock();
        match state.objects.blobs.get_mut(&(tenant.clone(), data)) {
            Some(blob) if matches!(blob.state, BlobState::Pending { .. }) => {
                blob.chunks.insert(index, bytes.to_vec());
                Ok(())
            }
            _ => Err(Error::not_found(Resource::Object, data.0)),
        }
    }

    async fn read_chunk(&self, tenant: &TenantId, data: DataId, index: u32) -> Result<Vec<u8>> {
        let state = self.state.lock();
        state
            .objects
            .blobs
            .get(&(tenant.clone(), data))
            .and_then(|blob| blob.chunks.get(&index))
            .cloned()
            .ok_or_else(|| Error::not_found(Resource::Object, data.0))
    }

    async fn discard_data(&self, tenant: &TenantId, data: DataId) -> Result<()> {
        let mut state = self.state.lock();
        if state.objects.pending(tenant, data) {
            state.objects.blobs.remove(&(tenant.clone(), data));
        }
        Ok(())
    }

    async fn put_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        if let Some(segment) = meta
            .segments
            .iter()
            .find(|s| !objects.pending(tenant, s.data))
        {
            return Err(Error::not_found(Resource::Object, segment.data.0));
        }
        objects.check(tenant, bucket, &meta.key, condition, now)?;
        objects.commit(tenant, bucket, meta, now);
        let event = ChangeEvent::put(object_subject(bucket, &meta.key), None);
        state.changes.append(tenant, now, event);
        Ok(())
    }

    async fn object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<Option<ObjectMeta>> {
        let now = self.clock.now();
        let state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        Ok(state.objects.visible(tenant, bucket, key, now).cloned())
    }

    async fn delete_object(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
    ) -> Result<bool> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        let removed = objects
            .objects
            .remove(&(tenant.clone(), bucket.clone(), key.clone()));
        let existed = match removed {
            None => false,
            Some(meta) => {
                let visible = object_visible(&meta, now);
                for segment in meta.segments {
                    objects.free(tenant, segment.data, now);
                }
                visible
            }
        };
        if existed {
            let event = ChangeEvent::delete(object_subject(bucket, key));
            state.changes.append(tenant, now, event);
        }
        Ok(existed)
    }

    async fn list_objects(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        from: &[u8],
        limit: Limit,
    ) -> Result<Vec<ObjectMeta>> {
        let now = self.clock.now();
        let state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        // Map order within a bucket is by key, and keys compare as their bytes.
        Ok(state
            .objects
            .objects
            .iter()
            .filter(|((t, b, k), m)| {
                t == tenant
                    && b == bucket
                    && prefix.matches(k)
                    && k.as_bytes() >= from
                    && object_visible(m, now)
            })
            .map(|(_, m)| m.clone())
            .take(limit.get())
            .collect())
    }

    async fn create_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        key: &ObjectKey,
        attributes: &ObjectAttributes,
        expires_at: Option<Timestamp>,
    ) -> Result<UploadInfo> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        let info = UploadInfo {
            id: UploadId(state.next_id()),
            key: key.clone(),
            initiated: now,
            attributes: attributes.clone(),
            expires_at,
        };
        state.objects.uploads.insert(
            (tenant.clone(), bucket.clone(), info.id),
            Upload {
                info: info.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(info)
    }

    async fn upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<Option<UploadInfo>> {
        let state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        Ok(state
            .objects
            .uploads
            .get(&(tenant.clone(), bucket.clone(), upload))
            .map(|u| u.info.clone()))
    }

    async fn list_uploads(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        prefix: &ObjectPrefix,
        after: Option<(&ObjectKey, UploadId)>,
        limit: Limit,
    ) -> Result<Vec<UploadInfo>> {
        let state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        let mut found: Vec<UploadInfo> = state
            .objects
            .uploads
            .iter()
            .filter(|((t, b, _), u)| t == tenant && b == bucket && prefix.matches(&u.info.key))
            .map(|(_, u)| u.info.clone())
            .collect();
        found.sort_by(|a, b| (a.key.as_bytes(), a.id).cmp(&(b.key.as_bytes(), b.id)));
        Ok(found
            .into_iter()
            .filter(|u| {
                after.is_none_or(|(key, id)| (u.key.as_bytes(), u.id) > (key.as_bytes(), id))
            })
            .take(limit.get())
            .collect())
    }

    async fn put_part(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        part: &PartRecord,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        objects.upload_mut(tenant, bucket, upload)?;
        if !objects.pending(tenant, part.data) {
            return Err(Error::not_found(Resource::Object, part.data.0));
        }
        objects.set_state(tenant, part.data, BlobState::InUse);
        let replaced = objects
            .upload_mut(tenant, bucket, upload)?
            .parts
            .insert(part.number, part.clone());
        if let Some(old) = replaced {
            objects.free(tenant, old.data, now);
        }
        Ok(())
    }

    async fn list_parts(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        after: u32,
        limit: Limit,
    ) -> Result<Vec<PartRecord>> {
        let state = self.state.lock();
        state.objects.require_bucket(tenant, bucket)?;
        let found = state
            .objects
            .uploads
            .get(&(tenant.clone(), bucket.clone(), upload))
            .ok_or_else(|| Error::not_found(Resource::Upload, upload))?;
        Ok(found
            .parts
            .values()
            .filter(|p| p.number > after)
            .take(limit.get())
            .cloned()
            .collect())
    }

    async fn complete_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
        meta: &ObjectMeta,
        condition: &Precondition,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        let parts = &objects.upload_mut(tenant, bucket, upload)?.parts;
        if let Some(segment) = meta
            .segments
            .iter()
            .find(|s| !parts.values().any(|p| p.data == s.data))
        {
            return Err(Error::not_found(Resource::Part, segment.data.0));
        }
        objects.check(tenant, bucket, &meta.key, condition, now)?;
        let used: Vec<DataId> = meta.segments.iter().map(|s| s.data).collect();
        objects.end_upload(tenant, bucket, upload, &used, now);
        objects.commit(tenant, bucket, meta, now);
        let event = ChangeEvent::put(object_subject(bucket, &meta.key), None);
        state.changes.append(tenant, now, event);
        Ok(())
    }

    async fn abort_upload(
        &self,
        tenant: &TenantId,
        bucket: &BucketName,
        upload: UploadId,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        objects.require_bucket(tenant, bucket)?;
        objects.upload_mut(tenant, bucket, upload)?;
        objects.end_upload(tenant, bucket, upload, &[], now);
        Ok(())
    }

    async fn reap_objects(&self, policy: ReapPolicy) -> Result<u64> {
        let mut state = self.state.lock();
        let objects = &mut state.objects;
        let mut removed = 0;
        let abandoned: Vec<(TenantId, BucketName, UploadId)> = objects
            .uploads
            .iter()
            .filter(|(_, u)| u.info.initiated < policy.abandoned_before)
            .map(|(k, _)| k.clone())
            .collect();
        for id in abandoned {
            if let Some(upload) = objects.uploads.remove(&id) {
                for part in upload.parts.values() {
                    if objects.blobs.remove(&(id.0.clone(), part.data)).is_some() {
                        removed += 1;
                    }
                }
            }
        }
        let before = objects.blobs.len();
        objects.blobs.retain(|_, blob| match blob.state {
            BlobState::Pending { begun } => begun >= policy.abandoned_before,
            BlobState::InUse => true,
            BlobState::Freed { at } => at >= policy.freed_before,
        });
        removed += (before - objects.blobs.len()) as u64;
        Ok(removed)
    }

    async fn stored_bytes(&self, tenant: &TenantId) -> Result<u64> {
        let state = self.state.lock();
        Ok(state
            .objects
            .blobs
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .flat_map(|(_, blob)| blob.chunks.values())
            .map(|chunk| chunk.len() as u64)
            .sum())
    }
}

impl ModelBackend {
    /// How many chunks the tenant stores, whatever state their blobs are in (what a backend with
    /// a per-chunk overhead adds to [`ObjectStore::stored_bytes`]).
    pub fn stored_chunks(&self, tenant: &TenantId) -> u64 {
        let state = self.state.lock();
        state
            .objects
            .blobs
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, blob)| blob.chunks.len() as u64)
            .sum()
    }
}
