//! The S3 listener as its users meet it: the real `p8fs` binary on each backend, access keys
//! made with `p8fs s3 keys create`, and clients no one here wrote — the AWS CLI, boto3 and rclone
//! — driven by `interop/s3_clients.py`, which checks every answer. Then the crash test: `kill -9`
//! during a large PUT and during a multipart upload, a restart, and the reaper.
//!
//! These tests fail, never skip, when the clients or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/test-all.sh` starts the databases.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

mod s3_clients {
    use std::io::Read;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    fn interop_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
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

    /// Runs `command` to completion within `limit`, killing it past that.
    fn run(mut command: Command, limit: Duration, what: &str) -> Output {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
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

    /// The storage settings of a backend, as environment variables for `p8fs`.
    fn storage_env(backend: &str) -> Vec<(String, String)> {
        let url = |variable: &str| {
            std::env::var(variable).unwrap_or_else(|_| {
                panic!("{variable} is not set: run the tests with scripts/test-all.sh")
            })
        };
        match backend {
            "rocksdb" => Vec::new(),
            // The shared databases: every server seals with the same master key.
            "postgres" => vec![
                ("P8FS_STORAGE_PROVIDER".into(), "postgres".into()),
                ("P8FS_STORAGE_URL".into(), url("P8FS_TEST_POSTGRES_URL")),
                (
                    "P8FS_MASTER_KEY".into(),
                    super::common::SHARED_MASTER_KEY.into(),
                ),
            ],
            "tidb" => vec![
                ("P8FS_STORAGE_PROVIDER".into(), "tidb".into()),
                ("P8FS_STORAGE_URL".into(), url("P8FS_TEST_TIDB_URL")),
                (
                    "P8FS_MASTER_KEY".into(),
                    super::common::SHARED_MASTER_KEY.into(),
                ),
            ],
            other => panic!("unknown backend {other}"),
        }
    }

    /// A unique tenant per test run (the SQL servers are shared and keep their data), from the
    /// random name of a temporary directory.
    fn tenant(name: &str, dir: &Path) -> String {
        let unique: String = dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        format!("{name}-{unique}")
    }

    /// The object reaper of a test server on a shared SQL server must not reap what the
    /// conformance suite's cases (on a clock years in the past) leave pending there.
    const NO_REAPING: &str =
        "[s3]\nabandoned_upload_age = \"100years\"\nfreed_grace = \"100years\"\n";

    /// A `p8fs serve` of its own with the S3 listener on a free loopback port.
    struct Server {
        child: Option<Child>,
        dir: tempfile::TempDir,
        backend: String,
        http_port: u16,
        s3_port: u16,
        extra: String,
    }

    impl Server {
        fn start(backend: &str, extra: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut server = Server {
                child: None,
                dir,
                backend: backend.to_owned(),
                http_port: free_port(),
                s3_port: free_port(),
                extra: extra.to_owned(),
            };
            server.spawn();
            server
        }

        fn config(&self) -> PathBuf {
            self.dir.path().join("p8fs.toml")
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(self.config())
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .envs(storage_env(&self.backend));
            command
        }

        fn spawn(&mut self) {
            std::fs::write(
                self.config(),
                format!("[log]\nlevel = \"warn\"\n\n{}\n", self.extra),
            )
            .unwrap();
            let mut command = self.command(&["serve"]);
            command
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.http_port))
                .env("P8FS_S3_LISTEN", format!("127.0.0.1:{}", self.s3_port))
                .stdin(Stdio::null());
            self.child = Some(command.spawn().unwrap());
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the S3 listener of p8fs serve did not come up"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        fn endpoint(&self) -> String {
            format!("http://127.0.0.1:{}", self.s3_port)
        }

        /// `p8fs s3 keys create --tenant T` through the running server: (id, secret).
        fn create_key(&self, tenant: &str) -> (String, String) {
            let printed = succeeded(
                run(
                    self.command(&["s3", "keys", "create", "--tenant", tenant]),
                    Duration::from_secs(30),
                    "p8fs s3 keys create",
                ),
                "p8fs s3 keys create",
            );
            let value = |name: &str| {
                printed
                    .lines()
                    .find_map(|line| line.strip_prefix(&format!("{name}=")))
                    .unwrap_or_else(|| panic!("no {name} line in {printed:?}"))
                    .trim()
                    .to_owned()
            };
            (value("AWS_ACCESS_KEY_ID"), value("AWS_SECRET_ACCESS_KEY"))
        }

