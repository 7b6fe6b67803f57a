//! Device keys are not a backdoor: they need the `device-keys` scope, which only an interactive
//! sign-in grants; they die with their client and with a password change or a disabled user;
//! and the access tokens obtained with them are revoked with them.

use p8fs_auth::oauth::{NewClient, Revoked};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Harness, json_of};
use crate::other::{bearer_grant, register_device, s, service_client};

/// Runs the device flow for `client_id` with `scope`, approved by alice on the pages.
pub(crate) async fn device_tokens_for(h: &Harness, client_id: &str, scope: &str) -> Value {
    let (status, started) = h
        .post(
            "/oauth/device_authorization",
            &[("client_id", client_id), ("scope", scope)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let mut browser = h.signed_in().await;
    browser.approve_device(&s(&started, "user_code")).await;
    let (status, tokens) = h
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &s(&started, "device_code")),
            ("client_id", client_id),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    tokens
}

/// Device-flow tokens of `p8fs-cli` with `scope`.
pub(crate) async fn scoped_device_tokens(h: &Harness, scope: &str) -> Value {
    device_tokens_for(h, "p8fs-cli", scope).await
}

async fn list_keys(h: &Harness, access: &str) -> (StatusCode, Value) {
    json_of(
        h.http
            .get(h.url("/oauth/device-keys"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete_key(h: &Harness, access: &str, kid: &str) -> StatusCode {
    h.http
        .delete(h.url(&format!("/oauth/device-keys/{kid}")))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

async fn add_tool_client(h: &Harness) {
    h.server
        .accounts()
        .add_client(NewClient {
            client_id: Some("tool".to_owned()),
            name: "Tool".to_owned(),
            confidential: false,
            redirect_uris: vec![],
            grant_types: vec![],
            scope: String::new(),
            tenant: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn only_an_interactively_granted_scope_manages_device_keys() {
    let h = Harness::start().await;
    // A token of an ordinary sign-in (no scope asked for) has every scope but device-keys.
    let plain = h.device_tokens().await;
    assert!(!s(&plain, "scope").contains("device-keys"), "{plain}");
    let access = s(&plain, "access_token");
    let (status, body, _) = register_device(&h, &access, 1).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(list_keys(&h, &access).await.0, StatusCode::FORBIDDEN);

    // Asked for by name, the user sees it on the device page and grants it.
    let (_, user_code, _) = h.device_start(Some("kv:read device-keys")).await;
    let mut browser = h.signed_in().await;
    let confirm = browser.get(&format!("/device?user_code={user_code}")).await;
    assert!(
        confirm.body.contains("<code>device-keys</code>"),
        "{}",
        confirm.body
    );
    let granted = scoped_device_tokens(&h, "kv:read device-keys").await;
    assert_eq!(granted["scope"], "device-keys kv:read");
    let access = s(&granted, "access_token");
    let (status, key, device) = register_device(&h, &access, 2).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["scope"], "kv:read", "a key never carries device-keys");
    // A refresh of that family keeps it; a refresh of the plain family cannot add it.
    let (status, refreshed) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&granted, "refresh_token")),
            ("client_id", "p8fs-cli"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["scope"], "device-keys kv:read");
    let (_, widened) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&plain, "refresh_token")),
            ("client_id", "p8fs-cli"),
            ("scope", "kv:read device-keys"),
        ])
        .await;
    assert_eq!(widened["scope"], "kv:read", "{widened}");
    let (status, body, _) = register_device(&h, &s(&widened, "access_token"), 3).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Tokens from a device key cannot manage device keys.
    let (status, minted) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    assert!(!s(&minted, "scope").contains("device-keys"));
    let (status, _, _) = register_device(&h, &s(&minted, "access_token"), 4).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = h
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &device.assertion(&h, json!({}))),
            ("scope", "device-keys"),
        ])
        .await;
    assert_eq!(body["error"], "invalid_scope", "{body}");
    assert_eq!(
        delete_key(&h, &s(&minted, "access_token"), &device.kid).await,
        StatusCode::FORBIDDEN
    );

    // Neither can client credentials, whatever the client was registered with.
    let secret = service_client(&h, "kv:read device-keys").await;
    let (_, body) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "device-keys"),
            ],
        )
        .await;
    assert_eq!(body["error"], "invalid_scope", "{body}");
    let (_, body) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(body["scope"], "kv:read", "{body}");
}

