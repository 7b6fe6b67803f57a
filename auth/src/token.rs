//! Access tokens in the RFC 9068 JWT profile: the claims, the configuration shared by issuer and
//! verifier, and the [`Issuer`] that signs them with the ring's current key.
//!
//! Header: `{"typ":"at+jwt","alg":"EdDSA","kid":…}`. Claims: `iss`, `sub`, `aud`, `exp`, `iat`,
//! `nbf` (whole seconds), `jti` (128 random bits, base64url), `client_id`, `scope`
//! (space-separated) and `tenant`. `aud` is the configured audience ([`Issuer::issue`]) or, for
//! a token asked for a resource (RFC 8707), that resource's URI ([`Issuer::issue_for`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use p8fs_core::error::Source;
use p8fs_core::{Clock, Error, Result, TenantId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::keys::{KeyRing, duration_millis};
use crate::scope::ScopeSet;
use crate::{RESERVED_TENANT, random_bytes};

/// The JOSE `typ` of an access token (RFC 9068 section 2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// The longest lifetime [`Issuer::issue`] grants.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest `sub`, `client_id` and `jti`, in bytes.
pub const MAX_CLAIM_BYTES: usize = 256;
/// Longest audience [`Issuer::issue_for`] stamps, in bytes.
pub const MAX_AUDIENCE_BYTES: usize = 2000;

/// What issuer and verifier agree on. Both sides must use the same values.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TokenConfig {
    /// The `iss` claim, compared exactly (e.g. the gateway's public base URL).
    pub issuer: String,
    /// The `aud` claim, compared exactly.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (small, e.g. 30 s).
    pub leeway: Duration,
}

/// A freshly signed access token. `Debug` redacts the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The compact JWS: the bearer credential.
    pub token: String,
    /// The `jti` claim.
    pub token_id: String,
    /// The `exp` claim, in milliseconds since the Unix epoch.
    pub expires_at: Timestamp,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `aud` as RFC 7519 allows it: one string or an array of strings.
#[derive(Serialize, Deserialize, Clone)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// The claims of an access token. Unknown claims are ignored; duplicate claims are rejected by
/// the JSON parser.
#[derive(Serialize, Deserialize)]
pub(crate) struct AccessClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) aud: Audience,
    pub(crate) exp: i64,
    pub(crate) iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<i64>,
    pub(crate) jti: String,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) tenant: String,
}

/// Checks a `sub`, `client_id` or `jti` value: 1..=256 bytes, no control characters.
pub(crate) fn check_claim_text(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_CLAIM_BYTES && !value.chars().any(char::is_control)
}

/// Signs access tokens with the key ring's current key.
pub struct Issuer {
    keys: Arc<KeyRing>,
    config: TokenConfig,
    clock: Arc<dyn Clock>,
}

impl Issuer {
    /// An issuer signing with `keys` and stamping `config`'s issuer and audience.
    pub fn new(keys: Arc<KeyRing>, config: TokenConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            keys,
            config,
            clock,
        }
    }

    /// Signs an access token for `subject` of `tenant`, issued through `client_id`, granting
    /// `scopes`, valid from now for `ttl` (1 s ..= [`MAX_TOKEN_TTL`]; `exp` is rounded down to a
    /// whole second). `InvalidInput` names the offending argument (`tenant` for the reserved
    /// tenant, `sub`, `client_id`, `ttl`).
    pub fn issue(
        &self,
        tenant: &TenantId,
        subject: &str,
        client_id: &str,
        scopes: &ScopeSet,
        ttl: Duration,
    ) -> Result<IssuedToken> {
        self.issue_for(
            &self.config.audience,
            tenant,
            subject,
            client_id,
            scopes,
            ttl,
        )
    }

    /// [`Issuer::issue`] with `aud` = `audience` instead of the configured audience: a token
    /// for one resource server (RFC 8707), which [`crate::Verifier::verify`] refuses and
    /// [`crate::Verifier::verify_for`] with the same audience accepts. `InvalidInput` names
    /// `aud` for an audience that is empty, longer than [`MAX_AUDIENCE_BYTES`] or has control
    /// characters, and otherwise the argument at fault as [`Issuer::issue`] does.
    pub fn issue_for(
        &self,
        audience: &str,
        tenant: &TenantId,
        subject: &str,
        client_id: &str,
        scopes: &ScopeSet,
        ttl: Duration,
    ) -> Result<IssuedToken> {
        if audience.is_empty()
            || audience.len() > MAX_AUDIENCE_BYTES
            || audience.chars().any(char::is_control)
        {
            return Err(Error::invalid(
                "aud",
                format!("must be 1..={MAX_AUDIENCE_BYTES} bytes without control characters"),
            ));
        }
        if tenant.as_str() == RESERVED_TENANT {
            return Err(Error::invalid(
                "tenant",
                format!("{RESERVED_TENANT} is reserved for p8fs itself"),
            ));
        }
        if !check_claim_text(subject) {
            return Err(Error::invalid(
                "sub",
                format!("must be 1..={MAX_CLAIM_BYTES} bytes without control characters"),
            ));
        }
        if !check_claim_text(client_id) {
            return Err(Error::invalid(
                "client_id",
                format!("must be 1..={MAX_CLAIM_BYTES} bytes without control characters"),
            ));
        }
        if ttl < Duration::from_secs(1) || ttl > MAX_TOKEN_TTL {
            return Err(Error::invalid(
                "ttl",
                format!(
                    "must be between 1 s and {} days",
                    MAX_TOKEN_TTL.as_secs() / 86_400
                ),
            ));
        }
        let now = self.clock.now();
        let iat = now.div_euclid(1000);
        let exp = now.saturating_add(duration_millis(ttl)).div_euclid(1000);
        let token_id = URL_SAFE_NO_PAD.encode(random_bytes::<16>()?);
        let claims = AccessClaims {
            iss: self.config.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience::One(audience.to_owned()),
            exp,
            iat,
            nbf: Some(iat),
            jti: token_id.clone(),
            client_id: client_id.to_owned(),
            scope: scopes.to_string(),
            tenant: tenant.as_str().to_owned(),
        };
        let key = self.keys.signing_key()?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| {
            Error::internal("cannot sign the access token", Some(Box::new(e) as Source))
        })?;
        Ok(IssuedToken {
            token,
            token_id,
            expires_at: exp.saturating_mul(1000),
        })
    }

    /// The configuration tokens are issued with.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("keys", &self.keys)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
