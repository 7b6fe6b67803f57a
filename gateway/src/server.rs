//! `p8fs serve`: assembles the front-ends over the configured backend and serves them until
//! SIGTERM or SIGINT, finishing requests in flight.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use p8fs_auth::oauth::{OAuthConfig, OAuthServer};
use p8fs_auth::s3::S3Credentials;
use p8fs_auth::{Issuer, KeyRing, TokenConfig, Verifier};
use p8fs_core::{Backend, Clock, Key, KvStore, SystemClock, TenantId};
use p8fs_rest::{RestServices, RestState};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::admin::{self, Admin};
use crate::changes::ChangeHub;
use crate::config::{Config, LogFormat};
use crate::connections::{self, RequestLimits};
use crate::metered::Metered;

/// The tenant `/readyz` reads from; reserved for the server itself.
const SYSTEM_TENANT: &str = "sys-health";

/// Everything a running server holds.
#[derive(Clone)]
pub struct Services {
    pub backend: Arc<dyn Backend>,
    pub keys: Arc<KeyRing>,
    pub verifier: Arc<Verifier>,
    pub oauth: Arc<OAuthServer>,
    pub admin: Arc<Admin>,
    /// S3 access keys and temporary credentials.
    pub s3: S3Credentials,
    pub clock: Arc<dyn Clock>,
    /// Wakes change followers (SSE streams) when their tenant's log grows.
    pub changes: Arc<ChangeHub>,
    /// Memories and search by meaning; `None` when embeddings are off.
    pub memory: Option<Arc<p8fs_memory::Memory>>,
}

/// Creates the data directory owner-only (0700) if it does not exist, and refuses one that
/// group or others can access: it holds the signing keys, the store and the admin socket.
pub fn private_data_dir(config: &Config) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &config.data_dir;
    match std::fs::metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => {
            Err(format!("data_dir {} is not a directory", dir.display()))
        }
        Ok(metadata) if metadata.permissions().mode() & 0o077 != 0 => Err(format!(
            "data_dir {} is accessible by group or others (mode {:o}); it holds signing keys \
             and the store, so make it owner-only: chmod 700 {}",
            dir.display(),
            metadata.permissions().mode() & 0o777,
            dir.display()
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create data_dir {}: {e}", dir.display())),
        Err(e) => Err(format!("cannot read data_dir {}: {e}", dir.display())),
    }
}

/// The signing-key directory inside the data directory.
pub fn keys_dir(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("keys")
}

/// The token settings from the configuration.
pub fn token_config(config: &Config) -> TokenConfig {
    TokenConfig {
        issuer: config.issuer(),
        audience: config.auth.audience.clone(),
        leeway: config.auth.leeway,
    }
}

/// The OAuth settings from the configuration.
pub fn oauth_config(config: &Config) -> OAuthConfig {
    let section = &config.oauth;
    OAuthConfig {
        issuer: config.issuer(),
        access_token_ttl: section.access_token_ttl,
        refresh_token_ttl: section.refresh_token_ttl,
        device_code_ttl: section.device_code_ttl,
        device_poll_interval: section.device_poll_interval,
        authorization_code_ttl: section.authorization_code_ttl,
        session_ttl: section.session_ttl,
        dynamic_registration: section.dynamic_registration,
        // The MCP endpoint's resource URI (RFC 8707), exactly as its protected resource
        // metadata names it.
        resources: vec![format!("{}/mcp", config.issuer())],
        allow_loopback_client_metadata: section.allow_loopback_client_metadata,
        // Checked readable when the configuration loads.
        client_metadata_roots: section
            .client_metadata_ca_file
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file).ok()),
    }
}

/// Opens the backend, the signing keys and the OAuth server (creating its built-in clients).
pub async fn services(config: &Config, clock: Arc<dyn Clock>) -> Result<Services, String> {
    private_data_dir(config)?;
    let written = Arc::new(tokio::sync::Notify::new());
    let (store, encryption) = crate::backend::open_with_encryption(config, clock.clone()).await?;
    let backend: Arc<dyn Backend> = Arc::new(Metered::new(store, written.clone()));
    let changes = ChangeHub::new(backend.clone(), written, config.events.poll_interval);
    changes.spawn();
    let keys = Arc::new(
        KeyRing::load_or_create(&keys_dir(config), clock.clone())
            .map_err(|e| format!("signing keys in {}: {e}", keys_dir(config).display()))?,
    );
    let auth = auth(config, backend.clone(), &keys, clock.clone()).await?;
    let s3 = admin::s3_credentials(
        config,
        backend.clone(),
        auth.verifier.clone(),
        clock.clone(),
    )?;
    let admin = Arc::new(
        Admin::new(keys.clone(), auth.issuer, Some(auth.oauth.clone()))
            .with_s3(s3.clone())
            .with_storage(backend.clone())
            .with_encryption(encryption),
    );
    let memory = crate::memory::build(config, backend.clone(), clock.clone()).await?;
    Ok(Services {
        memory,
        backend,
        keys,
        verifier: auth.verifier,
        oauth: auth.oauth,
        admin,
        s3,
        clock,
        changes,
    })
}

