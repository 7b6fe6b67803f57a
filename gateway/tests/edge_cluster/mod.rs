//! A cluster for the edge's tests (gateway/tests/edge.rs, gateway/tests/edge_failure.rs):
//! `p8fs serve` nodes on one scratch PostgreSQL (or TiDB) database sharing their keys and issuer,
//! and a `p8fs edge` in front of them, all real processes with their logs in their directories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, free_port, run, storage_env, succeeded, unique};

pub(crate) const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
/// The issuer every node shares, so a token of one is valid on all.
pub(crate) const ISSUER: &str = "http://p8fs-cluster.test";

/// One `p8fs serve` on free loopback ports (main and S3), its log in its directory.
pub(crate) struct Node {
    pub(crate) child: Option<Child>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) storage: Vec<(String, String)>,
    pub(crate) port: u16,
    pub(crate) s3_port: u16,
}

impl Node {
    /// Starts a node on `storage`; with `keys_of`, it signs, verifies and seals with that
    /// node's keys.
    pub(crate) fn start(storage: &[(String, String)], keys_of: Option<&Node>) -> Node {
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
        std::fs::write(
            dir.path().join("p8fs.toml"),
            format!(
                "[log]\nlevel = \"info\"\n\n[auth]\nissuer = \"{ISSUER}\"\n\n[events]\npoll_interval = \"20ms\"\n\n[oauth]\ndevice_poll_interval = \"1s\"\n"
            ),
        )
        .unwrap();
        let mut node = Node {
            child: None,
            dir,
            storage: storage.to_vec(),
            port: free_port(),
            s3_port: free_port(),
        };
        node.spawn();
        node
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("p8fs.log")).unwrap_or_default()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(P8FS);
        command
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("p8fs.toml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.storage.iter().cloned());
        command
    }

