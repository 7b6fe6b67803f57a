//! Verifier tests: the accepted token, every rejection (each `Unauthorized`), revocation, the
//! verification cache, and rotation while serving.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p8fs_conformance::ModelBackend;
use p8fs_core::{Clock, ErrorKind, Key, KvStore, ManualClock, TenantId, Timestamp};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    IssuedToken, Issuer, KeyRing, Principal, RESERVED_TENANT, Scope, ScopeSet, TokenConfig,
    Verifier,
};

/// A whole second, so `iat` is exactly `START / 1000`.
const START: Timestamp = 1_700_000_000_000;
const LEEWAY_MS: i64 = 30_000;
const TTL: Duration = Duration::from_secs(600);

fn config() -> TokenConfig {
    TokenConfig {
        issuer: "https://p8fs.test".to_owned(),
        audience: "p8fs".to_owned(),
        leeway: Duration::from_millis(LEEWAY_MS as u64),
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

struct Fixture {
    _dir: TempDir,
    clock: Arc<ManualClock>,
    keys: Arc<KeyRing>,
    issuer: Issuer,
    verifier: Verifier,
    store: Arc<ModelBackend>,
}

impl Fixture {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let keys = Arc::new(KeyRing::load_or_create(dir.path(), clock.clone()).unwrap());
        let store = Arc::new(ModelBackend::new(clock.clone()));
        Self {
            issuer: Issuer::new(keys.clone(), config(), clock.clone()),
            verifier: Verifier::new(keys.clone(), config(), clock.clone(), store.clone()),
            _dir: dir,
            clock,
            keys,
            store,
        }
    }

    fn issue(&self) -> IssuedToken {
        self.issuer
            .issue(
                &tenant("acme"),
                "alice",
                "cli",
                &ScopeSet::parse("kv:read kv:write").unwrap(),
                TTL,
            )
            .unwrap()
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": self.keys.current_kid() })
    }

    fn claims(&self) -> Value {
        let now = self.clock.now() / 1000;
        json!({
            "iss": "https://p8fs.test",
            "sub": "alice",
            "aud": "p8fs",
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "jti": "jti-0123456789abcdef",
            "client_id": "cli",
            "scope": "kv:read",
            "tenant": "acme",
        })
    }

    /// Signs arbitrary header and claims with the ring's current key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let key = self.keys.signing_key().unwrap();
        sign_with(&key.encoding, Algorithm::EdDSA, header, claims)
    }

    /// Signs the default header with `claims` changed by `edit`.
    fn sign_claims(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = self.claims();
        edit(&mut claims);
        self.sign(&self.header(), &claims)
    }

    /// Signs the default claims with the header changed by `edit`.
    fn sign_header(&self, edit: impl FnOnce(&mut Value)) -> String {
        let mut header = self.header();
        edit(&mut header);
        self.sign(&header, &self.claims())
    }

    async fn accepts(&self, token: &str) -> Principal {
        match self.verifier.verify(token).await {
            Ok(principal) => principal,
            Err(e) => panic!("expected the token to verify, got {e}"),
        }
    }

    async fn rejects(&self, token: &str, reason: &str) {
        match self.verifier.verify(token).await {
            Ok(_) => panic!("expected the token to be rejected ({reason})"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
                assert_eq!(e.to_string(), format!("unauthorized: {reason}"));
            }
        }
    }
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn sign_with(key: &EncodingKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn set(value: &mut Value, field: &str, to: Value) {
    value[field] = to;
}

fn remove(value: &mut Value, field: &str) {
    value.as_object_mut().unwrap().remove(field);
}

#[tokio::test]
async fn a_good_token_verifies_to_its_principal() {
    let f = Fixture::new();
    let issued = f.issue();
    let principal = f.accepts(&issued.token).await;
    assert_eq!(
        principal,
        Principal {
            tenant: tenant("acme"),
            subject: "alice".to_owned(),
            client_id: "cli".to_owned(),
            scopes: ScopeSet::parse("kv:write kv:read").unwrap(),
            token_id: issued.token_id.clone(),
            expires_at: START + 600_000,
        }
    );
    assert_eq!(issued.expires_at, START + 600_000);
    assert!(principal.require(Scope::KvRead).is_ok());
    let denied = principal.require(Scope::Admin).unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::Forbidden);
    assert!(denied.to_string().contains("admin"), "{denied}");
    // Verified again (now from the cache), the same principal.
    assert_eq!(f.accepts(&issued.token).await, principal);
}

#[tokio::test]
async fn issued_tokens_follow_rfc_9068() {
    let f = Fixture::new();
    let issued = f.issue();
    let header = jsonwebtoken::decode_header(&issued.token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid, Some(f.keys.current_kid()));
    let payload = issued.token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let now = START / 1000;
    assert_eq!(claims["iss"], "https://p8fs.test");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "p8fs");
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["nbf"], now);
    assert_eq!(claims["exp"], now + 600);
    assert_eq!(claims["client_id"], "cli");
    assert_eq!(claims["scope"], "kv:read kv:write");
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["jti"], issued.token_id.as_str());
    // 128 random bits, base64url.
    assert_eq!(URL_SAFE_NO_PAD.decode(&issued.token_id).unwrap().len(), 16);
    assert_ne!(f.issue().token_id, issued.token_id);
}

