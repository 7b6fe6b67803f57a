//! SSE-C (customer-provided keys) as its users meet it: the real `p8fs` binary, an access key
//! made with `p8fs s3 keys create`, and the AWS CLI and boto3 driven by `interop/s3_ssec.py`,
//! which checks every answer (round trips, ranged gets, multipart, copies, and the refusals of
//! reads without the key or with another one). Then, with the server stopped, the stored bytes
//! of every SSE-C object are read through the backend the server uses: none holds its
//! plaintext, and their records hold no key. Before that, the front-ends that cannot carry the
//! key refuse those objects (REST `GET`/`HEAD` 403, gRPC `Download` PERMISSION_DENIED, MCP's
//! `read_file` a tool error and its file resource an error) and the builtin embedder's index
//! reports them `client_held_key` instead of indexing them.
//!
//! These tests fail, never skip, when the clients or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/test-all.sh` starts the databases.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

mod s3_ssec {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use p8fs_core::object::chunk_reads;
    use p8fs_core::{BucketName, Clock, ObjectKey, SystemClock, TenantId};
    use p8fs_gateway::config::{Config, Overrides};

    use crate::common::{free_port, interop_dir, run, storage_env, succeeded, unique};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    /// Every scope the front-end checks use.
    const SCOPES: &str = "s3:read memories:read";

    /// A `p8fs serve` of its own with the builtin embedder (from `P8FS_TEST_MODEL_DIR`), its main
    /// and S3 listeners on free loopback ports.
    struct Server {
        child: Option<Child>,
        dir: tempfile::TempDir,
        storage: Vec<(String, String)>,
        port: u16,
        s3_port: u16,
    }

    impl Server {
        fn start(backend: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &format!("ssec_{}", unique(dir.path())));
            storage.push((
                "P8FS_EMBEDDINGS_MODEL_DIR".into(),
                crate::common::env("P8FS_TEST_MODEL_DIR"),
            ));
            std::fs::write(
                dir.path().join("p8fs.toml"),
                "[log]\nlevel = \"warn\"\n\n[s3]\nabandoned_upload_age = \"100years\"\n\
                 freed_grace = \"100years\"\n",
            )
            .unwrap();
            let mut server = Server {
                child: None,
                dir,
                storage,
                port: free_port(),
                s3_port: free_port(),
            };
            let mut command = server.command(&["serve"]);
            command
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", server.port))
                .env("P8FS_S3_LISTEN", format!("127.0.0.1:{}", server.s3_port))
                .stdin(Stdio::null());
            server.child = Some(command.spawn().unwrap());
            let started = Instant::now();
            while !crate::common::ready(server.port)
                || std::net::TcpStream::connect(("127.0.0.1", server.s3_port)).is_err()
            {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "p8fs serve did not become ready"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            server
        }

