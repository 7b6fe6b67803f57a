//! Memories and search by meaning: `memory(id)`, `memories` (oldest first), `search(text)`
//! (chunks of memories and uploaded files, nearest first; exact, or approximate with `mode` and
//! `ef` as a vector search takes them), and `remember`, `forget`,
//! `linkMemories`. Scopes `memories:read`, `memories:write`. When the server runs without
//! embeddings these fields are UNAVAILABLE.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, Json, Object, SimpleObject};
use p8fs_auth::Scope;
use p8fs_core::{BucketName, Error, Limit};
use p8fs_memory::{
    IndexState, IndexStatus, Memory, MemoryRecord, NewMemory, Origin, Query, SourceKind,
};
use serde_json::{Map, Value};

use crate::context::{caller, state};
use crate::error::GqlResult;
use crate::kv::ttl;
use crate::page;
use crate::scalars::Long;
use crate::vectors::{SearchModeName, search_mode};

/// The memory service, or UNAVAILABLE when embeddings are off.
pub(crate) fn memory_service<'a>(ctx: &Context<'a>) -> p8fs_core::Result<&'a Memory> {
    state(ctx).memory.as_deref().ok_or_else(|| {
        Error::unavailable(
            "search by meaning is off on this server ([embeddings] provider = \"none\")",
            None,
        )
    })
}

/// A stored memory.
#[derive(SimpleObject)]
pub struct MemoryItem {
    /// `m` and 28 hex digits; ids sort by creation time.
    pub id: String,
    pub text: String,
    pub metadata: Json<Map<String, Value>>,
    pub tags: Vec<String>,
    pub created_at: Long,
    /// How many chunks the text was cut into for search.
    pub chunks: i32,
    /// Whether text past the chunk limit was left out of the index.
    pub truncated: bool,
    pub expires_at: Option<Long>,
}

impl From<MemoryRecord> for MemoryItem {
    fn from(record: MemoryRecord) -> Self {
        MemoryItem {
            id: record.id,
            text: record.text,
            metadata: Json(record.metadata),
            tags: record.tags,
            created_at: Long(record.created_at),
            chunks: i32::try_from(record.chunks).unwrap_or(i32::MAX),
            truncated: record.truncated,
            expires_at: record.expires_at.map(Long),
        }
    }
}

/// What kind of source a chunk comes from.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    Memory,
    Object,
}

/// Where a found chunk comes from: a memory (`memory`) or an object (`bucket`, `key`).
#[derive(SimpleObject)]
pub struct ChunkSource {
    pub kind: SourceType,
    pub memory: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
}

/// A chunk found by a search.
#[derive(SimpleObject)]
pub struct SearchHit {
    /// Cosine similarity to the query, -1..=1; higher is nearer.
    pub score: f64,
    pub text: String,
    pub source: ChunkSource,
    /// The chunk's position among its source's chunks (from 0), and their number.
    pub chunk: i32,
    pub chunks: i32,
    /// The chunk's byte range in its source's text.
    pub start: Long,
    pub end: Long,
    pub tags: Vec<String>,
    pub metadata: Json<Map<String, Value>>,
}

/// Where an object's indexing stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum IndexStateName {
    Pending,
    Indexed,
    Failed,
}

/// An object's index status.
#[derive(SimpleObject)]
#[graphql(name = "IndexStatus")]
pub struct IndexStatusView {
    pub state: IndexStateName,
    /// For FAILED: a stable short code (`unsupported`, `not_text`, `corrupt`, `too_large`,
    /// `empty`) and a sentence for people.
    pub code: Option<String>,
    pub reason: Option<String>,
    pub format: Option<String>,
    pub chunks: i32,
    pub truncated: bool,
    pub indexed_at: Option<Long>,
}

impl From<IndexStatus> for IndexStatusView {
    fn from(status: IndexStatus) -> Self {
        IndexStatusView {
            state: match status.state {
                IndexState::Pending => IndexStateName::Pending,
                IndexState::Indexed => IndexStateName::Indexed,
                IndexState::Failed => IndexStateName::Failed,
            },
            code: status.code,
            reason: status.reason,
            format: status.format,
            chunks: i32::try_from(status.chunks).unwrap_or(i32::MAX),
            truncated: status.truncated,
            indexed_at: status.indexed_at.map(Long),
        }
    }
}

#[derive(Default)]
pub struct MemoryQuery;

#[Object]
impl MemoryQuery {
    /// The memory `id`, or null.
    async fn memory(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<MemoryItem>> {
        let caller = caller(ctx, Scope::MemoriesRead)?;
        let memory = memory_service(ctx).gql()?;
        match memory.memory(&caller.tenant, &id).await {
            Ok(record) => Ok(Some(record.into())),
            Err(error) if error.kind() == p8fs_core::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).gql(),
        }
    }

