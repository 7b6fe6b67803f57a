//! The MCP endpoint (`/mcp`) beside the REST calls doing the same work, on RocksDB, with the
//! server in process (`server::services` and `server::app` behind the accept loop of
//! `p8fs serve` on a loopback port) and plain HTTP clients (reqwest, HTTP/1.1 keep-alive):
//!
//! - `kv_get` of one record against `GET /v1/kv/{key}`;
//! - `recall` (k = 5) over 100,000 chunks against `GET /v1/search?q=...&k=5`, query embedding
//!   included on both sides (the builtin model from `P8FS_TEST_MODEL_DIR`).
//!
//! Each MCP call is measured in both protocol eras: stateless (2026-07-28: one POST per call,
//! the request `_meta` and the `Mcp-Method`/`Mcp-Name` headers the revision requires) and with a
//! session (2025-11-25: `initialize` and `notifications/initialized` once per client, outside
//! the timing, then each call with its `Mcp-Session-Id`). For every pair: latency p50 and p99
//! with one call at a time, then calls per second, p50 and p99 with 16 calls in flight, and the
//! MCP/REST ratios (latency over latency, REST calls/s over MCP calls/s: above 1 is MCP slower).
//!
//! The chunks are seeded through `Memory::remember` in parallel, with `chunk_tokens = 16` and no
//! overlap so a memory of 200 short sentences becomes 200 chunks embedded in batches of 32
//! (seeding time and progress are printed). The queries are served with those same settings;
//! a query's embedding and the vector search do not depend on them.
//!
//! ```sh
//! P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir) cargo bench --workspace --bench mcp
//! ```
//!
//! `P8FS_BENCH_CHUNKS` sets the number of chunks (default 100000), `P8FS_BENCH_SECONDS` each
//! measured phase's length (default 5; each pair also has a 2 s warm-up), and
//! `P8FS_BENCH_KEEP=<dir>` keeps the seeded data directory there and reuses it on the next run
//! with the same `P8FS_BENCH_CHUNKS` (by default a fresh temporary directory is seeded).

#![expect(
    clippy::unwrap_used,
    clippy::print_stdout,
    reason = "a benchmark binary: a failed step should stop it loudly, and it reports on stdout"
)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use p8fs_auth::{Issuer, ScopeSet};
use p8fs_core::{Clock, SystemClock, TenantId};
use p8fs_gateway::config::{Config, EmbeddingsProvider, Overrides};
use p8fs_gateway::server;
use p8fs_memory::NewMemory;
use serde_json::{Value, json};

const TENANT: &str = "bench";
const SCOPES: &str = "kv:read kv:write memories:read memories:write";
/// Calls in flight in the throughput phases.
const IN_FLIGHT: usize = 16;
/// Memories remembered at once while seeding.
const SEEDERS: usize = 4;
/// Sentences (one chunk each) per seeded memory.
const SENTENCES_PER_MEMORY: usize = 200;
const WARM_UP: Duration = Duration::from_secs(2);
const KEY: &str = "bench-record";
const K: u64 = 5;
const STATELESS: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

