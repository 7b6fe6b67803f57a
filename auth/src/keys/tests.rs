//! Key ring tests: creation and persistence with owner-only modes, the JWKS shape, rotation
//! and pruning, and refusal of unsafe or corrupt key files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use p8fs_core::{ErrorKind, ManualClock};
use serde_json::Value;
use tempfile::TempDir;

use super::*;

const START: Timestamp = 1_700_000_000_000;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stored(ring: &KeyRing) -> Value {
    serde_json::from_str(&fs::read_to_string(ring.key_file()).unwrap()).unwrap()
}

#[test]
fn keys_are_created_owner_only_and_persist() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("data").join("keys");
    let clock = Arc::new(ManualClock::new(START));
    let ring = KeyRing::load_or_create(&dir, clock.clone()).unwrap();
    assert_eq!(ring.key_file(), dir.join("keys.json"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(ring.key_file()), 0o600);
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

    let again = KeyRing::load_or_create(&dir, clock).unwrap();
    assert_eq!(again.current_kid(), ring.current_kid());
    assert_eq!(again.jwks(), ring.jwks());
    let a = ring.signing_key().unwrap();
    let b = again.signing_key().unwrap();
    assert_eq!(a.signing.to_bytes(), b.signing.to_bytes());
}

#[test]
fn jwks_is_rfc_7517_okp() {
    let root = TempDir::new().unwrap();
    let ring = KeyRing::load_or_create(root.path(), Arc::new(ManualClock::new(START))).unwrap();
    let jwks = ring.jwks();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = keys[0].as_object().unwrap();
    let mut members: Vec<_> = key.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], ring.current_kid().as_str());
    let x = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    assert_eq!(x.len(), 32);
    // The published key is the jsonwebtoken-readable public half.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    DecodingKey::from_jwk(&jwk).unwrap();
}

#[test]
fn kid_is_the_rfc_7638_thumbprint() {
    // RFC 8037 appendix A.3.
    assert_eq!(
        thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // RFC 8037 appendix A.1: the seed gives that public key.
    let seed: [u8; 32] = URL_SAFE_NO_PAD
        .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
        .unwrap()
        .try_into()
        .unwrap();
    let entry = KeyEntry::from_seed(&seed, START, None).unwrap();
    assert_eq!(entry.x, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    assert_eq!(entry.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

#[test]
fn rotation_is_persisted_and_prunes_retired_keys() {
    let root = TempDir::new().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let ring = KeyRing::load_or_create(root.path(), clock.clone()).unwrap();
    let first = ring.current_kid();
    let second = ring.rotate(Duration::from_secs(60)).unwrap();
    assert_eq!(mode(ring.key_file()), 0o600);
    let file = stored(&ring);
    assert_eq!(file["current"], second.as_str());
    assert_eq!(file["keys"].as_array().unwrap().len(), 2);
    let old = file["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == first.as_str())
        .unwrap();
    assert_eq!(old["retire_at"], START + 60_000);

    // Reloaded, the retention survives.
    let reopened = KeyRing::load_or_create(root.path(), clock.clone()).unwrap();
    assert_eq!(reopened.current_kid(), second);
    assert_eq!(reopened.jwks()["keys"].as_array().unwrap().len(), 2);

    // A second rotation keeps the first key's earlier retirement, and drops it once passed.
    clock.advance(30_000);
    let third = ring.rotate(Duration::from_secs(600)).unwrap();
    let kids = |ring: &KeyRing| -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kids(&ring), [third.clone(), second.clone(), first.clone()]);
    clock.advance(30_000);
    assert_eq!(kids(&ring), [third.clone(), second.clone()]);
    let fourth = ring.rotate(Duration::from_secs(600)).unwrap();
    assert_eq!(stored(&ring)["keys"].as_array().unwrap().len(), 3);
    assert_eq!(kids(&ring), [fourth, third, second]);
    assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);

    // Another process's rotation becomes visible on reload.
    reopened.reload().unwrap();
    assert_eq!(reopened.current_kid(), ring.current_kid());
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let root = TempDir::new().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let ring = KeyRing::load_or_create(root.path(), clock.clone()).unwrap();
    fs::set_permissions(ring.key_file(), fs::Permissions::from_mode(0o644)).unwrap();
    let err = KeyRing::load_or_create(root.path(), clock).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("key_file"));
}

#[test]
fn a_corrupt_key_file_is_refused_without_echoing_secrets() {
    let root = TempDir::new().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let ring = KeyRing::load_or_create(root.path(), clock.clone()).unwrap();
    let good = stored(&ring);
    let d = good["keys"][0]["d"].as_str().unwrap().to_owned();
    let mut mismatched = good.clone();
    mismatched["keys"][0]["x"] = Value::from("AAAA");
    let mut wrong_current = good.clone();
    wrong_current["current"] = Value::from("nope");
    let mut short_seed = good.clone();
    short_seed["keys"][0]["d"] = Value::from(&d[..20]);
    let mut extra = good.clone();
    extra["surprise"] = Value::from(1);
    for bad in [
        mismatched.to_string(),
        wrong_current.to_string(),
        short_seed.to_string(),
        extra.to_string(),
        format!("{{\"d\":\"{d}\""),
        String::new(),
    ] {
        fs::write(ring.key_file(), &bad).unwrap();
        let err = KeyRing::load_or_create(root.path(), clock.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{bad}");
        assert!(!err.to_string().contains(&d), "{err}");
        assert!(!format!("{err:?}").contains(&d), "{err:?}");
    }
}
