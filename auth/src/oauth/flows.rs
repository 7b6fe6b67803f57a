//! The authorization code grant with PKCE, and the client credentials grant.
//!
//! Authorization requests are validated in the order of RFC 6749 4.1.2.1: an unknown client or
//! a `redirect_uri` that is not one of the client's registered URIs is shown to the user as an
//! error page and never redirected to. URIs match byte for byte, except that a public (native)
//! client's loopback URI (`http://127.0.0.1`, `http://[::1]`, `http://localhost`) matches with
//! any port (RFC 8252 7.3). Once client and redirect URI are known to match, other errors are
//! redirected to the client with `error`, `state` and `iss` (RFC 9207), but only to a URI an
//! administrator registered or a native one (loopback or a private-use scheme, RFC 8252 7.1):
//! an https URI of a dynamically registered client gets the error page instead, so anyone who
//! can register a client cannot turn this server into an open redirector (RFC 9700 4.11.2).
//! PKCE is required with `S256` (`plain` and a missing method are refused); the challenge is 43
//! base64url characters. A `resource` (RFC 8707) must be a configured resource (else the
//! `invalid_target` error goes back like the others); it is kept with the code, and the token
//! request may repeat it but not name another. Every response redirected to the client, code or
//! error, carries `iss` (RFC 9207).
//!
//! The client may be one identified by the URL of its metadata document
//! (`client_metadata.rs`): then the document's `redirect_uris` are the registered ones, and a
//! document that cannot be fetched or used is an error page, never a redirect.
//!
//! Codes are 256 random bits, stored as `oauth/code/<digest>` with the client, redirect URI,
//! user, scope and challenge, valid for `authorization_code_ttl` (at most 60 s). Redemption
//! marks the code used by compare-and-swap before anything else is checked, so a code works
//! once even under concurrent requests and a failed attempt also burns it. Presenting a used
//! code revokes the token family issued from it (RFC 6749 4.1.2), even while the first
//! redemption is still issuing (see [`OAuthServer::revoke_code_family`]); the record is kept for
//! an access token lifetime after expiry for that purpose.

