//! Pre-authentication: the gateways' public keys (their JWKS) and the checks of a bearer token
//! that need nothing else.
//!
//! The keys are fetched from every node's `/.well-known/jwks.json` (the union, so nodes in the
//! middle of a key rotation all verify), with the issuer from `/.well-known/oauth-authorization-server`,
//! at start, every `jwks_refresh`, and when a token names a `kid` not known here — at most once
//! per `jwks_min_interval`, one fetch at a time, so a stream of tokens with made-up `kid`s cannot
//! turn into a stream of fetches.
//!
//! A token passes when it is at most [`p8fs_auth::MAX_TOKEN_BYTES`], its header says `EdDSA`,
//! `typ` `at+jwt` and a known `kid`, its signature verifies with that key, its `iss` is the
//! nodes' issuer (once known), and `exp`/`nbf` hold with the leeway — the checks of
//! `p8fs_auth::Verifier` that need no private state, with the same `jsonwebtoken` settings. What
//! needs the store (revocation) or the route (audience, scopes) stays with the node, which
//! verifies every token again.
//!
//! A signature is checked once per token: what passed is remembered by the token's SHA-256 (at
//! most [`CACHE_CAPACITY`] tokens), and a remembered token is checked again against the time,
//! the issuer and the keys on every request, so it stops passing when it expires or its key is
//! no longer served.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p8fs_core::{Clock, SystemClock, Timestamp};
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why a token was refused (the text goes into the 401; it never contains the token).
pub(crate) type Rejection = &'static str;

/// The claims the edge reads.
#[derive(Deserialize)]
struct Claims {
    iss: String,
    exp: Timestamp,
    iat: Timestamp,
    #[serde(default)]
    nbf: Option<Timestamp>,
    tenant: String,
}

/// Most tokens whose signature is remembered; when full, the expired ones go, and if that is not
/// enough, all.
pub(crate) const CACHE_CAPACITY: usize = 10_000;

/// What a token whose signature verified says, for the checks made on every request.
struct Passed {
    kid: String,
    iss: String,
    /// `exp`, in milliseconds.
    expires_at: Timestamp,
    /// The later of `nbf` and `iat`, in milliseconds.
    not_before: Timestamp,
    tenant: String,
}

/// What a token that passed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// The `tenant` claim.
    pub(crate) tenant: String,
}

#[derive(Default)]
struct Known {
    keys: HashMap<String, Arc<DecodingKey>>,
    issuer: Option<String>,
}

/// The nodes' keys and the checks made with them.
pub(crate) struct Keys {
    sources: Vec<SocketAddr>,
    client: reqwest::Client,
    known: RwLock<Known>,
    /// When keys were last fetched because of an unknown `kid`; held while fetching.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    leeway: Duration,
    validation: Validation,
    passed: Mutex<HashMap<[u8; 32], Arc<Passed>>>,
}

