//! Browser sessions: a password change or a disabled user ends every session of the user, and
//! anonymous visitors of the sign-in page cost the store nothing.

use p8fs_auth::RESERVED_TENANT;
use p8fs_core::{KeyPrefix, Limit};
use reqwest::StatusCode;

use crate::harness::{Harness, PASSWORD, tenant};

/// How many session records the store keeps.
async fn stored_sessions(h: &Harness) -> usize {
    let page =
        h.kv.scan(
            &tenant(RESERVED_TENANT),
            &KeyPrefix::new("oauth/session/").unwrap(),
            None,
            Limit::MAX,
        )
        .await
        .unwrap();
    page.items.len()
}

#[tokio::test]
async fn a_password_change_ends_every_browser_session_of_the_user() {
    let h = Harness::start().await;
    let mut first = h.signed_in().await;
    let mut second = h.signed_in().await;
    for browser in [&mut first, &mut second] {
        assert_eq!(browser.get("/device").await.status, StatusCode::OK);
    }
    h.server
        .accounts()
        .set_password("alice", "another good password")
        .await
        .unwrap();
    for browser in [&mut first, &mut second] {
        let page = browser.get("/device").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "treated as signed out");
        assert!(page.location.unwrap().starts_with("/oauth/signin"));
    }
    // Signing in with the new password works.
    let mut browser = h.browser();
    let form = browser.get("/oauth/signin").await;
    let page = browser
        .post(
            "/oauth/signin",
            &[
                ("username", "alice"),
                ("password", "another good password"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/device").await.status, StatusCode::OK);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_for_good() {
    let h = Harness::start().await;
    let mut browser = h.signed_in().await;
    h.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    h.server
        .accounts()
        .set_disabled("alice", false)
        .await
        .unwrap();
    let page = browser.get("/device").await;
    assert_eq!(
        page.status,
        StatusCode::SEE_OTHER,
        "enabling the user again does not bring the session back"
    );
    // The admin path does the same.
    let mut browser = h.signed_in().await;
    h.server.set_disabled("alice", true).await.unwrap();
    h.server.set_disabled("alice", false).await.unwrap();
    assert_eq!(browser.get("/device").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn anonymous_sign_in_pages_store_no_session() {
    let h = Harness::start().await;
    for _ in 0..20 {
        let mut browser = h.browser();
        let page = browser.get("/oauth/signin").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(browser.cookie.is_some(), "an anonymous session cookie");
        // Pages that need a signed-in user send anonymous visitors to sign in, storing nothing.
        assert_eq!(browser.get("/device").await.status, StatusCode::SEE_OTHER);
    }
    assert_eq!(stored_sessions(&h).await, 0);

    // The anonymous session still protects the form: its own token works, others do not.
    let mut browser = h.browser();
    let form = browser.get("/oauth/signin").await;
    let mut other = h.browser();
    let other_csrf = other.get("/oauth/signin").await.csrf();
    assert_ne!(form.csrf(), other_csrf);
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
    assert_eq!(stored_sessions(&h).await, 0);
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
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(stored_sessions(&h).await, 1, "only the signed-in session");
}
