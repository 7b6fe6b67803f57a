//! `p8fs edge` in front of several `p8fs serve` nodes sharing one PostgreSQL database, all real
//! processes: REST writes and reads, an S3 object larger than the edge could hold streamed up
//! and down, an SSE change stream, a GraphQL subscription over WebSocket, an MCP tool call and
//! gRPC over h2c (`interop/edge_clients.py`), the pre-authentication's 401s and the rate
//! limits' 429s, and a node killed with SIGKILL while the edge keeps serving from the others.
//!
//! The nodes share their signing and sealing keys (copied, as an operator distributes them) and
//! one issuer, so a token or S3 key made on one is good on all. A missing database fails the
//! suite: `scripts/test-all.sh` sets `P8FS_TEST_POSTGRES_URL` and `P8FS_TEST_POSTGRES_CREATEDB`.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;
mod edge_cluster;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, interop_dir, run, succeeded, unique};
use edge_cluster::{Edge, ISSUER, Node, cluster, get, hex, md5_hex, put, s3_client};

/// Runs `interop/edge_clients.py SCENARIO` against the edge.
fn python_clients(edge: &Edge, scenario: &str, token: &str) {
    python_clients_at(&edge.url(""), scenario, token, &[]);
}

/// Runs `interop/edge_clients.py SCENARIO` against the edge at `url`, with `extra` arguments.
fn python_clients_at(url: &str, scenario: &str, token: &str, extra: &[&std::ffi::OsStr]) {
    let mut command = Command::new("python3");
    command
        .current_dir(interop_dir())
        .arg("edge_clients.py")
        .arg(scenario)
        .args(extra)
        .arg("--url")
        .arg(url)
        // `--name=value`: a token is never taken for an option.
        .arg(format!("--token={token}"))
        .arg("--proto-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocols/grpc/proto"));
    let what = format!("edge_clients.py {scenario}");
    let stdout = succeeded(run(command, Duration::from_secs(300), &what), &what);
    eprintln!("{stdout}");
    assert!(
        stdout.contains(&format!("edge clients {scenario}: all checks passed")),
        "{what} did not finish its checks:\n{stdout}"
    );
}

mod edge {
    use super::*;

    /// REST, SSE and S3 through the edge in front of two nodes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rest_sse_and_s3_pass_through() {
        let (_scratch, nodes) = cluster(2);
        let edge = Edge::start(&nodes.iter().collect::<Vec<_>>(), "");
        let tenant = format!("edge-{}", unique(nodes[0].dir.path()));
        let token = nodes[0].token(&tenant, "kv:read kv:write");
        let client = reqwest::Client::new();

