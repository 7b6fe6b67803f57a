//! The MCP endpoint as AI assistants meet it: the real `p8fs` binary on each backend (with the
//! builtin embedder, `P8FS_TEST_MODEL_DIR`), tokens minted with `p8fs token issue --audience
//! <issuer>/mcp`, and the official Python MCP SDK (`mcp`), driven by `interop/mcp_clients.py`:
//! every tool over the 2026-07-28 revision (stateless) and over 2025-11-25 (`initialize` and a
//! session), structured results checked; bad arguments answered as tool errors naming the
//! field; the protected resource's challenges (401 with `resource_metadata`, 403
//! `insufficient_scope` with the scope needed, a token for another audience refused); a foreign
//! `Origin` refused; another tenant seeing none of the first one's memories, records or
//! session; the same tool checks through `p8fs mcp --stdio`, launched by the SDK's stdio
//! client as a desktop assistant launches it; and the SDK's OAuth client signing in as an
//! assistant does (discovery from the 401, dynamic registration, PKCE with the `resource`
//! parameter, the user's approval in headless Chromium through `interop/mcp_approve.mjs`).
//!
//! These tests fail, never skip, when the clients, the model or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/test-all.sh` starts the databases.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod mcp_clients {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    /// Every scope a tool needs.
    const SCOPES: &str = "memories:read memories:write s3:read kv:read kv:write vectors:read \
                          graph:read";
    /// The REST token's scopes: what setting up files, vectors and the graph needs.
    const REST_SCOPES: &str = "memories:read memories:write s3:read s3:write kv:read kv:write \
                               vectors:read vectors:write graph:read graph:write";
    /// A token that may read records only.
    const LIMITED_SCOPES: &str = "kv:read";

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

    fn env(variable: &str) -> String {
        std::env::var(variable).unwrap_or_else(|_| {
            panic!("{variable} is not set: run the tests with scripts/test-all.sh")
        })
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

    /// A name no other run shares (the SQL servers are shared and keep their data), from the
    /// random name of a temporary directory: `[a-z0-9]`.
    fn unique(dir: &Path) -> String {
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect()
    }

    /// `CREATEDB graphql_<name>` (a command printing the new database's URL).
    fn createdb(createdb: &str, name: &str) -> String {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("{createdb} mcp_{name}"));
        succeeded(
            run(command, Duration::from_secs(60), "createdb"),
            "createdb",
        )
        .trim()
        .to_owned()
    }

    /// The storage settings of a backend, as environment variables for `p8fs`: a scratch
    /// database of its own on the SQL servers.
    fn storage_env(backend: &str, name: &str) -> Vec<(String, String)> {
        match backend {
            "rocksdb" => Vec::new(),
            "postgres" => {
                env("P8FS_TEST_POSTGRES_URL");
                vec![
                    ("P8FS_STORAGE_PROVIDER".into(), "postgres".into()),
                    (
                        "P8FS_STORAGE_URL".into(),
                        createdb(&env("P8FS_TEST_POSTGRES_CREATEDB"), name),
                    ),
                ]
            }
            "tidb" => {
                env("P8FS_TEST_TIDB_URL");
                vec![
                    ("P8FS_STORAGE_PROVIDER".into(), "tidb".into()),
                    (
                        "P8FS_STORAGE_URL".into(),
                        createdb(&env("P8FS_TEST_TIDB_CREATEDB"), name),
                    ),
                ]
            }
            other => panic!("unknown backend {other}"),
        }
    }

    /// A `p8fs serve` of its own with the builtin embedder on a free loopback port.
    struct Server {
        child: Child,
        dir: tempfile::TempDir,
        storage: Vec<(String, String)>,
        port: u16,
    }

    impl Server {
        fn start(backend: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &unique(dir.path()));
            storage.push((
                "P8FS_EMBEDDINGS_MODEL_DIR".into(),
                env("P8FS_TEST_MODEL_DIR"),
            ));
            let config = dir.path().join("p8fs.toml");
            std::fs::write(&config, "[log]\nlevel = \"warn\"\n[s3]\nenabled = false\n").unwrap();
            let port = free_port();
            let mut command = Command::new(P8FS);
            command
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .envs(storage.iter().cloned())
                .stdin(Stdio::null());
            let child = command.spawn().unwrap();
            let server = Server {
                child,
                dir,
                storage,
                port,
            };
            let started = Instant::now();
            while !server.ready() {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "p8fs serve on {backend} did not become ready"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            server
        }

        fn ready(&self) -> bool {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            let mut answer = String::new();
            stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        /// `p8fs token issue` through the running server's admin socket, for `audience` (the
        /// configured one when `None`).
        fn token(&self, tenant: &str, scope: &str, audience: Option<&str>) -> String {
            let mut args = vec![
                "token",
                "issue",
                "--tenant",
                tenant,
                "--sub",
                "assistant",
                "--scope",
                scope,
            ];
            if let Some(audience) = audience {
                args.extend(["--audience", audience]);
            }
            let mut command = Command::new(P8FS);
            command
                .args(&args)
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .envs(self.storage.iter().cloned());
            succeeded(
                run(command, Duration::from_secs(30), "p8fs token issue"),
                "p8fs token issue",
            )
            .trim()
            .to_owned()
        }
    }

    impl Server {
        /// `p8fs user add --tenant T NAME --password-stdin` through the admin socket.
        fn add_user(&self, tenant: &str, username: &str, password: &str) {
            let mut child = Command::new(P8FS)
                .args([
                    "user",
                    "add",
                    "--tenant",
                    tenant,
                    username,
                    "--password-stdin",
                ])
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .envs(self.storage.iter().cloned())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{password}\n").as_bytes())
                .unwrap();
            let output = child.wait_with_output().unwrap();
            succeeded(output, "p8fs user add");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Runs every scenario of `interop/mcp_clients.py` against a server on `backend`.
    fn clients_on(backend: &str) {
        let server = Server::start(backend);
        let name = unique(server.dir.path());
        let resource = format!("{}/mcp", server.url());
        let tenant = format!("mcpa-{name}");
        let token = server.token(&tenant, SCOPES, Some(&resource));
        let limited = server.token(&tenant, LIMITED_SCOPES, Some(&resource));
        let other = server.token(&format!("mcpb-{name}"), SCOPES, Some(&resource));
        let rest = server.token(&tenant, REST_SCOPES, None);
        let (username, password) = ("assistant-user", "An-approval-pass-42");
        server.add_user(&tenant, username, password);
        for scenario in ["modern", "legacy", "refusals", "stdio", "oauth"] {
            let mut command = Command::new("python3");
            command
                .current_dir(interop_dir())
                .arg("mcp_clients.py")
                .arg(scenario)
                .arg("--url")
                .arg(server.url())
                // `--name=value`: a token never begins with `-`, but stay uniform.
                .arg(format!("--token={token}"))
                .arg(format!("--limited-token={limited}"))
                .arg(format!("--other-token={other}"))
                .arg(format!("--rest-token={rest}"))
                .arg(format!("--p8fs={P8FS}"))
                .arg(format!("--username={username}"))
                .arg(format!("--password={password}"));
            let what = format!("mcp_clients.py {scenario} on {backend}");
            let stdout = succeeded(run(command, Duration::from_secs(300), &what), &what);
            assert!(
                stdout.contains(&format!("scenario {scenario}: all checks passed")),
                "{what} did not finish its checks:\n{stdout}"
            );
        }
    }

    #[test]
    fn rocksdb() {
        clients_on("rocksdb");
    }

    #[test]
    fn postgres() {
        clients_on("postgres");
    }

    #[test]
    fn tidb() {
        clients_on("tidb");
    }
}
