//! The gRPC front-end under load, beside REST doing the same, on RocksDB:
//!
//! 1. Unary `Kv.Get` of one small record: requests per second and latency p50/p99, 64
//!    concurrent calls over ONE HTTP/2 connection (as a gRPC channel multiplexes them), beside
//!    REST's `GET /v1/kv/{key}` from 64 concurrent HTTP/1.1 clients (a pool of keep-alive
//!    connections).
//! 2. Object download throughput: a 256 MiB object streamed by `Objects.Download` (1 MiB
//!    messages) beside `GET /v1/objects/{bucket}/{key}` (the REST body the S3 GET also streams
//!    from `chunk_reads`), best of three, each fully read.
//!
//! ```sh
//! cargo bench --workspace --bench grpc
//! ```
//!
//! The gRPC client is the `h2` crate with messages encoded by `prost` from the server's own
//! types (framing by hand: a flag byte, a big-endian length, the message), so the benchmark needs
//! no gRPC client library; `P8FS_BENCH_SECONDS` sets each load phase's length (default 10).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a failed step should stop it loudly, and it reports on stdout"
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use p8fs_grpc::pb;
use prost::Message;

const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
const CONCURRENCY: usize = 64;
const OBJECT_BYTES: usize = 256 << 20;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Gateway {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(P8FS);
        command
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("p8fs.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"));
        command
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p8fs.toml"),
            "[log]\nlevel = \"warn\"\n\n[s3]\nenabled = false\n\n[limits]\nmax_connections = 5000\nmax_connections_per_address = 5000\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("p8fs.log")).unwrap();
        let port = free_port();
        let mut gateway = Gateway {
            child: Command::new("true").spawn().unwrap(),
            dir,
            port,
        };
        gateway.child = gateway
            .command(&["serve"])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "p8fs serve did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        gateway
    }

    fn token(&self) -> String {
        let out = self
            .command(&[
                "token",
                "issue",
                "--tenant",
                "bench",
                "--sub",
                "bench",
                "--scope",
                "kv:read kv:write s3:read s3:write",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// One length-prefixed gRPC message.
fn frame(message: &impl Message) -> Bytes {
    let mut buf = BytesMut::with_capacity(5 + message.encoded_len());
    buf.put_u8(0);
    buf.put_u32(u32::try_from(message.encoded_len()).unwrap());
    message.encode(&mut buf).unwrap();
    buf.freeze()
}

/// One HTTP/2 connection to the gateway, as a gRPC channel holds.
async fn channel(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Calls `path` with `request`; the response's messages (each frame's payload) after checking
/// `grpc-status: 0`, each handed to `each` as it arrives.
async fn call(
    client: &mut h2::client::SendRequest<Bytes>,
    port: u16,
    token: &str,
    path: &str,
    request: Bytes,
    mut each: impl FnMut(&[u8]),
) {
    *client = client.clone().ready().await.unwrap();
    let head = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(head, false).unwrap();
    send.send_data(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut pending = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        pending.extend_from_slice(&chunk);
        while pending.len() >= 5 {
            let length = u32::from_be_bytes(pending[1..5].try_into().unwrap()) as usize;
            if pending.len() < 5 + length {
                break;
            }
            let message = pending.split_to(5 + length);
            each(&message[5..]);
        }
    }
    let trailers = body.trailers().await.unwrap();
    let status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(status.as_deref(), Some("0"), "{trailers:?}");
}

/// Runs `one` from `CONCURRENCY` tasks for `seconds`: calls per second and the latencies.
async fn load<F, Fut>(seconds: u64, one: F) -> (f64, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|task| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let began = Instant::now();
                    one(task).await;
                    latencies.push(began.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    (rate, latencies)
}

fn report(what: &str, rate: f64, latencies: &[Duration]) {
    println!(
        "{what:<44} {rate:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        percentile(latencies, 0.50).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let seconds = std::env::var("P8FS_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let gateway = Gateway::start();
    let token: Arc<str> = gateway.token().into();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY)
            .build()
            .unwrap();
        let put = http
            .put(gateway.url("/v1/kv/bench"))
            .bearer_auth(&*token)
            .header("content-type", "application/json")
            .body(r#"{"hello":"world","n":42}"#)
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());

        // 1. Kv.Get over one HTTP/2 connection, then REST's GET.
        let port = gateway.port;
        let client = channel(port).await;
        let get = frame(&pb::GetRequest {
            key: "bench".into(),
        });
        let (rate, latencies) = {
            let token = token.clone();
            load(seconds, move |_| {
                let mut client = client.clone();
                let token = token.clone();
                let get = get.clone();
                async move {
                    let mut found = 0;
                    call(&mut client, port, &token, "/p8fs.v1.Kv/Get", get, |m| {
                        let record = pb::KvRecord::decode(m).unwrap();
                        assert_eq!(record.key, "bench");
                        found += 1;
                    })
                    .await;
                    assert_eq!(found, 1);
                }
            })
            .await
        };
        report(
            "gRPC Kv.Get (1 HTTP/2 connection, 64 streams)",
            rate,
            &latencies,
        );
        let (rate, latencies) = {
            let token = token.clone();
            let url = gateway.url("/v1/kv/bench");
            let http = http.clone();
            load(seconds, move |_| {
                let request = http.get(&url).bearer_auth(&*token);
                async move {
                    let response = request.send().await.unwrap();
                    assert!(response.status().is_success());
                    response.bytes().await.unwrap();
                }
            })
            .await
        };
        report(
            "REST GET /v1/kv/{key} (64 HTTP/1.1 clients)",
            rate,
            &latencies,
        );

        // 2. A 256 MiB object, downloaded over gRPC and over REST.
        let created = http
            .put(gateway.url("/v1/objects/bench"))
            .bearer_auth(&*token)
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success());
        let body: Vec<u8> = (0..OBJECT_BYTES).map(|i| (i % 251) as u8).collect();
        let uploaded = http
            .put(gateway.url("/v1/objects/bench/big.bin"))
            .bearer_auth(&*token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(uploaded.status().is_success());
        let mib = OBJECT_BYTES as f64 / f64::from(1 << 20);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut client = channel(port).await;
            let started = Instant::now();
            let mut size = 0;
            let request = frame(&pb::DownloadRequest {
                bucket: "bench".into(),
                key: "big.bin".into(),
            });
            call(
                &mut client,
                port,
                &token,
                "/p8fs.v1.Objects/Download",
                request,
                |m| {
                    if let Some(pb::download_response::Part::Data(data)) =
                        pb::DownloadResponse::decode(m).unwrap().part
                    {
                        size += data.len();
                    }
                },
            )
            .await;
            assert_eq!(size, OBJECT_BYTES);
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{:<44} {:>9.0} MiB/s",
            "gRPC Objects.Download (256 MiB, best of 3)",
            mib / best
        );
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            let bytes = http
                .get(gateway.url("/v1/objects/bench/big.bin"))
                .bearer_auth(&*token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(bytes.len(), OBJECT_BYTES);
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{:<44} {:>9.0} MiB/s",
            "REST GET /v1/objects (256 MiB, best of 3)",
            mib / best
        );
    });
}
