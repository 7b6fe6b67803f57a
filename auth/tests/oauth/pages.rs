//! The pages as a browser meets them: CSRF on every form, wrong passwords, the sign-in limit,
//! cookie and framing headers, escaping, sign-out.

use p8fs_auth::oauth::NewClient;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, SET_COOKIE, X_FRAME_OPTIONS};

use crate::code::{REDIRECT, VERIFIER, challenge};
use crate::harness::{Harness, PASSWORD};

#[tokio::test]
async fn pages_cannot_be_framed_and_set_a_strict_cookie() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    let page = browser.get("/oauth/signin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.headers[X_FRAME_OPTIONS], "DENY");
    let csp = page.headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let cookie = page.headers[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "http issuer");
    assert!(page.body.contains("<html lang=\"en\">"));
    assert!(page.body.contains("<label for=\"username\">"));
    assert!(page.body.contains("action=\"/oauth/signin\""));
    assert!(page.body.contains("type=\"password\""));
    assert!(page.has_id("signin"));
    assert!(page.hidden("next").is_some());
    // The same session keeps its CSRF token across page loads.
    let again = browser.get("/oauth/signin").await;
    assert_eq!(again.csrf(), page.csrf());
}

#[tokio::test]
async fn sign_in_requires_the_sessions_csrf_token() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    let page = browser.get("/oauth/signin").await;
    let good = page.csrf();
    for csrf in [None, Some("wrong"), Some("")] {
        let mut form = vec![
            ("username", "alice"),
            ("password", PASSWORD),
            ("next", "/device"),
        ];
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let page = browser.post("/oauth/signin", &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(page.has_id("error"));
    }
    // A token of another session does not work either.
    let mut other = h.browser();
    let other_csrf = other.get("/oauth/signin").await.csrf();
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &other_csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // Without any session cookie the post is refused too.
    let mut fresh = h.browser();
    let page = fresh
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &good),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.has_id("error"));
}

#[tokio::test]
async fn signing_in_replaces_the_session() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    let page = browser.get("/oauth/signin").await;
    let before = browser.cookie.clone().unwrap();
    let signed_in = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert_ne!(browser.cookie.clone().unwrap(), before, "a new session id");
    // The old anonymous session id is gone.
    let mut stale = h.browser();
    stale.cookie = Some(before);
    let page = stale.get("/device").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn device_and_consent_forms_require_csrf() {
    let h = Harness::start().await;
    let (_, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    let page = browser
        .post(
            "/device",
            &[("user_code", &user_code), ("decision", "approve")],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.has_id("error"));
    let page = browser
        .post(
            "/device",
            &[
                ("user_code", &user_code),
                ("decision", "approve"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    crate::code::add_web_client(&h, "Web").await;
    let challenge = challenge(VERIFIER);
    let page = browser
        .post(
            "/oauth/authorize",
            &[
                ("response_type", "code"),
                ("client_id", "web"),
                ("redirect_uri", REDIRECT),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("decision", "approve"),
                ("csrf", "forged"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.location.is_none());
    assert!(page.has_id("error"));
}

#[tokio::test]
async fn wrong_passwords_and_the_sign_in_limit() {
    let h = Harness::start().await;
    let mut browser = h.browser();
    for _ in 0..10 {
        let form = browser.get("/oauth/signin").await;
        let page = browser
            .post(
                "/oauth/signin",
                &[
                    ("username", "alice"),
                    ("password", "wrong password"),
                    ("csrf", &form.csrf()),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.has_id("error"));
        assert!(
            page.body.contains("value=\"alice\""),
            "the username is kept"
        );
    }
    let form = browser.get("/oauth/signin").await;
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.has_id("error"));
    h.clock.advance(15 * 60 * 1000);
    let form = browser.get("/oauth/signin").await;
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    // Unknown users get the same answer as wrong passwords.
    let mut other = h.browser();
    let form = other.get("/oauth/signin").await;
    let page = other
        .post(
            "/oauth/signin",
            &[
                ("username", "nobody"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn names_are_escaped_and_next_cannot_leave_the_server() {
    let h = Harness::start().await;
    h.server
        .accounts()
        .add_client(NewClient {
            client_id: Some("xss".to_owned()),
            name: "<script>alert(1)</script>".to_owned(),
            confidential: false,
            redirect_uris: vec![],
            grant_types: vec![],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    let (status, body) = h
        .post("/oauth/device_authorization", &[("client_id", "xss")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let user_code = body["user_code"].as_str().unwrap();
    let mut browser = h.signed_in().await;
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"));
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    let mut anonymous = h.browser();
    for next in [
        "https://evil.example/",
        "//evil.example/device",
        "/device\\x",
        "/other",
    ] {
        let form = anonymous
            .get(&format!(
                "/oauth/signin?next={}",
                form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(form.hidden("next").as_deref(), Some("/device"), "{next}");
    }
    let form = anonymous.get("/oauth/signin").await;
    let page = anonymous
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(page.location.as_deref(), Some("/device"));
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let h = Harness::start().await;
    let mut browser = h.signed_in().await;
    let page = browser.get("/device").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let cookie = browser.cookie.clone();
    let page = browser.post("/oauth/signout", &[("csrf", "forged")]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = browser.post("/oauth/signout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has_id("result"));
    assert!(browser.cookie.is_none(), "the cookie is cleared");
    let mut replay = h.browser();
    replay.cookie = cookie;
    assert_eq!(replay.get("/device").await.status, StatusCode::SEE_OTHER);
}
