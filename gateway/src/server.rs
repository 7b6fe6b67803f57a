//! `p8fs serve`: assembles the front-ends over the configured backend and serves them until
//! SIGTERM or SIGINT, finishing requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use p8fs_auth::oauth::{OAuthConfig, OAuthServer};
use p8fs_auth::{Issuer, KeyRing, TokenConfig, Verifier};
use p8fs_core::{Backend, Clock, Key, KvStore, SystemClock, TenantId};
use p8fs_rest::RestState;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admin::{self, Admin};
use crate::config::{Config, LogFormat};
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
    }
}

/// Opens the backend, the signing keys and the OAuth server (creating its built-in clients).
pub async fn services(config: &Config, clock: Arc<dyn Clock>) -> Result<Services, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data_dir {}: {e}", config.data_dir.display()))?;
    let backend: Arc<dyn Backend> = Arc::new(Metered::new(
        crate::backend::open(config, clock.clone()).await?,
    ));
    let keys = Arc::new(
        KeyRing::load_or_create(&keys_dir(config), clock.clone())
            .map_err(|e| format!("signing keys in {}: {e}", keys_dir(config).display()))?,
    );
    let auth = auth(config, backend.clone(), &keys, clock).await?;
    let admin = Arc::new(Admin::new(
        keys.clone(),
        auth.issuer,
        Some(auth.oauth.clone()),
    ));
    Ok(Services {
        backend,
        keys,
        verifier: auth.verifier,
        oauth: auth.oauth,
        admin,
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

/// The whole HTTP application.
pub fn app(services: &Services, config: &Config) -> Router {
    let rest = p8fs_rest::router(RestState {
        backend: services.backend.clone(),
        verifier: services.verifier.clone(),
    });
    crate::metrics::handle();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::render))
        .route("/readyz", get(ready).with_state(services.backend.clone()))
        .route(
            "/.well-known/jwks.json",
            get(jwks)
                .with_state(services.keys.clone())
                .layer(p8fs_auth::oauth::cors()),
        )
        .merge(rest)
        .merge(p8fs_auth::oauth::router(services.oauth.clone()))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(DefaultBodyLimit::max(config.limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.limits.request_timeout,
        ))
        .layer(GlobalConcurrencyLimitLayer::new(config.limits.concurrency))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
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
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    // With port 0 the issuer URL takes the port actually bound.
    config.listen = address;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = services(&config, clock).await?;
    admin::listen(&config, services.admin.clone()).await?;
    spawn_reaper(services.backend.clone(), config.maintenance.purge_interval);
    spawn_key_watcher(services.keys.clone());
    tracing::info!(%address, data_dir = %config.data_dir.display(), "p8fs listening");
    eprintln!(
        "p8fs listening on http://{address} (data in {})\n\
         get a first token:  p8fs token issue --data-dir {} --tenant default --sub me \
         --scope 'kv:read kv:write vectors:read vectors:write graph:read graph:write'\n\
         then:               curl -H \"Authorization: Bearer $TOKEN\" http://{address}/v1/kv\n\
         or sign in:         p8fs user add --data-dir {} --tenant default me; \
         p8fs login --issuer {}",
        config.data_dir.display(),
        config.data_dir.display(),
        config.data_dir.display(),
        config.issuer(),
    );
    let app = app(&services, &config).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
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
