//! Configuration: one TOML file plus `P8FS_*` environment overrides (the environment wins), then
//! command-line flags. Unknown keys are an error that names the key; secrets print as `****`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The effective configuration of a `p8fs` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `p8fs serve` listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where local state lives: the RocksDB database and the signing keys.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The storage backend.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Encryption at rest (`[encryption]`).
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// Access tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Background maintenance.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// The OAuth 2.1 authorization server.
    #[serde(default)]
    pub oauth: OAuthSection,
    /// Where and to whom `/metrics` is served.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The S3 listener.
    #[serde(default)]
    pub s3: S3Config,
    /// The change log and its followers.
    #[serde(default)]
    pub events: EventsConfig,
    /// Embeddings: memories, the ingest of uploaded files, search by meaning.
    #[serde(default)]
    pub embeddings: EmbeddingsConfig,
    /// The GraphQL endpoint's limits (`[graphql]`; see `p8fs_graphql::GraphqlLimits`).
    #[serde(default)]
    pub graphql: p8fs_graphql::GraphqlLimits,
    /// The MCP endpoint (`[mcp]`).
    #[serde(default)]
    pub mcp: McpConfig,
    /// `p8fs edge`, the reverse proxy in front of several nodes (`[edge]`; see
    /// `p8fs_edge::EdgeConfig`).
    #[serde(default)]
    pub edge: p8fs_edge::EdgeConfig,
}

/// The MCP endpoint (`[mcp]`): `/mcp` on the main listener, an OAuth protected resource whose
/// tokens must be issued for the resource `<issuer>/mcp` (RFC 8707).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Whether `/mcp` is served.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `Host` header values admitted on `/mcp` (DNS-rebinding protection), as `host` or
    /// `host:port`. Default: the issuer's host, `localhost`, `127.0.0.1` and `::1`; `["*"]`
    /// admits any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Browser origins admitted (`scheme://host:port`, `:*` for any port). A request with any
    /// other `Origin` is refused; requests without one (non-browser clients) pass. Default none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Largest JSON-RPC request body, in bytes (default 4 MiB).
    #[serde(default = "default_mcp_body_bytes")]
    pub max_body_bytes: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: default_mcp_body_bytes(),
        }
    }
}

fn default_mcp_body_bytes() -> usize {
    p8fs_mcp::DEFAULT_MAX_BODY_BYTES
}

/// Embeddings (`[embeddings]`): which model turns text into vectors, and what is indexed.
///
/// `provider` is `builtin` (all-MiniLM-L6-v2 in process, from `model_dir`; no network, no key),
/// `openai` (any OpenAI-compatible `/v1/embeddings` server: `url`, `model`, `api_key`) or `none`
/// (memories and search answer 503). Unset, it is `builtin` when the model's files are in
/// `model_dir` and `none` otherwise (with a warning naming `p8fs models install`); set to
/// `builtin` explicitly, missing files stop `p8fs serve` with an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<EmbeddingsProvider>,
    /// `builtin`: the directory of `model.safetensors`, `tokenizer.json` and `config.json`
    /// (default `<data_dir>/models/all-MiniLM-L6-v2`, where `p8fs models install` puts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// `builtin`: batches embedded at once, each on a blocking thread (1..=64, default 1; the
    /// matrix products of a batch use every core already).
    #[serde(default = "default_embedding_threads")]
    pub threads: usize,
    /// `openai`: the API's base URL, e.g. `http://localhost:11434/v1` (Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `openai`: the model name, e.g. `nomic-embed-text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `openai`: the API key (also `P8FS_EMBEDDINGS_API_KEY`); printed as `****`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    /// `openai`: the vectors' dimension; learned from the server when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<usize>,
    /// Whether uploaded objects are indexed (the ingest worker).
    #[serde(default = "default_true")]
    pub ingest: bool,
    /// The longest memory text, in bytes.
    #[serde(default = "default_max_memory_bytes")]
    pub max_memory_bytes: usize,
    /// The most text extracted from one object, in bytes; the rest is not indexed.
    #[serde(default = "default_max_text_bytes")]
    pub max_text_bytes: usize,
    /// The largest PDF or JSON object read to extract its text, in bytes.
    #[serde(default = "default_max_input_bytes")]
    pub max_input_bytes: usize,
    /// The most chunks of one memory or object.
    #[serde(default = "default_max_chunks")]
    pub max_chunks: usize,
    /// Tokens per chunk (16..=8192; at most the model's window: 254 for the builtin model).
    #[serde(default = "default_chunk_tokens")]
    pub chunk_tokens: usize,
    /// Tokens a chunk repeats from the end of the previous one (less than half of
    /// `chunk_tokens`).
    #[serde(default = "default_overlap_tokens")]
    pub overlap_tokens: usize,
    /// How long the ingest worker's lease lasts without renewal (1s – 5m): with several gateway
    /// nodes, one indexes at a time and another takes over this long after it stops.
    #[serde(default = "default_ingest_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
}

/// Where embeddings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingsProvider {
    Builtin,
    Openai,
    None,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        Self {
            provider: None,
            model_dir: None,
            threads: default_embedding_threads(),
            url: None,
            model: None,
            api_key: None,
            dimension: None,
            ingest: true,
            max_memory_bytes: default_max_memory_bytes(),
            max_text_bytes: default_max_text_bytes(),
            max_input_bytes: default_max_input_bytes(),
            max_chunks: default_max_chunks(),
            chunk_tokens: default_chunk_tokens(),
            overlap_tokens: default_overlap_tokens(),
            lease_ttl: default_ingest_lease_ttl(),
        }
    }
}