use p8fs_core::{Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::accounts::{ClientRecord, UserRecord, user_scopes};
use super::client_metadata::FindClientError;
use super::limits::MAX_STATE_BYTES;
use super::store::{Store, digest, new_secret, same_secret};
use super::tokens::{Grant, TokenResponse, grant_scopes, new_family_id, non_interactive};
use super::wire::{OAuthError, Params};
use super::{GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, OAuthServer};
use crate::keys::duration_millis;
use crate::scope::ScopeSet;

/// A validated authorization request.
#[derive(Clone)]
pub(crate) struct AuthorizeRequest {
    pub(crate) client: ClientRecord,
    pub(crate) redirect_uri: String,
    pub(crate) scopes: ScopeSet,
    pub(crate) state: Option<String>,
    pub(crate) code_challenge: String,
    /// The resource (RFC 8707) asked for.
    pub(crate) resource: Option<String>,
}

/// Why an authorization request cannot go on.
pub(crate) enum AuthorizeError {
    /// Shown to the user; the client cannot be trusted with a redirect.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect(String),
}

#[derive(Serialize, Deserialize, Clone)]
struct CodeRecord {
    client_id: String,
    redirect_uri: String,
    username: String,
    tenant: String,
    scope: String,
    code_challenge: String,
    expires_at: Timestamp,
    used: bool,
    family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
}

/// Whether `value` is 43..=128 characters of `[A-Za-z0-9-._~]` (RFC 7636 4.1).
pub(crate) fn is_code_verifier(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `BASE64URL(SHA256(verifier))`.
pub(crate) fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The host and what follows the authority of an `http` URI on a loopback host
/// (`127.0.0.1`, `[::1]` or `localhost`), with the port (if any) left out.
pub(crate) fn loopback_parts(uri: &str) -> Option<(&str, &str)> {
    let after = uri.strip_prefix("http://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let host = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let port = &authority[colon + 1..];
            if !port.is_empty() && port.parse::<u16>().is_err() {
                return None;
            }
            &authority[..colon]
        }
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "[::1]" | "localhost").then_some((host, rest))
}

/// Whether `scheme` is a private-use URI scheme of a native app (RFC 8252 7.1): a reversed
/// domain name such as `com.example.app` (lowercase, at least two dot-separated labels).
pub(crate) fn is_private_use_scheme(scheme: &str) -> bool {
    scheme.contains('.')
        && scheme.split('.').all(|label| {
            label.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Whether `uri` leads back to a native app: `http` on a loopback host, or a private-use
/// scheme.
pub(crate) fn is_native_redirect(uri: &str) -> bool {
    loopback_parts(uri).is_some()
        || uri
            .split_once(':')
            .is_some_and(|(scheme, _)| is_private_use_scheme(scheme))
}

/// Whether the `requested` redirect URI matches the `registered` one: byte for byte, or for a
/// native (public) client, a loopback URI with any port (RFC 8252 7.3).
pub(crate) fn redirect_matches(registered: &str, requested: &str, native: bool) -> bool {
    if registered == requested {
        return true;
    }
    native
        && match (loopback_parts(registered), loopback_parts(requested)) {
            (Some(registered), Some(requested)) => registered == requested,
            _ => false,
        }
}

/// `uri` with `params` appended to its query.
pub(crate) fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        query.append_pair(name, value);
    }
    let query = query.finish();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{query}")
}

impl OAuthServer {
    /// Validates an authorization request (query of `GET /oauth/authorize`, or the consent
    /// form that repeats it).
    pub(crate) async fn check_authorize(
        &self,
        params: &Params,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let server_error = |e: p8fs_core::Error| {
            tracing::error!(error = %e, "oauth: cannot validate an authorization request");
            AuthorizeError::Page(
                "The server failed to process the request. Try again later.".into(),
            )
        };
        let Some(client_id) = params.get("client_id") else {
            return Err(AuthorizeError::Page(
                "The request names no client (client_id is missing).".into(),
            ));
        };
        let client = match self.find_client(client_id).await {
            Ok(Some(client)) => client,
            Ok(None) => {
                return Err(AuthorizeError::Page("The client is not registered.".into()));
            }
            Err(FindClientError::Refused(why)) => {
                return Err(AuthorizeError::Page(format!(
                    "The client's metadata document cannot be used: {why}."
                )));
            }
            Err(FindClientError::Server(e)) => return Err(server_error(e)),
        };
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return Err(AuthorizeError::Page(
                "The request has no redirect_uri.".into(),
            ));
        };
        let native = !client.info.confidential;
        let Some(registered) = client
            .info
            .redirect_uris
            .iter()
            .find(|r| redirect_matches(r, redirect_uri, native))
        else {
            return Err(AuthorizeError::Page(
                "The redirect_uri is not registered for this client.".into(),
            ));
        };
        // Errors go back automatically only where an administrator or a native app decided.
        let redirect_errors = !client.dynamic || is_native_redirect(registered);
        let state = params.get("state");
        if state.is_some_and(|s| s.len() > MAX_STATE_BYTES) {
            return Err(AuthorizeError::Page(format!(
                "The state parameter is longer than {MAX_STATE_BYTES} bytes."
            )));
        }
        let issuer = self.config.issuer.clone();
        let redirect = |error: &str, description: &str| {
            if !redirect_errors {
                return AuthorizeError::Page(format!(
                    "The application's request is not valid ({error}: {description})."
                ));
            }
            let mut query = vec![("error", error), ("error_description", description)];
            if let Some(state) = state {
                query.push(("state", state));
            }
            query.push(("iss", &issuer));
            AuthorizeError::Redirect(with_query(redirect_uri, &query))
        };
        if params.get("response_type") != Some("code") {
            return Err(redirect(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
            return Err(redirect(
                "unauthorized_client",
                "the client may not use the authorization_code grant",
            ));
        }
        let Some(code_challenge) = params.get("code_challenge") else {
            return Err(redirect(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if params.get("code_challenge_method") != Some("S256") {
            return Err(redirect(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not supported)",
            ));
        }
        if code_challenge.len() != 43
            || !code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(redirect(
                "invalid_request",
                "code_challenge must be the 43-character base64url SHA-256 of the verifier",
            ));
        }
        let allowed: ScopeSet = client
            .scopes()
            .iter()
            .filter(|s| user_scopes().contains(*s))
            .collect();
        let scopes = match grant_scopes(params.get("scope"), allowed) {
            Ok(scopes) => scopes,
            Err(e) => return Err(redirect("invalid_scope", &e.description)),
        };
        let resource = match self.requested_resource(params.get("resource")) {
            Ok(resource) => resource,
            Err(e) => return Err(redirect(e.code, &e.description)),
        };
        Ok(AuthorizeRequest {
            resource,
            redirect_uri: redirect_uri.to_owned(),
            state: state.map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            scopes,
            client,
        })
    }

    /// The redirect of an approved request: a new code for `user`.
    pub(crate) async fn approve_authorization(
        &self,
        request: &AuthorizeRequest,
        user: &UserRecord,
    ) -> Result<String> {
        let code = new_secret()?;
        let now = self.store.now();
        let ttl = self.config.authorization_code_ttl;
        let record = CodeRecord {
            client_id: request.client.info.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            username: user.username.clone(),
            tenant: user.tenant.clone(),
            scope: request.scopes.to_string(),
            code_challenge: request.code_challenge.clone(),
            expires_at: now.saturating_add(duration_millis(ttl)),
            used: false,
            family: new_family_id()?,
            resource: request.resource.clone(),
        };
        self.store
            .put(
                &Store::key("code", &digest(&code))?,
                &record,
                Some(ttl + self.config.access_token_ttl),
            )
            .await?;
        Ok(self.redirect_back(request, &[("code", &code)]))
    }

    /// The redirect of a denied request.
    pub(crate) fn deny_authorization(&self, request: &AuthorizeRequest) -> String {
        self.redirect_back(
            request,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ],
        )
    }

    fn redirect_back(&self, request: &AuthorizeRequest, params: &[(&str, &str)]) -> String {
        let mut query: Vec<(&str, &str)> = params.to_vec();
        if let Some(state) = &request.state {
            query.push(("state", state));
        }
        query.push(("iss", &self.config.issuer));
        with_query(&request.redirect_uri, &query)
    }

    /// The authorization_code grant.
    pub(crate) async fn exchange_code(
        &self,
        client: &ClientRecord,
        params: &Params,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant(GRANT_AUTHORIZATION_CODE) {
            return Err(OAuthError::unauthorized_client(
                "the client may not use the authorization_code grant",
            ));
        }
        let code = params.require("code")?;
        let redirect_uri = params.require("redirect_uri")?;
        let verifier = params.require("code_verifier")?;
        // An unknown resource is refused before the code is looked at (and burnt).
        let requested_resource = params.get("resource");
        self.requested_resource(requested_resource)?;
        let key = Store::key("code", &digest(code))?;
        let Some(stored) = self.store.get::<CodeRecord>(&key).await? else {
            return Err(OAuthError::invalid_grant("unknown authorization code"));
        };
        let record = stored.value;
        if record.client_id != client.info.client_id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        let family_ttl = self.config.authorization_code_ttl + self.config.access_token_ttl;
        if record.used {
            self.revoke_code_family(&record.family, family_ttl).await?;
            tracing::warn!(
                client_id = %record.client_id,
                "oauth: an authorization code was presented twice; its tokens are revoked"
            );
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        let mut used = record.clone();
        used.used = true;
        let ttl = self.store.ttl_until(record.expires_at) + self.config.access_token_ttl;
        if !self
            .store
            .swap(&key, stored.version, &used, Some(ttl))
            .await?
        {
            self.revoke_code_family(&record.family, family_ttl).await?;
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        if self.store.now() >= record.expires_at {
            return Err(OAuthError::invalid_grant("the authorization code expired"));
        }
        if !same_secret(redirect_uri, &record.redirect_uri) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !is_code_verifier(verifier) {
            return Err(OAuthError::invalid_grant(
                "code_verifier must be 43..=128 characters of [A-Za-z0-9-._~]",
            ));
        }
        if !same_secret(&s256(verifier), &record.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        self.check_granted_resource(record.resource.as_deref(), requested_resource)?;
        let user = self.accounts.user(&record.username).await?;
        if !user.is_some_and(|u| !u.disabled && u.tenant == record.tenant) {
            return Err(OAuthError::invalid_grant(
                "the user who approved is disabled or no longer exists",
            ));
        }
        let grant = Grant {
            tenant: TenantId::new(record.tenant.as_str())?,
            subject: record.username.clone(),
            username: Some(record.username.clone()),
            client_id: client.info.client_id.clone(),
            scopes: ScopeSet::parse(&record.scope)?,
            resource: record.resource.clone(),
        };
        self.issue_in_new_family(&grant, client, record.family)
            .await
    }

    /// The client_credentials grant: a confidential client acting in its own tenant.
    pub(crate) fn client_credentials(
        &self,
        client: &ClientRecord,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.info.confidential || !client.allows_grant(GRANT_CLIENT_CREDENTIALS) {
            return Err(OAuthError::unauthorized_client(
                "the client may not use the client_credentials grant",
            ));
        }
        let Some(tenant) = &client.info.tenant else {
            return Err(OAuthError::unauthorized_client(
                "the client has no tenant to act in",
            ));
        };
        let grant = Grant {
            tenant: TenantId::new(tenant.as_str())?,
            subject: client.info.client_id.clone(),
            username: None,
            client_id: client.info.client_id.clone(),
            scopes: grant_scopes(scope, non_interactive(client.scopes()))?,
            resource: self.requested_resource(resource)?,
        };
        Ok(self.issue_access_only(&grant)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_code_verifier(verifier));
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!is_code_verifier(&"a".repeat(42)));
        assert!(is_code_verifier(&"a".repeat(128)));
        assert!(!is_code_verifier(&"a".repeat(129)));
        assert!(!is_code_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn loopback_redirects_match_with_any_port_for_native_clients() {
        let registered = "http://127.0.0.1/cb";
        for requested in [
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1/cb",
            "http://127.0.0.1:65535/cb",
        ] {
            assert!(redirect_matches(registered, requested, true), "{requested}");
        }
        assert!(redirect_matches(
            "http://[::1]:8080/cb?a=b",
            "http://[::1]:9/cb?a=b",
            true
        ));
        assert!(redirect_matches(
            "http://localhost/",
            "http://localhost:4000/",
            true
        ));
        for requested in [
            "http://127.0.0.1:99999/cb",
            "http://127.0.0.1:x/cb",
            "http://127.0.0.1:1/cb/",
            "http://127.0.0.1:1/CB",
            "http://127.0.0.2:1/cb",
            "http://localhost:1/cb",
            "http://evil@127.0.0.1:1/cb",
            "https://127.0.0.1:1/cb",
            "http://127.0.0.1:1/cb#x",
            "http://127.0.0.1.evil.example/cb",
        ] {
            assert!(
                !redirect_matches(registered, requested, true),
                "{requested}"
            );
        }
        assert!(
            !redirect_matches(registered, "http://127.0.0.1:1/cb", false),
            "confidential clients match exactly"
        );
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb",
            true
        ));
    }

    #[test]
    fn native_redirects_are_loopback_or_private_use_schemes() {
        for uri in [
            "http://127.0.0.1:7/cb",
            "http://[::1]/",
            "http://localhost:8/x",
            "com.example.app:/oauth2redirect",
            "io.github.some-one.tool://cb",
        ] {
            assert!(is_native_redirect(uri), "{uri}");
        }
        for uri in [
            "https://app.example/cb",
            "http://10.0.0.1/cb",
            "http://127.0.0.2/cb",
            "myapp:/cb",
            "javascript:alert(1)",
            "Com.Example.App:/cb",
            "com..example:/cb",
            "com.example.:/cb",
            "1com.example:/cb",
        ] {
            assert!(!is_native_redirect(uri), "{uri}");
        }
    }

    #[test]
    fn queries_are_appended() {
        assert_eq!(
            with_query("https://a.example/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a.example/cb?code=x+y&state=s%26t"
        );
        assert_eq!(
            with_query("https://a.example/cb?k=v", &[("code", "c")]),
            "https://a.example/cb?k=v&code=c"
        );
    }
}
