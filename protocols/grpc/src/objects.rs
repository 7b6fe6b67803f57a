//! `p8fs.v1.Objects`: the S3 listener's buckets and objects (scopes `s3:read`, `s3:write`).
//! Uploads stream through core's [`ObjectWriter`] into a pending blob and become visible in one
//! commit; downloads stream chunk by chunk ([`chunk_reads`]), one chunk read ahead; neither holds
//! an object in memory. Listings are core's [`list_objects_v2`].

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use p8fs_auth::Scope;
use p8fs_core::object::{
    MAX_PUT_BYTES, ObjectWriter, WrittenData, chunk_reads, hex, list_objects_v2, unhex,
};
use p8fs_core::{
    Backend, BucketInfo, BucketName, Error, ObjectAttributes, ObjectKey, ObjectMeta, ObjectPrefix,
    Precondition, Resource, TenantId,
};
use tonic::{Request, Response, Status, Streaming};

use crate::error::{GrpcResult, status};
use crate::pb::{self, objects_server::Objects};
use crate::{GrpcState, MAX_CHUNK_BYTES, deadline_of, limit, ttl};

/// The `Objects` service.
pub struct ObjectsService(pub GrpcState);

fn bucket(info: BucketInfo, created: bool) -> pb::Bucket {
    pb::Bucket {
        name: info.name.as_str().to_owned(),
        created_at: info.created_at,
        created,
    }
}

fn info(meta: &ObjectMeta) -> pb::ObjectInfo {
    pb::ObjectInfo {
        key: meta.key.as_str().to_owned(),
        size: meta.size,
        etag: meta.etag.clone(),
        last_modified: meta.last_modified,
        content_type: meta.attributes.content_type.clone(),
        expires_at: meta.expires_at,
    }
}

/// The bucket, which must exist, and the key of an object.
async fn object_of(
    backend: &dyn Backend,
    tenant: &TenantId,
    bucket: String,
    key: String,
) -> Result<(BucketName, ObjectMeta), Status> {
    let name = BucketName::new(bucket).grpc()?;
    let key = ObjectKey::new(key).grpc()?;
    if backend.bucket(tenant, &name).await.grpc()?.is_none() {
        return Err(Error::not_found(Resource::Bucket, &name)).grpc();
    }
    let meta = backend
        .object(tenant, &name, &key)
        .await
        .grpc()?
        .ok_or_else(|| Error::not_found(Resource::Object, &key))
        .grpc()?;
    Ok((name, meta))
}