impl EmbeddingsConfig {
    /// The builtin model's directory: `model_dir`, or `<data_dir>/models/all-MiniLM-L6-v2`.
    pub fn model_dir(&self, data_dir: &Path) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("models").join("all-MiniLM-L6-v2"))
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.threads) {
            return Err("embeddings.threads: must be between 1 and 64".into());
        }
        if self.provider == Some(EmbeddingsProvider::Openai) {
            if self.url.as_deref().is_none_or(str::is_empty) {
                return Err("embeddings.url: required with provider = \"openai\"".into());
            }
            if self.model.as_deref().is_none_or(str::is_empty) {
                return Err("embeddings.model: required with provider = \"openai\"".into());
            }
        }
        for (key, value, min, max) in [
            (
                "embeddings.max_memory_bytes",
                self.max_memory_bytes,
                1,
                16 << 20,
            ),
            (
                "embeddings.max_text_bytes",
                self.max_text_bytes,
                1024,
                1 << 30,
            ),
            (
                "embeddings.max_input_bytes",
                self.max_input_bytes,
                1024,
                4 << 30,
            ),
            ("embeddings.max_chunks", self.max_chunks, 1, 1_000_000),
            ("embeddings.chunk_tokens", self.chunk_tokens, 16, 8192),
        ] {
            if !(min..=max).contains(&value) {
                return Err(format!("{key}: must be between {min} and {max}"));
            }
        }
        if self.overlap_tokens * 2 >= self.chunk_tokens {
            return Err("embeddings.overlap_tokens: must be less than half of chunk_tokens".into());
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(300) {
            return Err("embeddings.lease_ttl: must be between 1s and 5m".into());
        }
        Ok(())
    }
}

fn default_embedding_threads() -> usize {
    1
}
fn default_max_memory_bytes() -> usize {
    64 * 1024
}
fn default_max_text_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_max_input_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_max_chunks() -> usize {
    2000
}
fn default_chunk_tokens() -> usize {
    254
}
fn default_overlap_tokens() -> usize {
    32
}
fn default_ingest_lease_ttl() -> Duration {
    Duration::from_secs(10)
}

/// The change log (`[events]`): how long changes are kept, and how often change streams look
/// for writes made through other gateway nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// How long changes are kept (1 minute – 10 years); a reader whose cursor is older gets
    /// 410 Gone naming the oldest cursor it may use.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// How often the change hub reads the log's heads while streams wait (10 ms – 10 s).
    /// Writes through this node wake streams at once; this bounds the delay for writes made
    /// through another node sharing the database.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Publishing every change to NATS JetStream (off unless `[events.nats]` is present).
    #[serde(default)]
    pub nats: Option<NatsConfig>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention: default_retention(),
            poll_interval: default_poll_interval(),
            nats: None,
        }
    }
}

/// The NATS JetStream publisher (`[events.nats]`, see `crate::nats`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The server, e.g. `nats://127.0.0.1:4222` (credentials may be given as
    /// `nats://user:password@host:port`; they are never logged).
    pub url: String,
    /// Subjects are `<subject_prefix>.<tenant>.<kind>.<op>` (default `p8fs`).
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream; created capturing `<subject_prefix>.>` if it does not exist
    /// (default `P8FS`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The duplicate window of a stream the gateway creates (default 2m, at least twice
    /// `lease_ttl`): re-sends within it are dropped by JetStream.
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long a publishing node's lease lasts without renewal (1s – 5m, default 10s); another
    /// node takes over at most this long after the publisher dies.
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long to wait for JetStream to acknowledge a message (100ms – 1m, default 5s).
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
}

fn default_subject_prefix() -> String {
    "p8fs".into()
}
fn default_stream() -> String {
    "P8FS".into()
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(5)
}

impl NatsConfig {
    fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://"))
            || self.url.len() > 2048
        {
            return Err("events.nats.url: must be a nats:// or tls:// URL".into());
        }
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if self.subject_prefix.len() > 200 || !self.subject_prefix.split('.').all(token_ok) {
            return Err(
                "events.nats.subject_prefix: must be dot-separated tokens of \
                 [A-Za-z0-9_-] (no wildcards or spaces), at most 200 bytes"
                    .into(),
            );
        }
        if self.stream.len() > 64 || !token_ok(&self.stream) {
            return Err("events.nats.stream: must be 1..=64 of [A-Za-z0-9_-]".into());
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(300) {
            return Err("events.nats.lease_ttl: must be between 1s and 5m".into());
        }
        if self.ack_timeout < Duration::from_millis(100)
            || self.ack_timeout > Duration::from_secs(60)
        {
            return Err("events.nats.ack_timeout: must be between 100ms and 1m".into());
        }
        if self.duplicate_window < self.lease_ttl * 2
            || self.duplicate_window > Duration::from_secs(24 * 3600)
        {
            return Err(
                "events.nats.duplicate_window: must be between twice lease_ttl and 1 day".into(),
            );
        }
        Ok(())
    }
}

fn default_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_poll_interval() -> Duration {
    Duration::from_millis(100)
}

