//! Clients identified by the URL of their metadata document: documents served by a real HTTP
//! server on a loopback port (so the development setting that allows loopback and `http` is on,
//! except where its absence is the point), the whole code flow with such a client, and every
//! way a document or a request is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode as AxumStatus, header};
use axum::response::IntoResponse;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::json;

use crate::code::{VERIFIER, challenge, consent};
use crate::harness::Harness;
use crate::other::s;

const CALLBACK: &str = "http://127.0.0.1:9999/cb";

/// A document server: its base URL and how many requests it answered.
struct Documents {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Documents {
    async fn start() -> Documents {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let doc = |base: &str, path: &str, client_id: Option<&str>| {
            json!({
                "client_id": client_id.map_or_else(|| format!("{base}{path}"), str::to_owned),
                "client_name": "Doc App",
                "redirect_uris": [CALLBACK],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
            .to_string()
        };
        let good = doc(&base, "/good.json", None);
        let other = doc(
            &base,
            "/other.json",
            Some("https://app.example/client.json"),
        );
        let big = format!(
            "{{\"client_id\":\"{base}/big.json\",\"redirect_uris\":[\"{CALLBACK}\"],\"pad\":\"{}\"}}",
            "x".repeat(20 * 1024)
        );
        let counted = |hits: &Arc<AtomicUsize>| {
            let hits = hits.clone();
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        };
        let (c1, c2, c3, c4, c5) = (
            counted(&hits),
            counted(&hits),
            counted(&hits),
            counted(&hits),
            counted(&hits),
        );
        let app = Router::new()
            .route(
                "/good.json",
                get(move || {
                    c1();
                    let good = good.clone();
                    async move {
                        (
                            [
                                (
                                    header::CONTENT_TYPE,
                                    HeaderValue::from_static("application/json"),
                                ),
                                (
                                    header::CACHE_CONTROL,
                                    HeaderValue::from_static("max-age=120"),
                                ),
                            ],
                            good,
                        )
                    }
                }),
            )
            .route(
                "/other.json",
                get(move || {
                    c2();
                    let other = other.clone();
                    async move { other }
                }),
            )
            .route(
                "/big.json",
                get(move || {
                    c3();
                    let big = big.clone();
                    async move { big }
                }),
            )
            .route(
                "/moved.json",
                get(move || {
                    c4();
                    async move {
                        (
                            AxumStatus::FOUND,
                            [(header::LOCATION, HeaderValue::from_static("/good.json"))],
                        )
                            .into_response()
                    }
                }),
            )
            .route(
                "/slow.json",
                get(move || {
                    c5();
                    async move {
                        tokio::time::sleep(Duration::from_secs(8)).await;
                        "{}"
                    }
                }),
            );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Documents { base, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn dev_server() -> Harness {
    Harness::start_with(|config| config.allow_loopback_client_metadata = true).await
}

fn authorize_path(client_id: &str, redirect_uri: &str, response_type: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", response_type)
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "st")
        .append_pair("scope", "kv:read")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!("/oauth/authorize?{query}")
}

fn param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[tokio::test]
async fn a_client_named_by_its_document_url_runs_the_code_flow() {
    let docs = Documents::start().await;
    let h = dev_server().await;
    let client_id = docs.url("/good.json");
    let mut browser = h.signed_in().await;
    let path = authorize_path(&client_id, CALLBACK, "code");
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Doc App"), "{}", page.body);
    let host = docs.base.trim_start_matches("http://");
    assert!(
        page.body
            .contains(&format!("<strong id=\"client_host\">{host}</strong>")),
        "{}",
        page.body
    );
    let location = consent(&mut browser, &path, "approve").await;
    assert!(location.starts_with(CALLBACK), "{location}");
    assert_eq!(param(&location, "iss").as_deref(), Some(h.base.as_str()));
    let code = param(&location, "code").unwrap();
    let (status, tokens) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let principal = h
        .verifier
        .verify(&s(&tokens, "access_token"))
        .await
        .unwrap();
    assert_eq!(principal.client_id, client_id);
    let (status, next) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&tokens, "refresh_token")),
            ("client_id", &client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    // Fetched once: the consent page, the decision, the token requests all used the cache.
    assert_eq!(docs.hits(), 1);
    // Past its max-age (120 s) it is fetched again.
    h.clock.advance(121_000);
    assert_eq!(browser.get(&path).await.status, StatusCode::OK);
    assert_eq!(docs.hits(), 2);

    // Errors go back to its (loopback, native) redirect URI with iss.
    let page = browser
        .get(&authorize_path(&client_id, CALLBACK, "token"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let location = page.location.unwrap();
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(param(&location, "iss").as_deref(), Some(h.base.as_str()));
}

#[tokio::test]
async fn redirect_uris_are_the_documents() {
    let docs = Documents::start().await;
    let h = dev_server().await;
    let client_id = docs.url("/good.json");
    let mut browser = h.signed_in().await;
    for wrong in ["http://127.0.0.1:9999/other", "https://evil.example/cb"] {
        let page = browser
            .get(&authorize_path(&client_id, wrong, "code"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{wrong}");
        assert!(page.location.is_none());
        assert!(page.has_id("error"));
        assert!(
            page.body.contains("redirect_uri is not registered"),
            "{}",
            page.body
        );
    }
}

#[tokio::test]
async fn unusable_documents_are_refused() {
    let docs = Documents::start().await;
    let h = dev_server().await;
    let mut browser = h.signed_in().await;
    for (path, why) in [
        ("/other.json", "client_id differs"),
        ("/big.json", "larger than 16384 bytes"),
        ("/moved.json", "HTTP 302"),
        ("/missing.json", "HTTP 404"),
        ("/slow.json", "no answer within 5 s"),
    ] {
        let client_id = docs.url(path);
        let page = browser
            .get(&authorize_path(&client_id, CALLBACK, "code"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(page.location.is_none(), "{path}");
        assert!(page.body.contains(why), "{path}: {}", page.body);
        let (status, body) = h
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", &client_id),
            ])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].as_str().unwrap().contains(why));
    }
    // Each was fetched once (the 404 is not counted): a refusal is remembered for a minute.
    assert_eq!(docs.hits(), 4);
    let again = authorize_path(&docs.url("/other.json"), CALLBACK, "code");
    assert_eq!(browser.get(&again).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(docs.hits(), 4);
    h.clock.advance(61_000);
    assert_eq!(browser.get(&again).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(docs.hits(), 5);
}

#[tokio::test]
async fn without_the_development_setting_local_documents_are_never_fetched() {
    let docs = Documents::start().await;
    let h = Harness::start().await;
    let mut browser = h.signed_in().await;
    let https_local = docs.url("/good.json").replace("http://", "https://");
    for (client_id, why) in [
        (docs.url("/good.json"), "https URL"),
        (https_local, "non-public"),
        ("https://localhost/good.json".to_owned(), "non-public"),
    ] {
        let page = browser
            .get(&authorize_path(&client_id, CALLBACK, "code"))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{client_id}");
        assert!(page.body.contains(why), "{client_id}: {}", page.body);
    }
    assert_eq!(docs.hits(), 0);
}
