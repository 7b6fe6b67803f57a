//! Dynamic client registration (RFC 7591), for public clients only.
//!
//! Accepted metadata: `redirect_uris`, `client_name`, `grant_types` (authorization_code,
//! refresh_token and the device code grant), `response_types` (`["code"]` only),
//! `token_endpoint_auth_method` (`none` only), `scope` (without `admin`), and informational
//! fields that are ignored (`client_uri`, `logo_uri`, `contacts`, `software_id`,
//! `software_version`, ...). Defaults: authorization_code + refresh_token when redirect URIs are
//! given, else the device code grant + refresh_token; every scope but `admin`. Errors are
//! `invalid_redirect_uri` / `invalid_client_metadata` JSON (RFC 7591 3.2.2).
//!
//! Redirect URIs of self-registered clients: `http` on `127.0.0.1`, `[::1]` or `localhost` (any
//! port may be used at authorization, RFC 8252 7.3) and private-use schemes named after a
//! reversed domain name (`com.example.app:/cb`, RFC 8252 7.1) for native apps, and `https`.
//! Authorization errors are never redirected automatically to the https URI of a
//! self-registered client (see `flows.rs`). Registrations are limited to
//! [`REGISTRATIONS_PER_ADDRESS`] per client address and [`REGISTRATIONS_PER_WINDOW`]
//! server-wide per [`REGISTRATION_WINDOW`]; a client that obtains no token within
//! [`DYNAMIC_CLIENT_UNUSED_TTL`](super::limits::DYNAMIC_CLIENT_UNUSED_TTL) is forgotten.
//! With `dynamic_registration = false` the endpoint answers 403.

use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::{NewClient, check_redirect_uri, user_scopes};
use super::flows::is_native_redirect;
use super::limits::{
    ClientAddress, REGISTRATION_WINDOW, REGISTRATIONS_PER_ADDRESS, REGISTRATIONS_PER_WINDOW,
};
use super::wire::OAuthError;
use super::{GRANT_AUTHORIZATION_CODE, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN, OAuthServer};
use crate::scope::ScopeSet;

/// Client metadata of a registration request.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ClientMetadata {
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
}

fn metadata_error(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        description,
    )
}

impl OAuthServer {
    /// Registers a public client; the response body of RFC 7591 3.2.1.
    pub(crate) async fn register_client(
        &self,
        body: &[u8],
        address: ClientAddress,
    ) -> Result<Value, OAuthError> {
        if !self.config.dynamic_registration {
            return Err(OAuthError::new(
                StatusCode::FORBIDDEN,
                "access_denied",
                "dynamic client registration is disabled on this server",
            ));
        }
        let metadata: ClientMetadata = serde_json::from_slice(body)
            .map_err(|e| metadata_error(format!("the body is not valid client metadata: {e}")))?;
        if let Some(method) = &metadata.token_endpoint_auth_method
            && method != "none"
        {
            return Err(metadata_error(
                "only public clients may register: token_endpoint_auth_method must be none",
            ));
        }
        if let Some(types) = &metadata.response_types
            && types.iter().any(|t| t != "code")
        {
            return Err(metadata_error("response_types may only contain code"));
        }
        let grant_types = match metadata.grant_types {
            Some(types) => {
                for grant in &types {
                    if ![
                        GRANT_AUTHORIZATION_CODE,
                        GRANT_REFRESH_TOKEN,
                        GRANT_DEVICE_CODE,
                    ]
                    .contains(&grant.as_str())
                    {
                        return Err(metadata_error(
                            "grant_types may contain authorization_code, refresh_token and \
                             urn:ietf:params:oauth:grant-type:device_code",
                        ));
                    }
                }
                if types.is_empty() {
                    return Err(metadata_error("grant_types must not be empty"));
                }
                types
            }
            None if metadata.redirect_uris.is_empty() => {
                vec![GRANT_DEVICE_CODE.to_owned(), GRANT_REFRESH_TOKEN.to_owned()]
            }
            None => vec![
                GRANT_AUTHORIZATION_CODE.to_owned(),
                GRANT_REFRESH_TOKEN.to_owned(),
            ],
        };
        let scope = match &metadata.scope {
            Some(scope) => {
                let scopes = ScopeSet::parse(scope).map_err(|e| metadata_error(e.to_string()))?;
                if !user_scopes().is_superset(&scopes) {
                    return Err(metadata_error("scope must not contain admin"));
                }
                scopes.to_string()
            }
            None => user_scopes().to_string(),
        };
        for uri in &metadata.redirect_uris {
            let invalid = |description: String| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
            };
            check_redirect_uri(uri).map_err(|e| invalid(e.to_string()))?;
            if !is_native_redirect(uri) && !uri.starts_with("https://") {
                return Err(invalid(
                    "a self-registered client may use https, http on 127.0.0.1, [::1] or \
                     localhost, or a private-use scheme (com.example.app:/callback)"
                        .to_owned(),
                ));
            }
        }
        let name = metadata
            .client_name
            .clone()
            .unwrap_or_else(|| "Unnamed application".to_owned());
        let new = NewClient {
            client_id: None,
            name,
            confidential: false,
            redirect_uris: metadata.redirect_uris,
            grant_types,
            scope,
            tenant: None,
        };
        let from_address = self
            .store
            .count(
                &format!("register/{}", address.bucket()),
                REGISTRATION_WINDOW,
            )
            .await
            .map_err(OAuthError::server)?;
        if from_address >= REGISTRATIONS_PER_ADDRESS {
            return Err(OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many client registrations from this address; retry later",
            ));
        }
        let counted = self
            .store
            .count("register", REGISTRATION_WINDOW)
            .await
            .map_err(OAuthError::server)?;
        if counted >= REGISTRATIONS_PER_WINDOW {
            return Err(OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "too many client registrations; retry later",
            ));
        }
        let created =
            self.accounts
                .create_client(new, true)
                .await
                .map_err(|e| match e.field() {
                    Some("redirect_uris") => OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_redirect_uri",
                        e.to_string(),
                    ),
                    Some(_) => metadata_error(e.to_string()),
                    None => OAuthError::from(e),
                })?;
        let client = created.client;
        Ok(json!({
            "client_id": client.client_id,
            "client_id_issued_at": client.created_at.div_euclid(1000),
            "client_name": client.name,
            "redirect_uris": client.redirect_uris,
            "grant_types": client.grant_types,
            "response_types": if client.grant_types.iter().any(|g| g == GRANT_AUTHORIZATION_CODE) {
                vec!["code"]
            } else {
                Vec::new()
            },
            "token_endpoint_auth_method": "none",
            "scope": client.scope,
        }))
    }
}
