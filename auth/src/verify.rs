//! Strict access-token verification and the `jti` revocation list.
//!
//! A token is accepted only if all of these hold: at most [`MAX_TOKEN_BYTES`]; header `alg` is
//! `EdDSA` (nothing else is ever accepted, so `none`, HMAC and RSA tokens fail whatever key they
//! were made with); `typ` is `at+jwt` (or `application/at+jwt`); no `crit`; `kid` names a live
//! key of the ring; the signature verifies with that key; `iss` equals the configured issuer
//! exactly; `aud` names the expected audience exactly (the configured one for
//! [`Verifier::verify`], the caller's for [`Verifier::verify_for`]: a token minted for a resource
//! server, RFC 8707, is meant for it alone, so each of the two refuses the other's tokens);
//! `exp`, `nbf` and `iat` hold at the injected clock's time with the configured leeway (at most
//! [`MAX_LEEWAY`]); `tenant` is a valid tenant id that is not reserved ([`crate::is_reserved`]); `sub`,
//! `client_id` and `jti` are 1..=256 bytes without control characters; `scope` parses; and the
//! `jti` is not revoked. Every rejection is `Unauthorized` with a short fixed reason.
//!
//! Revocations are key-value records in the reserved tenant [`RESERVED_TENANT`] at
//! `revoked-jti/<tenant>/<jti>`, with a ttl that ends when the token could no longer verify
//! anyway. Signature checks are cached by the SHA-256 of the token; time, key retirement and
//! revocation are checked on every call, cached or not, and so is the audience (the cache is
//! shared by every audience, so a token verified for one is never accepted for another).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use p8fs_core::validate::MAX_TTL_MILLIS;
use p8fs_core::{Clock, Error, JsonValue, Key, KvStore, Result, TenantId, Timestamp, Ttl};
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::RESERVED_TENANT;
use crate::keys::{KeyRing, duration_millis};
use crate::principal::Principal;
use crate::scope::ScopeSet;
use crate::token::{
    AccessClaims, Audience, MAX_CLAIM_BYTES, TOKEN_TYPE, TokenConfig, check_claim_text,
};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Key prefix of revocation records in the reserved tenant.
pub const REVOCATION_PREFIX: &str = "revoked-jti/";
/// The largest clock-skew leeway a verifier applies: a larger configured leeway is cut to this,
/// so a misconfiguration cannot keep expired (or revoked-by-expiry) tokens alive for long.
/// Configuration loaders reject larger values with an error naming the key.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Most verified tokens remembered.
const CACHE_CAPACITY: usize = 4096;

/// A token whose signature and claims have been checked; what remains depends on time, the key
/// ring and the revocation list.
struct Verified {
    principal: Principal,
    kid: String,
    /// The later of `nbf` and `iat`, in milliseconds.
    not_before: Timestamp,
    /// The `aud` claim, checked on every call against the audience the caller expects.
    audience: Audience,
    /// The key of the token's revocation record, looked up on every call (`None` if the tenant
    /// and `jti` make no valid key, which the lookup then reports).
    revocation: Option<Key>,
}

/// Verifies access tokens and records revocations.
pub struct Verifier {
    keys: Arc<KeyRing>,
    config: TokenConfig,
    clock: Arc<dyn Clock>,
    revocations: Arc<dyn KvStore>,
    validation: Validation,
    reserved: TenantId,
    cache: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
}

fn unauthorized(reason: &'static str) -> Error {
    Error::Unauthorized(reason.into())
}

