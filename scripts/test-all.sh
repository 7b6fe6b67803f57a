#!/usr/bin/env bash
# The test command: builds in the release profile (shared with benchmarks, so RocksDB's C++ is
# compiled once), runs every test of the workspace with nextest, and fails unless each backend's
# conformance suite actually executed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/p8fs-target}"

# Backends whose suite must have run; each contributes tests named `<backend>::...`.
REQUIRED_SUITES=(model rocksdb)

cargo nextest run --release --workspace --profile ci "$@"

python3 scripts/check-suites.py "$CARGO_TARGET_DIR/nextest/ci/junit.xml" "${REQUIRED_SUITES[@]}"