    /// Memories, oldest first.
    #[graphql(complexity = "first.clamp(1, 1000) as usize * child_complexity")]
    async fn memories(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, MemoryItem>> {
        let caller = caller(ctx, Scope::MemoriesRead)?;
        let memory = memory_service(ctx).gql()?;
        let limit = page::first(first).gql()?;
        let after = page::after(after.as_deref(), Ok).gql()?;
        let found = memory
            .memories(&caller.tenant, after.as_deref(), limit)
            .await
            .gql()?;
        Ok(page::connection(
            found
                .items
                .into_iter()
                .map(|record| (record.id.clone(), MemoryItem::from(record))),
            after.is_some(),
            found.next.is_some(),
        ))
    }

    /// The `k` chunks (of memories and indexed objects) nearest to `text`'s meaning, nearest
    /// first, optionally only of one kind of source, one bucket, memories with every one of
    /// `tags`, or memories whose metadata holds each value of `metadata` at its dot path.
    /// `mode` and `ef` as in a collection's `search`.
    #[expect(
        clippy::too_many_arguments,
        reason = "a GraphQL field takes its arguments one by one"
    )]
    #[graphql(complexity = "k.clamp(1, 1000) as usize * child_complexity")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        text: String,
        #[graphql(default = 10)] k: i32,
        source: Option<SourceType>,
        bucket: Option<String>,
        #[graphql(default)] tags: Vec<String>,
        metadata: Option<Json<Map<String, Value>>>,
        #[graphql(default_with = "SearchModeName::Exact")] mode: SearchModeName,
        ef: Option<i32>,
    ) -> async_graphql::Result<Vec<SearchHit>> {
        let caller = caller(ctx, Scope::MemoriesRead)?;
        let memory = memory_service(ctx).gql()?;
        let k = Limit::named("k", u64::try_from(k).unwrap_or(0)).gql()?;
        let mode = search_mode(mode, ef).gql()?;
        let query = Query {
            text,
            k,
            source: source.map(|s| match s {
                SourceType::Memory => SourceKind::Memory,
                SourceType::Object => SourceKind::Object,
            }),
            bucket: bucket
                .map(|b| BucketName::new(b).map_err(|e| e.renamed("bucket")))
                .transpose()
                .gql()?,
            tags,
            metadata: metadata
                .map(|m| m.0.into_iter().collect())
                .unwrap_or_default(),
            mode,
        };
        let found = memory.search(&caller.tenant, &query).await.gql()?;
        Ok(found
            .into_iter()
            .map(|found| SearchHit {
                score: found.score,
                text: found.text,
                source: match found.origin {
                    Origin::Memory { id } => ChunkSource {
                        kind: SourceType::Memory,
                        memory: Some(id),
                        bucket: None,
                        key: None,
                    },
                    Origin::Object { bucket, key } => ChunkSource {
                        kind: SourceType::Object,
                        memory: None,
                        bucket: Some(bucket),
                        key: Some(key),
                    },
                },
                chunk: i32::try_from(found.chunk).unwrap_or(i32::MAX),
                chunks: i32::try_from(found.chunks).unwrap_or(i32::MAX),
                start: Long::from(found.start),
                end: Long::from(found.end),
                tags: found.tags,
                metadata: Json(found.metadata),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct MemoryMutation;

#[Object]
impl MemoryMutation {
    /// Stores a memory: its text is chunked and embedded for search.
    async fn remember(
        &self,
        ctx: &Context<'_>,
        text: String,
        #[graphql(default)] tags: Vec<String>,
        metadata: Option<Json<Map<String, Value>>>,
        ttl_ms: Option<Long>,
    ) -> async_graphql::Result<MemoryItem> {
        let caller = caller(ctx, Scope::MemoriesWrite)?;
        let memory = memory_service(ctx).gql()?;
        let new = NewMemory {
            text,
            metadata: metadata.map(|m| m.0).unwrap_or_default(),
            tags,
            ttl: ttl(ttl_ms).gql()?,
        };
        let record = memory.remember(&caller.tenant, new).await.gql()?;
        Ok(record.into())
    }

    /// Removes a memory and its chunks; returns whether one was there.
    async fn forget(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::MemoriesWrite)?;
        let memory = memory_service(ctx).gql()?;
        match memory.forget(&caller.tenant, &id).await {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == p8fs_core::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error).gql(),
        }
    }

    /// Links memory `from` to memory `to` with `rel` (`link` when absent); both must exist.
    async fn link_memories(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        rel: Option<String>,
        weight: Option<f64>,
    ) -> async_graphql::Result<bool> {
        let caller = caller(ctx, Scope::MemoriesWrite)?;
        let memory = memory_service(ctx).gql()?;
        memory
            .link(&caller.tenant, &from, &to, rel.as_deref(), weight)
            .await
            .gql()?;
        Ok(true)
    }
}
