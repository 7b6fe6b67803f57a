//! Encryption at rest as an operator meets it: the master key file created owner-only on first
//! use, `p8fs keys rotate-master` re-wrapping every data key while what was stored stays
//! readable, `p8fs keys prune-master` dropping the retired keys then, `p8fs keys reseal`
//! rewriting a store written with encryption off (nothing of it left in the files), and a store
//! encrypted once refusing to open with encryption off.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_p8fs");

/// Runs `p8fs args...` on `dir` with `env`; returns (success, stdout, stderr).
fn p8fs(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("P8FS_CONFIG")
        .env_remove("P8FS_S3_LISTEN")
        .env_remove("P8FS_MASTER_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = p8fs(dir, args, &[]);
    assert!(success, "p8fs {args:?} failed: {stderr}");
    stdout
}

fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

#[test]
fn rotate_master_rewraps_data_keys_and_the_store_stays_readable() {
    let dir = private_dir();
    let data = dir.path();
    let created = ok(
        data,
        &[
            "s3", "keys", "create", "--tenant", "acme", "--scope", "s3:read",
        ],
    );
    let key_file = data.join("keys").join("master.keys");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the master key file is owner-only");
    let first = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(first.lines().count(), 1);

    let reply: Value = serde_json::from_str(ok(data, &["keys", "rotate-master"]).trim()).unwrap();
    assert!(
        reply["data_keys"].as_u64().unwrap() >= 1,
        "the reserved tenant's data key at least: {reply}"
    );
    assert_eq!(reply["rewrapped"], reply["data_keys"], "{reply}");
    let rotated = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(rotated.lines().count(), 2, "the old key stays, retired");
    assert_eq!(rotated.lines().nth(1), first.lines().next());

    // What was sealed before the rotation still opens.
    let listed = ok(data, &["s3", "keys", "list", "--tenant", "acme"]);
    let id = created
        .lines()
        .find_map(|line| line.strip_prefix("AWS_ACCESS_KEY_ID="))
        .unwrap_or_else(|| panic!("no access key id in {created}"));
    assert!(listed.contains(id), "{listed}");

    // A second rotation finds every data key under the newest master key already.
    let again: Value = serde_json::from_str(ok(data, &["keys", "rotate-master"]).trim()).unwrap();
    assert_eq!(again["rewrapped"], again["data_keys"], "{again}");

    // The store is encrypted: it does not open with encryption off.
    let (success, _, stderr) = p8fs(
        data,
        &["s3", "keys", "list"],
        &[("P8FS_ENCRYPTION_ENABLED", "false")],
    );
    assert!(!success);
    assert!(stderr.contains("encrypted"), "{stderr}");
}

#[test]
fn the_master_key_may_come_from_the_environment() {
    let dir = private_dir();
    let data = dir.path();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let env = [("P8FS_MASTER_KEY", key)];
    let (success, _, stderr) = p8fs(
        data,
        &[
            "s3", "keys", "create", "--tenant", "acme", "--scope", "s3:read",
        ],
        &env,
    );
    assert!(success, "{stderr}");
    assert!(
        !data.join("keys").join("master.keys").exists(),
        "no key file when the environment holds the key"
    );
    let (success, stdout, stderr) = p8fs(data, &["s3", "keys", "list"], &env);
    assert!(success, "{stderr}");
    assert!(stdout.contains("acme"), "{stdout}");
    // Another key does not open the store's data keys.
    let (success, _, stderr) = p8fs(
        data,
        &["s3", "keys", "list"],
        &[(
            "P8FS_MASTER_KEY",
            "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4",
        )],
    );
    assert!(!success);
    assert!(stderr.contains("not configured"), "{stderr}");
}

#[test]
fn prune_master_drops_retired_keys_once_every_data_key_is_rewrapped() {
    let dir = private_dir();
    let data = dir.path();
    let created = ok(
        data,
        &[
            "s3", "keys", "create", "--tenant", "acme", "--scope", "s3:read",
        ],
    );
    let id = created
        .lines()
        .find_map(|line| line.strip_prefix("AWS_ACCESS_KEY_ID="))
        .unwrap_or_else(|| panic!("no access key id in {created}"))
        .to_owned();
    ok(data, &["keys", "rotate-master"]);
    let key_file = data.join("keys").join("master.keys");
    let rotated = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(rotated.lines().count(), 2);

    let reply: Value = serde_json::from_str(ok(data, &["keys", "prune-master"]).trim()).unwrap();
    assert_eq!(reply["dropped"].as_array().unwrap().len(), 1, "{reply}");
    assert!(reply["data_keys"].as_u64().unwrap() >= 1, "{reply}");
    let pruned = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        pruned.lines().collect::<Vec<_>>(),
        [rotated.lines().next().unwrap()]
    );
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "still owner-only");

    // The store opens with the current key alone, and there is nothing more to drop.
    let listed = ok(data, &["s3", "keys", "list", "--tenant", "acme"]);
    assert!(listed.contains(&id), "{listed}");
    let again: Value = serde_json::from_str(ok(data, &["keys", "prune-master"]).trim()).unwrap();
    assert_eq!(again["dropped"], serde_json::json!([]), "{again}");
}

#[test]
fn reseal_rewrites_a_store_written_before_encryption() {
    let dir = private_dir();
    let data = dir.path();
    let marker = "opal-description-of-a-plain-store";
    let plain = [("P8FS_ENCRYPTION_ENABLED", "false")];
    let (success, created, stderr) = p8fs(
        data,
        &[
            "s3",
            "keys",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "s3:read",
            "--description",
            marker,
        ],
        &plain,
    );
    assert!(success, "{stderr}");
    assert!(created.contains("AWS_ACCESS_KEY_ID="), "{created}");
    let store = data.join("rocksdb");
    assert!(!files_containing(&store, marker.as_bytes()).is_empty());

    // Encryption on: the store is read as it is, and resealed tenant by tenant.
    let out = ok(data, &["keys", "reseal"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (totals, tenants) = lines.split_last().unwrap();
    assert!(!tenants.is_empty(), "{out}");
    assert!(
        tenants.iter().all(|t| t["complete"] == Value::Bool(true)),
        "{out}"
    );
    assert_eq!(
        totals["tenants"].as_u64(),
        Some(tenants.len() as u64),
        "{out}"
    );
    assert!(totals["rewritten"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(totals["incomplete"], serde_json::json!([]), "{out}");
    assert_eq!(
        files_containing(&store, marker.as_bytes()),
        Vec::<String>::new(),
        "the plain record is rewritten and compacted away"
    );
    let listed = ok(data, &["s3", "keys", "list", "--tenant", "acme"]);
    assert!(listed.contains(marker), "{listed}");

    // A second run skips every tenant.
    let again = ok(data, &["keys", "reseal"]);
    let totals: Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(totals["tenants"], 0, "{again}");
    assert_eq!(
        totals["skipped"].as_u64(),
        Some(tenants.len() as u64),
        "{again}"
    );
}

/// The files under `dir` holding `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}