/// The token side of a server over one store.
pub struct Auth {
    pub verifier: Arc<Verifier>,
    pub issuer: Arc<Issuer>,
    pub oauth: Arc<OAuthServer>,
}

/// The verifier (revocations in `store`), the issuer and the OAuth server over `store`, with
/// the built-in OAuth clients created. Shared by `p8fs serve` and admin commands run without a
/// server.
pub async fn auth(
    config: &Config,
    store: Arc<dyn KvStore>,
    keys: &Arc<KeyRing>,
    clock: Arc<dyn Clock>,
) -> Result<Auth, String> {
    let verifier = Arc::new(Verifier::new(
        keys.clone(),
        token_config(config),
        clock.clone(),
        store.clone(),
    ));
    let issuer = Arc::new(Issuer::new(
        keys.clone(),
        token_config(config),
        clock.clone(),
    ));
    let oauth = Arc::new(OAuthServer::new(
        store,
        issuer.clone(),
        verifier.clone(),
        clock,
        oauth_config(config),
    ));
    oauth
        .accounts()
        .ensure_builtin_clients()
        .await
        .map_err(|e| format!("cannot create the built-in OAuth clients: {e}"))?;
    Ok(Auth {
        verifier,
        issuer,
        oauth,
    })
}

/// The whole HTTP application of the main listener. `/metrics` is part of it only as
/// [`crate::config::MetricsConfig::on_main_listener`] says.
pub fn app(services: &Services, config: &Config) -> Router {
    let rest = p8fs_rest::router(RestState::new(RestServices {
        backend: services.backend.clone(),
        verifier: services.verifier.clone(),
        clock: services.clock.clone(),
        changes: services.changes.clone(),
        memory: services.memory.clone(),
    }));
    let graphql = p8fs_graphql::router(
        p8fs_graphql::GraphqlState {
            backend: services.backend.clone(),
            verifier: services.verifier.clone(),
            clock: services.clock.clone(),
            changes: services.changes.clone(),
            memory: services.memory.clone(),
            presigner: config.s3_public_url().map(|endpoint| {
                Arc::new(p8fs_s3::presign::Presigner::new(
                    services.s3.clone(),
                    &endpoint,
                    services.clock.clone(),
                ))
            }),
        },
        config.graphql.clone(),
    );
    crate::metrics::handle();
    let mut router = Router::new();
    if config.mcp.enabled {
        router = router.merge(p8fs_mcp::router(
            p8fs_mcp::McpState {
                backend: services.backend.clone(),
                verifier: services.verifier.clone(),
                clock: services.clock.clone(),
                changes: services.changes.clone(),
                memory: services.memory.clone(),
            },
            p8fs_mcp::McpSettings {
                resource: config.mcp_resource(),
                issuer: config.issuer(),
                allowed_hosts: config.mcp_allowed_hosts(),
                allowed_origins: config.mcp.allowed_origins.clone(),
                max_body_bytes: config.mcp.max_body_bytes,
            },
        ));
    }
    if config.metrics.on_main_listener(config.listen) {
        router = router.merge(metrics_router(services, config));
    }
    let router = router
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready).with_state(services.backend.clone()))
        .route(
            "/.well-known/jwks.json",
            get(jwks)
                .with_state(services.keys.clone())
                .layer(p8fs_auth::oauth::cors()),
        )
        .merge(rest)
        .merge(graphql)
        .merge(p8fs_auth::oauth::router(services.oauth.clone()))
        .route_layer(axum::middleware::from_fn(crate::metrics::track));
    // gRPC (content-type application/grpc*) beside the rest, outside its body buffering.
    crate::grpc::beside(with_limits(router, config), services)
}

/// `/metrics`, behind the admin-token check when `metrics.require_admin_token` is set.
fn metrics_router(services: &Services, config: &Config) -> Router {
    crate::metrics::router(
        config
            .metrics
            .require_admin_token
            .then(|| services.verifier.clone()),
    )
}

