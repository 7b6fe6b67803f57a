//! The admin commands as an operator runs them: `p8fs user ...`, `p8fs client ...`,
//! `p8fs token issue` and `p8fs keys rotate` against a running `p8fs serve` (through its admin
//! socket, since RocksDB admits one process) and against the bare data directory.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_p8fs");

/// Runs `p8fs args...` on `dir` with `stdin`; returns (success, stdout, stderr).
fn p8fs(dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    p8fs_with_env(dir, args, stdin, &[])
}

/// [`p8fs`] with environment variables set.
fn p8fs_with_env(
    dir: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &Path)],
) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("P8FS_CONFIG")
        .env_remove("P8FS_S3_LISTEN")
        .env_remove("AWS_SHARED_CREDENTIALS_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn ok(dir: &Path, args: &[&str], stdin: &str) -> String {
    let (success, stdout, stderr) = p8fs(dir, args, stdin);
    assert!(success, "p8fs {args:?} failed: {stderr}");
    stdout
}

fn fails(dir: &Path, args: &[&str], stdin: &str) -> String {
    let (success, _, stderr) = p8fs(dir, args, stdin);
    assert!(!success, "p8fs {args:?} should have failed");
    stderr
}

/// An owner-only temporary directory, as `p8fs` requires of a data directory.
fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A `p8fs serve` process; stopped with SIGTERM on drop.
struct Served {
    child: Child,
    base: String,
    /// The S3 listener's URL.
    s3: Option<String>,
}

impl Served {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env_remove("P8FS_CONFIG")
            .env_remove("P8FS_S3_LISTEN")
            .env("P8FS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut s3 = None;
        let base = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("p8fs S3 on ") {
                s3 = Some(rest.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("p8fs listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Served { child, base, s3 }
    }

    fn stop(mut self) {
        terminate(&self.child);
        self.child.wait().unwrap();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(&self.child);
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn jwks_kids(base: &str) -> Vec<String> {
    let body = http_get(base, "/.well-known/jwks.json");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn http_get(base: &str, path: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

#[test]
fn admin_commands_reach_a_running_server_and_work_without_one() {
    let dir = private_dir();
    let data = dir.path();
    let server = Served::start(data);

    let socket = data.join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket mode {mode:o}");

    let user: Value = serde_json::from_str(&ok(
        data,
        &[
            "user",
            "add",
            "--tenant",
            "acme",
            "alice",
            "--password-stdin",
        ],
        "correct horse battery staple\n",
    ))
    .unwrap();
    assert_eq!(user["username"], "alice");
    assert_eq!(user["tenant"], "acme");
    assert_eq!(user["disabled"], false);
    let shown = serde_json::to_string(&user).unwrap();
    assert!(!shown.contains("horse"), "{shown}");

    let error = fails(
        data,
        &[
            "user",
            "add",
            "--tenant",
            "acme",
            "alice",
            "--password-stdin",
        ],
        "another long password\n",
    );
    assert!(error.contains("alice"), "{error}");
    let error = fails(
        data,
        &[
            "user",
            "add",
            "--tenant",
            "acme",
            "Bad Name!",
            "--password-stdin",
        ],
        "another long password\n",
    );
    assert!(error.contains("username"), "{error}");
    let error = fails(
        data,
        &["user", "passwd", "nobody", "--password-stdin"],
        "another long password\n",
    );
    assert!(error.contains("nobody"), "{error}");

    ok(data, &["user", "disable", "alice"], "");
    let users = ok(data, &["user", "list"], "");
    let alice: Value = serde_json::from_str(users.lines().next().unwrap()).unwrap();
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["disabled"], true);
    ok(data, &["user", "enable", "alice"], "");

    let created: Value = serde_json::from_str(&ok(
        data,
        &[
            "client",
            "add",
            "--name",
            "Nightly sync",
            "--confidential",
            "--grant-type",
            "client_credentials",
            "--scope",
            "kv:read",
            "--tenant",
            "acme",
        ],
        "",
    ))
    .unwrap();
    let client_id = created["client"]["client_id"].as_str().unwrap().to_owned();
    assert!(created["client_secret"].as_str().unwrap().len() >= 32);
    let clients = ok(data, &["client", "list"], "");
    assert!(clients.contains(&client_id), "{clients}");
    assert!(
        clients.contains("p8fs-cli"),
        "built-in client missing: {clients}"
    );
    assert!(!clients.contains(created["client_secret"].as_str().unwrap()));
    ok(data, &["client", "remove", &client_id], "");
    let error = fails(data, &["client", "remove", &client_id], "");
    assert!(error.contains(&client_id), "{error}");

    // Token issue and key rotation go through the server: the new key is published at once.
    let before = jwks_kids(&server.base);
    let token = ok(
        data,
        &[
            "token", "issue", "--tenant", "acme", "--sub", "ops", "--scope", "kv:read",
        ],
        "",
    );
    assert_eq!(token.trim().split('.').count(), 3);
    let rotated = ok(data, &["keys", "rotate"], "");
    let kid = rotated.trim().strip_prefix("new signing key ").unwrap();
    let after = jwks_kids(&server.base);
    assert_eq!(after.first().map(String::as_str), Some(kid), "{after:?}");
    assert!(before.iter().all(|k| after.contains(k)));

    server.stop();
    assert!(!socket.exists(), "the socket outlived the server");

    // Without a server the commands open the store themselves and see the same accounts.
    let users = ok(data, &["user", "list"], "");
    assert!(users.contains("\"alice\""), "{users}");
    ok(
        data,
        &["user", "passwd", "alice", "--password-stdin"],
        "a brand new password\n",
    );
}

#[test]
fn a_stale_socket_does_not_stop_the_server_or_the_commands() {
    let dir = private_dir();
    let data = dir.path();
    // A socket file left by a killed server: nothing listens on it.
    drop(std::os::unix::net::UnixListener::bind(data.join("admin.sock")).unwrap());
    assert!(data.join("admin.sock").exists());
    let users = ok(data, &["user", "list"], "");
    assert_eq!(users, "");
    let server = Served::start(data);
    ok(
        data,
        &["user", "add", "--tenant", "acme", "bob", "--password-stdin"],
        "correct horse battery staple\n",
    );
    server.stop();
}

/// The `NAME=value` lines of `p8fs s3 keys create`: (access key id, secret).
fn created_key(stdout: &str) -> (String, String) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "exactly two lines: {stdout:?}");
    let id = lines[0].strip_prefix("AWS_ACCESS_KEY_ID=").unwrap();
    let secret = lines[1].strip_prefix("AWS_SECRET_ACCESS_KEY=").unwrap();
    assert_eq!(id.len(), 20, "{id}");
    assert!(id.starts_with("P8A"), "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    );
    assert_eq!(secret.len(), 40, "{secret}");
    (id.to_owned(), secret.to_owned())
}

/// Whether any file under `dir` contains `needle`.
fn any_file_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            any_file_contains(&path, needle)
        } else {
            std::fs::read(&path)
                .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        }
    })
}

#[test]
fn s3_keys_work_without_a_server_and_through_a_running_one() {
    let dir = private_dir();
    let data = dir.path();

    // Without a server: the store is opened directly.
    let (first, first_secret) = created_key(&ok(
        data,
        &[
            "s3",
            "keys",
            "create",
            "--tenant",
            "acme",
            "--description",
            "nightly backup",
        ],
        "",
    ));
    let (read_only, _) = created_key(&ok(
        data,
        &[
            "s3", "keys", "create", "--tenant", "acme", "--scope", "s3:read",
        ],
        "",
    ));
    let sealing = data.join("keys").join("s3-sealing.key");
    let mode = std::fs::metadata(&sealing).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "sealing key mode {mode:o}");

