//! The GraphQL endpoint as its users meet it: the real `p8fs` binary on each backend, tokens
//! minted with `p8fs token issue`, and clients no one here wrote — the Python `gql` package over
//! HTTP (aiohttp and requests) and over WebSockets (graphql-transport-ws and graphql-ws),
//! driven by `interop/graphql_clients.py`, which checks every answer (objects it lists are
//! uploaded with boto3 through the S3 listener, with a key from `p8fs s3 keys create`; changes
//! it follows are written through REST); the JavaScript `graphql-ws` client (graphql-transport-ws,
//! `interop/graphql_ws.mjs`) following the same changes; and the GraphiQL page in headless
//! Chromium (`interop/graphiql.mjs`).
//!
//! These tests fail, never skip, when the clients, the model or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/services/model.sh install` the model
//! the server embeds memories with (`P8FS_TEST_MODEL_DIR`), `scripts/test-all.sh` starts the
//! databases.
//! The SQL backends get a scratch database of their own (`P8FS_TEST_POSTGRES_CREATEDB`,
//! `P8FS_TEST_TIDB_CREATEDB`).

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

mod graphql_clients {
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::{free_port, interop_dir, run, storage_env, succeeded, unique};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    /// Every data scope the script uses.
    const SCOPES: &str = "kv:read kv:write vectors:read vectors:write graph:read graph:write \
                          s3:read s3:write memories:read memories:write";
    /// The scopes of the token that lacks some: no graph, vectors or objects.
    const LIMITED_SCOPES: &str = "kv:read kv:write";
    /// The lifetime of the token whose subscription must end when it expires: long enough to
    /// start Python or Node and open the subscription, short enough to end within the scenario.
    const EXPIRING_TTL: &str = "8s";

    /// A `p8fs serve` of its own with its main and S3 listeners on free loopback ports.
    struct Server {
        child: Child,
        dir: tempfile::TempDir,
        storage: Vec<(String, String)>,
        port: u16,
        s3_port: u16,
    }

