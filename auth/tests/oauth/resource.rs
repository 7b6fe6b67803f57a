//! Resource indicators (RFC 8707): a token asked for a configured resource has it as its `aud`
//! and verifies only for it; unknown resources are `invalid_target` at every endpoint in that
//! endpoint's form; grants keep their resource through refreshes; and `iss` (RFC 9207) is on
//! every authorization response.

use reqwest::StatusCode;
use serde_json::Value;

use crate::code::{REDIRECT, VERIFIER, add_web_client, challenge, consent};
use crate::harness::{Harness, json_of};
use crate::other::{s, service_client};

fn mcp(h: &Harness) -> String {
    h.url("/mcp")
}

async fn start() -> Harness {
    let h = Harness::start_with(|config| {
        config.resources = vec![format!("{}/mcp", config.issuer)];
    })
    .await;
    add_web_client(&h, "Web app").await;
    h
}

fn authorize_path(extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", "web")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "st")
        .append_pair("scope", "kv:read")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    for (name, value) in extra {
        query.append_pair(name, value);
    }
    format!("/oauth/authorize?{}", query.finish())
}

fn param(location: &str, name: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn code_for(h: &Harness, resource: Option<&str>) -> String {
    let mut browser = h.signed_in().await;
    let extra: Vec<(&str, &str)> = resource.map(|r| ("resource", r)).into_iter().collect();
    let path = authorize_path(&extra);
    if let Some(resource) = resource {
        let page = browser.get(&path).await;
        assert!(page.has_id("resource"), "{}", page.body);
        assert!(page.body.contains(resource));
        assert_eq!(page.hidden("resource").as_deref(), Some(resource));
    }
    let location = consent(&mut browser, &path, "approve").await;
    assert_eq!(param(&location, "iss").as_deref(), Some(h.base.as_str()));
    assert_eq!(param(&location, "state").as_deref(), Some("st"));
    param(&location, "code").unwrap()
}

async fn exchange(h: &Harness, code: &str, resource: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "web"),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    h.token(&form).await
}

async fn refresh(h: &Harness, token: &str, resource: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "web"),
    ];
    if let Some(resource) = resource {
        form.push(("resource", resource));
    }
    h.token(&form).await
}

