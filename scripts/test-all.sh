#!/usr/bin/env bash
# The test command: builds in the release profile (shared with benchmarks, so RocksDB's C++ is
# compiled once), runs every test of the workspace with nextest, and fails unless each backend's
# conformance suite actually executed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/p8fs-target}"

# Backends whose suite must have run; each contributes tests named `<backend>::...`.
REQUIRED_SUITES=(model rocksdb)

# nextest writes its report under the workspace's target/ whatever CARGO_TARGET_DIR says; remove
# an old one so a stale report can never stand in for this run.
report=target/nextest/ci/junit.xml
rm -f "$report"
cargo nextest run --release --workspace --profile ci "$@"
python3 scripts/check-suites.py "$report" "${REQUIRED_SUITES[@]}"
