//! p8fs edge (`p8fs edge`): a reverse proxy on Cloudflare's pingora in front of several
//! `p8fs serve` nodes that share one PostgreSQL or TiDB database.
//!
//! [`run`] serves until SIGTERM (graceful) or SIGINT: a cleartext listener for the nodes' main
//! listener (HTTP/1.1 and h2c), optionally a TLS one for the same nodes (rustls, certificate
//! files, HTTP/2 or HTTP/1.1 by ALPN), and optionally an S3 listener for the nodes' S3
//! listeners. Per listener, pingora's load balancer checks each node's health (`/readyz`; a TCP
//! connect for S3) in the background, and [`upstream`] picks a node (round robin or least
//! connections, optionally rendezvous hashing by tenant), ejects a failing one and counts
//! requests in flight. [`proxy`] holds the filters: request ids, forwarded headers, rate limits
//! ([`limit`]) and the bearer-token pre-check against the nodes' JWKS ([`jwks`]).
//!
//! The edge holds no state that matters across restarts: its keys are refetched, its rate-limit
//! buckets and ejections start over. It never buffers a body.
//!
//! Module map: [`config`] (`[edge]`), [`upstream`], [`proxy`], [`jwks`], [`limit`],
//! [`request_id`] (also the ids `p8fs serve` makes).

pub mod config;
mod jwks;
mod limit;
mod proxy;
pub mod request_id;
mod upstream;

use std::sync::Arc;

use async_trait::async_trait;
use p8fs_core::{Error, Result};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;

pub use config::{Balance, EdgeConfig, Rate};

use crate::jwks::Keys;
use crate::limit::Buckets;
use crate::proxy::{Edge, Front};
use crate::upstream::{Check, Pool, health_checker};

/// Runs the edge with `config` until it is told to stop (SIGTERM: graceful, SIGINT: at once).
/// Blocking: pingora starts its own runtimes, so call this outside any tokio runtime.
pub fn run(config: EdgeConfig) -> Result<()> {
    config.validate()?;
    let mut server_conf = ServerConf {
        // In-flight requests get this long after SIGTERM.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        // Connect failures are retried by the filters; this is only pingora's own ceiling.
        max_retries: config.retries.saturating_add(1),
        ..ServerConf::default()
    };
    if let Some(threads) = config.threads {
        server_conf.threads = threads;
    } else {
        server_conf.threads = std::thread::available_parallelism().map_or(1, usize::from);
    }
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    server.bootstrap();
    let server_conf = server.configuration.clone();

    let per_address = config.rate_per_address.map(|r| Arc::new(Buckets::new(r)));
    let per_tenant = config.rate_per_tenant.map(|r| Arc::new(Buckets::new(r)));
    let keys = if config.verify_tokens {
        let keys = Arc::new(Keys::new(
            config.upstreams.clone(),
            config.jwks_min_interval,
            config.leeway,
        )?);
        server.add_service(background_service(
            "jwks",
            KeyRefresh {
                keys: keys.clone(),
                every: config.jwks_refresh,
            },
        ));
        Some(keys)
    } else {
        None
    };

    let main_pool = pool(
        &mut server,
        &config,
        &config.upstreams,
        Check::Http("/readyz"),
        "gateway health",
    )?;
    let edge = |front, pool: &Arc<Pool>, tls| Edge {
        front,
        pool: pool.clone(),
        keys: keys.clone(),
        per_address: per_address.clone(),
        per_tenant: per_tenant.clone(),
        retries: config.retries,
        connect_timeout: config.connect_timeout,
        tls,
    };
    let mut main = proxy_service(
        "p8fs edge",
        &server_conf,
        edge(Front::Main, &main_pool, false),
    );
    main.add_tcp(&config.listen.to_string());
    server.add_service(main);
    if let (Some(address), Some(cert), Some(key)) =
        (config.tls_listen, &config.tls_cert, &config.tls_key)
    {
        let mut settings = TlsSettings::intermediate(&path_text(cert)?, &path_text(key)?)
            .map_err(|e| Error::invalid("edge.tls_cert", e.to_string()))?;
        settings.enable_h2();
        let mut tls = proxy_service(
            "p8fs edge (TLS)",
            &server_conf,
            edge(Front::Main, &main_pool, true),
        );
        tls.add_tls_with_settings(&address.to_string(), None, settings);
        server.add_service(tls);
    }
    if let Some(address) = config.s3_listen {
        let s3_pool = pool(
            &mut server,
            &config,
            &config.s3_upstreams,
            Check::Tcp,
            "S3 health",
        )?;
        let mut s3 = proxy_service(
            "p8fs edge (S3)",
            &server_conf,
            edge(Front::S3, &s3_pool, false),
        );
        s3.add_tcp(&address.to_string());
        server.add_service(s3);
    }
    tracing::info!(
        listen = %config.listen,
        upstreams = ?config.upstreams,
        tls_listen = ?config.tls_listen,
        s3_listen = ?config.s3_listen,
        "p8fs edge starting"
    );
    server.run(RunArgs::default());
    Ok(())
}

/// The nodes at `addresses`, with their health checks added to `server` as a background service.
fn pool(
    server: &mut Server,
    config: &EdgeConfig,
    addresses: &[std::net::SocketAddr],
    check: Check,
    name: &str,
) -> Result<Arc<Pool>> {
    let checks = background_service(
        name,
        health_checker(addresses, check, config.health_interval)?,
    );
    let health = checks.task();
    server.add_service(checks);
    Ok(Arc::new(Pool::new(
        addresses,
        health,
        config.balance,
        config.hash_by_tenant,
        config.eject_for,
    )?))
}

fn proxy_service(
    name: &str,
    server_conf: &Arc<ServerConf>,
    edge: Edge,
) -> Service<pingora::proxy::HttpProxy<Edge>> {
    let mut proxy = pingora::proxy::http_proxy(server_conf, edge);
    let mut options = HttpServerOptions::default();
    // HTTP/2 with prior knowledge on cleartext: gRPC clients open with it.
    options.h2c = true;
    proxy.server_options = Some(options);
    Service::new(name.to_owned(), proxy)
}

fn path_text(path: &std::path::Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid("edge.tls_cert", "the path is not UTF-8"))
}

/// Fetches the nodes' keys at start and every `every`.
struct KeyRefresh {
    keys: Arc<Keys>,
    every: std::time::Duration,
}

#[async_trait]
impl BackgroundService for KeyRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.keys.refresh().await;
            tracing::debug!(keys = self.keys.count(), "JWKS fetched");
            // Until a node answers, try again soon.
            let wait = if self.keys.count() == 0 {
                std::time::Duration::from_secs(1).min(self.every)
            } else {
                self.every
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
