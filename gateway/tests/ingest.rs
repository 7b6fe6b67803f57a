//! The ingest pipeline as its users meet it: the real `p8fs` binary with the builtin embedding
//! model, files uploaded with the AWS CLI, and the REST API's `/v1/index`, `/v1/search` and
//! `/v1/memories` answering. On every backend a small corpus of Markdown, text, HTML, JSON and
//! PDF files is indexed and found by questions phrased otherwise than the texts; on RocksDB, bad
//! files fail with their codes without stopping the worker, `kill -9` during ingest ends with
//! every object indexed exactly once, and two tenants never see each other's chunks.
//!
//! These tests fail, never skip, when the model, the AWS CLI or a database is missing:
//! `scripts/services/model.sh install` installs the model (`P8FS_TEST_MODEL_DIR` names it),
//! `scripts/install-deps.sh` the AWS CLI, and `scripts/test-all.sh` starts the databases.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod ingest {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs::File;
    use std::io::{BufWriter, Read, Write};
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    const P8FS: &str = env!("CARGO_BIN_EXE_p8fs");
    /// The collection the builtin model's chunks are stored in, in every tenant.
    const COLLECTION: &str = "memory.all-MiniLM-L6-v2.384";
    /// The scopes of the tests' tokens.
    const SCOPES: &str = "memories:read memories:write s3:read s3:write vectors:read";
    /// How long an upload may take to be indexed (or fail) before the test gives up.
    const INDEX_TIMEOUT: Duration = Duration::from_secs(120);

    fn env(variable: &str) -> String {
        std::env::var(variable).unwrap_or_else(|_| {
            panic!("{variable} is not set: run the tests with scripts/test-all.sh")
        })
    }

    /// The builtin model's directory.
    fn model_dir() -> String {
        std::env::var("P8FS_TEST_MODEL_DIR").unwrap_or_else(|_| {
            panic!(
                "P8FS_TEST_MODEL_DIR is not set: run the tests with scripts/test-all.sh, or set it \
                 to the output of `scripts/services/model.sh dir` after `scripts/services/model.sh install`"
            )
        })
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

    /// `CREATEDB ingest_<name>` (a command printing the new database's URL).
    fn createdb(createdb: &str, name: &str) -> String {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!("{createdb} ingest_{name}"));
        let created = succeeded(
            run(command, Duration::from_secs(60), "createdb"),
            "createdb",
        );
        created.trim().to_owned()
    }

    /// The storage settings of a backend, as environment variables for `p8fs`. The SQL
    /// backends get a database of their own: the ingest worker indexes every tenant of its
    /// database, and in a shared one it would write index records into the tenants of tests
    /// running beside it (whose change logs those tests compare exactly). TiDB's comes from
    /// `P8FS_TEST_TIDB_CREATEDB`, or else this repository's `scripts/services/mariadb.sh
    /// createdb` (the stand-in `P8FS_TEST_TIDB_URL` names).
    fn storage_env(backend: &str, name: &str) -> Vec<(String, String)> {
        match backend {
            "rocksdb" => Vec::new(),
            "postgres" => vec![
                ("P8FS_STORAGE_PROVIDER".into(), "postgres".into()),
                (
                    "P8FS_STORAGE_URL".into(),
                    createdb(&env("P8FS_TEST_POSTGRES_CREATEDB"), name),
                ),
            ],
            "tidb" => {
                env("P8FS_TEST_TIDB_URL");
                let command = std::env::var("P8FS_TEST_TIDB_CREATEDB").unwrap_or_else(|_| {
                    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../scripts/services/mariadb.sh");
                    format!("{} createdb", script.display())
                });
                vec![
                    ("P8FS_STORAGE_PROVIDER".into(), "tidb".into()),
                    ("P8FS_STORAGE_URL".into(), createdb(&command, name)),
                ]
            }
            other => panic!("unknown backend {other}"),
        }
    }

    /// The object reaper of a test server on a shared SQL server must not reap what other tests
    /// leave pending there.
    const NO_REAPING: &str =
        "[s3]\nabandoned_upload_age = \"100years\"\nfreed_grace = \"100years\"\n";

    /// A `p8fs serve` of its own with the builtin embedder (from `P8FS_TEST_MODEL_DIR`) and the
    /// S3 listener on free loopback ports; its output goes to `server.log` in its directory.
    struct Server {
        child: Option<Child>,
        dir: tempfile::TempDir,
        backend: String,
        storage: Vec<(String, String)>,
        http_port: u16,
        s3_port: u16,
        extra: String,
    }

    impl Server {
        fn start(backend: &str, extra: &str) -> Server {
            let model = model_dir();
            let dir = tempfile::tempdir().unwrap();
            let mut storage = storage_env(backend, &unique(dir.path()));
            storage.push(("P8FS_EMBEDDINGS_MODEL_DIR".into(), model));
            let mut server = Server {
                child: None,
                dir,
                backend: backend.to_owned(),
                storage,
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

        fn log_path(&self) -> PathBuf {
            self.dir.path().join("server.log")
        }

        /// The end of the server's output, for failure messages.
        fn log_tail(&self) -> String {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let start = log.len().saturating_sub(4000);
            let start = (start..=log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(log.len());
            format!("--- the end of the server's log\n{}", &log[start..])
        }

        fn command(&self, args: &[&str]) -> Command {
            let mut command = Command::new(P8FS);
            command
                .args(args)
                .arg("--config")
                .arg(self.config())
                .arg("--data-dir")
                .arg(self.dir.path().join("data"))
                .envs(self.storage.iter().cloned());
            command
        }

        fn spawn(&mut self) {
            std::fs::write(
                self.config(),
                format!("[log]\nlevel = \"warn\"\n\n{}\n", self.extra),
            )
            .unwrap();
            let log = File::options()
                .create(true)
                .append(true)
                .open(self.log_path())
                .unwrap();
            let mut command = self.command(&["serve"]);
            command
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.http_port))
                .env("P8FS_S3_LISTEN", format!("127.0.0.1:{}", self.s3_port))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            self.child = Some(command.spawn().unwrap());
            let started = Instant::now();
            while !self.ready() {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!(
                        "p8fs serve on {} exited with {status}\n{}",
                        self.backend,
                        self.log_tail()
                    );
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "p8fs serve on {} did not come up\n{}",
                    self.backend,
                    self.log_tail()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// Whether `/readyz` answers 200 and the S3 listener accepts connections.
        fn ready(&self) -> bool {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
            let mut answer = String::new();
            stream.write_all(request.as_bytes()).is_ok()
                && stream.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
                && std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok()
        }

        /// `p8fs s3 keys create --tenant T` through the running server, and an AWS CLI with it.
        fn aws(&self, tenant: &str) -> Aws {
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
            Aws {
                endpoint: format!("http://127.0.0.1:{}", self.s3_port),
                key: value("AWS_ACCESS_KEY_ID"),
                secret: value("AWS_SECRET_ACCESS_KEY"),
                home: tempfile::tempdir().unwrap(),
            }
        }

        /// A REST client of `tenant` with a token of [`SCOPES`].
        fn api(&self, tenant: &str) -> Api {
            let token = succeeded(
                run(
                    self.command(&[
                        "token", "issue", "--tenant", tenant, "--sub", "me", "--scope", SCOPES,
                    ]),
                    Duration::from_secs(30),
                    "p8fs token issue",
                ),
                "p8fs token issue",
            );
            Api {
                client: reqwest::Client::new(),
                base: format!("http://127.0.0.1:{}", self.http_port),
                token: token.trim().to_owned(),
            }
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

    /// The AWS CLI with one access key, isolated from any configuration of the machine.
    struct Aws {
        endpoint: String,
        key: String,
        secret: String,
        home: tempfile::TempDir,
    }

    impl Aws {
        fn run(&self, args: &[&str]) -> String {
            let mut command = Command::new("aws");
            command
                .arg("--endpoint-url")
                .arg(&self.endpoint)
                .args(args)
                .env("AWS_ACCESS_KEY_ID", &self.key)
                .env("AWS_SECRET_ACCESS_KEY", &self.secret)
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .env("AWS_CONFIG_FILE", self.home.path().join("config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    self.home.path().join("credentials"),
                )
                .env("AWS_MAX_ATTEMPTS", "1")
                .env_remove("AWS_SESSION_TOKEN")
                .env_remove("AWS_PROFILE");
            let what = format!("aws {}", args.join(" "));
            succeeded(run(command, Duration::from_secs(600), &what), &what)
        }

        fn mb(&self, bucket: &str) {
            self.run(&["s3", "mb", &format!("s3://{bucket}")]);
        }

        /// `aws s3 cp --recursive` of a folder into a bucket.
        fn upload_dir(&self, dir: &Path, bucket: &str) {
            self.run(&[
                "s3",
                "cp",
                "--recursive",
                "--only-show-errors",
                dir.to_str().unwrap(),
                &format!("s3://{bucket}/"),
            ]);
        }

        fn upload(&self, file: &Path, bucket: &str, key: &str) {
            self.run(&[
                "s3",
                "cp",
                "--only-show-errors",
                file.to_str().unwrap(),
                &format!("s3://{bucket}/{key}"),
            ]);
        }
    }

    /// The REST API with one tenant's token.
    struct Api {
        client: reqwest::Client,
        base: String,
        token: String,
    }

    impl Api {
        async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .query(query)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (status, value)
        }

        /// A POST with a JSON body: the status code and the body.
        async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
            let response = self
                .client
                .post(format!("{}{path}", self.base))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("POST {path}: {e}"));
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap();
            let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            (status, value)
        }

        /// `GET /v1/index/{bucket}/{key}`: the status code and the body.
        async fn index(&self, bucket: &str, key: &str) -> (u16, Value) {
            self.get(&format!("/v1/index/{bucket}/{key}"), &[]).await
        }

        /// `GET /v1/search`: the hits.
        async fn search(&self, q: &str, k: usize, filters: &[(&str, &str)]) -> Vec<Value> {
            let k = k.to_string();
            let mut query = vec![("q", q), ("k", k.as_str())];
            query.extend_from_slice(filters);
            let (status, body) = self.get("/v1/search", &query).await;
            assert_eq!(status, 200, "GET /v1/search?q={q}: {body}");
            body["hits"]
                .as_array()
                .unwrap_or_else(|| panic!("no hits array in {body}"))
                .clone()
        }

        async fn remember(&self, body: Value) -> Value {
            let response = self
                .client
                .post(format!("{}/v1/memories", self.base))
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let value: Value = response.json().await.unwrap();
            assert_eq!(status, 201, "POST /v1/memories {body}: {value}");
            value
        }

        async fn forget(&self, id: &str) {
            let response = self
                .client
                .delete(format!("{}/v1/memories/{id}", self.base))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 204, "DELETE /v1/memories/{id}");
        }

        /// The status of each of `keys` of `bucket` once none is `pending`.
        async fn settled(
            &self,
            server: &Server,
            bucket: &str,
            keys: &[&str],
        ) -> BTreeMap<String, Value> {
            let deadline = Instant::now() + INDEX_TIMEOUT;
            let mut done = BTreeMap::new();
            loop {
                for key in keys {
                    if done.contains_key(*key) {
                        continue;
                    }
                    let (status, body) = self.index(bucket, key).await;
                    assert_eq!(status, 200, "GET /v1/index/{bucket}/{key}: {body}");
                    if body["state"] != "pending" {
                        done.insert((*key).to_owned(), body);
                    }
                }
                if done.len() == keys.len() {
                    return done;
                }
                let pending: Vec<&&str> = keys
                    .iter()
                    .filter(|key| !done.contains_key(**key))
                    .collect();
                assert!(
                    Instant::now() < deadline,
                    "still pending after {INDEX_TIMEOUT:?} on {}: {pending:?} of bucket {bucket}\n{}",
                    server.backend,
                    server.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }

        /// Every record of the chunks' collection.
        async fn chunk_records(&self) -> Vec<Value> {
            let mut records = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut query = vec![("limit", "1000")];
                if let Some(after) = &after {
                    query.push(("start_after", after.as_str()));
                }
                let (status, body) = self
                    .get(&format!("/v1/collections/{COLLECTION}/records"), &query)
                    .await;
                assert_eq!(
                    status, 200,
                    "GET /v1/collections/{COLLECTION}/records: {body}"
                );
                records.extend(body["items"].as_array().unwrap().iter().cloned());
                match body["next"].as_str() {
                    Some(next) => after = Some(next.to_owned()),
                    None => return records,
                }
            }
        }
    }

    /// Whether a hit is a chunk of `bucket/key`.
    fn is_object(hit: &Value, bucket: &str, key: &str) -> bool {
        hit["source"]["kind"] == "object"
            && hit["source"]["bucket"] == bucket
            && hit["source"]["key"] == key
    }

    /// A hit for failure messages: where from, the score and the text's start.
    fn describe(hits: &[Value]) -> String {
        hits.iter()
            .map(|hit| {
                let text = hit["text"].as_str().unwrap_or_default();
                let short: String = text.chars().take(80).collect();
                format!(
                    "  {:.3} {} {:?}",
                    hit["score"].as_f64().unwrap_or_default(),
                    hit["source"],
                    short
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A one-page PDF whose text layer holds `lines` (Helvetica, WinAnsi), with a correct
    /// cross-reference table: a real file as any PDF writer makes it, written here so the test
    /// needs no PDF library.
    fn pdf(lines: &[&str]) -> Vec<u8> {
        let mut content = String::from("BT\n/F1 11 Tf\n14 TL\n72 720 Td\n");
        for line in lines {
            let escaped = line
                .replace('\\', "\\\\")
                .replace('(', "\\(")
                .replace(')', "\\)");
            content.push_str(&format!("({escaped}) Tj T*\n"));
        }
        content.push_str("ET\n");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_owned(),
            format!(
                "<< /Length {} >>\nstream\n{content}endstream",
                content.len()
            ),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_owned(),
        ];
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
        }
        let xref = out.len();
        out.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for offset in offsets {
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    const GARDEN_MD: &str = "# Growing tomatoes\n\n\
        Tomato seedlings want six to eight hours of direct sunlight every day. Water them deeply \
        at the base of the stem in the early morning, never on the leaves, and tie the vines to \
        stakes or cages as they climb. Pinch off the suckers that sprout between the main stem \
        and the branches so the plant puts its strength into the fruit.\n\n\
        ## Soil\n\nRich, well-drained soil with compost dug in before planting keeps the plants \
        healthy; mulch holds the moisture in during the hot weeks of summer.\n";
    const BREAD_TXT: &str = "Baking sourdough at home\n\n\
        Feed the starter with equal weights of flour and water the evening before. In the \
        morning mix five hundred grams of bread flour with three hundred and fifty grams of \
        water and a spoonful of the bubbly starter, then add salt. Fold the dough every half \
        hour for two hours, shape it into a round, let it proof overnight in the fridge and \
        bake it in a covered cast-iron pot in a very hot oven until the crust is deep brown.\n";
    const VOLCANO_HTML: &str = "<!DOCTYPE html>\n<html><head><title>Volcanoes</title>\n\
        <style>body { font-family: serif; color: #333 }</style>\n\
        <script>var zebracornTracking = 'zebracorn-pixel-7731'; \
        document.title = 'zebracorn analytics loaded';</script>\n</head>\n<body>\n\
        <h1>How volcanoes erupt</h1>\n\
        <p>Deep below the crust, rock melts into magma that is lighter than the solid rock \
        around it, so it rises and collects in a chamber under the volcano. When the pressure of \
        the dissolved gases grows too high, the magma bursts out through vents as lava, ash and \
        glowing clouds that race down the slopes.</p>\n\
        <p>Some volcanoes, like those of Hawaii, pour out runny lava gently; others explode \
        violently and bury whole towns under ash.</p>\n</body></html>\n";
    const TRAIN_JSON: &str = r#"{
  "route": "Zurich to Milan",
  "operator": "national railways",
  "departure": "08:32",
  "arrival": "11:50",
  "description": "The express train leaves Zurich main station, runs along the lake and crosses under the Alps through the Gotthard base tunnel, the longest railway tunnel in the world, before arriving in Milan.",
  "stops": ["Zug", "Arth-Goldau", "Bellinzona", "Lugano", "Como"]
}
"#;
    const WHALE_LINES: [&str; 5] = [
        "Humpback whales travel thousands of kilometres every year,",
        "from cold polar feeding grounds to warm tropical waters where they give birth.",
        "The males sing long, complex songs that can be heard across the ocean,",
        "and every population slowly changes its song from one season to the next.",
        "Scientists record these songs with underwater microphones to follow the migration.",
    ];
    const ORCHID_MD: &str = "# Caring for orchids indoors\n\n\
        Moth orchids thrive on a bright windowsill out of the midday sun. Pot them in coarse \
        bark rather than soil, water them once a week by soaking the roots and letting them \
        drain, and keep the humidity high with a tray of wet pebbles under the pot. After the \
        blooms fall, cut the flower spike above a node and a new spike may grow.\n";

    /// The corpus of the first test: (key, content).
    fn corpus() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("notes/garden.md", GARDEN_MD.as_bytes().to_vec()),
            ("notes/bread.txt", BREAD_TXT.as_bytes().to_vec()),
            ("web/volcano.html", VOLCANO_HTML.as_bytes().to_vec()),
            ("data/train.json", TRAIN_JSON.as_bytes().to_vec()),
            ("papers/whales.pdf", pdf(&WHALE_LINES)),
        ]
    }

    /// Asserts that the first hit of `question` is a chunk of `bucket/key`.
    async fn first_hit_is(api: &Api, question: &str, bucket: &str, key: &str) -> Vec<Value> {
        let hits = api.search(question, 10, &[]).await;
        assert!(
            hits.first().is_some_and(|hit| is_object(hit, bucket, key)),
            "the first hit of {question:?} is not {bucket}/{key}:\n{}",
            describe(&hits)
        );
        hits
    }

    /// Polls a search until `done` holds of its hits.
    async fn eventually(
        api: &Api,
        server: &Server,
        question: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) {
        let deadline = Instant::now() + INDEX_TIMEOUT;
        loop {
            let hits = api.search(question, 100, &[]).await;
            if done(&hits) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not so after {INDEX_TIMEOUT:?}; the hits of {question:?}:\n{}\n{}",
                describe(&hits),
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `mode=approximate` (any `ef`) on a collection this small is answered exactly, through
    /// `GET /v1/search` and `POST /v1/search`; a bad `mode` or `ef` is a 400 naming it.
    async fn approximate_search_finds_what_exact_finds(api: &Api) {
        let question = "what makes molten rock explode out of a mountain";
        let (status, exact) = api.get("/v1/search", &[("q", question), ("k", "5")]).await;
        assert_eq!(status, 200, "{exact}");
        assert!(!exact["hits"].as_array().unwrap().is_empty(), "{exact}");
        for mode in [
            vec![("mode", "exact")],
            vec![("mode", "approximate")],
            vec![("mode", "approximate"), ("ef", "1")],
            vec![("mode", "approximate"), ("ef", "4096")],
        ] {
            let mut query = vec![("q", question), ("k", "5")];
            query.extend_from_slice(&mode);
            let (status, found) = api.get("/v1/search", &query).await;
            assert_eq!(status, 200, "{mode:?}: {found}");
            assert_eq!(found, exact, "GET /v1/search with {mode:?}");
        }
        for body in [
            json!({"q": question, "k": 5, "mode": "approximate"}),
            json!({"q": question, "k": 5, "mode": "approximate", "ef": 16}),
        ] {
            let (status, found) = api.post("/v1/search", &body).await;
            assert_eq!(status, 200, "{body}: {found}");
            assert_eq!(found, exact, "POST /v1/search {body}");
        }
        for (query, field) in [
            (vec![("mode", "fast")], "mode"),
            (vec![("mode", "approximate"), ("ef", "0")], "ef"),
            (vec![("mode", "approximate"), ("ef", "4097")], "ef"),
            (vec![("mode", "approximate"), ("ef", "1.5")], "ef"),
            (vec![("ef", "8")], "ef"),
            (vec![("mode", "exact"), ("ef", "8")], "ef"),
        ] {
            let mut params = vec![("q", question)];
            params.extend_from_slice(&query);
            let (status, problem) = api.get("/v1/search", &params).await;
            assert_eq!(
                (status, &problem["field"]),
                (400, &json!(field)),
                "GET /v1/search with {query:?}: {problem}"
            );
        }
        for (body, field) in [
            (json!({"q": question, "mode": "fast"}), "mode"),
            (json!({"q": question, "mode": "approximate", "ef": 0}), "ef"),
            (json!({"q": question, "ef": 8}), "ef"),
        ] {
            let (status, problem) = api.post("/v1/search", &body).await;
            assert_eq!(
                (status, &problem["field"]),
                (400, &json!(field)),
                "POST /v1/search {body}: {problem}"
            );
        }
    }

    async fn upload_is_indexed_and_found(backend: &str) {
        let server = Server::start(backend, NO_REAPING);
        let tenant = format!("ingest-{}", unique(server.dir.path()));
        let aws = server.aws(&tenant);
        let api = server.api(&tenant);
        let bucket = "library";
        aws.mb(bucket);
        let folder = tempfile::tempdir().unwrap();
        let files = corpus();
        for (key, bytes) in &files {
            write(folder.path(), key, bytes);
        }
        aws.upload_dir(folder.path(), bucket);
        let keys: Vec<&str> = files.iter().map(|(key, _)| *key).collect();
        let statuses = api.settled(&server, bucket, &keys).await;
        for (key, format) in [
            ("notes/garden.md", "markdown"),
            ("notes/bread.txt", "text"),
            ("web/volcano.html", "html"),
            ("data/train.json", "json"),
            ("papers/whales.pdf", "pdf"),
        ] {
            let status = &statuses[key];
            assert_eq!(status["state"], "indexed", "{key}: {status}");
            assert_eq!(status["format"], format, "{key}: {status}");
            assert!(status["chunks"].as_u64().unwrap() >= 1, "{key}: {status}");
            assert_eq!(status["truncated"], false, "{key}: {status}");
        }

        // Questions in other words than the files'.
        for (question, key) in [
            (
                "how do I look after the vegetable plants in my backyard patch",
                "notes/garden.md",
            ),
            (
                "recipe for a loaf leavened with wild yeast",
                "notes/bread.txt",
            ),
            (
                "what makes molten rock explode out of a mountain",
                "web/volcano.html",
            ),
            (
                "rail journey from Switzerland to Italy beneath the mountains",
                "data/train.json",
            ),
            (
                "migration and singing of large sea mammals",
                "papers/whales.pdf",
            ),
        ] {
            first_hit_is(&api, question, bucket, key).await;
        }
        approximate_search_finds_what_exact_finds(&api).await;
        // The HTML page's script and style are not text of the page: in no chunk record, and
        // in no hit.
        for record in api.chunk_records().await {
            let text = record["metadata"]["text"].as_str().unwrap_or_default();
            assert!(
                !text.contains("zebracorn") && !text.contains("font-family"),
                "a chunk holds the page's script or style: {}",
                record["metadata"]
            );
        }
        for question in ["zebracorn analytics tracking pixel", "How volcanoes erupt"] {
            let hits = api.search(question, 100, &[]).await;
            assert!(!hits.is_empty(), "no hits for {question:?}");
            for hit in &hits {
                let text = hit["text"].as_str().unwrap();
                assert!(
                    !text.contains("zebracorn") && !text.contains("font-family"),
                    "a chunk holds the page's script or style: {hit}"
                );
            }
        }
        let hits = api
            .search(
                "lava and ash",
                10,
                &[("source", "object"), ("bucket", bucket)],
            )
            .await;
        assert!(
            hits.iter()
                .all(|hit| hit["source"]["kind"] == "object" && hit["source"]["bucket"] == bucket),
            "filtered by source and bucket:\n{}",
            describe(&hits)
        );

        // A memory is found at once, and gone once deleted.
        let memory = api
            .remember(json!({
                "text": "My dentist appointment with Dr. Alvarez is on Tuesday at three in the afternoon.",
                "tags": ["health"],
                "metadata": {"kind": "appointment"},
            }))
            .await;
        let id = memory["id"].as_str().unwrap().to_owned();
        assert!(memory["chunks"].as_u64().unwrap() >= 1, "{memory}");
        let question = "when do I have to see the doctor for my teeth";
        let hits = api.search(question, 10, &[]).await;
        assert!(
            hits.first()
                .is_some_and(|hit| hit["source"]["kind"] == "memory"
                    && hit["source"]["memory"] == id.as_str()),
            "the first hit of {question:?} is not the memory {id}:\n{}",
            describe(&hits)
        );
        let hits = api
            .search(
                question,
                10,
                &[
                    ("source", "memory"),
                    ("tags", "health"),
                    ("metadata", r#"{"kind":"appointment"}"#),
                ],
            )
            .await;
        assert!(
            hits.first()
                .is_some_and(|hit| hit["source"]["memory"] == id.as_str()),
            "filtered by tags and metadata:\n{}",
            describe(&hits)
        );
        api.forget(&id).await;
        let hits = api.search(question, 100, &[]).await;
        assert!(
            hits.iter()
                .all(|hit| hit["source"]["memory"] != id.as_str()),
            "the deleted memory is still found:\n{}",
            describe(&hits)
        );
        let (status, body) = api.get(&format!("/v1/memories/{id}"), &[]).await;
        assert_eq!(status, 404, "GET of a deleted memory: {body}");

        // A new version of a file replaces the old one's chunks.
        let orchid = folder.path().join("orchid.md");
        std::fs::write(&orchid, ORCHID_MD).unwrap();
        aws.upload(&orchid, bucket, "notes/garden.md");
        let status = &api.settled(&server, bucket, &["notes/garden.md"]).await["notes/garden.md"];
        assert_eq!(status["state"], "indexed", "{status}");
        let hits = first_hit_is(
            &api,
            "keeping flowering house plants alive on a windowsill",
            bucket,
            "notes/garden.md",
        )
        .await;
        assert!(
            hits[0]["text"].as_str().unwrap().contains("orchids"),
            "the new text is not what is found: {}",
            hits[0]
        );
        for question in [
            "growing tomatoes",
            "tomato seedlings sunlight stakes suckers",
        ] {
            let hits = api.search(question, 100, &[]).await;
            assert!(
                hits.iter()
                    .all(|hit| !hit["text"].as_str().unwrap().contains("omato")),
                "the replaced version is still found:\n{}",
                describe(&hits)
            );
        }

        // A deleted file's chunks go.
        aws.run(&["s3", "rm", &format!("s3://{bucket}/notes/bread.txt")]);
        eventually(
            &api,
            &server,
            "sourdough bread baking",
            "the deleted notes/bread.txt is no longer found",
            |hits| {
                hits.iter()
                    .all(|hit| !is_object(hit, bucket, "notes/bread.txt"))
            },
        )
        .await;
        let (status, body) = api.index(bucket, "notes/bread.txt").await;
        assert_eq!(status, 404, "the index status of a deleted object: {body}");

        // No chunk record outlives its source: the replaced version's, the deleted file's and
        // the forgotten memory's are gone (removed just after the switch, so polled).
        let mut expected = 0;
        for key in [
            "notes/garden.md",
            "web/volcano.html",
            "data/train.json",
            "papers/whales.pdf",
        ] {
            let (status, body) = api.index(bucket, key).await;
            assert_eq!(status, 200, "{key}: {body}");
            expected += body["chunks"].as_u64().unwrap();
        }
        let deadline = Instant::now() + INDEX_TIMEOUT;
        loop {
            let records = api.chunk_records().await;
            if records.len() as u64 == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} chunk records for the {expected} chunks of the indexed objects: {:?}",
                records.len(),
                records.iter().map(|r| &r["id"]).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rocksdb_aws_cli_upload_is_indexed_and_found() {
        upload_is_indexed_and_found("rocksdb").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_aws_cli_upload_is_indexed_and_found() {
        upload_is_indexed_and_found("postgres").await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tidb_aws_cli_upload_is_indexed_and_found() {
        upload_is_indexed_and_found("tidb").await;
    }

    /// Writes `size` bytes of varied English-like lines to `path`.
    fn write_big_text(path: &Path, size: usize) {
        const WORDS: [&str; 16] = [
            "river", "lantern", "copper", "meadow", "quiet", "harbour", "signal", "orchard",
            "winter", "engine", "paper", "silver", "market", "thunder", "garden", "bridge",
        ];
        let mut out = BufWriter::new(File::create(path).unwrap());
        let mut written = 0;
        let mut n: u64 = 0;
        while written < size {
            let mut line = format!("Entry {n}:");
            for i in 0..12 {
                let word = WORDS[((n.wrapping_mul(2_654_435_761) >> (i * 2)) % 16) as usize];
                line.push(' ');
                line.push_str(word);
            }
            line.push_str(".\n");
            out.write_all(line.as_bytes()).unwrap();
            written += line.len();
            n += 1;
        }
        out.flush().unwrap();
    }

    /// Size of the large text file of the bad-files test.
    const BIG_TEXT: usize = 100 * 1024 * 1024;

    #[tokio::test(flavor = "multi_thread")]
    async fn rocksdb_bad_files_fail_and_never_stop_the_worker() {
        let server = Server::start("rocksdb", "[embeddings]\nmax_text_bytes = 65536\n");
        let aws = server.aws("bad-files");
        let api = server.api("bad-files");
        let bucket = "inbox";
        aws.mb(bucket);
        let folder = tempfile::tempdir().unwrap();
        let whole = pdf(&WHALE_LINES);
        write(folder.path(), "broken.pdf", &whole[..whole.len() / 2]);
        let binary: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        write(folder.path(), "binary.txt", &binary);
        write_big_text(&folder.path().join("big.txt"), BIG_TEXT);
        let started = Instant::now();
        aws.upload_dir(folder.path(), bucket);
        let uploaded = started.elapsed();
        // The empty file on its own: in one `aws s3 cp --recursive` with a multipart upload,
        // the AWS CLI fails a part now and then ('ETag') after the 0-byte PUT.
        let empty = tempfile::tempdir().unwrap();
        write(empty.path(), "empty.md", b"");
        aws.upload(&empty.path().join("empty.md"), bucket, "empty.md");
        let keys = ["broken.pdf", "binary.txt", "empty.md", "big.txt"];
        let statuses = api.settled(&server, bucket, &keys).await;
        for (key, code) in [
            ("broken.pdf", "corrupt"),
            ("binary.txt", "not_text"),
            ("empty.md", "empty"),
        ] {
            let status = &statuses[key];
            assert_eq!(status["state"], "failed", "{key}: {status}");
            assert_eq!(status["code"], code, "{key}: {status}");
            assert!(
                status["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{key}: no reason in {status}"
            );
            assert_eq!(status["chunks"], 0, "{key}: {status}");
        }
        let big = &statuses["big.txt"];
        assert_eq!(big["state"], "indexed", "big.txt: {big}");
        assert_eq!(big["truncated"], true, "big.txt: {big}");
        let chunks = big["chunks"].as_u64().unwrap();
        assert!(chunks >= 1, "big.txt: {big}");
        eprintln!(
            "the {} MiB text: uploaded in {uploaded:?}, indexed as {chunks} chunks; all settled {:?} after the upload began",
            BIG_TEXT >> 20,
            started.elapsed()
        );
        let hits = api
            .search("Entry 0: river lantern", 10, &[("bucket", bucket)])
            .await;
        assert!(
            hits.iter().all(|hit| is_object(hit, bucket, "big.txt")),
            "only big.txt has chunks in {bucket}:\n{}",
            describe(&hits)
        );
        let records = api.chunk_records().await;
        assert_eq!(
            records.len() as u64,
            chunks,
            "the failed files left chunk records"
        );

        // The worker is still at work.
        let good = folder.path().join("good.md");
        std::fs::write(&good, ORCHID_MD).unwrap();
        aws.upload(&good, bucket, "after/good.md");
        let status = &api.settled(&server, bucket, &["after/good.md"]).await["after/good.md"];
        assert_eq!(status["state"], "indexed", "{status}");
        first_hit_is(
            &api,
            "keeping flowering house plants alive on a windowsill",
            bucket,
            "after/good.md",
        )
        .await;
    }

    /// Files of the crash test.
    const CRASH_FILES: usize = 40;

    /// The sentence only file `i` of the crash test holds.
    fn crash_phrase(i: usize) -> String {
        const ANIMALS: [&str; 8] = [
            "otter", "falcon", "badger", "heron", "lynx", "walrus", "gecko", "bison",
        ];
        const PLACES: [&str; 5] = [
            "lighthouse",
            "bakery",
            "observatory",
            "shipyard",
            "vineyard",
        ];
        format!(
            "Report {i}: a {} was seen repairing the clock of the old {}.",
            ANIMALS[i % ANIMALS.len()],
            PLACES[i / ANIMALS.len() % PLACES.len()]
        )
    }

    /// File `i` of the crash test: its sentence, then paragraphs of filler.
    fn crash_file(i: usize) -> String {
        const FILLER: [&str; 4] = [
            "The committee met on a grey morning to discuss the budget for the coming year, \
             the repairs to the community hall and the schedule of the summer festival.",
            "Volunteers counted the chairs, checked the lights and wrote a list of everything \
             that still had to be bought before the doors opened to the public.",
            "Several members asked for the minutes of the previous meeting to be read aloud, \
             and a long discussion followed about the parking behind the library.",
            "In the end the treasurer promised a detailed report, and everyone agreed to meet \
             again in a fortnight at the same time and in the same room.",
        ];
        let mut text = format!("{}\n\n", crash_phrase(i));
        for n in 0..24 {
            text.push_str(FILLER[(i + n) % FILLER.len()]);
            text.push_str(if n % 2 == 1 { "\n\n" } else { " " });
        }
        text
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn rocksdb_kill_during_ingest_indexes_everything_once() {
        // Short chunks: every file is many chunks, so indexing takes long enough to be cut off.
        let mut server = Server::start(
            "rocksdb",
            "[embeddings]\nchunk_tokens = 64\noverlap_tokens = 8\nlease_ttl = \"2s\"\n",
        );
        let aws = server.aws("crash");
        let api = server.api("crash");
        let bucket = "reports";
        aws.mb(bucket);
        let folder = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..CRASH_FILES).map(|i| format!("r{i:02}.txt")).collect();
        for (i, key) in keys.iter().enumerate() {
            write(folder.path(), key, crash_file(i).as_bytes());
        }
        aws.upload_dir(folder.path(), bucket);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();

        // Kill once some are indexed and some still pending.
        let deadline = Instant::now() + INDEX_TIMEOUT;
        let (indexed, pending) = loop {
            let mut indexed = 0;
            let mut pending = 0;
            for key in &keys {
                let (status, body) = api.index(bucket, key).await;
                assert_eq!(status, 200, "GET /v1/index/{bucket}/{key}: {body}");
                match body["state"].as_str() {
                    Some("indexed") => indexed += 1,
                    Some("pending") => pending += 1,
                    _ => panic!("{key}: {body}"),
                }
            }
            if indexed > 0 {
                break (indexed, pending);
            }
            assert!(
                Instant::now() < deadline,
                "nothing was indexed within {INDEX_TIMEOUT:?}\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        server.kill_hard();
        assert!(
            pending > 0,
            "all {indexed} files were indexed before the kill: make them bigger or more"
        );
        eprintln!("killed with {indexed} files indexed and {pending} pending");
        server.spawn();

        let statuses = api.settled(&server, bucket, &keys).await;
        let mut expected = BTreeMap::new();
        for (key, status) in &statuses {
            assert_eq!(status["state"], "indexed", "{key}: {status}");
            let chunks = status["chunks"].as_u64().unwrap();
            assert!(chunks >= 3, "{key} is {chunks} chunks: {status}");
            expected.insert(key.clone(), chunks);
        }
        // Exactly once: the collection holds each object's chunks of its status, no more.
        let records = api.chunk_records().await;
        let mut found: BTreeMap<String, u64> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for record in &records {
            assert!(ids.insert(record["id"].as_str().unwrap().to_owned()));
            let metadata = &record["metadata"];
            assert_eq!(metadata["bucket"], bucket, "{}", record["id"]);
            let key = metadata["key"]
                .as_str()
                .unwrap_or_else(|| panic!("a chunk record without a key: {}", record["id"]));
            *found.entry(key.to_owned()).or_default() += 1;
        }
        let total: u64 = expected.values().sum();
        assert_eq!(
            records.len() as u64,
            total,
            "{} chunk records for {total} chunks",
            records.len()
        );
        assert_eq!(found, expected, "chunk records per object");

        for (i, key) in keys.iter().enumerate() {
            let phrase = crash_phrase(i);
            let hits = api.search(&phrase, 20, &[]).await;
            let holding: Vec<&Value> = hits
                .iter()
                .filter(|hit| hit["text"].as_str().unwrap().contains(&phrase))
                .collect();
            assert_eq!(
                holding.len(),
                1,
                "{key}'s sentence is in {} hits of 20:\n{}",
                holding.len(),
                describe(&hits)
            );
            assert!(is_object(holding[0], bucket, key), "{}", holding[0]);
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tenant_isolation() {
        let server = Server::start("rocksdb", "");
        let tenants = ["alpha", "beta"];
        // The same bucket and key in both tenants, and files and memories of their own.
        let texts = [
            (
                "Alpha's plan: repaint the boathouse blue and replace the rotten jetty planks before the regatta.",
                "Alpha's memory: the sailing club dues of two hundred euros are due in March.",
                "alpha-only",
                "boat.md",
            ),
            (
                "Beta's plan: migrate the payroll database to the new cluster and rotate every password.",
                "Beta's memory: the server room key is kept in the drawer of the reception desk.",
                "beta-only",
                "payroll.md",
            ),
        ];
        let mut apis = Vec::new();
        let mut memories = Vec::new();
        for (tenant, (plan, memory, bucket, key)) in tenants.iter().zip(texts) {
            let aws = server.aws(tenant);
            let api = server.api(tenant);
            aws.mb("shared");
            aws.mb(bucket);
            let folder = tempfile::tempdir().unwrap();
            write(folder.path(), "plan.md", plan.as_bytes());
            aws.upload(&folder.path().join("plan.md"), "shared", "plan.md");
            write(folder.path(), key, plan.as_bytes());
            aws.upload(&folder.path().join(key), bucket, key);
            let stored = api.remember(json!({"text": memory})).await;
            memories.push(stored["id"].as_str().unwrap().to_owned());
            let status = &api.settled(&server, "shared", &["plan.md"]).await["plan.md"];
            assert_eq!(status["state"], "indexed", "{tenant}: {status}");
            let status = &api.settled(&server, bucket, &[key]).await[key];
            assert_eq!(status["state"], "indexed", "{tenant}: {status}");
            apis.push(api);
        }
        for (me, api) in apis.iter().enumerate() {
            let other = 1 - me;
            let (plan, _, bucket, key) = texts[me];
            let (other_plan, other_memory, other_bucket, other_key) = texts[other];
            for question in [other_plan, other_memory, plan, "plans and keys and money"] {
                let hits = api.search(question, 100, &[]).await;
                assert!(
                    !hits.is_empty(),
                    "{}: no hits for {question:?}",
                    tenants[me]
                );
                for hit in &hits {
                    let text = hit["text"].as_str().unwrap();
                    let own = match hit["source"]["kind"].as_str() {
                        Some("memory") => hit["source"]["memory"] == memories[me].as_str(),
                        Some("object") => {
                            is_object(hit, "shared", "plan.md") || is_object(hit, bucket, key)
                        }
                        _ => false,
                    };
                    assert!(
                        own && text.starts_with(&tenants[me][..1].to_uppercase()),
                        "{} found what is not its own for {question:?}: {hit}",
                        tenants[me]
                    );
                }
                assert!(hits.len() <= 3, "{}: {}", tenants[me], describe(&hits));
            }
            let (status, body) = api.index(other_bucket, other_key).await;
            assert_eq!(
                status, 404,
                "{} reads {other_bucket}/{other_key}: {body}",
                tenants[me]
            );
            let (status, body) = api
                .get(&format!("/v1/memories/{}", memories[other]), &[])
                .await;
            assert_eq!(
                status, 404,
                "{} reads the other's memory: {body}",
                tenants[me]
            );
        }
    }
}
