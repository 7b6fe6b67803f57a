//! The HTTP surface of the authorization server: the routes, and the JSON endpoints (token,
//! device authorization, revocation, introspection, registration, metadata, device keys). The
//! pages are in `pages.rs`.
//!
//! Client authentication: the token, device authorization and revocation endpoints take
//! `client_secret_basic`, `client_secret_post` or (public clients) `client_id` alone; the
//! JWT-bearer grant needs none (the assertion authenticates the device). Introspection takes an
//! authenticated *confidential* client, or an `Authorization: Bearer` access token with the
//! `admin` scope. An admin token, and a confidential client that acts in a tenant, see only the
//! tokens of that tenant (others are `{"active": false}`); a confidential client without a
//! tenant (a resource server an administrator registered) sees every tenant's. No access token
//! is ever issued for the reserved tenant, so there is no server-wide admin token. Revocation and
//! introspection know access tokens of every audience the server issues for (the default one and
//! the configured resources, RFC 8707); bearer tokens of the device-key endpoints and of
//! introspection must carry the default audience. The token endpoint (every grant) and device
//! authorization take a `resource` parameter (see `resource.rs`). Bodies are limited to
//! [`super::MAX_FORM_BYTES`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use p8fs_core::ErrorKind;
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};

use super::client_auth::{authenticate, check, presented};
use super::device_keys::{DeviceKey, NewDeviceKey};
use super::limits::ClientAddress;
use super::pages;
use super::tokens::TokenResponse;
use super::wire::{OAuthError, json_no_store, read_body, read_form, read_json};
use super::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN, OAuthServer,
};
use crate::bearer_token;
use crate::principal::Principal;
use crate::scope::Scope;

type Server = State<Arc<OAuthServer>>;

/// Every OAuth route, with the server as state.
///
/// The JSON endpoints answer cross-origin requests from any origin (CORS without credentials),
/// so browser applications can run the code flow with PKCE and register themselves: they
/// authenticate with what they send, never with cookies. The pages, which rely on the session
/// cookie, get no CORS headers.
pub fn router(server: Arc<OAuthServer>) -> Router {
    let api = Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/oauth/device_authorization", post(device_authorization))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/register", post(register))
        .route(
            "/oauth/device-keys",
            get(list_device_keys).post(add_device_key),
        )
        .route("/oauth/device-keys/{kid}", delete(remove_device_key))
        .layer(cors());
    Router::new()
        .route(
            "/oauth/authorize",
            get(pages::authorize_page).post(pages::authorize_decision),
        )
        .route(
            "/oauth/signin",
            get(pages::signin_page).post(pages::signin_submit),
        )
        .route("/oauth/signout", post(pages::signout))
        .route(
            "/device",
            get(pages::device_page).post(pages::device_submit),
        )
        .merge(api)
        .with_state(server)
}

/// CORS for endpoints that take no cookies: any origin, no credentials.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(3600))
}

async fn metadata(State(server): Server) -> Response {
    axum::Json(server.metadata()).into_response()
}

fn respond<T: serde::Serialize>(result: Result<T, OAuthError>) -> Response {
    match result {
        Ok(body) => json_no_store(StatusCode::OK, &body),
        Err(error) => error.into_response(),
    }
}

async fn device_authorization(
    State(server): Server,
    address: ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let params = read_form(&headers, body).await?;
            let client = authenticate(&server, &headers, &params).await?;
            server
                .start_device_flow(
                    &client,
                    params.get("scope"),
                    params.get("resource"),
                    address,
                )
                .await
        }
        .await,
    )
}

async fn token(State(server): Server, headers: HeaderMap, body: Body) -> Response {
    respond(token_grant(&server, &headers, body).await)
}

async fn token_grant(
    server: &OAuthServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<TokenResponse, OAuthError> {
    let params = read_form(headers, body).await?;
    let grant_type = params.require("grant_type")?;
    if grant_type == GRANT_JWT_BEARER {
        // The assertion authenticates the device; credentials, if sent, must still be right.
        if let Some(presented) = presented(headers, &params)? {
            check(server, presented).await?;
        }
        let assertion = params.require("assertion")?;
        return server
            .jwt_bearer(assertion, params.get("scope"), params.get("resource"))
            .await;
    }
    if ![
        GRANT_DEVICE_CODE,
        GRANT_AUTHORIZATION_CODE,
        GRANT_REFRESH_TOKEN,
        GRANT_CLIENT_CREDENTIALS,
    ]
    .contains(&grant_type)
    {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "the grant_type is not supported",
        ));
    }
    let client = authenticate(server, headers, &params).await?;
    match grant_type {
        GRANT_DEVICE_CODE => {
            server
                .poll_device(
                    &client,
                    params.require("device_code")?,
                    params.get("resource"),
                )
                .await
        }
        GRANT_AUTHORIZATION_CODE => server.exchange_code(&client, &params).await,
        GRANT_REFRESH_TOKEN => {
            server
                .refresh(
                    &client,
                    params.require("refresh_token")?,
                    params.get("scope"),
                    params.get("resource"),
                )
                .await
        }
        _ => server.client_credentials(&client, params.get("scope"), params.get("resource")),
    }
}

/// RFC 7009: revokes a refresh token (its whole family) or an access token issued to the
/// authenticated client. Unknown tokens and tokens of other clients are answered 200 too.
async fn revoke(State(server): Server, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let params = read_form(&headers, body).await?;
        let client = authenticate(&server, &headers, &params).await?;
        let token = params.require("token")?;
        if let Some((family, _)) = server.family_of_refresh(token).await? {
            if family.client_id == client.info.client_id {
                server.revoke_family(&family.id).await?;
            }
            return Ok(());
        }
        if let Some((principal, _)) = verified_any(&server, token).await?
            && principal.client_id == client.info.client_id
        {
            server
                .verifier
                .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
                .await?;
        }
        Ok::<(), OAuthError>(())
    }
    .await;
    match result {
        Ok(()) => json_no_store(StatusCode::OK, &json!({})),
        Err(error) => error.into_response(),
    }
}

