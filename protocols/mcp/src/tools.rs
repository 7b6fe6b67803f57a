//! The tools an assistant calls, each with JSON Schemas for its input and its structured
//! output, annotations (`readOnlyHint`, `destructiveHint`, `idempotentHint`) and one scope
//! ([`scope_of`]): memories (`remember`, `recall`, `forget`, `link`, `related`), files
//! (`list_files`, `read_file`), records (`kv_get`, `kv_put`, `kv_list`), vectors
//! (`search_vectors`) and the graph (`shortest_path`).
//!
//! Every failure, arguments that do not match the schema included, is a tool result with
//! `isError` whose text names the field (`invalid input: k: must be between 1 and 1000`): an
//! assistant reads it and corrects its call. Only an unknown tool is a protocol error.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::AbortHandle;

use p8fs_auth::{Principal, Scope};
use p8fs_core::object::{hex, list_objects_v2, unhex};
use p8fs_core::traverse::{PathQuery, neighbors, shortest_path};
use p8fs_core::vector::{SearchMode, components, search_with};
use p8fs_core::{
    BucketName, CollectionName, Depth, Direction, Error, ErrorKind, Filter, JsonMap, JsonValue,
    Key, KeyPrefix, Limit, NodeId, ObjectKey, ObjectPrefix, RelFilter, Ttl,
};
use p8fs_memory::{NewMemory, Origin, Query, SourceKind};
use p8fs_text::Format;
use percent_encoding::percent_decode_str;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    Implementation, ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::model::{
    ResourceUpdatedNotificationParam, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Json, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{McpState, watch};

/// Every scope a tool needs, for the protected resource metadata.
pub const SCOPES: [Scope; 8] = [
    Scope::MemoriesRead,
    Scope::MemoriesWrite,
    Scope::S3Read,
    Scope::KvRead,
    Scope::KvWrite,
    Scope::VectorsRead,
    Scope::GraphRead,
    Scope::GraphWrite,
];

/// The URI template of a memory resource.
pub const MEMORY_TEMPLATE: &str = "p8fs://memories/{id}";
/// The URI template of a file resource (the key percent-encoded as in a URL path).
pub const OBJECT_TEMPLATE: &str = "p8fs://objects/{bucket}/{+key}";
/// The longest text `read_file` returns by default, in bytes.
pub const DEFAULT_READ_BYTES: usize = 64 * 1024;
/// The most `read_file` returns, in bytes.
pub const MAX_READ_BYTES: usize = 1024 * 1024;

/// The scope a tool needs; `None` for a tool that does not exist.
pub fn scope_of(tool: &str) -> Option<Scope> {
    Some(match tool {
        "remember" | "forget" | "link" => Scope::MemoriesWrite,
        "recall" | "related" => Scope::MemoriesRead,
        "list_files" | "read_file" => Scope::S3Read,
        "kv_get" | "kv_list" => Scope::KvRead,
        "kv_put" => Scope::KvWrite,
        "search_vectors" => Scope::VectorsRead,
        "shortest_path" => Scope::GraphRead,
        _ => return None,
    })
}

/// The scope reading a `p8fs://` resource needs.
pub fn resource_scope(uri: &str) -> Option<Scope> {
    let rest = uri.strip_prefix("p8fs://")?;
    if rest.starts_with("memories/") {
        Some(Scope::MemoriesRead)
    } else if rest.starts_with("objects/") {
        Some(Scope::S3Read)
    } else {
        None
    }
}

/// A tool's failure, as the assistant sees it.
pub struct ToolError(String);

impl From<Error> for ToolError {
    fn from(error: Error) -> Self {
        ToolError(error.client_message())
    }
}

impl rmcp::handler::server::tool::IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(self.0)]).into())
    }
}

/// The vault as an MCP server: one per HTTP request (stateless) or per session; cheap to
/// clone.
#[derive(Clone)]
pub struct Vault {
    state: McpState,
    /// The caller when the transport has no HTTP request to carry one (stdio).
    fixed: Option<Arc<Principal>>,
    /// Built once: every session and stateless request shares it.
    tool_router: Arc<ToolRouter<Vault>>,
    /// The session's `resources/subscribe` followers, by URI.
    subscriptions: Arc<Mutex<HashMap<String, AbortHandle>>>,
}

