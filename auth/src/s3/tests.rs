//! S3 credential tests over the reference store with a manual clock: static keys (create,
//! resolve, list, revoke, validation), sealing at rest (no secret bytes in the stored record,
//! another sealing key or a moved record fails closed, the key file), and temporary
//! credentials (tenant and s3 scopes from the token, expiry, revocation of the source token,
//! the session token, `DurationSeconds` bounds).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use p8fs_conformance::ModelBackend;
use p8fs_core::{ErrorKind, Key, KvStore, ManualClock, TenantId, Timestamp};

use super::*;
use crate::{Issuer, KeyRing, RESERVED_TENANT, TokenConfig};

const START: Timestamp = 1_700_000_000_000;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn scopes(text: &str) -> ScopeSet {
    ScopeSet::parse(text).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Arc<ModelBackend>,
    issuer: Issuer,
    verifier: Arc<Verifier>,
    s3: S3Credentials,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let keys = Arc::new(KeyRing::load_or_create(dir.path(), clock.clone()).unwrap());
        let store = Arc::new(ModelBackend::new(clock.clone()));
        let config = TokenConfig {
            issuer: "https://p8fs.test".to_owned(),
            audience: "p8fs".to_owned(),
            leeway: Duration::from_secs(30),
        };
        let verifier = Arc::new(Verifier::new(
            keys.clone(),
            config.clone(),
            clock.clone(),
            store.clone(),
        ));
        let s3 = S3Credentials::new(
            store.clone(),
            SealingKey::generate().unwrap(),
            verifier.clone(),
            clock.clone(),
        );
        Self {
            issuer: Issuer::new(keys, config, clock.clone()),
            _dir: dir,
            clock,
            store,
            verifier,
            s3,
        }
    }

    /// The same store and verifier with another sealing key.
    fn with_other_sealing_key(&self) -> S3Credentials {
        S3Credentials::new(
            self.store.clone(),
            SealingKey::generate().unwrap(),
            self.verifier.clone(),
            self.clock.clone(),
        )
    }

    fn token(&self, scope: &str, ttl: Duration) -> crate::IssuedToken {
        self.issuer
            .issue(&tenant("acme"), "alice", "p8fs-cli", &scopes(scope), ttl)
            .unwrap()
    }

    /// The stored record of an access key, as JSON text.
    async fn raw_record(&self, access_key_id: &str) -> String {
        let key = Kind::of(access_key_id).unwrap().key(access_key_id).unwrap();
        let entry = self
            .store
            .get(&tenant(RESERVED_TENANT), &key)
            .await
            .unwrap()
            .unwrap();
        entry.value.to_string()
    }
}

#[test]
fn access_key_ids_and_secrets_have_their_documented_shapes() {
    for kind in [Kind::Static, Kind::Temporary] {
        let id = new_access_key_id(kind).unwrap();
        assert_eq!(id.len(), ACCESS_KEY_ID_LEN);
        assert!(id.starts_with(kind.prefix()));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert!(Kind::of(&id) == Some(kind));
    }
    assert_ne!(
        new_access_key_id(Kind::Static).unwrap(),
        new_access_key_id(Kind::Static).unwrap()
    );
    let secret = new_secret().unwrap();
    assert_eq!(secret.len(), SECRET_LEN);
    assert!(new_session_token().unwrap().len() >= 80);
}

