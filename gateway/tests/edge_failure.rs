//! The failure test: three `p8fs serve` nodes on one PostgreSQL database behind `p8fs edge`,
//! a bounded load through the edge (REST writes of known values from several writers, S3
//! uploads, an SSE change stream), one node killed with SIGKILL in the middle and restarted
//! later. Afterwards every acknowledged write is readable with its value, no key was
//! acknowledged twice, errors stayed within the requests that can have been in flight on the
//! dead node (one per client, counted), and the stream, resumed from its cursor through the
//! edge whenever it broke, saw every change once, with no cursor missing.
//!
//! A device-flow login (RFC 8628) runs across the failure: the device authorization is asked of
//! the node about to die, the user approves it on another node's pages after the kill, and the
//! client polls the token endpoint through the edge; the token it gets reads the tenant's data.
//!
//! The same scenario runs on PostgreSQL (`edge_failure::postgres`) and on TiDB
//! (`edge_failure::tidb`).

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;
mod edge_cluster;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{interop_dir, run, succeeded, unique};
use edge_cluster::{Edge, Node, cluster_on, s3_client};

/// Writers of key-value records, each with one request in flight at a time.
const WRITERS: usize = 8;
/// Records each writer writes.
const WRITES: usize = 60;
/// Objects the S3 uploader writes.
const UPLOADS: usize = 24;

/// The device-flow user's password.
const PASSWORD: &str = "correct horse battery staple";

/// What a writer saw.
#[derive(Default)]
struct Outcome {
    /// Acknowledged keys with the version the node answered.
    acknowledged: Vec<(String, u64)>,
    /// Requests that failed (a status other than success, or no answer).
    errors: Vec<String>,
}

/// Follows the tenant's changes through the edge, resuming from the last cursor seen whenever
/// the stream breaks, until `stop` is set; every change as (cursor, key), in arrival order.
async fn follow(
    client: reqwest::Client,
    url: String,
    token: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<(u64, String)>, usize) {
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut resumes = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut request = client.get(&url).bearer_auth(&token);
        if let Some((cursor, _)) = seen.last() {
            request = request.header("Last-Event-ID", cursor.to_string());
            resumes += 1;
        }
        let Ok(mut response) = request.send().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut buffer = String::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let chunk =
                match tokio::time::timeout(Duration::from_millis(200), response.chunk()).await {
                    Err(_) => continue,
                    Ok(Ok(Some(chunk))) => chunk,
                    // The stream broke (its node died) or ended: resume.
                    Ok(_) => break,
                };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: change")
                    && let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    let change: serde_json::Value = serde_json::from_str(data).unwrap();
                    let cursor: u64 = change["cursor"].as_str().unwrap().parse().unwrap();
                    seen.push((cursor, change["key"].as_str().unwrap().to_owned()));
                }
            }
        }
    }
    (seen, resumes)
}

/// A device authorization asked of `node` directly for `client_id`: (device_code, user_code).
async fn device_authorization(client: &reqwest::Client, node: &Node) -> (String, String) {
    let answer = client
        .post(node.url("/oauth/device_authorization"))
        .form(&[("client_id", "p8fs-cli"), ("scope", "kv:read kv:write")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "device authorization");
    let grant: serde_json::Value = answer.json().await.unwrap();
    (
        grant["device_code"].as_str().unwrap().to_owned(),
        grant["user_code"].as_str().unwrap().to_owned(),
    )
}

/// Signs `username` in on `node`'s own pages and approves `user_code`, as a browser without
/// JavaScript would (tests/interop/interop.py approve-device).
fn approve_device(node_url: String, user_code: String, username: String) {
    let mut command = std::process::Command::new("python3");
    command.current_dir(interop_dir()).args([
        "interop.py",
        "approve-device",
        "--base",
        &node_url,
        "--url",
        &format!("{node_url}/device"),
        "--code",
        &user_code,
        "--username",
        &username,
        "--password",
        PASSWORD,
    ]);
    let printed = succeeded(
        run(command, Duration::from_secs(50), "approve-device"),
        "interop.py approve-device",
    );
    assert!(printed.contains("\"result\""), "{printed}");
}

/// Polls the token endpoint through the edge with `device_code` until the grant is approved,
/// honouring `slow_down`; answers with the access token. A request that dies with a node is
/// asked again.
async fn poll_token(client: reqwest::Client, edge_url: String, device_code: String) -> String {
    let mut interval = Duration::from_secs(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "the device grant was never approved ({pending} pending answers)"
        );
        tokio::time::sleep(interval).await;
        let Ok(answer) = client
            .post(format!("{edge_url}/oauth/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", "p8fs-cli"),
            ])
            .send()
            .await
        else {
            continue;
        };
        let status = answer.status();
        let Ok(body) = answer.json::<serde_json::Value>().await else {
            continue;
        };
        if status == 200 {
            assert_eq!(
                body["token_type"].as_str().map(str::to_lowercase),
                Some("bearer".into())
            );
            return body["access_token"].as_str().unwrap().to_owned();
        }
        match body["error"].as_str() {
            Some("authorization_pending") => pending += 1,
            Some("slow_down") => interval += Duration::from_secs(5),
            _ if status.is_server_error() => {}
            _ => panic!("device token request: {status} {body}"),
        }
    }
}

