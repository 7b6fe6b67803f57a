//! Token issuance and refresh-token families.
//!
//! Every grant made for a user (device code, authorization code) starts a *family*
//! (`oauth/family/<id>`): the client, tenant, subject and scope of the grant, the digest of its
//! one current refresh token, and the `jti`/`exp` of the access tokens issued in it (the most
//! recent [`MAX_FAMILY_ACCESS_TOKENS`]). A refresh token is 256 random bits; the store keeps
//! `oauth/refresh/<digest>` → family, for the refresh token's idle lifetime.
//!
//! The family record is created (with the first access token in it) before any token of the
//! family is handed out, and creation fails if a revocation got there first (see
//! [`OAuthServer::revoke_code_family`]), so a revocation racing with the first issuance still
//! revokes what it issued. When a family would remember more than [`MAX_FAMILY_ACCESS_TOKENS`]
//! live access tokens, the oldest are revoked as they are forgotten: every live access token of
//! a family is either remembered or already revoked.
//!
//! Rotation: redeeming the current refresh token issues a new one and moves the family's
//! `current` to it by compare-and-swap, so of two concurrent redemptions exactly one wins.
//! Presenting any other token of the family (an already rotated one, or the loser of such a
//! race) is reuse: the family is marked revoked, its access tokens are revoked through
//! [`crate::Verifier::revoke`], and the request fails with `invalid_grant`. A family also stops
//! refreshing when its user is disabled or removed, or its client removed or no longer allowed
//! the refresh_token grant.
//!
//! A family also remembers the resource (RFC 8707) its grant was made for: every access token of
//! the family has that resource as its audience, and a refresh asking for another resource is
//! `invalid_target` (see `resource.rs`).

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p8fs_core::{Error, Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

use super::accounts::{ClientRecord, user_scopes};
use super::limits::MAX_FAMILY_ACCESS_TOKENS;
use super::store::{Store, digest, new_secret};
use super::wire::OAuthError;
use super::{GRANT_REFRESH_TOKEN, OAuthServer};
use crate::keys::duration_millis;
use crate::random_bytes;
use crate::scope::{Scope, ScopeSet};

/// What a grant gives: whose tokens, through which client, with which scopes.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) tenant: TenantId,
    /// The `sub` of the tokens: the username, or the client id for client_credentials.
    pub(crate) subject: String,
    /// The user the tokens act for (checked on every refresh).
    pub(crate) username: Option<String>,
    pub(crate) client_id: String,
    pub(crate) scopes: ScopeSet,
    /// The resource (RFC 8707) the tokens are for; `None`: the default audience.
    pub(crate) resource: Option<String>,
}

/// A successful token response (RFC 6749 5.1). `Debug` redacts the tokens.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    pub(crate) access_token: String,
    pub(crate) token_type: &'static str,
    pub(crate) expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refresh_token: Option<String>,
    pub(crate) scope: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct AccessRef {
    pub(crate) jti: String,
    pub(crate) exp: Timestamp,
}

#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Family {
    pub(crate) id: String,
    pub(crate) client_id: String,
    pub(crate) tenant: String,
    pub(crate) subject: String,
    pub(crate) username: Option<String>,
    pub(crate) scope: String,
    pub(crate) created_at: Timestamp,
    /// Digest of the one refresh token that may be redeemed next.
    pub(crate) current: Option<String>,
    /// When the current refresh token expires (the family record lives as long).
    pub(crate) expires_at: Timestamp,
    pub(crate) revoked: bool,
    pub(crate) access: Vec<AccessRef>,
    /// The resource (RFC 8707) of the grant; `None`: the default audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RefreshRecord {
    pub(crate) family: String,
    pub(crate) expires_at: Timestamp,
}

/// What an account change revoked.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Token families (refresh tokens and the access tokens they track) revoked.
    pub families: usize,
    /// Device keys removed (and the access tokens obtained with them revoked).
    pub device_keys: usize,
}

/// A new family id (128 random bits).
pub(crate) fn new_family_id() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}

/// `scopes` without the scopes that are granted only when asked for by name
/// ([`Scope::DeviceKeys`]).
pub(crate) fn by_default(scopes: ScopeSet) -> ScopeSet {
    scopes.iter().filter(|s| *s != Scope::DeviceKeys).collect()
}

/// `scopes` without the scopes only an interactive sign-in may grant ([`Scope::DeviceKeys`]):
/// what client credentials and device keys may carry.
pub(crate) fn non_interactive(scopes: ScopeSet) -> ScopeSet {
    by_default(scopes)
}

