//! The authorization code grant with PKCE: happy path, wrong verifier, plain refused,
//! redirect_uri tricks, code reuse and expiry, denial, and sign-in on the way.

use p8fs_auth::oauth::NewClient;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::harness::{Browser, Harness, PASSWORD};

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9999/cb";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more";

pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub(crate) async fn add_web_client(h: &Harness, name: &str) {
    h.server
        .accounts()
        .add_client(NewClient {
            client_id: Some("web".to_owned()),
            name: name.to_owned(),
            confidential: false,
            redirect_uris: vec![REDIRECT.to_owned(), "https://app.example/cb".to_owned()],
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
}

fn authorize_path(redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "xyz<&>")
        .append_pair("scope", "kv:read kv:write");
    let has = |name: &str| extra.iter().any(|(n, _)| *n == name);
    if !has("code_challenge") {
        query.append_pair("code_challenge", &challenge(VERIFIER));
    }
    if !has("code_challenge_method") {
        query.append_pair("code_challenge_method", "S256");
    }
    for (name, value) in extra {
        if !value.is_empty() {
            query.append_pair(name, value);
        }
    }
    format!("/oauth/authorize?{}", query.finish())
}

fn query_of(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn param(location: &str, name: &str) -> Option<String> {
    query_of(location)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// Approves the consent page of `path` and returns the redirect location.
pub(crate) async fn consent(browser: &mut Browser, path: &str, decision: &str) -> String {
    let page = browser.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.has_id("approve") && page.has_id("deny"));
    let mut form: Vec<(String, String)> = Vec::new();
    for name in [
        "csrf",
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
        "resource",
    ] {
        if let Some(value) = page.hidden(name) {
            form.push((name.to_owned(), value));
        }
    }
    form.push(("decision".to_owned(), decision.to_owned()));
    let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let done = browser.post("/oauth/authorize", &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    done.location.unwrap()
}

/// A code for alice through the consent page.
pub(crate) async fn code(h: &Harness) -> String {
    let mut browser = h.signed_in().await;
    let location = consent(&mut browser, &authorize_path(REDIRECT, &[]), "approve").await;
    assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
    assert_eq!(param(&location, "state").as_deref(), Some("xyz<&>"));
    assert_eq!(param(&location, "iss").as_deref(), Some(h.base.as_str()));
    param(&location, "code").unwrap()
}

pub(crate) async fn exchange(
    h: &Harness,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> (StatusCode, serde_json::Value) {
    h.token(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", "web"),
    ])
    .await
}

#[tokio::test]
async fn pkce_happy_path() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let code = code(&h).await;
    let (status, tokens) = exchange(&h, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["scope"], "kv:read kv:write");
    assert!(tokens["refresh_token"].is_string());
    let principal = h
        .verifier
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.client_id, "web");
    assert_eq!(principal.tenant.as_str(), "acme");
}

#[tokio::test]
async fn sign_in_on_the_way_to_consent() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.browser();
    let path = authorize_path(REDIRECT, &[]);
    let redirect = browser.get(&path).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    let form = browser.get(&redirect.location.unwrap()).await;
    assert_eq!(form.hidden("next").unwrap(), path);
    let next = form.hidden("next").unwrap();
    let signed_in = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
                ("next", &next),
            ],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let location = consent(&mut browser, &signed_in.location.unwrap(), "approve").await;
    let code = param(&location, "code").unwrap();
    assert_eq!(
        exchange(&h, &code, REDIRECT, VERIFIER).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_verifier_is_refused_and_burns_the_code() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let code = code(&h).await;
    let wrong = "x".repeat(43);
    let (status, body) = exchange(&h, &code, REDIRECT, &wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (_, body) = exchange(&h, &code, REDIRECT, VERIFIER).await;
    assert_eq!(body["error"], "invalid_grant");
    let code = self::code(&h).await;
    let (_, body) = exchange(&h, &code, REDIRECT, "short").await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn plain_and_missing_pkce_are_refused() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.signed_in().await;
    let cases = [
        vec![
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
        ],
        vec![("code_challenge_method", "")],
        vec![("code_challenge", ""), ("code_challenge_method", "")],
        vec![("code_challenge", "tooshort")],
    ];
    for extra in cases {
        let page = browser.get(&authorize_path(REDIRECT, &extra)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{extra:?}");
        let location = page.location.unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(
            param(&location, "error").as_deref(),
            Some("invalid_request")
        );
        assert_eq!(param(&location, "state").as_deref(), Some("xyz<&>"));
        assert!(param(&location, "code").is_none());
    }
}

#[tokio::test]
async fn redirect_uri_tricks_are_refused_without_redirecting() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.signed_in().await;
    for trick in [
        "http://127.0.0.1:9999/c",
        "http://127.0.0.1:9999/cb/extra",
        "http://127.0.0.1:9999/cbx",
        "http://127.0.0.1:9999/cb?x=1",
        "http://localhost:9999/cb",
        "http://127.0.0.1:9999/CB",
        "https://app.example/cb/../evil",
        "https://app.example.evil.example/cb",
        "https://app.example/cb#",
        "",
    ] {
        let page = browser.get(&authorize_path(trick, &[])).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{trick}");
        assert!(page.location.is_none(), "{trick}");
        assert!(page.has_id("error"), "{trick}");
    }
    let code = code(&h).await;
    for trick in [
        "http://127.0.0.1:9999/cb/",
        "https://app.example/cb",
        "http://127.0.0.1:9999/cb?x=1",
    ] {
        let (_, body) = exchange(&h, &code, trick, VERIFIER).await;
        assert_eq!(body["error"], "invalid_grant", "{trick}");
    }
}

#[tokio::test]
async fn reused_codes_revoke_the_tokens_issued_from_them() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let code = code(&h).await;
    let (status, tokens) = exchange(&h, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::OK);
    let access = tokens["access_token"].as_str().unwrap();
    assert!(h.verifier.verify(access).await.is_ok());
    let (status, body) = exchange(&h, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        h.verifier.verify(access).await.is_err(),
        "the access token is revoked"
    );
    let (_, body) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ("client_id", "web"),
        ])
        .await;
    assert_eq!(
        body["error"], "invalid_grant",
        "the refresh token is revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_presented_twice_at_once_revokes_what_either_redemption_issued() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.signed_in().await;
    for round in 0..12 {
        let location = consent(&mut browser, &authorize_path(REDIRECT, &[]), "approve").await;
        let code = param(&location, "code").unwrap();
        let (a, b) = tokio::join!(
            exchange(&h, &code, REDIRECT, VERIFIER),
            exchange(&h, &code, REDIRECT, VERIFIER)
        );
        for (status, tokens) in [a, b] {
            if status != StatusCode::OK {
                assert_eq!(tokens["error"], "invalid_grant", "round {round}: {tokens}");
                continue;
            }
            assert!(
                h.verifier
                    .verify(tokens["access_token"].as_str().unwrap())
                    .await
                    .is_err(),
                "round {round}: the access token of a reused code is revoked"
            );
            let (_, body) = h
                .token(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                    ("client_id", "web"),
                ])
                .await;
            assert_eq!(body["error"], "invalid_grant", "round {round}");
        }
    }
}