const ADJECTIVES: [&str; 16] = [
    "amber", "quiet", "restless", "silver", "crooked", "gentle", "hollow", "bright", "ancient",
    "nervous", "patient", "rusty", "frozen", "golden", "muddy", "tiny",
];
const NOUNS: [&str; 16] = [
    "falcon", "otter", "lantern", "tractor", "violin", "orchard", "glacier", "ferry", "monk",
    "kettle", "bridge", "comet", "badger", "printer", "meadow", "sailor",
];
const VERBS: [&str; 16] = [
    "waited",
    "slept",
    "sang",
    "rusted",
    "argued",
    "wandered",
    "glowed",
    "shivered",
    "danced",
    "listened",
    "collapsed",
    "rested",
    "hummed",
    "drifted",
    "vanished",
    "returned",
];
const PLACES: [&str; 16] = [
    "near the harbour",
    "under the bridge",
    "in the library",
    "behind the bakery",
    "on the mountain",
    "beside the river",
    "inside the station",
    "at the market",
    "in the vineyard",
    "by the lighthouse",
    "across the desert",
    "in the cellar",
    "on the rooftop",
    "along the canal",
    "near the school",
    "in the forest",
];
const QUERIES: [&str; 8] = [
    "which bird was waiting by the harbour",
    "an animal sleeping under a bridge",
    "music played in the library",
    "old machines rusting on a farm",
    "someone dancing on the roof at night",
    "a boat drifting along the canal",
    "ice and snow on the mountain",
    "things that disappeared in the forest",
];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn model_dir() -> String {
    match std::env::var("P8FS_TEST_MODEL_DIR") {
        Ok(dir) if !dir.is_empty() => dir,
        _ => panic!(
            "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
             to the output of `scripts/services/model.sh dir`"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sentence `i`: about a dozen tokens, so each is one chunk of 16 tokens.
fn sentence(i: usize) -> String {
    format!(
        "Entry {i}: the {} {} {} {}.",
        ADJECTIVES[i % 16],
        NOUNS[(i / 16) % 16],
        VERBS[(i / 256) % 16],
        PLACES[(i / 4096 + i) % 16]
    )
}

/// Remembers `target` sentences as memories of [`SENTENCES_PER_MEMORY`], [`SEEDERS`] at once;
/// the number of chunks written.
async fn seed(memory: Arc<p8fs_memory::Memory>, target: usize) -> usize {
    let memories = target.div_ceil(SENTENCES_PER_MEMORY);
    let next = Arc::new(AtomicUsize::new(0));
    let chunks = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let progress = {
        let chunks = chunks.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(15)).await;
                let done = chunks.load(Ordering::Relaxed);
                let elapsed = started.elapsed().as_secs_f64();
                println!(
                    "  seeding: {done} / {target} chunks after {elapsed:.0} s ({:.0} chunks/s)",
                    done as f64 / elapsed
                );
            }
        })
    };
    let tenant = TenantId::new(TENANT).unwrap();
    let seeders: Vec<_> = (0..SEEDERS)
        .map(|_| {
            let (memory, next, chunks, tenant) =
                (memory.clone(), next.clone(), chunks.clone(), tenant.clone());
            tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= memories {
                        break;
                    }
                    let first = index * SENTENCES_PER_MEMORY;
                    let last = (first + SENTENCES_PER_MEMORY).min(target);
                    let text = (first..last).map(sentence).collect::<Vec<_>>().join(" ");
                    let record = memory
                        .remember(
                            &tenant,
                            NewMemory {
                                text,
                                ..NewMemory::default()
                            },
                        )
                        .await
                        .unwrap();
                    assert!(!record.truncated, "memory {index} was truncated");
                    chunks.fetch_add(record.chunks, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for seeder in seeders {
        seeder.await.unwrap();
    }
    progress.abort();
    chunks.load(Ordering::Relaxed)
}

/// How a call reaches the server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rest,
    /// MCP 2026-07-28: one POST, no session.
    Stateless,
    /// MCP 2025-11-25 over a session opened by the client first.
    Session,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Rest => "REST",
            Mode::Stateless => "MCP stateless (2026-07-28)",
            Mode::Session => "MCP session (2025-11-25)",
        }
    }
}

/// The work a call does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Work {
    KvGet,
    Recall,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::KvGet => "kv_get",
            Work::Recall => "recall k=5",
        }
    }
}

struct Target {
    http: reqwest::Client,
    base: String,
    rest_token: String,
    mcp_token: String,
}

/// One client's connection state: its session for [`Mode::Session`], and its request ids.
struct Client {
    session: Option<String>,
    id: u64,
}