impl Keys {
    /// Keys fetched from the nodes at `sources`.
    pub(crate) fn new(
        sources: Vec<SocketAddr>,
        min_interval: Duration,
        leeway: Duration,
    ) -> p8fs_core::Result<Self> {
        // No idle connections are kept: fetches are rare, and a connection is then never used
        // from another runtime than the one that opened it.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| p8fs_core::Error::internal(format!("JWKS client: {e}"), None))?;
        // As `p8fs_auth::Verifier`: the library checks the algorithm and the signature only;
        // time and issuer are compared here.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        Ok(Self {
            sources,
            client,
            known: RwLock::new(Known::default()),
            last_fetch: tokio::sync::Mutex::new(None),
            min_interval,
            leeway,
            validation,
            passed: Mutex::new(HashMap::new()),
        })
    }

    /// How many keys are known.
    pub(crate) fn count(&self) -> usize {
        self.known.read().keys.len()
    }

    /// The issuer the nodes named, once fetched.
    pub(crate) fn issuer(&self) -> Option<String> {
        self.known.read().issuer.clone()
    }

    /// Fetches the keys from every node now; keeps the keys known when no node answers.
    pub(crate) async fn refresh(&self) {
        let mut keys = HashMap::new();
        let mut issuer = None;
        let mut answered = 0;
        for source in &self.sources {
            match self.fetch(*source).await {
                Ok((set, named)) => {
                    answered += 1;
                    for jwk in &set.keys {
                        let (Some(kid), Ok(key)) =
                            (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
                        else {
                            continue;
                        };
                        keys.entry(kid).or_insert_with(|| Arc::new(key));
                    }
                    issuer = issuer.or(named);
                }
                Err(error) => {
                    tracing::debug!(node = %source, %error, "JWKS fetch failed");
                }
            }
        }
        if answered == 0 {
            tracing::warn!("no gateway node answered for its JWKS; keeping the keys known");
            return;
        }
        let mut known = self.known.write();
        known.keys = keys;
        if issuer.is_some() {
            known.issuer = issuer;
        }
    }

    async fn fetch(&self, source: SocketAddr) -> Result<(JwkSet, Option<String>), String> {
        let set: JwkSet = self
            .client
            .get(format!("http://{source}/.well-known/jwks.json"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let issuer = match self
            .client
            .get(format!(
                "http://{source}/.well-known/oauth-authorization-server"
            ))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
        {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|metadata| metadata["issuer"].as_str().map(str::to_owned)),
            Err(_) => None,
        };
        Ok((set, issuer))
    }

    /// Fetches the keys because a token named an unknown `kid`, unless that was done less than
    /// `min_interval` ago (or is being done: then this waits for it).
    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        let now = Instant::now();
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.min_interval) {
            return;
        }
        self.refresh().await;
        *last = Some(Instant::now());
    }

    fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        self.known.read().keys.get(kid).cloned()
    }

    /// Checks `token` at `clock`'s time.
    pub(crate) async fn check(&self, token: &str, clock: &dyn Clock) -> Result<Checked, Rejection> {
        if token.len() > p8fs_auth::MAX_TOKEN_BYTES {
            return Err("token too long");
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let remembered = self.passed.lock().get(&digest).cloned();
        let passed = match remembered {
            Some(passed) if self.still_trusted(&passed) => passed,
            _ => {
                let passed = Arc::new(self.verify(token).await?);
                self.remember(digest, passed.clone(), clock.now());
                passed
            }
        };
        let now = clock.now();
        let leeway = millis(self.leeway);
        if now >= passed.expires_at.saturating_add(leeway) {
            return Err("token expired");
        }
        if passed.not_before > now.saturating_add(leeway) {
            return Err("token not yet valid");
        }
        Ok(Checked {
            tenant: passed.tenant.clone(),
        })
    }

    /// Whether a remembered token's key is still served and its issuer still the nodes'.
    fn still_trusted(&self, passed: &Passed) -> bool {
        let known = self.known.read();
        known.keys.contains_key(&passed.kid)
            && known
                .issuer
                .as_deref()
                .is_none_or(|issuer| issuer == passed.iss)
    }

    /// The checks of a token's header, signature and issuer.
    async fn verify(&self, token: &str) -> Result<Passed, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
        if header.alg != Algorithm::EdDSA {
            return Err("unsupported algorithm");
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err("not an access token");
        }
        let kid = header.kid.ok_or("missing kid")?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                self.refresh_for_unknown_kid().await;
                self.key(&kid).ok_or("unknown signing key")?
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| match e.kind() {
                JwtErrorKind::InvalidSignature => "invalid signature",
                JwtErrorKind::Json(_) => "invalid claims",
                _ => "malformed token",
            })?
            .claims;
        if let Some(issuer) = self.issuer()
            && claims.iss != issuer
        {
            return Err("wrong issuer");
        }
        Ok(Passed {
            kid,
            iss: claims.iss,
            expires_at: claims.exp.saturating_mul(1000),
            not_before: claims
                .nbf
                .unwrap_or(claims.iat)
                .max(claims.iat)
                .saturating_mul(1000),
            tenant: claims.tenant,
        })
    }

    fn remember(&self, digest: [u8; 32], passed: Arc<Passed>, now: Timestamp) {
        let leeway = millis(self.leeway);
        let mut cache = self.passed.lock();
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, p| now < p.expires_at.saturating_add(leeway));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(digest, passed);
    }
}

