//! Device keys and the RFC 7523 JWT-bearer grant.
//!
//! A user registers an Ed25519 public key for a device at `POST /oauth/device-keys` with
//! `{"name": "...", "public_key": "<base64url of the 32-byte key>"}` (or
//! `"jwk": {"kty":"OKP","crv":"Ed25519","x":"..."}`), with an access token carrying the
//! `device-keys` scope, which only an interactive sign-in grants (see [`crate::Scope`]). The key
//! id is the RFC 7638 thumbprint of the key. The key remembers the user and the user's credential
//! generation, the client the registering token was issued through (and that client's creation
//! time), and the token's scopes (without `admin` and `device-keys`): tokens obtained with the
//! key never exceed them. `GET` lists the user's keys, `DELETE /oauth/device-keys/{kid}`
//! removes one; both need the `device-keys` scope too. Record: `oauth/devkey/<kid>`.
//!
//! A key stops working when its user is disabled or removed or their password changes (the
//! generation moves on), and when its client is removed (or replaced by a new client of the same
//! id); [`OAuthServer::set_password`], [`OAuthServer::set_disabled`] and
//! [`OAuthServer::remove_client`] also delete such keys. Keys registered before keys recorded a
//! generation do not work: register them again.
//!
//! The device then obtains access tokens at the token endpoint with
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`, where the JWT is
//! signed by the device key and checked strictly: header `alg` `EdDSA` only, `kid` a registered
//! key; claims `iss` and `sub` both the key's username, `aud` the issuer or the token endpoint
//! URL, `exp` in the future and at most [`MAX_ASSERTION_LIFETIME`] ahead, `nbf`/`iat` not in the
//! future (30 s leeway), and a `jti` of 1..=256 bytes that was not used before with this key (the
//! `jti` is remembered at `oauth/jti/<digest>` until the assertion expires). The user must exist
//! and be enabled. No refresh token is issued: the device signs a new assertion instead.
//!
//! The access tokens a key obtains are tracked like a family's: `oauth/devkey-access/<kid>`
//! remembers the live ones (at most [`MAX_DEVICE_KEY_ACCESS_TOKENS`]; older ones are revoked
//! as they are forgotten), and removing the key revokes them. A token is tracked before it is
//! returned, and the key is looked up again afterwards: a grant racing with the key's removal
//! revokes its own token.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p8fs_core::{Error, Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::accounts::{UserRecord, user_scopes};
use super::limits::{MAX_DEVICE_KEY_ACCESS_TOKENS, MAX_DEVICE_KEYS_PER_USER};
use super::store::{Store, digest};
use super::tokens::{AccessRef, Grant, TokenResponse, grant_scopes, non_interactive, overflow};
use super::wire::OAuthError;
use super::{GRANT_CLIENT_CREDENTIALS, OAuthServer};
use crate::principal::Principal;
use crate::scope::{Scope, ScopeSet};
use crate::token::{Audience, MAX_CLAIM_BYTES, check_claim_text};

/// The furthest in the future an assertion's `exp` may be.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated on an assertion's `exp`, `nbf` and `iat`.
const LEEWAY_MS: i64 = 30_000;
/// Longest assertion, in bytes.
const MAX_ASSERTION_BYTES: usize = 8 * 1024;

/// A device key as stored and as listed (the public key only).
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct DeviceKey {
    pub(crate) kid: String,
    pub(crate) name: String,
    pub(crate) username: String,
    pub(crate) tenant: String,
    /// The client tokens obtained with the key are issued through.
    pub(crate) client_id: String,
    pub(crate) scope: String,
    /// The public key, base64url.
    pub(crate) public_key: String,
    pub(crate) created_at: Timestamp,
    /// The user's credential generation when the key was registered; the key works only while
    /// it is still the user's. `None` for keys registered before it was recorded (they do not
    /// work).
    #[serde(default)]
    pub(crate) generation: Option<u64>,
    /// The `created_at` of the client when the key was registered: a new client that reuses
    /// the id does not inherit the key.
    #[serde(default)]
    pub(crate) client_created_at: Option<Timestamp>,
}

/// The live access tokens obtained with one device key.
#[derive(Serialize, Deserialize, Default)]
struct KeyTokens {
    access: Vec<AccessRef>,
}

/// The body of a registration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewDeviceKey {
    name: String,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    jwk: Option<Value>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    jti: String,
}

/// RFC 7638 thumbprint of an Ed25519 public key given as base64url `x`.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The base64url public key of a registration, checked to be an Ed25519 point.
fn public_key_of(new: &NewDeviceKey) -> Result<String> {
    let x = match (&new.public_key, &new.jwk) {
        (Some(x), None) => x.clone(),
        (None, Some(jwk)) => {
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                return Err(Error::invalid(
                    "jwk",
                    "must be an Ed25519 key (kty OKP, crv Ed25519)",
                ));
            }
            if jwk.get("d").is_some() {
                return Err(Error::invalid(
                    "jwk",
                    "must be the public key only (no \"d\")",
                ));
            }
            field("x")
                .ok_or_else(|| Error::invalid("jwk", "x is missing"))?
                .to_owned()
        }
        _ => {
            return Err(Error::invalid(
                "public_key",
                "send exactly one of public_key (base64url) and jwk",
            ));
        }
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(x.as_bytes())
        .map_err(|_| Error::invalid("public_key", "must be base64url without padding"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::invalid("public_key", "must be 32 bytes"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Error::invalid("public_key", "is not an Ed25519 public key"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl OAuthServer {
    /// The user an access token belongs to: enabled, of the token's tenant.
    pub(crate) async fn user_of(&self, principal: &Principal) -> Result<UserRecord, OAuthError> {
        // A client_credentials token has the client id as `sub`; it must not pass for a user
        // who happens to have that name.
        if principal.subject == principal.client_id
            && let Some(client) = self.accounts.client(&principal.client_id).await?
            && client.allows_grant(GRANT_CLIENT_CREDENTIALS)
        {
            return Err(OAuthError::invalid_token(
                "the token belongs to a client, not a user",
            ));
        }
        match self.accounts.user(&principal.subject).await? {
            Some(user) if !user.disabled && user.tenant == principal.tenant.as_str() => Ok(user),
            _ => Err(OAuthError::invalid_token(
                "the token does not belong to an enabled user",
            )),
        }
    }

    /// Registers a device key for the token's user.
    pub(crate) async fn add_device_key(
        &self,
        principal: &Principal,
        new: NewDeviceKey,
    ) -> Result<DeviceKey, OAuthError> {
        let user = self.user_of(principal).await?;
        principal.require(Scope::DeviceKeys)?;
        let Some(client) = self.accounts.client(&principal.client_id).await? else {
            return Err(OAuthError::invalid_token(
                "the client the token was issued through no longer exists",
            ));
        };
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(
                Error::invalid("name", "must be 1..=128 bytes without control characters").into(),
            );
        }
        let public_key = public_key_of(&new)?;
        let scopes: ScopeSet = non_interactive(principal.scopes)
            .iter()
            .filter(|s| user_scopes().contains(*s))
            .collect();
        if scopes.is_empty() {
            return Err(OAuthError::insufficient_scope(
                "the token grants no scope a device key could carry",
            ));
        }
        if self.device_keys(&user.username).await?.len() >= MAX_DEVICE_KEYS_PER_USER {
            return Err(Error::invalid(
                "public_key",
                format!("a user may register at most {MAX_DEVICE_KEYS_PER_USER} device keys"),
            )
            .into());
        }
        let key = DeviceKey {
            kid: thumbprint(&public_key),
            name,
            username: user.username,
            tenant: user.tenant,
            client_id: principal.client_id.clone(),
            scope: scopes.to_string(),
            public_key,
            created_at: self.store.now(),
            generation: Some(user.generation),
            client_created_at: Some(client.info.created_at),
        };
        if !self
            .store
            .create(&Store::key("devkey", &key.kid)?, &key, None)
            .await?
        {
            return Err(Error::conflict("this public key is already registered").into());
        }
        Ok(key)
    }

    /// The device keys of the token's user.
    pub(crate) async fn list_device_keys(
        &self,
        principal: &Principal,
    ) -> Result<Vec<DeviceKey>, OAuthError> {
        let user = self.user_of(principal).await?;
        principal.require(Scope::DeviceKeys)?;
        Ok(self.device_keys(&user.username).await?)
    }

    /// The device keys of `username`.
    pub(crate) async fn device_keys(&self, username: &str) -> Result<Vec<DeviceKey>> {
        let keys: Vec<DeviceKey> = self.store.scan("devkey").await?;
        Ok(keys
            .into_iter()
            .filter(|k| k.username == username)
            .collect())
    }

    /// Removes a device key of the token's user; whether it existed.
    pub(crate) async fn remove_device_key(
        &self,
        principal: &Principal,
        kid: &str,
    ) -> Result<bool, OAuthError> {
        let user = self.user_of(principal).await?;
        principal.require(Scope::DeviceKeys)?;
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(false);
        }
        let key = Store::key("devkey", kid)?;
        match self.store.get::<DeviceKey>(&key).await? {
            Some(stored) if stored.value.username == user.username => {
                Ok(self.drop_device_key(&stored.value).await?)
            }
            _ => Ok(false),
        }
    }

    /// Deletes a device key and revokes the access tokens obtained with it; whether it
    /// existed.
    async fn drop_device_key(&self, key: &DeviceKey) -> Result<bool> {
        let existed = self.store.delete(&Store::key("devkey", &key.kid)?).await?;
        let tokens_key = Store::key("devkey-access", &key.kid)?;
        if let Some(stored) = self.store.get::<KeyTokens>(&tokens_key).await? {
            let tenant = TenantId::new(key.tenant.as_str())?;
            let now = self.store.now();
            for access in stored.value.access.iter().filter(|a| a.exp > now) {
                self.verifier
                    .revoke(&tenant, &access.jti, access.exp)
                    .await?;
            }
            self.store.delete(&tokens_key).await?;
        }
        Ok(existed)
    }

    /// Removes every device key `which` selects, revoking their access tokens; how many. It
    /// reads every device key: an admin operation, not a hot path.
    pub(crate) async fn remove_device_keys_where(
        &self,
        which: impl Fn(&DeviceKey) -> bool,
    ) -> Result<usize> {
        let keys: Vec<DeviceKey> = self.store.scan("devkey").await?;
        let mut removed = 0;
        for key in keys.iter().filter(|k| which(k)) {
            if self.drop_device_key(key).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records an access token obtained with `key`, revoking the oldest ones beyond
    /// [`MAX_DEVICE_KEY_ACCESS_TOKENS`].
    async fn track_key_token(
        &self,
        key: &DeviceKey,
        tenant: &TenantId,
        token: AccessRef,
    ) -> Result<()> {
        let record_key = Store::key("devkey-access", &key.kid)?;
        for _ in 0..16 {
            let now = self.store.now();
            let stored = self.store.get::<KeyTokens>(&record_key).await?;
            let mut next = KeyTokens {
                access: stored
                    .as_ref()
                    .map(|s| s.value.access.clone())
                    .unwrap_or_default(),
            };
            next.access.retain(|a| a.exp > now);
            next.access.push(token.clone());
            let forgotten = overflow(&mut next.access, MAX_DEVICE_KEY_ACCESS_TOKENS);
            // Revoked before they are forgotten, so none is ever neither tracked nor revoked.
            for old in &forgotten {
                self.verifier.revoke(tenant, &old.jti, old.exp).await?;
            }
            let last = next.access.iter().map(|a| a.exp).max().unwrap_or(token.exp);
            let ttl = Some(self.store.ttl_until(last));
            let written = match &stored {
                Some(stored) => {
                    self.store
                        .swap(&record_key, stored.version, &next, ttl)
                        .await?
                }
                None => self.store.create(&record_key, &next, ttl).await?,
            };
            if written {
                return Ok(());
            }
        }
        Err(Error::unavailable(
            "the device key's token list is too contended",
            None,
        ))
    }

    /// The JWT-bearer grant.
    pub(crate) async fn jwt_bearer(
        &self,
        assertion: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let resource = self.requested_resource(resource)?;
        let invalid = |why: &'static str| OAuthError::invalid_grant(why);
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(invalid("the assertion is too long"));
        }
        let header = jsonwebtoken::decode_header(assertion)
            .map_err(|_| invalid("the assertion is not a JWT"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(invalid("the assertion must be signed with EdDSA"));
        }
        if header.crit.is_some() {
            return Err(invalid("the assertion has an unsupported critical header"));
        }
        let Some(kid) = header.kid else {
            return Err(invalid("the assertion header has no kid"));
        };
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("unknown device key"));
        }
        let Some(device) = self
            .store
            .get::<DeviceKey>(&Store::key("devkey", &kid)?)
            .await?
            .map(|s| s.value)
        else {
            return Err(invalid("unknown device key"));
        };
        let decoding = DecodingKey::from_ed_components(&device.public_key)
            .map_err(|_| invalid("unknown device key"))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &decoding, &validation)
            .map_err(|_| invalid("the assertion's signature or claims are invalid"))?
            .claims;
        if claims.iss != device.username || claims.sub != device.username {
            return Err(invalid("iss and sub must be the device key's user"));
        }
        let token_endpoint = self.url("/oauth/token");
        if !claims.aud.contains(&self.config.issuer) && !claims.aud.contains(&token_endpoint) {
            return Err(invalid("aud must be the issuer or the token endpoint"));
        }
        let now = self.store.now();
        let exp = claims.exp.saturating_mul(1000);
        if exp.saturating_add(LEEWAY_MS) <= now {
            return Err(invalid("the assertion expired"));
        }
        let longest = i64::try_from(MAX_ASSERTION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
        if exp > now.saturating_add(longest).saturating_add(LEEWAY_MS) {
            return Err(invalid("the assertion's exp is more than 5 minutes ahead"));
        }
        for early in [claims.nbf, claims.iat].into_iter().flatten() {
            if early.saturating_mul(1000) > now.saturating_add(LEEWAY_MS) {
                return Err(invalid("the assertion is not yet valid"));
            }
        }
        if !check_claim_text(&claims.jti) {
            return Err(OAuthError::invalid_grant(format!(
                "jti must be 1..={MAX_CLAIM_BYTES} bytes without control characters"
            )));
        }
        let user = self.accounts.user(&device.username).await?;
        if !user.is_some_and(|u| {
            !u.disabled && u.tenant == device.tenant && device.generation == Some(u.generation)
        }) {
            return Err(invalid(
                "the device key's user is disabled or no longer exists, or changed their \
                 password since the key was registered",
            ));
        }
        let client = self.accounts.client(&device.client_id).await?;
        let Some(client) = client.filter(|c| device.client_created_at == Some(c.info.created_at))
        else {
            return Err(invalid(
                "the client the device key was registered through no longer exists",
            ));
        };
        let allowed: ScopeSet = non_interactive(ScopeSet::parse(&device.scope)?)
            .iter()
            .filter(|s| user_scopes().contains(*s) && client.scopes().contains(*s))
            .collect();
        let scopes = grant_scopes(scope, allowed)?;
        let replay_key = Store::key("jti", &digest(&format!("{kid}\n{}", claims.jti)))?;
        let remember = self.store.ttl_until(exp.saturating_add(LEEWAY_MS));
        if !self.store.create(&replay_key, &now, Some(remember)).await? {
            return Err(invalid("the assertion was already used (jti replay)"));
        }
        let grant = Grant {
            tenant: TenantId::new(device.tenant.as_str())?,
            subject: device.username.clone(),
            username: Some(device.username.clone()),
            client_id: device.client_id.clone(),
            scopes,
            resource,
        };
        let (response, issued) = self.issue_access_only_tracked(&grant)?;
        self.track_key_token(&device, &grant.tenant, issued.clone())
            .await?;
        // A removal of the key that raced with this grant may have revoked the tracked tokens
        // before this one was added: then this token is revoked here.
        if self
            .store
            .get::<DeviceKey>(&Store::key("devkey", &kid)?)
            .await?
            .is_none()
        {
            self.verifier
                .revoke(&grant.tenant, &issued.jti, issued.exp)
                .await?;
            return Err(invalid("unknown device key"));
        }
        Ok(response)
    }
}