    pub(crate) fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("p8fs.log"))
            .unwrap();
        let mut command = self.command(&["serve"]);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--s3-listen")
            .arg(format!("127.0.0.1:{}", self.s3_port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(command.spawn().unwrap());
        let started = Instant::now();
        while !common::ready(self.port) {
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

    /// SIGKILL: no shutdown, connections die as they are.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A token of `tenant` with `scope` (for `audience` when given), signed with this node's keys.
    pub(crate) fn token_for(
        &self,
        tenant: &str,
        scope: &str,
        ttl: &str,
        audience: Option<&str>,
    ) -> String {
        let mut args = vec![
            "token", "issue", "--tenant", tenant, "--sub", "tester", "--scope", scope, "--ttl", ttl,
        ];
        if let Some(audience) = audience {
            args.extend(["--audience", audience]);
        }
        let what = format!("p8fs token issue for {tenant}");
        succeeded(
            run(self.command(&args), Duration::from_secs(60), &what),
            &what,
        )
        .trim()
        .to_owned()
    }

    /// The node's own address (not through the edge) with `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Creates a user of `tenant` who signs in with `password`.
    pub(crate) fn add_user(&self, tenant: &str, username: &str, password: &str) {
        use std::io::Write;
        let mut child = self
            .command(&[
                "user",
                "add",
                "--tenant",
                tenant,
                username,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        succeeded(child.wait_with_output().unwrap(), "p8fs user add");
    }

    pub(crate) fn token(&self, tenant: &str, scope: &str) -> String {
        self.token_for(tenant, scope, "1h", None)
    }

    /// An S3 access key of `tenant`: (id, secret).
    pub(crate) fn s3_key(&self, tenant: &str) -> (String, String) {
        let what = format!("p8fs s3 keys create for {tenant}");
        let printed = succeeded(
            run(
                self.command(&["s3", "keys", "create", "--tenant", tenant]),
                Duration::from_secs(60),
                &what,
            ),
            &what,
        );
        let value = |name: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .to_owned()
        };
        (value("AWS_ACCESS_KEY_ID="), value("AWS_SECRET_ACCESS_KEY="))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `p8fs edge` in front of `nodes`, with `config` added to its `[edge]` section.
pub(crate) struct Edge {
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) s3_port: u16,
}

impl Edge {
    pub(crate) fn start(nodes: &[&Node], config: &str) -> Edge {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let s3_port = free_port();
        std::fs::write(
            dir.path().join("p8fs.toml"),
            format!("[log]\nlevel = \"info\"\n\n[edge]\nhealth_interval = \"200ms\"\n{config}\n"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("edge.log")).unwrap();
        let mut command = Command::new(P8FS);
        command
            .arg("edge")
            .arg("--config")
            .arg(dir.path().join("p8fs.toml"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--s3-listen")
            .arg(format!("127.0.0.1:{s3_port}"));
        for node in nodes {
            command
                .arg("--upstream")
                .arg(format!("127.0.0.1:{}", node.port))
                .arg("--s3-upstream")
                .arg(format!("127.0.0.1:{}", node.s3_port));
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut edge = Edge {
            child: command.spawn().unwrap(),
            dir,
            port,
            s3_port,
        };
        let started = Instant::now();
        // Ready: /readyz answers 200 through the edge, and the keys are fetched (a request
        // with a token of an unknown key would otherwise wait for the first fetch).
        while !common::ready(edge.port) {
            if let Some(status) = edge.child.try_wait().unwrap() {
                panic!("p8fs edge exited with {status}; its log:\n{}", edge.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "p8fs edge did not come up; its log:\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        edge
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }

    /// The edge's peak resident memory (`VmHWM`), in bytes.
    pub(crate) fn peak_memory(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The edge's resident memory now, in bytes.
    pub(crate) fn resident_memory(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// Starts the edge's peak resident memory over from what it holds now (Linux's
    /// `clear_refs` 5), so a later [`Self::peak_memory`] measures one transfer.
    pub(crate) fn reset_peak_memory(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").unwrap();
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch PostgreSQL database for one test.
pub(crate) fn postgres(dir: &Path) -> Vec<(String, String)> {
    storage_env("postgres", &format!("edge{}", unique(dir)))
}

/// `count` nodes on one fresh PostgreSQL database, sharing the first one's keys.
pub(crate) fn cluster(count: usize) -> (tempfile::TempDir, Vec<Node>) {
    cluster_on("postgres", count)
}

/// `count` nodes on one fresh database of `backend` ("postgres" or "tidb"), sharing the first
/// one's keys.
pub(crate) fn cluster_on(backend: &str, count: usize) -> (tempfile::TempDir, Vec<Node>) {
    let scratch = tempfile::tempdir().unwrap();
    let storage = storage_env(backend, &format!("edge{}", unique(scratch.path())));
    let first = Node::start(&storage, None);
    let mut nodes = vec![];
    for _ in 1..count {
        nodes.push(Node::start(&storage, Some(&first)));
    }
    nodes.insert(0, first);
    (scratch, nodes)
}

pub(crate) async fn put(
    client: &reqwest::Client,
    edge: &Edge,
    token: &str,
    key: &str,
    value: serde_json::Value,
) {
    let response = client
        .put(edge.url(&format!("/v1/kv/{key}")))
        .bearer_auth(token)
        .json(&value)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "PUT {key}: {}",
        response.status()
    );
}

pub(crate) async fn get(
    client: &reqwest::Client,
    edge: &Edge,
    token: &str,
    key: &str,
) -> serde_json::Value {
    let response = client
        .get(edge.url(&format!("/v1/kv/{key}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {key}");
    response.json::<serde_json::Value>().await.unwrap()["value"].clone()
}

pub(crate) fn s3_client(endpoint: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(id, secret, None, None, "p8fs-edge-test"))
        .http_client(http)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

pub(crate) fn md5_hex(data: &[u8]) -> String {
    hex(&<md5::Md5 as md5::Digest>::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
