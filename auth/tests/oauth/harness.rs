//! The test server and clients: the OAuth router over RocksDB on a loopback port with a manual
//! clock, a plain HTTP client that does not follow redirects, and a "browser" that carries the
//! session cookie and posts the pages' forms with their CSRF tokens.

use std::sync::Arc;
use std::time::Duration;

use p8fs_auth::oauth::{OAuthConfig, OAuthServer, PasswordHashing, router};
use p8fs_auth::{Issuer, KeyRing, TokenConfig, Verifier};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::{Clock, KvStore, ManualClock, TenantId};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

pub(crate) const START: i64 = 1_760_000_000_000;
pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const AUDIENCE: &str = "p8fs";

pub(crate) struct Harness {
    pub(crate) base: String,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) server: Arc<OAuthServer>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) http: reqwest::Client,
    /// The store under the server, to look at what it keeps.
    pub(crate) kv: Arc<dyn KvStore>,
    _dir: tempfile::TempDir,
}

pub(crate) fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

impl Harness {
    pub(crate) async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// A server with `alice` (tenant `acme`) and the built-in clients; `configure` adjusts the
    /// configuration.
    pub(crate) async fn start_with(configure: impl FnOnce(&mut OAuthConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let backend = RocksBackend::open(
            dir.path().join("db"),
            dyn_clock.clone(),
            RocksOptions::default(),
        )
        .unwrap();
        let kv: Arc<dyn KvStore> = Arc::new(backend);
        let keys =
            Arc::new(KeyRing::load_or_create(&dir.path().join("keys"), dyn_clock.clone()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token_config = TokenConfig {
            issuer: base.clone(),
            audience: AUDIENCE.to_owned(),
            leeway: Duration::from_secs(30),
        };
        let issuer = Arc::new(Issuer::new(
            keys.clone(),
            token_config.clone(),
            dyn_clock.clone(),
        ));
        let verifier = Arc::new(Verifier::new(
            keys,
            token_config,
            dyn_clock.clone(),
            kv.clone(),
        ));
        let mut config = OAuthConfig {
            issuer: base.clone(),
            ..OAuthConfig::default()
        };
        configure(&mut config);
        let server = Arc::new(
            OAuthServer::new(
                kv.clone(),
                issuer.clone(),
                verifier.clone(),
                dyn_clock,
                config,
            )
            .with_password_hashing(PasswordHashing::insecure_minimum_for_tests()),
        );
        server.accounts().ensure_builtin_clients().await.unwrap();
        server
            .accounts()
            .add_user(&tenant("acme"), "alice", PASSWORD)
            .await
            .unwrap();
        // Served as the gateway serves it, with the peer address, so per-address limits see
        // each client's own address (clients may bind 127.0.0.x, all loopback on Linux).
        let app =
            router(server.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Harness {
            base,
            clock,
            server,
            verifier,
            issuer,
            http,
            kv,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Posts a form to `path`; the status and the JSON body (Null if none).
    pub(crate) async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// Posts a form with HTTP Basic client authentication.
    pub(crate) async fn post_basic(
        &self,
        path: &str,
        id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .basic_auth(id, Some(secret))
            .form(form)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub(crate) async fn token(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        self.post("/oauth/token", form).await
    }

    pub(crate) fn browser(&self) -> Browser {
        Browser {
            base: self.base.clone(),
            http: self.http.clone(),
            cookie: None,
        }
    }

    /// An HTTP client whose connections come from `127.0.0.<host>` (the server sees that peer
    /// address; all of 127.0.0.0/8 is loopback on Linux).
    pub(crate) fn client_from(host: u8) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from([127, 0, 0, host]))
            .build()
            .unwrap()
    }

    /// A browser whose connections come from `127.0.0.<host>`.
    pub(crate) fn browser_from(&self, host: u8) -> Browser {
        Browser {
            base: self.base.clone(),
            http: Self::client_from(host),
            cookie: None,
        }
    }

    /// A browser signed in as alice.
    pub(crate) async fn signed_in(&self) -> Browser {
        let mut browser = self.browser();
        let page = browser.get("/oauth/signin").await;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page.csrf();
        let page = browser
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
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(page.location.as_deref(), Some("/device"));
        browser
    }

    /// Starts the device flow for `p8fs-cli`: (device_code, user_code).
    pub(crate) async fn device_start(&self, scope: Option<&str>) -> (String, String, Value) {
        let mut form = vec![("client_id", "p8fs-cli")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let (status, body) = self.post("/oauth/device_authorization", &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (
            body["device_code"].as_str().unwrap().to_owned(),
            body["user_code"].as_str().unwrap().to_owned(),
            body,
        )
    }

    pub(crate) async fn device_poll(&self, device_code: &str) -> (StatusCode, Value) {
        self.token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "p8fs-cli"),
        ])
        .await
    }

    /// Runs the device flow through the pages and returns the token response.
    pub(crate) async fn device_tokens(&self) -> Value {
        let (device_code, user_code, _) = self.device_start(None).await;
        let mut browser = self.signed_in().await;
        browser.approve_device(&user_code).await;
        let (status, body) = self.device_poll(&device_code).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

pub(crate) async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// A page as the browser got it.
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) body: String,
    pub(crate) headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The value of the hidden `csrf` field.
    pub(crate) fn csrf(&self) -> String {
        self.hidden("csrf").expect("the page has a csrf field")
    }

    /// The value of the hidden field `name`.
    pub(crate) fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(
            self.body[start..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        )
    }

    pub(crate) fn has_id(&self, id: &str) -> bool {
        self.body.contains(&format!("id=\"{id}\""))
    }
}

/// A browser: keeps the session cookie, does not follow redirects.
pub(crate) struct Browser {
    base: String,
    http: reqwest::Client,
    pub(crate) cookie: Option<String>,
}

impl Browser {
    async fn page(&mut self, response: reqwest::Response) -> Page {
        for value in response.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (name, id) = pair.split_once('=').unwrap();
            assert_eq!(name, "p8fs_session");
            self.cookie = if id.is_empty() {
                None
            } else {
                Some(pair.to_owned())
            };
        }
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page {
            status,
            location,
            body,
            headers,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.page(response).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        self.page(response).await
    }

    /// Enters `user_code` on /device and approves (or denies) it; the result page.
    pub(crate) async fn decide_device(&mut self, user_code: &str, decision: &str) -> Page {
        let entry = self.get("/device").await;
        assert_eq!(entry.status, StatusCode::OK, "{}", entry.body);
        assert!(entry.has_id("user_code") && entry.has_id("continue"));
        let confirm = self
            .post(
                "/device",
                &[("user_code", user_code), ("csrf", &entry.csrf())],
            )
            .await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
        assert!(confirm.has_id("approve") && confirm.has_id("deny"));
        let shown_code = confirm.hidden("user_code").unwrap();
        self.post(
            "/device",
            &[
                ("user_code", &shown_code),
                ("csrf", &confirm.csrf()),
                ("decision", decision),
            ],
        )
        .await
    }

    pub(crate) async fn approve_device(&mut self, user_code: &str) {
        let result = self.decide_device(user_code, "approve").await;
        assert_eq!(result.status, StatusCode::OK, "{}", result.body);
        assert!(result.has_id("result"));
        assert!(result.body.contains("approved"));
    }
}
