//! The OAuth server as its users meet it: the real `p8fs` binary serving on a loopback port,
//! `p8fs login | token | logout` run as a person would, the device flow approved and the PKCE
//! code flow clicked through in headless Chromium (`interop/device.mjs`, `interop/pkce.mjs`,
//! playwright-core driving Debian's `/usr/bin/chromium`), clients no one here wrote (authlib and
//! PyJWT in `interop/interop.py`), and the attacks a client can try.
//!
//! These tests fail, never skip, when node, playwright-core, Chromium or the Python packages are
//! missing: `scripts/install-deps.sh` installs them. Users and clients are made with
//! `p8fs user add` and `p8fs client add` against the running server.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod oauth_flows {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::Value;

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
    const PASSWORD: &str = "correct horse battery staple";

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

    /// Waits for `child` at most `limit`; kills it and fails the test when it takes longer.
    fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `command` to completion (at most `limit`), with `stdin` as its input.
    fn run(mut command: Command, stdin: Option<&str>, limit: Duration, what: &str) -> Output {
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e} (run scripts/install-deps.sh)"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        // Read both pipes on threads so a full pipe cannot stall the child.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut out, &mut text).unwrap();
            text
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut err, &mut text).unwrap();
            text
        });
        let status = wait(&mut child, limit, what);
        Output {
            status,
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// Fails with everything the command said unless it succeeded.
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

    /// `node interop/<script> args...`; fails unless it succeeds.
    fn node(script: &str, args: &[&str]) -> String {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed in {}: run scripts/install-deps.sh",
            dir.display()
        );
        let mut command = Command::new("node");
        command.current_dir(&dir).arg(script).args(args);
        succeeded(
            run(
                command,
                None,
                Duration::from_secs(45),
                &format!("node {script}"),
            ),
            &format!("node {script}"),
        )
    }

    /// `python3 interop/interop.py args...`; fails unless it succeeds.
    fn python(args: &[&str]) -> String {
        let mut command = Command::new("python3");
        command
            .current_dir(interop_dir())
            .arg("interop.py")
            .args(args);
        succeeded(
            run(command, None, Duration::from_secs(50), "interop.py"),
            &format!("interop.py {}", args.first().unwrap_or(&"")),
        )
    }

    /// A `p8fs serve` of its own: a fresh data dir, a free loopback port, and `[oauth]` settings
    /// that keep the flows fast (a 1 s polling interval) plus `extra` configuration.
    struct Server {
        child: Child,
        base: String,
        dir: tempfile::TempDir,
        http: reqwest::Client,
    }

    impl Server {
        async fn start(extra: &str) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("p8fs.toml");
            std::fs::write(
                &config,
                format!(
                    "[log]\nlevel = \"warn\"\n\n[oauth]\ndevice_poll_interval = \"1s\"\n{extra}\n"
                ),
            )
            .unwrap();
            let port = free_port();
            let child = Command::new(P8FS)
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .spawn()
                .unwrap();
            let server = Server {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
                http: reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap(),
            };
            let started = Instant::now();
            loop {
                if let Ok(response) = server.http.get(server.url("/healthz")).send().await
                    && response.status().is_success()
                {
                    return server;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "p8fs serve did not come up"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        /// An admin command (`p8fs user ...`, `p8fs client ...`) against this server.
        fn admin(&self, args: &[&str], stdin: Option<&str>) -> String {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(self.dir.path().join("p8fs.toml"))
                .arg("--data-dir")
                .arg(self.dir.path().join("data"));
            succeeded(
                run(command, stdin, Duration::from_secs(20), "p8fs admin"),
                &format!("p8fs {}", args.join(" ")),
            )
        }

        fn add_user(&self, tenant: &str, username: &str) {
            self.admin(
                &[
                    "user",
                    "add",
                    "--tenant",
                    tenant,
                    username,
                    "--password-stdin",
                ],
                Some(&format!("{PASSWORD}\n")),
            );
        }

        /// Registers a public client for the code flow; returns its client_id.
        fn add_code_client(&self, name: &str, client_id: &str, redirect_uri: &str) -> String {
            let printed = self.admin(
                &[
                    "client",
                    "add",
                    "--name",
                    name,
                    "--client-id",
                    client_id,
                    "--redirect-uri",
                    redirect_uri,
                    "--grant-type",
                    "authorization_code",
                    "--grant-type",
                    "refresh_token",
                    "--scope",
                    "kv:read kv:write",
                ],
                None,
            );
            let created: Value = serde_json::from_str(printed.trim()).unwrap();
            assert!(created["client_secret"].is_null(), "{created}");
            created["client"]["client_id"].as_str().unwrap().to_owned()
        }

        async fn rest_status(&self, token: &str) -> reqwest::StatusCode {
            self.http
                .get(self.url("/v1/kv"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }

        /// A raw token-endpoint request; returns the status and the JSON body.
        async fn token_request(&self, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
            let body = form
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let response = self
                .http
                .post(self.url("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn encode(text: &str) -> String {
        let mut out = String::new();
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(byte as char)
                }
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
        out
    }

    /// Where one person's `p8fs login` keeps its tokens.
    struct Cli {
        home: tempfile::TempDir,
    }

    impl Cli {
        fn new() -> Cli {
            Cli {
                home: tempfile::tempdir().unwrap(),
            }
        }

        fn credentials(&self) -> PathBuf {
            self.home.path().join("config/p8fs/credentials.json")
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .env("P8FS_CREDENTIALS", self.credentials())
                .env("HOME", self.home.path());
            command
        }

        fn run(&self, args: &[&str]) -> Output {
            run(
                self.command(args),
                None,
                Duration::from_secs(30),
                &format!("p8fs {}", args.join(" ")),
            )
        }

        fn token(&self) -> String {
            succeeded(self.run(&["token"]), "p8fs token")
                .trim()
                .to_owned()
        }

        fn stored(&self, issuer: &str) -> Value {
            let all: Value =
                serde_json::from_str(&std::fs::read_to_string(self.credentials()).unwrap())
                    .unwrap();
            all[issuer].clone()
        }

        /// Starts `p8fs login` and reads what it shows until it waits for approval.
        fn start_login(&self, issuer: &str) -> Login {
            let mut child = self
                .command(&["login", "--issuer", issuer])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let (send, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut shown = Vec::new();
            let started = Instant::now();
            while !shown
                .iter()
                .any(|l: &String| l.starts_with("Waiting for approval"))
            {
                let left = Duration::from_secs(15).saturating_sub(started.elapsed());
                match lines.recv_timeout(left) {
                    Ok(line) => shown.push(line),
                    Err(_) => {
                        let _ = child.kill();
                        panic!("p8fs login showed no code: {shown:#?}");
                    }
                }
            }
            let after = |heading: &str| {
                let at = shown
                    .iter()
                    .position(|l| l.trim_end().ends_with(heading))
                    .unwrap_or_else(|| panic!("no {heading:?} in {shown:#?}"));
                shown[at + 1..]
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty())
                    .unwrap()
                    .to_owned()
            };
            Login {
                verification_uri: after("open this page in a browser:"),
                user_code: after("and enter the code:"),
                complete: after("which carries the code:"),
                child,
                lines,
                shown,
            }
        }
    }

    struct Login {
        verification_uri: String,
        user_code: String,
        complete: String,
        child: Child,
        lines: mpsc::Receiver<String>,
        shown: Vec<String>,
    }

    impl Login {
        /// Waits for `p8fs login` to end; returns whether it succeeded and all it said.
        fn finish(mut self) -> (bool, String) {
            let status = wait(&mut self.child, Duration::from_secs(30), "p8fs login");
            // The reader thread ends with the process; collect the rest of what it said.
            while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                self.shown.push(line);
            }
            (status.success(), self.shown.join("\n"))
        }
    }

    impl Drop for Login {
        /// A failed test leaves no `p8fs login` polling behind it.
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The user code shown is XXXX-XXXX from the unambiguous consonant alphabet, and the links
    /// point at the server's `/device` page.
    fn check_shown(login: &Login, server: &Server) {
        let code = &login.user_code;
        assert_eq!(code.len(), 9, "{code}");
        assert_eq!(&code[4..5], "-", "{code}");
        assert!(
            code.chars()
                .filter(|c| *c != '-')
                .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
            "{code}"
        );
        assert_eq!(login.verification_uri, server.url("/device"));
        assert!(
            login.complete.starts_with(&server.url("/device?")) && login.complete.contains(code),
            "{}",
            login.complete
        );
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The "done when": `p8fs login` completes after approval in the browser, the token
    /// works on the REST API, and `p8fs logout` revokes it.
    #[tokio::test(flavor = "multi_thread")]
    async fn device_login_approved_in_chromium_works_on_rest_until_logout() {
        let server = Server::start("").await;
        server.add_user("acme", "alice");
        let cli = Cli::new();

        let login = cli.start_login(&server.base);
        check_shown(&login, &server);
        // In the browser: the plain verification page, sign in, type the code, approve.
        let page: Value = serde_json::from_str(&node(
            "device.mjs",
            &[
                "--url",
                &login.verification_uri,
                "--code",
                &login.user_code,
                "--username",
                "alice",
                "--password",
                PASSWORD,
            ],
        ))
        .unwrap();
        let confirmation = page["confirmation"].as_str().unwrap();
        assert!(confirmation.contains("kv:read"), "{confirmation}");
        let (ok, said) = login.finish();
        assert!(ok, "p8fs login failed:\n{said}");
        assert!(said.contains("Logged in to"), "{said}");

        #[cfg(unix)]
        assert_eq!(mode(&cli.credentials()), 0o600);
        let stored = cli.stored(&server.base);
        let access = stored["access_token"].as_str().unwrap().to_owned();
        let refresh = stored["refresh_token"].as_str().unwrap().to_owned();
        assert!(
            !said.contains(&access) && !said.contains(&refresh),
            "{said}"
        );

        // `p8fs token` prints the stored token (it is far from expiry) and it works.
        let token = cli.token();
        assert_eq!(token, access);
        assert_eq!(server.rest_status(&token).await, reqwest::StatusCode::OK);
        let put = server
            .http
            .put(server.url("/v1/kv/from-login"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"via": "p8fs login"}))
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{}", put.status());

        // Logout revokes both tokens and forgets them.
        let said = succeeded(cli.run(&["logout"]), "p8fs logout");
        assert!(!said.contains(&access));
        assert!(cli.stored(&server.base).is_null());
        let after = cli.run(&["token"]);
        assert!(!after.status.success());
        assert!(
            text(&after.stderr).contains("not logged in"),
            "{}",
            text(&after.stderr)
        );
        let (status, body) = server
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "p8fs-cli"),
            ])
            .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert_eq!(
            server.rest_status(&access).await,
            reqwest::StatusCode::UNAUTHORIZED
        );
    }

    /// Deny in the browser: `p8fs login` stops with a clear message and stores nothing.
    #[tokio::test(flavor = "multi_thread")]
    async fn device_login_denied_in_chromium_fails_clearly() {
        let server = Server::start("").await;
        server.add_user("acme", "dora");
        let cli = Cli::new();
        let login = cli.start_login(&server.base);
        // The complete link carries the code: sign in and go straight to the confirmation.
        let page: Value = serde_json::from_str(&node(
            "device.mjs",
            &[
                "--url",
                &login.complete,
                "--username",
                "dora",
                "--password",
                PASSWORD,
                "--decision",
                "deny",
            ],
        ))
        .unwrap();
        assert!(page["result"].as_str().unwrap().len() > 3, "{page}");
        let (ok, said) = login.finish();
        assert!(!ok, "p8fs login succeeded after deny:\n{said}");
        assert!(said.contains("denied"), "{said}");
        assert!(!cli.credentials().exists() || cli.stored(&server.base).is_null());
    }

    /// Nobody approves: `p8fs login` gives up when the code expires, with a clear message.
    #[tokio::test(flavor = "multi_thread")]
    async fn device_login_expires_unapproved() {
        let server = Server::start("device_code_ttl = \"3s\"").await;
        let cli = Cli::new();
        let login = cli.start_login(&server.base);
        let (ok, said) = login.finish();
        assert!(!ok, "{said}");
        assert!(said.contains("expired"), "{said}");
    }

    /// The code flow with PKCE in Chromium: sign in, consent, the redirect captured in the
    /// browser; the codes exchanged here, one with a wrong verifier.
    #[tokio::test(flavor = "multi_thread")]
    async fn pkce_code_flow_in_chromium() {
        let server = Server::start("").await;
        server.add_user("acme", "erin");
        let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
        let client_id = server.add_code_client("Interop Test App", "interop-app", &redirect_uri);
        let rounds = node(
            "pkce.mjs",
            &[
                "--authorize",
                &server.url("/oauth/authorize"),
                "--client-id",
                &client_id,
                "--redirect-uri",
                &redirect_uri,
                "--scope",
                "kv:read",
                "--username",
                "erin",
                "--password",
                PASSWORD,
                "--rounds",
                "2",
            ],
        );
        let rounds: Vec<Value> = rounds
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rounds.len(), 2, "{rounds:?}");
        let mut codes = Vec::new();
        for round in &rounds {
            let consent = round["consent"].as_str().unwrap();
            assert!(
                consent.contains("Interop Test App") && consent.contains("kv:read"),
                "{consent}"
            );
            let redirect = reqwest::Url::parse(round["redirect"].as_str().unwrap()).unwrap();
            assert!(redirect.as_str().starts_with(&redirect_uri), "{redirect}");
            let query: std::collections::HashMap<String, String> =
                redirect.query_pairs().into_owned().collect();
            assert_eq!(
                query.get("state").map(String::as_str),
                round["state"].as_str()
            );
            assert_eq!(query.get("iss"), Some(&server.base));
            codes.push(query["code"].clone());
        }
        let exchange = |code: String, verifier: String| {
            let server = &server;
            let client_id = client_id.clone();
            let redirect_uri = redirect_uri.clone();
            async move {
                server
                    .token_request(&[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("code_verifier", &verifier),
                        ("redirect_uri", &redirect_uri),
                        ("client_id", &client_id),
                    ])
                    .await
            }
        };
        // The first code with someone else's verifier: refused.
        let wrong = rounds[1]["verifier"].as_str().unwrap().to_owned();
        let (status, body) = exchange(codes[0].clone(), wrong).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        // The second with its own: a token limited to the scope asked for.
        let right = rounds[1]["verifier"].as_str().unwrap().to_owned();
        let (status, body) = exchange(codes[1].clone(), right.clone()).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
        let token = body["access_token"].as_str().unwrap();
        assert!(body["refresh_token"].is_string(), "{body}");
        assert_eq!(body["scope"], "kv:read");
        assert_eq!(server.rest_status(token).await, reqwest::StatusCode::OK);
        let write = server
            .http
            .put(server.url("/v1/kv/not-allowed"))
            .bearer_auth(token)
            .json(&1)
            .send()
            .await
            .unwrap();
        assert_eq!(write.status(), reqwest::StatusCode::FORBIDDEN);
        // Single use.
        let (status, body) = exchange(codes[1].clone(), right).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }

    /// `p8fs token` refreshes a token close to expiry, rotating the refresh token; concurrent
    /// `p8fs token` runs never trip reuse detection; a reused refresh token ends the login, and
    /// so does disabling the user, each with a clear message.
    #[tokio::test(flavor = "multi_thread")]
    async fn token_refresh_rotation_reuse_and_disabled_user() {
        // Access tokens live 30 s, under `p8fs token`'s 60 s margin: every call refreshes.
        let server = Server::start("access_token_ttl = \"30s\"").await;
        server.add_user("acme", "bob");
        server.add_user("acme", "carol");
        let cli = Cli::new();
        let approve = |login: &Login, username: &str| {
            python(&[
                "approve-device",
                "--base",
                &server.base,
                "--url",
                &login.verification_uri,
                "--code",
                &login.user_code,
                "--username",
                username,
                "--password",
                PASSWORD,
            ]);
        };

        let login = cli.start_login(&server.base);
        approve(&login, "bob");
        let (ok, said) = login.finish();
        assert!(ok, "{said}");
        let first = cli.stored(&server.base);

        let token = cli.token();
        assert_ne!(token, first["access_token"].as_str().unwrap());
        let second = cli.stored(&server.base);
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        assert_eq!(server.rest_status(&token).await, reqwest::StatusCode::OK);

        // Three at once: the credentials lock serialises the refreshes.
        let children: Vec<Child> = (0..3)
            .map(|_| {
                cli.command(&["token"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            let token = succeeded(output, "concurrent p8fs token");
            assert_eq!(
                server.rest_status(token.trim()).await,
                reqwest::StatusCode::OK
            );
        }

        // Someone replays the first refresh token: the family is revoked, and `p8fs token`
        // says the login is over.
        let (status, body) = server
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
                ("client_id", "p8fs-cli"),
            ])
            .await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        let refused = cli.run(&["token"]);
        assert!(!refused.status.success());
        let said = text(&refused.stderr);
        assert!(
            said.contains("refused to refresh") && said.contains("p8fs login"),
            "{said}"
        );
        assert!(text(&refused.stdout).is_empty());

        // A disabled user's login cannot be refreshed.
        let login = cli.start_login(&server.base);
        approve(&login, "carol");
        let (ok, said) = login.finish();
        assert!(ok, "{said}");
        assert_eq!(
            server.rest_status(&cli.token()).await,
            reqwest::StatusCode::OK
        );
        server.admin(&["user", "disable", "carol"], None);
        let refused = cli.run(&["token"]);
        assert!(!refused.status.success());
        assert!(
            text(&refused.stderr).contains("refused to refresh"),
            "{}",
            text(&refused.stderr)
        );
    }

    /// The client commands fail with clear messages when there is nothing to use.
    #[tokio::test(flavor = "multi_thread")]
    async fn client_commands_explain_what_is_missing() {
        let cli = Cli::new();
        for args in [&["token"][..], &["logout"][..]] {
            let output = cli.run(args);
            assert!(!output.status.success());
            let said = text(&output.stderr);
            assert!(said.contains("not logged in"), "{said}");
        }
        let output = cli.run(&["login", "--issuer", "http://vault.example"]);
        assert!(!output.status.success());
        assert!(
            text(&output.stderr).contains("only https"),
            "{}",
            text(&output.stderr)
        );
        let port = free_port();
        let output = cli.run(&["login", "--issuer", &format!("http://127.0.0.1:{port}")]);
        assert!(!output.status.success());
        assert!(
            text(&output.stderr).contains("cannot reach"),
            "{}",
            text(&output.stderr)
        );
        // A server that is not an OAuth server: no metadata.
        let server = Server::start("").await;
        let output = cli.run(&["login", "--issuer", &server.url("/v1")]);
        assert!(!output.status.success());
        assert!(!cli.credentials().exists());
    }

    /// `P8FS_CREDENTIALS` (where `p8fs login` keeps tokens) is not configuration: commands that
    /// read the configuration accept it in the environment like any foreign variable.
    #[test]
    fn the_credentials_variable_is_not_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(P8FS);
        command
            .args(["config", "show", "--data-dir"])
            .arg(dir.path())
            .env("P8FS_CREDENTIALS", dir.path().join("credentials.json"));
        succeeded(
            run(command, None, Duration::from_secs(20), "p8fs config show"),
            "p8fs config show with P8FS_CREDENTIALS set (config.rs must not refuse it)",
        );
    }

    /// authlib's device flow and PyJWT; rotation, reuse detection, replay, concurrent redemption.
    #[tokio::test(flavor = "multi_thread")]
    async fn python_interop_device_flow() {
        let server = Server::start("").await;
        server.add_user("acme", "frank");
        python(&[
            "device",
            "--base",
            &server.base,
            "--username",
            "frank",
            "--password",
            PASSWORD,
        ]);
    }

    /// authlib's code flow with PKCE S256 and PyJWT; wrong verifiers, replayed and expired codes,
    /// redirect_uri tricks, plain PKCE.
    #[tokio::test(flavor = "multi_thread")]
    async fn python_interop_pkce_flow() {
        // Codes live 2 s here, so a code used after expiry can be tried without a long wait.
        let server = Server::start("authorization_code_ttl = \"2s\"").await;
        server.add_user("acme", "grace");
        let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
        let client_id = server.add_code_client("Python Interop", "python-interop", &redirect_uri);
        python(&[
            "pkce",
            "--base",
            &server.base,
            "--username",
            "grace",
            "--password",
            PASSWORD,
            "--client-id",
            &client_id,
            "--redirect-uri",
            &redirect_uri,
            "--code-ttl",
            "2",
        ]);
    }

    /// Brute-forced user codes are rate limited; sloppy entry of a real code still works.
    #[tokio::test(flavor = "multi_thread")]
    async fn attacks_on_user_codes_and_sign_in() {
        let server = Server::start("").await;
        server.add_user("acme", "heidi");
        python(&[
            "attacks",
            "--base",
            &server.base,
            "--username",
            "heidi",
            "--password",
            PASSWORD,
        ]);
    }
}