/// The scope a token gets: `requested` (default: everything `allowed` but the scopes granted
/// only by name, see [`by_default`]) within `allowed`. Unknown scope names and an empty result
/// are `invalid_scope`.
pub(crate) fn grant_scopes(
    requested: Option<&str>,
    allowed: ScopeSet,
) -> Result<ScopeSet, OAuthError> {
    let requested = match requested {
        Some(text) => {
            ScopeSet::parse(text).map_err(|e| OAuthError::invalid_scope(e.to_string()))?
        }
        None => by_default(allowed),
    };
    let granted: ScopeSet = requested.iter().filter(|s| allowed.contains(*s)).collect();
    if granted.is_empty() {
        return Err(OAuthError::invalid_scope(
            "none of the requested scopes may be granted",
        ));
    }
    Ok(granted)
}

impl OAuthServer {
    fn expires_in(&self) -> u64 {
        self.config.access_token_ttl.as_secs().max(1)
    }

    /// Signs an access token for `grant`, with the grant's resource as its audience.
    fn issue_access(&self, grant: &Grant) -> Result<crate::IssuedToken> {
        self.issuer.issue_for(
            self.audience_of(grant.resource.as_deref()),
            &grant.tenant,
            &grant.subject,
            &grant.client_id,
            &grant.scopes,
            self.config.access_token_ttl,
        )
    }

    /// Issues an access token only (client_credentials).
    pub(crate) fn issue_access_only(&self, grant: &Grant) -> Result<TokenResponse> {
        Ok(self.issue_access_only_tracked(grant)?.0)
    }

