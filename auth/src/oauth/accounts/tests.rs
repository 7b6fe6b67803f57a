//! Unit tests of account validation: usernames, passwords, client ids, redirect URIs and the
//! defaults of new clients.

use super::*;
use crate::RESERVED_TENANT;

fn client(redirect_uris: &[&str]) -> NewClient {
    NewClient {
        client_id: None,
        name: "app".to_owned(),
        confidential: false,
        redirect_uris: redirect_uris.iter().map(|s| (*s).to_owned()).collect(),
        grant_types: Vec::new(),
        scope: String::new(),
        tenant: None,
    }
}

#[test]
fn usernames() {
    for good in ["a", "alice", "a.b-c_d", "0", &"x".repeat(64)] {
        assert!(check_username(good).is_ok(), "{good}");
    }
    for bad in ["", "Alice", "-a", ".a", "a b", "a/b", "é", &"x".repeat(65)] {
        let err = check_username(bad).unwrap_err();
        assert_eq!(err.field(), Some("username"), "{bad}");
    }
}

#[test]
fn passwords() {
    assert!(check_password("12345678").is_ok());
    assert_eq!(
        check_password("1234567").unwrap_err().field(),
        Some("password")
    );
    assert!(check_password(&"p".repeat(1024)).is_ok());
    assert_eq!(
        check_password(&"p".repeat(1025)).unwrap_err().field(),
        Some("password")
    );
}

#[test]
fn client_ids() {
    assert!(check_client_id("p8fs-cli").is_ok());
    assert!(check_client_id("A.b_c~d-9").is_ok());
    for bad in ["", "a b", "a/b", "a:b", &"c".repeat(129)] {
        assert_eq!(check_client_id(bad).unwrap_err().field(), Some("client_id"));
    }
}