/// The layers every listener has, outermost first: a request id, the request span (query
/// redacted), then [`connections::limit_request`] (body deadline, then concurrency slot and
/// handling timeout) around the body-size limit the extractors apply.
fn with_limits(router: Router, config: &Config) -> Router {
    let limits = Arc::new(RequestLimits::new(
        &config.limits,
        config.s3.request_timeout,
    ));
    router
        .layer(DefaultBodyLimit::max(config.limits.body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            connections::limit_request,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeId))
}

/// Request ids for requests that come without one: random-looking version 4 UUIDs, as
/// tower-http's `MakeRequestUuid` makes, without its system call per request
/// ([`p8fs_edge::request_id`]).
#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = p8fs_edge::request_id::RequestId::new();
        axum::http::HeaderValue::from_bytes(id.as_bytes())
            .ok()
            .map(RequestId::new)
    }
}

/// The span of one request: method, path and the names of the query parameters, never their
/// values (a `code`, `user_code`, token or secret can travel in a query string); the client's
/// address, and the trusted proxy's when the client was named by `X-Forwarded-For` (see
/// [`connections::client_of`]).
pub(crate) fn request_span(request: &Request<axum::body::Body>) -> tracing::Span {
    let span = tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        query = %RedactedQuery(request.uri().query()),
        version = ?request.version(),
        client = tracing::field::Empty,
        proxy = tracing::field::Empty,
    );
    let extensions = request.extensions();
    if let Some(axum::extract::ConnectInfo(client)) =
        extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        span.record("client", tracing::field::display(client.ip()));
    }
    if let Some(connections::ProxyPeer(proxy)) = extensions.get::<connections::ProxyPeer>() {
        span.record("proxy", tracing::field::display(proxy.ip()));
    }
    span
}

/// A query string shown as `name=<redacted>&...`; a part without `=` is `<redacted>` too.
struct RedactedQuery<'a>(Option<&'a str>);

impl std::fmt::Display for RedactedQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(query) = self.0 else {
            return Ok(());
        };
        for (index, part) in query.split('&').enumerate() {
            f.write_str(if index == 0 { "?" } else { "&" })?;
            match part.split_once('=') {
                Some((name, _)) => write!(f, "{name}=<redacted>")?,
                None => f.write_str("<redacted>")?,
            }
        }
        Ok(())
    }
}

async fn ready(State(backend): State<Arc<dyn Backend>>) -> impl IntoResponse {
    let probe = async {
        let tenant = TenantId::new(SYSTEM_TENANT)?;
        let key = Key::new("readyz")?;
        backend.get(&tenant, &key).await
    };
    match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness probe failed");
            (StatusCode::SERVICE_UNAVAILABLE, "backend unavailable")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "backend timed out"),
    }
}

async fn jwks(State(keys): State<Arc<KeyRing>>) -> Json<serde_json::Value> {
    Json(keys.jwks())
}

