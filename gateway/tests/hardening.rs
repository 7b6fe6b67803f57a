//! The server against hostile clients and hostile neighbours, through the real `p8fs` binary:
//! slow clients (slowloris headers, trickled bodies, idle connections) and too many
//! connections, where `/metrics` is served and to whom, query strings kept out of the request
//! logs, and a data directory other users could read.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_p8fs");

/// Slow connections opened by the slowloris test: half trickle their request head, half a body.
const SLOW_CONNECTIONS: usize = 1100;
/// Client addresses the slow connections come from (127.0.0.2 ...), so that no one address
/// exceeds the default `limits.max_connections_per_address` (128).
const SLOW_ADDRESSES: usize = 11;
/// The most any single step may take before the test gives up on it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `p8fs serve` process on 127.0.0.1 with a configuration file; stopped with SIGTERM.
struct Served {
    child: Child,
    address: SocketAddr,
    metrics: Option<SocketAddr>,
    dir: tempfile::TempDir,
    log: Option<std::thread::JoinHandle<String>>,
}

impl Served {
    /// Starts the server with `config` (TOML) and `env`; keeps its log when `keep_log`.
    fn start(config: &str, env: &[(&str, &str)], keep_log: bool) -> Self {
        Self::start_listening(config, env, keep_log, "127.0.0.1:0")
    }