#[tokio::test]
async fn hand_signed_default_claims_verify() {
    // The raw signing helper produces acceptable tokens, so each rejection below is caused by
    // the one thing it changes.
    let f = Fixture::new();
    f.accepts(&f.sign(&f.header(), &f.claims())).await;
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let f = Fixture::new();
    let mut header = f.header();
    set(&mut header, "alg", json!("none"));
    let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&f.claims()));
    f.rejects(&unsigned, "malformed token").await;
    // With the signature of a genuine token attached.
    let genuine = f.sign(&f.header(), &f.claims());
    let signature = genuine.rsplit('.').next().unwrap();
    f.rejects(&format!("{unsigned}{signature}"), "malformed token")
        .await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_rejected() {
    let f = Fixture::new();
    let jwks = f.keys.jwks();
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let raw = URL_SAFE_NO_PAD.decode(&x).unwrap();
    let mut header = f.header();
    set(&mut header, "alg", json!("HS256"));
    for secret in [raw.as_slice(), x.as_bytes(), jwks.to_string().as_bytes()] {
        let key = EncodingKey::from_secret(secret);
        let token = sign_with(&key, Algorithm::HS256, &header, &f.claims());
        f.rejects(&token, "unsupported algorithm").await;
    }
    // The same through the library's own encoder.
    let mut lib_header = Header::new(Algorithm::HS256);
    lib_header.typ = Some("at+jwt".to_owned());
    lib_header.kid = Some(f.keys.current_kid());
    let token =
        jsonwebtoken::encode(&lib_header, &f.claims(), &EncodingKey::from_secret(&raw)).unwrap();
    f.rejects(&token, "unsupported algorithm").await;
}

#[tokio::test]
async fn every_other_algorithm_is_rejected() {
    let f = Fixture::new();
    let genuine = f.sign(&f.header(), &f.claims());
    let signature = genuine.rsplit('.').next().unwrap().to_owned();
    for alg in [
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384",
    ] {
        let mut header = f.header();
        set(&mut header, "alg", json!(alg));
        let token = format!(
            "{}.{}.{signature}",
            b64_json(&header),
            b64_json(&f.claims())
        );
        f.rejects(&token, "unsupported algorithm").await;
    }
    for alg in ["Ed25519", "eddsa", "", "NONE"] {
        let token = f.sign_header(|h| set(h, "alg", json!(alg)));
        f.rejects(&token, "malformed token").await;
    }
}

#[tokio::test]
async fn tokens_of_an_unknown_key_are_rejected() {
    let f = Fixture::new();
    let other = Fixture::new();
    // Another ring's token: its kid is unknown here.
    f.rejects(&other.issue().token, "unknown signing key").await;
    // Another key claiming our kid.
    let forged = other.sign(&f.header(), &f.claims());
    f.rejects(&forged, "invalid signature").await;
}