impl Vault {
    /// The server over `state`; each request's caller comes from its verified token.
    pub fn new(state: McpState) -> Self {
        Self {
            state,
            fixed: None,
            tool_router: Arc::new(Self::tool_router()),
            subscriptions: Arc::default(),
        }
    }

    /// This server for a new session: the same tools, no subscriptions yet.
    pub fn for_session(&self) -> Self {
        Self {
            subscriptions: Arc::default(),
            ..self.clone()
        }
    }

    /// The server acting for `principal` on every request (a local process over stdio).
    pub fn for_principal(state: McpState, principal: Principal) -> Self {
        Self {
            fixed: Some(Arc::new(principal)),
            ..Self::new(state)
        }
    }

    /// The caller of `tool`, if it holds the tool's scope.
    fn caller(
        &self,
        context: &RequestContext<RoleServer>,
        tool: &str,
    ) -> Result<Principal, ToolError> {
        let principal = match &self.fixed {
            Some(principal) => principal.as_ref().clone(),
            None => context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned()
                .ok_or_else(|| ToolError("unauthorized: a bearer token is required".into()))?,
        };
        let scope = scope_of(tool).ok_or_else(|| ToolError(format!("no tool is named {tool}")))?;
        principal.require(scope)?;
        Ok(principal)
    }

    fn memory(&self) -> Result<&p8fs_memory::Memory, ToolError> {
        self.state.memory.as_deref().ok_or_else(|| {
            ToolError("unavailable: memories need embeddings, which are off on this server".into())
        })
    }

    /// The text of `bucket`/`key` as indexing extracts it, at most `max_bytes` of it.
    async fn object_text(
        &self,
        caller: &Principal,
        bucket: &BucketName,
        key: &ObjectKey,
        max_bytes: usize,
    ) -> Result<(Format, p8fs_text::Extracted), ToolError> {
        let backend = &self.state.backend;
        let meta = backend
            .object(&caller.tenant, bucket, key)
            .await?
            .ok_or_else(|| Error::not_found(p8fs_core::Resource::Object, key))?;
        // Ciphertext under a key only the client holds (SSE-C): refused whatever its format,
        // before a byte is read.
        meta.refuse_client_held_key()?;
        let format = Format::detect(meta.attributes.content_type.as_deref(), key.as_str())
            .ok_or_else(|| {
                ToolError(format!(
                    "unsupported: {} is not a text, Markdown, HTML, PDF or JSON file",
                    key.as_str()
                ))
            })?;
        let mut limits = self
            .state
            .memory
            .as_ref()
            .map(|m| m.limits().text_limits())
            .unwrap_or_default();
        limits.max_text_bytes = limits.max_text_bytes.min(max_bytes);
        let bytes =
            p8fs_memory::extraction_input(backend.as_ref(), &caller.tenant, &meta, format, &limits)
                .await?
                .ok_or_else(|| {
                    ToolError("conflict: the file changed while being read; read it again".into())
                })?;
        let extracted = p8fs_text::extract(format, &bytes, &limits)
            .map_err(|e| ToolError(format!("cannot extract the text: {e}")))?;
        Ok((format, extracted))
    }

    /// The caller of a resource request, if it holds `scope`; a protocol error otherwise
    /// (resources are not tools: their failures are JSON-RPC errors).
    fn resource_caller(
        &self,
        context: &RequestContext<RoleServer>,
        scope: Scope,
    ) -> Result<Principal, ErrorData> {
        let principal = match &self.fixed {
            Some(principal) => principal.as_ref().clone(),
            None => context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned()
                .ok_or_else(|| ErrorData::invalid_request("a bearer token is required", None))?,
        };
        principal
            .require(scope)
            .map_err(|e| ErrorData::invalid_request(e.client_message(), None))?;
        Ok(principal)
    }