    fn start_listening(config: &str, env: &[(&str, &str)], keep_log: bool, listen: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(&file, config).unwrap();
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir(dir.path()))
            .arg("--config")
            .arg(&file)
            .env_remove("P8FS_CONFIG")
            .env("P8FS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut metrics = None;
        let mut seen = String::new();
        let address = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!("p8fs serve ended before listening: {seen}");
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.strip_prefix("p8fs metrics on http://") {
                metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("p8fs listening on http://") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            for line in lines.map_while(Result::ok) {
                if keep_log {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
            log
        });
        Served {
            child,
            address,
            metrics,
            dir,
            log: Some(log),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A token minted through the running server's admin socket.
    fn token(&self, scope: &str) -> String {
        let output = Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir(self.dir.path()))
            .args(["token", "issue", "--tenant", "slow", "--sub", "tester"])
            .args(["--scope", scope])
            .env_remove("P8FS_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// Stops the server and returns what it logged (when kept).
    fn stop(mut self) -> String {
        terminate(&self.child);
        self.child.wait().unwrap();
        self.log.take().unwrap().join().unwrap()
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

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// Raises this process's soft open-file limit to `wanted` (within the hard limit): the
/// slowloris test holds over a thousand sockets.
fn raise_open_file_limit(wanted: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < wanted) {
        let hard = limit.maximum.unwrap_or(u64::MAX);
        assert!(
            hard >= wanted,
            "the open-file hard limit ({hard}) is below the {wanted} this test needs"
        );
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            },
        )
        .unwrap();
    }
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (or `CLIENT_TIMEOUT` passes: `None`).
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(CLIENT_TIMEOUT, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

/// 1,100 slow connections from 11 addresses: 550 send their request head one byte at a time,
/// 550 send an authenticated head with a `Content-Length` and trickle the body. A normal
/// authenticated request from another address must still be served. `limits.concurrency` is
/// 64, so before request bodies were read ahead of the concurrency slot, the trickled bodies
/// held every slot and the normal request waited out `request_timeout` (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_served_while_1100_slow_connections_are_open() {
    raise_open_file_limit(SLOW_CONNECTIONS as u64 + 512);
    let server = Served::start("[limits]\nconcurrency = 64\n", &[], false);
    let token = server.token("kv:read kv:write");
    let head = format!(
        "PUT /v1/kv/slow HTTP/1.1\r\nHost: p8fs\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n\""
    );
    let header_trickle = b"GET /healthz HTTP/1.1\r\nHost: p8fs\r\nX-Slow: ";

    let mut slow = Vec::with_capacity(SLOW_CONNECTIONS);
    for index in 0..SLOW_CONNECTIONS {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (index % SLOW_ADDRESSES) as u8);
        let mut stream = connect_from(from, server.address).await;
        if index % 2 == 0 {
            stream.write_all(&header_trickle[..1]).await.unwrap();
        } else {
            stream.write_all(head.as_bytes()).await.unwrap();
        }
        slow.push(stream);
    }
    // One more byte on every connection each round, as a slowloris client does.
    let trickle = tokio::spawn(async move {
        for round in 1.. {
            for (index, stream) in slow.iter_mut().enumerate() {
                let byte = if index % 2 == 0 {
                    header_trickle.get(round).copied().unwrap_or(b'x')
                } else {
                    b'a'
                };
                let _ = stream.write_all(&[byte]).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Let the server take in the slow heads and bodies.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let started = Instant::now();
    let response = http
        .put(server.url("/v1/kv/normal"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("\"served\"")
        .send()
        .await
        .unwrap();
    let latency = started.elapsed();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let value = http
        .get(server.url("/v1/kv/normal"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(value.status().is_success());
    eprintln!(
        "normal request with {SLOW_CONNECTIONS} slow connections open: {} ms",
        latency.as_millis()
    );
    trickle.abort();
    server.stop();
}

/// A request head that never completes, a body that trickles and a connection that sends
/// nothing are each cut off after their timeout.
#[tokio::test]
async fn slow_heads_slow_bodies_and_idle_connections_are_closed() {
    let server = Served::start(
        "[limits]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n\
         idle_timeout = \"1s\"\n",
        &[],
        false,
    );
    let token = server.token("kv:write");
    let localhost = Ipv4Addr::LOCALHOST;

    // A head that stops half-way: the connection is closed, nothing is served.
    let mut stream = connect_from(localhost, server.address).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: p8fs\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.as_deref().is_some_and(|a| !a.contains("200 OK")),
        "a half-sent head was kept open or served: {answer:?}"
    );

    // A body that stops half-way: 408.
    let mut stream = connect_from(localhost, server.address).await;
    let head = format!(
        "PUT /v1/kv/k HTTP/1.1\r\nHost: p8fs\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n\"abc"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 408")),
        "{answer:?}"
    );

    // A connection that never sends anything is closed.
    let mut stream = connect_from(localhost, server.address).await;
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(answer.as_deref(), Some(""));

    // A keep-alive connection is closed once idle after its response.
    let mut stream = connect_from(localhost, server.address).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: p8fs\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );
    server.stop();
}

/// The request bodies held in memory by all requests together stay within
/// `limits.body_buffer_bytes`: a body that does not fit waits until others are done.
#[tokio::test]
async fn buffered_bodies_stay_within_the_body_budget() {
    let server = Served::start(
        "[limits]\nbody_bytes = 1024\nbody_buffer_bytes = 2048\nbody_read_timeout = \"1h\"\n\
         header_read_timeout = \"1h\"\nidle_timeout = \"1h\"\n",
        &[],
        false,
    );
    let token = server.token("kv:write");
    // Two bodies of which 1,000 bytes each have arrived: 2,000 of the 2,048 bytes are taken.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(Ipv4Addr::LOCALHOST, server.address).await;
        let head = format!(
            "PUT /v1/kv/big HTTP/1.1\r\nHost: p8fs\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1020\r\n\r\n\"{}",
            "a".repeat(999)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        holders.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = format!("\"{}\"", "s".repeat(98));
    let put = |timeout: Duration| {
        let http = reqwest::Client::builder().timeout(timeout).build().unwrap();
        http.put(server.url("/v1/kv/small"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    // A 100-byte body does not fit: it is not read (the client gives up).
    assert!(
        put(Duration::from_secs(2)).await.is_err(),
        "a body was taken in beyond limits.body_buffer_bytes"
    );
    // Once the held bodies are gone, it fits.
    drop(holders);
    let response = put(CLIENT_TIMEOUT).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    server.stop();
}

/// Connections over `max_connections_per_address` or `max_connections` are closed at once;
/// other addresses are still served, and a freed place can be taken again.
#[tokio::test]
async fn connections_over_the_limits_are_closed() {
    let server = Served::start(
        "[limits]\nmax_connections = 6\nmax_connections_per_address = 3\n\
         header_read_timeout = \"1h\"\nidle_timeout = \"1h\"\n",
        &[],
        false,
    );
    let first = Ipv4Addr::new(127, 0, 0, 2);
    let second = Ipv4Addr::new(127, 0, 0, 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(first, server.address).await);
    }
    // A fourth from the same address is closed without an answer.
    let mut refused = connect_from(first, server.address).await;
    assert_eq!(read_until_closed(&mut refused).await.as_deref(), Some(""));
    // The held ones are served.
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: p8fs\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 12];
    held[0].read_exact(&mut buffer).await.unwrap();
    assert_eq!(&buffer, b"HTTP/1.1 200");

    // Another address fills the total of 6; then everyone is refused.
    for _ in 0..3 {
        held.push(connect_from(second, server.address).await);
    }
    let mut refused = connect_from(Ipv4Addr::LOCALHOST, server.address).await;
    assert_eq!(read_until_closed(&mut refused).await.as_deref(), Some(""));

    // Closing one frees a place.
    held.pop();
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut served = false;
    for _ in 0..50 {
        if let Ok(response) = http.get(server.url("/healthz")).send().await {
            served = response.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed connection place was not reusable");
    server.stop();
}

async fn status(url: &str, token: Option<&str>) -> u16 {
    let http = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut request = http.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().status().as_u16()
}

/// On a listener that is not loopback, `/metrics` is not served unless configured.
#[tokio::test]
async fn metrics_are_not_served_on_a_public_listener_by_default() {
    let server = Served::start_listening("", &[], false, "0.0.0.0:0");
    let local = format!("http://127.0.0.1:{}", server.address.port());
    assert_eq!(status(&format!("{local}/healthz"), None).await, 200);
    assert_eq!(status(&format!("{local}/metrics"), None).await, 404);
    server.stop();

    // On loopback (the default listener) they are.
    let server = Served::start("", &[], false);
    assert_eq!(status(&server.url("/metrics"), None).await, 200);
    server.stop();
}

/// `metrics.listen` moves `/metrics` to its own address.
#[tokio::test]
async fn metrics_can_have_their_own_address() {
    let server = Served::start("[metrics]\nlisten = \"127.0.0.1:0\"\n", &[], false);
    let metrics = server.metrics.unwrap();
    assert_ne!(metrics, server.address);
    assert_eq!(status(&server.url("/metrics"), None).await, 404);
    let body = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .unwrap();
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(
        status(&format!("http://{metrics}/healthz"), None).await,
        404
    );
    server.stop();
}

/// `metrics.require_admin_token` admits only an access token with the `admin` scope, also on
/// a public listener.
#[tokio::test]
async fn metrics_can_require_an_admin_token() {
    let server = Served::start_listening(
        "[metrics]\nrequire_admin_token = true\n",
        &[],
        false,
        "0.0.0.0:0",
    );
    let url = format!("http://127.0.0.1:{}/metrics", server.address.port());
    let admin = server.token("admin");
    let reader = server.token("kv:read");
    assert_eq!(status(&url, None).await, 401);
    assert_eq!(status(&url, Some("not-a-token")).await, 401);
    assert_eq!(status(&url, Some(&reader)).await, 403);
    assert_eq!(status(&url, Some(&admin)).await, 200);
    server.stop();
}

/// At debug level the request span names the query parameters but never shows their values.
#[tokio::test]
async fn request_logs_do_not_contain_query_values() {
    let server = Served::start("", &[("P8FS_LOG_LEVEL", "debug")], true);
    let secrets = ["WXYZ-ABCD", "c0de-s3cret", "t0ken-s3cret"];
    let paths = [
        format!("/oauth/device?user_code={}", secrets[0]),
        format!(
            "/healthz?code={}&access_token={}&{}",
            secrets[1], secrets[2], secrets[1]
        ),
    ];
    for path in &paths {
        status(&server.url(path), None).await;
    }
    let log = server.stop();
    assert!(log.contains("user_code=<redacted>"), "{log}");
    assert!(log.contains("access_token=<redacted>"), "{log}");
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}

/// Runs `p8fs args...` on the data directory `dir`; returns (success, stderr). A command still
/// running after `CLIENT_TIMEOUT` (a server that started) is stopped and counts as a success.
fn p8fs(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("P8FS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            terminate(&child);
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    (
        exited.is_none_or(|status| status.success()),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A new data directory is created owner-only, by every command that creates one.
#[test]
fn a_new_data_directory_is_private() {
    let parent = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("migrated", &["migrate"][..]),
        (
            "issued",
            &[
                "token", "issue", "--tenant", "t", "--sub", "s", "--scope", "kv:read",
            ][..],
        ),
        ("listed", &["user", "list"][..]),
    ] {
        let dir = parent.path().join(name);
        let (success, stderr) = p8fs(&dir, args);
        assert!(success, "{args:?}: {stderr}");
        assert_eq!(mode(&dir), 0o700, "{args:?}");
    }
}

/// An existing data directory that group or others can read or write is refused by every
/// command that opens it, with a message naming the directory and the fix.
#[test]
fn a_data_directory_others_can_access_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    for open in [0o755, 0o750, 0o707, 0o770] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
        for args in [
            &["serve", "--listen", "127.0.0.1:0"][..],
            &["migrate"][..],
            &[
                "token", "issue", "--tenant", "t", "--sub", "s", "--scope", "kv:read",
            ][..],
            &["keys", "rotate"][..],
            &["user", "list"][..],
            &["client", "list"][..],
        ] {
            let (success, stderr) = p8fs(&dir, args);
            assert!(!success, "{args:?} accepted mode {open:o}");
            let fix = format!("chmod 700 {}", dir.display());
            assert!(
                stderr.contains(&fix) && stderr.contains("group or others"),
                "{args:?}: {stderr}"
            );
        }
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "something was written into the refused directory"
        );
    }
    // Owner-only, it is accepted.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (success, stderr) = p8fs(&dir, &["user", "list"]);
    assert!(success, "{stderr}");
}

/// A trusted proxy carries many clients: it is held to `max_connections` only, not to the
/// per-address cap that still applies to everyone else.
#[tokio::test]
async fn a_trusted_proxy_is_held_to_the_total_only() {
    let server = Served::start(
        "[limits]\nmax_connections = 6\nmax_connections_per_address = 2\n\
         trusted_proxies = [\"127.0.0.4/32\"]\n\
         header_read_timeout = \"1h\"\nidle_timeout = \"1h\"\n",
        &[],
        false,
    );
    let client = Ipv4Addr::new(127, 0, 0, 2);
    let proxy = Ipv4Addr::new(127, 0, 0, 4);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from(client, server.address).await);
    }
    let mut refused = connect_from(client, server.address).await;
    assert_eq!(read_until_closed(&mut refused).await.as_deref(), Some(""));
    // The proxy gets past two, up to the total of six.
    for _ in 0..4 {
        held.push(connect_from(proxy, server.address).await);
    }
    for stream in &mut held[2..] {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: p8fs\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 12];
        stream.read_exact(&mut buffer).await.unwrap();
        assert_eq!(&buffer, b"HTTP/1.1 200");
    }
    let mut refused = connect_from(proxy, server.address).await;
    assert_eq!(read_until_closed(&mut refused).await.as_deref(), Some(""));
    server.stop();
}
