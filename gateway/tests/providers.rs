//! `p8fs serve` on each SQL backend: the gateway chosen by `storage.provider` serves the REST API
//! exactly as on RocksDB. Needs the servers `scripts/test-all.sh` starts; a missing server fails.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use p8fs_auth::{Issuer, ScopeSet};
use p8fs_core::{Clock, SystemClock, TenantId};
use p8fs_gateway::config::{Config, Overrides};
use p8fs_gateway::server;
use serde_json::{Value, json};

async fn round_trip(provider: &str, url_variable: &str) {
    let url = std::env::var(url_variable)
        .unwrap_or_else(|_| panic!("set {url_variable} (scripts/test-all.sh starts the server)"));
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        // A directory the server creates, so owner-only as it requires.
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    };
    // Every server on the shared database seals with the same master key, as the nodes of one
    // deployment must.
    let env = vec![
        ("P8FS_STORAGE_PROVIDER".to_owned(), provider.to_owned()),
        ("P8FS_STORAGE_URL".to_owned(), url),
        (
            "P8FS_MASTER_KEY".to_owned(),
            common::SHARED_MASTER_KEY.to_owned(),
        ),
    ];
    let config = Config::load(None, env, &overrides).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = server::services(&config, clock.clone()).await.unwrap();
    let app = server::app(&services, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });

    let tenant = TenantId::new(format!("gw-{}", std::process::id())).unwrap();
    let token = Issuer::new(services.keys.clone(), server::token_config(&config), clock)
        .issue(
            &tenant,
            "tester",
            "tests",
            &ScopeSet::parse("kv:read kv:write").unwrap(),
            Duration::from_secs(60),
        )
        .unwrap()
        .token;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let put = http
        .put(format!("{base}/v1/kv/greeting"))
        .bearer_auth(&token)
        .json(&json!({"hello": provider}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let record: Value = http
        .get(format!("{base}/v1/kv/greeting"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["value"], json!({"hello": provider}));
}

#[tokio::test]
async fn serves_rest_on_postgres() {
    round_trip("postgres", "P8FS_TEST_POSTGRES_URL").await;
}

#[tokio::test]
async fn serves_rest_on_tidb() {
    round_trip("tidb", "P8FS_TEST_TIDB_URL").await;
}