/// The S3 listener (`[s3]`): the S3 REST API and STS `AssumeRoleWithWebIdentity` on their own
/// address. It shares the accept loop of the main listener (`limits.max_connections`,
/// `limits.max_connections_per_address`, `limits.header_read_timeout`, `limits.idle_timeout`)
/// but never buffers bodies: uploads and downloads stream one 1 MiB chunk at a time, so a
/// request holds about 2 MiB at most. Object sizes follow S3 (a single PUT or part up to 5 GiB,
/// an object up to 5 TiB, parts of at least 5 MiB but the last); XML request bodies (part
/// lists, delete lists) are read whole, at most 4 MiB, and only once the request is
/// authenticated; an STS form is at most 16 KiB.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Whether `p8fs serve` serves S3.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where the S3 listener listens. Default `127.0.0.1:9000`; when it is not set and the main
    /// `listen` has port 0 (an ephemeral server, as tests start), a free port too. `p8fs serve`
    /// prints the address bound (`p8fs S3 on http://...`). The default address is best effort:
    /// when it is taken, `p8fs serve` warns and runs without S3; a configured one is required.
    /// See [`Config::s3_listen`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The domain of virtual-host-style addressing: `bucket.<domain>` names a bucket. Without
    /// it (the default) requests are path-style (`/<bucket>/<key>`), as most clients send when
    /// given an endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The S3 listener's URL as clients reach it (e.g. `https://s3.example.com` behind a
    /// proxy), used in presigned download URLs (GraphQL's `downloadUrl`). Default
    /// `http://<the address bound>`. See [`Config::s3_public_url`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Most S3 requests handled at once; more wait for a slot (within `request_timeout`).
    #[serde(default = "default_s3_concurrency")]
    pub concurrency: usize,
    /// Longest one S3 request may take, body included (an upload of 5 GiB at 2 MB/s takes
    /// 45 minutes); then it fails with `RequestTimeout`.
    #[serde(default = "default_s3_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Multipart uploads, and blobs of uploads that never finished, older than this are
    /// removed by the object reaper.
    #[serde(default = "default_abandoned_upload_age", with = "humantime_serde")]
    pub abandoned_upload_age: Duration,
    /// How long the bytes of an overwritten or deleted object stay readable for downloads
    /// already under way, before the object reaper removes them.
    #[serde(default = "default_freed_grace", with = "humantime_serde")]
    pub freed_grace: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            domain: None,
            public_url: None,
            concurrency: default_s3_concurrency(),
            request_timeout: default_s3_request_timeout(),
            abandoned_upload_age: default_abandoned_upload_age(),
            freed_grace: default_freed_grace(),
        }
    }
}

fn default_s3_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9000))
}
fn default_s3_concurrency() -> usize {
    256
}
fn default_s3_request_timeout() -> Duration {
    Duration::from_secs(3600)
}
fn default_abandoned_upload_age() -> Duration {
    Duration::from_secs(7 * 86_400)
}
fn default_freed_grace() -> Duration {
    Duration::from_secs(3600)
}

/// Which backend stores the data; `provider` picks the variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Embedded RocksDB in `<data_dir>/rocksdb`.
    Rocksdb {
        /// Fsync the write-ahead log on every write (survives power loss, slower).
        #[serde(default)]
        sync_writes: bool,
    },
    /// PostgreSQL with pgvector.
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: Secret,
    },
    /// TiDB (MySQL protocol).
    Tidb {
        /// `mysql://user:password@host:port/database`.
        url: Secret,
    },
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Rocksdb { sync_writes: false }
    }
}

/// Encryption at rest (`[encryption]`): every backend behind the sealing layer, with master keys
/// from `key_file` or `P8FS_MASTER_KEY`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Whether what p8fs stores is encrypted (default true). A store encrypted once refuses to
    /// open with it off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The master key file (default `master.keys` beside the signing keys), created owner-only
    /// on first start; ignored when `master_key` is set.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The master keys themselves instead of a file (`P8FS_MASTER_KEY`): base64url of 32 bytes
    /// each, comma separated, the current one first. Every node of a shared database needs the
    /// same keys.
    #[serde(default)]
    pub master_key: Option<Secret>,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key_file: None,
            master_key: None,
        }
    }
}

/// Access-token settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` of tokens this server issues and accepts, and the base URL of its OAuth
    /// endpoints and pages as clients reach them. Default: `http://<listen>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The `aud` of tokens this server issues and accepts.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (at most 5 minutes).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: default_audience(),
            leeway: default_leeway(),
        }
    }
}

/// Request and connection limits (`[limits]`). A request goes through three bounded phases:
/// its head arrives within `header_read_timeout`, its body within `body_read_timeout` (read in
/// full before the request takes one of the `concurrency` slots, so a slow body never holds
/// one), then it waits for a slot and is handled within `request_timeout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    #[serde(default = "default_body_bytes")]
    pub body_bytes: usize,
    /// Most requests handled at once; more wait (within `request_timeout`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest a request may wait for a slot and be handled before it gets 408.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest the request head (request line and headers) may take to arrive, counted from
    /// when the connection is ready for it (opened, or the previous response written); then
    /// the connection is closed. Since the clock runs while a keep-alive connection waits for
    /// its next request, this also bounds idle connections.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest the whole request body may take to arrive before the request gets 408.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long (keep-alive); at
    /// most `header_read_timeout`, which bounds idle connections too.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most bytes of request bodies held in memory by all requests together; a body that does
    /// not fit waits for room (within `body_read_timeout`).
    #[serde(default = "default_body_buffer_bytes")]
    pub body_buffer_bytes: usize,
    /// Most open connections; more are closed as soon as they are accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most open connections from one client IP address; more are closed when accepted.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// Networks of the reverse proxies in front of this node (`p8fs edge`, nginx), such as
    /// `["10.0.0.0/8", "::1/128"]` (also `P8FS_TRUSTED_PROXIES`, comma-separated). On a
    /// connection from one of them, a request's client is the rightmost `X-Forwarded-For`
    /// address that is not itself a trusted proxy, so per-address rate limits and logs see the
    /// real client. From any other peer `X-Forwarded-For` is ignored. Default: none.
    #[serde(default, deserialize_with = "proxy_networks")]
    pub trusted_proxies: Vec<ProxyNetwork>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: default_body_bytes(),
            concurrency: default_concurrency(),
            request_timeout: default_request_timeout(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            idle_timeout: default_idle_timeout(),
            body_buffer_bytes: default_body_buffer_bytes(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// An IP network, `address/prefix` (a bare address is the network of that one address).
/// IPv4-mapped IPv6 networks and addresses compare as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNetwork {
    /// The network address (host bits cleared).
    address: IpAddr,
    /// Leading bits that must match: at most 32 for IPv4, 128 for IPv6.
    prefix: u8,
}

impl ProxyNetwork {
    /// Whether `address` is in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                u32::from(address) & v4_mask(self.prefix) == u32::from(network)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                u128::from(address) & v6_mask(self.prefix) == u128::from(network)
            }
            _ => false,
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl std::str::FromStr for ProxyNetwork {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "limits.trusted_proxies: `{text}` is not an IP network (address/prefix, such as \
                 10.0.0.0/8 or ::1/128)"
            )
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        let bits: u8 = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            // Digits only: `u8::from_str` would take a leading `+`.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(invalid)?,
            Some(_) => return Err(invalid()),
            None => bits,
        };
        Ok(match address {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Self::masked(IpAddr::V4(v4), prefix - 96),
                _ => Self::masked(address, prefix),
            },
            IpAddr::V4(_) => Self::masked(address, prefix),
        })
    }
}