#[tokio::test]
async fn unknown_or_missing_kid_is_rejected() {
    let f = Fixture::new();
    f.rejects(
        &f.sign_header(|h| set(h, "kid", json!("no-such-key"))),
        "unknown signing key",
    )
    .await;
    f.rejects(&f.sign_header(|h| remove(h, "kid")), "missing kid")
        .await;
}

#[tokio::test]
async fn a_tampered_token_is_rejected() {
    let f = Fixture::new();
    let issued = f.issue();
    let parts: Vec<&str> = issued.token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    set(&mut claims, "scope", json!("admin kv:read kv:write"));
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);
    f.rejects(&tampered, "invalid signature").await;
    // A changed header (kid kept) breaks the signature too.
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    set(&mut header, "cty", json!("x"));
    let tampered = format!("{}.{}.{}", b64_json(&header), parts[1], parts[2]);
    f.rejects(&tampered, "invalid signature").await;
    // A flipped signature bit.
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(signature)
    );
    f.rejects(&tampered, "invalid signature").await;
    f.accepts(&issued.token).await;
}

#[tokio::test]
async fn malformed_tokens_are_rejected() {
    let f = Fixture::new();
    for token in ["", "a", "a.b", "a.b.c", "...", "x.y.z.w", "€.€.€"] {
        f.rejects(token, "malformed token").await;
    }
    let long = format!("{}.{}.x", "a".repeat(8000), "b".repeat(8000));
    f.rejects(&long, "token too long").await;
}

#[tokio::test]
async fn an_expired_token_is_rejected_after_the_leeway() {
    let f = Fixture::new();
    let issued = f.issue();
    f.accepts(&issued.token).await;
    f.clock.set(issued.expires_at + LEEWAY_MS - 1);
    f.accepts(&issued.token).await;
    f.clock.set(issued.expires_at + LEEWAY_MS);
    f.rejects(&issued.token, "token expired").await;
    f.clock.set(issued.expires_at + LEEWAY_MS + 1);
    f.rejects(&issued.token, "token expired").await;
    // Not cached on the first sight either.
    let fresh = Fixture::new();
    fresh.clock.set(START + 600_000 + LEEWAY_MS + 1);
    let old = fresh.sign_claims(|c| set(c, "exp", json!(START / 1000 + 600)));
    fresh.rejects(&old, "token expired").await;
}