    for (args, field) in [
        (
            &[
                "s3", "keys", "create", "--tenant", "acme", "--scope", "kv:read",
            ][..],
            "scope",
        ),
        (
            &["s3", "keys", "create", "--tenant", "p8fs-system"][..],
            "tenant",
        ),
        (
            &["s3", "keys", "create", "--tenant", "Not A Tenant"][..],
            "tenant",
        ),
    ] {
        let error = fails(data, args, "");
        assert!(error.contains(field), "{args:?}: {error}");
    }
    let error = fails(data, &["s3", "keys", "revoke", "P8AXXXXXXXXXXXXXXXXX"], "");
    assert!(error.contains("P8AXXXXXXXXXXXXXXXXX"), "{error}");

    let listed = ok(data, &["s3", "keys", "list", "--tenant", "acme"], "");
    assert!(!listed.contains(&first_secret), "{listed}");
    let keys: Vec<Value> = listed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{listed}");
    let first_listed = keys.iter().find(|k| k["access_key_id"] == first).unwrap();
    assert_eq!(first_listed["tenant"], "acme");
    assert_eq!(first_listed["scope"], "s3:read s3:write");
    assert_eq!(first_listed["description"], "nightly backup");
    let read_only_listed = keys
        .iter()
        .find(|k| k["access_key_id"] == read_only)
        .unwrap();
    assert_eq!(read_only_listed["scope"], "s3:read");
    assert_eq!(
        ok(data, &["s3", "keys", "list", "--tenant", "globex"], ""),
        ""
    );

    // Through a running server (RocksDB admits one process): the same keys, the same store.
    let server = Served::start(data);
    let (second, second_secret) = created_key(&ok(
        data,
        &["s3", "keys", "create", "--tenant", "globex"],
        "",
    ));
    let all = ok(data, &["s3", "keys", "list"], "");
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(
        all.contains(&second) && !all.contains(&second_secret),
        "{all}"
    );
    ok(data, &["s3", "keys", "revoke", &first], "");
    let error = fails(data, &["s3", "keys", "revoke", &first], "");
    assert!(error.contains(&first), "{error}");
    server.stop();

    let left = ok(data, &["s3", "keys", "list"], "");
    assert_eq!(left.lines().count(), 2, "{left}");
    assert!(!left.contains(&first), "{left}");