impl Verifier {
    /// A verifier accepting tokens signed by `keys` for `config`, at `clock`'s time, with the
    /// revocation list in `revocations`. A leeway above [`MAX_LEEWAY`] is cut to it.
    pub fn new(
        keys: Arc<KeyRing>,
        mut config: TokenConfig,
        clock: Arc<dyn Clock>,
        revocations: Arc<dyn KvStore>,
    ) -> Self {
        // The library checks the algorithm and the signature only: time comes from our clock,
        // and issuer and audience are compared below.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        if config.leeway > MAX_LEEWAY {
            tracing::warn!(
                configured = ?config.leeway,
                used = ?MAX_LEEWAY,
                "token verification: the leeway is cut to its maximum"
            );
            config.leeway = MAX_LEEWAY;
        }
        Self {
            keys,
            config,
            clock,
            revocations,
            validation,
            reserved: reserved_tenant(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The principal a valid access token describes: a token whose `aud` names the configured
    /// audience ([`TokenConfig::audience`]). Every rejection is `Unauthorized` with a short
    /// reason that contains nothing from the token; a failure of the revocation store is passed
    /// on as it is (`Unavailable` or `Internal`), so an outage is not reported as a bad token.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let audience = self.config.audience.as_str();
        self.verify_where(token, |aud| aud.contains(audience).then_some(audience))
            .await
            .map(|(principal, _)| principal)
    }

    /// [`Verifier::verify`] for a token meant for `audience` (compared exactly), e.g. the
    /// resource URI of a resource server that asks for its own tokens (RFC 8707): every other
    /// check is the same. A token for the configured audience is refused unless `audience` is
    /// that audience.
    pub async fn verify_for(&self, token: &str, audience: &str) -> Result<Principal> {
        self.verify_where(token, |aud| aud.contains(audience).then_some(audience))
            .await
            .map(|(principal, _)| principal)
    }

    /// [`Verifier::verify`] for a token whose `aud` names any of `audiences`, and the first of
    /// them it names: for revocation and introspection, which serve every audience the
    /// authorization server issues for.
    pub(crate) async fn verify_any(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(Principal, String)> {
        self.verify_where(token, |aud| {
            audiences
                .iter()
                .find(|a| aud.contains(a))
                .map(String::as_str)
        })
        .await
        .map(|(principal, audience)| (principal, audience.to_owned()))
    }

    /// The shared checks, with the audience accepted where `accept` returns it.
    async fn verify_where<'a>(
        &self,
        token: &str,
        accept: impl Fn(&Audience) -> Option<&'a str>,
    ) -> Result<(Principal, &'a str)> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized("token too long"));
        }
        let now = self.clock.now();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = self.cache.lock().get(&digest).cloned();
        let (verified, audience) = match cached {
            Some(verified) => {
                let audience =
                    accept(&verified.audience).ok_or_else(|| unauthorized("wrong audience"))?;
                self.check_live(&verified, now)?;
                (verified, audience)
            }
            None => {
                let verified = Arc::new(self.check_token(token, now)?);
                let audience =
                    accept(&verified.audience).ok_or_else(|| unauthorized("wrong audience"))?;
                self.check_live(&verified, now)?;
                self.remember(digest, verified.clone(), now);
                (verified, audience)
            }
        };
        self.check_not_revoked(&verified).await?;
        Ok((verified.principal.clone(), audience))
    }

    /// Revokes the token `token_id` of `tenant` until `until` (its `exp` in milliseconds, e.g.
    /// [`Principal::expires_at`]) plus the leeway, after which it could not verify anyway.
    /// Idempotent. `InvalidInput` on `token_id` or `tenant` for values no token can carry.
    pub async fn revoke(&self, tenant: &TenantId, token_id: &str, until: Timestamp) -> Result<()> {
        if crate::is_reserved(tenant.as_str()) {
            return Err(crate::reserved_refusal(tenant.as_str()));
        }
        if !check_claim_text(token_id) {
            return Err(Error::invalid(
                "token_id",
                format!("must be 1..={MAX_CLAIM_BYTES} bytes without control characters"),
            ));
        }
        let now = self.clock.now();
        let keep_until = until.saturating_add(duration_millis(self.config.leeway));
        if keep_until <= now {
            return Ok(());
        }
        let ttl = Ttl::from_millis(keep_until.saturating_sub(now).min(MAX_TTL_MILLIS))?;
        let value = JsonValue::new(json!({
            "tenant": tenant.as_str(),
            "jti": token_id,
            "revoked_at": now,
            "until": until,
        }))?;
        self.revocations
            .put(
                &self.reserved,
                &revocation_key(tenant, token_id)?,
                &value,
                Some(ttl),
            )
            .await?;
        Ok(())
    }