#[tokio::test]
async fn a_leeway_above_the_maximum_is_cut_to_it() {
    let f = Fixture::new();
    let lenient = Verifier::new(
        f.keys.clone(),
        TokenConfig {
            leeway: Duration::from_secs(24 * 3600),
            ..config()
        },
        f.clock.clone(),
        f.store.clone(),
    );
    let issued = f.issue();
    let max = i64::try_from(crate::MAX_LEEWAY.as_millis()).unwrap();
    assert_eq!(max, 300_000, "the documented bound");
    f.clock.set(issued.expires_at + max - 1);
    lenient.verify(&issued.token).await.unwrap();
    f.clock.set(issued.expires_at + max);
    let err = lenient.verify(&issued.token).await.unwrap_err();
    assert_eq!(err.to_string(), "unauthorized: token expired");
    f.clock.set(START);
    let early = f.sign_claims(|c| {
        let now = START / 1000;
        set(c, "nbf", json!(now + 3600));
        set(c, "iat", json!(now + 3600));
    });
    let err = lenient.verify(&early).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn a_token_not_yet_valid_is_rejected_beyond_the_leeway() {
    let f = Fixture::new();
    let now = START / 1000;
    let leeway = LEEWAY_MS / 1000;
    let early = f.sign_claims(|c| set(c, "nbf", json!(now + leeway + 1)));
    f.rejects(&early, "token not yet valid").await;
    let within = f.sign_claims(|c| set(c, "nbf", json!(now + leeway)));
    f.accepts(&within).await;
    // iat in the future counts as well.
    let issued_later = f.sign_claims(|c| {
        set(c, "iat", json!(now + leeway + 1));
        remove(c, "nbf");
    });
    f.rejects(&issued_later, "token not yet valid").await;
    // Once the time comes, the same token verifies.
    f.clock.advance(1000);
    f.accepts(&early).await;
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_rejected() {
    let f = Fixture::new();
    for iss in [
        "https://p8fs.test/",
        "https://P8FS.test",
        "https://evil.test",
        "",
    ] {
        let token = f.sign_claims(|c| set(c, "iss", json!(iss)));
        f.rejects(&token, "wrong issuer").await;
    }
    for aud in [json!("p8fs2"), json!("P8FS"), json!([]), json!(["other"])] {
        let token = f.sign_claims(|c| set(c, "aud", aud));
        f.rejects(&token, "wrong audience").await;
    }
    // An audience array naming us is accepted (RFC 7519 section 4.1.3).
    f.accepts(&f.sign_claims(|c| set(c, "aud", json!(["other", "p8fs"]))))
        .await;
    // A token from an issuer with another audience.
    let mut other = config();
    other.audience = "someone-else".to_owned();
    let issued = Issuer::new(f.keys.clone(), other, f.clock.clone())
        .issue(&tenant("acme"), "alice", "cli", &ScopeSet::all(), TTL)
        .unwrap();
    f.rejects(&issued.token, "wrong audience").await;
}

const MCP: &str = "https://p8fs.test/mcp";

#[tokio::test]
async fn a_token_for_a_resource_verifies_only_for_that_resource() {
    let f = Fixture::new();
    let issued = f
        .issuer
        .issue_for(
            MCP,
            &tenant("acme"),
            "alice",
            "cli",
            &ScopeSet::parse("kv:read").unwrap(),
            TTL,
        )
        .unwrap();
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(issued.token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], MCP);
    // The default audience refuses it, the resource accepts it; twice each, so the second
    // answer comes from the verification cache.
    for _ in 0..2 {
        f.rejects(&issued.token, "wrong audience").await;
        let principal = f.verifier.verify_for(&issued.token, MCP).await.unwrap();
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.token_id, issued.token_id);
    }
    for other in [
        "https://p8fs.test/mcp/",
        "https://p8fs.test/MCP",
        "https://p8fs.test",
        "p8fs",
    ] {
        let e = f
            .verifier
            .verify_for(&issued.token, other)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "unauthorized: wrong audience", "{other}");
    }
}

#[tokio::test]
async fn a_default_token_is_refused_for_a_resource() {
    let f = Fixture::new();
    let issued = f.issue();
    for _ in 0..2 {
        let e = f.verifier.verify_for(&issued.token, MCP).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthorized);
        assert_eq!(e.to_string(), "unauthorized: wrong audience");
        f.accepts(&issued.token).await;
    }
    // verify_for with the configured audience is verify.
    f.verifier.verify_for(&issued.token, "p8fs").await.unwrap();
}