#[tokio::test]
async fn codes_expire_after_60_seconds() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let code = code(&h).await;
    h.clock.advance(60_000);
    let (status, body) = exchange(&h, &code, REDIRECT, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn codes_belong_to_their_client() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let code = code(&h).await;
    let (_, body) = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", "p8fs-cli"),
        ])
        .await;
    assert_eq!(body["error"], "unauthorized_client");
}

#[tokio::test]
async fn denial_redirects_with_access_denied() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.signed_in().await;
    let location = consent(&mut browser, &authorize_path(REDIRECT, &[]), "deny").await;
    assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&location, "state").as_deref(), Some("xyz<&>"));
    assert!(param(&location, "code").is_none());
}

#[tokio::test]
async fn unknown_clients_and_response_types() {
    let h = Harness::start().await;
    add_web_client(&h, "Web app").await;
    let mut browser = h.signed_in().await;
    let page = browser
        .get(&authorize_path(REDIRECT, &[]).replace("client_id=web", "client_id=nobody"))
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has_id("error"));
    let page = browser
        .get(&authorize_path(REDIRECT, &[]).replace("response_type=code", "response_type=token"))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        param(&page.location.unwrap(), "error").as_deref(),
        Some("unsupported_response_type")
    );
    let page = browser
        .get(&authorize_path(REDIRECT, &[]).replace("scope=kv", "scope=nope+kv"))
        .await;
    assert_eq!(
        param(&page.location.unwrap(), "error").as_deref(),
        Some("invalid_scope")
    );
}