    impl Server {
        fn start(backend: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &format!("graphql_{}", unique(dir.path())));
            // The builtin embedder, so that memories and search by meaning answer.
            storage.push((
                "P8FS_EMBEDDINGS_MODEL_DIR".into(),
                crate::common::env("P8FS_TEST_MODEL_DIR"),
            ));
            let config = dir.path().join("p8fs.toml");
            std::fs::write(&config, "[log]\nlevel = \"warn\"\n").unwrap();
            let (port, s3_port) = (free_port(), free_port());
            let mut command = Command::new(P8FS);
            command
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--s3-listen")
                .arg(format!("127.0.0.1:{s3_port}"))
                .envs(storage.iter().cloned())
                .stdin(Stdio::null());
            let child = command.spawn().unwrap();
            let server = Server {
                child,
                dir,
                storage,
                port,
                s3_port,
            };
            let started = Instant::now();
            while !server.ready() || TcpStream::connect(("127.0.0.1", s3_port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "p8fs serve on {backend} did not become ready"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            server
        }

        fn ready(&self) -> bool {
            crate::common::ready(self.port)
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(self.dir.path().join("p8fs.toml"))
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .envs(self.storage.iter().cloned());
            command
        }

        /// `p8fs s3 keys create --tenant T` through the running server: (id, secret).
        fn s3_key(&self, tenant: &str) -> (String, String) {
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

        /// `p8fs token issue` through the running server's admin socket.
        fn token(&self, tenant: &str, scope: &str) -> String {
            self.token_for(tenant, scope, "1h")
        }

        /// A token that expires `ttl` (e.g. `8s`) from now.
        fn token_for(&self, tenant: &str, scope: &str, ttl: &str) -> String {
            let command = self.command(&[
                "token", "issue", "--tenant", tenant, "--sub", "tester", "--scope", scope, "--ttl",
                ttl,
            ]);
            succeeded(
                run(command, Duration::from_secs(30), "p8fs token issue"),
                "p8fs token issue",
            )
            .trim()
            .to_owned()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Runs every scenario of `interop/graphql_clients.py`, then `interop/graphql_ws.mjs`,
    /// against a server on `backend`.
    fn clients_on(backend: &str) {
        let server = Server::start(backend);
        let name = unique(server.dir.path());
        let tenant = format!("gqla-{name}");
        let token = server.token(&tenant, SCOPES);
        let limited = server.token(&tenant, LIMITED_SCOPES);
        let other = server.token(&format!("gqlb-{name}"), SCOPES);
        let (s3_key, s3_secret) = server.s3_key(&tenant);
        for scenario in ["http", "errors", "ws-transport", "ws-apollo"] {
            let mut command = Command::new("python3");
            command
                .current_dir(interop_dir())
                .arg("graphql_clients.py")
                .arg(scenario)
                .arg("--url")
                .arg(server.url())
                // `--name=value`: a secret may begin with `-`.
                .arg(format!("--token={token}"))
                .arg(format!("--other-token={other}"))
                .arg(format!("--limited-token={limited}"));
            if scenario == "http" {
                command
                    .arg(format!("--s3-endpoint=http://127.0.0.1:{}", server.s3_port))
                    .arg(format!("--s3-key={s3_key}"))
                    .arg(format!("--s3-secret={s3_secret}"));
            }
            if scenario.starts_with("ws-") {
                // Made just before: its subscription must open before it expires.
                let expiring = server.token_for(&tenant, "kv:read", EXPIRING_TTL);
                command.arg(format!("--expiring-token={expiring}"));
            }
            let what = format!("graphql_clients.py {scenario} on {backend}");
            let stdout = succeeded(run(command, Duration::from_secs(300), &what), &what);
            assert!(
                stdout.contains(&format!("scenario {scenario}: all checks passed")),
                "{what} did not finish its checks:\n{stdout}"
            );
        }
        graphql_ws_on(&server, &tenant, &token, &limited, backend);
    }

    /// `interop/graphql_ws.mjs`: the same subscriptions through the JavaScript `graphql-ws`
    /// client.
    fn graphql_ws_on(server: &Server, tenant: &str, token: &str, limited: &str, backend: &str) {
        let dir = interop_dir();
        for package in ["graphql-ws", "ws", "graphql"] {
            assert!(
                dir.join("node_modules").join(package).is_dir(),
                "{package} is not installed in {}: run scripts/install-deps.sh",
                dir.display()
            );
        }
        // Made just before: its subscription must open before it expires.
        let expiring = server.token_for(tenant, "kv:read", EXPIRING_TTL);
        let mut command = Command::new("node");
        command
            .current_dir(&dir)
            .arg("graphql_ws.mjs")
            .arg("--url")
            .arg(server.url())
            .arg(format!("--token={token}"))
            .arg(format!("--limited-token={limited}"))
            .arg(format!("--expiring-token={expiring}"));
        let what = format!("node graphql_ws.mjs on {backend}");
        let stdout = succeeded(run(command, Duration::from_secs(180), &what), &what);
        assert_eq!(
            stdout.lines().last(),
            Some("graphql-ws: all checks passed"),
            "{what} did not finish its checks:\n{stdout}"
        );
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

    /// The GraphiQL page in headless Chromium: it renders from the vendored assets alone, the
    /// token typed into its headers editor goes with the query, and the answer shows.
    #[test]
    fn graphiql_in_chromium() {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed in {}: run scripts/install-deps.sh",
            dir.display()
        );
        let server = Server::start("rocksdb");
        let token = server.token("graphiql", "kv:read");
        let mut command = Command::new("node");
        command
            .current_dir(&dir)
            .arg("graphiql.mjs")
            .arg("--url")
            .arg(format!("{}/graphql", server.url()))
            .arg("--token")
            .arg(&token);
        let stdout = succeeded(
            run(command, Duration::from_secs(120), "node graphiql.mjs"),
            "node graphiql.mjs",
        );
        let shown: serde_json::Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the result pane shows {stdout:?}: {e}"));
        assert_eq!(
            shown,
            serde_json::json!({ "data": { "__typename": "Query" } }),
            "the result pane"
        );
    }
}
