//! No open redirect: which redirect URIs self-registered clients may have, where authorization
//! errors are sent, loopback ports for native apps (RFC 8252), the per-address registration
//! limit, and self-registered clients that are never used expiring.

use std::net::{IpAddr, Ipv4Addr};

use p8fs_auth::oauth::{DYNAMIC_CLIENT_UNUSED_TTL, NewClient, REGISTRATIONS_PER_ADDRESS};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::code::{VERIFIER, challenge, consent};
use crate::harness::{Harness, json_of};
use crate::other::s;

async fn register_from(
    h: &Harness,
    http: &reqwest::Client,
    metadata: Value,
) -> (StatusCode, Value) {
    json_of(
        http.post(h.url("/oauth/register"))
            .json(&metadata)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn register(h: &Harness, metadata: Value) -> (StatusCode, Value) {
    register_from(h, &h.http, metadata).await
}

/// A client whose connections come from `address` (any 127.0.0.0/8 address is loopback).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(address))
        .build()
        .unwrap()
}

fn authorize(client_id: &str, redirect_uri: &str, response_type: &str) -> String {
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
async fn errors_are_never_redirected_to_the_https_uri_of_a_self_registered_client() {
    let h = Harness::start().await;
    let (status, evil) = register(
        &h,
        json!({"client_name": "Evil", "redirect_uris": ["https://evil.example/landing"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{evil}");
    let evil = s(&evil, "client_id");
    let mut anonymous = h.browser();
    for response_type in ["token", "id_token", "nonsense"] {
        let page = anonymous
            .get(&authorize(
                &evil,
                "https://evil.example/landing",
                response_type,
            ))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{response_type}");
        assert!(page.location.is_none(), "{:?}", page.location);
        assert!(page.has_id("error"));
    }
    // A signed-in user's invalid request is not redirected there either.
    let mut browser = h.signed_in().await;
    let path =
        authorize(&evil, "https://evil.example/landing", "code").replace("kv%3Aread", "nope");
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.location.is_none());

    // A native self-registered client gets its errors back: they stay on the user's machine.
    let (_, native) = register(
        &h,
        json!({"redirect_uris": ["http://127.0.0.1/cb", "com.example.app:/cb"]}),
    )
    .await;
    let native = s(&native, "client_id");
    for redirect in ["http://127.0.0.1:4444/cb", "com.example.app:/cb"] {
        let page = anonymous.get(&authorize(&native, redirect, "token")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{redirect}");
        let location = page.location.unwrap();
        assert!(location.starts_with(redirect), "{location}");
        assert_eq!(
            param(&location, "error").as_deref(),
            Some("unsupported_response_type")
        );
    }
    // So does a client an administrator registered.
    crate::code::add_web_client(&h, "Web").await;
    let page = anonymous
        .get(&authorize("web", "https://app.example/cb", "token"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        page.location
            .unwrap()
            .starts_with("https://app.example/cb?")
    );
    // An unknown client, or a URI that does not match, never gets a redirect.
    for (client, redirect) in [
        ("nobody", "https://evil.example/landing"),
        (evil.as_str(), "https://evil.example/other"),
        ("web", "https://evil.example/landing"),
    ] {
        let page = anonymous.get(&authorize(client, redirect, "token")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{client} {redirect}");
        assert!(page.location.is_none());
    }
}

#[tokio::test]
async fn self_registered_clients_use_native_or_https_redirect_uris() {
    let h = Harness::start().await;
    for uri in [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:8080/cb",
        "http://[::1]/cb",
        "http://localhost:3000/cb",
        "com.example.app:/oauth2redirect",
        "https://app.example/cb",
    ] {
        let (status, body) = register(&h, json!({"redirect_uris": [uri]})).await;
        assert_eq!(status, StatusCode::CREATED, "{uri}: {body}");
    }
    for uri in [
        "http://127.0.0.2/cb",
        "http://app.example/cb",
        "myapp:/cb",
        "javascript:alert(1)",
        "https://app.example/cb#x",
    ] {
        let (status, body) = register(&h, json!({"redirect_uris": [uri]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{uri}: {body}");
    }
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let h = Harness::start().await;
    let first = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let metadata = json!({"redirect_uris": ["https://app.example/cb"]});
    for _ in 0..REGISTRATIONS_PER_ADDRESS {
        let (status, body) = register_from(&h, &first, metadata.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = register_from(&h, &first, metadata.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Another address is not affected.
    let second = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let (status, body) = register_from(&h, &second, metadata).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn native_clients_may_use_any_port_on_a_loopback_redirect_uri() {
    let h = Harness::start().await;
    crate::code::add_web_client(&h, "Web").await;
    let mut browser = h.signed_in().await;
    let location = consent(
        &mut browser,
        &authorize("web", "http://127.0.0.1:5555/cb", "code"),
        "approve",
    )
    .await;
    assert!(
        location.starts_with("http://127.0.0.1:5555/cb?"),
        "{location}"
    );
    let code = param(&location, "code").unwrap();
    let (_, body) = crate::code::exchange(&h, &code, "http://127.0.0.1:9999/cb", VERIFIER).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "the code is bound to the port used"
    );
    let location = consent(
        &mut browser,
        &authorize("web", "http://127.0.0.1:6666/cb", "code"),
        "approve",
    )
    .await;
    let code = param(&location, "code").unwrap();
    let (status, body) =
        crate::code::exchange(&h, &code, "http://127.0.0.1:6666/cb", VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Only the port may differ; and a confidential client's URIs match exactly.
    for other in ["http://127.0.0.1:5555/cb2", "http://localhost:9999/cb"] {
        let page = browser.get(&authorize("web", other, "code")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{other}");
    }
    h.server
        .accounts()
        .add_client(NewClient {
            client_id: Some("server-app".to_owned()),
            name: "Server app".to_owned(),
            confidential: true,
            redirect_uris: vec!["http://127.0.0.1:9999/cb".to_owned()],
            grant_types: vec!["authorization_code".to_owned()],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let page = browser
        .get(&authorize("server-app", "http://127.0.0.1:5555/cb", "code"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn self_registered_clients_that_are_never_used_expire() {
    let h = Harness::start().await;
    let metadata = json!({"redirect_uris": ["http://127.0.0.1/cb"]});
    let (_, unused) = register(&h, metadata.clone()).await;
    let unused = s(&unused, "client_id");
    let (_, used) = register(&h, metadata).await;
    let used = s(&used, "client_id");
    let mut browser = h.signed_in().await;
    let location = consent(
        &mut browser,
        &authorize(&used, "http://127.0.0.1:7000/cb", "code"),
        "approve",
    )
    .await;
    let (status, tokens) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &param(&location, "code").unwrap()),
            ("redirect_uri", "http://127.0.0.1:7000/cb"),
            ("code_verifier", VERIFIER),
            ("client_id", &used),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");

    h.clock
        .advance(i64::try_from(DYNAMIC_CLIENT_UNUSED_TTL.as_millis()).unwrap() + 1);
    let ids: Vec<String> = h
        .server
        .accounts()
        .list_clients()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert!(!ids.contains(&unused), "{ids:?}");
    assert!(ids.contains(&used), "{ids:?}");
    let page = browser
        .get(&authorize(&unused, "http://127.0.0.1/cb", "code"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let (status, _) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&tokens, "refresh_token")),
            ("client_id", &used),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "the used client still works");
}
