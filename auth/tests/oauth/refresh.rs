//! Refresh tokens: rotation on every use, reuse revoking the whole family (access tokens
//! included), scope narrowing, client binding, and users disabled after the grant.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Harness, PASSWORD};

async fn refresh(h: &Harness, token: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "p8fs-cli"),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    h.token(&form).await
}

fn s(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn rotation_and_reuse_revoke_the_family() {
    let h = Harness::start().await;
    let first = h.device_tokens().await;
    let (status, second) = refresh(&h, &s(&first, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_ne!(s(&second, "refresh_token"), s(&first, "refresh_token"));
    assert_ne!(s(&second, "access_token"), s(&first, "access_token"));
    let (status, third) = refresh(&h, &s(&second, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::OK);
    for tokens in [&first, &second, &third] {
        assert!(h.verifier.verify(&s(tokens, "access_token")).await.is_ok());
    }

    // The first refresh token was rotated away: presenting it again is reuse.
    let (status, body) = refresh(&h, &s(&first, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let (_, body) = refresh(&h, &s(&third, "refresh_token"), None).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "the whole family is revoked"
    );
    for tokens in [&first, &second, &third] {
        assert!(
            h.verifier.verify(&s(tokens, "access_token")).await.is_err(),
            "the family's access tokens are revoked"
        );
    }
    // Another family of the same user is unaffected.
    let other = h.device_tokens().await;
    assert_eq!(
        refresh(&h, &s(&other, "refresh_token"), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_of_one_refresh_token_count_as_reuse() {
    let h = Harness::start().await;
    let first = h.device_tokens().await;
    let token = s(&first, "refresh_token");
    let (a, b) = tokio::join!(refresh(&h, &token, None), refresh(&h, &token, None));
    let ok = [&a, &b]
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{a:?} {b:?}");
    let winner = if a.0 == StatusCode::OK { &a.1 } else { &b.1 };
    // The loser's attempt revoked the family, including the winner's tokens.
    let (_, body) = refresh(&h, &s(winner, "refresh_token"), None).await;
    assert_eq!(body["error"], "invalid_grant");
    assert!(h.verifier.verify(&s(winner, "access_token")).await.is_err());
}

#[tokio::test]
async fn refresh_may_narrow_but_not_widen_the_scope() {
    let h = Harness::start().await;
    let first = h.device_tokens().await;
    let (status, narrowed) = refresh(&h, &s(&first, "refresh_token"), Some("kv:read")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(narrowed["scope"], "kv:read");
    let (status, body) = refresh(&h, &s(&narrowed, "refresh_token"), Some("admin")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_scope");
}

#[tokio::test]
async fn refresh_tokens_belong_to_their_client() {
    let h = Harness::start().await;
    h.server
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
    let first = h.device_tokens().await;
    let (_, body) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&first, "refresh_token")),
            ("client_id", "other"),
        ])
        .await;
    assert_eq!(body["error"], "invalid_grant");
    let (_, body) = refresh(&h, "garbage", None).await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn disabled_users_cannot_sign_in_or_refresh() {
    let h = Harness::start().await;
    let tokens = h.device_tokens().await;
    h.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    let (status, body) = refresh(&h, &s(&tokens, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    let mut browser = h.browser();
    let form = browser.get("/oauth/signin").await;
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
                ("next", "/device"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.has_id("error"));
    assert!(page.body.contains("disabled"));

    // Re-enabled, the same (never rotated) refresh token works again.
    h.server
        .accounts()
        .set_disabled("alice", false)
        .await
        .unwrap();
    assert_eq!(
        refresh(&h, &s(&tokens, "refresh_token"), None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_session_of_a_user_disabled_later_cannot_approve() {
    let h = Harness::start().await;
    let (device_code, user_code, _) = h.device_start(None).await;
    let mut browser = h.signed_in().await;
    h.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    let page = browser.get(&format!("/device?user_code={user_code}")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "treated as signed out");
    assert_eq!(
        h.device_poll(&device_code).await.1["error"],
        "authorization_pending"
    );
}

#[tokio::test]
async fn revoking_a_users_tokens_ends_every_family_and_its_access_tokens() {
    let h = Harness::start().await;
    let first = h.device_tokens().await;
    let second = h.device_tokens().await;
    let revoked = h.server.revoke_user_tokens("alice").await.unwrap();
    assert_eq!(revoked, 2);
    for tokens in [&first, &second] {
        let (status, body) = refresh(&h, &s(tokens, "refresh_token"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
        assert!(h.verifier.verify(&s(tokens, "access_token")).await.is_err());
    }
    assert_eq!(h.server.revoke_user_tokens("alice").await.unwrap(), 0);
    assert_eq!(h.server.revoke_user_tokens("nobody").await.unwrap(), 0);
}

#[tokio::test]
async fn a_family_refreshed_more_than_32_times_still_revokes_every_access_token() {
    let h = Harness::start().await;
    let first = h.device_tokens().await;
    let mut access = vec![s(&first, "access_token")];
    let mut current = s(&first, "refresh_token");
    for _ in 0..40 {
        let (status, next) = refresh(&h, &current, None).await;
        assert_eq!(status, StatusCode::OK, "{next}");
        access.push(s(&next, "access_token"));
        current = s(&next, "refresh_token");
    }
    // Reuse of the first refresh token revokes the family.
    let (_, body) = refresh(&h, &s(&first, "refresh_token"), None).await;
    assert_eq!(body["error"], "invalid_grant");
    for (i, token) in access.iter().enumerate() {
        assert!(
            h.verifier.verify(token).await.is_err(),
            "access token {i} of the family is still valid"
        );
    }
}
