//! p8fs-mcp: the MCP front-end. AI assistants reach the vault through the Model Context
//! Protocol: tools to remember, recall, forget and link memories, browse files and records,
//! search vectors and walk the graph (`tools`), served over streamable HTTP at `/mcp` on the
//! main listener by the official Rust SDK (`rmcp`), for both protocol eras in use: 2026-07-28
//! (stateless, `server/discover`) and the 2025-06-18 / 2025-11-25 revisions (`initialize` and
//! `Mcp-Session-Id`, sessions restorable on any gateway node from the shared store, `session`).
//!
//! `/mcp` is an OAuth protected resource (RFC 9728, `auth`): its metadata at
//! `/.well-known/oauth-protected-resource/mcp` (and without the suffix) names our authorization
//! server; a request without a valid token gets `401` with a `WWW-Authenticate` challenge
//! pointing there; a tool call without the tool's scope gets `403 insufficient_scope` naming
//! the scope needed.
//!
//! Invariants:
//! - the tenant comes from the access token only; a session is bound to the subject and tenant
//!   that opened it and refused to anyone else;
//! - every tool checks its scope (one table, [`tools::scope_of`], read by the HTTP guard and by
//!   the tools);
//! - a tool's failure, bad arguments included, is a result with `isError` and a message naming
//!   the field, never a protocol error.

mod auth;
mod session;
pub mod tools;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use p8fs_auth::Verifier;
use p8fs_core::{Backend, ChangeSignal, Clock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use tools::Vault;

/// The path of the endpoint on the main listener.
pub const MCP_PATH: &str = "/mcp";
/// The largest JSON-RPC message accepted (a `remember` of a long text fits).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the tools work on.
#[derive(Clone)]
pub struct McpState {
    pub backend: Arc<dyn Backend>,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    /// Wakes resource subscriptions when their tenant's log grows.
    pub changes: Arc<dyn ChangeSignal>,
    /// Memories and search by meaning; `None` when embeddings are off (the memory tools then
    /// answer that they are unavailable).
    pub memory: Option<Arc<p8fs_memory::Memory>>,
}

/// How the endpoint is exposed.
#[derive(Clone, Debug)]
pub struct McpSettings {
    /// The endpoint's resource URI (RFC 8707, RFC 9728), `<issuer>/mcp`: the audience its
    /// tokens must carry.
    pub resource: String,
    /// The authorization server that issues its tokens (our issuer URL).
    pub issuer: String,
    /// `Host` values admitted (DNS-rebinding protection); empty admits any.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values admitted (`scheme://host:port`, `:*` for any port); a request
    /// carrying another `Origin` is refused, one without (every non-browser client) passes.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

/// `/mcp` and the protected resource metadata, to merge into the main router.
pub fn router(state: McpState, settings: McpSettings) -> Router {
    let settings = Arc::new(settings);
    let guard = Arc::new(auth::Guard::new(&state, settings.clone()));
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(settings.allowed_hosts.clone())
        .with_allowed_origins(settings.allowed_origins.clone())
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_json_response(true);
    if settings.allowed_hosts.is_empty() {
        config = config.disable_allowed_hosts();
    }
    let mut config = config.enforce_origin_validation();
    config.session_store = Some(Arc::new(session::StoredSessions::new(
        state.backend.clone(),
    )));
    let vault = Vault::new(state.clone());
    let service = StreamableHttpService::new(
        // One server per session (or stateless request): its resource subscriptions are its own.
        move || Ok(vault.for_session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let metadata = get(auth::resource_metadata).with_state(settings.clone());
    Router::new()
        .nest_service(MCP_PATH, service)
        .layer(axum::middleware::from_fn_with_state(guard, auth::guard))
        .route("/.well-known/oauth-protected-resource", metadata.clone())
        .route("/.well-known/oauth-protected-resource/mcp", metadata)
}