    /// Issues an access token only, and the reference to revoke it by (JWT-bearer).
    pub(crate) fn issue_access_only_tracked(
        &self,
        grant: &Grant,
    ) -> Result<(TokenResponse, AccessRef)> {
        let access = self.issue_access(grant)?;
        let reference = AccessRef {
            jti: access.token_id.clone(),
            exp: access.expires_at,
        };
        let response = TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: self.expires_in(),
            refresh_token: None,
            scope: grant.scopes.to_string(),
        };
        Ok((response, reference))
    }

    /// Starts family `family_id` for `grant`: an access token, and a refresh token when the
    /// client may use the refresh_token grant. The family record, with the access token in it,
    /// is created before anything is returned; if the family was already revoked (a reused
    /// authorization code, [`OAuthServer::revoke_code_family`]) nothing is issued and the
    /// answer is `invalid_grant`.
    pub(crate) async fn issue_in_new_family(
        &self,
        grant: &Grant,
        client: &ClientRecord,
        family_id: String,
    ) -> Result<TokenResponse, OAuthError> {
        let access = self.issue_access(grant)?;
        let now = self.store.now();
        let refresh = if client.allows_grant(GRANT_REFRESH_TOKEN) {
            Some(new_secret()?)
        } else {
            None
        };
        let lifetime = if refresh.is_some() {
            self.config.refresh_token_ttl
        } else {
            self.config.access_token_ttl
        };
        let expires_at = now.saturating_add(duration_millis(lifetime));
        let family = Family {
            id: family_id,
            client_id: grant.client_id.clone(),
            tenant: grant.tenant.as_str().to_owned(),
            subject: grant.subject.clone(),
            username: grant.username.clone(),
            scope: grant.scopes.to_string(),
            created_at: now,
            current: refresh.as_deref().map(digest),
            expires_at,
            revoked: false,
            access: vec![AccessRef {
                jti: access.token_id.clone(),
                exp: access.expires_at,
            }],
            resource: grant.resource.clone(),
        };
        if !self
            .store
            .create(&Store::key("family", &family.id)?, &family, Some(lifetime))
            .await?
        {
            // A presentation of the same code revoked the family before it was issued.
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
        if let Some(refresh) = &refresh {
            self.store
                .put(
                    &Store::key("refresh", &digest(refresh))?,
                    &RefreshRecord {
                        family: family.id.clone(),
                        expires_at,
                    },
                    Some(lifetime),
                )
                .await?;
        }
        self.accounts
            .mark_client_used(&client.info.client_id)
            .await?;
        Ok(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: self.expires_in(),
            refresh_token: refresh,
            scope: grant.scopes.to_string(),
        })
    }

    /// The refresh_token grant: rotation with reuse detection.
    pub(crate) async fn refresh(
        &self,
        client: &ClientRecord,
        token: &str,
        requested_scope: Option<&str>,
        requested_resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let invalid =
            || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
        if !client.allows_grant(GRANT_REFRESH_TOKEN) {
            return Err(OAuthError::unauthorized_client(
                "the client may not use the refresh_token grant",
            ));
        }
        let presented = digest(token);
        let Some(record) = self
            .store
            .get::<RefreshRecord>(&Store::key("refresh", &presented)?)
            .await?
        else {
            return Err(invalid());
        };
        let family_key = Store::key("family", &record.value.family)?;
        let Some(stored) = self.store.get::<Family>(&family_key).await? else {
            return Err(invalid());
        };
        let family = stored.value;
        if family.revoked || family.client_id != client.info.client_id {
            return Err(invalid());
        }
        if family.current.as_deref() != Some(presented.as_str()) {
            self.revoke_family(&family.id).await?;
            tracing::warn!(
                client_id = %family.client_id,
                subject = %family.subject,
                "oauth: a rotated refresh token was presented again; its family is revoked"
            );
            return Err(invalid());
        }
        // Before anything changes: a refused resource leaves the refresh token as it was.
        self.check_granted_resource(family.resource.as_deref(), requested_resource)?;
        let tenant = TenantId::new(family.tenant.as_str())?;
        let mut allowed = ScopeSet::parse(&family.scope)?;
        allowed = allowed
            .iter()
            .filter(|s| client.scopes().contains(*s))
            .collect();
        if let Some(username) = &family.username {
            let user = self.accounts.user(username).await?;
            match user {
                Some(user) if !user.disabled && user.tenant == family.tenant => {
                    allowed = allowed
                        .iter()
                        .filter(|s| user_scopes().contains(*s))
                        .collect();
                }
                _ => {
                    return Err(OAuthError::invalid_grant(
                        "the user of this grant is disabled or no longer exists",
                    ));
                }
            }
        }
        // Without a scope parameter the family's whole scope is asked for again (RFC 6749 6).
        let scopes = grant_scopes(Some(requested_scope.unwrap_or(&family.scope)), allowed)?;
        let grant = Grant {
            tenant,
            subject: family.subject.clone(),
            username: family.username.clone(),
            client_id: family.client_id.clone(),
            scopes,
            resource: family.resource.clone(),
        };
        let access = self.issue_access(&grant)?;
        let refresh = new_secret()?;
        let now = self.store.now();
        let lifetime = self.config.refresh_token_ttl;
        let expires_at = now.saturating_add(duration_millis(lifetime));
        self.store
            .put(
                &Store::key("refresh", &digest(&refresh))?,
                &RefreshRecord {
                    family: family.id.clone(),
                    expires_at,
                },
                Some(lifetime),
            )
            .await?;
        let mut next = family.clone();
        next.current = Some(digest(&refresh));
        next.expires_at = expires_at;
        next.access.retain(|a| a.exp > now);
        next.access.push(AccessRef {
            jti: access.token_id.clone(),
            exp: access.expires_at,
        });
        // Forgotten access tokens could no longer be revoked with the family: revoke them now.
        let forgotten = overflow(&mut next.access, MAX_FAMILY_ACCESS_TOKENS);
        for old in &forgotten {
            self.verifier
                .revoke(&grant.tenant, &old.jti, old.exp)
                .await?;
        }
        if !self
            .store
            .swap(&family_key, stored.version, &next, Some(lifetime))
            .await?
        {
            // Another request redeemed the same token first: this one is a reuse.
            self.revoke_family(&family.id).await?;
            // The access token just signed belongs to the family but is not recorded in it.
            self.verifier
                .revoke(&grant.tenant, &access.token_id, access.expires_at)
                .await?;
            return Err(invalid());
        }
        Ok(TokenResponse {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: self.expires_in(),
            refresh_token: Some(refresh),
            scope: grant.scopes.to_string(),
        })
    }

    /// Revokes every live token family of the user `username` — their refresh tokens and the
    /// access tokens they track — as when the user is disabled or their password changes.
    /// Returns how many families were revoked. It reads every family record: an admin
    /// operation, not a hot path.
    pub async fn revoke_user_tokens(&self, username: &str) -> Result<usize> {
        self.revoke_families(|f| f.username.as_deref() == Some(username))
            .await
    }

    /// Revokes every live family that `which` selects; how many.
    async fn revoke_families(&self, which: impl Fn(&Family) -> bool) -> Result<usize> {
        let families: Vec<Family> = self.store.scan("family").await?;
        let mut revoked = 0;
        for family in families.iter().filter(|f| !f.revoked && which(f)) {
            self.revoke_family(&family.id).await?;
            revoked += 1;
        }
        Ok(revoked)
    }

    /// Sets a user's password and ends everything the old one let anyone start: the user's
    /// browser sessions (through the user's credential generation), token families with their
    /// access tokens, and device keys with the access tokens obtained with them. `NotFound` if
    /// there is no such user.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<Revoked> {
        self.accounts.set_password(username, password).await?;
        self.revoke_user(username).await
    }

    /// Disables (or enables again) a user. Disabling ends the user's browser sessions, token
    /// families with their access tokens, and device keys with their access tokens; none of
    /// them comes back when the user is enabled again. `NotFound` if there is no such user.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<Revoked> {
        self.accounts.set_disabled(username, disabled).await?;
        if disabled {
            self.revoke_user(username).await
        } else {
            Ok(Revoked::default())
        }
    }

    /// Revokes the token families and removes the device keys of `username`.
    pub async fn revoke_user(&self, username: &str) -> Result<Revoked> {
        Ok(Revoked {
            families: self.revoke_user_tokens(username).await?,
            device_keys: self
                .remove_device_keys_where(|k| k.username == username)
                .await?,
        })
    }

    /// Removes a client, the token families issued through it with their access tokens, and
    /// the device keys registered through it with theirs. `None` if there was no such client
    /// (whatever was still bound to its id is cleaned up all the same).
    pub async fn remove_client(&self, client_id: &str) -> Result<Option<Revoked>> {
        let existed = self.accounts.remove_client(client_id).await?;
        let revoked = Revoked {
            families: self.revoke_families(|f| f.client_id == client_id).await?,
            device_keys: self
                .remove_device_keys_where(|k| k.client_id == client_id)
                .await?,
        };
        Ok(existed.then_some(revoked))
    }

    /// Revokes family `id`: no token of it refreshes again, and its live access tokens stop
    /// verifying. Idempotent; a missing family is already gone.
    pub(crate) async fn revoke_family(&self, id: &str) -> Result<()> {
        let key = Store::key("family", id)?;
        for _ in 0..16 {
            let Some(stored) = self.store.get::<Family>(&key).await? else {
                return Ok(());
            };
            let mut family = stored.value;
            let already = family.revoked;
            family.revoked = true;
            let ttl = self.store.ttl_until(family.expires_at);
            if already
                || self
                    .store
                    .swap(&key, stored.version, &family, Some(ttl))
                    .await?
            {
                if family.access.is_empty() {
                    return Ok(());
                }
                let tenant = TenantId::new(family.tenant.as_str())?;
                let now = self.store.now();
                for access in family.access.iter().filter(|a| a.exp > now) {
                    self.verifier
                        .revoke(&tenant, &access.jti, access.exp)
                        .await?;
                }
                return Ok(());
            }
        }
        Err(Error::unavailable(
            "the token family is too contended",
            None,
        ))
    }

    /// Revokes the family a reused authorization code was redeemed into. When the family does
    /// not exist yet (the first redemption is still issuing), a revoked placeholder is created
    /// for `ttl`, so that issuance fails instead of handing out tokens
    /// ([`OAuthServer::issue_in_new_family`] creates the family only if it is absent).
    pub(crate) async fn revoke_code_family(&self, id: &str, ttl: Duration) -> Result<()> {
        let key = Store::key("family", id)?;
        for _ in 0..16 {
            if self.store.get::<Family>(&key).await?.is_some() {
                return self.revoke_family(id).await;
            }
            let now = self.store.now();
            let placeholder = Family {
                id: id.to_owned(),
                client_id: String::new(),
                tenant: String::new(),
                subject: String::new(),
                username: None,
                scope: String::new(),
                created_at: now,
                current: None,
                expires_at: now.saturating_add(duration_millis(ttl)),
                revoked: true,
                access: Vec::new(),
                resource: None,
            };
            if self.store.create(&key, &placeholder, Some(ttl)).await? {
                return Ok(());
            }
        }
        Err(Error::unavailable(
            "the token family is too contended",
            None,
        ))
    }

    /// The family of a refresh token, if the token is known.
    pub(crate) async fn family_of_refresh(&self, token: &str) -> Result<Option<(Family, bool)>> {
        let presented = digest(token);
        let Some(record) = self
            .store
            .get::<RefreshRecord>(&Store::key("refresh", &presented)?)
            .await?
        else {
            return Ok(None);
        };
        let family = self
            .store
            .get::<Family>(&Store::key("family", &record.value.family)?)
            .await?
            .map(|s| s.value);
        Ok(family.map(|f| {
            let current = f.current.as_deref() == Some(presented.as_str());
            (f, current)
        }))
    }
}

/// Drops the oldest entries of `access` beyond `keep` and returns them.
pub(crate) fn overflow(access: &mut Vec<AccessRef>, keep: usize) -> Vec<AccessRef> {
    let extra = access.len().saturating_sub(keep);
    access.drain(..extra).collect()
}
