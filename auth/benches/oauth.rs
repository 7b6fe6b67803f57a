//! Benchmark of token issuance by the refresh_token grant on RocksDB, one thread, in process:
//! `POST /oauth/token` requests go through the OAuth router as a tower service (form parsing,
//! client lookup, the grant with its key-value reads and compare-and-swap, Ed25519 signing,
//! JSON response), each redeeming the refresh token the previous one returned.
//!
//! `cargo bench --workspace --bench oauth` (set `P8FS_BENCH_REFRESHES` for the count, default
//! 20000). Prints refreshes per second and latency percentiles.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use p8fs_auth::oauth::{NewClient, OAuthConfig, OAuthServer, PasswordHashing, router};
use p8fs_auth::{Issuer, KeyRing, TokenConfig, Verifier};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::{Clock, KvStore, SystemClock, TenantId};
use tower::ServiceExt;

const ISSUER: &str = "http://127.0.0.1:8080";

fn main() {
    let count: usize = std::env::var("P8FS_BENCH_REFRESHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(count));
}

async fn run(count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let kv: Arc<dyn KvStore> = Arc::new(
        RocksBackend::open(
            dir.path().join("db"),
            clock.clone(),
            RocksOptions::default(),
        )
        .unwrap(),
    );
    let keys = Arc::new(KeyRing::load_or_create(&dir.path().join("keys"), clock.clone()).unwrap());
    let token_config = TokenConfig {
        issuer: ISSUER.to_owned(),
        audience: "p8fs".to_owned(),
        leeway: Duration::from_secs(30),
    };
    let issuer = Arc::new(Issuer::new(
        keys.clone(),
        token_config.clone(),
        clock.clone(),
    ));
    let verifier = Arc::new(Verifier::new(keys, token_config, clock.clone(), kv.clone()));
    let server = Arc::new(
        OAuthServer::new(
            kv,
            issuer,
            verifier,
            clock,
            OAuthConfig {
                issuer: ISSUER.to_owned(),
                ..OAuthConfig::default()
            },
        )
        .with_password_hashing(PasswordHashing::insecure_minimum_for_tests()),
    );
    let accounts = server.accounts();
    accounts
        .add_user(&TenantId::new("acme").unwrap(), "alice", "bench password")
        .await
        .unwrap();
    // A public client with the code grant: the first refresh token comes from the sign-in and
    // consent pages, driven here by hand.
    let created = accounts
        .add_client(NewClient {
            client_id: Some("bench".to_owned()),
            name: "Bench".to_owned(),
            confidential: false,
            redirect_uris: vec!["http://127.0.0.1:9/cb".to_owned()],
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    assert!(created.client_secret.is_none());
    let app = router(server);
    let mut refresh = first_refresh_token(&app).await;

    // Warm up, then measure.
    for _ in 0..500 {
        refresh = redeem(&app, &refresh).await;
    }
    let mut latencies = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let one = Instant::now();
        refresh = redeem(&app, &refresh).await;
        latencies.push(one.elapsed());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    println!(
        "refresh_token grant on RocksDB, one thread, in process: {count} refreshes in {:.2} s = \
         {:.0}/s; latency p50 {:?}, p90 {:?}, p99 {:?}",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.9),
        at(0.99),
    );
}

async fn call(app: &axum::Router, request: Request<Body>) -> axum::http::Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

async fn body_text(response: axum::http::Response<Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn form(path: &str, body: String, cookie: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.body(Body::from(body)).unwrap()
}

fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap() + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

fn session_cookie(response: &axum::http::Response<Body>) -> String {
    let value = response.headers()["set-cookie"].to_str().unwrap();
    value.split(';').next().unwrap().to_owned()
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        out.append_pair(name, value);
    }
    out.finish()
}

/// Signs in, approves a PKCE authorization and exchanges the code: the first refresh token.
async fn first_refresh_token(app: &axum::Router) -> String {
    let verifier = "bench-verifier-bench-verifier-bench-verifier-0123";
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let signin = call(
        app,
        Request::get("/oauth/signin").body(Body::empty()).unwrap(),
    )
    .await;
    let cookie = session_cookie(&signin);
    let csrf = hidden(&body_text(signin).await, "csrf");
    let signed_in = call(
        app,
        form(
            "/oauth/signin",
            encode(&[
                ("username", "alice"),
                ("password", "bench password"),
                ("csrf", &csrf),
            ]),
            Some(&cookie),
        ),
    )
    .await;
    let cookie = session_cookie(&signed_in);
    let authorize = encode(&[
        ("response_type", "code"),
        ("client_id", "bench"),
        ("redirect_uri", "http://127.0.0.1:9/cb"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let consent = call(
        app,
        Request::get(format!("/oauth/authorize?{authorize}"))
            .header("cookie", &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = hidden(&body_text(consent).await, "csrf");
    let approved = call(
        app,
        form(
            "/oauth/authorize",
            format!(
                "{authorize}&{}",
                encode(&[("csrf", &csrf), ("decision", "approve")])
            ),
            Some(&cookie),
        ),
    )
    .await;
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    let code = form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = call(
        app,
        form(
            "/oauth/token",
            encode(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
                ("code_verifier", verifier),
                ("client_id", "bench"),
            ]),
            None,
        ),
    )
    .await;
    refresh_token_of(&body_text(tokens).await)
}

fn refresh_token_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh token in {body}"))
        .to_owned()
}

async fn redeem(app: &axum::Router, refresh: &str) -> String {
    let response = call(
        app,
        form(
            "/oauth/token",
            encode(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", "bench"),
            ]),
            None,
        ),
    )
    .await;
    refresh_token_of(&body_text(response).await)
}
