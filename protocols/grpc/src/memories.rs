//! `p8fs.v1.Memories`: remembering text and searching by meaning (scopes `memories:read`,
//! `memories:write`); `UNAVAILABLE` when the server runs without embeddings.

use p8fs_auth::Scope;
use p8fs_core::{BucketName, Error, Limit, Ttl};
use p8fs_memory::{Memory, NewMemory, Origin, Query, SourceKind};
use tonic::{Request, Response, Status};

use crate::error::GrpcResult;
use crate::pb::{self, memories_server::Memories};
use crate::vectors::search_mode;
use crate::{GrpcState, json_object, json_text, json_value, ttl};

/// The `Memories` service.
pub struct MemoriesService(pub GrpcState);

impl MemoriesService {
    fn memory(&self) -> Result<&Memory, Status> {
        self.0
            .memory
            .as_deref()
            .ok_or_else(|| {
                Error::unavailable(
                    "search by meaning is off on this server ([embeddings] provider = \"none\")",
                    None,
                )
            })
            .grpc()
    }
}

#[tonic::async_trait]
impl Memories for MemoriesService {
    async fn remember(
        &self,
        request: Request<pb::RememberRequest>,
    ) -> Result<Response<pb::Memory>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::MemoriesWrite)
            .await?;
        let memory = self.memory()?;
        let request = request.into_inner();
        let metadata = json_object("metadata_json", &request.metadata_json)?;
        let ttl: Option<Ttl> = ttl(request.ttl_ms)?;
        let new = NewMemory {
            text: request.text,
            metadata: metadata.get().clone(),
            tags: request.tags,
            ttl,
        };
        let stored = memory.remember(&caller.tenant, new).await.grpc()?;
        Ok(Response::new(pb::Memory {
            id: stored.id,
            text: stored.text,
            metadata_json: json_text(&stored.metadata),
            tags: stored.tags,
            created_at: stored.created_at,
            chunks: stored.chunks as u64,
            truncated: stored.truncated,
            expires_at: stored.expires_at,
        }))
    }

    async fn search(
        &self,
        request: Request<pb::MemorySearchRequest>,
    ) -> Result<Response<pb::MemorySearchResponse>, Status> {
        let caller = self
            .0
            .caller(request.metadata(), Scope::MemoriesRead)
            .await?;
        let memory = self.memory()?;
        let request = request.into_inner();
        let k = Limit::new(u64::from(request.k.unwrap_or(10)))
            .map_err(|e| e.renamed("k"))
            .grpc()?;
        let source = (!request.source.is_empty())
            .then(|| SourceKind::parse("source", &request.source))
            .transpose()
            .grpc()?;
        let bucket = (!request.bucket.is_empty())
            .then(|| BucketName::new(request.bucket).map_err(|e| e.renamed("bucket")))
            .transpose()
            .grpc()?;
        let mut metadata = Vec::with_capacity(request.metadata.len());
        for (path, text) in request.metadata {
            metadata.push((path, json_value("metadata", &text)?));
        }
        let mode = search_mode(request.mode, request.ef)?;
        let query = Query {
            text: request.q,
            k,
            source,
            bucket,
            tags: request.tags,
            metadata,
            mode,
        };
        let found = memory.search(&caller.tenant, &query).await.grpc()?;
        Ok(Response::new(pb::MemorySearchResponse {
            hits: found
                .into_iter()
                .map(|hit| {
                    let (memory_id, bucket, key) = match hit.origin {
                        Origin::Memory { id } => (id, String::new(), String::new()),
                        Origin::Object { bucket, key } => (String::new(), bucket, key),
                    };
                    pb::MemoryHit {
                        score: hit.score,
                        text: hit.text,
                        memory_id,
                        bucket,
                        key,
                        chunk: hit.chunk,
                        chunks: hit.chunks,
                        tags: hit.tags,
                        metadata_json: json_text(&hit.metadata),
                    }
                })
                .collect(),
        }))
    }
}