#[test]
fn redirect_uris() {
    for good in [
        "https://app.example/cb",
        "https://app.example:8443/cb?x=1",
        "http://127.0.0.1:5000/cb",
        "http://localhost/cb",
        "http://[::1]:9/cb",
        "com.example.app:/oauth2redirect",
        "io.github.some-one.tool://callback",
    ] {
        assert!(check_redirect_uri(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "/cb",
        "app.example/cb",
        "http://app.example/cb",
        "http://10.0.0.1/cb",
        "https://app.example/cb#frag",
        "https://app.example/cb#",
        "https://user:pw@app.example/cb",
        "javascript:alert(1)",
        "ftp://app.example/cb",
        "myapp:/cb",
        "Com.Example.App:/cb",
        "com.example.app:/cb#x",
        "https://app.example/c b",
        "https://app.example/caf\u{e9}",
    ] {
        let err = check_redirect_uri(bad).unwrap_err();
        assert_eq!(err.field(), Some("redirect_uris"), "{bad}");
    }
}

#[test]
fn new_client_defaults() {
    let info = check_new_client(client(&[])).unwrap();
    assert_eq!(info.grant_types, [GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN]);
    assert_eq!(info.scope, user_scopes().to_string());
    assert!(!info.scope.contains("admin"));
    let info = check_new_client(client(&["https://a.example/cb"])).unwrap();
    assert_eq!(
        info.grant_types,
        [
            GRANT_AUTHORIZATION_CODE,
            GRANT_DEVICE_CODE,
            GRANT_REFRESH_TOKEN
        ]
    );
    let mut new = client(&[]);
    new.confidential = true;
    new.tenant = Some("acme".to_owned());
    let info = check_new_client(new).unwrap();
    assert!(
        info.grant_types
            .iter()
            .any(|g| g == GRANT_CLIENT_CREDENTIALS)
    );
}

#[test]
fn new_client_errors_name_the_field() {
    let mut new = client(&[]);
    new.name = " ".to_owned();
    assert_eq!(check_new_client(new).unwrap_err().field(), Some("name"));
    let mut new = client(&[]);
    new.grant_types = vec!["password".to_owned()];
    assert_eq!(
        check_new_client(new).unwrap_err().field(),
        Some("grant_types")
    );
    let mut new = client(&[]);
    new.grant_types = vec![GRANT_AUTHORIZATION_CODE.to_owned()];
    assert_eq!(
        check_new_client(new).unwrap_err().field(),
        Some("redirect_uris")
    );
    let mut new = client(&[]);
    new.grant_types = vec![GRANT_CLIENT_CREDENTIALS.to_owned()];
    assert_eq!(
        check_new_client(new).unwrap_err().field(),
        Some("grant_types")
    );
    let mut new = client(&[]);
    new.confidential = true;
    new.grant_types = vec![GRANT_CLIENT_CREDENTIALS.to_owned()];
    assert_eq!(check_new_client(new).unwrap_err().field(), Some("tenant"));
    let mut new = client(&[]);
    new.tenant = Some(RESERVED_TENANT.to_owned());
    assert_eq!(check_new_client(new).unwrap_err().field(), Some("tenant"));
    let mut new = client(&[]);
    new.tenant = Some(p8fs_core::sealed::KEYRING_TENANT.to_owned());
    assert_eq!(check_new_client(new).unwrap_err().field(), Some("tenant"));
    let mut new = client(&[]);
    new.scope = "kv:read nope".to_owned();
    assert_eq!(check_new_client(new).unwrap_err().field(), Some("scope"));
    let new = client(&["http://evil.example/cb"]);
    assert_eq!(
        check_new_client(new).unwrap_err().field(),
        Some("redirect_uris")
    );
}

fn accounts(hashing: PasswordHashing) -> Accounts {
    let clock = Arc::new(p8fs_core::ManualClock::new(0));
    let kv = Arc::new(p8fs_conformance::ModelBackend::new(clock.clone()));
    Accounts::new(kv, clock).with_password_hashing(hashing)
}

#[tokio::test]
async fn password_hashes_are_those_of_the_argon2_crate() {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    let accounts = accounts(PasswordHashing::insecure_minimum_for_tests());
    let ours = accounts.hash_password("correct horse").await.unwrap();
    assert!(ours.starts_with("$argon2id$v=19$"), "{ours}");
    let parsed = PasswordHash::new(&ours).unwrap();
    assert!(
        Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"correct horsf", &parsed)
            .is_err()
    );
    // Hashes made by the crate itself (every stored one before the pool had its own memory).
    let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
    let stock = Argon2::default()
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    for (password, hash, expected) in [
        ("correct horse", &stock, true),
        ("correct horsf", &stock, false),
        ("correct horse", &ours, true),
        ("", &ours, false),
        ("correct horse", &"not a hash".to_owned(), false),
        (
            "correct horse",
            &"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$".to_owned(),
            false,
        ),
    ] {
        assert_eq!(
            accounts
                .verify_password(password.to_owned(), hash.clone())
                .await
                .unwrap(),
            expected,
            "{password} against {hash}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_memory_is_one_buffer_per_worker_reused() {
    let accounts = accounts(PasswordHashing::default());
    let pool = accounts.password_pool().clone();
    let hash = accounts.hash_password("correct horse").await.unwrap();
    let mut checks = Vec::new();
    for _ in 0..6 {
        let accounts = accounts.clone();
        let hash = hash.clone();
        checks.push(tokio::spawn(async move {
            accounts
                .verify_password("wrong horse".to_owned(), hash)
                .await
        }));
    }
    for check in checks {
        assert!(!check.await.unwrap().unwrap());
    }
    let per_hash = usize::try_from(PasswordHashing::default().memory_kib).unwrap() * 1024;
    let held = pool.memory_bytes();
    assert_eq!(held % per_hash, 0, "{held}");
    assert!(
        held >= per_hash && held <= pool.workers() * per_hash,
        "{held}"
    );
}
