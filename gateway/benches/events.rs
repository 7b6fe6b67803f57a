//! End-to-end latency of the change log leaving `p8fs serve`: from just before a kv `PUT` is sent
//! to the arrival of its change on an SSE stream (`GET /v1/changes/stream`) and on NATS (the
//! JetStream publisher of `[events.nats]`), p50/p90/p99, with the `PUT` round trip as the anchor.
//!
//! One gateway process (the release `p8fs` binary, S3 off), one client process, writes one at a
//! time: the next `PUT` is sent once the previous change has arrived on both, so the figures are
//! latencies without queueing. NATS is read through a core subscription on
//! `<subject_prefix>.<tenant>.>`: a message arrives there when the server receives the publish,
//! alongside its storage in the stream (which the publisher waits for before its next batch).
//!
//! ```sh
//! scripts/services/nats.sh start
//! P8FS_BENCH_NATS_URL=$(scripts/services/nats.sh url) cargo bench --workspace --bench events
//! ```
//!
//! - `P8FS_BENCH_NATS_URL` (required): a NATS server with JetStream; each run creates a stream
//!   and subject prefix of its own and deletes the stream at the end.
//! - `P8FS_BENCH_BACKEND`: `rocksdb` (default, in a temporary directory), `postgres` (with
//!   `P8FS_BENCH_POSTGRES_URL`) or `tidb` (with `P8FS_BENCH_TIDB_URL`). Give an SQL backend a
//!   database of its own (`scripts/services/postgres.sh createdb NAME` prints the URL of a fresh
//!   one): the publisher publishes every tenant of its database and holds a lease in it.
//! - `P8FS_BENCH_SCALE` multiplies the number of writes (2000).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a failed step should stop it loudly, and it reports on stdout"
)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;

const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
/// Writes measured at scale 1.
const WRITES: f64 = 2000.0;
/// Writes before measuring, so that connections, the publisher's lease and the stream exist.
const WARMUP: usize = 50;
/// How long one change may take to arrive before the run fails.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

