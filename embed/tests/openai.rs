//! The OpenAI-compatible embedder against a real OpenAI-compatible server: Infinity serving
//! all-MiniLM-L6-v2 from the same model directory the builtin embedder loads
//! (`scripts/services/openai-embeddings.sh`). `P8FS_TEST_OPENAI_URL` is its base URL and
//! `P8FS_TEST_MODEL_DIR` the model directory (`scripts/services/model.sh dir`); without them these
//! tests fail rather than skip.
//!
//! Faults the real server does not make on demand (429 and 503, a refused key, a 400, broken
//! answers) come from a small proxy in this process in front of it, which forwards everything
//! else unchanged and counts the requests it sees.

#![expect(clippy::unwrap_used, reason = "tests")]

mod openai {
    use std::collections::VecDeque;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use p8fs_core::{Embedder, ErrorKind};
    use p8fs_embed::BuiltinEmbedder;
    use p8fs_embed::openai::{OpenAiEmbedder, OpenAiOptions};
    use serde_json::{Value, json};

    /// The name the test server serves the model under.
    const MODEL: &str = "all-MiniLM-L6-v2";
    const DIMENSION: usize = 384;
    /// Agreement required between the server's vectors and the builtin embedder's.
    const MIN_COSINE: f64 = 0.999;
    const KEY: &str = "sk-test-9f8e7d6c5b4a";

