//! What the client suites share (`graphql_clients`, `mcp_clients`, `grpc_clients`): running a
//! command with a deadline, free ports, scratch names, and a backend's storage settings as
//! environment variables for `p8fs` (a scratch database of its own on the SQL servers).
//!
//! Each suite uses part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn env(variable: &str) -> String {
    std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run the tests with scripts/test-all.sh"))
}

/// Runs `command` to completion within `limit`, killing it past that.
pub(crate) fn run(mut command: Command, limit: Duration, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub(crate) fn succeeded(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A name no other run shares (the SQL servers are shared and keep their data), from the
/// random name of a temporary directory: `[a-z0-9]`.
pub(crate) fn unique(dir: &Path) -> String {
    dir.file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// `CREATEDB <name>` (a command printing the new database's URL).
pub(crate) fn createdb(createdb: &str, name: &str) -> String {
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!("{createdb} {name}"));
    succeeded(
        run(command, Duration::from_secs(60), "createdb"),
        "createdb",
    )
    .trim()
    .to_owned()
}

/// The storage settings of a backend, as environment variables for `p8fs`: a scratch
/// database of its own on the SQL servers.
/// The master key of every server on the shared SQL test databases: the nodes of one deployment
/// must seal with the same master keys, and the servers of the suites share these databases.
pub(crate) const SHARED_MASTER_KEY: &str = "c2hhcmVkLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE";

pub(crate) fn storage_env(backend: &str, name: &str) -> Vec<(String, String)> {
    match backend {
        "rocksdb" => Vec::new(),
        "postgres" => {
            env("P8FS_TEST_POSTGRES_URL");
            vec![
                ("P8FS_STORAGE_PROVIDER".into(), "postgres".into()),
                (
                    "P8FS_STORAGE_URL".into(),
                    createdb(&env("P8FS_TEST_POSTGRES_CREATEDB"), name),
                ),
            ]
        }
        "tidb" => {
            env("P8FS_TEST_TIDB_URL");
            vec![
                ("P8FS_STORAGE_PROVIDER".into(), "tidb".into()),
                (
                    "P8FS_STORAGE_URL".into(),
                    createdb(&env("P8FS_TEST_TIDB_CREATEDB"), name),
                ),
            ]
        }
        other => panic!("unknown backend {other}"),
    }
}

/// Whether the server on `port` answers `GET /readyz` with 200.
pub(crate) fn ready(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}
