//! S3 credentials over RocksDB with the authorization server: temporary credentials minted from
//! the access token of a device-flow sign-in stop resolving when the user's sign-ins are
//! revoked (a password change), and static keys are stored sealed on disk.

use std::sync::Arc;

use p8fs_auth::s3::{S3Credentials, SealingKey, s3_scopes};
use p8fs_auth::{RESERVED_TENANT, Scope};
use p8fs_core::Key;

use crate::harness::{Harness, tenant};

fn credentials(h: &Harness) -> S3Credentials {
    S3Credentials::new(
        h.kv.clone(),
        SealingKey::generate().unwrap(),
        h.verifier.clone(),
        h.clock.clone(),
    )
}

#[tokio::test]
async fn a_password_change_ends_the_temporary_credentials_of_the_users_sign_ins() {
    let h = Harness::start().await;
    let s3 = credentials(&h);
    let tokens = h.device_tokens().await;
    let access_token = tokens["access_token"].as_str().unwrap();
    let principal = h.verifier.verify(access_token).await.unwrap();
    assert!(
        principal.scopes.contains(Scope::S3Read) && principal.scopes.contains(Scope::S3Write),
        "p8fs-cli may ask for the s3 scopes: {:?}",
        principal.scopes
    );
    let temporary = s3
        .assume_role_with_web_identity(access_token, None)
        .await
        .unwrap();
    assert_eq!(temporary.tenant, tenant("acme"));
    assert_eq!(temporary.scopes, s3_scopes());
    let credential = s3.resolve(&temporary.access_key_id).await.unwrap().unwrap();
    assert_eq!(credential.principal.subject, "alice");

    let revoked = h
        .server
        .set_password("alice", "another horse battery")
        .await
        .unwrap();
    assert_eq!(revoked.families, 1);
    assert!(
        s3.resolve(&temporary.access_key_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_static_key_is_sealed_in_rocksdb() {
    let h = Harness::start().await;
    let s3 = credentials(&h);
    let created = s3
        .create_key(&tenant("acme"), s3_scopes(), None)
        .await
        .unwrap();
    let key = Key::new(format!("s3/key/{}", created.access_key_id)).unwrap();
    let stored =
        h.kv.get(&tenant(RESERVED_TENANT), &key)
            .await
            .unwrap()
            .unwrap();
    assert!(
        !stored
            .value
            .to_string()
            .contains(created.secret_access_key.as_str())
    );
    let resolved = s3.resolve(&created.access_key_id).await.unwrap().unwrap();
    assert_eq!(*resolved.secret, *created.secret_access_key);

    // The same records under another sealing key fail closed.
    let other = S3Credentials::new(
        h.kv.clone(),
        SealingKey::generate().unwrap(),
        h.verifier.clone(),
        Arc::new(p8fs_core::SystemClock),
    );
    assert!(other.resolve(&created.access_key_id).await.is_err());
}

#[tokio::test]
async fn sts_refuses_a_token_issued_for_another_resource() {
    let h = Harness::start().await;
    let s3 = credentials(&h);
    let mcp = h.url("/mcp");
    let token = h
        .issuer
        .issue_for(
            &mcp,
            &tenant("acme"),
            "alice",
            "p8fs-cli",
            &s3_scopes(),
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let e = s3
        .assume_role_with_web_identity(&token.token, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), p8fs_core::ErrorKind::Unauthorized, "{e}");
    assert_eq!(e.to_string(), "unauthorized: wrong audience");
    // The same token for the default audience is accepted.
    let token = h
        .issuer
        .issue(
            &tenant("acme"),
            "alice",
            "p8fs-cli",
            &s3_scopes(),
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    s3.assume_role_with_web_identity(&token.token, None)
        .await
        .unwrap();
}