        // An SSE stream opened through the edge, before the writes.
        let mut stream = client
            .get(edge.url("/v1/changes/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);

        // Writes and reads, round robin over both nodes; the request id is kept or made.
        for i in 1..=20 {
            put(
                &client,
                &edge,
                &token,
                &format!("k{i}"),
                serde_json::json!({ "i": i }),
            )
            .await;
        }
        for i in 1..=20 {
            assert_eq!(
                get(&client, &edge, &token, &format!("k{i}")).await,
                serde_json::json!({ "i": i })
            );
        }
        let answer = client
            .get(edge.url("/v1/kv/k1"))
            .bearer_auth(&token)
            .header("x-request-id", "edge-test-1")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()["x-request-id"], "edge-test-1");
        let answer = client.get(edge.url("/healthz")).send().await.unwrap();
        assert_eq!(answer.headers()["x-request-id"].len(), 36);

        // The stream saw all 20 writes, in order, whichever node served them.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buffer = String::new();
        let mut keys = Vec::new();
        while keys.len() < 20 {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("{} of 20 events within 30s", keys.len()))
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: change")
                    && let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    let change: serde_json::Value = serde_json::from_str(data).unwrap();
                    keys.push(change["key"].as_str().unwrap().to_owned());
                }
            }
        }
        let expected: Vec<String> = (1..=20).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, expected);

        // S3: a 96 MiB object up and down through the edge's S3 listener, compared by digest;
        // the edge's peak memory during the transfer shows it was streamed, not held.
        let (id, secret) = nodes[1].s3_key(&tenant);
        let s3 = s3_client(&format!("http://127.0.0.1:{}", edge.s3_port), &id, &secret);
        s3.create_bucket().bucket("big").send().await.unwrap();
        let size = 96 << 20;
        let file = edge.dir.path().join("big.bin");
        let mut data = vec![0u8; size];
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        std::fs::write(&file, &data).unwrap();
        let digest = md5_hex(&data);
        drop(data);
        let before = edge.resident_memory();
        edge.reset_peak_memory();
        s3.put_object()
            .bucket("big")
            .key("object.bin")
            .body(
                aws_sdk_s3::primitives::ByteStream::from_path(&file)
                    .await
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let mut body = s3
            .get_object()
            .bucket("big")
            .key("object.bin")
            .send()
            .await
            .unwrap()
            .body;
        let mut context = md5::Md5::default();
        let mut received = 0;
        while let Some(chunk) = body.try_next().await.unwrap() {
            received += chunk.len();
            md5::Digest::update(&mut context, &chunk);
        }
        assert_eq!(received, size);
        assert_eq!(hex(&md5::Digest::finalize(context)), digest);
        let peak = edge.peak_memory();
        eprintln!("edge resident before the transfer {before} bytes, peak during it {peak}");
        assert!(
            peak.saturating_sub(before) < (size as u64) / 4,
            "the edge's resident memory grew from {before} to {peak} bytes: it must stream a \
             {size}-byte object"
        );
    }

    /// A GraphQL subscription over WebSocket, an MCP tool call and gRPC over h2c, through the
    /// edge in front of two nodes, with the clients of `interop/edge_clients.py`.
    #[test]
    fn graphql_websocket_mcp_and_grpc_pass_through() {
        let (_scratch, nodes) = cluster(2);
        let edge = Edge::start(&nodes.iter().collect::<Vec<_>>(), "");
        let tenant = format!("edge-{}", unique(nodes[0].dir.path()));
        let token = nodes[0].token(&tenant, "kv:read kv:write");
        python_clients(&edge, "graphql", &token);
        python_clients(&edge, "grpc", &token);
        let mcp = nodes[1].token_for(
            &tenant,
            "kv:read kv:write",
            "1h",
            Some(&format!("{ISSUER}/mcp")),
        );
        python_clients(&edge, "mcp", &mcp);
    }

    /// The TLS listener (rustls, certificate files): HTTPS with HTTP/1.1 (reqwest) and gRPC
    /// over TLS with HTTP/2 chosen by ALPN (grpcio).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_listener_serves_https_and_grpc() {
        let tls = tempfile::tempdir().unwrap();
        let mut make_ca = Command::new("python3");
        make_ca
            .current_dir(interop_dir())
            .arg("mcp_clients.py")
            .arg("make-ca")
            .arg(tls.path());
        succeeded(run(make_ca, Duration::from_secs(60), "make-ca"), "make-ca");
        let (_scratch, nodes) = cluster(1);
        let tls_port = free_port();
        let edge = Edge::start(
            &[&nodes[0]],
            &format!(
                "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                tls.path().join("leaf.pem").display(),
                tls.path().join("leaf.key").display()
            ),
        );
        let tenant = format!("edge-{}", unique(nodes[0].dir.path()));
        let token = nodes[0].token(&tenant, "kv:read kv:write");
        let ca = reqwest::Certificate::from_pem(&std::fs::read(tls.path().join("ca.pem")).unwrap())
            .unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let base = format!("https://127.0.0.1:{tls_port}");
        let answer = client
            .put(format!("{base}/v1/kv/over-tls"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "tls": true }))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success(),
            "PUT over TLS: {}",
            answer.status()
        );
        let answer = client
            .get(format!("{base}/v1/kv/over-tls"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["value"], serde_json::json!({ "tls": true }));
        // The same record through the cleartext listener.
        assert_eq!(
            get(&client, &edge, &token, "over-tls").await,
            serde_json::json!({ "tls": true })
        );
        let ca = tls.path().join("ca.pem");
        python_clients_at(&base, "grpc", &token, &["--ca".as_ref(), ca.as_os_str()]);
    }

    /// Tokens that are missing, malformed, expired or signed by a key no node has are refused
    /// by the edge with 401; routes that need none pass; rate limits answer 429 with
    /// Retry-After, per tenant and per address.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_bad_tokens_and_limits_rates() {
        let (_scratch, nodes) = cluster(1);
        let edge = Edge::start(
            &[&nodes[0]],
            "leeway = \"0s\"\nrate_per_tenant = { per_second = 0.01, burst = 3 }\n\
             rate_per_address = { per_second = 0.01, burst = 14 }\n",
        );
        let tenant = format!("edge-{}", unique(nodes[0].dir.path()));
        let client = reqwest::Client::new();
        let refused = |response: reqwest::Response, status: u16, why: &'static str| async move {
            assert_eq!(response.status(), status, "{why}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["error_description"].is_string(),
                "{why}: the edge's own answer {body}"
            );
            body
        };
        // No token where one is needed: 1 address token used.
        let answer = client.get(edge.url("/v1/kv/a")).send().await.unwrap();
        refused(answer, 401, "no token").await;
        // Malformed: 2.
        let answer = client
            .get(edge.url("/v1/kv/a"))
            .bearer_auth("not.a.token")
            .send()
            .await
            .unwrap();
        assert!(
            answer.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        refused(answer, 401, "malformed").await;
        // Signed by a key no node of the cluster has (another deployment's): 3.
        let stranger = Node::start(&[], None);
        let foreign = stranger.token(&tenant, "kv:read");
        drop(stranger);
        let answer = client
            .get(edge.url("/v1/kv/a"))
            .bearer_auth(&foreign)
            .send()
            .await
            .unwrap();
        let body = refused(answer, 401, "unknown key").await;
        assert_eq!(body["error_description"], "unknown signing key");
        // Expired (the edge's leeway is zero here): 4.
        let expiring = nodes[0].token_for(&tenant, "kv:read", "1s", None);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let answer = client
            .get(edge.url("/v1/kv/a"))
            .bearer_auth(&expiring)
            .send()
            .await
            .unwrap();
        let body = refused(answer, 401, "expired").await;
        assert_eq!(body["error_description"], "token expired");
        // Routes that need no token pass: 5, 6.
        for path in ["/healthz", "/.well-known/jwks.json"] {
            let answer = client.get(edge.url(path)).send().await.unwrap();
            assert_eq!(answer.status(), 200, "{path}");
        }
        // A good token: 3 requests of the tenant's burst pass (7, 8, 9), the 4th is 429 (10).
        let token = nodes[0].token(&tenant, "kv:read kv:write");
        for _ in 0..3 {
            let answer = client
                .get(edge.url("/v1/kv/a"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 404, "a good token reaches the node");
        }
        let answer = client
            .get(edge.url("/v1/kv/a"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let retry_after: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=100).contains(&retry_after),
            "Retry-After {retry_after}"
        );
        let body = refused(answer, 429, "tenant rate").await;
        assert_eq!(
            body["error_description"],
            "too many requests for this tenant"
        );
        // Another tenant still passes (11, 12), then the address is out of tokens.
        let other = nodes[0].token(&format!("{tenant}b"), "kv:read");
        for _ in 0..2 {
            let answer = client
                .get(edge.url("/v1/kv/a"))
                .bearer_auth(&other)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 404);
        }
        // The edge's readiness probe in `Edge::start` took one or two tokens of the address too.
        let mut answer = client.get(edge.url("/healthz")).send().await.unwrap();
        for _ in 0..2 {
            if answer.status() != 200 {
                break;
            }
            answer = client.get(edge.url("/healthz")).send().await.unwrap();
        }
        assert!(answer.headers().contains_key("retry-after"));
        let body = refused(answer, 429, "address rate").await;
        assert_eq!(
            body["error_description"],
            "too many requests from this address"
        );
    }

    /// A node killed with SIGKILL is ejected: every request after the kill is served by the
    /// others, writes and reads alike, and what was written before is all there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_node_is_ejected() {
        let (_scratch, mut nodes) = cluster(3);
        let edge = Edge::start(&nodes.iter().collect::<Vec<_>>(), "eject_for = \"30s\"\n");
        let tenant = format!("edge-{}", unique(nodes[0].dir.path()));
        let token = nodes[0].token(&tenant, "kv:read kv:write");
        // Keep-alive connections to every node in the edge's pool.
        let client = reqwest::Client::new();
        for i in 0..30 {
            put(
                &client,
                &edge,
                &token,
                &format!("before{i}"),
                serde_json::json!(i),
            )
            .await;
        }
        nodes[1].kill();
        let started = Instant::now();
        for i in 0..60 {
            put(
                &client,
                &edge,
                &token,
                &format!("after{i}"),
                serde_json::json!(i),
            )
            .await;
            assert_eq!(
                get(&client, &edge, &token, &format!("before{}", i % 30)).await,
                serde_json::json!(i % 30)
            );
        }
        for i in 0..60 {
            assert_eq!(
                get(&client, &edge, &token, &format!("after{i}")).await,
                serde_json::json!(i)
            );
        }
        eprintln!("180 requests after the kill in {:?}", started.elapsed());
        assert!(
            edge.log().contains("gateway node ejected"),
            "the edge's log:\n{}",
            edge.log()
        );
    }
}