#[tokio::test]
async fn removing_a_client_removes_its_device_keys_and_their_tokens() {
    let h = Harness::start().await;
    add_tool_client(&h).await;
    let tokens = device_tokens_for(&h, "tool", "kv:read device-keys").await;
    let (status, key, device) = register_device(&h, &s(&tokens, "access_token"), 5).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["client_id"], "tool");
    let (status, minted) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let minted = s(&minted, "access_token");
    assert!(h.verifier.verify(&minted).await.is_ok());

    let revoked = h.server.remove_client("tool").await.unwrap();
    assert_eq!(
        revoked,
        Some(Revoked {
            families: 1,
            device_keys: 1
        })
    );
    assert!(h.verifier.verify(&minted).await.is_err(), "the key's token");
    assert!(
        h.verifier
            .verify(&s(&tokens, "access_token"))
            .await
            .is_err(),
        "the family's token"
    );
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(h.server.remove_client("tool").await.unwrap(), None);
}

#[tokio::test]
async fn a_device_key_does_not_outlive_its_client() {
    let h = Harness::start().await;
    add_tool_client(&h).await;
    let tokens = device_tokens_for(&h, "tool", "kv:read device-keys").await;
    let (_, _, device) = register_device(&h, &s(&tokens, "access_token"), 6).await;
    // Removed through the accounts alone (no clean-up), the client's key stops working...
    assert!(h.server.accounts().remove_client("tool").await.unwrap());
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    // ...and a new client under the same id does not inherit it.
    h.clock.advance(1);
    add_tool_client(&h).await;
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn a_password_change_or_disabling_ends_device_keys_and_their_tokens() {
    let h = Harness::start().await;
    let tokens = scoped_device_tokens(&h, "kv:read device-keys").await;
    let (_, _, device) = register_device(&h, &s(&tokens, "access_token"), 7).await;
    let (status, minted) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let minted = s(&minted, "access_token");

    let revoked = h
        .server
        .set_password("alice", "another good password")
        .await
        .unwrap();
    assert_eq!(
        revoked,
        Revoked {
            families: 1,
            device_keys: 1
        }
    );
    assert!(h.verifier.verify(&minted).await.is_err());
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant");

    // A password set through the accounts alone still stops the keys registered before.
    let h = Harness::start().await;
    let tokens = scoped_device_tokens(&h, "kv:read device-keys").await;
    let (_, _, device) = register_device(&h, &s(&tokens, "access_token"), 8).await;
    h.server
        .accounts()
        .set_password("alice", "another good password")
        .await
        .unwrap();
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // Disabled and enabled again, the user's keys stay dead.
    let h = Harness::start().await;
    let tokens = scoped_device_tokens(&h, "kv:read device-keys").await;
    let (_, _, device) = register_device(&h, &s(&tokens, "access_token"), 9).await;
    let (_, minted) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    let minted = s(&minted, "access_token");
    h.server.set_disabled("alice", true).await.unwrap();
    assert!(h.verifier.verify(&minted).await.is_err());
    assert_eq!(
        h.server.set_disabled("alice", false).await.unwrap(),
        Revoked::default()
    );
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let h2 = Harness::start().await;
    let tokens = scoped_device_tokens(&h2, "kv:read device-keys").await;
    let (_, _, device) = register_device(&h2, &s(&tokens, "access_token"), 10).await;
    h2.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    h2.server
        .accounts()
        .set_disabled("alice", false)
        .await
        .unwrap();
    let (_, body) = bearer_grant(&h2, &device.assertion(&h2, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test]
async fn every_token_a_device_key_obtained_is_revoked_with_it() {
    let h = Harness::start().await;
    let tokens = scoped_device_tokens(&h, "kv:read device-keys").await;
    let access = s(&tokens, "access_token");
    let (_, _, device) = register_device(&h, &access, 11).await;
    let mut minted = Vec::new();
    for _ in 0..40 {
        let (status, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        minted.push(s(&body, "access_token"));
    }
    let live = {
        let mut live = 0;
        for token in &minted {
            live += usize::from(h.verifier.verify(token).await.is_ok());
        }
        live
    };
    assert_eq!(live, 32, "beyond 32 live tokens the oldest are revoked");
    assert_eq!(
        delete_key(&h, &access, &device.kid).await,
        StatusCode::NO_CONTENT
    );
    for token in &minted {
        assert!(h.verifier.verify(token).await.is_err());
    }
}