fn millis(duration: Duration) -> Timestamp {
    Timestamp::try_from(duration.as_millis()).unwrap_or(Timestamp::MAX)
}

/// `at+jwt`, optionally with the `application/` prefix, compared case-insensitively (RFC 7515
/// section 4.1.9, RFC 9068 section 4), as the nodes compare it.
fn is_access_token_type(typ: &str) -> bool {
    let typ = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case(p8fs_auth::TOKEN_TYPE)
}

/// The system clock, as the nodes read it.
pub(crate) fn system_clock() -> &'static dyn Clock {
    &SystemClock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_types() {
        assert!(is_access_token_type("at+jwt"));
        assert!(is_access_token_type("AT+JWT"));
        assert!(is_access_token_type("application/at+jwt"));
        assert!(!is_access_token_type("JWT"));
        assert!(!is_access_token_type("application/jwt"));
    }

    #[tokio::test]
    async fn refuses_before_any_key_is_known() {
        // No node answers (nothing listens on port 9 here): no key, so any token is refused as
        // signed by an unknown key, and a malformed one as malformed.
        let keys = Keys::new(
            vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            Duration::from_secs(5),
            Duration::from_secs(30),
        )
        .unwrap();
        let clock = system_clock();
        assert_eq!(
            keys.check("not-a-token", clock).await,
            Err("malformed token")
        );
        // header {"alg":"EdDSA","typ":"at+jwt","kid":"k1"}, claims {}, a fake signature.
        let token = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.e30.c2ln";
        assert_eq!(keys.check(token, clock).await, Err("unknown signing key"));
        assert_eq!(keys.count(), 0);
        // header {"alg":"HS256","typ":"at+jwt","kid":"k1"}
        let hmac = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0.e30.c2ln";
        assert_eq!(keys.check(hmac, clock).await, Err("unsupported algorithm"));
    }

    /// Keys that know one key, `k1`, and a token it signed with `claims`.
    fn signed(claims: &serde_json::Value) -> (Keys, String) {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let der = signing.to_pkcs8_der().unwrap();
        let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
        let decoding = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
        let keys = Keys::new(
            vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap();
        keys.known
            .write()
            .keys
            .insert("k1".to_owned(), Arc::new(decoding));
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some("k1".to_owned());
        let token = jsonwebtoken::encode(&header, claims, &encoding).unwrap();
        (keys, token)
    }

    #[tokio::test]
    async fn a_remembered_token_is_checked_again_on_every_request() {
        let claims = serde_json::json!({
            "iss": "https://p8fs.test", "exp": 100, "iat": 10, "tenant": "acme"
        });
        let (keys, token) = signed(&claims);
        let clock = p8fs_core::ManualClock::new(50_000);
        let acme = Ok(Checked {
            tenant: "acme".to_owned(),
        });
        assert_eq!(keys.check(&token, &clock).await, acme);
        assert_eq!(keys.passed.lock().len(), 1);
        assert_eq!(keys.check(&token, &clock).await, acme);
        assert_eq!(keys.passed.lock().len(), 1);
        // Remembered, yet expired and not yet valid at other times.
        clock.set(100_000);
        assert_eq!(keys.check(&token, &clock).await, Err("token expired"));
        clock.set(9_999);
        assert_eq!(keys.check(&token, &clock).await, Err("token not yet valid"));
        clock.set(50_000);
        // An altered signature is another token: checked in full.
        let at = token.rfind('.').unwrap() + 1;
        let first = &token[at..=at];
        let altered = format!(
            "{}{}{}",
            &token[..at],
            if first == "A" { "B" } else { "A" },
            &token[at + 1..]
        );
        assert_eq!(keys.check(&altered, &clock).await, Err("invalid signature"));
        // The nodes name another issuer: refused.
        keys.known.write().issuer = Some("https://other.test".to_owned());
        assert_eq!(keys.check(&token, &clock).await, Err("wrong issuer"));
        keys.known.write().issuer = Some("https://p8fs.test".to_owned());
        assert_eq!(keys.check(&token, &clock).await, acme);
        // Its key is no longer served: refused.
        keys.known.write().keys.clear();
        assert_eq!(keys.check(&token, &clock).await, Err("unknown signing key"));
    }
}
