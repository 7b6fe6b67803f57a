#!/usr/bin/env bash
# An OpenAI-compatible embeddings server for tests: start|stop|restart|url. Idempotent and
# non-interactive.
#
#   start    installs Infinity (PyPI infinity-emb, pinned with everything it needs in
#            openai-embeddings-requirements.txt beside this script) into a virtual environment
#            outside the clone if missing or different, installs the all-MiniLM-L6-v2 model
#            (scripts/services/model.sh) and serves it offline, on the CPU, in float32, as model
#            "all-MiniLM-L6-v2" at http://127.0.0.1:$PORT/v1 (POST /v1/embeddings); it returns
#            once the server answers
#   stop     stops the server of $PORT (no-op when it is not running)
#   restart  stop, then start
#   url      prints the API's base URL (http://127.0.0.1:$PORT/v1, for P8FS_TEST_OPENAI_URL)
#
# Environment: P8FS_OPENAI_EMBEDDINGS_PORT (default 4224; each port is its own instance),
# P8FS_TOOLS_DIR (default /var/tmp/p8fs-tools; the environment is its openai-embeddings/).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
PORT="${P8FS_OPENAI_EMBEDDINGS_PORT:-4224}"
MODEL_NAME=all-MiniLM-L6-v2
REQUIREMENTS="$here/openai-embeddings-requirements.txt"
VENV="${P8FS_TOOLS_DIR:-/var/tmp/p8fs-tools}/openai-embeddings"
DATADIR="/var/tmp/p8fs-openai-embeddings-$PORT"
PIDFILE="$DATADIR/server.pid"
# How long the first start may take to import torch and load the model.
START_TIMEOUT_SECONDS=180

url() {
  echo "http://127.0.0.1:$PORT/v1"
}

# A CPython the pins were resolved for (3.11 or 3.12, with venv).
pick_python() {
  local candidate
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info[:2] in ((3, 11), (3, 12)) else 1)' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "no CPython 3.11 or 3.12 with venv and ensurepip found for the embeddings server" >&2
  return 1
}

install() {
  local stamp="$VENV/requirements.installed"
  if [ -x "$VENV/bin/infinity_emb" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$REQUIREMENTS"; then
    return
  fi
  local python
  python="$(pick_python)"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$stamp"
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

# Whether the server lists the model (GET /v1/models).
answers() {
  "$VENV/bin/python" - "$(url)/models" "$MODEL_NAME" <<'EOF' 2>/dev/null
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    ids = [m["id"] for m in json.load(r)["data"]]
sys.exit(0 if sys.argv[2] in ids else 1)
EOF
}

start() {
  install
  "$here/model.sh" install
  local model_dir
  model_dir="$("$here/model.sh" dir)"
  mkdir -p "$DATADIR"
  if ! running; then
    # Offline: nothing is fetched from a hub, and no usage statistics are sent.
    (
      cd "$DATADIR"
      exec env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 INFINITY_ANONYMOUS_USAGE_STATS=0 \
        DO_NOT_TRACK=1 "$VENV/bin/infinity_emb" v2 \
        --model-id "$model_dir" --served-model-name "$MODEL_NAME" \
        --engine torch --device cpu --dtype float32 \
        --host 127.0.0.1 --port "$PORT" --url-prefix /v1 \
        --no-vector-disk-cache --no-model-warmup --log-level warning
    ) >>"$DATADIR/server.log" 2>&1 &
    echo $! >"$PIDFILE"
  fi
  for _ in $(seq 1 $((START_TIMEOUT_SECONDS * 2))); do
    if answers; then
      return
    fi
    running || break
    sleep 0.5
  done
  echo "the embeddings server did not start on port $PORT; see $DATADIR/server.log" >&2
  exit 1
}

stop() {
  if running; then
    local pid
    pid="$(cat "$PIDFILE")"
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  url) url ;;
  *) echo "usage: $0 start|stop|restart|url" >&2; exit 2 ;;
esac
