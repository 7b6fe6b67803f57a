//! Metadata, client credentials, the JWT-bearer grant with device keys, revocation,
//! introspection, dynamic registration and request limits.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p8fs_auth::oauth::NewClient;
use p8fs_auth::{Scope, ScopeSet};
use reqwest::StatusCode;
use serde_json::{Value, json};

use p8fs_core::Clock;

use crate::harness::{Harness, json_of, tenant};

pub(crate) fn s(value: &Value, name: &str) -> String {
    value[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn metadata_describes_the_server() {
    let h = Harness::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, doc) = json_of(h.http.get(h.url(path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(doc["issuer"], h.base);
        assert_eq!(doc["token_endpoint"], h.url("/oauth/token"));
        assert_eq!(doc["authorization_endpoint"], h.url("/oauth/authorize"));
        assert_eq!(
            doc["device_authorization_endpoint"],
            h.url("/oauth/device_authorization")
        );
        assert_eq!(doc["revocation_endpoint"], h.url("/oauth/revoke"));
        assert_eq!(doc["introspection_endpoint"], h.url("/oauth/introspect"));
        assert_eq!(doc["registration_endpoint"], h.url("/oauth/register"));
        assert_eq!(doc["jwks_uri"], h.url("/.well-known/jwks.json"));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        let grants = doc["grant_types_supported"].as_array().unwrap();
        for grant in [
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:jwt-bearer",
        ] {
            assert!(grants.contains(&json!(grant)), "{grant}");
        }
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post", "none"])
        );
    }
}

pub(crate) async fn service_client(h: &Harness, scope: &str) -> String {
    let created = h
        .server
        .accounts()
        .add_client(NewClient {
            client_id: Some("svc".to_owned()),
            name: "Service".to_owned(),
            confidential: true,
            redirect_uris: vec![],
            grant_types: vec!["client_credentials".to_owned()],
            scope: scope.to_owned(),
            tenant: Some("acme".to_owned()),
        })
        .await
        .unwrap();
    assert!(!format!("{created:?}").contains(created.client_secret.as_deref().unwrap()));
    created.client_secret.unwrap()
}

#[tokio::test]
async fn client_credentials_for_confidential_clients() {
    let h = Harness::start().await;
    let secret = service_client(&h, "kv:read admin").await;
    let (status, tokens) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.get("refresh_token").is_none());
    let principal = h
        .verifier
        .verify(&s(&tokens, "access_token"))
        .await
        .unwrap();
    assert_eq!(principal.tenant.as_str(), "acme");
    assert_eq!(principal.subject, "svc");
    assert_eq!(principal.scopes.to_string(), "admin kv:read");

    let (status, tokens) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("client_secret", &secret),
            ("scope", "kv:read kv:write"),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "client_secret_post");
    assert_eq!(tokens["scope"], "kv:read");

    let (status, body) = h
        .post_basic(
            "/oauth/token",
            "svc",
            "wrong",
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = h
        .token(&[("grant_type", "client_credentials"), ("client_id", "svc")])
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a confidential client needs its secret"
    );
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "p8fs-cli"),
        ])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unauthorized_client");
    let (_, body) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(
        body["error"], "invalid_request",
        "two authentication methods"
    );
}

pub(crate) struct Device {
    pub(crate) signing: SigningKey,
    pub(crate) kid: String,
}

impl Device {
    pub(crate) fn assertion(&self, h: &Harness, claims: Value) -> String {
        self.assertion_with(&self.kid, h, claims)
    }