impl Target {
    fn mcp_post(&self, protocol: Option<&str>, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(format!("{}/mcp", self.base))
            .bearer_auth(&self.mcp_token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        if let Some(protocol) = protocol {
            request = request.header("mcp-protocol-version", protocol);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    async fn client(&self, mode: Mode) -> Client {
        let session = if mode == Mode::Session {
            Some(self.open_session().await)
        } else {
            None
        };
        Client { session, id: 1 }
    }

    /// `initialize`, then `notifications/initialized`; the session id.
    async fn open_session(&self) -> String {
        let response = self
            .mcp_post(None, None)
            .json(&json!({
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY,
                    "capabilities": {},
                    "clientInfo": { "name": "p8fs-bench", "version": "1" }
                }
            }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let session = response
            .headers()
            .get("mcp-session-id")
            .expect("initialize answers with Mcp-Session-Id")
            .to_str()
            .unwrap()
            .to_owned();
        let answer = rpc_answer(response).await;
        assert_eq!(answer["result"]["protocolVersion"], LEGACY, "{answer}");
        let response = self
            .mcp_post(Some(LEGACY), Some(&session))
            .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        session
    }

    async fn close(&self, client: &Client) {
        if let Some(session) = &client.session {
            let _ = self
                .http
                .delete(format!("{}/mcp", self.base))
                .bearer_auth(&self.mcp_token)
                .header("mcp-protocol-version", LEGACY)
                .header("mcp-session-id", session)
                .send()
                .await;
        }
    }

    /// One call, its answer checked.
    async fn call(&self, client: &mut Client, mode: Mode, work: Work) {
        client.id += 1;
        let query = QUERIES[client.id as usize % QUERIES.len()];
        if mode == Mode::Rest {
            let request = match work {
                Work::KvGet => self.http.get(format!("{}/v1/kv/{KEY}", self.base)),
                Work::Recall => self
                    .http
                    .get(format!("{}/v1/search", self.base))
                    .query(&[("q", query), ("k", &K.to_string())]),
            };
            let response = request.bearer_auth(&self.rest_token).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let body: Value = response.json().await.unwrap();
            match work {
                Work::KvGet => assert!(body.is_object(), "{body}"),
                Work::Recall => assert_eq!(body["hits"].as_array().unwrap().len(), K as usize),
            }
            return;
        }
        let (tool, arguments) = match work {
            Work::KvGet => ("kv_get", json!({ "key": KEY })),
            Work::Recall => ("recall", json!({ "query": query, "k": K })),
        };
        let mut params = json!({ "name": tool, "arguments": arguments });
        let request = if mode == Mode::Stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": STATELESS,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": { "name": "p8fs-bench", "version": "1" }
            });
            self.mcp_post(Some(STATELESS), None)
                .header("mcp-method", "tools/call")
                .header("mcp-name", tool)
        } else {
            self.mcp_post(Some(LEGACY), client.session.as_deref())
        };
        let response = request
            .json(&json!({
                "jsonrpc": "2.0",
                "id": client.id,
                "method": "tools/call",
                "params": params
            }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let answer = rpc_answer(response).await;
        let result = &answer["result"];
        assert_eq!(answer["id"], client.id, "{answer}");
        assert_ne!(result["isError"], true, "{answer}");
        match work {
            Work::KvGet => assert!(result["structuredContent"].is_object(), "{answer}"),
            Work::Recall => assert_eq!(
                result["structuredContent"]["results"]
                    .as_array()
                    .unwrap()
                    .len(),
                K as usize,
                "{answer}"
            ),
        }
    }
}

/// The JSON-RPC answer of a response, JSON or an SSE stream (`data: {...}` lines).
async fn rpc_answer(response: reqwest::Response) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = response.text().await.unwrap();
    if !sse {
        return serde_json::from_str(&body).unwrap();
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("result").is_some() || message.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON-RPC answer in the event stream: {body}"))
}

/// Latencies and rate of one phase.
struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// Runs `work` through `mode` from `clients` clients for `length`.
async fn load(
    target: &Arc<Target>,
    mode: Mode,
    work: Work,
    clients: usize,
    length: Duration,
) -> Measured {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (target, barrier) = (target.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut client = target.client(mode).await;
                // Every client has its session before the clock starts.
                barrier.wait().await;
                let deadline = Instant::now() + length;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    target.call(&mut client, mode, work).await;
                    latencies.push(t.elapsed());
                }
                target.close(&client).await;
                latencies
            })
        })
        .collect();
    barrier.wait().await;
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Measured {
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
}

