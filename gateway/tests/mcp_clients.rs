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
//! assistant does (discovery from the 401, registration with a Client ID Metadata Document
//! served over HTTPS from a loopback port or dynamic registration, PKCE with the `resource`
//! parameter, the user's approval in headless Chromium through `interop/mcp_approve.mjs`).
//!
//! These tests fail, never skip, when the clients, the model or a database are missing:
//! `scripts/install-deps.sh` installs the clients, `scripts/test-all.sh` starts the databases.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod common;

mod mcp_clients {
    use std::io::Write;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::{env, free_port, interop_dir, run, storage_env, succeeded, unique};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");

    /// Every scope a tool needs.
    const SCOPES: &str = "memories:read memories:write s3:read kv:read kv:write vectors:read \
                          graph:read";
    /// The REST token's scopes: what setting up files, vectors and the graph needs.
    const REST_SCOPES: &str = "memories:read memories:write s3:read s3:write kv:read kv:write \
                               vectors:read vectors:write graph:read graph:write";
    /// A token that may read records only.
    const LIMITED_SCOPES: &str = "kv:read";

    /// A `p8fs serve` of its own with the builtin embedder on a free loopback port.
    struct Server {
        child: Child,
        dir: tempfile::TempDir,
        storage: Vec<(String, String)>,
        port: u16,
    }

    impl Server {
        /// A node whose OAuth server trusts the CA in `tls_dir` (made by `mcp_clients.py
        /// make-ca`) for client metadata documents on loopback.
        fn start(backend: &str, tls_dir: &Path) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &format!("mcp_{}", unique(dir.path())));
            storage.push((
                "P8FS_EMBEDDINGS_MODEL_DIR".into(),
                env("P8FS_TEST_MODEL_DIR"),
            ));
            let oauth = format!(
                "[oauth]\nallow_loopback_client_metadata = true\nclient_metadata_ca_file = \"{}\"\n",
                tls_dir.join("ca.pem").display()
            );
            Server::spawn(dir, storage, None, &oauth)
        }

        /// A second gateway node over the same database as `first`, with its signing keys
        /// (copied, as an operator distributes them) and its issuer URL, as nodes behind one
        /// public address are configured.
        fn second_node(first: &Server) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let from = first.dir.path().join("data/keys");
            let to = dir.path().join("data/keys");
            std::fs::create_dir_all(&to).unwrap();
            for entry in std::fs::read_dir(&from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
            use std::os::unix::fs::PermissionsExt;
            for owned in [dir.path().join("data"), to] {
                std::fs::set_permissions(owned, std::fs::Permissions::from_mode(0o700)).unwrap();
            }
            Server::spawn(dir, first.storage.clone(), Some(first.url()), "")
        }

        fn spawn(
            dir: tempfile::TempDir,
            storage: Vec<(String, String)>,
            issuer: Option<String>,
            extra_config: &str,
        ) -> Server {
            let backend = storage
                .iter()
                .find(|(name, _)| name == "P8FS_STORAGE_PROVIDER")
                .map_or("rocksdb", |(_, value)| value.as_str())
                .to_owned();
            let config = dir.path().join("p8fs.toml");
            let mut text = String::from("[log]\nlevel = \"warn\"\n[s3]\nenabled = false\n");
            if let Some(issuer) = issuer {
                text.push_str(&format!("[auth]\nissuer = \"{issuer}\"\n"));
            }
            text.push_str(extra_config);
            std::fs::write(&config, text).unwrap();
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
            crate::common::ready(self.port)
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
        // The CA of the HTTPS server of a client metadata document (the oauth scenario).
        let tls = tempfile::tempdir().unwrap();
        let mut make_ca = Command::new("python3");
        make_ca
            .current_dir(interop_dir())
            .arg("mcp_clients.py")
            .arg("make-ca")
            .arg(tls.path());
        succeeded(run(make_ca, Duration::from_secs(60), "make-ca"), "make-ca");
        let server = Server::start(backend, tls.path());
        let name = unique(server.dir.path());
        let resource = format!("{}/mcp", server.url());
        let tenant = format!("mcpa-{name}");
        let token = server.token(&tenant, SCOPES, Some(&resource));
        let limited = server.token(&tenant, LIMITED_SCOPES, Some(&resource));
        let other = server.token(&format!("mcpb-{name}"), SCOPES, Some(&resource));
        let rest = server.token(&tenant, REST_SCOPES, None);
        let (username, password) = ("assistant-user", "An-approval-pass-42");
        server.add_user(&tenant, username, password);
        if backend != "rocksdb" {
            // A legacy session opened on one node goes on on another (its state is in the
            // shared store); RocksDB admits one process, so one node.
            let second = Server::second_node(&server);
            let mut command = Command::new("python3");
            command
                .current_dir(interop_dir())
                .arg("mcp_clients.py")
                .arg("two-nodes")
                .arg("--url")
                .arg(server.url())
                .arg(format!("--second-url={}", second.url()))
                .arg(format!("--token={token}"))
                .arg(format!("--limited-token={limited}"))
                .arg(format!("--other-token={other}"))
                .arg(format!("--rest-token={rest}"));
            let what = format!("mcp_clients.py two-nodes on {backend}");
            let stdout = succeeded(run(command, Duration::from_secs(120), &what), &what);
            assert!(
                stdout.contains("scenario two-nodes: all checks passed"),
                "{what} did not finish its checks:\n{stdout}"
            );
        }
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
                .arg(format!("--password={password}"))
                .arg(format!("--tls-dir={}", tls.path().display()));
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
