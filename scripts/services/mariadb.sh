#!/usr/bin/env bash
# MariaDB, the stand-in for TiDB in tests: start|stop|restart|url|createdb. Idempotent and
# non-interactive; runs as root on Debian without systemd.
#
#   start    installs Debian's mariadb-server if missing, starts mariadbd on 127.0.0.1:$PORT,
#            creates the database and user, and loads TiDB's vector functions
#            (tidb-vector-functions.sql beside this script) into the database
#   stop     stops the server started for $PORT (no-op when it is not running)
#   restart  stop, then start
#   url      prints the connection URL (mysql://p8fs:p8fs@127.0.0.1:$PORT/p8fs_test)
#   createdb NAME
#            creates database NAME (if missing) for the test user with TiDB's vector functions,
#            for a test whose server must have a database of its own (a gateway's ingest worker
#            indexes every tenant of its database); prints its URL
#
# Environment: P8FS_MARIADB_PORT (default 3306). Port 3306 uses Debian's data directory and
# socket; any other port gets its own instance (data in /var/tmp/p8fs-mariadb-$PORT), so a
# test that restarts a server can do it without disturbing the shared one.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${P8FS_MARIADB_PORT:-3306}"
DATABASE=p8fs_test
USER_NAME=p8fs
USER_PASSWORD=p8fs
RUN_DIR=/run/mysqld
if [ "$PORT" = 3306 ]; then
  DATADIR=/var/lib/mysql
  SOCKET="$RUN_DIR/mysqld.sock"
  PIDFILE="$RUN_DIR/mysqld.pid"
  LOG=/var/log/mysql/error.log
else
  DATADIR="/var/tmp/p8fs-mariadb-$PORT"
  SOCKET="$RUN_DIR/mysqld-$PORT.sock"
  PIDFILE="$RUN_DIR/mysqld-$PORT.pid"
  LOG="/var/log/mysql/error-$PORT.log"
fi
export DEBIAN_FRONTEND=noninteractive

url() {
  echo "mysql://$USER_NAME:$USER_PASSWORD@127.0.0.1:$PORT/$DATABASE"
}

ping_server() {
  mariadb-admin --no-defaults --protocol=socket --socket="$SOCKET" -uroot ping >/dev/null 2>&1
}

install() {
  if ! command -v mariadbd >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
  fi
}

start() {
  install
  install -d -o mysql -g mysql -m 755 "$RUN_DIR" /var/log/mysql
  if [ ! -d "$DATADIR/mysql" ]; then
    install -d -o mysql -g mysql -m 750 "$DATADIR"
    mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=socket \
      >/dev/null
  fi
  if ! ping_server; then
    # Settings for a throw-away test server: no binary log, no fsync per commit.
    start-stop-daemon --start --quiet --oknodo --background --pidfile "$PIDFILE" \
      --exec /usr/sbin/mariadbd -- --user=mysql --datadir="$DATADIR" \
      --bind-address=127.0.0.1 --port="$PORT" --socket="$SOCKET" --pid-file="$PIDFILE" \
      --log-error="$LOG" --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
      --innodb-buffer-pool-size=256M --max-connections=1000 --innodb-lock-wait-timeout=20
    for _ in $(seq 240); do
      ping_server && break
      sleep 0.25
    done
    ping_server || { echo "mariadb did not start on port $PORT; see $LOG" >&2; exit 1; }
  fi
  mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS $DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER IF NOT EXISTS '$USER_NAME'@'localhost' IDENTIFIED BY '$USER_PASSWORD';
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$USER_PASSWORD';
GRANT ALL PRIVILEGES ON $DATABASE.* TO '$USER_NAME'@'localhost';
GRANT ALL PRIVILEGES ON $DATABASE.* TO '$USER_NAME'@'127.0.0.1';
SQL
  mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot "$DATABASE" \
    <"$HERE/tidb-vector-functions.sql"
}

stop() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 240); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "mariadb (pid $pid) did not stop" >&2
    exit 1
  fi
  rm -f "$PIDFILE"
}

createdb() {
  local name="${1:-}"
  [[ "$name" =~ ^[a-z0-9_]{1,60}$ ]] || { echo "createdb: NAME must be 1..=60 of [a-z0-9_]" >&2; exit 2; }
  local exists
  exists="$(mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot -N -e \
    "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '$name'")"
  if [ "$exists" != 1 ]; then
    mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot <<SQL
CREATE DATABASE $name CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON $name.* TO '$USER_NAME'@'localhost';
GRANT ALL PRIVILEGES ON $name.* TO '$USER_NAME'@'127.0.0.1';
SQL
    mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot "$name" \
      <"$HERE/tidb-vector-functions.sql"
  fi
  echo "mysql://$USER_NAME:$USER_PASSWORD@127.0.0.1:$PORT/$name"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  url) url ;;
  createdb) createdb "${2:-}" ;;
  *) echo "usage: $0 start|stop|restart|url|createdb NAME" >&2; exit 2 ;;
esac