/// The failure scenario on a cluster of three nodes on `backend`.
async fn scenario(backend: &str) {
    let (_scratch, mut nodes) = cluster_on(backend, 3);
    let edge = Edge::start(&nodes.iter().collect::<Vec<_>>(), "eject_for = \"3s\"\n");
    let tenant = format!("fail-{}", unique(nodes[0].dir.path()));
    let token = nodes[0].token(&tenant, "kv:read kv:write");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The stream, live before the load: a probe write must reach it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follower = tokio::spawn(follow(
        client.clone(),
        edge.url("/v1/changes/stream"),
        token.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = client
        .put(edge.url("/v1/kv/probe"))
        .bearer_auth(&token)
        .json(&serde_json::json!("probe"))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());

    // The device login's user, and its device authorization asked of the node that will die.
    let username = format!("dev{}", unique(nodes[0].dir.path()));
    nodes[0].add_user(&tenant, &username, PASSWORD);
    let (device_code, user_code) = device_authorization(&client, &nodes[1]).await;

    let (id, secret) = nodes[0].s3_key(&tenant);
    let s3 = s3_client(&format!("http://127.0.0.1:{}", edge.s3_port), &id, &secret);
    s3.create_bucket().bucket("load").send().await.unwrap();

    // The load: writers and an uploader, counting acknowledged requests.
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, token, done) = (client.clone(), token.clone(), done.clone());
        let url = edge.url("");
        writers.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            for i in 0..WRITES {
                let key = format!("w{writer}-{i}");
                let answer = client
                    .put(format!("{url}/v1/kv/{key}"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "writer": writer, "i": i }))
                    .send()
                    .await;
                match answer {
                    Ok(answer) if answer.status().is_success() => {
                        let body: serde_json::Value = answer.json().await.unwrap();
                        let version = body["version"].as_str().unwrap().parse().unwrap();
                        outcome.acknowledged.push((key, version));
                    }
                    Ok(answer) => outcome.errors.push(format!("{key}: {}", answer.status())),
                    Err(error) => outcome.errors.push(format!("{key}: {error}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            outcome
        }));
    }
    let uploader = {
        let s3 = s3.clone();
        tokio::spawn(async move {
            let mut outcome = Outcome::default();
            for n in 0..UPLOADS {
                let key = format!("object-{n}");
                let body = vec![n as u8; 256 << 10];
                match s3
                    .put_object()
                    .bucket("load")
                    .key(&key)
                    .body(body.into())
                    .send()
                    .await
                {
                    Ok(_) => outcome.acknowledged.push((key, 0)),
                    Err(error) => outcome.errors.push(format!("{key}: {error:?}")),
                }
            }
            outcome
        })
    };

    // A third of the way: SIGKILL a node; two thirds: start it again.
    let total = WRITERS * WRITES;
    let wait_for = |part: usize| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while done.load(Ordering::Relaxed) < part && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for(total / 3).await;
    nodes[1].kill();
    let killed_at = done.load(Ordering::Relaxed);
    // While the load runs on: the user approves on another node's pages, and the client polls
    // through the edge (which may still pick the dead node until it is ejected).
    let login = {
        let (client, edge_url, approver) = (client.clone(), edge.url(""), nodes[2].url(""));
        let (device_code, username) = (device_code.clone(), username.clone());
        tokio::spawn(async move {
            let polling = tokio::spawn(poll_token(client.clone(), edge_url, device_code));
            tokio::task::spawn_blocking(move || approve_device(approver, user_code, username))
                .await
                .unwrap();
            polling.await.unwrap()
        })
    };
    wait_for(2 * total / 3).await;
    // Blocks this worker until the node answers /readyz; the load runs on the others.
    nodes[1].spawn();

    let mut acknowledged = Vec::new();
    let mut errors = Vec::new();
    for writer in writers {
        let outcome = writer.await.unwrap();
        acknowledged.extend(outcome.acknowledged);
        errors.extend(outcome.errors);
    }
    let uploads = uploader.await.unwrap();
    let device_token = login.await.unwrap();
    eprintln!(
        "killed after {killed_at} of {total} writes; {} acknowledged, {} failed: {errors:?}; \
         {} of {UPLOADS} uploads acknowledged, failed: {:?}",
        acknowledged.len(),
        errors.len(),
        uploads.acknowledged.len(),
        uploads.errors
    );

    // Errors only for what can have been in flight on the dead node: one request per
    // client at most.
    assert!(
        errors.len() <= WRITERS,
        "{} write errors for {WRITERS} writers: {errors:?}",
        errors.len()
    );
    assert!(uploads.errors.len() <= 1, "{:?}", uploads.errors);
    assert_eq!(acknowledged.len() + errors.len(), total);

    // Nothing acknowledged twice: each key once, each version once.
    let keys: HashSet<&String> = acknowledged.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), acknowledged.len());
    let versions: HashSet<u64> = acknowledged.iter().map(|(_, v)| *v).collect();
    assert_eq!(versions.len(), acknowledged.len());

    // Every acknowledged write is readable with its value, through the edge.
    for (key, version) in &acknowledged {
        let answer = client
            .get(edge.url(&format!("/v1/kv/{key}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{key}");
        let body: serde_json::Value = answer.json().await.unwrap();
        let (writer, i) = key[1..].split_once('-').unwrap();
        assert_eq!(
            body["value"],
            serde_json::json!({ "writer": writer.parse::<usize>().unwrap(), "i": i.parse::<usize>().unwrap() })
        );
        let stored: u64 = body["version"].as_str().unwrap().parse().unwrap();
        assert!(
            stored >= *version,
            "{key}: version {stored} < acknowledged {version}"
        );
    }
    for (key, _) in &uploads.acknowledged {
        let object = s3
            .get_object()
            .bucket("load")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(object.content_length(), Some(256 << 10), "{key}");
    }

    // The stream saw every acknowledged write, and no cursor is missing or repeated (the
    // nodes poll the log every 20 ms: three seconds is ample to catch up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, resumes) = follower.await.unwrap();
    let cursors: Vec<u64> = seen.iter().map(|(c, _)| *c).collect();
    for pair in cursors.windows(2) {
        assert!(
            pair[1] > pair[0],
            "cursors ascending, none repeated: {pair:?}"
        );
    }
    // None lost: the stream holds exactly the changes the log pages list for this token
    // (the same filter) from the stream's first cursor to its last.
    let (first, last) = (cursors[0], *cursors.last().unwrap());
    let mut listed = Vec::new();
    let mut after = first - 1;
    while after < last {
        let page: serde_json::Value = client
            .get(edge.url(&format!("/v1/changes?after={after}&limit=500")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for change in page["changes"].as_array().unwrap() {
            let cursor: u64 = change["cursor"].as_str().unwrap().parse().unwrap();
            if cursor <= last {
                listed.push(cursor);
            }
        }
        let next: u64 = page["next"].as_str().unwrap().parse().unwrap();
        assert!(next > after, "the pages advance");
        after = next;
    }
    assert_eq!(cursors, listed, "the stream lost or invented changes");
    let streamed: BTreeMap<&String, u64> = seen.iter().map(|(c, k)| (k, *c)).collect();
    for (key, _) in &acknowledged {
        assert!(streamed.contains_key(key), "{key} never reached the stream");
    }
    // A PUT the dead node had applied when its connection broke is idempotent: the edge
    // may send it again to another node, and the key then changes twice (same value).
    let replayed = seen.len() - streamed.len();
    eprintln!(
        "the stream saw {} changes ({replayed} keys changed twice), cursors {:?}..={:?}, \
         resumed {resumes} times",
        seen.len(),
        cursors.first(),
        cursors.last()
    );
    assert!(edge.log().contains("gateway node ejected"));

    // The device login completed across the failure: its token reads the tenant's data through
    // the edge, and the device code is spent.
    let answer = client
        .get(edge.url("/v1/kv/probe"))
        .bearer_auth(&device_token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the device token is refused");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["value"], "probe");
    let again = client
        .post(edge.url("/oauth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code),
            ("client_id", "p8fs-cli"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400, "a device code redeemed twice");
}

mod edge_failure {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        scenario("postgres").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn tidb() {
        scenario("tidb").await;
    }
}