#[tokio::test]
async fn a_static_key_is_created_resolved_listed_and_revoked() {
    let f = Fixture::new();
    let created =
        f.s3.create_key(&tenant("acme"), s3_scopes(), Some("backup job".to_owned()))
            .await
            .unwrap();
    assert_eq!(Kind::of(&created.access_key_id), Some(Kind::Static));
    assert_eq!(created.secret_access_key.len(), SECRET_LEN);
    assert_eq!(created.info.scope, "s3:read s3:write");

    let credential = f.s3.resolve(&created.access_key_id).await.unwrap().unwrap();
    assert_eq!(*credential.secret, *created.secret_access_key);
    assert_eq!(credential.principal.tenant, tenant("acme"));
    assert_eq!(credential.principal.scopes, s3_scopes());
    assert_eq!(credential.principal.token_id, created.access_key_id);
    assert_eq!(credential.principal.expires_at, Timestamp::MAX);
    assert!(credential.session_token.is_none());
    assert!(credential.session_token_matches(None));
    assert!(
        !credential.session_token_matches(Some("anything")),
        "a static key takes no session token"
    );

    let other =
        f.s3.create_key(&tenant("globex"), scopes("s3:read"), None)
            .await
            .unwrap();
    let read_only = f.s3.resolve(&other.access_key_id).await.unwrap().unwrap();
    assert_eq!(read_only.principal.scopes, scopes("s3:read"));
    assert!(read_only.principal.require(Scope::S3Write).is_err());

    let acme = f.s3.list_keys(Some(&tenant("acme"))).await.unwrap();
    assert_eq!(acme, vec![created.info.clone()]);
    assert_eq!(acme[0].description.as_deref(), Some("backup job"));
    let all = f.s3.list_keys(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(
        f.s3.list_keys(Some(&tenant("initech")))
            .await
            .unwrap()
            .is_empty()
    );

    assert!(f.s3.revoke_key(&created.access_key_id).await.unwrap());
    assert!(
        f.s3.resolve(&created.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!f.s3.revoke_key(&created.access_key_id).await.unwrap());
    assert_eq!(f.s3.list_keys(None).await.unwrap().len(), 1);
    assert!(f.s3.resolve(&other.access_key_id).await.unwrap().is_some());
}

#[tokio::test]
async fn key_creation_rejects_bad_input_naming_the_field() {
    let f = Fixture::new();
    let cases = [
        (tenant(RESERVED_TENANT), s3_scopes(), None, "tenant"),
        (tenant("acme"), scopes(""), None, "scope"),
        (tenant("acme"), scopes("kv:read s3:read"), None, "scope"),
        (tenant("acme"), scopes("admin"), None, "scope"),
        (
            tenant("acme"),
            s3_scopes(),
            Some("line\nbreak".to_owned()),
            "description",
        ),
        (
            tenant("acme"),
            s3_scopes(),
            Some("x".repeat(MAX_DESCRIPTION_BYTES + 1)),
            "description",
        ),
    ];
    for (tenant, scopes, description, field) in cases {
        let err =
            f.s3.create_key(&tenant, scopes, description)
                .await
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{field}");
        assert_eq!(err.field(), Some(field));
    }
    assert!(f.s3.list_keys(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_or_unknown_access_key_ids_resolve_to_none() {
    let f = Fixture::new();
    for id in [
        "",
        "P8A",
        "AKIAIOSFODNN7EXAMPLE",
        "P8AAAAAAAAAAAAAAAAAA",
        "P8TAAAAAAAAAAAAAAAAA",
        "p8aaaaaaaaaaaaaaaaaa",
        "P8AAAAAAAAAAAAAAAAAAA",
        "P8A/AAAAAAAAAAAAAAAA",
        "P8AAAAAAAAAAAAAAAAA\u{e9}",
        "P8A\nAAAAAAAAAAAAAAAAA",
    ] {
        assert!(f.s3.resolve(id).await.unwrap().is_none(), "{id:?}");
        assert!(!f.s3.revoke_key(id).await.unwrap(), "{id:?}");
    }
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_fail_closed_under_another_key() {
    let f = Fixture::new();
    let created =
        f.s3.create_key(&tenant("acme"), s3_scopes(), None)
            .await
            .unwrap();
    let record = f.raw_record(&created.access_key_id).await;
    assert!(
        !record.contains(created.secret_access_key.as_str()),
        "{record}"
    );
    assert!(record.contains("acme"), "the record is the key's: {record}");

    let token = f.token("s3:read s3:write", Duration::from_secs(3600));
    let temporary =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap();
    let record = f.raw_record(&temporary.access_key_id).await;
    assert!(!record.contains(temporary.secret_access_key.as_str()));
    assert!(!record.contains(temporary.session_token.as_str()));

    // Another sealing key opens nothing: an error, never a credential.
    let other = f.with_other_sealing_key();
    for id in [&created.access_key_id, &temporary.access_key_id] {
        let err = other.resolve(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(!err.to_string().contains(created.secret_access_key.as_str()));
    }

    // A sealed secret copied into another key's record does not open there either.
    let second =
        f.s3.create_key(&tenant("acme"), s3_scopes(), None)
            .await
            .unwrap();
    let reserved = tenant(RESERVED_TENANT);
    let first_key = Kind::Static.key(&created.access_key_id).unwrap();
    let second_key: Key = Kind::Static.key(&second.access_key_id).unwrap();
    let moved = f.store.get(&reserved, &first_key).await.unwrap().unwrap();
    f.store
        .put(
            &reserved,
            &second_key,
            &p8fs_core::JsonValue::new(moved.value).unwrap(),
            None,
        )
        .await
        .unwrap();
    let err = f.s3.resolve(&second.access_key_id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
}

#[test]
fn the_sealing_key_file_is_private_and_reloads_the_same_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("keys").join(SEALING_KEY_FILE_NAME);
    let key = SealingKey::load_or_create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let sealed = key.seal("p8fs-s3/secret/X", b"hello").unwrap();
    let again = SealingKey::load_or_create(&path).unwrap();
    assert_eq!(
        again.open("p8fs-s3/secret/X", &sealed).unwrap().as_slice(),
        b"hello"
    );
    assert!(again.open("p8fs-s3/secret/Y", &sealed).is_err());
    assert!(again.open("p8fs-s3/secret/X", "not base64 !").is_err());
    assert!(again.open("p8fs-s3/secret/X", "").is_err());
    assert_eq!(format!("{again:?}"), "SealingKey(<redacted>)");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SealingKey::load_or_create(&path).unwrap_err();
    assert_eq!(err.field(), Some("sealing_key_file"));

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, "too short\n").unwrap();
    let err = SealingKey::load_or_create(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(!err.to_string().contains("too short"));
}

#[tokio::test]
async fn temporary_credentials_take_tenant_and_s3_scopes_from_the_token() {
    let f = Fixture::new();
    let token = f.token("kv:read kv:write s3:read", Duration::from_secs(7200));
    let temporary =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap();
    assert_eq!(Kind::of(&temporary.access_key_id), Some(Kind::Temporary));
    assert_eq!(temporary.secret_access_key.len(), SECRET_LEN);
    assert_eq!(temporary.tenant, tenant("acme"));
    assert_eq!(temporary.subject, "alice");
    assert_eq!(temporary.scopes, scopes("s3:read"));
    // The default hour, within the token's two.
    assert_eq!(temporary.expiration, START + 3_600_000);

    let credential =
        f.s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .unwrap();
    assert_eq!(*credential.secret, *temporary.secret_access_key);
    assert_eq!(credential.principal.tenant, tenant("acme"));
    assert_eq!(credential.principal.subject, "alice");
    assert_eq!(credential.principal.client_id, "p8fs-cli");
    assert_eq!(credential.principal.scopes, scopes("s3:read"));
    assert_eq!(credential.principal.expires_at, temporary.expiration);
    assert!(credential.session_token_matches(Some(temporary.session_token.as_str())));
    assert!(!credential.session_token_matches(None));
    assert!(!credential.session_token_matches(Some("")));
    let mut altered = temporary.session_token.to_string();
    altered.pop();
    assert!(!credential.session_token_matches(Some(&altered)));

    // Temporary credentials are not listed as keys, and can be revoked by id.
    assert!(f.s3.list_keys(None).await.unwrap().is_empty());
    assert!(f.s3.revoke_key(&temporary.access_key_id).await.unwrap());
    assert!(
        f.s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn temporary_credentials_expire_with_the_token_or_the_duration() {
    let f = Fixture::new();
    // A token with ten minutes left: the credentials end with it, whatever was asked.
    let short = f.token("s3:write", Duration::from_secs(600));
    let temporary =
        f.s3.assume_role_with_web_identity(&short.token, Some(Duration::from_secs(3600)))
            .await
            .unwrap();
    assert_eq!(temporary.expiration, short.expires_at);
    assert!(temporary.expiration <= START + 600_000);

    // A long token: the credentials end after the duration asked for.
    let long = f.token("s3:write", Duration::from_secs(24 * 3600));
    let bounded =
        f.s3.assume_role_with_web_identity(&long.token, Some(Duration::from_secs(900)))
            .await
            .unwrap();
    assert_eq!(bounded.expiration, START + 900_000);

    f.clock.advance(900_000 - 1);
    assert!(
        f.s3.resolve(&bounded.access_key_id)
            .await
            .unwrap()
            .is_some()
    );
    f.clock.advance(1);
    assert!(
        f.s3.resolve(&bounded.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn revoking_the_source_token_ends_its_temporary_credentials() {
    let f = Fixture::new();
    let token = f.token("s3:read s3:write", Duration::from_secs(3600));
    let other = f.token("s3:read s3:write", Duration::from_secs(3600));
    let temporary =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap();
    let unrelated =
        f.s3.assume_role_with_web_identity(&other.token, None)
            .await
            .unwrap();
    let principal = f.verifier.verify(&token.token).await.unwrap();
    f.verifier
        .revoke(&principal.tenant, &principal.token_id, principal.expires_at)
        .await
        .unwrap();
    assert!(
        f.s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.s3.resolve(&unrelated.access_key_id)
            .await
            .unwrap()
            .is_some()
    );
    // A revoked token mints nothing more.
    let err =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn web_identity_needs_a_valid_token_with_an_s3_scope_and_a_duration_in_bounds() {
    let f = Fixture::new();
    let token = f.token("s3:read", Duration::from_secs(3600));
    for seconds in [0, 1, 899, 43_201, 86_400] {
        let err =
            f.s3.assume_role_with_web_identity(&token.token, Some(Duration::from_secs(seconds)))
                .await
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{seconds}");
        assert_eq!(err.field(), Some("DurationSeconds"));
    }
    for seconds in [900, 43_200] {
        f.s3.assume_role_with_web_identity(&token.token, Some(Duration::from_secs(seconds)))
            .await
            .unwrap();
    }

    let no_s3 = f.token("kv:read kv:write admin", Duration::from_secs(3600));
    let err =
        f.s3.assume_role_with_web_identity(&no_s3.token, None)
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);

    for bad in ["", "not-a-jwt", &format!("{}x", token.token)] {
        let err =
            f.s3.assume_role_with_web_identity(bad, None)
                .await
                .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized);
    }

    f.clock.advance(3_600_000 + 30_000);
    let err =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "an expired token");
}

#[tokio::test]
async fn debug_output_shows_no_secret() {
    let f = Fixture::new();
    let created =
        f.s3.create_key(&tenant("acme"), s3_scopes(), None)
            .await
            .unwrap();
    let token = f.token("s3:read", Duration::from_secs(3600));
    let temporary =
        f.s3.assume_role_with_web_identity(&token.token, None)
            .await
            .unwrap();
    let resolved =
        f.s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .unwrap();
    let texts = [
        format!("{created:?}"),
        format!("{temporary:?}"),
        format!("{resolved:?}"),
        format!("{:?}", f.s3),
    ];
    for text in &texts {
        assert!(!text.contains(created.secret_access_key.as_str()), "{text}");
        assert!(
            !text.contains(temporary.secret_access_key.as_str()),
            "{text}"
        );
        assert!(!text.contains(temporary.session_token.as_str()), "{text}");
    }
    assert!(texts[0].contains(&created.access_key_id));
}
