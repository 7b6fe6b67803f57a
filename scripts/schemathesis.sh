#!/usr/bin/env bash
# Runs schemathesis against the REST API as a client sees it: starts the release `p8fs` binary on
# a free loopback port with a fresh data directory, mints a token with every scope, runs every
# check (`--checks all`) of every phase on `/openapi.json` with scripts/schemathesis.toml and the
# byte limits of scripts/schemathesis_hooks.py, stops the server, and fails on any failure or
# error schemathesis reports.
#
# Needs the binary (`cargo build --release --workspace --bins`) and schemathesis from
# scripts/install-deps.sh. Environment: CARGO_TARGET_DIR (where the binary is; cargo's own
# default, ./target, when unset),
# P8FS_ST_MAX_EXAMPLES (default 20), P8FS_ST_SEED (default: a new seed, printed by schemathesis
# so a failure can be replayed with it), P8FS_TOOLS_DIR (where install-deps.sh put schemathesis).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
binary="$target_dir/release/p8fs"
st_venv="${P8FS_TOOLS_DIR:-/var/tmp/p8fs-tools}/schemathesis"
max_examples="${P8FS_ST_MAX_EXAMPLES:-20}"
seed="${P8FS_ST_SEED:-}"

[ -x "$binary" ] || { echo "no $binary: run cargo build --release --workspace --bins" >&2; exit 1; }
[ -x "$st_venv/bin/st" ] || { echo "no schemathesis in $st_venv: run scripts/install-deps.sh" >&2; exit 1; }
python="$st_venv/bin/python"

# Two workers, unless the environment's CPython has the AST race fixed in 3.11.8 and 3.12.2
# (gh-106905; see scripts/install-deps.sh): there one worker avoids the tool's internal error.
workers=2
if ! "$python" -c 'import sys; v = sys.version_info[:3]; sys.exit(0 if v >= (3, 12, 2) or (3, 11, 8) <= v < (3, 12) else 1)'; then
  workers=1
  echo "== schemathesis: $("$python" -V) has CPython gh-106905 (AST constructor race); using 1 worker"
fi

work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  rm -rf "$work"
}
trap stop_server EXIT

# p8fs refuses P8FS_* variables it does not know (test-all.sh exports P8FS_TEST_*, this script
# reads P8FS_ST_*): the server and the token command get none, so the run is the same everywhere.
# With P8FS_TEST_MODEL_DIR (test-all.sh sets it) the server embeds with the builtin model, so
# memories and search are exercised; without it they answer their documented 503.
model_dir="${P8FS_TEST_MODEL_DIR:-}"
p8fs=(env)
for variable in $(compgen -e | grep '^P8FS_' || true); do
  p8fs+=(-u "$variable")
done
if [ -n "$model_dir" ]; then
  p8fs+=("P8FS_EMBEDDINGS_MODEL_DIR=$model_dir")
fi
p8fs+=("$binary")

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
"${p8fs[@]}" serve --listen "127.0.0.1:$port" --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
ready=""
for _ in $(seq 1 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    break
  fi
  if "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$base/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "p8fs did not become ready on $base; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

token="$("${p8fs[@]}" token issue --data-dir "$work/data" --tenant schemathesis --sub schemathesis \
  --scope 'kv:read kv:write vectors:read vectors:write graph:read graph:write s3:read s3:write memories:read memories:write')"

echo "== schemathesis on $base/openapi.json: max-examples $max_examples, $workers worker(s)"
status=0
(
  cd "$work"
  export SCHEMATHESIS_HOOKS="$repo/scripts/schemathesis_hooks.py"
  "$st_venv/bin/st" --no-color --config-file "$repo/scripts/schemathesis.toml" run \
    "$base/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$max_examples" \
    --workers "$workers" \
    ${seed:+--seed "$seed"}
) | tee "$work/st.out" || status=$?

# The closing line counts failures and errors; either fails the run, whatever the exit code says.
summary="$(grep -E '^=+ .* =+$' "$work/st.out" | tail -n 1)"
if [ "$status" -ne 0 ] || [ -z "$summary" ] || grep -qE '[0-9]+ (failure|error)' <<<"$summary"; then
  echo "schemathesis found problems (exit $status): ${summary:-no summary line}" >&2
  echo "server log: $(wc -l <"$work/server.log") lines; last 20:" >&2
  tail -n 20 "$work/server.log" >&2
  exit 1
fi