/// The stream of a download.
pub type DownloadStream =
    Pin<Box<dyn Stream<Item = Result<pb::DownloadResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Objects for ObjectsService {
    async fn create_bucket(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::Bucket>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Write).await?;
        let name = BucketName::new(request.into_inner().name)
            .map_err(|e| e.renamed("name"))
            .grpc()?;
        match self.0.backend.create_bucket(&caller.tenant, &name).await {
            Ok(info) => Ok(Response::new(bucket(info, true))),
            Err(Error::AlreadyExists { .. }) => {
                let info = self
                    .0
                    .backend
                    .bucket(&caller.tenant, &name)
                    .await
                    .grpc()?
                    .ok_or_else(|| Error::not_found(Resource::Bucket, &name))
                    .grpc()?;
                Ok(Response::new(bucket(info, false)))
            }
            Err(error) => Err(status(error)),
        }
    }

    async fn list_buckets(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Read).await?;
        let buckets = self.0.backend.list_buckets(&caller.tenant).await.grpc()?;
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: buckets.into_iter().map(|b| bucket(b, false)).collect(),
        }))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Read).await?;
        let request = request.into_inner();
        let name = BucketName::new(request.bucket).grpc()?;
        let prefix = ObjectPrefix::new(request.prefix).grpc()?;
        let limit = limit(request.limit)?;
        let from = if request.cursor.is_empty() {
            Vec::new()
        } else {
            unhex(&request.cursor)
                .filter(|from| !from.is_empty())
                .ok_or_else(|| Error::invalid("cursor", "is not a cursor this API issued"))
                .grpc()?
        };
        let delimiter = (!request.delimiter.is_empty()).then_some(request.delimiter.as_str());
        let listing = list_objects_v2(
            self.0.backend.as_ref(),
            &caller.tenant,
            &name,
            &prefix,
            delimiter,
            &from,
            u32::try_from(limit.get()).unwrap_or(u32::MAX),
        )
        .await
        .grpc()?;
        Ok(Response::new(pb::ListObjectsResponse {
            objects: listing.objects.iter().map(info).collect(),
            common_prefixes: listing.common_prefixes,
            next: listing.next_from.as_deref().map(hex),
        }))
    }

    async fn head(
        &self,
        request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::ObjectInfo>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Read).await?;
        let request = request.into_inner();
        let (_, meta) = object_of(
            self.0.backend.as_ref(),
            &caller.tenant,
            request.bucket,
            request.key,
        )
        .await?;
        Ok(Response::new(info(&meta)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::ObjectDeleted>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Write).await?;
        let request = request.into_inner();
        let name = BucketName::new(request.bucket).grpc()?;
        let key = ObjectKey::new(request.key).grpc()?;
        if self
            .0
            .backend
            .delete_object(&caller.tenant, &name, &key)
            .await
            .grpc()?
        {
            Ok(Response::new(pb::ObjectDeleted {}))
        } else {
            Err(Error::not_found(Resource::Object, &key)).grpc()
        }
    }

    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::ObjectInfo>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Write).await?;
        let mut messages = request.into_inner();
        let start = match messages.message().await? {
            Some(pb::UploadRequest {
                part: Some(pb::upload_request::Part::Start(start)),
            }) => start,
            _ => {
                return Err(Error::invalid(
                    "start",
                    "the first message of an upload must be `start`",
                ))
                .grpc();
            }
        };
        let name = BucketName::new(start.bucket).grpc()?;
        let key = ObjectKey::new(start.key).grpc()?;
        let ttl = ttl(start.ttl_ms)?;
        let attributes = ObjectAttributes {
            content_type: start.content_type,
            ..ObjectAttributes::default()
        };
        attributes
            .validate()
            .map_err(|e| e.renamed("content_type"))
            .grpc()?;
        let tenant = &caller.tenant;
        let backend = self.0.backend.as_ref();
        // Refused before any bytes are stored: nothing is written for a missing bucket.
        if backend.bucket(tenant, &name).await.grpc()?.is_none() {
            return Err(Error::not_found(Resource::Bucket, &name)).grpc();
        }
        let written = receive(backend, tenant, messages).await?;
        let now = self.0.clock.now();
        let meta = ObjectMeta {
            key,
            size: written.size,
            etag: written.md5.clone(),
            last_modified: now,
            expires_at: p8fs_core::expires_at(now, ttl),
            attributes,
            segments: vec![written.segment()],
        };
        if let Err(error) = backend
            .put_object(tenant, &name, &meta, &Precondition::None)
            .await
        {
            if let Err(error) = backend.discard_data(tenant, written.data).await {
                tracing::warn!(%error, "discarding the blob of a refused upload failed");
            }
            return Err(status(error));
        }
        Ok(Response::new(info(&meta)))
    }

    type DownloadStream = DownloadStream;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<DownloadStream>, Status> {
        let caller = self.0.caller(request.metadata(), Scope::S3Read).await?;
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let backend = self.0.backend.clone();
        let (_, meta) = object_of(
            backend.as_ref(),
            &caller.tenant,
            request.bucket,
            request.key,
        )
        .await?;
        // Ciphertext under a key only the client holds (SSE-C): never sent as the object.
        meta.refuse_client_held_key()
            .map_err(crate::error::status)?;
        let first = pb::DownloadResponse {
            part: Some(pb::download_response::Part::Info(info(&meta))),
        };
        let tenant = caller.tenant;
        let reads = chunk_reads(&meta.segments, 0, meta.size);
        let chunks = futures::stream::iter(reads)
            .map(move |read| {
                let backend: Arc<dyn Backend> = backend.clone();
                let tenant = tenant.clone();
                async move {
                    let bytes = backend
                        .read_chunk(&tenant, read.data, read.index)
                        .await
                        .map_err(status)?;
                    let data = bytes.get(read.start..read.end).ok_or_else(|| {
                        status(Error::internal(
                            "a stored chunk is shorter than its object says",
                            None,
                        ))
                    })?;
                    Ok(pb::DownloadResponse {
                        part: Some(pb::download_response::Part::Data(data.to_vec())),
                    })
                }
            })
            // One chunk read ahead while the client takes the previous one.
            .buffered(2);
        let stream = futures::stream::once(async move { Ok(first) }).chain(chunks);
        Ok(Response::new(crate::changes::until(stream, deadline)))
    }
}

/// Streams the `data` messages of an upload into a new blob.
async fn receive(
    backend: &dyn Backend,
    tenant: &TenantId,
    mut messages: Streaming<pb::UploadRequest>,
) -> Result<WrittenData, Status> {
    let mut writer = ObjectWriter::begin(backend, tenant, MAX_PUT_BYTES)
        .await
        .grpc()?;
    let data = writer.data();
    let result = async {
        while let Some(message) = messages.message().await? {
            match message.part {
                Some(pb::upload_request::Part::Data(bytes)) => {
                    if bytes.len() > MAX_CHUNK_BYTES {
                        return Err(Error::invalid(
                            "data",
                            format!("a message carries at most {MAX_CHUNK_BYTES} bytes"),
                        ))
                        .grpc();
                    }
                    writer.write(&bytes).await.grpc()?;
                }
                _ => {
                    return Err(Error::invalid(
                        "start",
                        "only the first message of an upload is `start`",
                    ))
                    .grpc();
                }
            }
        }
        writer.finish().await.grpc()
    }
    .await;
    if result.is_err()
        && let Err(error) = backend.discard_data(tenant, data).await
    {
        tracing::warn!(%error, "discarding the blob of a failed upload failed");
    }
    result
}
