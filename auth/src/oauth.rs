//! The OAuth 2.1 authorization server: users and clients ([`Accounts`]), the grants of the
//! token endpoint, the device flow (RFC 8628), the authorization code flow with PKCE, token
//! revocation (RFC 7009) and introspection (RFC 7662), dynamic client registration (RFC 7591),
//! metadata (RFC 8414), RFC 7523 JWT-bearer assertions from registered device keys, resource
//! indicators (RFC 8707, `resource.rs`), clients identified by the URL of their metadata document
//! (`client_metadata.rs`), and the server-rendered sign-in, device and consent pages. [`router`]
//! serves all of it.
//!
//! Invariants:
//! - all state lives in the key-value store under `oauth/` in the reserved tenant
//!   [`crate::RESERVED_TENANT`], with a ttl wherever it expires; no state is kept in memory
//!   besides caches that may be lost, so every backend and every restart behaves the same;
//! - only digests of secrets (tokens, codes, client secrets, session ids) are stored, and
//!   passwords only as argon2id hashes; secrets never reach logs, `Debug` output or errors;
//! - everything that must happen once (redeeming a device code or an authorization code,
//!   rotating a refresh token, consuming an assertion `jti`) is decided by one
//!   `put_if_absent` or `compare_and_swap`, so among concurrent requests exactly one wins;
//! - time comes only from the injected [`Clock`];
//! - access tokens are issued only by [`Issuer`]; refresh tokens are opaque 256-bit values,
//!   rotated on every use; presenting a rotated one revokes its whole family, including the
//!   family's live access tokens (through [`Verifier::revoke`]);
//! - no input panics: every request field is length-checked and validated, and errors are
//!   OAuth error JSON (RFC 6749 5.2) or a page with an `id="error"` element.

pub mod accounts;
mod client_auth;
mod client_metadata;
mod device;
mod device_keys;
mod flows;
mod html;
mod http;
mod limits;
mod metadata;
mod pages;
mod password_pool;
mod register;
mod resource;
mod session;
pub(crate) mod store;
mod tokens;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::{Clock, KvStore};

pub use accounts::{Accounts, ClientInfo, CreatedClient, NewClient, PasswordHashing, UserInfo};
pub use client_metadata::{
    CLIENT_METADATA_CONCURRENT_FETCHES, CLIENT_METADATA_DEFAULT_CACHE, CLIENT_METADATA_MAX_CACHE,
    CLIENT_METADATA_MIN_CACHE, CLIENT_METADATA_TIMEOUT, MAX_CLIENT_METADATA_BYTES,
};
pub use device::{EXPIRED_GRACE, SLOW_DOWN_STEP, USER_CODE_ALPHABET, USER_CODE_LENGTH};
pub use device_keys::MAX_ASSERTION_LIFETIME;
pub use http::{cors, router};
pub use limits::{
    DEVICE_AUTHORIZATION_WINDOW, DEVICE_AUTHORIZATIONS_PER_ADDRESS,
    DEVICE_AUTHORIZATIONS_PER_WINDOW, DEVICE_CODE_GLOBAL_FAILURES, DEVICE_CODE_SESSION_FAILURES,
    DEVICE_CODE_WINDOW, DYNAMIC_CLIENT_UNUSED_TTL, MAX_FORM_BYTES, MAX_PARAM_BYTES,
    REGISTRATION_WINDOW, REGISTRATIONS_PER_ADDRESS, REGISTRATIONS_PER_WINDOW, SIGN_IN_FAILURES,
    SIGN_IN_WINDOW,
};
pub use limits::{
    PASSWORD_HASH_QUEUE, PASSWORD_POOL_RETRY_AFTER, SIGN_IN_ATTEMPTS_PER_ADDRESS, client_network,
};
pub use password_pool::PasswordPool;
pub use tokens::Revoked;

use crate::token::Issuer;
use crate::verify::Verifier;
use store::Store;

/// The grant type of the device flow (RFC 8628).
pub const GRANT_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The JWT-bearer grant type (RFC 7523).
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The authorization code grant type.
pub const GRANT_AUTHORIZATION_CODE: &str = "authorization_code";
/// The refresh token grant type.
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
/// The client credentials grant type.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// The built-in public client of `p8fs login`.
pub const BUILTIN_CLI_CLIENT: &str = "p8fs-cli";

