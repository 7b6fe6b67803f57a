//! The gRPC front-end as its users meet it: the real `p8fs` binary on each backend, tokens minted
//! with `p8fs token issue`, and clients no one here wrote — Python `grpcio` over HTTP/2 in
//! cleartext on the main listener, with stubs generated from `protocols/grpc/proto` by
//! `grpcio-tools` at test time, `grpcio-health-checking` and `grpcio-reflection` — driven by
//! `interop/grpc_clients.py`, which calls every method of every service and checks every answer
//! (a 100 MiB object streamed up and down, a watch receiving a change written through REST, the
//! status codes and `google.rpc.BadRequest` details of errors, scopes and tenant isolation).
//! The same port keeps answering HTTP/1.1.
//!
//! These tests fail, never skip, when the clients or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/test-all.sh` starts the databases.
//! The SQL backends get a scratch database of their own (`P8FS_TEST_POSTGRES_CREATEDB`,
//! `P8FS_TEST_TIDB_CREATEDB`).

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

mod grpc_clients {
    use std::net::TcpStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::{free_port, interop_dir, run, storage_env, succeeded, unique};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    /// Every data scope the script uses.
    const SCOPES: &str = "kv:read kv:write vectors:read vectors:write graph:read graph:write \
        s3:read s3:write memories:read memories:write";
    /// The scopes of the token that lacks some: no graph, vectors, objects or memories.
    const LIMITED_SCOPES: &str = "kv:read kv:write";
    /// The lifetime of the token whose watch must end when it expires: long enough to start
    /// Python and open the watch, short enough to end within the scenario.
    const EXPIRING_TTL: &str = "8s";

    /// A `p8fs serve` of its own with its main and S3 listeners on free loopback ports (the S3
    /// one only so that no two servers want the same).
    struct Server {
        child: Child,
        dir: tempfile::TempDir,
        storage: Vec<(String, String)>,
        port: u16,
    }

    impl Server {
        fn start(backend: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &format!("grpc_{}", unique(dir.path())));
            // The builtin embedder, so that Memories answers.
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

    fn proto_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocols/grpc/proto")
    }

    /// Runs `interop/grpc_clients.py` (its main scenario, then the expiry of a watch's token)
    /// against a server on `backend`, and checks that HTTP/1.1 is still served beside it.
    fn clients_on(backend: &str) {
        let server = Server::start(backend);
        let name = unique(server.dir.path());
        let tenant = format!("grpca-{name}");
        let token = server.token(&tenant, SCOPES);
        let limited = server.token(&tenant, LIMITED_SCOPES);
        let other = server.token(&format!("grpcb-{name}"), SCOPES);
        for scenario in ["main", "expiry"] {
            let mut command = Command::new("python3");
            command
                .current_dir(interop_dir())
                .arg("grpc_clients.py")
                .arg(scenario)
                .arg("--url")
                .arg(server.url())
                .arg("--proto-dir")
                .arg(proto_dir())
                // `--name=value`: a token is never taken for an option.
                .arg(format!("--token={token}"))
                .arg(format!("--other-token={other}"))
                .arg(format!("--limited-token={limited}"));
            if scenario == "expiry" {
                // Made just before: its watch must open before it expires.
                let expiring = server.token_for(&tenant, "kv:read", EXPIRING_TTL);
                command.arg(format!("--expiring-token={expiring}"));
            }
            let what = format!("grpc_clients.py {scenario} on {backend}");
            let stdout = succeeded(run(command, Duration::from_secs(600), &what), &what);
            eprintln!("{stdout}");
            assert!(
                stdout.contains(&format!("grpc clients {scenario}: all checks passed")),
                "{what} did not finish its checks:\n{stdout}"
            );
        }
        assert!(
            server.ready(),
            "HTTP/1.1 on the same port after the gRPC calls"
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
}