        /// The bytes of object data `tenant` stores (`p8fs s3 usage`, through the admin socket).
        fn stored_bytes(&self, tenant: &str) -> u64 {
            let printed = succeeded(
                run(
                    self.command(&["s3", "usage", "--tenant", tenant]),
                    Duration::from_secs(30),
                    "p8fs s3 usage",
                ),
                "p8fs s3 usage",
            );
            let usage: serde_json::Value = serde_json::from_str(printed.trim())
                .unwrap_or_else(|e| panic!("p8fs s3 usage printed {printed:?}: {e}"));
            assert_eq!(usage["tenant"], tenant, "{usage}");
            usage["stored_bytes"]
                .as_u64()
                .unwrap_or_else(|| panic!("no stored_bytes in {usage}"))
        }

        /// Kills the gateway with SIGKILL: no shutdown code runs.
        fn kill_hard(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.kill_hard();
        }
    }

    /// `python3 interop/s3_clients.py SCENARIO ...` against `server` with `key`.
    fn scenario(
        server: &Server,
        scenario: &str,
        key: &(String, String),
        other: Option<&(String, String)>,
    ) {
        let work = tempfile::tempdir().unwrap();
        scenario_in(server, scenario, key, other, work.path(), &[]);
    }

    fn scenario_in(
        server: &Server,
        scenario: &str,
        key: &(String, String),
        other: Option<&(String, String)>,
        work: &Path,
        extra: &[String],
    ) {
        let mut command = Command::new("python3");
        command
            .current_dir(interop_dir())
            .arg("s3_clients.py")
            .arg(scenario)
            .arg("--endpoint")
            .arg(server.endpoint())
            // `--name=value`: a secret may begin with '-', which argparse takes for an option.
            .arg(format!("--key={}", key.0))
            .arg(format!("--secret={}", key.1))
            .arg("--work")
            .arg(work)
            .args(extra);
        if let Some((id, secret)) = other {
            command
                .arg(format!("--other-key={id}"))
                .arg(format!("--other-secret={secret}"));
        }
        let what = format!("s3_clients.py {scenario} on {}", server.backend);
        let stdout = succeeded(run(command, Duration::from_secs(600), &what), &what);
        assert!(
            stdout.contains(&format!("scenario {scenario}: all checks passed")),
            "{what} did not finish its checks:\n{stdout}"
        );
    }

    fn clients_on(backend: &str, scenarios: &[&str]) {
        let server = Server::start(backend, NO_REAPING);
        let key = server.create_key(&tenant("s3a", server.dir.path()));
        let other = server.create_key(&tenant("s3b", server.dir.path()));
        for name in scenarios {
            scenario(&server, name, &key, Some(&other));
        }
    }

    #[test]
    fn rocksdb_awscli_boto3_rclone() {
        clients_on(
            "rocksdb",
            &["awscli", "boto3", "bad-input", "tenants", "rclone"],
        );
    }

    #[test]
    fn postgres_awscli_boto3_rclone() {
        clients_on(
            "postgres",
            &["awscli", "boto3", "bad-input", "tenants", "rclone"],
        );
    }

    #[test]
    fn tidb_awscli_boto3_rclone() {
        clients_on(
            "tidb",
            &["awscli", "boto3", "bad-input", "tenants", "rclone"],
        );
    }

    /// `kill -9` during a large PUT and a multipart upload; after a restart only the completed
    /// objects are listed, byte for byte, the reaper removes the abandoned upload, and the
    /// tenant's stored bytes return to within 1% of what the completed objects took.
    #[test]
    fn rocksdb_crash_during_uploads() {
        let mut server = Server::start("rocksdb", "");
        let key = server.create_key("crash");
        let work = tempfile::tempdir().unwrap();
        scenario_in(&server, "crash-prepare", &key, None, work.path(), &[]);
        let before = server.stored_bytes("crash");
        assert!(
            before > 15 * 1024 * 1024,
            "the completed objects take {before} bytes"
        );
        let pid = server.child.as_ref().unwrap().id().to_string();
        scenario_in(
            &server,
            "crash-upload",
            &key,
            None,
            work.path(),
            &["--pid".to_owned(), pid],
        );
        server.kill_hard();
        server.extra = "[s3]\nrequest_timeout = \"30s\"\nabandoned_upload_age = \"1m\"\nfreed_grace = \"1m\"\n\n\
                        [maintenance]\npurge_interval = \"1s\"\n"
            .to_owned();
        server.spawn();
        let during = server.stored_bytes("crash");
        assert!(
            during > before + 5 * 1024 * 1024,
            "the cut-off uploads left chunks behind: {during} bytes, {before} before"
        );
        scenario_in(&server, "crash-verify", &key, None, work.path(), &[]);
        // The killed PUT's pending blob goes once it is a minute old (the reaper runs every
        // second); the multipart upload's part went with the upload.
        let deadline = Instant::now() + Duration::from_secs(150);
        loop {
            let after = server.stored_bytes("crash");
            if after.abs_diff(before) * 100 <= before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stored bytes stayed at {after}, {before} before the crash"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