    /// A resource's text: `p8fs://memories/{id}` or `p8fs://objects/{bucket}/{key}` (the key
    /// percent-encoded as in a URL path).
    async fn read_uri(
        &self,
        uri: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, ErrorData> {
        let not_found = || ErrorData::resource_not_found(format!("no resource {uri}"), None);
        let rest = uri.strip_prefix("p8fs://").ok_or_else(not_found)?;
        let failed = |e: ToolError| ErrorData::invalid_params(e.0, None);
        if let Some(id) = rest.strip_prefix("memories/") {
            let caller = self.resource_caller(context, Scope::MemoriesRead)?;
            let memory = self.memory().map_err(failed)?;
            let record = match memory.memory(&caller.tenant, id).await {
                Ok(record) => record,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => {
                    return Err(not_found());
                }
                Err(e) => return Err(failed(e.into())),
            };
            return Ok(ReadResourceResult::new(vec![ResourceContents::text(
                record.text,
                uri,
            )]));
        }
        if let Some(path) = rest.strip_prefix("objects/") {
            let caller = self.resource_caller(context, Scope::S3Read)?;
            let (bucket, key) = path.split_once('/').ok_or_else(not_found)?;
            let key = percent_decode_str(key)
                .decode_utf8()
                .map_err(|_| not_found())?
                .into_owned();
            let bucket = BucketName::new(bucket).map_err(|_| not_found())?;
            let key = ObjectKey::new(key).map_err(|_| not_found())?;
            return match self
                .object_text(&caller, &bucket, &key, MAX_READ_BYTES)
                .await
            {
                Ok((_, extracted)) => Ok(ReadResourceResult::new(vec![ResourceContents::text(
                    extracted.text,
                    uri,
                )])),
                Err(e) if e.0.starts_with("not found") => Err(not_found()),
                Err(e) => Err(failed(e)),
            };
        }
        Err(not_found())
    }
}

// ---- inputs and outputs ----

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberInput {
    /// What to remember, in plain words.
    pub text: String,
    /// Structured facts about it (a JSON object), searchable with `recall`'s `metadata`.
    #[serde(default)]
    pub metadata: Option<JsonMap>,
    /// Labels to filter `recall` by.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Forget it by itself after this many seconds (at least 60).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct MemoryOut {
    pub id: String,
    pub tags: Vec<String>,
    pub metadata: JsonMap,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// How many chunks the text became.
    pub chunks: usize,
    /// Whether text past the chunk limit was left out of the index.
    pub truncated: bool,
}

impl From<p8fs_memory::MemoryRecord> for MemoryOut {
    fn from(record: p8fs_memory::MemoryRecord) -> Self {
        MemoryOut {
            id: record.id,
            tags: record.tags,
            metadata: record.metadata,
            created_at: record.created_at,
            expires_at: record.expires_at,
            chunks: record.chunks,
            truncated: record.truncated,
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallInput {
    /// The question or topic, in plain words.
    pub query: String,
    /// How many chunks to return (1 to 1000, default 5).
    #[serde(default)]
    pub k: Option<u64>,
    /// Only chunks of `memory` or of `object` (uploaded files).
    #[serde(default)]
    pub source: Option<String>,
    /// Only chunks of files in this bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Only chunks of memories carrying every one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Only chunks of memories whose metadata holds these values (dot paths as keys).
    #[serde(default)]
    pub metadata: Option<JsonMap>,
    /// `exact` (default) or `approximate`, as in `search_vectors`.
    #[serde(default)]
    pub mode: Option<String>,
    /// With mode `approximate` only: candidates kept (1 to 4096, default 64).
    #[serde(default)]
    pub ef: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct RecallOut {
    /// Nearest first.
    pub results: Vec<Recalled>,
}

#[derive(Serialize, JsonSchema)]
pub struct Recalled {
    /// Cosine similarity to the query, in [-1, 1]; higher is nearer.
    pub score: f64,
    pub text: String,
    /// `memory` or `object`.
    pub source: String,
    /// The memory's id (a memory's chunk).
    pub memory_id: Option<String>,
    /// The file's bucket and key (a file's chunk).
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The chunk's position among its source's chunks, and their number.
    pub chunk: u64,
    pub chunks: u64,
    pub tags: Vec<String>,
    pub metadata: JsonMap,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryIdInput {
    /// The memory's id, as `remember` or `recall` gave it.
    pub id: String,
}

#[derive(Serialize, JsonSchema)]
pub struct ForgetOut {
    /// False when there was no such memory.
    pub forgotten: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    /// The memory the link starts from.
    pub from: String,
    /// The memory it leads to.
    pub to: String,
    /// What the link means (default `link`).
    #[serde(default)]
    pub rel: Option<String>,
    /// Its weight (default 1).
    #[serde(default)]
    pub weight: Option<f64>,
}

#[derive(Serialize, JsonSchema)]
pub struct LinkOut {
    pub from: String,
    pub rel: String,
    pub to: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelatedInput {
    /// The memory to start from.
    pub id: String,
    /// Only links of these kinds (default: any).
    #[serde(default)]
    pub rels: Option<Vec<String>>,
    /// How many hops away (1 to 6, default 1).
    #[serde(default)]
    pub depth: Option<u64>,
    /// The most memories returned (1 to 1000, default 20).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct RelatedOut {
    /// By hops, then id.
    pub memories: Vec<RelatedMemory>,
}

#[derive(Serialize, JsonSchema)]
pub struct RelatedMemory {
    pub id: String,
    pub hops: u32,
    pub text: String,
    pub tags: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFilesInput {
    /// The bucket; without it, the buckets are listed.
    #[serde(default)]
    pub bucket: Option<String>,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Roll keys continuing past this (e.g. `/`) up into `folders`.
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// The most files per page (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct ListFilesOut {
    /// Without a bucket: the buckets, names ascending.
    pub buckets: Vec<String>,
    pub files: Vec<FileOut>,
    /// With a delimiter: the key prefixes rolled up.
    pub folders: Vec<String>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct FileOut {
    pub key: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub last_modified: i64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFileInput {
    pub bucket: String,
    pub key: String,
    /// The most text returned, in bytes (default 65536, at most 1048576).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct ReadFileOut {
    pub bucket: String,
    pub key: String,
    /// The format the text was extracted as (`text`, `markdown`, `html`, `pdf`, `json`).
    pub format: String,
    pub text: String,
    /// Whether the text was cut short.
    pub truncated: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvKeyInput {
    pub key: String,
}

#[derive(Serialize, JsonSchema)]
pub struct KvOut {
    pub key: String,
    /// The record's JSON value; null when there is no record.
    pub value: Option<Value>,
    pub found: bool,
    pub version: Option<u64>,
    pub expires_at: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvPutInput {
    pub key: String,
    /// Any JSON value.
    pub value: Value,
    /// Remove it by itself after this many seconds.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct KvPutOut {
    pub key: String,
    pub version: u64,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvListInput {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// The most records per page (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct KvListOut {
    /// In key order.
    pub records: Vec<KvOut>,
    pub next: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchVectorsInput {
    pub collection: String,
    /// The query vector, of the collection's dimension.
    pub vector: Vec<f64>,
    /// How many nearest records (1 to 1000, default 10).
    #[serde(default)]
    pub k: Option<u64>,
    /// Metadata conditions (the REST API's filter language).
    #[serde(default)]
    pub filter: Option<serde_json::Map<String, Value>>,
    /// `exact` (default: every record considered) or `approximate` (a graph index walked,
    /// faster on large collections, may miss some of the nearest; collections under 10,000
    /// records, and backends without a graph index, answer exactly).
    #[serde(default)]
    pub mode: Option<String>,
    /// With mode `approximate` only: candidates kept while searching (1 to 4096, default 64);
    /// more finds more of the nearest, slower.
    #[serde(default)]
    pub ef: Option<u64>,
}

#[derive(Serialize, JsonSchema)]
pub struct SearchVectorsOut {
    /// Nearest first.
    pub hits: Vec<VectorHitOut>,
}

#[derive(Serialize, JsonSchema)]
pub struct VectorHitOut {
    pub id: String,
    pub distance: f64,
    pub metadata: JsonMap,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShortestPathInput {
    pub from: String,
    pub to: String,
    /// Only edges of these relations (default: any).
    #[serde(default)]
    pub rels: Option<Vec<String>>,
    /// The most hops (1 to 12, default 6).
    #[serde(default)]
    pub max_depth: Option<u64>,
    /// Least total weight instead of fewest hops.
    #[serde(default)]
    pub weighted: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct ShortestPathOut {
    pub found: bool,
    /// From `from` to `to`.
    pub nodes: Vec<String>,
    pub edges: Vec<EdgeOut>,
    /// Hops, or total weight when weighted.
    pub total: f64,
}

#[derive(Serialize, JsonSchema)]
pub struct EdgeOut {
    pub src: String,
    pub rel: String,
    pub dst: String,
    pub weight: f64,
}

// ---- the tools ----

#[tool_router]
impl Vault {
    #[tool(
        description = "Store a memory: text (with optional metadata, tags and time to live) that recall will find by meaning.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn remember(
        &self,
        Parameters(input): Parameters<RememberInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<MemoryOut>, ToolError> {
        let caller = self.caller(&context, "remember")?;
        let ttl = input
            .ttl_seconds
            .map(|s| ttl_of("ttl_seconds", s))
            .transpose()?;
        let record = self
            .memory()?
            .remember(
                &caller.tenant,
                NewMemory {
                    text: input.text,
                    metadata: input.metadata.unwrap_or_default(),
                    tags: input.tags,
                    ttl,
                },
            )
            .await?;
        Ok(Json(record.into()))
    }

    #[tool(
        description = "Find what the vault holds about a question: the most relevant chunks of memories and uploaded files, nearest in meaning first, with their sources and scores.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn recall(
        &self,
        Parameters(input): Parameters<RecallInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<RecallOut>, ToolError> {
        let caller = self.caller(&context, "recall")?;
        let query = Query {
            text: input.query,
            k: Limit::named("k", input.k.unwrap_or(5))?,
            source: input
                .source
                .as_deref()
                .map(|s| SourceKind::parse("source", s))
                .transpose()?,
            bucket: input.bucket.map(BucketName::new).transpose()?,
            tags: input.tags,
            metadata: input.metadata.unwrap_or_default().into_iter().collect(),
            mode: SearchMode::parse(input.mode.as_deref(), input.ef)?,
        };
        let found = self.memory()?.search(&caller.tenant, &query).await?;
        let results = found
            .into_iter()
            .map(|found| {
                let (source, memory_id, bucket, key) = match found.origin {
                    Origin::Memory { id } => ("memory", Some(id), None, None),
                    Origin::Object { bucket, key } => ("object", None, Some(bucket), Some(key)),
                };
                Recalled {
                    score: found.score,
                    text: found.text,
                    source: source.to_owned(),
                    memory_id,
                    bucket,
                    key,
                    chunk: found.chunk,
                    chunks: found.chunks,
                    tags: found.tags,
                    metadata: found.metadata,
                }
            })
            .collect();
        Ok(Json(RecallOut { results }))
    }

    #[tool(
        description = "Forget a memory for good: its text, its chunks and its links.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn forget(
        &self,
        Parameters(input): Parameters<MemoryIdInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<ForgetOut>, ToolError> {
        let caller = self.caller(&context, "forget")?;
        let forgotten = match self.memory()?.forget(&caller.tenant, &input.id).await {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e.into()),
        };
        Ok(Json(ForgetOut { forgotten }))
    }

    #[tool(
        description = "Link one memory to another (e.g. rel `follows`, `contradicts`, `about`); related walks these links.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn link(
        &self,
        Parameters(input): Parameters<LinkInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<LinkOut>, ToolError> {
        let caller = self.caller(&context, "link")?;
        let rel = input.rel.unwrap_or_else(|| "link".to_owned());
        self.memory()?
            .link(
                &caller.tenant,
                &input.from,
                &input.to,
                Some(&rel),
                input.weight,
            )
            .await?;
        Ok(Json(LinkOut {
            from: input.from,
            rel,
            to: input.to,
        }))
    }

    #[tool(
        description = "Memories linked to a memory, up to `depth` links away, nearest first.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn related(
        &self,
        Parameters(input): Parameters<RelatedInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<RelatedOut>, ToolError> {
        let caller = self.caller(&context, "related")?;
        let memory = self.memory()?;
        memory.memory(&caller.tenant, &input.id).await?;
        let rels = match input.rels {
            None => RelFilter::any(),
            Some(rels) => RelFilter::new(rels).map_err(|e| e.renamed("rels"))?,
        };
        let depth = Depth::neighbors(input.depth.unwrap_or(1))?;
        let limit = Limit::new(input.limit.unwrap_or(20))?;
        let reached = neighbors(
            self.state.backend.as_ref(),
            &caller.tenant,
            &NodeId::named("id", input.id)?,
            Direction::Both,
            &rels,
            depth,
            // Chunks are neighbours too; ask for more and keep the memories.
            Limit::new((limit.get() as u64).saturating_mul(4).min(1000))?,
        )
        .await?;
        let mut memories = Vec::new();
        for node in reached {
            if memories.len() >= limit.get() {
                break;
            }
            match memory.memory(&caller.tenant, node.id.as_str()).await {
                Ok(record) => memories.push(RelatedMemory {
                    id: record.id,
                    hops: node.hops,
                    text: record.text,
                    tags: record.tags,
                }),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Json(RelatedOut { memories }))
    }

    #[tool(
        description = "List buckets (without `bucket`) or the files of a bucket, with prefix, folder-style delimiter and paging.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_files(
        &self,
        Parameters(input): Parameters<ListFilesInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<ListFilesOut>, ToolError> {
        let caller = self.caller(&context, "list_files")?;
        let backend = &self.state.backend;
        let Some(bucket) = input.bucket else {
            let buckets = backend.list_buckets(&caller.tenant).await?;
            return Ok(Json(ListFilesOut {
                buckets: buckets.into_iter().map(|b| b.name.into_string()).collect(),
                files: Vec::new(),
                folders: Vec::new(),
                next: None,
            }));
        };
        let bucket = BucketName::new(bucket)?;
        let prefix = ObjectPrefix::new(input.prefix.unwrap_or_default())?;
        let limit = Limit::new(input.limit.unwrap_or(100))?;
        let from = match input.after.as_deref() {
            None => Vec::new(),
            Some(after) => unhex(after)
                .ok_or_else(|| Error::invalid("after", "not a cursor this tool gave"))?,
        };
        let listing = list_objects_v2(
            backend.as_ref(),
            &caller.tenant,
            &bucket,
            &prefix,
            input.delimiter.as_deref(),
            &from,
            u32::try_from(limit.get()).unwrap_or(1000),
        )
        .await?;
        Ok(Json(ListFilesOut {
            buckets: Vec::new(),
            files: listing
                .objects
                .into_iter()
                .map(|meta| FileOut {
                    key: meta.key.into_string(),
                    size: meta.size,
                    content_type: meta.attributes.content_type,
                    last_modified: meta.last_modified,
                })
                .collect(),
            folders: listing.common_prefixes,
            next: listing.next_from.map(|from| hex(&from)),
        }))
    }

    #[tool(
        description = "Read a file's text: plain text and Markdown as they are, HTML, PDF and JSON as extracted text.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn read_file(
        &self,
        Parameters(input): Parameters<ReadFileInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<ReadFileOut>, ToolError> {
        let caller = self.caller(&context, "read_file")?;
        let max_bytes = usize::try_from(input.max_bytes.unwrap_or(DEFAULT_READ_BYTES as u64))
            .ok()
            .filter(|n| (1..=MAX_READ_BYTES).contains(n))
            .ok_or_else(|| {
                Error::invalid(
                    "max_bytes",
                    format!("must be between 1 and {MAX_READ_BYTES}"),
                )
            })?;
        let bucket = BucketName::new(input.bucket)?;
        let key = ObjectKey::new(input.key)?;
        let (format, extracted) = self.object_text(&caller, &bucket, &key, max_bytes).await?;
        Ok(Json(ReadFileOut {
            bucket: bucket.into_string(),
            key: key.into_string(),
            format: format.as_str().to_owned(),
            text: extracted.text,
            truncated: extracted.truncated,
        }))
    }

    #[tool(
        description = "Read the JSON record at a key.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn kv_get(
        &self,
        Parameters(input): Parameters<KvKeyInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<KvOut>, ToolError> {
        let caller = self.caller(&context, "kv_get")?;
        let key = Key::new(input.key)?;
        let entry = self.state.backend.get(&caller.tenant, &key).await?;
        Ok(Json(match entry {
            Some(entry) => kv_out(entry),
            None => KvOut {
                key: key.into_string(),
                value: None,
                found: false,
                version: None,
                expires_at: None,
            },
        }))
    }

    #[tool(
        description = "Store a JSON value at a key, replacing what was there.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn kv_put(
        &self,
        Parameters(input): Parameters<KvPutInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<KvPutOut>, ToolError> {
        let caller = self.caller(&context, "kv_put")?;
        let key = Key::new(input.key)?;
        let value = JsonValue::new(input.value).map_err(|e| e.renamed("value"))?;
        let ttl = input
            .ttl_seconds
            .map(|s| ttl_of("ttl_seconds", s))
            .transpose()?;
        let version = self
            .state
            .backend
            .put(&caller.tenant, &key, &value, ttl)
            .await?;
        Ok(Json(KvPutOut {
            key: key.into_string(),
            version: version.0,
        }))
    }

    #[tool(
        description = "List JSON records whose key starts with a prefix, in key order, a page at a time.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn kv_list(
        &self,
        Parameters(input): Parameters<KvListInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<KvListOut>, ToolError> {
        let caller = self.caller(&context, "kv_list")?;
        let prefix = KeyPrefix::new(input.prefix.unwrap_or_default())?;
        let after = input.after.map(|a| Key::named("after", a)).transpose()?;
        let limit = Limit::new(input.limit.unwrap_or(100))?;
        let page = self
            .state
            .backend
            .scan(&caller.tenant, &prefix, after.as_ref(), limit)
            .await?;
        Ok(Json(KvListOut {
            records: page.items.into_iter().map(kv_out).collect(),
            next: page.next.map(Key::into_string),
        }))
    }

    #[tool(
        description = "The records of a vector collection nearest to a query vector, with optional metadata filters.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn search_vectors(
        &self,
        Parameters(input): Parameters<SearchVectorsInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<SearchVectorsOut>, ToolError> {
        let caller = self.caller(&context, "search_vectors")?;
        let collection =
            CollectionName::new(input.collection).map_err(|e| e.renamed("collection"))?;
        let k = Limit::top_k(input.k.unwrap_or(10))?;
        let filter = Filter::new(input.filter.unwrap_or_default())?;
        let mode = SearchMode::parse(input.mode.as_deref(), input.ef)?;
        let query = components("vector", input.vector)?;
        let hits = search_with(
            self.state.backend.as_ref(),
            &caller.tenant,
            &collection,
            query,
            k,
            &filter,
            mode,
        )
        .await
        // The contract calls the query vector `query`; here it is the `vector` argument.
        .map_err(|e| match e.field() {
            Some("query") => e.renamed("vector"),
            _ => e,
        })?;
        Ok(Json(SearchVectorsOut {
            hits: hits
                .into_iter()
                .map(|hit| VectorHitOut {
                    id: hit.id.into_string(),
                    distance: hit.distance,
                    metadata: hit.metadata,
                })
                .collect(),
        }))
    }

    #[tool(
        description = "The shortest path between two graph nodes: fewest hops, or least total weight.",
        annotations(
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn shortest_path(
        &self,
        Parameters(input): Parameters<ShortestPathInput>,
        context: RequestContext<RoleServer>,
    ) -> Result<Json<ShortestPathOut>, ToolError> {
        let caller = self.caller(&context, "shortest_path")?;
        let query = PathQuery {
            src: NodeId::named("from", input.from)?,
            dst: NodeId::named("to", input.to)?,
            direction: Direction::Out,
            rels: match input.rels {
                None => RelFilter::any(),
                Some(rels) => RelFilter::new(rels).map_err(|e| e.renamed("rels"))?,
            },
            max_depth: Depth::path(input.max_depth.unwrap_or(6))
                .map_err(|e| e.renamed("max_depth"))?,
            weighted: input.weighted,
        };
        let found = shortest_path(self.state.backend.as_ref(), &caller.tenant, &query).await?;
        Ok(Json(match found {
            None => ShortestPathOut {
                found: false,
                nodes: Vec::new(),
                edges: Vec::new(),
                total: 0.0,
            },
            Some(path) => ShortestPathOut {
                found: true,
                nodes: path.nodes.into_iter().map(NodeId::into_string).collect(),
                edges: path
                    .edges
                    .into_iter()
                    .map(|edge| EdgeOut {
                        src: edge.src.into_string(),
                        rel: edge.rel.into_string(),
                        dst: edge.dst.into_string(),
                        weight: edge.weight,
                    })
                    .collect(),
                total: path.total,
            },
        }))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Vault {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_resources_subscribe()
                .build(),
        )
        .with_server_info(Implementation::new("p8fs", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "The user's memory vault. `recall` what it holds about a question before \
                 answering from memory; `remember` what the user asks you to keep; browse \
                 uploaded files with `list_files` and `read_file`.",
        )
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new(MEMORY_TEMPLATE, "memory")
                .with_description("A memory's text (scope memories:read)."),
            ResourceTemplate::new(OBJECT_TEMPLATE, "file")
                .with_description("A file's text, extracted (scope s3:read)."),
        ]))
    }

    /// The caller's memories, oldest first, a page at a time (none without `memories:read`).
    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let Ok(caller) = self.resource_caller(&context, Scope::MemoriesRead) else {
            return Ok(ListResourcesResult::with_all_items(Vec::new()));
        };
        let Some(memory) = self.state.memory.as_deref() else {
            return Ok(ListResourcesResult::with_all_items(Vec::new()));
        };
        let after = request.and_then(|r| r.cursor);
        let page = memory
            .memories(
                &caller.tenant,
                after.as_deref(),
                Limit::new(100).map_err(|e| ErrorData::internal_error(e.to_string(), None))?,
            )
            .await
            .map_err(|e| ErrorData::invalid_params(e.client_message(), None))?;
        let mut result = ListResourcesResult::with_all_items(
            page.items
                .into_iter()
                .map(|record| {
                    let name: String = record.text.chars().take(60).collect();
                    Resource::new(format!("p8fs://memories/{}", record.id), name)
                        .with_mime_type("text/plain")
                })
                .collect(),
        );
        result.next_cursor = page.next;
        Ok(result)
    }

    /// `subscriptions/listen` (2026-07-28) takes resource subscriptions to `p8fs://` URIs.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let uris: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| watch::watched(uri).is_some())
            .cloned()
            .collect();
        Some(
            SubscriptionFilter::builder()
                .resource_subscriptions(uris)
                .build(),
        )
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        let caller = self
            .resource_caller(context.request_context(), Scope::MemoriesRead)
            .or_else(|_| self.resource_caller(context.request_context(), Scope::S3Read))?;
        watch::check(&caller, &uris)?;
        let sink = context.sink().clone();
        watch::follow(
            &self.state,
            &caller,
            &uris,
            |uri| {
                let sink = sink.clone();
                async move { sink.notify_resource_updated(uri).await.is_ok() }
            },
            context.cancelled(),
        )
        .await
    }

    /// `resources/subscribe` (2025-era sessions): updates of `uri` arrive as
    /// `notifications/resources/updated` until `resources/unsubscribe` or the session's end.
    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let uri = request.uri;
        let (_, _, scope) = watch::watched(&uri).ok_or_else(|| {
            ErrorData::invalid_params(format!("{uri} is not a resource of this server"), None)
        })?;
        let caller = self.resource_caller(&context, scope)?;
        let state = self.state.clone();
        let peer = context.peer.clone();
        let uris = vec![uri.clone()];
        let task = tokio::spawn(async move {
            let notified = watch::follow(
                &state,
                &caller,
                &uris,
                |uri| {
                    let peer = peer.clone();
                    async move {
                        peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                            .await
                            .is_ok()
                    }
                },
                std::future::pending(),
            )
            .await;
            if let Err(error) = notified {
                tracing::warn!(?error, "a resource subscription ended");
            }
        });
        if let Some(previous) = self.subscriptions.lock().insert(uri, task.abort_handle()) {
            previous.abort();
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(task) = self.subscriptions.lock().remove(&request.uri) {
            task.abort();
        }
        Ok(())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read_uri(&request.uri, &context).await.map(Into::into)
    }

    /// Runs the tool; arguments that do not fit its schema become a tool error naming the
    /// field (so the assistant can correct the call), not a protocol error.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let context = ToolCallContext::new(self, request, context);
        match self.tool_router.call(context).await {
            Err(error) if error.code == ErrorCode::INVALID_PARAMS => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid input: {}",
                    error.message
                ))])
                .into())
            }
            other => other,
        }
    }
}

fn kv_out(entry: p8fs_core::KvEntry) -> KvOut {
    KvOut {
        key: entry.key.into_string(),
        value: Some(entry.value),
        found: true,
        version: Some(entry.version.0),
        expires_at: entry.expires_at,
    }
}

fn ttl_of(field: &'static str, seconds: u64) -> Result<Ttl, Error> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| Error::invalid(field, "too long"))
        .and_then(Ttl::from_millis)
        .map_err(|e| e.renamed(field))
}
