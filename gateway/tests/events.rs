//! The change log leaving the process: the NATS JetStream publisher against a real
//! `nats-server` (checked by `interop/nats_consumer.py`, written with the nats-py client), and
//! change streams across two `p8fs serve` processes sharing one PostgreSQL or TiDB database.
//!
//! Every test runs the real `p8fs` binary. They fail, never skip, when a service is missing:
//! `scripts/test-all.sh` starts NATS and the databases and sets `P8FS_TEST_NATS_URL`,
//! `P8FS_TEST_NATS_SERVICE` (`scripts/services/nats.sh`: restart, pause, resume),
//! `P8FS_TEST_POSTGRES_URL`, `P8FS_TEST_POSTGRES_CREATEDB` and `P8FS_TEST_TIDB_URL`.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
/// The issuer every node of a two-node deployment shares, so a token of one is valid on both.
const ISSUER: &str = "http://p8fs-cluster.test";

fn env(variable: &str) -> String {
    std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run the tests with scripts/test-all.sh"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A name no other run shares (the services are shared and keep their data), from the random
/// name of a temporary directory: `[a-z0-9]`.
fn unique(dir: &Path) -> String {
    dir.file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// The storage of a node: `P8FS_STORAGE_*` variables (none for RocksDB in the data directory).
#[derive(Clone)]
enum Storage {
    RocksDb,
    Sql { provider: &'static str, url: String },
}

impl Storage {
    fn env(&self) -> Vec<(String, String)> {
        match self {
            Storage::RocksDb => Vec::new(),
            // Every node on the shared database seals with the same master key, as the nodes
            // of one deployment must.
            Storage::Sql { provider, url } => vec![
                ("P8FS_STORAGE_PROVIDER".into(), (*provider).to_owned()),
                ("P8FS_STORAGE_URL".into(), url.clone()),
                ("P8FS_MASTER_KEY".into(), common::SHARED_MASTER_KEY.into()),
            ],
        }
    }
}

/// One `p8fs serve` on a free loopback port, its log in its directory.
struct Node {
    child: Option<Child>,
    dir: tempfile::TempDir,
    storage: Storage,
    port: u16,
    config: String,
}

impl Node {
    /// Starts a node; with `keys_of`, it signs and verifies with that node's keys (copied, as an
    /// operator distributes them), so tokens are valid on both.
    fn start(storage: Storage, config: &str, keys_of: Option<&Node>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        if let Some(other) = keys_of {
            let from = other.data_dir().join("keys");
            let to = dir.path().join("data/keys");
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            for dir in [dir.path().join("data"), to] {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
        }
        let mut node = Node {
            child: None,
            dir,
            storage,
            port: free_port(),
            config: config.to_owned(),
        };
        node.spawn();
        node
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("p8fs.log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(P8FS);
        command
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("p8fs.toml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.storage.env());
        command
    }

    fn spawn(&mut self) {
        std::fs::write(
            self.dir.path().join("p8fs.toml"),
            format!(
                "[log]\nlevel = \"info\"\n\n[auth]\nissuer = \"{ISSUER}\"\n\n[s3]\nenabled = false\n\n{}\n",
                self.config
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("p8fs.log"))
            .unwrap();
        let mut command = self.command(&["serve"]);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().unwrap());
        let started = Instant::now();
        // The port is bound before the services start: ready is `/readyz` answering 200.
        loop {
            if self.ready() {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("p8fs serve exited with {status}; its log:\n{}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "p8fs serve did not come up; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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

    /// A token of `tenant` with `scope`, signed with this node's keys.
    fn token(&self, tenant: &str, scope: &str) -> String {
        let printed = succeeded(
            self.command(&[
                "token", "issue", "--tenant", tenant, "--sub", "tester", "--scope", scope,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap(),
            "p8fs token issue",
        );
        printed.trim().to_owned()
    }

    /// Kills the gateway with SIGKILL: no shutdown code runs.
    fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Writes the kv records `k<from>..=k<to>` of the token's tenant through `node`, one request
/// each, so that the tenant's change with cursor `i` is the put of `k<i>`.
async fn write_keys(client: &reqwest::Client, node: &Node, token: &str, from: u64, to: u64) {
    for i in from..=to {
        let response = client
            .put(node.url(&format!("/v1/kv/k{i}")))
            .bearer_auth(token)
            .json(&serde_json::json!({ "i": i }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "PUT k{i}: {}",
            response.status()
        );
    }
}

mod nats {
    use super::*;

    /// The stream and subject prefix of one test, on the shared NATS server.
    struct Target {
        url: String,
        stream: String,
        prefix: String,
    }

    impl Target {
        fn new(name: &str) -> Target {
            Target {
                url: env("P8FS_TEST_NATS_URL"),
                stream: format!("T{name}"),
                prefix: format!("p8fstest.{name}"),
            }
        }

        /// The `[events.nats]` section publishing to this target.
        fn config(&self, lease_ttl: &str) -> String {
            self.config_with(lease_ttl, "2s")
        }

        fn config_with(&self, lease_ttl: &str, ack_timeout: &str) -> String {
            format!(
                "[events]\npoll_interval = \"20ms\"\n\n[events.nats]\nurl = \"{}\"\nstream = \"{}\"\n\
                 subject_prefix = \"{}\"\nlease_ttl = \"{lease_ttl}\"\nduplicate_window = \"2m\"\n\
                 ack_timeout = \"{ack_timeout}\"\n",
                self.url, self.stream, self.prefix
            )
        }

        fn consumer(&self, tenant: &str) -> Command {
            let mut command = Command::new("python3");
            command
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/nats_consumer.py"))
                .args(["--url", &self.url, "--stream", &self.stream])
                .args(["--prefix", &self.prefix, "--tenant", tenant]);
            command
        }

        /// Checks that the stream holds exactly the puts `k1..=k<count>` of `tenant`, once each.
        fn expect(&self, tenant: &str, count: u64) {
            let printed = succeeded(
                self.consumer(tenant)
                    .args(["--count", &count.to_string(), "--timeout", "90"])
                    .output()
                    .unwrap(),
                "nats_consumer.py",
            );
            eprintln!("the stream holds {}", printed.trim());
        }

        /// How many messages the stream holds now.
        fn messages(&self, tenant: &str) -> u64 {
            let printed = succeeded(
                self.consumer(tenant).arg("--count-only").output().unwrap(),
                "nats_consumer.py --count-only",
            );
            let value: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
            value["messages"].as_u64().unwrap()
        }
    }

    /// `scripts/services/nats.sh ACTION` on the shared server.
    fn nats_service(action: &str) {
        let script = env("P8FS_TEST_NATS_SERVICE");
        let status = Command::new(&script).arg(action).status().unwrap();
        assert!(status.success(), "{script} {action}: {status}");
    }

    fn restart_nats() {
        nats_service("restart");
    }

    /// Lets a paused server go on when dropped, also when the test fails.
    struct Paused;

    impl Paused {
        fn pause() -> Paused {
            nats_service("pause");
            Paused
        }
    }

    impl Drop for Paused {
        fn drop(&mut self) {
            nats_service("resume");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn publishes_every_change_once_in_order() {
        let name = unique(tempfile::tempdir().unwrap().path());
        let target = Target::new(&name);
        let node = Node::start(Storage::RocksDb, &target.config("10s"), None);
        let tenant = format!("nats-{name}");
        let token = node.token(&tenant, "kv:read kv:write");
        write_keys(&reqwest::Client::new(), &node, &token, 1, 300).await;
        target.expect(&tenant, 300);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_nats_restart_mid_stream_loses_and_duplicates_nothing() {
        let name = unique(tempfile::tempdir().unwrap().path());
        let target = Target::new(&name);
        let node = Node::start(Storage::RocksDb, &target.config("10s"), None);
        let tenant = format!("nats-{name}");
        let token = node.token(&tenant, "kv:read kv:write");
        let client = reqwest::Client::new();
        write_keys(&client, &node, &token, 1, 200).await;
        // The server goes away while writes go on, and comes back with its store.
        let restart = std::thread::spawn(restart_nats);
        write_keys(&client, &node, &token, 201, 800).await;
        restart.join().unwrap();
        write_keys(&client, &node, &token, 801, 1000).await;
        target.expect(&tenant, 1000);
    }

    /// Killed with changes sent and not acknowledged: the server is paused while they are
    /// written, so the publisher is mid-stream by construction; whatever of them the server
    /// stores once it goes on is sent again after the restart and dropped as a duplicate.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_gateway_killed_mid_stream_resumes_from_its_position() {
        let name = unique(tempfile::tempdir().unwrap().path());
        let target = Target::new(&name);
        let tenant = format!("nats-{name}");
        let client = reqwest::Client::new();
        let mut node = Node::start(Storage::RocksDb, &target.config_with("10s", "30s"), None);
        let token = node.token(&tenant, "kv:read kv:write");
        write_keys(&client, &node, &token, 1, 300).await;
        target.expect(&tenant, 300);
        {
            let _paused = Paused::pause();
            write_keys(&client, &node, &token, 301, 600).await;
            // The publisher sends them and waits for acknowledgements that do not come.
            tokio::time::sleep(Duration::from_millis(500)).await;
            node.kill_hard();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let published = target.messages(&tenant);
        eprintln!(
            "in the stream after kill -9 with 300 changes unacknowledged: {published} of 600"
        );
        assert!(published >= 300, "{published}");
        node.spawn();
        write_keys(&client, &node, &token, 601, 700).await;
        target.expect(&tenant, 700);
    }

    /// Killed while catching up on a backlog written before publishing was configured.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_gateway_killed_while_catching_up_resumes() {
        let name = unique(tempfile::tempdir().unwrap().path());
        let target = Target::new(&name);
        let tenant = format!("nats-{name}");
        let client = reqwest::Client::new();
        let mut node = Node::start(Storage::RocksDb, "", None);
        let token = node.token(&tenant, "kv:read kv:write");
        write_keys(&client, &node, &token, 1, 3000).await;
        node.kill_hard();
        node.config = target.config("10s");
        let nats = async_nats::connect(&target.url).await.unwrap();
        let jetstream = async_nats::jetstream::new(nats);
        node.spawn();
        // Killed as soon as the first acknowledged batch is in the stream (how much more got
        // out before the kill depends on the machine's load; the result must not).
        let started = Instant::now();
        loop {
            if let Ok(mut stream) = jetstream.get_stream(&target.stream).await
                && stream.info().await.unwrap().state.messages > 0
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nothing published; the log:\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        node.kill_hard();
        eprintln!(
            "published before kill -9: {} of 3000",
            target.messages(&tenant)
        );
        node.spawn();
        write_keys(&client, &node, &token, 3001, 3100).await;
        target.expect(&tenant, 3100);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn another_node_takes_over_when_the_publisher_dies() {
        let name = unique(tempfile::tempdir().unwrap().path());
        let target = Target::new(&name);
        // A database of its own: the publisher publishes every tenant of its database.
        let created = succeeded(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{} nats_{name}",
                    env("P8FS_TEST_POSTGRES_CREATEDB")
                ))
                .output()
                .unwrap(),
            "createdb",
        );
        let storage = Storage::Sql {
            provider: "postgres",
            url: created.trim().to_owned(),
        };
        let config = target.config("2s");
        let mut first = Node::start(storage.clone(), &config, None);
        let tenant = format!("nats-{name}");
        let token = first.token(&tenant, "kv:read kv:write");
        let client = reqwest::Client::new();
        write_keys(&client, &first, &token, 1, 200).await;
        target.expect(&tenant, 200);
        assert!(
            first.log().contains("NATS publisher holds the lease"),
            "the first node did not publish; its log:\n{}",
            first.log()
        );
        let second = Node::start(storage, &config, Some(&first));
        write_keys(&client, &second, &token, 201, 300).await;
        first.kill_hard();
        write_keys(&client, &second, &token, 301, 500).await;
        target.expect(&tenant, 500);
        assert!(
            second.log().contains("NATS publisher holds the lease"),
            "the second node did not take over; its log:\n{}",
            second.log()
        );
    }
}

mod two_nodes {
    use super::*;

    /// Reads `count` change events from an SSE response, with a deadline.
    async fn read_events(response: &mut reqwest::Response, count: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buffer = String::new();
        let mut events = Vec::new();
        while events.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, response.chunk())
                .await
                .unwrap_or_else(|_| panic!("{} of {count} events within 30s", events.len()))
                .unwrap()
                .unwrap_or_else(|| panic!("the stream ended after {} events", events.len()));
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let is_change = event.lines().any(|l| l == "event: change");
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                    && is_change
                {
                    events.push(serde_json::from_str(data).unwrap());
                }
            }
        }
        events
    }

    /// A write through one node reaches a stream open on the other, in order, within the
    /// hub's poll interval.
    async fn write_on_one_read_on_the_other(provider: &'static str, url: String) {
        let storage = Storage::Sql { provider, url };
        let config = "[events]\npoll_interval = \"20ms\"\n";
        let writer = Node::start(storage.clone(), config, None);
        let reader = Node::start(storage, config, Some(&writer));
        let tenant = format!("nodes-{}", unique(writer.dir.path()));
        let token = writer.token(&tenant, "kv:read kv:write");
        let client = reqwest::Client::new();
        let mut stream = client
            .get(reader.url("/v1/changes/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        write_keys(&client, &writer, &token, 1, 50).await;
        let events = read_events(&mut stream, 50).await;
        for (i, event) in events.iter().enumerate() {
            let cursor = i + 1;
            assert_eq!(event["cursor"], cursor.to_string(), "{event}");
            assert_eq!(event["key"], format!("k{cursor}"), "{event}");
            assert_eq!(event["op"], "put", "{event}");
        }
        // And back: a write on the reader reaches a stream on the writer, resumed with
        // Last-Event-ID.
        let mut resumed = client
            .get(writer.url("/v1/changes/stream"))
            .bearer_auth(&token)
            .header("Last-Event-ID", "50")
            .send()
            .await
            .unwrap();
        write_keys(&client, &reader, &token, 51, 60).await;
        let events = read_events(&mut resumed, 10).await;
        assert_eq!(events[0]["key"], "k51");
        assert_eq!(events[9]["key"], "k60");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_a_write_on_one_node_reaches_a_stream_on_the_other() {
        write_on_one_read_on_the_other("postgres", env("P8FS_TEST_POSTGRES_URL")).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tidb_a_write_on_one_node_reaches_a_stream_on_the_other() {
        write_on_one_read_on_the_other("tidb", env("P8FS_TEST_TIDB_URL")).await;
    }
}
