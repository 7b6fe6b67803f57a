//! Objects and multipart uploads in a reseal: an object that is plain or older (its record, or
//! the first chunk of one of its blobs) is copied into new sealed blobs and committed if its ETag
//! is still the one read; an upload in progress holding plain or older records is counted.

use super::{Run, current_chunk, current_text};
use crate::error::{Error, ErrorKind, Result};
use crate::object::{
    BucketInfo, CHUNK_BYTES, DataId, ObjectMeta, ObjectStore, Precondition, Segment, UploadId,
    UploadInfo, from_after,
};
use crate::sealed::object::{SEALED_ATTRIBUTE, sealed_only};
use crate::types::{BucketName, Limit, ObjectKey, ObjectPrefix};

impl Run<'_> {
    pub(super) async fn objects(&mut self) -> Result<()> {
        for BucketInfo { name: bucket, .. } in self.inner.list_buckets(self.tenant).await? {
            let mut from = Vec::new();
            loop {
                let metas = self
                    .inner
                    .list_objects(
                        self.tenant,
                        &bucket,
                        &ObjectPrefix::all(),
                        &from,
                        Limit::MAX,
                    )
                    .await?;
                for meta in &metas {
                    self.done.examined += 1;
                    if !self.object_current(meta).await?
                        && let Some(chunks) = self.object_one(&bucket, meta.clone()).await?
                    {
                        self.done.rewritten += 1;
                        self.done.chunks += chunks;
                    }
                }
                match metas.last() {
                    Some(last) if metas.len() >= Limit::MAX.get() => {
                        from = from_after(last.key.as_str());
                    }
                    _ => break,
                }
            }
            self.uploads(&bucket).await?;
        }
        Ok(())
    }

    /// Whether an object's record and the first chunk of each of its blobs are current (a blob
    /// is written whole by one writer, so in one format).
    async fn object_current(&self, meta: &ObjectMeta) -> Result<bool> {
        if !sealed_only(&meta.attributes).is_some_and(current_text) {
            return Ok(false);
        }
        for segment in &meta.segments {
            if !self.blob_current(segment.data, segment.size).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether a blob's first chunk is current; a blob that is gone counts as current (its
    /// object was replaced, by a writer that sealed it).
    async fn blob_current(&self, data: DataId, size: u64) -> Result<bool> {
        if size == 0 {
            return Ok(true);
        }
        match self.inner.read_chunk(self.tenant, data, 0).await {
            Ok(stored) => Ok(current_chunk(&stored)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Copies an object into new sealed blobs and commits it if its ETag is still the one
    /// read; returns the chunks written, `None` when a writer replaced or removed it first.
    async fn object_one(&self, bucket: &BucketName, mut stored: ObjectMeta) -> Result<Option<u64>> {
        loop {
            let opened = self
                .layer
                .open_meta(self.key, self.tenant, bucket, stored.clone())?;
            let copied = match self.copy_blobs(&stored.segments).await {
                Ok(copied) => copied,
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if let Some((segments, chunks)) = copied {
                let meta = ObjectMeta {
                    segments: segments.clone(),
                    ..opened
                };
                let sealed = self.layer.seal_meta(self.key, self.tenant, bucket, &meta)?;
                let condition = Precondition::IfEtag(stored.etag.clone());
                match self
                    .inner
                    .put_object(self.tenant, bucket, &sealed, &condition)
                    .await
                {
                    Ok(()) => return Ok(Some(chunks)),
                    Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                        self.discard(&segments).await;
                    }
                    Err(e) => {
                        self.discard(&segments).await;
                        return Err(e);
                    }
                }
            }
            // Replaced or removed meanwhile: look again.
            match self.inner.object(self.tenant, bucket, &stored.key).await? {
                Some(again) if !self.object_current(&again).await? => stored = again,
                _ => return Ok(None),
            }
        }
    }

    /// New pending blobs holding `segments`' bytes, sealed; `None` (and nothing left behind)
    /// when a blob went meanwhile.
    async fn copy_blobs(&self, segments: &[Segment]) -> Result<Option<(Vec<Segment>, u64)>> {
        let mut copied = Vec::with_capacity(segments.len());
        let mut chunks = 0;
        for segment in segments {
            let data = ObjectStore::begin_data(self.layer, self.tenant).await?;
            copied.push(Segment {
                data,
                size: segment.size,
            });
            for index in 0..segment.size.div_ceil(CHUNK_BYTES as u64) {
                let index = u32::try_from(index)
                    .map_err(|_| Error::internal("a blob has too many chunks", None))?;
                let written =
                    match ObjectStore::read_chunk(self.layer, self.tenant, segment.data, index)
                        .await
                    {
                        Ok(bytes) => {
                            ObjectStore::write_chunk(self.layer, self.tenant, data, index, &bytes)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                if let Err(e) = written {
                    self.discard(&copied).await;
                    if e.kind() == ErrorKind::NotFound {
                        return Ok(None);
                    }
                    return Err(e);
                }
                chunks += 1;
            }
        }
        Ok(Some((copied, chunks)))
    }

    /// Removes blobs this run began and did not commit (best effort: the reaper removes what
    /// is left).
    async fn discard(&self, segments: &[Segment]) {
        for segment in segments {
            let _ = self.inner.discard_data(self.tenant, segment.data).await;
        }
    }

    async fn uploads(&mut self, bucket: &BucketName) -> Result<()> {
        let mut after: Option<(ObjectKey, UploadId)> = None;
        loop {
            let uploads = self
                .inner
                .list_uploads(
                    self.tenant,
                    bucket,
                    &ObjectPrefix::all(),
                    after.as_ref().map(|(key, id)| (key, *id)),
                    Limit::MAX,
                )
                .await?;
            for upload in &uploads {
                if !self.upload_current(bucket, upload).await? {
                    self.done.uploads_pending += 1;
                }
            }
            match uploads.last() {
                Some(last) if uploads.len() >= Limit::MAX.get() => {
                    after = Some((last.key.clone(), last.id));
                }
                _ => return Ok(()),
            }
        }
    }

    /// Whether an upload's record, its parts' records and their blobs are current.
    async fn upload_current(&self, bucket: &BucketName, upload: &UploadInfo) -> Result<bool> {
        if !sealed_only(&upload.attributes).is_some_and(current_text) {
            return Ok(false);
        }
        let mut after = 0;
        loop {
            let parts = match self
                .inner
                .list_parts(self.tenant, bucket, upload.id, after, Limit::MAX)
                .await
            {
                Ok(parts) => parts,
                // Completed or aborted meanwhile.
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
                Err(e) => return Err(e),
            };
            for part in &parts {
                let record = match part.checksums.get(SEALED_ATTRIBUTE) {
                    Some(text) if part.checksums.len() == 1 => current_text(text),
                    _ => false,
                };
                if !record || !self.blob_current(part.data, part.size).await? {
                    return Ok(false);
                }
            }
            match parts.last() {
                Some(last) if parts.len() >= Limit::MAX.get() => after = last.number,
                _ => return Ok(true),
            }
        }
    }
}