#[tokio::test]
async fn a_code_for_a_resource_gives_tokens_for_it_alone() {
    let h = start().await;
    let mcp = mcp(&h);
    let code = code_for(&h, Some(&mcp)).await;
    let (status, tokens) = exchange(&h, &code, Some(&mcp)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = s(&tokens, "access_token");
    assert_eq!(claims(&access)["aud"], mcp.as_str());
    let principal = h.verifier.verify_for(&access, &mcp).await.unwrap();
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.client_id, "web");
    let refused = h.verifier.verify(&access).await.unwrap_err();
    assert_eq!(refused.to_string(), "unauthorized: wrong audience");

    // A refresh keeps the resource, whether it is repeated or left out.
    let (status, next) = refresh(&h, &s(&tokens, "refresh_token"), None).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(claims(&s(&next, "access_token"))["aud"], mcp.as_str());
    let (status, next) = refresh(&h, &s(&next, "refresh_token"), Some(&mcp)).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    h.verifier
        .verify_for(&s(&next, "access_token"), &mcp)
        .await
        .unwrap();

    // Another resource, or an unknown one, is invalid_target; the refresh token stays good.
    let current = s(&next, "refresh_token");
    for other in [
        format!("{mcp}/"),
        "https://elsewhere.example/mcp".to_owned(),
    ] {
        let (status, body) = refresh(&h, &current, Some(&other)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_target", "{other}");
    }
    let (status, body) = refresh(&h, &current, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn without_a_resource_tokens_keep_the_default_audience() {
    let h = start().await;
    let mcp = mcp(&h);
    let code = code_for(&h, None).await;
    // Asking at the token endpoint for a resource the grant was not made for is refused.
    let (status, body) = exchange(&h, &code, Some(&mcp)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
    let code = code_for(&h, None).await;
    let (status, tokens) = exchange(&h, &code, None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = s(&tokens, "access_token");
    assert_eq!(claims(&access)["aud"], "p8fs");
    h.verifier.verify(&access).await.unwrap();
    assert!(h.verifier.verify_for(&access, &mcp).await.is_err());
    // Nor may a refresh of a default grant switch to the resource.
    let (status, body) = refresh(&h, &s(&tokens, "refresh_token"), Some(&mcp)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
}

#[tokio::test]
async fn unknown_resources_are_invalid_target_everywhere() {
    let h = start().await;
    let mut browser = h.signed_in().await;
    // At authorization: a redirect back with error, state and iss.
    for bad in [
        "https://elsewhere.example/mcp",
        "relative/path",
        "https://p8fs.example/mcp#frag",
    ] {
        let page = browser.get(&authorize_path(&[("resource", bad)])).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{bad}: {}", page.body);
        let location = page.location.unwrap();
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(param(&location, "error").as_deref(), Some("invalid_target"));
        assert_eq!(param(&location, "state").as_deref(), Some("st"));
        assert_eq!(param(&location, "iss").as_deref(), Some(h.base.as_str()));
        assert!(param(&location, "code").is_none());
    }
    // The configured resource with a trailing slash is another resource.
    let page = browser
        .get(&authorize_path(&[("resource", &format!("{}/", mcp(&h)))]))
        .await;
    assert_eq!(
        param(&page.location.unwrap(), "error").as_deref(),
        Some("invalid_target")
    );
    // One resource per request.
    let twice = format!(
        "{}&resource={}",
        authorize_path(&[("resource", &mcp(&h))]),
        form_urlencoded::byte_serialize(mcp(&h).as_bytes()).collect::<String>()
    );
    let page = browser.get(&twice).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("resource"), "{}", page.body);

    // At the token endpoint: JSON 400, before the code is burnt.
    let code = code_for(&h, Some(&mcp(&h))).await;
    let (status, body) = exchange(&h, &code, Some("https://elsewhere.example/mcp")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
    let (status, body) = exchange(&h, &code, Some(&mcp(&h))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // At device authorization.
    let (status, body) = h
        .post(
            "/oauth/device_authorization",
            &[
                ("client_id", "p8fs-cli"),
                ("resource", "https://elsewhere.example/mcp"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");

    // client_credentials.
    let secret = service_client(&h, "kv:read").await;
    let (status, body) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://elsewhere.example/mcp"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
}

#[tokio::test]
async fn the_device_flow_and_client_credentials_take_a_resource() {
    let h = start().await;
    let mcp = mcp(&h);
    let (status, started) = h
        .post(
            "/oauth/device_authorization",
            &[("client_id", "p8fs-cli"), ("resource", &mcp)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let mut browser = h.signed_in().await;
    browser.approve_device(&s(&started, "user_code")).await;
    let poll = |resource: Option<&'static str>| {
        let h = &h;
        let device_code = s(&started, "device_code");
        async move {
            let mut form = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", "p8fs-cli"),
            ];
            if let Some(resource) = resource {
                form.push(("resource", resource));
            }
            h.token(&form).await
        }
    };
    // A poll naming another resource is refused and leaves the device code as it was.
    let (status, body) = poll(Some("https://elsewhere.example/mcp")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_target");
    let (status, tokens) = poll(None).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access = s(&tokens, "access_token");
    assert_eq!(claims(&access)["aud"], mcp.as_str());
    h.verifier.verify_for(&access, &mcp).await.unwrap();
    assert!(h.verifier.verify(&access).await.is_err());

    // Introspection and revocation know tokens of every audience.
    let secret = service_client(&h, "kv:read").await;
    let (status, body) = h
        .post_basic("/oauth/introspect", "svc", &secret, &[("token", &access)])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["aud"], mcp.as_str());
    let (status, _) = h
        .post(
            "/oauth/revoke",
            &[("token", access.as_str()), ("client_id", "p8fs-cli")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let e = h.verifier.verify_for(&access, &mcp).await.unwrap_err();
    assert_eq!(e.to_string(), "unauthorized: token revoked");

    // client_credentials: the resource of the request.
    let (status, tokens) = h
        .post_basic(
            "/oauth/token",
            "svc",
            &secret,
            &[("grant_type", "client_credentials"), ("resource", &mcp)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    h.verifier
        .verify_for(&s(&tokens, "access_token"), &mcp)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_authorization_response_carries_iss() {
    let h = start().await;
    let (status, doc) = json_of(
        h.http
            .get(h.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["client_id_metadata_document_supported"], true);
    let mut browser = h.signed_in().await;
    // Success and denial.
    let approved = consent(&mut browser, &authorize_path(&[]), "approve").await;
    let denied = consent(&mut browser, &authorize_path(&[]), "deny").await;
    assert_eq!(param(&denied, "error").as_deref(), Some("access_denied"));
    let mut locations = vec![approved, denied];
    // Every error redirected before consent.
    for extra in [
        vec![("scope", "nonsense")],
        vec![("code_challenge_method", "plain")],
        vec![("resource", "https://elsewhere.example/")],
    ] {
        let mut path = authorize_path(&[]);
        for (name, value) in &extra {
            path = path.replace(&format!("&{name}="), &format!("&ignored_{name}="));
            path.push_str(&format!(
                "&{name}={}",
                form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
            ));
        }
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}: {}", page.body);
        locations.push(page.location.unwrap());
    }
    let wrong_type = authorize_path(&[]).replace("response_type=code", "response_type=token");
    let page = browser.get(&wrong_type).await;
    locations.push(page.location.unwrap());
    for location in &locations {
        assert!(location.starts_with(REDIRECT), "{location}");
        assert_eq!(
            param(location, "iss").as_deref(),
            Some(h.base.as_str()),
            "{location}"
        );
    }
    assert_eq!(
        locations
            .iter()
            .filter(|l| param(l, "error").is_some())
            .count(),
        5
    );
}