#[tokio::test]
async fn verify_for_shares_every_other_check() {
    let f = Fixture::new();
    let for_mcp = |edit: &dyn Fn(&mut Value)| {
        f.sign_claims(|c| {
            set(c, "aud", json!(MCP));
            edit(c);
        })
    };
    let rejects = |token: String, reason: &'static str| {
        let verifier = &f.verifier;
        async move {
            let e = verifier.verify_for(&token, MCP).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
            assert_eq!(e.to_string(), format!("unauthorized: {reason}"));
        }
    };
    rejects(
        for_mcp(&|c| set(c, "iss", json!("https://evil.test"))),
        "wrong issuer",
    )
    .await;
    let now = START / 1000;
    rejects(
        for_mcp(&|c| set(c, "exp", json!(now - LEEWAY_MS / 1000 - 1))),
        "token expired",
    )
    .await;
    rejects(
        for_mcp(&|c| set(c, "nbf", json!(now + LEEWAY_MS / 1000 + 2))),
        "token not yet valid",
    )
    .await;
    rejects(
        for_mcp(&|c| set(c, "tenant", json!(RESERVED_TENANT))),
        "invalid tenant",
    )
    .await;
    // Within the leeway an expired token still verifies, as with verify.
    let late = for_mcp(&|c| set(c, "exp", json!(now - 1)));
    f.verifier.verify_for(&late, MCP).await.unwrap();
    // The signature: a token of a key this ring does not know.
    let other_dir = TempDir::new().unwrap();
    let other_keys = KeyRing::load_or_create(other_dir.path(), f.clock.clone()).unwrap();
    let foreign = Issuer::new(Arc::new(other_keys), config(), f.clock.clone())
        .issue_for(MCP, &tenant("acme"), "alice", "cli", &ScopeSet::all(), TTL)
        .unwrap();
    rejects(foreign.token, "unknown signing key").await;
    // Revocation.
    let issued = f
        .issuer
        .issue_for(MCP, &tenant("acme"), "alice", "cli", &ScopeSet::all(), TTL)
        .unwrap();
    let principal = f.verifier.verify_for(&issued.token, MCP).await.unwrap();
    f.verifier
        .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
        .await
        .unwrap();
    rejects(issued.token, "token revoked").await;
}

#[test]
fn issue_for_checks_the_audience() {
    let f = Fixture::new();
    for audience in ["", "a\nb", &"a".repeat(2001)] {
        let e = f
            .issuer
            .issue_for(
                audience,
                &tenant("acme"),
                "alice",
                "cli",
                &ScopeSet::all(),
                TTL,
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("aud"), "{e}");
    }
}

#[tokio::test]
async fn typ_must_be_at_jwt() {
    let f = Fixture::new();
    f.rejects(&f.sign_header(|h| remove(h, "typ")), "not an access token")
        .await;
    for typ in ["JWT", "jwt", "at+JWT+x", "", "application/jwt"] {
        let token = f.sign_header(|h| set(h, "typ", json!(typ)));
        f.rejects(&token, "not an access token").await;
    }
    for typ in ["application/at+jwt", "AT+JWT"] {
        f.accepts(&f.sign_header(|h| set(h, "typ", json!(typ))))
            .await;
    }
}

#[tokio::test]
async fn a_critical_header_is_rejected() {
    let f = Fixture::new();
    let token = f.sign_header(|h| set(h, "crit", json!(["exp"])));
    f.rejects(&token, "unsupported critical header").await;
}

#[tokio::test]
async fn tenant_must_be_present_and_valid() {
    let f = Fixture::new();
    f.rejects(&f.sign_claims(|c| remove(c, "tenant")), "invalid claims")
        .await;
    for bad in [
        json!("Acme"),
        json!(""),
        json!("-acme"),
        json!(7),
        json!(null),
    ] {
        let token = f.sign_claims(|c| set(c, "tenant", bad.clone()));
        let reason = if bad.is_string() {
            "invalid tenant"
        } else {
            "invalid claims"
        };
        f.rejects(&token, reason).await;
    }
    for reserved in [RESERVED_TENANT, p8fs_core::sealed::KEYRING_TENANT] {
        let reserved = f.sign_claims(|c| set(c, "tenant", json!(reserved)));
        f.rejects(&reserved, "invalid tenant").await;
    }
}

#[tokio::test]
async fn every_required_claim_must_be_present() {
    let f = Fixture::new();
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        let token = f.sign_claims(|c| remove(c, claim));
        f.rejects(&token, "invalid claims").await;
    }
    // nbf is optional; iat then bounds the start.
    f.accepts(&f.sign_claims(|c| remove(c, "nbf"))).await;
    // Fractional or string times are not NumericDates we issue.
    f.rejects(
        &f.sign_claims(|c| set(c, "exp", json!(1.5e9))),
        "invalid claims",
    )
    .await;
    f.rejects(
        &f.sign_claims(|c| set(c, "exp", json!("2030"))),
        "invalid claims",
    )
    .await;
}

