//! The GraphQL endpoint under load, beside the REST calls that fetch the same data, on RocksDB:
//!
//! 1. A typical app view: a node with its 20 neighbours and their properties. GraphQL is one
//!    request (`node { neighbors(first: 20) { node { id label properties } } }`); REST is the
//!    node, its neighbour list and the 20 neighbours (`GET /v1/graph/nodes/{id}`, sent
//!    concurrently), 22 requests. Views per second and view latency p50/p99, 32 clients.
//! 2. Subscription fan-out: 1,000 WebSocket subscribers (`graphql-transport-ws`) on one tenant's
//!    changes; a kv `PUT` through REST, then the time until the last subscriber has it, p50 and
//!    max over the writes.
//!
//! ```sh
//! cargo bench --workspace --bench graphql
//! ```
//!
//! `P8FS_BENCH_SECONDS` sets each load phase's length (default 10), `P8FS_BENCH_SUBSCRIBERS`
//! the fan-out (default 1000). The gateway is the release `p8fs` binary in its own process.

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a failed step should stop it loudly, and it reports on stdout"
)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
const CLIENTS: usize = 32;
const NEIGHBOURS: usize = 20;
const VIEW: &str = "{ node(id: \"hub\") { id label properties neighbors(first: 20) { hops node { id label properties } } } }";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
                "kv:read kv:write graph:read graph:write",
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

async fn graphql(http: &reqwest::Client, gateway: &Gateway, token: &str, query: &str) -> Value {
    let body: Value = http
        .post(gateway.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.get("errors").is_none(), "{body}");
    body
}

async fn rest_view(http: &reqwest::Client, gateway: &Gateway, token: &str) {
    let get = |path: String| {
        let request = http.get(gateway.url(&path)).bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success());
            response.json::<Value>().await.unwrap()
        }
    };
    let (node, reached) = tokio::join!(
        get("/v1/graph/nodes/hub".into()),
        get("/v1/graph/nodes/hub/neighbors?limit=20".into())
    );
    assert_eq!(node["id"], "hub");
    let ids: Vec<String> = reached["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), NEIGHBOURS);
    let nodes = futures::future::join_all(
        ids.into_iter()
            .map(|id| get(format!("/v1/graph/nodes/{id}"))),
    )
    .await;
    assert!(nodes.iter().all(|n| n["properties"].is_object()));
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `view` from `CLIENTS` tasks for `seconds`; views per second and the latencies.
async fn load<F, Fut>(seconds: u64, view: F) -> (f64, Vec<Duration>)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let view = Arc::new(view);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let view = view.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    view().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let seconds = env_number("P8FS_BENCH_SECONDS", 10);
    let subscribers = env_number("P8FS_BENCH_SUBSCRIBERS", 1000) as usize;
    let gateway = Arc::new(Gateway::start());
    let token: Arc<str> = gateway.token().into();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    // The data of the view: a hub and its 20 neighbours with properties.
    graphql(&http, &gateway, &token, "mutation { putNode(id: \"hub\", label: \"person\", properties: { name: \"Ada\" }) { id } }").await;
    for half in [0..10, 10..20] {
        let mut writes = String::from("mutation { ");
        for i in half {
            writes.push_str(&format!(
                "n{i}: putNode(id: \"note{i:02}\", label: \"note\", properties: {{ title: \"note {i}\", rank: {i}, tags: [\"a\", \"b\"] }}) {{ id }} \
                 e{i}: putEdge(src: \"hub\", rel: \"wrote\", dst: \"note{i:02}\") {{ rel }} "
            ));
        }
        writes.push('}');
        graphql(&http, &gateway, &token, &writes).await;
    }
    let check = graphql(&http, &gateway, &token, VIEW).await;
    assert_eq!(
        check["data"]["node"]["neighbors"].as_array().unwrap().len(),
        NEIGHBOURS
    );

    println!("p8fs GraphQL benchmark: RocksDB, {CLIENTS} clients, {seconds} s per phase, loopback");
    let (graphql_rate, graphql_latencies) = {
        let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
        load(seconds, move || {
            let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
            async move {
                graphql(&http, &gateway, &token, VIEW).await;
            }
        })
        .await
    };
    println!(
        "graphql view (1 request):      {graphql_rate:8.0} views/s  p50 {:6.2} ms  p99 {:6.2} ms",
        ms(percentile(&graphql_latencies, 0.5)),
        ms(percentile(&graphql_latencies, 0.99))
    );
    let (rest_rate, rest_latencies) = {
        let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
        load(seconds, move || {
            let (http, gateway, token) = (http.clone(), gateway.clone(), token.clone());
            async move {
                rest_view(&http, &gateway, &token).await;
            }
        })
        .await
    };
    println!(
        "rest view (22 requests):       {rest_rate:8.0} views/s  p50 {:6.2} ms  p99 {:6.2} ms  ({:.0} requests/s)",
        ms(percentile(&rest_latencies, 0.5)),
        ms(percentile(&rest_latencies, 0.99)),
        rest_rate * 22.0
    );
    println!(
        "graphql / rest (views/s):      {:8.2}",
        graphql_rate / rest_rate
    );

    fan_out(&gateway, &token, &http, subscribers).await;
}

/// Opens `subscribers` subscriptions, then times writes until every subscriber has each.
async fn fan_out(gateway: &Gateway, token: &str, http: &reqwest::Client, subscribers: usize) {
    let (arrivals, mut arrived) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let ready = Arc::new(tokio::sync::Semaphore::new(0));
    for subscriber in 0..subscribers {
        let mut request = format!("ws://127.0.0.1:{}/graphql", gateway.port)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
        socket.send(Message::text(init.to_string())).await.unwrap();
        let arrivals = arrivals.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let message: Value = serde_json::from_str(&text).unwrap();
                match message["type"].as_str() {
                    Some("connection_ack") => {
                        let subscribe = json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { changes(kinds: [KV], prefix: \"fan/\") { cursor key } }" } });
                        socket
                            .send(Message::text(subscribe.to_string()))
                            .await
                            .unwrap();
                        ready.add_permits(1);
                    }
                    Some("next") => {
                        let _ = arrivals.send((subscriber, Instant::now()));
                    }
                    Some("ping") => {
                        let _ = socket
                            .send(Message::text(json!({ "type": "pong" }).to_string()))
                            .await;
                    }
                    Some(other) => panic!("subscriber {subscriber}: unexpected {other}: {message}"),
                    None => {}
                }
            }
        });
    }
    let _all = ready.acquire_many(subscribers as u32).await.unwrap();
    // The subscriptions start reading at the log's head once their first read returns.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lasts = Vec::new();
    for write in 0..10 {
        let sent = Instant::now();
        let response = http
            .put(gateway.url(&format!("/v1/kv/fan%2F{write}")))
            .bearer_auth(token)
            .json(&json!({ "write": write }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let mut got = 0;
        let mut last = sent;
        while got < subscribers {
            let (_, at) = tokio::time::timeout(Duration::from_secs(60), arrived.recv())
                .await
                .expect("every subscriber receives the change")
                .unwrap();
            got += 1;
            last = last.max(at);
        }
        lasts.push(last - sent);
    }
    lasts.sort();
    println!(
        "fan-out to {subscribers} subscribers: write to last delivery p50 {:.1} ms, max {:.1} ms (10 writes)",
        ms(percentile(&lasts, 0.5)),
        ms(*lasts.last().unwrap())
    );
}
