//! What the MCP endpoint needs from the authorization server, against the real `p8fs` binary on
//! a loopback port: tokens for the resource `<issuer>/mcp` (RFC 8707) through the code flow with
//! PKCE, verified with the server's own signing keys for that resource and refused by the REST
//! API and by the default-audience check; `invalid_target` for unknown resources; `iss` on
//! success and error redirects (RFC 9207); and clients named by the URL of their metadata
//! document, served here by a small HTTP server on another loopback port.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod oauth_mcp {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::routing::get;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p8fs_auth::{KeyRing, TokenConfig, Verifier};
    use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
    use p8fs_core::{Clock, KvStore, SystemClock};
    use reqwest::StatusCode;
    use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
    const PASSWORD: &str = "correct horse battery staple";
    const CALLBACK: &str = "http://127.0.0.1:9999/cb";
    const VERIFIER: &str = "mcp-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn challenge() -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
    }

    /// The claims of a JWT, unverified.
    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    }

    fn param(location: &str, name: &str) -> Option<String> {
        reqwest::Url::parse(location)
            .unwrap()
            .query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A `p8fs serve` of its own with `extra` configuration, alice in tenant acme, and the
    /// public code-flow client `web`.
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
            std::fs::write(&config, format!("[log]\nlevel = \"warn\"\n\n{extra}\n")).unwrap();
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
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "p8fs serve did not come up"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            server.admin(
                &[
                    "user",
                    "add",
                    "--tenant",
                    "acme",
                    "alice",
                    "--password-stdin",
                ],
                Some(&format!("{PASSWORD}\n")),
            );
            server.admin(
                &[
                    "client",
                    "add",
                    "--name",
                    "Web",
                    "--client-id",
                    "web",
                    "--redirect-uri",
                    CALLBACK,
                    "--grant-type",
                    "authorization_code",
                    "--grant-type",
                    "refresh_token",
                    "--scope",
                    "kv:read kv:write",
                ],
                None,
            );
            server
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        fn mcp(&self) -> String {
            self.url("/mcp")
        }

        fn admin(&self, args: &[&str], stdin: Option<&str>) {
            let mut child = Command::new(P8FS)
                .args(args)
                .arg("--config")
                .arg(self.dir.path().join("p8fs.toml"))
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if let Some(input) = stdin {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
            }
            drop(child.stdin.take());
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "p8fs {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }

        /// A verifier with this server's signing keys, as the MCP front-end holds one.
        fn verifier(&self, revocations: Arc<dyn KvStore>) -> Verifier {
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let keys =
                KeyRing::load_or_create(&self.dir.path().join("data/keys"), clock.clone()).unwrap();
            Verifier::new(
                Arc::new(keys),
                TokenConfig {
                    issuer: self.base.clone(),
                    audience: "p8fs".to_owned(),
                    leeway: Duration::from_secs(30),
                },
                clock,
                revocations,
            )
        }

        async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
            let response = self
                .http
                .post(self.url("/oauth/token"))
                .form(form)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        }

        async fn rest_status(&self, token: &str) -> StatusCode {
            self.http
                .get(self.url("/v1/kv"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }

        /// A browser signed in as alice.
        async fn signed_in(&self) -> Browser {
            let mut browser = Browser {
                base: self.base.clone(),
                http: self.http.clone(),
                cookie: None,
            };
            let form = browser.get("/oauth/signin").await;
            let csrf = hidden(&form.2, "csrf").unwrap();
            let done = browser
                .post(
                    "/oauth/signin",
                    &[
                        ("username", "alice"),
                        ("password", PASSWORD),
                        ("csrf", &csrf),
                        ("next", "/device"),
                    ],
                )
                .await;
            assert_eq!(done.0, StatusCode::SEE_OTHER, "{}", done.2);
            browser
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The value of the hidden field `name` of a page.
    fn hidden(body: &str, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = body.find(&marker)? + marker.len();
        let end = body[start..].find('"')? + start;
        Some(
            body[start..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        )
    }

    /// Keeps the session cookie; does not follow redirects. Pages are (status, location, body).
    struct Browser {
        base: String,
        http: reqwest::Client,
        cookie: Option<String>,
    }

    type Page = (StatusCode, Option<String>, String);

    impl Browser {
        async fn page(&mut self, response: reqwest::Response) -> Page {
            for value in response.headers().get_all(SET_COOKIE) {
                let pair = value.to_str().unwrap().split(';').next().unwrap();
                let (_, id) = pair.split_once('=').unwrap();
                self.cookie = (!id.is_empty()).then(|| pair.to_owned());
            }
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (status, location, response.text().await.unwrap())
        }

        async fn get(&mut self, path: &str) -> Page {
            let mut request = self.http.get(format!("{}{path}", self.base));
            if let Some(cookie) = &self.cookie {
                request = request.header(COOKIE, cookie);
            }
            let response = request.send().await.unwrap();
            self.page(response).await
        }

        async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
            let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
            if let Some(cookie) = &self.cookie {
                request = request.header(COOKIE, cookie);
            }
            let response = request.send().await.unwrap();
            self.page(response).await
        }

        /// Approves the consent page of `path`; the redirect location.
        async fn approve(&mut self, path: &str) -> String {
            let (status, _, body) = self.get(path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let mut form: Vec<(&str, String)> = Vec::new();
            for name in [
                "csrf",
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method",
                "resource",
            ] {
                if let Some(value) = hidden(&body, name) {
                    form.push((name, value));
                }
            }
            form.push(("decision", "approve".to_owned()));
            let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, location, body) = self.post("/oauth/authorize", &form).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
            location.unwrap()
        }
    }

    fn authorize_path(client_id: &str, redirect_uri: &str, resource: Option<&str>) -> String {
        let mut url = reqwest::Url::parse("http://server/oauth/authorize").unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", "st-1")
            .append_pair("scope", "kv:read")
            .append_pair("code_challenge", &challenge())
            .append_pair("code_challenge_method", "S256");
        if let Some(resource) = resource {
            url.query_pairs_mut().append_pair("resource", resource);
        }
        format!("/oauth/authorize?{}", url.query().unwrap())
    }

    /// A client metadata document server on a loopback port: `/good.json` (its `client_id` is
    /// its URL) and `/other.json` (it claims another client's id); counts requests.
    struct Documents {
        base: String,
        hits: Arc<AtomicUsize>,
    }

    impl Documents {
        async fn start() -> Documents {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let hits = Arc::new(AtomicUsize::new(0));
            let document = |client_id: String| {
                json!({
                    "client_id": client_id,
                    "client_name": "Document Client",
                    "redirect_uris": [CALLBACK],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "token_endpoint_auth_method": "none",
                })
                .to_string()
            };
            let good = document(format!("{base}/good.json"));
            let other = document("https://clients.example/other.json".to_owned());
            let (h1, h2) = (hits.clone(), hits.clone());
            let app = Router::new()
                .route(
                    "/good.json",
                    get(move || {
                        h1.fetch_add(1, Ordering::SeqCst);
                        std::future::ready(good.clone())
                    }),
                )
                .route(
                    "/other.json",
                    get(move || {
                        h2.fetch_add(1, Ordering::SeqCst);
                        std::future::ready(other.clone())
                    }),
                );
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Documents { base, hits }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }
    }

    fn revocations(dir: &tempfile::TempDir) -> Arc<dyn KvStore> {
        Arc::new(
            RocksBackend::open(
                dir.path().join("revocations"),
                Arc::new(SystemClock),
                RocksOptions::default(),
            )
            .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tokens_for_the_mcp_resource_are_for_it_alone() {
        let server = Server::start("").await;
        let scratch = tempfile::tempdir().unwrap();
        let verifier = server.verifier(revocations(&scratch));
        let mcp = server.mcp();

        let metadata: Value = server
            .http
            .get(server.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(metadata["client_id_metadata_document_supported"], true);

        let mut browser = server.signed_in().await;
        let path = authorize_path("web", CALLBACK, Some(&mcp));
        let (_, _, consent) = browser.get(&path).await;
        assert!(consent.contains(&mcp), "{consent}");
        let location = browser.approve(&path).await;
        assert!(location.starts_with(CALLBACK), "{location}");
        assert_eq!(
            param(&location, "iss").as_deref(),
            Some(server.base.as_str())
        );
        assert_eq!(param(&location, "state").as_deref(), Some("st-1"));
        let code = param(&location, "code").unwrap();
        let (status, tokens) = server
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", "web"),
                ("resource", &mcp),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access = tokens["access_token"].as_str().unwrap();
        assert_eq!(claims(access)["aud"], mcp.as_str());
        let principal = verifier.verify_for(access, &mcp).await.unwrap();
        assert_eq!(principal.subject, "alice");
        assert_eq!(principal.tenant.as_str(), "acme");
        assert_eq!(
            verifier.verify(access).await.unwrap_err().to_string(),
            "unauthorized: wrong audience"
        );
        assert_eq!(server.rest_status(access).await, StatusCode::UNAUTHORIZED);

        // The refresh keeps the resource; another one is invalid_target.
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let (status, body) = server
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", "web"),
                ("resource", &server.url("/v1")),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_target");
        let (status, next) = server
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", "web"),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{next}");
        let next_access = next["access_token"].as_str().unwrap();
        verifier.verify_for(next_access, &mcp).await.unwrap();

        // Without a resource: the default audience, for REST and not for MCP.
        let location = browser
            .approve(&authorize_path("web", CALLBACK, None))
            .await;
        let (status, tokens) = server
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &param(&location, "code").unwrap()),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", "web"),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let default = tokens["access_token"].as_str().unwrap();
        verifier.verify(default).await.unwrap();
        assert!(verifier.verify_for(default, &mcp).await.is_err());
        assert_eq!(server.rest_status(default).await, StatusCode::OK);

        // Unknown resources: a redirect with error, state and iss at authorization (the
        // trailing-slash form is another resource), JSON 400 at the token endpoint.
        for unknown in [
            format!("{mcp}/"),
            "https://elsewhere.example/mcp".to_owned(),
        ] {
            let (status, location, body) = browser
                .get(&authorize_path("web", CALLBACK, Some(&unknown)))
                .await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
            let location = location.unwrap();
            assert!(location.starts_with(CALLBACK), "{location}");
            assert_eq!(param(&location, "error").as_deref(), Some("invalid_target"));
            assert_eq!(param(&location, "state").as_deref(), Some("st-1"));
            assert_eq!(
                param(&location, "iss").as_deref(),
                Some(server.base.as_str())
            );
        }
        let location = browser
            .approve(&authorize_path("web", CALLBACK, Some(&mcp)))
            .await;
        let (status, body) = server
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &param(&location, "code").unwrap()),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", "web"),
                ("resource", "https://elsewhere.example/mcp"),
            ])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_target");

        // A denial is an error redirect with iss too.
        let (status, _, body) = browser
            .get(&authorize_path("web", CALLBACK, Some(&mcp)))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, location, _) = browser
            .post(
                "/oauth/authorize",
                &[
                    ("csrf", &hidden(&body, "csrf").unwrap()),
                    ("response_type", "code"),
                    ("client_id", "web"),
                    ("redirect_uri", CALLBACK),
                    ("state", "st-1"),
                    ("code_challenge", &challenge()),
                    ("code_challenge_method", "S256"),
                    ("resource", &mcp),
                    ("decision", "deny"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let location = location.unwrap();
        assert_eq!(param(&location, "error").as_deref(), Some("access_denied"));
        assert_eq!(
            param(&location, "iss").as_deref(),
            Some(server.base.as_str())
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_client_metadata_document_client_gets_mcp_tokens() {
        let docs = Documents::start().await;
        let server = Server::start("[oauth]\nallow_loopback_client_metadata = true").await;
        let scratch = tempfile::tempdir().unwrap();
        let verifier = server.verifier(revocations(&scratch));
        let mcp = server.mcp();
        let client_id = docs.url("/good.json");
        let mut browser = server.signed_in().await;

        // A redirect URI the document does not list: an error page, no redirect.
        let (status, location, body) = browser
            .get(&authorize_path(
                &client_id,
                "http://127.0.0.1:9999/elsewhere",
                Some(&mcp),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(location.is_none());
        assert!(body.contains("redirect_uri is not registered"), "{body}");

        // A document claiming another client id is refused.
        let (status, location, body) = browser
            .get(&authorize_path(
                &docs.url("/other.json"),
                CALLBACK,
                Some(&mcp),
            ))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(location.is_none());
        assert!(body.contains("client_id differs"), "{body}");

        // The consent page names the client and the document's host.
        let path = authorize_path(&client_id, CALLBACK, Some(&mcp));
        let (status, _, consent) = browser.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{consent}");
        assert!(consent.contains("Document Client"), "{consent}");
        let host = docs.base.trim_start_matches("http://");
        assert!(consent.contains(host), "{consent}");
        let location = browser.approve(&path).await;
        assert_eq!(
            param(&location, "iss").as_deref(),
            Some(server.base.as_str())
        );
        let (status, tokens) = server
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &param(&location, "code").unwrap()),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
                ("client_id", &client_id),
                ("resource", &mcp),
            ])
            .await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        let access = tokens["access_token"].as_str().unwrap();
        let principal = verifier.verify_for(access, &mcp).await.unwrap();
        assert_eq!(principal.client_id, client_id);
        assert!(verifier.verify(access).await.is_err());
        // The document was fetched once for all of that.
        assert_eq!(
            docs.hits.load(Ordering::SeqCst),
            2,
            "good.json once, other.json once"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn local_documents_are_refused_without_the_development_setting() {
        let docs = Documents::start().await;
        let server = Server::start("").await;
        let mut browser = server.signed_in().await;
        for (client_id, why) in [
            (docs.url("/good.json"), "https URL"),
            (
                docs.url("/good.json").replace("http://", "https://"),
                "non-public",
            ),
        ] {
            let (status, location, body) = browser
                .get(&authorize_path(&client_id, CALLBACK, None))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{client_id}: {body}");
            assert!(location.is_none());
            assert!(body.contains(why), "{client_id}: {body}");
        }
        assert_eq!(docs.hits.load(Ordering::SeqCst), 0);
    }
}