#[tokio::test]
async fn claim_values_are_checked() {
    let f = Fixture::new();
    let cases = [
        ("scope", json!("kv:read s3:all"), "invalid scope"),
        ("scope", json!("kv:read,kv:write"), "invalid scope"),
        ("sub", json!(""), "invalid sub"),
        ("client_id", json!("a\nb"), "invalid client_id"),
        ("jti", json!(""), "invalid jti"),
        ("jti", json!("j".repeat(257)), "invalid jti"),
    ];
    for (claim, value, reason) in cases {
        let token = f.sign_claims(|c| set(c, claim, value));
        f.rejects(&token, reason).await;
    }
    // An empty scope is a valid token that can do nothing.
    let principal = f
        .accepts(&f.sign_claims(|c| set(c, "scope", json!(""))))
        .await;
    assert!(principal.scopes.is_empty());
    assert_eq!(
        principal.require(Scope::KvRead).unwrap_err().kind(),
        ErrorKind::Forbidden
    );
}

#[tokio::test]
async fn a_revoked_token_is_rejected_until_it_expires() {
    let f = Fixture::new();
    let issued = f.issue();
    let other = f.issue();
    let principal = f.accepts(&issued.token).await;
    f.verifier
        .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
        .await
        .unwrap();
    f.rejects(&issued.token, "token revoked").await;
    f.accepts(&other.token).await;
    // Revoking again is harmless; another tenant's jti of the same name is unaffected.
    f.verifier
        .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
        .await
        .unwrap();
    let same_jti_elsewhere = f.sign_claims(|c| {
        set(c, "jti", json!(issued.token_id));
        set(c, "tenant", json!("globex"));
    });
    f.accepts(&same_jti_elsewhere).await;
    // The record lives in the reserved tenant exactly until the token could no longer verify.
    let reserved = tenant(RESERVED_TENANT);
    let key = Key::new(format!("revoked-jti/acme/{}", issued.token_id)).unwrap();
    let record = f.store.get(&reserved, &key).await.unwrap().unwrap();
    assert_eq!(record.expires_at, Some(issued.expires_at + LEEWAY_MS));
    f.clock.set(issued.expires_at + LEEWAY_MS - 1);
    f.rejects(&issued.token, "token revoked").await;
    f.clock.set(issued.expires_at + LEEWAY_MS);
    assert!(f.store.get(&reserved, &key).await.unwrap().is_none());
    f.rejects(&issued.token, "token expired").await;
}

