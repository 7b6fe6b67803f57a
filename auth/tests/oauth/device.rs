//! The device authorization grant (RFC 8628) end to end: happy path, pending, slow_down,
//! denial, expiry, concurrent redemption, and the limit on guessed user codes.

use p8fs_auth::Scope;
use reqwest::StatusCode;

use crate::harness::{Harness, PASSWORD, json_of};

#[tokio::test]
async fn happy_path_issues_tokens_that_verify() {
    let h = Harness::start().await;
    let (device_code, user_code, body) = h.device_start(None).await;
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .chars()
            .filter(|c| *c != '-')
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c))
    );
    assert_eq!(body["verification_uri"], h.url("/device"));
    assert_eq!(
        body["verification_uri_complete"],
        format!("{}?user_code={user_code}", h.url("/device"))
    );
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["interval"], 5);
    assert!(device_code.len() >= 43);

    let (status, body) = h.device_poll(&device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");

    let mut browser = h.signed_in().await;
    browser.approve_device(&user_code).await;
    h.clock.advance(5_000);
    let (status, tokens) = h.device_poll(&device_code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 43);
    let principal = h
        .verifier
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(principal.tenant.as_str(), "acme");
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.client_id, "p8fs-cli");
    assert!(principal.scopes.contains(Scope::KvWrite));
    assert!(!principal.scopes.contains(Scope::Admin));
    assert_eq!(tokens["scope"], principal.scopes.to_string());

    h.clock.advance(5_000);
    let (status, body) = h.device_poll(&device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"], "invalid_grant",
        "a device code is redeemed once"
    );
}

