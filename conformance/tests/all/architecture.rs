//! Architecture rules as a test: the dependency direction of `ARCHITECTURE.md`, and a `//!`
//! doc at the top of every Rust file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const DRIVERS: &[&str] = &["rocksdb", "sqlx", "mysql_async"];
const FRAMEWORKS: &[&str] = &["axum", "tonic", "s3s", "async-graphql", "rmcp", "pingora"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("conformance/ sits in the workspace")
        .to_path_buf()
}

/// Normal (non-dev) dependencies of every workspace member, by crate name.
fn member_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let mut members = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_owned();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_owned())
            .collect();
        members.insert(name, deps);
    }
    members
}

#[test]
fn dependency_direction() {
    let members = member_dependencies();
    let core = &members["p8fs-core"];
    for forbidden in DRIVERS.iter().chain(FRAMEWORKS) {
        assert!(
            !core.contains(*forbidden),
            "p8fs-core must not depend on {forbidden}"
        );
    }
    for (name, deps) in &members {
        let is_backend = name.starts_with("p8fs-backend-");
        let is_frontend = name == "p8fs-auth"
            || name.starts_with("p8fs-protocol")
            || [
                "p8fs-s3",
                "p8fs-graphql",
                "p8fs-rest",
                "p8fs-mcp",
                "p8fs-grpc",
            ]
            .contains(&name.as_str());
        for dep in deps {
            if is_backend {
                assert!(
                    !dep.starts_with("p8fs-backend-"),
                    "{name} must not depend on another backend ({dep})"
                );
                assert!(
                    !FRAMEWORKS.contains(&dep.as_str()),
                    "{name} must not depend on a front-end framework ({dep})"
                );
            }
            if is_frontend {
                assert!(
                    !dep.starts_with("p8fs-backend-"),
                    "{name} must not name a backend ({dep})"
                );
                assert!(
                    !DRIVERS.contains(&dep.as_str()),
                    "{name} must not depend on a driver ({dep})"
                );
            }
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace_root(), &mut files);
    assert!(!files.is_empty());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("read source");
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a leading //! doc: {undocumented:?}"
    );
}

#[test]
fn architecture_anchors_exist() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for anchor in text.split('`').skip(1).step_by(2) {
        let looks_like_path =
            anchor.ends_with(".rs") || anchor.ends_with(".toml") || anchor.ends_with(".sh");
        if looks_like_path && !anchor.contains('*') && !anchor.contains(' ') {
            assert!(
                root.join(anchor).exists(),
                "ARCHITECTURE.md names {anchor}, which does not exist"
            );
        }
    }
}