impl ProxyNetwork {
    fn masked(address: IpAddr, prefix: u8) -> Self {
        let address = match address {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & v4_mask(prefix)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & v6_mask(prefix)).into()),
        };
        Self { address, prefix }
    }
}

impl fmt::Display for ProxyNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Serialize for ProxyNetwork {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `limits.trusted_proxies`: a list of networks, or one comma-separated string (as
/// `P8FS_TRUSTED_PROXIES` gives it).
fn proxy_networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ProxyNetwork>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Networks {
        List(Vec<String>),
        Text(String),
    }
    use serde::de::Error as _;
    let texts = match Networks::deserialize(deserializer).map_err(|_| {
        D::Error::custom(
            "limits.trusted_proxies: must be a list of IP networks such as [\"10.0.0.0/8\"]",
        )
    })? {
        Networks::List(list) => list,
        Networks::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    texts
        .iter()
        .map(|text| text.parse().map_err(D::Error::custom))
        .collect()
}

/// Where and to whom `/metrics` is served (`[metrics]`). By default it is served on the main
/// listener only when that listener is a loopback address.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` on this address instead of the main listener (which then has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <access token>` with the `admin` scope on `/metrics`.
    #[serde(default)]
    pub require_admin_token: bool,
}

impl MetricsConfig {
    /// Whether the main listener at `listen` serves `/metrics`: not when it has its own
    /// address; otherwise only on a loopback address, unless a token is required.
    pub fn on_main_listener(&self, listen: SocketAddr) -> bool {
        self.listen.is_none() && (listen.ip().is_loopback() || self.require_admin_token)
    }
}

/// Log format and level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `p8fs=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The OAuth 2.1 authorization server (`[oauth]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSection {
    /// Lifetime of issued access tokens.
    #[serde(default = "default_access_token_ttl", with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// How long an unused refresh token stays valid.
    #[serde(default = "default_refresh_token_ttl", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// How long a device code waits for approval.
    #[serde(default = "default_device_code_ttl", with = "humantime_serde")]
    pub device_code_ttl: Duration,
    /// The polling interval devices are told to keep.
    #[serde(default = "default_device_poll_interval", with = "humantime_serde")]
    pub device_poll_interval: Duration,
    /// Lifetime of an authorization code (at most 60 s).
    #[serde(default = "default_authorization_code_ttl", with = "humantime_serde")]
    pub authorization_code_ttl: Duration,
    /// How long a browser sign-in lasts.
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Whether `/oauth/register` accepts public clients (RFC 7591).
    #[serde(default = "default_true")]
    pub dynamic_registration: bool,
    /// Development only: whether client metadata documents (a `client_id` that is a URL) may
    /// be fetched over `http` and from loopback or private addresses. Off, only `https` URLs of
    /// public hosts are fetched.
    #[serde(default)]
    pub allow_loopback_client_metadata: bool,
    /// A PEM file of certificates trusted for fetching client metadata documents besides the
    /// public roots (an organisation's private CA). Read at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metadata_ca_file: Option<PathBuf>,
}

impl Default for OAuthSection {
    fn default() -> Self {
        Self {
            access_token_ttl: default_access_token_ttl(),
            refresh_token_ttl: default_refresh_token_ttl(),
            device_code_ttl: default_device_code_ttl(),
            device_poll_interval: default_device_poll_interval(),
            authorization_code_ttl: default_authorization_code_ttl(),
            session_ttl: default_session_ttl(),
            dynamic_registration: true,
            allow_loopback_client_metadata: false,
            client_metadata_ca_file: None,
        }
    }
}

fn default_access_token_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_refresh_token_ttl() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_device_code_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_device_poll_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_authorization_code_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}
fn default_true() -> bool {
    true
}