#[tokio::test]
async fn verification_uri_complete_goes_through_sign_in_to_the_confirmation() {
    let h = Harness::start().await;
    let (device_code, user_code, body) = h.device_start(Some("kv:read")).await;
    let complete = body["verification_uri_complete"].as_str().unwrap();
    let path = complete.strip_prefix(&h.base).unwrap();
    let mut browser = h.browser();
    let redirect = browser.get(path).await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    let signin_path = redirect.location.unwrap();
    assert!(
        signin_path.starts_with("/oauth/signin?next="),
        "{signin_path}"
    );
    let form = browser.get(&signin_path).await;
    assert!(form.has_id("username") && form.has_id("password") && form.has_id("signin"));
    let next = form.hidden("next").unwrap();
    assert_eq!(next, format!("/device?user_code={user_code}"));
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
    assert_eq!(signed_in.location.as_deref(), Some(next.as_str()));
    let confirm = browser.get(&next).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(
        confirm.body.contains("p8fs command line"),
        "names the client"
    );
    assert!(
        confirm.body.contains("<code>kv:read</code>"),
        "lists the scopes"
    );
    assert!(!confirm.body.contains("<code>kv:write</code>"));
    let done = browser
        .post(
            "/device",
            &[
                ("user_code", &confirm.hidden("user_code").unwrap()),
                ("csrf", &confirm.csrf()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert!(done.has_id("result"));
    let (status, tokens) = h.device_poll(&device_code).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["scope"], "kv:read");
}

#[tokio::test]
async fn user_codes_are_case_and_dash_insensitive() {
    let h = Harness::start().await;
    let (_, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    let typed = user_code.replace('-', " ").to_lowercase();
    let confirm = browser
        .get(&format!("/device?user_code={}", typed.replace(' ', "+")))
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    assert!(confirm.has_id("approve"));
    assert_eq!(confirm.hidden("user_code").unwrap(), user_code);
}

#[tokio::test]
async fn polling_too_fast_slows_down_and_the_interval_is_remembered() {
    let h = Harness::start().await;
    let (device_code, _, _) = h.device_start(None).await;
    assert_eq!(
        h.device_poll(&device_code).await.1["error"],
        "authorization_pending"
    );
    h.clock.advance(1_000);
    let (_, body) = h.device_poll(&device_code).await;
    assert_eq!(body["error"], "slow_down");
    // The interval is now 10 s, counted from the last poll.
    h.clock.advance(6_000);
    assert_eq!(h.device_poll(&device_code).await.1["error"], "slow_down");
    h.clock.advance(16_000);
    assert_eq!(
        h.device_poll(&device_code).await.1["error"],
        "authorization_pending"
    );
    h.clock.advance(14_000);
    assert_eq!(
        h.device_poll(&device_code).await.1["error"],
        "slow_down",
        "15 s is now the interval"
    );
}

#[tokio::test]
async fn denied_requests_answer_access_denied() {
    let h = Harness::start().await;
    let (device_code, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    let result = browser.decide_device(&user_code, "deny").await;
    assert_eq!(result.status, StatusCode::OK);
    assert!(result.has_id("result"));
    assert!(result.body.contains("denied"));
    let (status, body) = h.device_poll(&device_code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied");
}

#[tokio::test]
async fn expired_device_codes_answer_expired_token() {
    let h = Harness::start().await;
    let (device_code, user_code, _) = h.device_start(None).await;
    h.clock.advance(601_000);
    let (_, body) = h.device_poll(&device_code).await;
    assert_eq!(body["error"], "expired_token");
    let mut browser = h.signed_in().await;
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.has_id("error"));
    let (_, body) = h.device_poll("not-a-device-code").await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_of_an_approved_code_get_exactly_one_token() {
    let h = Harness::start().await;
    let (device_code, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    browser.approve_device(&user_code).await;
    let mut polls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let http = h.http.clone();
        let url = h.url("/oauth/token");
        let device_code = device_code.clone();
        polls.spawn(async move {
            let response = http
                .post(url)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &device_code),
                    ("client_id", "p8fs-cli"),
                ])
                .send()
                .await
                .unwrap();
            json_of(response).await
        });
    }
    let results = polls.join_all().await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(ok, 1, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
    }
}

#[tokio::test]
async fn guessing_user_codes_is_limited_per_session() {
    let h = Harness::start().await;
    let (_, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    for guess in [
        "BBBB-BBBB",
        "BCDF-BCDF",
        "not a code",
        "ZZZZ-ZZZZ",
        "XXXX-XXXX",
    ] {
        let entry = browser.get("/device").await;
        let page = browser
            .post("/device", &[("user_code", guess), ("csrf", &entry.csrf())])
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{guess}");
        assert!(page.has_id("error"));
    }
    // Now even the right code is refused in this session.
    let entry = browser.get("/device").await;
    let page = browser
        .post(
            "/device",
            &[("user_code", &user_code), ("csrf", &entry.csrf())],
        )
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.has_id("error"));
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    // Another session is not affected; and the limit ends with its window.
    let mut other = h.signed_in().await;
    let page = other.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::OK);
    h.clock.advance(600_000);
    let (_, user_code, _) = h.device_start(None).await;
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
}

#[tokio::test]
async fn device_codes_belong_to_their_client() {
    let h = Harness::start().await;
    let created = h
        .server
        .accounts()
        .add_client(p8fs_auth::oauth::NewClient {
            client_id: Some("other".to_owned()),
            name: "Other".to_owned(),
            confidential: false,
            redirect_uris: vec![],
            grant_types: vec![],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
    assert!(created.client_secret.is_none());
    let (device_code, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    browser.approve_device(&user_code).await;
    let (status, body) = h
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code),
            ("client_id", "other"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = h
        .post("/oauth/device_authorization", &[("client_id", "nobody")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = h
        .post(
            "/oauth/device_authorization",
            &[("client_id", "p8fs-cli"), ("scope", "admin")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn starting_device_flows_is_limited_per_client_address_and_window() {
    let h = Harness::start().await;
    for _ in 0..p8fs_auth::oauth::DEVICE_AUTHORIZATIONS_PER_ADDRESS {
        h.device_start(None).await;
    }
    let form = [("client_id", "p8fs-cli")];
    let (status, body) = h.post("/oauth/device_authorization", &form).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    // The next window starts afresh.
    h.clock
        .advance(p8fs_auth::oauth::DEVICE_AUTHORIZATION_WINDOW.as_millis() as i64);
    h.device_start(None).await;
}