/// Sets up logging as configured.
///
/// s3s logs every S3 error answered (a 404 of a HEAD included) at the error level from its
/// `s3s::ops` module; that module is silenced unless `log.level` names s3s. Failures of p8fs
/// itself are logged by the S3 front-end.
pub fn init_logging(config: &Config) {
    let mut level = config.log.level.clone();
    if !level.contains("s3s") {
        level.push_str(",s3s::ops=off");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s::ops=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Runs the server until a shutdown signal.
pub async fn serve(mut config: Config) -> Result<(), String> {
    init_logging(&config);
    connections::raise_open_file_limit(&config.limits);
    let s3_listen = config.s3_listen();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // With port 0 the issuer URL takes the port actually bound.
    config.listen = address;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = services(&config, clock.clone()).await?;
    admin::listen(&config, services.admin.clone()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let metrics_server = match config.metrics.listen {
        Some(metrics_address) => {
            let listener = tokio::net::TcpListener::bind(metrics_address)
                .await
                .map_err(|e| format!("cannot listen on {metrics_address} (metrics.listen): {e}"))?;
            let bound = listener
                .local_addr()
                .map_err(|e| format!("cannot read the metrics address: {e}"))?;
            eprintln!("p8fs metrics on http://{bound}/metrics");
            let app = with_limits(metrics_router(&services, &config), &config);
            let limits = config.limits.clone();
            let shutdown = until_stopped();
            Some(tokio::spawn(async move {
                connections::serve(listener, app, &limits, shutdown).await;
            }))
        }
        None => None,
    };
    let s3_listener = match config.s3.enabled {
        true => match tokio::net::TcpListener::bind(s3_listen).await {
            Ok(listener) => Some(listener),
            // The default address is best effort (another S3 server may hold port 9000);
            // an address configured in s3.listen is required.
            Err(e) if config.s3.listen.is_none() => {
                tracing::warn!(address = %s3_listen, error = %e, "S3 not served");
                eprintln!(
                    "p8fs S3 not served: cannot listen on {s3_listen} ({e}); set s3.listen \
                     (P8FS_S3_LISTEN) to another address"
                );
                config.s3.enabled = false;
                None
            }
            Err(e) => return Err(format!("cannot listen on {s3_listen} (s3.listen): {e}")),
        },
        false => None,
    };
    let s3_server = match s3_listener {
        Some(listener) => {
            let bound = listener
                .local_addr()
                .map_err(|e| format!("cannot read the S3 address: {e}"))?;
            // Presigned URLs name the address actually bound (port 0 becomes a real port).
            config.s3.listen = Some(bound);
            tracing::info!(address = %bound, "p8fs S3 listening");
            eprintln!("p8fs S3 on http://{bound}");
            let app = crate::s3::app(&services, &config, clock.clone())?;
            let limits = config.limits.clone();
            let shutdown = until_stopped();
            crate::s3::spawn_object_reaper(
                services.backend.clone(),
                clock.clone(),
                config.s3.clone(),
                config.maintenance.purge_interval,
            );
            Some(tokio::spawn(async move {
                connections::serve(listener, app, &limits, shutdown).await;
            }))
        }
        None => None,
    };
    spawn_reaper(services.backend.clone(), config.maintenance.purge_interval);
    crate::changes::spawn_retention(
        services.backend.clone(),
        clock.clone(),
        config.events.retention,
        config.maintenance.purge_interval,
    );
    if let Some(nats) = &config.events.nats {
        crate::nats::spawn(
            services.backend.clone(),
            clock.clone(),
            &services.changes,
            nats.clone(),
        )?;
    }
    if let Some(memory) = &services.memory
        && config.embeddings.ingest
    {
        crate::ingest::spawn(
            memory.clone(),
            services.backend.clone(),
            clock.clone(),
            &services.changes,
            config.embeddings.lease_ttl,
        )?;
    }
    spawn_key_watcher(services.keys.clone());
    tracing::info!(%address, data_dir = %config.data_dir.display(), "p8fs listening");
    eprintln!(
        "p8fs listening on http://{address} (data in {})\n\
         get a first token:  p8fs token issue --data-dir {} --tenant default --sub me \
         --scope 'kv:read kv:write vectors:read vectors:write graph:read graph:write memories:read memories:write s3:read s3:write'\n\
         then:               curl -H \"Authorization: Bearer $TOKEN\" http://{address}/v1/kv\n\
         or sign in:         p8fs user add --data-dir {} --tenant default me; \
         p8fs login --issuer {}",
        config.data_dir.display(),
        config.data_dir.display(),
        config.data_dir.display(),
        config.issuer(),
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    connections::serve(
        listener,
        app(&services, &config),
        &config.limits,
        until_stopped(),
    )
    .await;
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    if let Some(s3_server) = s3_server {
        let _ = s3_server.await;
    }
    admin::remove_socket(&config);
    tracing::info!("p8fs stopped");
    Ok(())
}

fn spawn_reaper(backend: Arc<dyn Backend>, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match backend.purge_expired().await {
                Ok(removed) if removed > 0 => tracing::info!(removed, "purged expired records"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "purging expired records failed"),
            }
        }
    });
}

/// Picks up keys rotated by `p8fs keys rotate` in another process: the key file is replaced
/// atomically, so a changed modification time means a new ring to load.
fn spawn_key_watcher(keys: Arc<KeyRing>) {
    tokio::spawn(async move {
        let modified = |keys: &KeyRing| {
            std::fs::metadata(keys.key_file())
                .and_then(|m| m.modified())
                .ok()
        };
        let mut seen = modified(&keys);
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        loop {
            ticker.tick().await;
            let now = modified(&keys);
            if now != seen {
                match keys.reload() {
                    Ok(()) => tracing::info!(kid = %keys.current_kid(), "signing keys reloaded"),
                    Err(error) => tracing::warn!(%error, "reloading signing keys failed"),
                }
                seen = now;
            }
        }
    });
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down; finishing requests in flight");
}