/// A name no other run shares, from the random name of a temporary directory: `[a-z0-9]`.
fn unique(dir: &Path) -> String {
    dir.file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// `p8fs <args>` with the configuration and data of `dir` and the `P8FS_STORAGE_*` variables.
fn command(dir: &Path, storage: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut command = Command::new(P8FS);
    command
        .args(args)
        .arg("--config")
        .arg(dir.join("p8fs.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .envs(storage.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// The gateway under test, its log in its directory.
struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    storage: Vec<(&'static str, String)>,
    port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(dir: tempfile::TempDir, storage: Vec<(&'static str, String)>, nats: &str) -> Self {
        std::fs::write(
            dir.path().join("p8fs.toml"),
            format!("[log]\nlevel = \"warn\"\n\n[s3]\nenabled = false\n\n{nats}"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("p8fs.log")).unwrap();
        let port = free_port();
        let child = command(dir.path(), &storage, &["serve"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut gateway = Gateway {
            child,
            dir,
            storage,
            port,
        };
        let started = Instant::now();
        while !gateway.ready() {
            if let Some(status) = gateway.child.try_wait().unwrap() {
                panic!(
                    "p8fs serve exited with {status}; its log:\n{}",
                    gateway.log()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "p8fs serve did not come up; its log:\n{}",
                gateway.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }

    fn command(&self, args: &[&str]) -> Command {
        command(self.dir.path(), &self.storage, args)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("p8fs.log")).unwrap_or_default()
    }

    /// `/readyz` answers 200 (the port is bound before the services start).
    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn token(&self, tenant: &str, scope: &str) -> String {
        let out = self
            .command(&[
                "token", "issue", "--tenant", tenant, "--sub", "bench", "--scope", scope,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "p8fs token issue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// Reads change events from an SSE response; sends each one's key with its arrival time.
async fn read_sse(
    mut response: reqwest::Response,
    arrivals: mpsc::UnboundedSender<(String, Instant)>,
) {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let now = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let is_change = event.lines().any(|l| l == "event: change");
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:"))
                && is_change
            {
                let value: serde_json::Value = serde_json::from_str(data.trim_start()).unwrap();
                let key = value["key"].as_str().unwrap_or_default().to_owned();
                if arrivals.send((key, now)).is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads NATS messages; sends each one's key with its arrival time.
async fn read_nats(
    mut subscriber: async_nats::Subscriber,
    arrivals: mpsc::UnboundedSender<(String, Instant)>,
) {
    while let Some(message) = subscriber.next().await {
        let now = Instant::now();
        let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let key = value["key"].as_str().unwrap_or_default().to_owned();
        if arrivals.send((key, now)).is_err() {
            return;
        }
    }
}

/// Waits for the change of `key`; returns when it arrived. Changes arrive in order, so any
/// other key before it is an earlier write's.
async fn arrival(
    arrivals: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    key: &str,
    what: &str,
    gateway: &Gateway,
) -> Instant {
    let deadline = Instant::now() + ARRIVAL_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, arrivals.recv()).await {
            Ok(Some((got, at))) if got == key => return at,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the {what} ended before {key}; the log:\n{}", gateway.log()),
            Err(_) => panic!(
                "{key} did not arrive on {what} within {ARRIVAL_TIMEOUT:?}; the log:\n{}",
                gateway.log()
            ),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1e3
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<32} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0)
    );
}

#[tokio::main]
async fn main() {
    let nats_url = std::env::var("P8FS_BENCH_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "P8FS_BENCH_NATS_URL is not set: point it at a NATS server with JetStream, e.g. \
             `scripts/services/nats.sh start` and P8FS_BENCH_NATS_URL=$(scripts/services/nats.sh url)"
        )
    });
    let scale: f64 = std::env::var("P8FS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let writes = ((WRITES * scale) as usize).max(10);
    let backend = std::env::var("P8FS_BENCH_BACKEND").unwrap_or_else(|_| "rocksdb".into());
    let storage = match backend.as_str() {
        "rocksdb" => Vec::new(),
        "postgres" | "tidb" => {
            let variable = format!("P8FS_BENCH_{}_URL", backend.to_uppercase());
            let url = std::env::var(&variable).unwrap_or_else(|_| {
                panic!("P8FS_BENCH_BACKEND={backend} needs {variable} (a database of its own)")
            });
            vec![
                ("P8FS_STORAGE_PROVIDER", backend.clone()),
                ("P8FS_STORAGE_URL", url),
            ]
        }
        other => panic!("unknown P8FS_BENCH_BACKEND {other}; known: rocksdb, postgres, tidb"),
    };
    println!(
        "# p8fs change log latency: backend {backend}, {writes} sequential kv PUTs, scale {scale}"
    );
    println!(
        "# machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );

    let dir = tempfile::tempdir().unwrap();
    let name = unique(dir.path());
    let stream = format!("P8FSBENCH{}", name.to_uppercase());
    let prefix = format!("p8fsbench.{name}");
    let tenant = format!("bench-{name}");
    let gateway = Gateway::start(
        dir,
        storage,
        &format!(
            "[events.nats]\nurl = \"{nats_url}\"\nstream = \"{stream}\"\nsubject_prefix = \"{prefix}\"\n"
        ),
    );
    let token = gateway.token(&tenant, "kv:read kv:write");

    let nats = async_nats::connect(&nats_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to P8FS_BENCH_NATS_URL {nats_url}: {e}"));
    let subject = format!("{prefix}.{tenant}.>");
    let subscriber = nats.subscribe(subject.clone()).await.unwrap();
    nats.flush().await.unwrap();
    println!(
        "# NATS: a core subscription on {subject} (async-nats), fed by the gateway's JetStream \
         publisher to stream {stream}"
    );
    let (nats_tx, mut nats_rx) = mpsc::unbounded_channel();
    tokio::spawn(read_nats(subscriber, nats_tx));

    let sse = reqwest::Client::new()
        .get(gateway.url("/v1/changes/stream"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200, "GET /v1/changes/stream");
    let (sse_tx, mut sse_rx) = mpsc::unbounded_channel();
    tokio::spawn(read_sse(sse, sse_tx));

    let client = reqwest::Client::new();
    let mut put_times = Vec::with_capacity(writes);
    let mut sse_times = Vec::with_capacity(writes);
    let mut nats_times = Vec::with_capacity(writes);
    for i in 0..WARMUP + writes {
        let key = if i < WARMUP {
            format!("w{i}")
        } else {
            format!("k{}", i - WARMUP)
        };
        let started = Instant::now();
        let response = client
            .put(gateway.url(&format!("/v1/kv/{key}")))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "i": i, "payload": "a change to follow" }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "PUT {key}: {}",
            response.status()
        );
        let put = started.elapsed();
        let on_sse = arrival(&mut sse_rx, &key, "SSE stream", &gateway).await;
        let on_nats = arrival(&mut nats_rx, &key, "NATS subscription", &gateway).await;
        if i >= WARMUP {
            put_times.push(put);
            sse_times.push(on_sse.duration_since(started));
            nats_times.push(on_nats.duration_since(started));
        }
    }
    summary("PUT round trip (anchor)", put_times);
    summary("PUT -> SSE event", sse_times);
    summary("PUT -> NATS message", nats_times);

    // The stream of this run only holds this run's messages.
    let jetstream = async_nats::jetstream::new(nats);
    if let Err(error) = jetstream.delete_stream(&stream).await {
        println!("# could not delete the stream {stream}: {error}");
    }
}