    fn assertion_with(&self, kid: &str, h: &Harness, mut claims: Value) -> String {
        let now = h.clock.now() / 1000;
        let defaults = json!({
            "iss": "alice",
            "sub": "alice",
            "aud": h.url("/oauth/token"),
            "exp": now + 120,
            "iat": now,
            "jti": format!("jti-{}", rand_suffix()),
        });
        for (name, value) in defaults.as_object().unwrap() {
            if claims.get(name).is_none() {
                claims[name] = value.clone();
            }
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        let der = self.signing.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

pub(crate) async fn register_device(
    h: &Harness,
    access: &str,
    seed: u8,
) -> (StatusCode, Value, Device) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let public = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
    let response = h
        .http
        .post(h.url("/oauth/device-keys"))
        .bearer_auth(access)
        .json(&json!({"name": "phone", "public_key": public}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    let kid = body["kid"].as_str().unwrap_or_default().to_owned();
    (status, body, Device { signing, kid })
}

pub(crate) async fn bearer_grant(h: &Harness, assertion: &str) -> (StatusCode, Value) {
    h.token(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion),
    ])
    .await
}

#[tokio::test]
async fn jwt_bearer_with_registered_device_keys() {
    let h = Harness::start().await;
    let tokens = crate::device_keys::scoped_device_tokens(&h, "kv:read kv:write device-keys").await;
    let access = s(&tokens, "access_token");
    let (status, key, device) = register_device(&h, &access, 7).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    assert_eq!(key["client_id"], "p8fs-cli");
    assert_eq!(
        register_device(&h, &access, 7).await.0,
        StatusCode::CONFLICT
    );
    let (status, _) = json_of(
        h.http
            .post(h.url("/oauth/device-keys"))
            .json(&json!({"name": "x", "public_key": "AAAA"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let assertion = device.assertion(&h, json!({}));
    let (status, granted) = bearer_grant(&h, &assertion).await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert!(granted.get("refresh_token").is_none());
    let principal = h
        .verifier
        .verify(&s(&granted, "access_token"))
        .await
        .unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.tenant.as_str(), "acme");
    let (status, body) = bearer_grant(&h, &assertion).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "jti replay");

    let now = h.clock.now() / 1000;
    let bad = [
        device.assertion(&h, json!({"exp": now + 600})),
        device.assertion(&h, json!({"exp": now - 60})),
        device.assertion(&h, json!({"aud": "https://elsewhere.example"})),
        device.assertion(&h, json!({"iss": "bob"})),
        device.assertion(&h, json!({"sub": "bob"})),
        device.assertion(&h, json!({"nbf": now + 600})),
        device.assertion_with("unknown-kid", &h, json!({})),
        device.assertion(&h, json!({"jti": ""})),
        {
            let other = SigningKey::from_bytes(&[9; 32]);
            Device {
                signing: other,
                kid: device.kid.clone(),
            }
            .assertion(&h, json!({}))
        },
        {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(device.kid.clone());
            let claims = json!({"iss": "alice", "sub": "alice", "aud": h.base, "exp": now + 60, "jti": "hs"});
            jsonwebtoken::encode(
                &header,
                &claims,
                &EncodingKey::from_secret(device.kid.as_bytes()),
            )
            .unwrap()
        },
        "not-a-jwt".to_owned(),
    ];
    for assertion in bad {
        let (status, body) = bearer_grant(&h, &assertion).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    let ok = device.assertion(&h, json!({"aud": h.base}));
    assert_eq!(
        bearer_grant(&h, &ok).await.0,
        StatusCode::OK,
        "aud = issuer"
    );

    let (status, list) = json_of(
        h.http
            .get(h.url("/oauth/device-keys"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    let status = h
        .http
        .delete(h.url(&format!("/oauth/device-keys/{}", device.kid)))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "removed keys no longer work"
    );

    // A disabled user's keys stop working.
    let (_, _, device) = register_device(&h, &access, 8).await;
    h.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    let (_, body) = bearer_grant(&h, &device.assertion(&h, json!({}))).await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_tokens_do_not_pass_for_users_of_the_same_name() {
    let h = Harness::start().await;
    let secret = service_client(&h, "kv:read").await;
    h.server
        .accounts()
        .add_user(&tenant("acme"), "svc", "another password")
        .await
        .unwrap();
    let (_, tokens) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[("grant_type", "client_credentials")],
        )
        .await;
    let (status, body, _) = register_device(&h, &s(&tokens, "access_token"), 3).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn revocation() {
    let h = Harness::start().await;
    let tokens = h.device_tokens().await;
    let refresh = s(&tokens, "refresh_token");
    let access = s(&tokens, "access_token");
    // Another client cannot revoke them (and is still told 200).
    h.server
        .accounts()
        .add_client(NewClient {
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
    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[("token", &refresh), ("client_id", "other")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.verifier.verify(&access).await.is_ok());

    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[
                ("token", &refresh),
                ("token_type_hint", "refresh_token"),
                ("client_id", "p8fs-cli"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        h.verifier.verify(&access).await.is_err(),
        "the family's access token"
    );
    let (_, body) = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "p8fs-cli"),
        ])
        .await;
    assert_eq!(body["error"], "invalid_grant");

    let tokens = h.device_tokens().await;
    let access = s(&tokens, "access_token");
    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[("token", &access), ("client_id", "p8fs-cli")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.verifier.verify(&access).await.is_err());

    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[("token", "unknown"), ("client_id", "p8fs-cli")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "unknown tokens are answered 200");
    let (status, body) = h.post("/oauth/revoke", &[("token", "unknown")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn introspection() {
    let h = Harness::start().await;
    let secret = service_client(&h, "kv:read").await;
    let tokens = h.device_tokens().await;
    let introspect = |token: String| {
        let secret = secret.clone();
        let h = &h;
        async move {
            h.post_basic("/oauth/introspect", "svc", &secret, &[("token", &token)])
                .await
        }
    };
    let (status, body) = introspect(s(&tokens, "access_token")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "p8fs-cli");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["tenant"], "acme");
    let (_, body) = introspect(s(&tokens, "refresh_token")).await;
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");
    let (_, body) = introspect("garbage".to_owned()).await;
    assert_eq!(body, json!({"active": false}));

    // Public clients may not introspect; admin tokens may; other tokens may not.
    let (status, _) = h
        .post(
            "/oauth/introspect",
            &[
                ("token", &s(&tokens, "access_token")),
                ("client_id", "p8fs-cli"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let admin = h
        .issuer
        .issue(
            &tenant("acme"),
            "root",
            "admin-cli",
            &[Scope::Admin].into_iter().collect::<ScopeSet>(),
            Duration::from_secs(60),
        )
        .unwrap();
    let call = |bearer: String| {
        let h = &h;
        let token = s(&tokens, "access_token");
        async move {
            json_of(
                h.http
                    .post(h.url("/oauth/introspect"))
                    .bearer_auth(bearer)
                    .form(&[("token", token)])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (status, body) = call(admin.token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    let (status, _) = call(s(&tokens, "access_token")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // After the user is disabled, the refresh token is no longer active.
    h.server
        .accounts()
        .set_disabled("alice", true)
        .await
        .unwrap();
    let (_, body) = introspect(s(&tokens, "refresh_token")).await;
    assert_eq!(body["active"], false);
}

async fn register(h: &Harness, metadata: Value) -> (StatusCode, Value) {
    json_of(
        h.http
            .post(h.url("/oauth/register"))
            .json(&metadata)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn dynamic_registration_of_public_clients() {
    let h = Harness::start().await;
    let (status, client) = register(
        &h,
        json!({
            "client_name": "MCP <client>",
            "redirect_uris": ["http://127.0.0.1:7777/callback"],
            "token_endpoint_auth_method": "none",
            "logo_uri": "https://ignored.example/logo.png",
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    assert_eq!(client["token_endpoint_auth_method"], "none");
    assert_eq!(
        client["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert!(client.get("client_secret").is_none());
    let client_id = s(&client, "client_id");
    let clients = h.server.accounts().list_clients().await.unwrap();
    let stored = clients.iter().find(|c| c.client_id == client_id).unwrap();
    assert!(!stored.confidential);
    assert!(!stored.scope.contains("admin"));

    for (metadata, error) in [
        (
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb#x"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["authorization_code"]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": "nope"}), "invalid_client_metadata"),
    ] {
        let (status, body) = register(&h, metadata.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{metadata}");
        assert_eq!(body["error"], error, "{metadata}: {body}");
    }

    let off = Harness::start_with(|c| c.dynamic_registration = false).await;
    let (status, _) = register(&off, json!({"redirect_uris": ["https://a.example/cb"]})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, doc) = json_of(
        off.http
            .get(off.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(doc.get("registration_endpoint").is_none());
}

#[tokio::test]
async fn malformed_token_requests() {
    let h = Harness::start().await;
    let (status, body) = h
        .token(&[("grant_type", "password"), ("client_id", "p8fs-cli")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
    let (_, body) = h.token(&[("client_id", "p8fs-cli")]).await;
    assert_eq!(body["error"], "invalid_request");
    let response = h
        .http
        .post(h.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=client_credentials&client_id=p8fs-cli")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "repeated parameters");
    let response = h
        .http
        .post(h.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=refresh_token&refresh_token={}",
            "a".repeat(20_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = h
        .http
        .post(h.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn json_endpoints_allow_cross_origin_calls_and_pages_do_not() {
    let h = Harness::start().await;
    let preflight = |path: &str| {
        h.http
            .request(reqwest::Method::OPTIONS, h.url(path))
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    for path in ["/oauth/token", "/oauth/register", "/oauth/revoke"] {
        let response = preflight(path).await.unwrap();
        assert!(response.status().is_success(), "{path}");
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "{path}"
        );
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-credentials"),
            "{path}"
        );
    }
    let metadata = h
        .http
        .get(h.url("/.well-known/oauth-authorization-server"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.headers()["access-control-allow-origin"], "*");
    for path in ["/oauth/signin", "/device", "/oauth/authorize"] {
        let response = preflight(path).await.unwrap();
        assert!(
            !response
                .headers()
                .contains_key("access-control-allow-origin"),
            "{path} must not be callable cross-origin"
        );
    }
}

#[tokio::test]
async fn introspection_sees_only_the_callers_tenant() {
    let h = Harness::start().await;
    let tokens = h.device_tokens().await;
    let admin_of = |name: &str| {
        h.issuer
            .issue(
                &tenant(name),
                "root",
                "admin-cli",
                &[Scope::Admin].into_iter().collect::<ScopeSet>(),
                Duration::from_secs(60),
            )
            .unwrap()
            .token
    };
    let as_admin = |admin: String, token: String| {
        let h = &h;
        async move {
            json_of(
                h.http
                    .post(h.url("/oauth/introspect"))
                    .bearer_auth(admin)
                    .form(&[("token", token)])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for token in [s(&tokens, "access_token"), s(&tokens, "refresh_token")] {
        let (status, body) = as_admin(admin_of("acme"), token.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["active"], true, "{body}");
        let (status, body) = as_admin(admin_of("globex"), token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"active": false}), "another tenant's admin");
    }

    // A confidential client acting in another tenant does not see acme's tokens either; one
    // without a tenant (a resource server) sees every tenant's.
    for (client_id, tenant, active) in [("globex-svc", Some("globex"), false), ("rs", None, true)] {
        let created = h
            .server
            .accounts()
            .add_client(NewClient {
                client_id: Some(client_id.to_owned()),
                name: client_id.to_owned(),
                confidential: true,
                redirect_uris: vec![],
                grant_types: vec!["refresh_token".to_owned()],
                scope: String::new(),
                tenant: tenant.map(str::to_owned),
            })
            .await
            .unwrap();
        let secret = created.client_secret.unwrap();
        let (status, body) = h
            .post_basic(
                "/oauth/introspect",
                client_id,
                &secret,
                &[("token", &s(&tokens, "access_token"))],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["active"], active, "{client_id}: {body}");
    }
}