#[tokio::main]
async fn main() {
    let target_chunks = env_number("P8FS_BENCH_CHUNKS", 100_000) as usize;
    let length = Duration::from_secs(env_number("P8FS_BENCH_SECONDS", 5));
    let model = model_dir();
    let temporary = tempfile::tempdir().unwrap();
    let root = match std::env::var_os("P8FS_BENCH_KEEP") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => temporary.path().to_path_buf(),
    };
    std::fs::create_dir_all(&root).unwrap();
    let marker = root.join("seeded-chunks");
    let seeded: Option<usize> = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|s| {
            s.trim()
                .split_once(' ')
                .map(|(t, c)| (t.to_owned(), c.to_owned()))
        })
        .filter(|(t, _)| t.parse() == Ok(target_chunks))
        .and_then(|(_, c)| c.parse().ok());
    if seeded.is_none() && root.join("data").exists() {
        panic!(
            "{} holds a data directory not seeded with {target_chunks} chunks: remove it or \
             choose another P8FS_BENCH_KEEP",
            root.display()
        );
    }

    let port = free_port();
    let overrides = Overrides {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        data_dir: Some(root.join("data")),
        ..Overrides::default()
    };
    let mut config = Config::load(
        None,
        vec![("P8FS_EMBEDDINGS_MODEL_DIR".to_owned(), model)],
        &overrides,
    )
    .unwrap();
    config.embeddings.provider = Some(EmbeddingsProvider::Builtin);
    config.embeddings.chunk_tokens = 16;
    config.embeddings.overlap_tokens = 0;
    config.embeddings.ingest = false;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let services = server::services(&config, clock.clone()).await.unwrap();
    let memory = services.memory.clone().expect("the builtin embedder is on");

    let chunks = match seeded {
        Some(chunks) => {
            println!("reusing {} ({chunks} chunks)", root.display());
            chunks
        }
        None => {
            println!("seeding {target_chunks} chunks ({SEEDERS} memories at once)...");
            let started = Instant::now();
            let chunks = seed(memory, target_chunks).await;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "seeded {chunks} chunks in {seconds:.1} s ({:.0} chunks/s)",
                chunks as f64 / seconds
            );
            std::fs::write(&marker, format!("{target_chunks} {chunks}\n")).unwrap();
            chunks
        }
    };

    let app = server::app(&services, &config);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    // The accept loop of `p8fs serve` (TCP_NODELAY, the connection limits, HTTP/1.1 and h2).
    let limits = config.limits.clone();
    tokio::spawn(async move {
        p8fs_gateway::connections::serve(listener, app, &limits, std::future::pending()).await;
    });
    let issuer = Issuer::new(
        services.keys.clone(),
        server::token_config(&config),
        clock.clone(),
    );
    let tenant = TenantId::new(TENANT).unwrap();
    let scopes = ScopeSet::parse(SCOPES).unwrap();
    let ttl = Duration::from_secs(3600);
    let target = Arc::new(Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        rest_token: issuer
            .issue(&tenant, "bench", "bench", &scopes, ttl)
            .unwrap()
            .token,
        mcp_token: issuer
            .issue_for(
                &config.mcp_resource(),
                &tenant,
                "bench",
                "bench",
                &scopes,
                ttl,
            )
            .unwrap()
            .token,
    });
    let response = target
        .http
        .put(format!("{}/v1/kv/{KEY}", target.base))
        .bearer_auth(&target.rest_token)
        .json(&json!({ "title": "a record", "rank": 7, "tags": ["a", "b"] }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    println!(
        "p8fs MCP benchmark: RocksDB, {chunks} chunks, in-process server on loopback, \
         {} s per phase, {IN_FLIGHT} in flight for calls/s",
        length.as_secs()
    );
    println!(
        "{:<11} {:<27} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "call", "through", "p50 ms", "p99 ms", "calls/s", "p50@16", "p99@16"
    );
    let mut ratios = Vec::new();
    for work in [Work::KvGet, Work::Recall] {
        let mut rest: Option<(Measured, Measured)> = None;
        for mode in [Mode::Rest, Mode::Stateless, Mode::Session] {
            load(&target, mode, work, IN_FLIGHT, WARM_UP).await;
            let one = load(&target, mode, work, 1, length).await;
            let many = load(&target, mode, work, IN_FLIGHT, length).await;
            println!(
                "{:<11} {:<27} {:>8.3} {:>8.3} {:>10.0} {:>9.3} {:>9.3}",
                work.name(),
                mode.name(),
                one.p50,
                one.p99,
                many.rate,
                many.p50,
                many.p99
            );
            match &rest {
                None => rest = Some((one, many)),
                Some((rest_one, rest_many)) => ratios.push(format!(
                    "{:<11} {:<27} p50 {:.2}x  p99 {:.2}x  calls/s {:.2}x  p50@16 {:.2}x",
                    work.name(),
                    mode.name(),
                    one.p50 / rest_one.p50,
                    one.p99 / rest_one.p99,
                    rest_many.rate / many.rate,
                    many.p50 / rest_many.p50
                )),
            }
        }
    }
    println!("MCP / REST (above 1: MCP slower; calls/s as REST rate over MCP rate; target 1.5x):");
    for ratio in ratios {
        println!("  {ratio}");
    }
}