    /// Checks the header, the signature and the claims.
    fn check_token(&self, token: &str, now: Timestamp) -> Result<Verified> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthorized("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(unauthorized("unsupported algorithm"));
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(unauthorized("not an access token"));
        }
        if header.crit.is_some() {
            return Err(unauthorized("unsupported critical header"));
        }
        let kid = header.kid.ok_or_else(|| unauthorized("missing kid"))?;
        let key = self
            .keys
            .verification_key(&kid, now)
            .ok_or_else(|| unauthorized("unknown signing key"))?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                JwtErrorKind::InvalidSignature => unauthorized("invalid signature"),
                JwtErrorKind::InvalidAlgorithm => unauthorized("unsupported algorithm"),
                JwtErrorKind::Json(_) => unauthorized("invalid claims"),
                _ => unauthorized("malformed token"),
            })?;
        let claims = data.claims;
        if claims.iss != self.config.issuer {
            return Err(unauthorized("wrong issuer"));
        }
        let tenant = TenantId::new(claims.tenant).map_err(|_| unauthorized("invalid tenant"))?;
        if crate::is_reserved(tenant.as_str()) {
            return Err(unauthorized("invalid tenant"));
        }
        if !check_claim_text(&claims.sub) {
            return Err(unauthorized("invalid sub"));
        }
        if !check_claim_text(&claims.client_id) {
            return Err(unauthorized("invalid client_id"));
        }
        if !check_claim_text(&claims.jti) {
            return Err(unauthorized("invalid jti"));
        }
        let scopes = ScopeSet::parse(&claims.scope).map_err(|_| unauthorized("invalid scope"))?;
        let not_before = claims.nbf.unwrap_or(claims.iat).max(claims.iat);
        let revocation = revocation_key(&tenant, &claims.jti).ok();
        Ok(Verified {
            principal: Principal {
                tenant,
                subject: claims.sub,
                client_id: claims.client_id,
                scopes,
                token_id: claims.jti,
                expires_at: claims.exp.saturating_mul(1000),
            },
            kid,
            not_before: not_before.saturating_mul(1000),
            audience: claims.aud,
            revocation,
        })
    }

    /// The checks that depend on the time and the key ring.
    fn check_live(&self, verified: &Verified, now: Timestamp) -> Result<()> {
        let leeway = duration_millis(self.config.leeway);
        if now >= verified.principal.expires_at.saturating_add(leeway) {
            return Err(unauthorized("token expired"));
        }
        if verified.not_before > now.saturating_add(leeway) {
            return Err(unauthorized("token not yet valid"));
        }
        if self.keys.verification_key(&verified.kid, now).is_none() {
            return Err(unauthorized("unknown signing key"));
        }
        Ok(())
    }

    async fn check_not_revoked(&self, verified: &Verified) -> Result<()> {
        let revoked = match &verified.revocation {
            Some(key) => self.revocations.get(&self.reserved, key).await?.is_some(),
            None => {
                let principal = &verified.principal;
                self.is_revoked(&principal.tenant, &principal.token_id)
                    .await?
            }
        };
        if revoked {
            Err(unauthorized("token revoked"))
        } else {
            Ok(())
        }
    }

    /// Whether the token `token_id` of `tenant` is revoked: for credentials obtained with a
    /// token (S3 temporary credentials), which must stop working when it is revoked. A
    /// revocation is remembered until the token could no longer verify anyway, so this answers
    /// for as long as such a credential may live (it never outlives its token). A failure of
    /// the revocation store is passed on as it is.
    pub async fn is_revoked(&self, tenant: &TenantId, token_id: &str) -> Result<bool> {
        let key = revocation_key(tenant, token_id)?;
        Ok(self.revocations.get(&self.reserved, &key).await?.is_some())
    }

    fn remember(&self, digest: [u8; 32], verified: Arc<Verified>, now: Timestamp) {
        let leeway = duration_millis(self.config.leeway);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, v| now < v.principal.expires_at.saturating_add(leeway));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }

    /// The configuration tokens are verified against.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `at+jwt`, optionally with the `application/` prefix, compared case-insensitively
/// (RFC 7515 section 4.1.9, RFC 9068 section 4).
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case(TOKEN_TYPE)
}

/// The tenant that holds p8fs's own records.
pub(crate) fn reserved_tenant() -> TenantId {
    match TenantId::new(RESERVED_TENANT) {
        Ok(tenant) => tenant,
        Err(_) => unreachable!("RESERVED_TENANT is a valid tenant id"),
    }
}

fn revocation_key(tenant: &TenantId, token_id: &str) -> Result<Key> {
    Key::new(format!("{REVOCATION_PREFIX}{tenant}/{token_id}"))
}

#[cfg(test)]
mod tests;