/// Background maintenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// How often expired records are physically removed.
    #[serde(default = "default_purge_interval", with = "humantime_serde")]
    pub purge_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            purge_interval: default_purge_interval(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./p8fs-data")
}
fn default_audience() -> String {
    "p8fs".to_owned()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_body_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_concurrency() -> usize {
    1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_read_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_buffer_bytes() -> usize {
    256 * 1024 * 1024
}
fn default_max_connections() -> usize {
    2048
}
fn default_max_connections_per_address() -> usize {
    128
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_purge_interval() -> Duration {
    Duration::from_secs(60)
}

/// A secret (a database URL with a password): printed as `****`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("****")
    }
}

/// Shortest `limits.*_timeout`.
pub const MIN_LIMIT_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest `limits.*_timeout`.
pub const MAX_LIMIT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest `s3.request_timeout` (a day).
pub const MAX_S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Largest `limits.body_bytes` (1 GiB).
pub const MAX_BODY_BYTES: usize = 1 << 30;
/// Largest `limits.body_buffer_bytes` (64 GiB).
pub const MAX_BODY_BUFFER_BYTES: usize = 64 << 30;
/// Largest `limits.concurrency` and `limits.max_connections`.
pub const MAX_COUNT_LIMIT: usize = 1_000_000;

/// Environment variables that override file keys.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("P8FS_LISTEN", &["listen"]),
    ("P8FS_DATA_DIR", &["data_dir"]),
    ("P8FS_STORAGE_PROVIDER", &["storage", "provider"]),
    ("P8FS_STORAGE_URL", &["storage", "url"]),
    ("P8FS_ENCRYPTION_ENABLED", &["encryption", "enabled"]),
    ("P8FS_MASTER_KEY", &["encryption", "master_key"]),
    ("P8FS_AUTH_ISSUER", &["auth", "issuer"]),
    ("P8FS_AUTH_AUDIENCE", &["auth", "audience"]),
    (
        "P8FS_OAUTH_DYNAMIC_REGISTRATION",
        &["oauth", "dynamic_registration"],
    ),
    ("P8FS_LOG_FORMAT", &["log", "format"]),
    ("P8FS_LOG_LEVEL", &["log", "level"]),
    ("P8FS_METRICS_LISTEN", &["metrics", "listen"]),
    ("P8FS_S3_LISTEN", &["s3", "listen"]),
    ("P8FS_S3_ENABLED", &["s3", "enabled"]),
    ("P8FS_S3_DOMAIN", &["s3", "domain"]),
    ("P8FS_S3_PUBLIC_URL", &["s3", "public_url"]),
    ("P8FS_EMBEDDINGS_PROVIDER", &["embeddings", "provider"]),
    ("P8FS_EMBEDDINGS_MODEL_DIR", &["embeddings", "model_dir"]),
    ("P8FS_EMBEDDINGS_URL", &["embeddings", "url"]),
    ("P8FS_EMBEDDINGS_MODEL", &["embeddings", "model"]),
    ("P8FS_EMBEDDINGS_API_KEY", &["embeddings", "api_key"]),
    ("P8FS_GRAPHQL_INTROSPECTION", &["graphql", "introspection"]),
    ("P8FS_MCP_ENABLED", &["mcp", "enabled"]),
    ("P8FS_TRUSTED_PROXIES", &["limits", "trusted_proxies"]),
    (
        "P8FS_METRICS_REQUIRE_ADMIN_TOKEN",
        &["metrics", "require_admin_token"],
    ),
];

/// Prefixes of variables that belong to tests and benchmarks, not to the server.
const FOREIGN_PREFIXES: &[&str] = &["P8FS_TEST_", "P8FS_BENCH_", "P8FS_PROPTEST_"];
/// Variables the command line reads itself: the configuration file's path, the credentials
/// file of `p8fs login`, and the access token of `p8fs ingest` and `p8fs search`.
const COMMAND_LINE_VARIABLES: &[&str] = &["P8FS_CONFIG", "P8FS_CREDENTIALS", "P8FS_TOKEN"];