    fn server_url() -> String {
        match std::env::var("P8FS_TEST_OPENAI_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "P8FS_TEST_OPENAI_URL is not set: run `scripts/services/openai-embeddings.sh start` \
                 and set it to the output of `scripts/services/openai-embeddings.sh url`"
            ),
        }
    }

    fn model_dir() -> PathBuf {
        match std::env::var_os("P8FS_TEST_MODEL_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => panic!(
                "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
                 to the output of `scripts/services/model.sh dir`"
            ),
        }
    }

    fn options(base_url: &str) -> OpenAiOptions {
        let mut options = OpenAiOptions::new(base_url, MODEL);
        options.timeout = Duration::from_secs(30);
        options
    }

    async fn connect(options: OpenAiOptions) -> OpenAiEmbedder {
        OpenAiEmbedder::connect(options).await.unwrap()
    }

    fn texts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        dot / (norm(a) * norm(b))
    }

    fn norm(a: &[f32]) -> f64 {
        a.iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    }

    fn assert_unit(vectors: &[Vec<f32>]) {
        for v in vectors {
            assert_eq!(v.len(), DIMENSION);
            assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
        }
    }

    /// What the proxy does with the next request instead of forwarding it.
    enum Fault {
        /// Answers with this status, a `Retry-After` when given, and an OpenAI-style error body.
        Status(StatusCode, Option<&'static str>, String),
        /// Forwards the request and changes the real answer's JSON before returning it.
        Rewrite(fn(&mut Value)),
    }

    #[derive(Default)]
    struct Proxy {
        upstream: String,
        http: reqwest::Client,
        requests: AtomicUsize,
        faults: Mutex<VecDeque<Fault>>,
        /// When set, a request without `Authorization: Bearer <key>` gets a 401 naming what came.
        key: Option<String>,
        /// Every request's body, in order.
        bodies: Mutex<Vec<Value>>,
    }

    impl Proxy {
        /// A proxy to the test server on a free port; returns it and its base URL.
        async fn start(key: Option<&str>) -> (Arc<Proxy>, String) {
            let proxy = Arc::new(Proxy {
                upstream: server_url().trim_end_matches('/').to_owned(),
                key: key.map(str::to_owned),
                ..Proxy::default()
            });
            let app = Router::new()
                .fallback(forward)
                .with_state(Arc::clone(&proxy));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            (proxy, format!("http://{addr}/v1"))
        }

        fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
            self.faults.lock().unwrap().extend(faults);
        }

        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }
    }

    async fn forward(
        State(proxy): State<Arc<Proxy>>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        proxy.requests.fetch_add(1, Ordering::SeqCst);
        proxy
            .bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        if let Some(key) = &proxy.key {
            let presented = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            if presented.as_deref() != Some(format!("Bearer {key}").as_str()) {
                let message = format!("Incorrect API key provided: {presented:?}");
                return error(StatusCode::UNAUTHORIZED, None, &message);
            }
        }
        let fault = proxy.faults.lock().unwrap().pop_front();
        let rewrite = match fault {
            Some(Fault::Status(status, retry_after, message)) => {
                return error(status, retry_after, &message);
            }
            Some(Fault::Rewrite(rewrite)) => Some(rewrite),
            None => None,
        };
        // `/v1/embeddings` here is `{upstream}/embeddings` there.
        let path = uri.path().strip_prefix("/v1").unwrap_or(uri.path());
        let answer = proxy
            .http
            .post(format!("{}{path}", proxy.upstream))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        let mut body = answer.bytes().await.unwrap().to_vec();
        if let Some(rewrite) = rewrite {
            let mut json: Value = serde_json::from_slice(&body).unwrap();
            rewrite(&mut json);
            body = serde_json::to_vec(&json).unwrap();
        }
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }

    fn error(status: StatusCode, retry_after: Option<&'static str>, message: &str) -> Response {
        let body = json!({"error": {"message": message, "type": "test", "code": status.as_u16()}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, after.parse().unwrap());
        }
        response
    }

    #[tokio::test]
    async fn vectors_match_the_builtin_embedder() {
        let server = connect(options(&server_url())).await;
        assert_eq!(server.model(), MODEL);
        assert_eq!(server.dimension(), DIMENSION);
        let builtin = BuiltinEmbedder::load(&model_dir()).unwrap();

        let long = "The quick brown fox jumps over the lazy dog near the riverbank. ".repeat(60);
        let items = texts(&[
            "hello world",
            "A memory vault keeps files, notes and their embeddings at the edge.",
            "Der schnelle braune Fuchs springt über den faulen Hund.",
            "",
            "tokenization: don't split café, naïve or 東京 wrongly!",
            &long,
        ]);
        let remote = server.embed(&items).await.unwrap();
        let local = builtin.embed(&items).await.unwrap();
        assert_eq!(remote.len(), items.len());
        assert_unit(&remote);
        for (i, (r, l)) in remote.iter().zip(&local).enumerate() {
            let c = cosine(r, l);
            assert!(c >= MIN_COSINE, "text {i}: cosine {c}");
        }
        assert!(server.embed(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn batches_keep_the_order_of_the_texts() {
        let (proxy, url) = Proxy::start(None).await;
        let mut opts = options(&url);
        opts.batch_size = 2;
        opts.dimension = Some(DIMENSION);
        let server = connect(opts).await;
        assert_eq!(proxy.requests(), 1, "the probe");

        let items = texts(&[
            "one apple",
            "two bicycles",
            "three castles",
            "four dolphins",
            "five elephants",
            "six fountains",
            "seven glaciers",
        ]);
        // Every answer's data array is reversed (the index fields stay): order comes from them.
        proxy.fail_next((0..4).map(|_| Fault::Rewrite(reverse_data)));
        let vectors = server.embed(&items).await.unwrap();
        assert_eq!(proxy.requests(), 1 + 4, "7 texts in batches of 2");
        let sent: Vec<Value> = proxy.bodies.lock().unwrap()[1..].to_vec();
        let inputs: Vec<Value> = sent.iter().map(|b| b["input"].clone()).collect();
        assert_eq!(
            inputs,
            vec![
                json!(["one apple", "two bicycles"]),
                json!(["three castles", "four dolphins"]),
                json!(["five elephants", "six fountains"]),
                json!(["seven glaciers"]),
            ]
        );
        for body in &sent {
            assert_eq!(body["model"], MODEL);
            assert_eq!(body["encoding_format"], "float");
        }

        let builtin = BuiltinEmbedder::load(&model_dir()).unwrap();
        let reference = builtin.embed(&items).await.unwrap();
        for (i, v) in vectors.iter().enumerate() {
            for (j, r) in reference.iter().enumerate() {
                let c = cosine(v, r);
                if i == j {
                    assert!(c >= MIN_COSINE, "text {i}: cosine {c}");
                } else {
                    assert!(c < 0.9, "text {i} resembles text {j}: cosine {c}");
                }
            }
        }
    }

    fn reverse_data(answer: &mut Value) {
        answer["data"].as_array_mut().unwrap().reverse();
    }

    #[tokio::test]
    async fn an_empty_text_is_sent_as_a_space() {
        let (proxy, url) = Proxy::start(None).await;
        let server = connect(options(&url)).await;
        let vectors = server.embed(&texts(&["", "x", ""])).await.unwrap();
        assert_unit(&vectors);
        assert_eq!(
            proxy.bodies.lock().unwrap()[1]["input"],
            json!([" ", "x", " "])
        );
        assert!(cosine(&vectors[0], &vectors[2]) > 0.999_999);
    }

    #[tokio::test]
    async fn the_dimension_is_learned_by_one_probe() {
        let (proxy, url) = Proxy::start(None).await;
        let server = connect(options(&url)).await;
        assert_eq!(server.dimension(), DIMENSION);
        assert_eq!(proxy.requests(), 1);
        assert_eq!(
            proxy.bodies.lock().unwrap()[0],
            json!({"model": MODEL, "input": ["dimension probe"], "encoding_format": "float"})
        );
        // No request for no texts.
        assert!(server.embed(&[]).await.unwrap().is_empty());
        assert_eq!(proxy.requests(), 1);
    }

    #[tokio::test]
    async fn a_wrong_configured_dimension_is_an_error_naming_both() {
        let mut opts = options(&server_url());
        opts.dimension = Some(768);
        let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("embeddings.dimension"));
        let message = err.to_string();
        assert!(
            message.contains("768") && message.contains("384"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_after_the_retries() {
        // A port that was free a moment ago: connections are refused.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut opts = options(&format!("http://127.0.0.1:{port}/v1"));
        opts.timeout = Duration::from_millis(500);
        opts.max_retries = 2;
        let started = Instant::now();
        let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let message = err.to_string();
        assert!(message.contains("3 time(s)"), "{message}");
        assert!(message.contains("cannot connect"), "{message}");
        // Two backoffs of at most 200 and 400 ms.
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out_and_is_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        // Accepts and keeps every connection, never answering.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let mut opts = options(&format!("http://{addr}/v1"));
        opts.timeout = Duration::from_millis(300);
        opts.max_retries = 1;
        let started = Instant::now();
        let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rate_limits_and_server_errors_are_retried() {
        let (proxy, url) = Proxy::start(None).await;
        let mut opts = options(&url);
        opts.max_retries = 4;
        let server = connect(opts).await;
        let items = texts(&["retried text", "another one"]);
        let direct = connect(options(&server_url()))
            .await
            .embed(&items)
            .await
            .unwrap();

        proxy.fail_next([
            Fault::Status(StatusCode::TOO_MANY_REQUESTS, Some("0"), "slow down".into()),
            Fault::Status(StatusCode::SERVICE_UNAVAILABLE, None, "loading".into()),
            Fault::Status(StatusCode::TOO_MANY_REQUESTS, Some("0"), "slow down".into()),
            Fault::Status(StatusCode::BAD_GATEWAY, None, "upstream".into()),
        ]);
        let before = proxy.requests();
        let vectors = server.embed(&items).await.unwrap();
        assert_eq!(
            proxy.requests() - before,
            5,
            "four failures, then the answer"
        );
        for (v, d) in vectors.iter().zip(&direct) {
            assert!(cosine(v, d) > 0.999_999);
        }

        // More failures than retries: Unavailable, with the server's last word.
        let mut opts = options(&url);
        opts.max_retries = 2;
        opts.dimension = Some(DIMENSION);
        let server = connect(opts).await;
        proxy
            .fail_next((0..3).map(|_| {
                Fault::Status(StatusCode::SERVICE_UNAVAILABLE, None, "overloaded".into())
            }));
        let before = proxy.requests();
        let err = server.embed(&items).await.unwrap_err();
        assert_eq!(proxy.requests() - before, 3);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let message = err.to_string();
        assert!(
            message.contains("503") && message.contains("overloaded"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn client_errors_fail_at_once_with_the_servers_message() {
        let (proxy, url) = Proxy::start(None).await;
        let mut opts = options(&url);
        opts.max_retries = 4;
        let server = connect(opts).await;

        // The real server refuses a text over its length limit (122880 characters) with 422.
        let before = proxy.requests();
        let err = server.embed(&["ab".repeat(70_000)]).await.unwrap_err();
        assert_eq!(proxy.requests() - before, 1, "not retried");
        assert_eq!(err.kind(), ErrorKind::Internal);
        let message = err.to_string();
        assert!(message.contains("422"), "{message}");
        assert!(message.contains("String should have at most"), "{message}");
        assert!(
            message.len() < 700,
            "the server's message is cut: {message}"
        );

        // A 400 in OpenAI's form: its message, whole when short.
        let said = "This model's maximum context length is 8192 tokens";
        proxy.fail_next([Fault::Status(StatusCode::BAD_REQUEST, None, said.into())]);
        let before = proxy.requests();
        let err = server.embed(&texts(&["x"])).await.unwrap_err();
        assert_eq!(proxy.requests() - before, 1, "not retried");
        assert_eq!(err.kind(), ErrorKind::Internal);
        let message = err.to_string();
        assert!(
            message.contains("400") && message.contains(said),
            "{message}"
        );
    }

    /// A change made to an answer or to options, for a table of cases.
    type Mutation<T> = fn(&mut T);

    #[tokio::test]
    async fn broken_answers_are_internal_errors() {
        let (proxy, url) = Proxy::start(None).await;
        let mut opts = options(&url);
        opts.batch_size = 3;
        let server = connect(opts).await;
        let items = texts(&["a", "b", "c"]);
        let cases: [(Mutation<Value>, &str); 5] = [
            (
                |v| v["data"][1]["embedding"] = json!(vec![0.0; DIMENSION]),
                "the vector of index 1 is all zeros",
            ),
            (
                |v| {
                    v["data"][0]["embedding"].as_array_mut().unwrap().pop();
                },
                "has 383 dimensions, not 384",
            ),
            (|v| v["data"][2]["index"] = json!(0), "index 0 twice"),
            (
                |v| v["data"][2]["index"] = json!(7),
                "index 7 for a batch of 3",
            ),
            (
                |v| {
                    v["data"].as_array_mut().unwrap().pop();
                },
                "2 vectors for 3 texts",
            ),
        ];
        for (rewrite, want) in cases {
            proxy.fail_next([Fault::Rewrite(rewrite)]);
            let before = proxy.requests();
            let err = server.embed(&items).await.unwrap_err();
            assert_eq!(proxy.requests() - before, 1, "not retried");
            assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
        // And the next answer is fine again.
        assert_eq!(server.embed(&items).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn the_api_key_is_sent_as_a_bearer_and_never_shown() {
        let (proxy, url) = Proxy::start(Some(KEY)).await;
        let mut opts = options(&url);
        opts.api_key = Some(KEY.to_owned());
        let shown = format!("{opts:?}");
        assert!(shown.contains(r#"api_key: Some("<redacted>")"#), "{shown}");
        assert!(!shown.contains(KEY), "{shown}");

        let server = connect(opts).await;
        let vectors = server.embed(&texts(&["secret things"])).await.unwrap();
        assert_unit(&vectors);
        let shown = format!("{server:?}");
        assert!(
            shown.contains("<redacted>") && !shown.contains(KEY),
            "{shown}"
        );

        // No key: the server's 401 says a key is needed.
        let before = proxy.requests();
        let err = OpenAiEmbedder::connect(options(&url)).await.unwrap_err();
        assert_eq!(proxy.requests() - before, 1, "not retried");
        assert_eq!(err.field(), Some("embeddings.api_key"));
        assert!(err.to_string().contains("requires an API key"), "{err}");

        // A wrong key: refused, and the server's echo of it is not repeated.
        let wrong = "sk-wrong-0123456789";
        let mut opts = options(&url);
        opts.api_key = Some(wrong.to_owned());
        let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
        assert_eq!(err.field(), Some("embeddings.api_key"));
        let message = err.to_string();
        assert!(message.contains("refused the API key"), "{message}");
        assert!(message.contains("401"), "{message}");
        assert!(!message.contains(wrong), "{message}");
        assert!(!format!("{err:?}").contains(wrong));
    }

    #[tokio::test]
    async fn invalid_options_name_their_field() {
        let url = server_url();
        let cases: [(Mutation<OpenAiOptions>, &str); 10] = [
            (
                |o| o.base_url = "localhost:11434".into(),
                "embeddings.base_url",
            ),
            (
                |o| o.base_url = "ftp://localhost/v1".into(),
                "embeddings.base_url",
            ),
            (
                |o| o.base_url = "http://k:s@localhost/v1".into(),
                "embeddings.base_url",
            ),
            (|o| o.model = " ".into(), "embeddings.model"),
            (|o| o.api_key = Some(String::new()), "embeddings.api_key"),
            (
                |o| o.api_key = Some("two words".into()),
                "embeddings.api_key",
            ),
            (|o| o.dimension = Some(0), "embeddings.dimension"),
            (|o| o.batch_size = 0, "embeddings.batch_size"),
            (|o| o.timeout = Duration::ZERO, "embeddings.timeout"),
            (|o| o.max_retries = 1000, "embeddings.max_retries"),
        ];
        for (change, field) in cases {
            let mut opts = options(&url);
            change(&mut opts);
            let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert_eq!(err.field(), Some(field), "{err}");
        }
        // A key with a space is refused without being shown.
        let mut opts = options(&url);
        opts.api_key = Some("two words".into());
        let err = OpenAiEmbedder::connect(opts).await.unwrap_err();
        assert!(!err.to_string().contains("two words"), "{err}");
    }

    #[test]
    fn the_api_key_may_come_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            OpenAiOptions::api_key_from_vars(env(&[("OPENAI_API_KEY", "from-openai")])),
            Some("from-openai".to_owned())
        );
        assert_eq!(
            OpenAiOptions::api_key_from_vars(env(&[
                ("OPENAI_API_KEY", "from-openai"),
                ("P8FS_EMBEDDINGS_API_KEY", "from-p8fs"),
            ])),
            Some("from-p8fs".to_owned())
        );
        // The process's own environment, read the same way.
        let expected = ["P8FS_EMBEDDINGS_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .find(|v| !v.is_empty());
        assert_eq!(OpenAiOptions::api_key_from_env(), expected);
        // A configured key wins over the environment.
        let mut opts = OpenAiOptions::new("http://localhost/v1", MODEL);
        opts.api_key = Some("configured".into());
        assert_eq!(
            opts.or_api_key_from_env().api_key.as_deref(),
            Some("configured")
        );
    }
}