        fn data_dir(&self) -> PathBuf {
            self.dir.path().join("data")
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(self.dir.path().join("p8fs.toml"))
                .arg("--data-dir")
                .arg(self.data_dir())
                .envs(self.storage.clone());
            command
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

        /// `p8fs token issue` through the running server's admin socket, for `audience` (the
        /// REST API's when `None`).
        fn token(&self, tenant: &str, audience: Option<&str>) -> String {
            let mut args = vec![
                "token", "issue", "--tenant", tenant, "--sub", "tester", "--scope", SCOPES,
                "--ttl", "1h",
            ];
            if let Some(audience) = audience {
                args.extend(["--audience", audience]);
            }
            let command = self.command(&args);
            succeeded(
                run(command, Duration::from_secs(30), "p8fs token issue"),
                "p8fs token issue",
            )
            .trim()
            .to_owned()
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// The configuration the server ran with, to open its backend after it stopped.
        fn config(&self) -> Config {
            let overrides = Overrides {
                data_dir: Some(self.data_dir()),
                ..Overrides::default()
            };
            Config::load(
                Some(&self.dir.path().join("p8fs.toml")),
                self.storage.clone(),
                &overrides,
            )
            .unwrap()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn scenario(server: &Server, name: &str, key: &(String, String), work: &Path) {
        scenario_with(server, name, key, work, &[]);
    }

    fn scenario_with(
        server: &Server,
        name: &str,
        key: &(String, String),
        work: &Path,
        extra: &[String],
    ) {
        let mut command = Command::new("python3");
        command
            .current_dir(interop_dir())
            .arg("s3_ssec.py")
            .arg(name)
            .arg("--endpoint")
            .arg(format!("http://127.0.0.1:{}", server.s3_port))
            // `--name=value`: a secret may begin with '-', which argparse takes for an option.
            .arg(format!("--key={}", key.0))
            .arg(format!("--secret={}", key.1))
            .arg("--work")
            .arg(work)
            .args(extra);
        let what = format!("s3_ssec.py {name}");
        let stdout = succeeded(run(command, Duration::from_secs(600), &what), &what);
        assert!(
            stdout.contains(&format!("scenario {name}: all checks passed")),
            "{what} did not finish its checks:\n{stdout}"
        );
    }

    /// Whether any 32-byte window of `plaintext` (at every 4 KiB, and its first and last
    /// window) occurs in `stored`.
    fn leaks(stored: &[u8], plaintext: &[u8]) -> bool {
        if plaintext.len() < 32 {
            return stored
                .windows(plaintext.len().max(1))
                .any(|w| w == plaintext);
        }
        let mut starts: Vec<usize> = (0..plaintext.len() - 32).step_by(4096).collect();
        starts.push(plaintext.len() - 32);
        starts
            .iter()
            .any(|&at| stored.windows(32).any(|w| w == &plaintext[at..at + 32]))
    }

    fn clients_on(backend: &str) {
        let mut server = Server::start(backend);
        let tenant = format!("ssec-{}", unique(server.dir.path()));
        let key = server.create_key(&tenant);
        let work = tempfile::tempdir().unwrap();
        scenario(&server, "awscli", &key, work.path());
        scenario(&server, "boto3", &key, work.path());
        let token = server.token(&tenant, None);
        let mcp = format!("http://127.0.0.1:{}/mcp", server.port);
        let mcp_token = server.token(&tenant, Some(&mcp));
        let proto_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocols/grpc/proto");
        scenario_with(
            &server,
            "fronts",
            &key,
            work.path(),
            &[
                format!("--url=http://127.0.0.1:{}", server.port),
                // `--name=value`: a token is never taken for an option.
                format!("--token={token}"),
                format!("--mcp-token={mcp_token}"),
                format!("--proto-dir={}", proto_dir.display()),
            ],
        );
        server.stop();

        // The stored bytes, through the backend the server used.
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(work.path().join("stored.json")).unwrap())
                .unwrap();
        let entries = manifest.as_array().unwrap();
        assert!(entries.len() >= 8, "{manifest}");
        let config = server.config();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let backend = p8fs_gateway::backend::open(&config, clock).await.unwrap();
            let tenant = TenantId::new(&tenant).unwrap();
            for entry in entries {
                let bucket = BucketName::new(entry["bucket"].as_str().unwrap()).unwrap();
                let key = ObjectKey::new(entry["key"].as_str().unwrap()).unwrap();
                let plaintext = std::fs::read(entry["plaintext"].as_str().unwrap()).unwrap();
                let meta = backend
                    .object(&tenant, &bucket, &key)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("{entry} is not stored"));
                assert!(
                    meta.client_held_key(),
                    "{entry} is not marked SSE-C: {:?}",
                    meta.attributes
                );
                assert!(
                    meta.size > plaintext.len() as u64,
                    "{entry}: {} bytes stored for {} of plaintext",
                    meta.size,
                    plaintext.len()
                );
                let mut stored = Vec::with_capacity(meta.size as usize);
                for read in chunk_reads(&meta.segments, 0, meta.size) {
                    let chunk = backend
                        .read_chunk(&tenant, read.data, read.index)
                        .await
                        .unwrap();
                    stored.extend_from_slice(&chunk[read.start..read.end]);
                }
                assert_eq!(stored.len() as u64, meta.size, "{entry}");
                assert!(
                    !leaks(&stored, &plaintext),
                    "the stored bytes of {entry} contain its plaintext"
                );
                let record = format!("{:?}", meta.attributes);
                assert!(
                    !record.contains("launch code"),
                    "{entry}'s record holds plaintext: {record}"
                );
                // Only the salted digest is kept: the key's MD5 (which clients send and
                // which would identify the key) is not.
                assert!(
                    meta.attributes
                        .headers
                        .keys()
                        .all(|name| !name.contains("md5")),
                    "{record}"
                );
            }
        });
    }

    #[test]
    fn rocksdb_awscli_boto3_sse_c() {
        clients_on("rocksdb");
    }

    #[test]
    fn postgres_awscli_boto3_sse_c() {
        clients_on("postgres");
    }
}
