//! S3 throughput of `p8fs serve` beside the anchor, `s3s-fs` (the s3s project's reference server,
//! files on disk), with the same client (the Rust AWS SDK) and the same data, in one run:
//!
//! - PUT then GET of 4 KiB objects, 16 at a time (ops/s);
//! - PUT then GET of 1 MiB objects, 16 at a time, and of 256 MiB objects one at a time (MB/s);
//! - on p8fs/RocksDB, a 2 GiB PUT and GET, with the gateway's peak resident memory (VmHWM).
//!
//! ```sh
//! cargo install s3s-fs --version '~0.14' --features binary   # the anchor
//! cargo bench --workspace --bench s3
//! cargo bench --workspace --bench s3 -- sealed               # encryption at rest on vs off
//! ```
//!
//! `sealed` measures only the cost of encryption at rest as an S3 client sees it: two p8fs
//! servers on RocksDB, one with encryption at rest (the default) and one without, 64 MiB objects
//! PUT then GET one at a time, rounds alternating between the two (`P8FS_BENCH_ROUNDS`, default
//! 5; four objects a round); the median round of each, and their ratio.
//!
//! `S3S_FS` names the anchor's binary (default: `s3s-fs` on `PATH`). PostgreSQL and TiDB are
//! measured too when `P8FS_TEST_POSTGRES_URL` / `P8FS_TEST_TIDB_URL` are set (as
//! `scripts/test-all.sh` sets them). `P8FS_BENCH_SCALE=0.1` shrinks the counts for a quick look.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a failed step should stop it loudly, and it reports on stdout"
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server under test: its process, endpoint and keys.
struct Target {
    name: String,
    child: Child,
    endpoint: String,
    key: (String, String),
    _dir: tempfile::TempDir,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    fn p8fs(name: &str, storage: &[(&str, String)]) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("p8fs.toml");
        std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
        let (http, s3) = (free_port(), free_port());
        let data = dir.path().join("data");
        let command = |args: &[&str]| {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(&data)
                .envs(storage.iter().map(|(k, v)| (*k, v.as_str())));
            command
        };
        let child = command(&["serve"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{http}"))
            .env("P8FS_S3_LISTEN", format!("127.0.0.1:{s3}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(s3);
        let tenant = format!(
            "bench-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        );
        let out = command(&["s3", "keys", "create", "--tenant", &tenant])
            .output()
            .unwrap();
        assert!(out.status.success(), "p8fs s3 keys create failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        Target {
            name: name.to_owned(),
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key: (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY")),
            _dir: dir,
        }
    }

    fn s3s_fs() -> Target {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let binary = std::env::var("S3S_FS").unwrap_or_else(|_| "s3s-fs".to_owned());
        let key = (
            "BENCHACCESSKEY0000000".to_owned(),
            "bench-secret".to_owned(),
        );
        let child = Command::new(&binary)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--access-key")
            .arg(&key.0)
            .arg("--secret-key")
            .arg(&key.1)
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (set S3S_FS): {e}"));
        wait_for_port(port);
        Target {
            name: "s3s-fs".to_owned(),
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            key,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                &self.key.0,
                &self.key.1,
                None,
                None,
                "bench",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Client::from_conf(config)
    }

    /// The server's peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

/// Pseudo-random bytes (xorshift), so no store gains from compression.
fn data(len: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Runs `count` operations `0..count`, `concurrency` at a time; returns the seconds taken.
async fn run<F, Fut>(count: usize, concurrency: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    op(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

async fn put(client: &Client, bucket: &str, key: String, body: Bytes) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn get(client: &Client, bucket: &str, key: String) -> usize {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let mut body = out.body;
    let mut n = 0;
    while let Some(chunk) = body.try_next().await.unwrap() {
        n += chunk.len();
    }
    n
}

/// Objects of `size` bytes, `count` of them, `concurrency` at a time: (PUT, GET) per second.
async fn objects(
    target: &Target,
    bucket: &str,
    size: usize,
    count: usize,
    concurrency: usize,
) -> (f64, f64) {
    let client = target.client();
    let body = data(size);
    let bucket = bucket.to_owned();
    let (c, b, d) = (client.clone(), bucket.clone(), body.clone());
    let put_s = run(count, concurrency, move |i| {
        let (c, b, d) = (c.clone(), b.clone(), d.clone());
        async move { put(&c, &b, format!("obj/{i:08}"), d).await }
    })
    .await;
    let (c, b) = (client.clone(), bucket.clone());
    let get_s = run(count, concurrency, move |i| {
        let (c, b) = (c.clone(), b.clone());
        async move {
            let n = get(&c, &b, format!("obj/{i:08}")).await;
            assert_eq!(n, size);
        }
    })
    .await;
    (count as f64 / put_s, count as f64 / get_s)
}

struct Row {
    target: String,
    small: (f64, f64),
    medium: (f64, f64),
    large: (f64, f64),
}

async fn measure(target: &Target, scale: f64) -> Row {
    let client = target.client();
    for bucket in ["small", "medium", "large"] {
        client.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let n = |base: f64| ((base * scale) as usize).max(2);
    let small = objects(target, "small", 4 * KIB, n(4000.0), 16).await;
    let medium = objects(target, "medium", MIB, n(256.0), 16).await;
    let large = objects(target, "large", 256 * MIB, n(2.0), 1).await;
    let mb = |ops: f64, size: usize| ops * size as f64 / 1e6;
    let row = Row {
        target: target.name.clone(),
        small,
        medium: (mb(medium.0, MIB), mb(medium.1, MIB)),
        large: (mb(large.0, 256 * MIB), mb(large.1, 256 * MIB)),
    };
    println!(
        "{:<16} 4 KiB PUT {:>8.0} ops/s  GET {:>8.0} ops/s | 1 MiB PUT {:>6.0} MB/s  GET {:>6.0} MB/s | 256 MiB PUT {:>6.0} MB/s  GET {:>6.0} MB/s",
        row.target, row.small.0, row.small.1, row.medium.0, row.medium.1, row.large.0, row.large.1
    );
    row
}

/// (PUT MB/s, GET MB/s) of `count` objects of `size` bytes, one at a time, under `prefix`.
async fn one_at_a_time(client: &Client, prefix: &str, size: usize, count: usize) -> (f64, f64) {
    let body = data(size);
    let started = Instant::now();
    for i in 0..count {
        put(client, "large", format!("{prefix}/{i}"), body.clone()).await;
    }
    let put_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for i in 0..count {
        assert_eq!(get(client, "large", format!("{prefix}/{i}")).await, size);
    }
    let get_s = started.elapsed().as_secs_f64();
    let mb = (size * count) as f64 / 1e6;
    (mb / put_s, mb / get_s)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Encryption at rest on vs off through the S3 front-end.
async fn sealed() {
    let rounds: usize = std::env::var("P8FS_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let targets = [
        Target::p8fs("p8fs/rocksdb sealed", &[]),
        Target::p8fs(
            "p8fs/rocksdb plain",
            &[("P8FS_ENCRYPTION_ENABLED", "false".to_owned())],
        ),
    ];
    let clients: Vec<Client> = targets.iter().map(Target::client).collect();
    for client in &clients {
        client.create_bucket().bucket("large").send().await.unwrap();
    }
    let mut figures = [(vec![], vec![]), (vec![], vec![])];
    for round in 0..rounds {
        for (i, client) in clients.iter().enumerate() {
            let (put_mb, get_mb) =
                one_at_a_time(client, &format!("round{round}"), 64 * MIB, 4).await;
            println!(
                "round {round} {:<20} 64 MiB PUT {put_mb:>6.0} MB/s  GET {get_mb:>6.0} MB/s",
                targets[i].name
            );
            figures[i].0.push(put_mb);
            figures[i].1.push(get_mb);
        }
    }
    let [sealed, plain] = figures.map(|(puts, gets)| (median(puts), median(gets)));
    println!(
        "median of {rounds} rounds, 64 MiB objects one at a time: sealed PUT {:.0} MB/s GET {:.0} MB/s; \
         plain PUT {:.0} MB/s GET {:.0} MB/s; sealed/plain PUT {:.2}x GET {:.2}x",
        sealed.0,
        sealed.1,
        plain.0,
        plain.1,
        sealed.0 / plain.0,
        sealed.1 / plain.1
    );
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "sealed") {
        sealed().await;
        return;
    }
    let scale: f64 = std::env::var("P8FS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    println!(
        "machine: {} cores; scale {scale}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rows = Vec::new();
    let anchor = Target::s3s_fs();
    rows.push(measure(&anchor, scale).await);
    drop(anchor);
    let rocks = Target::p8fs("p8fs/rocksdb", &[]);
    rows.push(measure(&rocks, scale).await);

    // 2 GiB through the gateway, with its peak memory.
    let client = rocks.client();
    let size = ((2048.0 * scale) as usize).max(64) * MIB;
    let body = data(size);
    let started = Instant::now();
    put(&client, "large", "huge".to_owned(), body).await;
    let put_mb = size as f64 / 1e6 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    assert_eq!(get(&client, "large", "huge".to_owned()).await, size);
    let get_mb = size as f64 / 1e6 / started.elapsed().as_secs_f64();
    println!(
        "p8fs/rocksdb     {} MiB PUT {put_mb:.0} MB/s  GET {get_mb:.0} MB/s; gateway peak RSS {:.0} MiB",
        size / MIB,
        rocks.peak_rss_mib()
    );
    drop(rocks);

    for (name, provider, variable) in [
        ("p8fs/postgres", "postgres", "P8FS_TEST_POSTGRES_URL"),
        ("p8fs/tidb", "tidb", "P8FS_TEST_TIDB_URL"),
    ] {
        if let Ok(url) = std::env::var(variable) {
            let target = Target::p8fs(
                name,
                &[
                    ("P8FS_STORAGE_PROVIDER", provider.to_owned()),
                    ("P8FS_STORAGE_URL", url),
                ],
            );
            rows.push(measure(&target, scale).await);
        } else {
            println!("{name}: {variable} not set, not measured");
        }
    }
    let anchor = &rows[0];
    for row in &rows[1..] {
        println!(
            "{:<16} / s3s-fs: 4 KiB PUT {:.2}x GET {:.2}x | 1 MiB PUT {:.2}x GET {:.2}x | 256 MiB PUT {:.2}x GET {:.2}x",
            row.target,
            row.small.0 / anchor.small.0,
            row.small.1 / anchor.small.1,
            row.medium.0 / anchor.medium.0,
            row.medium.1 / anchor.medium.1,
            row.large.0 / anchor.large.0,
            row.large.1 / anchor.large.1
        );
    }
}
