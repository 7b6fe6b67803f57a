//! End-to-end tests: the real server on a loopback port, used with an HTTP client the way a
//! user would — every route, authentication failures, bad input and cross-tenant attempts.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use p8fs_auth::{Issuer, ScopeSet};
use p8fs_core::{Clock, ManualClock, SystemClock, TenantId};
use p8fs_gateway::config::{Config, Overrides};
use p8fs_gateway::server;
use reqwest::StatusCode;
use serde_json::{Value, json};

const ALL: &str = "kv:read kv:write vectors:read vectors:write graph:read graph:write";

struct Server {
    base: String,
    http: reqwest::Client,
    services: server::Services,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        // A directory the server creates, so owner-only as it requires.
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    };
    let config = Config::load(None, Vec::new(), &overrides).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = server::services(&config, clock).await.unwrap();
    let app = server::app(&services, &config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    Server {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        services,
        config,
        _dir: dir,
    }
}

impl Server {
    fn issuer(&self, clock: Arc<dyn Clock>) -> Issuer {
        Issuer::new(
            self.services.keys.clone(),
            server::token_config(&self.config),
            clock,
        )
    }

    fn token(&self, tenant: &str, scopes: &str) -> String {
        self.issuer(Arc::new(SystemClock))
            .issue(
                &TenantId::new(tenant).unwrap(),
                "tester",
                "tests",
                &ScopeSet::parse(scopes).unwrap(),
                Duration::from_secs(600),
            )
            .unwrap()
            .token
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test]
async fn health_readiness_and_jwks() {
    let server = start().await;
    let health = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));
    let ready = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let jwks: Value = server
        .http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key["kid"].is_string());
    let openapi: Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi["paths"]["/v1/kv/{key}"].is_object());
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/healthz\""), "{metrics}");
    // /readyz read the backend: its operation is timed, labelled by operation and outcome.
    assert!(
        metrics.contains("backend_operation_duration_seconds_count{op=\"kv.get\",outcome=\"ok\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn key_value_round_trip_with_versions_and_conditions() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let put = reqwest::Method::PUT;
    let (status, written) = server
        .call(
            put.clone(),
            "/v1/kv/notes%2Fa%20b",
            &token,
            Some(json!({"text": "hi", "n": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{written}");
    assert_eq!(written["key"], "notes/a b");
    let version = written["version"].as_str().unwrap().to_owned();

    let (status, record) = server
        .call(reqwest::Method::GET, "/v1/kv/notes%2Fa%20b", &token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["value"], json!({"text": "hi", "n": 1}));
    assert_eq!(record["version"], version.as_str());

    // Compare-and-swap with the current version succeeds once; the stale version then fails.
    let cas = |v: &str| {
        server
            .http
            .put(server.url("/v1/kv/notes%2Fa%20b"))
            .bearer_auth(&token)
            .header("If-Match", format!("\"{v}\""))
            .json(&json!(2))
    };
    assert_eq!(cas(&version).send().await.unwrap().status(), StatusCode::OK);
    let stale = cas(&version).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.headers()["content-type"], "application/problem+json");

    let create_only = || {
        server
            .http
            .put(server.url("/v1/kv/once"))
            .bearer_auth(&token)
            .header("If-None-Match", "*")
            .json(&json!(true))
    };
    assert_eq!(
        create_only().send().await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        create_only().send().await.unwrap().status(),
        StatusCode::PRECONDITION_FAILED
    );

    let (status, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/kv?prefix=notes%2F&limit=10",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"][0]["key"], "notes/a b");
    assert!(page.get("next").is_none());

    let (status, found) = server
        .call(
            reqwest::Method::POST,
            "/v1/kv-find",
            &token,
            Some(json!({"path": "text", "value": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        found["items"].as_array().unwrap().len(),
        0,
        "the value was replaced by 2"
    );

    let (status, _) = server
        .call(reqwest::Method::DELETE, "/v1/kv/once", &token, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = server
        .call(reqwest::Method::DELETE, "/v1/kv/once", &token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn authentication_failures_are_401_with_a_challenge() {
    let server = start().await;
    let url = server.url("/v1/kv/k");
    let missing = server.http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("www-authenticate"));
    for header in ["Basic abc", "Bearer", "Bearer not.a.jwt", "Bearer a.b.c"] {
        let response = server
            .http
            .get(&url)
            .header("Authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header}");
    }
    // Expired: issued two hours ago for one hour.
    let past = Arc::new(ManualClock::new(SystemClock.now() - 2 * 3_600_000));
    let expired = server
        .issuer(past)
        .issue(
            &TenantId::new("alpha").unwrap(),
            "s",
            "c",
            &ScopeSet::parse(ALL).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap()
        .token;
    assert_eq!(
        server
            .http
            .get(&url)
            .bearer_auth(expired)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // alg=none: a valid payload with the signature stripped.
    let good = server.token("alpha", ALL);
    let payload = good.split('.').nth(1).unwrap();
    let none_header = base64_url(br#"{"alg":"none","typ":"at+jwt"}"#);
    let unsigned = format!("{none_header}.{payload}.");
    assert_eq!(
        server
            .http
            .get(&url)
            .bearer_auth(unsigned)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // Wrong audience.
    let mut other = server.config.clone();
    other.auth.audience = "someone-else".into();
    let foreign = Issuer::new(
        server.services.keys.clone(),
        server::token_config(&other),
        Arc::new(SystemClock),
    )
    .issue(
        &TenantId::new("alpha").unwrap(),
        "s",
        "c",
        &ScopeSet::parse(ALL).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap()
    .token;
    assert_eq!(
        server
            .http
            .get(&url)
            .bearer_auth(foreign)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The classic key-confusion attack: a token signed with HMAC-SHA256 using the server's public
/// key (as published in the JWKS, raw or as its base64url text) as the HMAC secret.
#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    let server = start().await;
    let jwks: Value = server
        .http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let kid = jwk["kid"].as_str().unwrap();
    let x = jwk["x"].as_str().unwrap();
    let raw = URL_SAFE_NO_PAD.decode(x).unwrap();
    // The claims of a genuine token, so only the algorithm differs.
    let genuine = server.token("alpha", ALL);
    let payload = genuine.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let url = server.url("/v1/kv");
    let good = server
        .http
        .get(&url)
        .bearer_auth(&genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), StatusCode::OK);
    for secret in [raw.as_slice(), x.as_bytes()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        let response = server
            .http
            .get(&url)
            .bearer_auth(forged)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn scopes_gate_operations() {
    let server = start().await;
    let reader = server.token("alpha", "kv:read");
    let (status, problem) = server
        .call(reqwest::Method::PUT, "/v1/kv/k", &reader, Some(json!(1)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/collections", &reader, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/kv/k", &reader, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let server = start().await;
    let alpha = server.token("alpha", ALL);
    let beta = server.token("beta", ALL);
    server
        .call(
            reqwest::Method::PUT,
            "/v1/kv/secret",
            &alpha,
            Some(json!("a")),
        )
        .await;
    server
        .call(
            reqwest::Method::PUT,
            "/v1/collections/docs",
            &alpha,
            Some(json!({"dimension": 2, "metric": "l2"})),
        )
        .await;
    server
        .call(
            reqwest::Method::PUT,
            "/v1/graph/nodes/n1",
            &alpha,
            Some(json!({"label": "x"})),
        )
        .await;
    for (method, path, body) in [
        (reqwest::Method::GET, "/v1/kv/secret", None),
        (reqwest::Method::DELETE, "/v1/kv/secret", None),
        (reqwest::Method::GET, "/v1/collections/docs", None),
        (
            reqwest::Method::POST,
            "/v1/collections/docs/search",
            Some(json!({"query": [1.0, 0.0]})),
        ),
        (reqwest::Method::GET, "/v1/graph/nodes/n1", None),
        (reqwest::Method::GET, "/v1/graph/nodes/n1/neighbors", None),
    ] {
        let (status, _) = server.call(method.clone(), path, &beta, body).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} from another tenant"
        );
    }
    let (_, page) = server
        .call(reqwest::Method::GET, "/v1/kv", &beta, None)
        .await;
    assert_eq!(page["items"], json!([]));
    let (_, list) = server
        .call(reqwest::Method::GET, "/v1/collections", &beta, None)
        .await;
    assert_eq!(list["items"], json!([]));
    let (status, record) = server
        .call(reqwest::Method::GET, "/v1/kv/secret", &alpha, None)
        .await;
    assert_eq!(
        (status, record["value"].clone()),
        (StatusCode::OK, json!("a"))
    );
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let cases = [
        (reqwest::Method::GET, "/v1/kv?limit=5000", None, "limit"),
        (reqwest::Method::GET, "/v1/kv?limit=ten", None, "limit"),
        (
            reqwest::Method::PUT,
            "/v1/kv/k?ttl_ms=0",
            Some(json!(1)),
            "ttl_ms",
        ),
        (
            reqwest::Method::PUT,
            "/v1/collections/bad%20name",
            Some(json!({"dimension": 2, "metric": "l2"})),
            "collection",
        ),
        (
            reqwest::Method::PUT,
            "/v1/collections/c",
            Some(json!({"dimension": 0, "metric": "l2"})),
            "dimension",
        ),
        (
            reqwest::Method::PUT,
            "/v1/collections/c",
            Some(json!({"dimension": 2, "metric": "hamming"})),
            "metric",
        ),
        (
            reqwest::Method::POST,
            "/v1/kv-find",
            Some(json!({"path": "a..b", "value": 1})),
            "path",
        ),
        (
            reqwest::Method::POST,
            "/v1/kv-find",
            Some(json!({"path": "a", "value": 1, "extra": true})),
            "extra",
        ),
        (
            reqwest::Method::PUT,
            "/v1/graph/nodes/n",
            Some(json!({"label": ""})),
            "label",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "mode": "fast"})),
            "mode",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "mode": "approximate", "ef": 0})),
            "ef",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "mode": "approximate", "ef": 4097})),
            "ef",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "mode": "approximate", "ef": 1.5})),
            "ef",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "ef": 8})),
            "ef",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            Some(json!({"query": [1.0], "mode": "exact", "ef": 8})),
            "ef",
        ),
    ];
    for (method, path, body, field) in cases {
        let (status, problem) = server.call(method.clone(), path, &token, body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["field"], field, "{method} {path}: {problem}");
    }
    // Not JSON at all, and invalid UTF-8.
    for body in [b"{not json".to_vec(), vec![b'"', 0xff, 0xfe, b'"']] {
        let response = server
            .http
            .put(server.url("/v1/kv/k"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    // Over the body limit.
    let huge = "x".repeat(server.config.limits.body_bytes + 1);
    let response = server
        .http
        .put(server.url("/v1/kv/k"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("\"{huge}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn vectors_and_graph_over_http() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let (status, _) = server
        .call(
            reqwest::Method::PUT,
            "/v1/collections/docs",
            &token,
            Some(json!({"dimension": 2, "metric": "l2"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (id, v, tag) in [
        ("a", [0.0, 0.0], "x"),
        ("b", [1.0, 0.0], "y"),
        ("c", [3.0, 0.0], "x"),
    ] {
        let (status, problem) = server
            .call(
                reqwest::Method::PUT,
                &format!("/v1/collections/docs/records/{id}"),
                &token,
                Some(json!({"vector": v, "metadata": {"tag": tag}})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{problem}");
    }
    let (status, results) = server
        .call(
            reqwest::Method::POST,
            "/v1/collections/docs/search",
            &token,
            Some(json!({"query": [0.9, 0.0], "k": 2, "filter": {"tag": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{results}");
    let ids: Vec<&str> = results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    // A collection this small answers an approximate search exactly, whatever `ef`.
    for mode in [
        json!({"mode": "exact"}),
        json!({"mode": "approximate"}),
        json!({"mode": "approximate", "ef": 1}),
        json!({"mode": "approximate", "ef": 4096}),
    ] {
        let mut body = json!({"query": [0.9, 0.0], "k": 2, "filter": {"tag": "x"}});
        body.as_object_mut()
            .unwrap()
            .extend(mode.as_object().unwrap().clone());
        let (status, same) = server
            .call(
                reqwest::Method::POST,
                "/v1/collections/docs/search",
                &token,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{mode}: {same}");
        assert_eq!(same, results, "{mode}");
    }
    let (status, problem) = server
        .call(
            reqwest::Method::PUT,
            "/v1/collections/docs/records/d",
            &token,
            Some(json!({"vector": [1.0]})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("vector"))
    );

    for id in ["a", "b", "c"] {
        server
            .call(
                reqwest::Method::PUT,
                &format!("/v1/graph/nodes/{id}"),
                &token,
                Some(json!({"label": "n"})),
            )
            .await;
    }
    for (src, dst) in [("a", "b"), ("b", "c")] {
        let (status, problem) = server
            .call(
                reqwest::Method::PUT,
                &format!("/v1/graph/edges/{src}/knows/{dst}"),
                &token,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{problem}");
    }
    let (status, problem) = server
        .call(
            reqwest::Method::PUT,
            "/v1/graph/edges/a/knows/ghost",
            &token,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let (_, reached) = server
        .call(
            reqwest::Method::GET,
            "/v1/graph/nodes/a/neighbors?depth=2",
            &token,
            None,
        )
        .await;
    assert_eq!(
        reached["items"],
        json!([{"id": "b", "hops": 1}, {"id": "c", "hops": 2}])
    );
    let (_, path) = server
        .call(
            reqwest::Method::POST,
            "/v1/graph/shortest-path",
            &token,
            Some(json!({"src": "a", "dst": "c"})),
        )
        .await;
    assert_eq!(path["path"]["nodes"], json!(["a", "b", "c"]));
    assert_eq!(path["path"]["total"], json!(2.0));
}

/// JSON Schema counts `200.0` as an integer, so integer fields of JSON bodies do too; a fraction
/// is a 400 naming the field. Query parameters are text and take decimal digits only.
#[tokio::test]
async fn integral_floats_are_integers_and_fractions_name_the_field() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let accepted = [
        (
            reqwest::Method::PUT,
            "/v1/collections/c",
            json!({"dimension": 2.0, "metric": "l2"}),
            StatusCode::CREATED,
        ),
        (
            reqwest::Method::PUT,
            "/v1/graph/nodes/n",
            json!({"label": "n", "ttl_ms": 600000.0}),
            StatusCode::NO_CONTENT,
        ),
        (
            reqwest::Method::PUT,
            "/v1/collections/c/records/r",
            json!({"vector": [1.0, 0.0], "ttl_ms": 6e5}),
            StatusCode::NO_CONTENT,
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            json!({"query": [1.0, 0.0], "k": 1.0}),
            StatusCode::OK,
        ),
        (
            reqwest::Method::POST,
            "/v1/kv-find",
            json!({"path": "a", "value": 1, "limit": 20.0}),
            StatusCode::OK,
        ),
        (
            reqwest::Method::POST,
            "/v1/graph/shortest-path",
            json!({"src": "n", "dst": "n", "max_depth": 3.0}),
            StatusCode::OK,
        ),
    ];
    for (method, path, body, expected) in accepted {
        let (status, answer) = server.call(method.clone(), path, &token, Some(body)).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let (_, node) = server
        .call(reqwest::Method::GET, "/v1/graph/nodes/n", &token, None)
        .await;
    assert!(node["expires_at"].is_i64(), "{node}");
    let refused = [
        (
            reqwest::Method::PUT,
            "/v1/graph/nodes/n",
            json!({"label": "n", "ttl_ms": 1.5}),
            "ttl_ms",
        ),
        (
            reqwest::Method::PUT,
            "/v1/collections/d",
            json!({"dimension": 2.5, "metric": "l2"}),
            "dimension",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            json!({"query": [1.0, 0.0], "k": 0.5}),
            "k",
        ),
        (
            reqwest::Method::POST,
            "/v1/collections/c/search",
            json!({"query": [1.0, 1e39]}),
            "query[1]",
        ),
        (
            reqwest::Method::PUT,
            "/v1/graph/edges/n/r/n",
            json!({"ttl_ms": "60000"}),
            "ttl_ms",
        ),
    ];
    for (method, path, body, field) in refused {
        let (status, problem) = server.call(method.clone(), path, &token, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["field"], field, "{method} {path}: {problem}");
    }
    for query in ["limit=1.0", "limit=1.5", "limit=ten"] {
        let (status, problem) = server
            .call(
                reqwest::Method::GET,
                &format!("/v1/kv?{query}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["field"], "limit", "{query}: {problem}");
    }
    // Request schemas are objects; serde alone would read a struct from an array.
    let (status, problem) = server
        .call(
            reqwest::Method::PUT,
            "/v1/graph/edges/n/r/n",
            &token,
            Some(json!([])),
        )
        .await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("body"))
    );
}

/// A node's edges are 404 when the node does not exist, before and after it does.
#[tokio::test]
async fn edges_of_a_missing_node_are_404() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let (status, problem) = server
        .call(
            reqwest::Method::GET,
            "/v1/graph/nodes/ghost/edges",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("node"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("ghost"),
        "{problem}"
    );
    server
        .call(
            reqwest::Method::PUT,
            "/v1/graph/nodes/ghost",
            &token,
            Some(json!({"label": "n"})),
        )
        .await;
    let (status, edges) = server
        .call(
            reqwest::Method::GET,
            "/v1/graph/nodes/ghost/edges",
            &token,
            None,
        )
        .await;
    assert_eq!((status, edges), (StatusCode::OK, json!({"items": []})));
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            "/v1/graph/nodes/ghost",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for path in [
        "/v1/graph/nodes/ghost/edges",
        "/v1/graph/nodes/ghost/neighbors",
    ] {
        let (status, problem) = server.call(reqwest::Method::GET, path, &token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {problem}");
    }
    // Another tenant's node is as missing as no node.
    server
        .call(
            reqwest::Method::PUT,
            "/v1/graph/nodes/mine",
            &token,
            Some(json!({"label": "n"})),
        )
        .await;
    let other = server.token("beta", ALL);
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "/v1/graph/nodes/mine/edges",
            &other,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Limits are in UTF-8 bytes, as the document says with `format: utf8-max-N-bytes` beside
/// `maxLength` (which counts characters).
#[tokio::test]
async fn lengths_are_counted_in_bytes() {
    let server = &start().await;
    let token = &server.token("alpha", ALL);
    let node = |id: String| async move {
        server
            .call(
                reqwest::Method::PUT,
                &format!("/v1/graph/nodes/{id}"),
                token,
                Some(json!({"label": "n"})),
            )
            .await
    };
    // 256 ASCII characters are 256 bytes: the largest id.
    assert_eq!(node("a".repeat(256)).await.0, StatusCode::NO_CONTENT);
    let (status, problem) = node("a".repeat(257)).await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("id"))
    );
    // 129 characters of two bytes each are 258 bytes.
    let (status, problem) = node("%C3%A9".repeat(129)).await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("id"))
    );
    assert_eq!(node("%C3%A9".repeat(128)).await.0, StatusCode::NO_CONTENT);
    let (_, document) = server
        .call(reqwest::Method::GET, "/openapi.json", token, None)
        .await;
    let id = &document["paths"]["/v1/graph/nodes/{id}"]["put"]["parameters"][0]["schema"];
    assert_eq!(id["maxLength"], 256);
    assert_eq!(id["format"], "utf8-max-256-bytes");
}

/// `If-None-Match` takes `*` (or nothing); with `If-Match` too, the preconditions cannot both
/// hold, answered as RFC 9110 evaluates them.
#[tokio::test]
async fn conditional_headers_follow_rfc_9110() {
    let server = start().await;
    let token = server.token("alpha", ALL);
    let put = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = server
            .http
            .put(server.url("/v1/kv/k"))
            .bearer_auth(&token)
            .json(&json!(1));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let both = vec![("If-Match", "\"1\""), ("If-None-Match", "*")];
    assert_eq!(put(both.clone()).await.0, StatusCode::NOT_FOUND);
    assert_eq!(put(vec![("If-None-Match", "")]).await.0, StatusCode::OK);
    assert_eq!(put(both).await.0, StatusCode::PRECONDITION_FAILED);
    let (status, problem) = put(vec![("If-None-Match", "\"1\"")]).await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("if-none-match"))
    );
    let (status, problem) = put(vec![("If-Match", "")]).await;
    assert_eq!(
        (status, problem["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("if-match"))
    );
    // Well-formed but larger than any version: it matches nothing.
    let (status, _) = put(vec![("If-Match", "\"99999999999999999999\"")]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn objects_over_rest_stream_list_range_and_condition() {
    let server = start().await;
    let token = server.token("alice", "s3:read s3:write");
    let put = |path: &str| server.http.put(server.url(path)).bearer_auth(&token);
    let get = |path: &str| server.http.get(server.url(path)).bearer_auth(&token);

    let (status, created) = server
        .call(reqwest::Method::PUT, "/v1/objects/notes", &token, None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "notes");
    let (status, _) = server
        .call(reqwest::Method::PUT, "/v1/objects/notes", &token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "creating it again is a no-op");

    // Three chunks and a byte.
    let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 1)
        .map(|i: u32| (i % 251) as u8)
        .collect();
    let response = put("/v1/objects/notes/2026/plan.bin")
        .header("content-type", "application/x-plan")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let written: Value = response.json().await.unwrap();
    let etag = p8fs_core::object::md5_hex(&bytes);
    assert_eq!(written["etag"], etag);
    assert_eq!(written["size"], bytes.len());

    let response = get("/v1/objects/notes/2026/plan.bin").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-plan");
    assert_eq!(response.headers()["etag"], format!("\"{etag}\"").as_str());
    let last_modified = response.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let response = server
        .http
        .head(server.url("/v1/objects/notes/2026/plan.bin"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"],
        bytes.len().to_string().as_str()
    );

    // Ranges: across a chunk boundary, a suffix, and one past the end.
    let start = 1024 * 1024 - 5;
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("range", format!("bytes={start}-{}", start + 9))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {start}-{}/{}", start + 9, bytes.len()).as_str()
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &bytes[start..start + 10]
    );
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &bytes[bytes.len() - 3..]
    );
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes */{}", bytes.len()).as_str()
    );

    // Read conditions.
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("if-none-match", format!("\"{etag}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = get("/v1/objects/notes/2026/plan.bin")
        .header("if-match", "\"0123\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);

    // Write conditions: create-only, then replace only the version we read.
    let response = put("/v1/objects/notes/2026/plan.bin")
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = put("/v1/objects/notes/todo.txt")
        .header("if-none-match", "*")
        .body("milk")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = put("/v1/objects/notes/todo.txt")
        .header("if-match", "\"00000000000000000000000000000000\"")
        .body("eggs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = put("/v1/objects/notes/todo.txt")
        .header(
            "if-match",
            format!("\"{}\"", p8fs_core::object::md5_hex(b"milk")),
        )
        .body("eggs")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = get("/v1/objects/notes/todo.txt")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "eggs");

    // Listing: a delimiter rolls `2026/` up; pages of one follow the cursor.
    let (status, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/objects/notes?delimiter=/",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["common_prefixes"], json!(["2026/"]));
    assert_eq!(page["objects"][0]["key"], "todo.txt");
    assert!(page.get("next").is_none());
    let mut keys = Vec::new();
    let mut path = "/v1/objects/notes?limit=1".to_owned();
    loop {
        let (status, page) = server.call(reqwest::Method::GET, &path, &token, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for object in page["objects"].as_array().unwrap() {
            keys.push(object["key"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/objects/notes?limit=1&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(keys, ["2026/plan.bin", "todo.txt"]);
    let (status, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/objects/notes?cursor=zz",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(page["field"], "cursor");

    let (status, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/objects/notes?cursor=",
            &token,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "an empty cursor was never issued"
    );
    assert_eq!(page["field"], "cursor");
    // A cursor decides where a page starts, but a malformed `start_after` beside it is still
    // refused.
    let (status, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/objects/notes?cursor=74&start_after=",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(page["field"], "start_after");
    // Another tenant sees no bucket; a token without s3:write cannot upload.
    let other = server.token("bob", "s3:read s3:write");
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/objects/notes", &other, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, buckets) = server
        .call(reqwest::Method::GET, "/v1/objects", &other, None)
        .await;
    assert_eq!(buckets["buckets"], json!([]));
    let reader = server.token("alice", "s3:read");
    let response = server
        .http
        .put(server.url("/v1/objects/notes/x"))
        .bearer_auth(&reader)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = put("/v1/objects/missing/x").body("x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // A bucket with objects is not deleted; emptied, it is.
    let (status, _) = server
        .call(reqwest::Method::DELETE, "/v1/objects/notes", &token, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for key in ["2026/plan.bin", "todo.txt"] {
        let (status, _) = server
            .call(
                reqwest::Method::DELETE,
                &format!("/v1/objects/notes/{key}"),
                &token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, _) = server
        .call(
            reqwest::Method::DELETE,
            "/v1/objects/notes/todo.txt",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .call(reqwest::Method::DELETE, "/v1/objects/notes", &token, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

/// Reads SSE events (`id`, `event`, `data`) from a streaming response until `count` arrived.
async fn sse_events(
    response: &mut reqwest::Response,
    count: usize,
) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream sent the events in time")
            .unwrap()
            .expect("the stream stayed open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !event.is_empty() {
                events.push((id, event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn changes_are_paged_and_streamed_per_tenant_and_scope() {
    let server = start().await;
    let token = server.token("alice", "kv:read kv:write s3:read");
    let (status, page) = server
        .call(reqwest::Method::GET, "/v1/changes", &token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page, json!({"changes": [], "next": "0", "head": "0"}));

    for (method, path) in [
        (reqwest::Method::PUT, "/v1/kv/a"),
        (reqwest::Method::PUT, "/v1/kv/b"),
        (reqwest::Method::DELETE, "/v1/kv/a"),
    ] {
        let body = (method == reqwest::Method::PUT).then(|| json!(1));
        let (status, _) = server.call(method, path, &token, body).await;
        assert!(status.is_success(), "{status}");
    }
    let (_, page) = server
        .call(reqwest::Method::GET, "/v1/changes?limit=2", &token, None)
        .await;
    let changes = page["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{page}");
    assert_eq!(changes[0]["cursor"], "1");
    assert_eq!(changes[0]["op"], "put");
    assert_eq!(changes[0]["kind"], "kv");
    assert_eq!(changes[0]["key"], "a");
    assert!(changes[0]["version"].is_string());
    assert_eq!(page["next"], "2");
    assert_eq!(page["head"], "3");
    let (_, page) = server
        .call(
            reqwest::Method::GET,
            "/v1/changes?after=2&prefix=a",
            &token,
            None,
        )
        .await;
    assert_eq!(page["changes"][0]["op"], "delete", "{page}");
    assert_eq!(page["next"], "3");

    // Bad cursors and kinds the token cannot read.
    let (status, problem) = server
        .call(reqwest::Method::GET, "/v1/changes?after=4", &token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["field"], "after");
    let (status, _) = server
        .call(
            reqwest::Method::GET,
            "/v1/changes?kinds=vector",
            &token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let writer_only = server.token("alice", "kv:write");
    let (status, _) = server
        .call(reqwest::Method::GET, "/v1/changes", &writer_only, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = server.token("bob", "kv:read");
    let (_, page) = server
        .call(reqwest::Method::GET, "/v1/changes", &other, None)
        .await;
    assert_eq!(page["head"], "0", "another tenant's log is its own");

    // A stream resumed after cursor 1 gets 2 and 3, then a write made while it waits.
    let mut stream = server
        .http
        .get(server.url("/v1/changes/stream?kinds=kv"))
        .bearer_auth(&token)
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let events = sse_events(&mut stream, 2).await;
    assert_eq!(events[0].0, "2");
    assert_eq!(events[0].1, "change");
    assert_eq!(events[1].2["op"], "delete");
    let (status, _) = server
        .call(reqwest::Method::PUT, "/v1/kv/c", &token, Some(json!("new")))
        .await;
    assert!(status.is_success());
    let events = sse_events(&mut stream, 1).await;
    assert_eq!(events[0].0, "4");
    assert_eq!(events[0].2["key"], "c");
    drop(stream);

    // Without a cursor a stream starts at the head: only new changes.
    let mut stream = server
        .http
        .get(server.url("/v1/changes/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, _) = server
        .call(reqwest::Method::PUT, "/v1/kv/d", &token, Some(json!("new")))
        .await;
    assert!(status.is_success());
    let events = sse_events(&mut stream, 1).await;
    assert_eq!(events[0].0, "5");
    let response = server
        .http
        .get(server.url("/v1/changes/stream"))
        .bearer_auth(&token)
        .header("last-event-id", "99")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