/// Settings of the authorization server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The issuer: the public base URL, equal to `TokenConfig::issuer`, without a trailing `/`.
    pub issuer: String,
    /// Lifetime of access tokens (default 1 h).
    pub access_token_ttl: Duration,
    /// Idle lifetime of a refresh token (default 30 days); every rotation starts it again.
    pub refresh_token_ttl: Duration,
    /// Lifetime of a device code and its user code (default 10 min).
    pub device_code_ttl: Duration,
    /// The initial polling interval of the device flow (default 5 s).
    pub device_poll_interval: Duration,
    /// Lifetime of an authorization code (default 60 s; at most 60 s is used).
    pub authorization_code_ttl: Duration,
    /// Lifetime of a browser sign-in (default 12 h).
    pub session_ttl: Duration,
    /// Whether `/oauth/register` accepts public clients (default true).
    pub dynamic_registration: bool,
    /// The resource indicators (RFC 8707) a client may ask tokens for, each an absolute URI
    /// without a fragment, compared byte for byte (no normalisation: `<issuer>/mcp/` is not
    /// `<issuer>/mcp`). A token issued for one has it as its only `aud`, and verifies only with
    /// [`Verifier::verify_for`] and that URI. Default: none (a `resource` parameter is then
    /// always `invalid_target`).
    pub resources: Vec<String>,
    /// Development only: whether a client metadata document may be fetched over `http` and
    /// from loopback, private and link-local addresses (default false). With it off, a
    /// `client_id` URL must be `https` and resolve to public addresses only (no server-side
    /// request forgery towards the local network).
    pub allow_loopback_client_metadata: bool,
    /// Certificates (PEM) trusted for fetching client metadata documents besides the public
    /// roots: a private CA of an organisation's own clients, or a test's. Default none. A bundle
    /// that does not parse refuses every document (fails closed).
    pub client_metadata_roots: Option<String>,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".to_owned(),
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            device_code_ttl: Duration::from_secs(600),
            device_poll_interval: Duration::from_secs(5),
            authorization_code_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(12 * 3600),
            dynamic_registration: true,
            resources: Vec::new(),
            allow_loopback_client_metadata: false,
            client_metadata_roots: None,
        }
    }
}

/// The longest authorization code lifetime used, whatever the configuration says.
pub const MAX_AUTHORIZATION_CODE_TTL: Duration = Duration::from_secs(60);

/// The authorization server: configuration, accounts and the services tokens come from.
pub struct OAuthServer {
    pub(crate) store: Store,
    pub(crate) accounts: Accounts,
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) config: OAuthConfig,
    pub(crate) metadata_clients: client_metadata::MetadataClients,
}

impl OAuthServer {
    /// A server keeping its state in `kv`, issuing with `issuer`, revoking through `verifier`.
    /// A trailing `/` of the configured issuer is ignored.
    pub fn new(
        kv: Arc<dyn KvStore>,
        issuer: Arc<Issuer>,
        verifier: Arc<Verifier>,
        clock: Arc<dyn Clock>,
        mut config: OAuthConfig,
    ) -> Self {
        while config.issuer.ends_with('/') {
            config.issuer.pop();
        }
        config.authorization_code_ttl = config
            .authorization_code_ttl
            .clamp(Duration::from_secs(1), MAX_AUTHORIZATION_CODE_TTL);
        config.device_poll_interval = config.device_poll_interval.max(Duration::from_secs(1));
        Self {
            store: Store::new(kv.clone(), clock.clone()),
            accounts: Accounts::new(kv, clock),
            issuer,
            verifier,
            metadata_clients: client_metadata::MetadataClients::new(
                config.allow_loopback_client_metadata,
                config.client_metadata_roots.as_deref(),
            ),
            config,
        }
    }

    /// The same server hashing new passwords with `hashing` (see [`PasswordHashing`]).
    pub fn with_password_hashing(mut self, hashing: PasswordHashing) -> Self {
        self.accounts = self.accounts.with_password_hashing(hashing);
        self
    }

    /// The same server running every password hash in `pool` (see [`PasswordPool`]; by default
    /// one worker per core).
    pub fn with_password_pool(mut self, pool: PasswordPool) -> Self {
        self.accounts = self.accounts.with_password_pool(pool);
        self
    }

    /// Users and clients.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The configuration in effect.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// `<issuer><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.issuer)
    }

    /// Whether cookies must be `Secure` (the issuer is https).
    pub(crate) fn secure_cookies(&self) -> bool {
        self.config.issuer.starts_with("https://")
    }
}

impl fmt::Debug for OAuthServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthServer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