/// The principal of a valid access token; `None` for any token that does not verify.
async fn verified(server: &OAuthServer, token: &str) -> Result<Option<Principal>, OAuthError> {
    match server.verifier.verify(token).await {
        Ok(principal) => Ok(Some(principal)),
        Err(e) if e.kind() == ErrorKind::Unauthorized => Ok(None),
        Err(e) => Err(OAuthError::server(e)),
    }
}

/// The principal and audience of a valid access token for any audience this server issues
/// for (the default one and the resources); `None` for any token that does not verify.
async fn verified_any(
    server: &OAuthServer,
    token: &str,
) -> Result<Option<(Principal, String)>, OAuthError> {
    match server.verifier.verify_any(token, &server.audiences()).await {
        Ok(verified) => Ok(Some(verified)),
        Err(e) if e.kind() == ErrorKind::Unauthorized => Ok(None),
        Err(e) => Err(OAuthError::server(e)),
    }
}

/// RFC 7662.
async fn introspect(State(server): Server, headers: HeaderMap, body: Body) -> Response {
    respond(introspection(&server, &headers, body).await)
}

async fn introspection(
    server: &OAuthServer,
    headers: &HeaderMap,
    body: Body,
) -> Result<Value, OAuthError> {
    let params = read_form(headers, body).await?;
    // The tenant whose tokens the caller may see; `None`: every tenant's.
    let visible: Option<String> = if let Some(bearer) = bearer_token(headers) {
        let caller = verified(server, bearer)
            .await?
            .ok_or_else(|| OAuthError::invalid_token("the bearer token is not valid"))?;
        if !caller.scopes.contains(Scope::Admin) {
            return Err(OAuthError::insufficient_scope(
                "introspection needs a token with the admin scope",
            ));
        }
        Some(caller.tenant.as_str().to_owned())
    } else {
        let client = authenticate(server, headers, &params).await?;
        if !client.info.confidential {
            return Err(OAuthError::invalid_client(
                "introspection needs a confidential client or an admin token",
            ));
        }
        client.info.tenant
    };
    let may_see = |tenant: &str| visible.as_deref().is_none_or(|v| v == tenant);
    let token = params.require("token")?;
    if let Some((principal, audience)) = verified_any(server, token).await?
        && may_see(principal.tenant.as_str())
    {
        return Ok(json!({
            "active": true,
            "token_type": "Bearer",
            "scope": principal.scopes.to_string(),
            "client_id": principal.client_id,
            "username": principal.subject,
            "sub": principal.subject,
            "exp": principal.expires_at.div_euclid(1000),
            "iss": server.config.issuer,
            "aud": audience,
            "jti": principal.token_id,
            "tenant": principal.tenant.as_str(),
        }));
    }
    if let Some((family, current)) = server.family_of_refresh(token).await?
        && current
        && may_see(&family.tenant)
        && !family.revoked
        && server.store.now() < family.expires_at
    {
        let user_ok = match &family.username {
            Some(username) => server
                .accounts
                .user(username)
                .await?
                .is_some_and(|u| !u.disabled),
            None => true,
        };
        if user_ok {
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": family.scope,
                "client_id": family.client_id,
                "username": family.subject,
                "sub": family.subject,
                "exp": family.expires_at.div_euclid(1000),
                "iat": family.created_at.div_euclid(1000),
                "iss": server.config.issuer,
                "tenant": family.tenant,
            }));
        }
    }
    Ok(json!({"active": false}))
}

/// RFC 7591.
async fn register(
    State(server): Server,
    address: ClientAddress,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let content_type_ok = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !content_type_ok {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                "the body must be application/json",
            ));
        }
        let body = read_body(body).await?;
        server.register_client(&body, address).await
    }
    .await;
    match result {
        Ok(body) => json_no_store(StatusCode::CREATED, &body),
        Err(error) => error.into_response(),
    }
}

async fn caller(server: &OAuthServer, headers: &HeaderMap) -> Result<Principal, OAuthError> {
    let token = bearer_token(headers)
        .ok_or_else(|| OAuthError::invalid_token("a bearer access token is required"))?;
    verified(server, token)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the bearer token is not valid"))
}

fn device_key_json(key: &DeviceKey) -> Value {
    json!({
        "kid": key.kid,
        "name": key.name,
        "public_key": key.public_key,
        "client_id": key.client_id,
        "scope": key.scope,
        "created_at": key.created_at,
    })
}

async fn add_device_key(State(server): Server, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let principal = caller(&server, &headers).await?;
        let new: NewDeviceKey = read_json(&headers, body).await?;
        server.add_device_key(&principal, new).await
    }
    .await;
    match result {
        Ok(key) => json_no_store(StatusCode::CREATED, &device_key_json(&key)),
        Err(error) => error.into_response(),
    }
}

async fn list_device_keys(State(server): Server, headers: HeaderMap) -> Response {
    respond(
        async {
            let principal = caller(&server, &headers).await?;
            let keys = server.list_device_keys(&principal).await?;
            Ok(json!({"keys": keys.iter().map(device_key_json).collect::<Vec<_>>()}))
        }
        .await,
    )
}

async fn remove_device_key(
    State(server): Server,
    Path(kid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let principal = caller(&server, &headers).await?;
        server.remove_device_key(&principal, &kid).await
    }
    .await;
    match result {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => OAuthError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such device key of this user",
        )
        .into_response(),
        Err(error) => error.into_response(),
    }
}