#[tokio::test]
async fn revoke_checks_its_arguments() {
    let f = Fixture::new();
    let err = f
        .verifier
        .revoke(&tenant("acme"), "", START + 1000)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("token_id"));
    let err = f
        .verifier
        .revoke(&tenant(RESERVED_TENANT), "abc", START + 1000)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("tenant"));
    // Revoking a token that can no longer verify stores nothing.
    f.verifier
        .revoke(&tenant("acme"), "old", START - LEEWAY_MS)
        .await
        .unwrap();
    let key = Key::new("revoked-jti/acme/old").unwrap();
    assert!(
        f.store
            .get(&tenant(RESERVED_TENANT), &key)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_while_the_old_key_is_retained() {
    let f = Fixture::new();
    let old_kid = f.keys.current_kid();
    let before = f.issue();
    let before_long = f
        .issuer
        .issue(
            &tenant("acme"),
            "bob",
            "cli",
            &ScopeSet::all(),
            MAX_TTL_FOR_TEST,
        )
        .unwrap();
    f.accepts(&before.token).await;
    f.accepts(&before_long.token).await;
    let new_kid = f.keys.rotate(Duration::from_secs(3600)).unwrap();
    assert_ne!(new_kid, old_kid);
    assert_eq!(f.keys.current_kid(), new_kid);
    f.accepts(&before.token).await;
    let after = f
        .issuer
        .issue(
            &tenant("acme"),
            "bob",
            "cli",
            &ScopeSet::all(),
            MAX_TTL_FOR_TEST,
        )
        .unwrap();
    let header = jsonwebtoken::decode_header(&after.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    f.accepts(&after.token).await;
    let kids: Vec<_> = f.keys.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, vec![new_kid.clone(), old_kid.clone()]);
    // Once retired, the old key neither verifies (even a cached token) nor is published.
    f.clock.advance(3_600_000 - 1);
    f.accepts(&before_long.token).await;
    f.clock.advance(1);
    f.rejects(&before_long.token, "unknown signing key").await;
    f.accepts(&after.token).await;
    assert_eq!(f.keys.jwks()["keys"].as_array().unwrap().len(), 1);
    assert_eq!(f.keys.jwks()["keys"][0]["kid"], new_kid.as_str());
}

const MAX_TTL_FOR_TEST: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn a_retired_key_rejects_even_cached_tokens() {
    let f = Fixture::new();
    let token = f
        .issuer
        .issue(
            &tenant("acme"),
            "bob",
            "cli",
            &ScopeSet::all(),
            MAX_TTL_FOR_TEST,
        )
        .unwrap()
        .token;
    f.accepts(&token).await;
    f.keys.rotate(Duration::from_secs(60)).unwrap();
    f.accepts(&token).await;
    f.clock.advance(60_000);
    f.rejects(&token, "unknown signing key").await;
    // Rotation with no retention retires the old key at once.
    let token = f
        .issuer
        .issue(
            &tenant("acme"),
            "bob",
            "cli",
            &ScopeSet::all(),
            MAX_TTL_FOR_TEST,
        )
        .unwrap()
        .token;
    f.accepts(&token).await;
    f.keys.rotate(Duration::ZERO).unwrap();
    f.rejects(&token, "unknown signing key").await;
}

#[tokio::test]
async fn tokens_verify_after_the_keys_are_reloaded_from_disk() {
    let f = Fixture::new();
    let issued = f.issue();
    let reopened = Arc::new(KeyRing::load_or_create(f._dir.path(), f.clock.clone()).unwrap());
    assert_eq!(reopened.current_kid(), f.keys.current_kid());
    let verifier = Verifier::new(reopened, config(), f.clock.clone(), f.store.clone());
    assert_eq!(
        verifier.verify(&issued.token).await.unwrap().token_id,
        issued.token_id
    );
}

#[tokio::test]
async fn issue_checks_its_arguments() {
    let f = Fixture::new();
    let scopes = ScopeSet::all();
    let acme = tenant("acme");
    let cases = [
        (tenant(RESERVED_TENANT), "alice", "cli", TTL, "tenant"),
        (acme.clone(), "", "cli", TTL, "sub"),
        (acme.clone(), "alice", "", TTL, "client_id"),
        (acme.clone(), "alice", "c\u{7}", TTL, "client_id"),
        (
            acme.clone(),
            "alice",
            "cli",
            Duration::from_millis(999),
            "ttl",
        ),
        (
            acme.clone(),
            "alice",
            "cli",
            crate::MAX_TOKEN_TTL + Duration::from_secs(1),
            "ttl",
        ),
    ];
    for (tenant, sub, client, ttl, field) in cases {
        let err = f
            .issuer
            .issue(&tenant, sub, client, &scopes, ttl)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(field));
    }
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output() {
    let f = Fixture::new();
    let issued = f.issue();
    let signature = issued.token.rsplit('.').next().unwrap().to_owned();
    let file = std::fs::read_to_string(f.keys.key_file()).unwrap();
    let stored: Value = serde_json::from_str(&file).unwrap();
    let d = stored["keys"][0]["d"].as_str().unwrap().to_owned();
    for debug in [
        format!("{issued:?}"),
        format!("{:?}", f.keys),
        format!("{:?}", f.issuer),
        format!("{:?}", f.verifier),
    ] {
        assert!(!debug.contains(&signature), "{debug}");
        assert!(!debug.contains(&d), "{debug}");
    }
    let err = f
        .verifier
        .verify(&(issued.token.clone() + "x"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(&signature));
}

#[test]
fn the_reserved_tenant_is_a_valid_tenant_id() {
    assert_eq!(super::reserved_tenant().as_str(), RESERVED_TENANT);
}