    // The secrets are sealed on disk: the store holds the key ids but never a secret.
    let store = data.join("rocksdb");
    assert!(
        any_file_contains(&store, second.as_bytes()),
        "the store holds the key ids"
    );
    for secret in [&first_secret, &second_secret] {
        assert!(
            !any_file_contains(data, secret.as_bytes()),
            "a secret is on disk"
        );
    }
}

#[test]
fn s3_credentials_exchange_the_login_token_at_sts() {
    let dir = private_dir();
    let data = dir.path();
    let home = private_dir();
    let server = Served::start(data);
    let endpoint = server.s3.clone().expect("p8fs serve prints its S3 address");

    // A login as `p8fs login` leaves it, with a token that may use S3.
    let login = |scope: &str| {
        let token = ok(
            data,
            &[
                "token", "issue", "--tenant", "acme", "--sub", "alice", "--scope", scope, "--ttl",
                "2h",
            ],
            "",
        );
        let credentials = home.path().join(format!("login-{}.json", scope.len()));
        let entry = serde_json::json!({
            server.base.clone(): {
                "client_id": "p8fs-cli",
                "token_endpoint": format!("{}/oauth/token", server.base),
                "access_token": token.trim(),
            }
        });
        std::fs::write(&credentials, entry.to_string()).unwrap();
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
        credentials
    };
    let credentials = login("kv:read s3:read s3:write");
    let aws = home.path().join("aws").join("credentials");
    let env: [(&str, &Path); 2] = [
        ("P8FS_CREDENTIALS", &credentials),
        ("AWS_SHARED_CREDENTIALS_FILE", &aws),
    ];
    let run = |args: &[&str], env: &[(&str, &Path)]| p8fs_with_env(data, args, "", env);

    let (success, stdout, stderr) = run(&["s3", "credentials", "--endpoint-url", &endpoint], &env);
    assert!(success, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let id = lines[0].strip_prefix("export AWS_ACCESS_KEY_ID=").unwrap();
    assert!(id.starts_with("P8T") && id.len() == 20, "{id}");
    let secret = lines[1]
        .strip_prefix("export AWS_SECRET_ACCESS_KEY=")
        .unwrap();
    assert_eq!(secret.len(), 40);
    let session = lines[2].strip_prefix("export AWS_SESSION_TOKEN=").unwrap();
    assert!(session.len() >= 40, "{session}");
    assert!(!stderr.contains(secret) && !stderr.contains(session));

    // Without --endpoint-url, the configured S3 listener is the endpoint.
    let listen = endpoint.strip_prefix("http://").unwrap();
    let configured: [(&str, &Path); 2] = [env[0], ("P8FS_S3_LISTEN", Path::new(listen))];
    let (success, stdout, stderr) = run(&["s3", "credentials"], &configured);
    assert!(success, "{stderr}");
    assert!(
        stdout.starts_with("export AWS_ACCESS_KEY_ID=P8T"),
        "{stdout}"
    );

    // --profile writes the AWS CLI file (0600), keeping the other profiles.
    std::fs::create_dir_all(aws.parent().unwrap()).unwrap();
    std::fs::write(
        &aws,
        "[default]\naws_access_key_id = AKIAKEEP\nregion = eu-west-1\n",
    )
    .unwrap();
    let (success, stdout, stderr) = run(
        &[
            "s3",
            "credentials",
            "--endpoint-url",
            &endpoint,
            "--profile",
            "p8fs",
            "--duration",
            "15m",
        ],
        &env,
    );
    assert!(success, "{stderr}");
    assert_eq!(stdout, "", "nothing on stdout with --profile");
    let written = std::fs::read_to_string(&aws).unwrap();
    assert!(
        written.starts_with("[default]\naws_access_key_id = AKIAKEEP\nregion = eu-west-1\n"),
        "{written}"
    );
    assert!(
        written.contains("[p8fs]\naws_access_key_id = P8T"),
        "{written}"
    );
    assert!(written.contains("aws_secret_access_key = "), "{written}");
    assert!(written.contains("aws_session_token = "), "{written}");
    let mode = std::fs::metadata(&aws).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // Bad input is refused by the server with the field named; no endpoint, no guess.
    let (success, _, stderr) = run(
        &[
            "s3",
            "credentials",
            "--endpoint-url",
            &endpoint,
            "--duration",
            "5m",
        ],
        &env,
    );
    assert!(!success && stderr.contains("DurationSeconds"), "{stderr}");
    let (success, _, stderr) = run(
        &["s3", "credentials", "--endpoint-url", "http://example.com"],
        &env,
    );
    assert!(!success && stderr.contains("https"), "{stderr}");

    // A login without an s3 scope gets nothing.
    let no_s3 = login("kv:read");
    let (success, stdout, stderr) = run(
        &["s3", "credentials", "--endpoint-url", &endpoint],
        &[("P8FS_CREDENTIALS", &no_s3)],
    );
    assert!(!success && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("s3:read"), "{stderr}");
    server.stop();
}