/// Flags given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    /// `--s3-listen`: the S3 listener's address.
    pub s3_listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the file (if any), applies `P8FS_*` variables from `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, String> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if !name.starts_with("P8FS_")
                || FOREIGN_PREFIXES.iter().any(|p| name.starts_with(p))
                || COMMAND_LINE_VARIABLES.contains(&name.as_str())
            {
                continue;
            }
            let Some((_, path)) = ENV_KEYS.iter().find(|(known, _)| *known == name) else {
                let known: Vec<&str> = ENV_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "unknown environment variable {name}; known: {}",
                    known.join(", ")
                ));
            };
            set(&mut table, path, value);
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("configuration: {}", e.message()))?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(listen) = overrides.s3_listen {
            config.s3.listen = Some(listen);
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.limits.body_bytes < 1024 || self.limits.body_bytes > MAX_BODY_BYTES {
            return Err(format!(
                "limits.body_bytes: must be between 1024 and {MAX_BODY_BYTES}"
            ));
        }
        if self.limits.concurrency == 0 || self.limits.concurrency > MAX_COUNT_LIMIT {
            return Err(format!(
                "limits.concurrency: must be between 1 and {MAX_COUNT_LIMIT}"
            ));
        }
        let limits = &self.limits;
        for (key, value) in [
            ("limits.request_timeout", limits.request_timeout),
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.body_read_timeout", limits.body_read_timeout),
            ("limits.idle_timeout", limits.idle_timeout),
        ] {
            if value < MIN_LIMIT_TIMEOUT || value > MAX_LIMIT_TIMEOUT {
                return Err(format!(
                    "{key}: must be between {} and {}",
                    humantime::format_duration(MIN_LIMIT_TIMEOUT),
                    humantime::format_duration(MAX_LIMIT_TIMEOUT)
                ));
            }
        }
        if limits.idle_timeout > limits.header_read_timeout {
            return Err(
                "limits.idle_timeout: must be at most limits.header_read_timeout (whose clock \
                 also runs on idle connections)"
                    .into(),
            );
        }
        if limits.body_buffer_bytes < self.limits.body_bytes
            || limits.body_buffer_bytes > MAX_BODY_BUFFER_BYTES
        {
            return Err(format!(
                "limits.body_buffer_bytes: must be between limits.body_bytes and \
                 {MAX_BODY_BUFFER_BYTES}"
            ));
        }
        if limits.max_connections == 0 || limits.max_connections > MAX_COUNT_LIMIT {
            return Err(format!(
                "limits.max_connections: must be between 1 and {MAX_COUNT_LIMIT}"
            ));
        }
        if limits.max_connections_per_address == 0
            || limits.max_connections_per_address > limits.max_connections
        {
            return Err(
                "limits.max_connections_per_address: must be between 1 and limits.max_connections"
                    .into(),
            );
        }
        if self
            .metrics
            .listen
            .is_some_and(|metrics| metrics == self.listen && metrics.port() != 0)
        {
            return Err("metrics.listen: must differ from listen".into());
        }
        self.validate_s3()?;
        if let Some(file) = &self.oauth.client_metadata_ca_file
            && let Err(e) = std::fs::read_to_string(file)
        {
            return Err(format!(
                "oauth.client_metadata_ca_file: cannot read {}: {e}",
                file.display()
            ));
        }
        if !(1024..=64 << 20).contains(&self.mcp.max_body_bytes) {
            return Err("mcp.max_body_bytes: must be between 1024 and 67108864".into());
        }
        self.embeddings.validate()?;
        if let Some(issuer) = &self.auth.issuer {
            let scheme_ok = issuer.starts_with("https://") || issuer.starts_with("http://");
            if !scheme_ok || issuer.ends_with('/') || issuer.contains(['?', '#']) {
                return Err(
                    "auth.issuer: must be an http(s) URL without query, fragment or trailing '/'"
                        .into(),
                );
            }
        }
        if self.auth.audience.is_empty() {
            return Err("auth.audience: must not be empty".into());
        }
        if self.auth.leeway > p8fs_auth::MAX_LEEWAY {
            return Err(format!(
                "auth.leeway: must be at most {}s",
                p8fs_auth::MAX_LEEWAY.as_secs()
            ));
        }
        let oauth = &self.oauth;
        for (key, value) in [
            ("oauth.access_token_ttl", oauth.access_token_ttl),
            ("oauth.refresh_token_ttl", oauth.refresh_token_ttl),
            ("oauth.device_code_ttl", oauth.device_code_ttl),
            ("oauth.device_poll_interval", oauth.device_poll_interval),
            ("oauth.authorization_code_ttl", oauth.authorization_code_ttl),
            ("oauth.session_ttl", oauth.session_ttl),
        ] {
            if value < Duration::from_secs(1) {
                return Err(format!("{key}: must be at least 1s"));
            }
        }
        if oauth.authorization_code_ttl > Duration::from_secs(60) {
            return Err("oauth.authorization_code_ttl: must be at most 60s".into());
        }
        self.validate_events()
    }

    fn validate_events(&self) -> Result<(), String> {
        let events = &self.events;
        if events.retention < Duration::from_secs(60)
            || events.retention > Duration::from_secs(10 * 366 * 24 * 3600)
        {
            return Err("events.retention: must be between 1m and 10 years".into());
        }
        if events.poll_interval < Duration::from_millis(10)
            || events.poll_interval > Duration::from_secs(10)
        {
            return Err("events.poll_interval: must be between 10ms and 10s".into());
        }
        match &events.nats {
            Some(nats) => nats.validate(),
            None => Ok(()),
        }
    }

    fn validate_s3(&self) -> Result<(), String> {
        let s3 = &self.s3;
        if !s3.enabled {
            return Ok(());
        }
        let listen = self.s3_listen();
        let taken = |other: SocketAddr| other == listen && other.port() != 0;
        if taken(self.listen) || self.metrics.listen.is_some_and(taken) {
            return Err("s3.listen: must differ from listen and metrics.listen".into());
        }
        if let Some(url) = &s3.public_url
            && !is_base_url(url)
        {
            return Err(
                "s3.public_url: must be an http(s) URL without path, query, fragment or trailing '/'"
                    .into(),
            );
        }
        if s3.concurrency == 0 || s3.concurrency > MAX_COUNT_LIMIT {
            return Err(format!(
                "s3.concurrency: must be between 1 and {MAX_COUNT_LIMIT}"
            ));
        }
        if s3.request_timeout < MIN_LIMIT_TIMEOUT || s3.request_timeout > MAX_S3_REQUEST_TIMEOUT {
            return Err(format!(
                "s3.request_timeout: must be between {} and {}",
                humantime::format_duration(MIN_LIMIT_TIMEOUT),
                humantime::format_duration(MAX_S3_REQUEST_TIMEOUT)
            ));
        }
        if s3.abandoned_upload_age < Duration::from_secs(60) {
            return Err("s3.abandoned_upload_age: must be at least 1m".into());
        }
        if s3.abandoned_upload_age <= s3.request_timeout {
            return Err(
                "s3.abandoned_upload_age: must be longer than s3.request_timeout (an upload \
                 still being sent must not be reaped)"
                    .into(),
            );
        }
        if s3.freed_grace < Duration::from_secs(1) {
            return Err("s3.freed_grace: must be at least 1s".into());
        }
        if let Some(domain) = &s3.domain {
            let valid = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(
                    "s3.domain: must be a domain name such as s3.example.com (no scheme, port \
                     or path)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The address of the S3 listener: `s3.listen`, else `127.0.0.1:9000`, except that a main
    /// listener on port 0 makes an unset `s3.listen` a free port of the same address.
    pub fn s3_listen(&self) -> SocketAddr {
        match self.s3.listen {
            Some(listen) => listen,
            None if self.listen.port() == 0 => SocketAddr::new(self.listen.ip(), 0),
            None => default_s3_listen(),
        }
    }

    /// Where clients reach the S3 listener, for presigned URLs: `s3.public_url`, or
    /// `http://<s3 listen address>` once that address is known (`p8fs serve` records the
    /// address it bound, and turns `s3.enabled` off when the default address was taken);
    /// `None` when S3 is not served or its address is not known yet.
    pub fn s3_public_url(&self) -> Option<String> {
        if !self.s3.enabled {
            return None;
        }
        if let Some(url) = &self.s3.public_url {
            return Some(url.clone());
        }
        let listen = self.s3_listen();
        (listen.port() != 0).then(|| format!("http://{listen}"))
    }

    /// The MCP endpoint's resource URI (its tokens' audience): `<issuer>/mcp`.
    pub fn mcp_resource(&self) -> String {
        format!("{}{}", self.issuer(), p8fs_mcp::MCP_PATH)
    }

    /// The `Host` values `/mcp` admits: `mcp.allowed_hosts`, or the issuer's host and the
    /// loopback names; empty (any) for `["*"]`.
    pub fn mcp_allowed_hosts(&self) -> Vec<String> {
        if self.mcp.allowed_hosts.iter().any(|h| h == "*") {
            return Vec::new();
        }
        if !self.mcp.allowed_hosts.is_empty() {
            return self.mcp.allowed_hosts.clone();
        }
        let issuer = self.issuer();
        let authority = issuer
            .split_once("://")
            .map_or(issuer.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !authority.is_empty() {
            hosts.push(authority);
        }
        hosts
    }

    /// The issuer URL: `auth.issuer`, or `http://<listen>` when it is not set.
    pub fn issuer(&self) -> String {
        self.auth
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// Whether `url` is `http(s)://host[:port]` and nothing more.
fn is_base_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#', '@', ' ']))
}

/// Sets `path` in `table` to `value`: `true` and `false` become booleans, everything else stays
/// text (a text key set to `true` is then refused with an error naming the key).
fn set(table: &mut toml::Table, path: &[&str], value: String) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for parent in parents {
        let entry = current
            .entry((*parent).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let Some(next) = entry.as_table_mut() else {
            return;
        };
        current = next;
    }
    let value = match value.as_str() {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(value),
    };
    current.insert((*last).to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(config.storage, StorageConfig::Rocksdb { .. }));
    }

    #[test]
    fn environment_wins_over_the_file_and_flags_win_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9300\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("P8FS_LOG_FORMAT", "text")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9300");
        assert_eq!(config.log.format, LogFormat::Text);
        let overrides = Overrides {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(
            Some(&file),
            env(&[("P8FS_LISTEN", "127.0.0.1:8000")]),
            &overrides,
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn a_leeway_above_five_minutes_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(&file, "[auth]\nleeway = \"5m\"\n").unwrap();
        let config = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.auth.leeway, Duration::from_secs(300));
        std::fs::write(&file, "[auth]\nleeway = \"301s\"\n").unwrap();
        let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(error.contains("auth.leeway"), "{error}");
        assert!(error.contains("300s"), "{error}");
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(&file, "[limits]\nbody_byte = 10\n").unwrap();
        let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(error.contains("body_byte"), "{error}");
        let error = Config::load(
            None,
            env(&[("P8FS_STORAGE_PROVIDER", "mongo")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.contains("mongo") && error.contains("rocksdb"),
            "{error}"
        );
        let error = Config::load(
            None,
            env(&[("P8FS_LISTEN_ADDR", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.contains("P8FS_LISTEN_ADDR"), "{error}");
        for variable in [
            "P8FS_TEST_POSTGRES_URL",
            "P8FS_CONFIG",
            "P8FS_CREDENTIALS",
            "P8FS_TOKEN",
        ] {
            assert!(
                Config::load(None, env(&[(variable, "x")]), &Overrides::default()).is_ok(),
                "{variable}"
            );
        }
    }

    #[test]
    fn connection_limits_are_validated_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        for (text, key) in [
            ("header_read_timeout = \"0s\"", "limits.header_read_timeout"),
            ("body_read_timeout = \"2h\"", "limits.body_read_timeout"),
            ("idle_timeout = \"50ms\"", "limits.idle_timeout"),
            (
                "header_read_timeout = \"5s\"\nidle_timeout = \"6s\"",
                "limits.idle_timeout",
            ),
            ("max_connections = 0", "limits.max_connections"),
            (
                "max_connections = 10\nmax_connections_per_address = 11",
                "limits.max_connections_per_address",
            ),
            ("concurrency = 2000000", "limits.concurrency"),
            ("body_bytes = 2000000000", "limits.body_bytes"),
            (
                "body_bytes = 4096\nbody_buffer_bytes = 4095",
                "limits.body_buffer_bytes",
            ),
        ] {
            std::fs::write(&file, format!("[limits]\n{text}\n")).unwrap();
            let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert!(config.limits.idle_timeout <= config.limits.header_read_timeout);
        assert!(config.limits.max_connections_per_address <= config.limits.max_connections);
    }

    #[test]
    fn trusted_proxies_are_networks_and_errors_name_the_key() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert!(config.limits.trusted_proxies.is_empty(), "none by default");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(
            &file,
            "[limits]\ntrusted_proxies = [\"10.1.2.3/8\", \"192.0.2.7\", \"::1/128\", \
             \"2001:db8::/32\", \"::ffff:172.16.0.0/108\"]\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        let shown: Vec<String> = config
            .limits
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "10.0.0.0/8",
                "192.0.2.7/32",
                "::1/128",
                "2001:db8::/32",
                "172.16.0.0/12"
            ],
            "host bits cleared, a bare address is one address, IPv4-mapped is IPv4"
        );
        let trusted = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            config.limits.trusted_proxies.iter().any(|n| n.contains(ip))
        };
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "::ffff:10.9.9.9",
            "192.0.2.7",
            "::1",
            "2001:db8:ffff::1",
            "172.31.0.1",
        ] {
            assert!(trusted(ip), "{ip}");
        }
        for ip in [
            "11.0.0.1",
            "192.0.2.8",
            "::2",
            "2001:db9::1",
            "172.32.0.1",
            "127.0.0.1",
        ] {
            assert!(!trusted(ip), "{ip}");
        }
        let text = toml::to_string(&config).unwrap();
        assert!(text.contains("\"10.0.0.0/8\""), "{text}");
        // The environment gives one comma-separated list, and wins over the file.
        let config = Config::load(
            Some(&file),
            env(&[("P8FS_TRUSTED_PROXIES", " 127.0.0.1/32 , ::1/128,")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.limits.trusted_proxies.len(), 2);
        let config = Config::load(
            None,
            env(&[("P8FS_TRUSTED_PROXIES", "")]),
            &Overrides::default(),
        )
        .unwrap();
        assert!(config.limits.trusted_proxies.is_empty());
        let any: ProxyNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("203.0.113.9".parse().unwrap()));
        assert!(!any.contains("2001:db8::1".parse().unwrap()));
        for bad in [
            "[\"10.0.0.0/33\"]",
            "[\"::1/129\"]",
            "[\"10.0.0/8\"]",
            "[\"10.0.0.0/\"]",
            "[\"10.0.0.0/+8\"]",
            "[\"10.0.0.0/8/8\"]",
            "[\"proxy.example.com\"]",
            "[\"\"]",
            "[42]",
            "true",
        ] {
            std::fs::write(&file, format!("[limits]\ntrusted_proxies = {bad}\n")).unwrap();
            let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
            assert!(error.contains("limits.trusted_proxies"), "{bad}: {error}");
        }
        let error = Config::load(
            None,
            env(&[("P8FS_TRUSTED_PROXIES", "10.0.0.0/8,nonsense")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.contains("limits.trusted_proxies") && error.contains("nonsense"),
            "{error}"
        );
    }

    #[test]
    fn metrics_stay_off_a_public_listener_unless_configured() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ipv6_loopback: SocketAddr = "[::1]:8080".parse().unwrap();
        let open = MetricsConfig::default();
        assert!(open.on_main_listener(loopback));
        assert!(open.on_main_listener(ipv6_loopback));
        assert!(!open.on_main_listener(public));
        let token = MetricsConfig {
            require_admin_token: true,
            ..MetricsConfig::default()
        };
        assert!(token.on_main_listener(public));
        let separate = MetricsConfig {
            listen: Some(loopback),
            require_admin_token: false,
        };
        assert!(!separate.on_main_listener(loopback));
        let error = Config::load(
            None,
            env(&[
                ("P8FS_LISTEN", "127.0.0.1:9000"),
                ("P8FS_METRICS_LISTEN", "127.0.0.1:9000"),
            ]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.contains("metrics.listen"), "{error}");
    }

    #[test]
    fn the_s3_listener_is_configured_and_checked() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert!(config.s3.enabled);
        assert_eq!(config.s3_listen().to_string(), "127.0.0.1:9000");
        assert_eq!(config.s3.request_timeout, Duration::from_secs(3600));
        let config = Config::load(
            None,
            env(&[("P8FS_S3_LISTEN", "127.0.0.1:9100")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.s3_listen().to_string(), "127.0.0.1:9100");
        let flag = Overrides {
            s3_listen: Some("127.0.0.1:9200".parse().unwrap()),
            ..Overrides::default()
        };
        let config =
            Config::load(None, env(&[("P8FS_S3_LISTEN", "127.0.0.1:9100")]), &flag).unwrap();
        assert_eq!(config.s3_listen().to_string(), "127.0.0.1:9200");
        let ephemeral = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(None, env(&[]), &ephemeral).unwrap();
        assert_eq!(config.s3_listen().to_string(), "127.0.0.1:0");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        for (text, key) in [
            ("listen = \"127.0.0.1:8080\"", "s3.listen"),
            ("domain = \"http://s3.example.com\"", "s3.domain"),
            ("request_timeout = \"2d\"", "s3.request_timeout"),
            ("abandoned_upload_age = \"30m\"", "s3.abandoned_upload_age"),
            ("concurrency = 0", "s3.concurrency"),
        ] {
            std::fs::write(&file, format!("[s3]\n{text}\n")).unwrap();
            let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
        std::fs::write(
            &file,
            "[s3]\nenabled = false\nlisten = \"127.0.0.1:8080\"\n",
        )
        .unwrap();
        assert!(Config::load(Some(&file), env(&[]), &Overrides::default()).is_ok());
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config::load(
            None,
            env(&[
                ("P8FS_STORAGE_PROVIDER", "postgres"),
                ("P8FS_STORAGE_URL", "postgres://u:hunter2@db/p8fs"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let shown = format!("{config:?}") + &toml::to_string(&config).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
