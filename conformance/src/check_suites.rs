//! Tests of `scripts/check-suites.py`, the CI check that every backend's conformance suite ran
//! exactly the tests the reference model's suite ran (and the OAuth flows ran at all): it is run
//! with `python3` on small nextest-style JUnit reports.

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-suites.py")
}

/// A JUnit report with the given test names per binary.
fn report(binaries: &[(&str, &[&str])]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for (binary, tests) in binaries {
        xml.push_str(&format!("<testsuite name=\"{binary}\">\n"));
        for test in *tests {
            if let Some(name) = test.strip_suffix(" (failed)") {
                xml.push_str(&format!(
                    "<testcase name=\"{name}\" classname=\"{binary}\"><failure/></testcase>\n"
                ));
            } else {
                xml.push_str(&format!(
                    "<testcase name=\"{test}\" classname=\"{binary}\"/>\n"
                ));
            }
        }
        xml.push_str("</testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Runs the script on a report: (succeeded, stdout and stderr).
fn check(binaries: &[(&str, &[&str])], suites: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("junit.xml");
    std::fs::write(&path, report(binaries)).expect("write the report");
    let output = Command::new("python3")
        .arg(script())
        .arg(&path)
        .args(suites)
        .output()
        .expect("run python3 scripts/check-suites.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

const CONFORMANCE: &str = "p8fs-conformance::all";
const FLOWS: &str = "p8fs-gateway::oauth_flows";
const SUITES: &[&str] = &["model", "rocksdb", "postgres", "oauth_flows"];

#[test]
fn complete_suites_pass() {
    let (ok, text) = check(
        &[
            (
                CONFORMANCE,
                &[
                    "model::kv::a",
                    "model::vector::b",
                    "rocksdb::kv::a",
                    "rocksdb::vector::b",
                    "postgres::vector::b",
                    "postgres::kv::a",
                ],
            ),
            (FLOWS, &["oauth_flows::device_flow"]),
        ],
        SUITES,
    );
    assert!(ok, "{text}");
}

#[test]
fn a_backend_suite_missing_a_test_fails_and_names_it() {
    let (ok, text) = check(
        &[
            (
                CONFORMANCE,
                &[
                    "model::kv::a",
                    "model::vector::b",
                    "rocksdb::kv::a",
                    "rocksdb::vector::b",
                    "postgres::kv::a",
                    "postgres::kv::extra",
                ],
            ),
            (FLOWS, &["oauth_flows::device_flow"]),
        ],
        SUITES,
    );
    assert!(!ok, "a partly run suite passed:\n{text}");
    assert!(text.contains("missing from postgres"), "{text}");
    assert!(text.contains("vector::b"), "{text}");
    assert!(text.contains("extra in postgres"), "{text}");
    assert!(text.contains("kv::extra"), "{text}");
}

#[test]
fn a_suite_that_did_not_run_or_failed_fails() {
    let conformance: &[&str] = &["model::kv::a", "rocksdb::kv::a", "postgres::kv::a"];
    let (ok, text) = check(&[(CONFORMANCE, conformance)], SUITES);
    assert!(!ok, "the OAuth flows did not run, yet it passed:\n{text}");
    let (ok, text) = check(
        &[
            (CONFORMANCE, &["model::kv::a", "rocksdb::kv::a"]),
            (FLOWS, &["oauth_flows::device_flow"]),
        ],
        SUITES,
    );
    assert!(!ok, "postgres did not run, yet it passed:\n{text}");
    let (ok, text) = check(
        &[
            (
                CONFORMANCE,
                &["model::kv::a", "rocksdb::kv::a (failed)", "postgres::kv::a"],
            ),
            (FLOWS, &["oauth_flows::device_flow"]),
        ],
        SUITES,
    );
    assert!(!ok, "a failed test passed:\n{text}");
}
