//! Backend factories for the suite: each builds a fresh backend on the case's manual clock, behind
//! the encryption layer (`p8fs_core::sealed`, as the gateway runs it by default). The
//! SQL factories share one server among concurrent cases: a shared case's backend purges nothing,
//! an exclusive one holds the server's purge lock and purges with no grace (see
//! [`p8fs_conformance::Purging`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_conformance::{Built, Purging};
use p8fs_core::sealed::{CHUNK_OVERHEAD, MasterKey, MasterKeys, Sealed};
use p8fs_core::{Backend, ManualClock};

/// The purge grace of a shared case: unbounded, so its purges remove nothing (see
/// [`Purging`]).
const SHARED_PURGE_GRACE: Duration = Duration::MAX;

/// How long an exclusive case waits for its server's purge lock before it fails.
const PURGE_LOCK_WAIT: Duration = Duration::from_secs(900);

/// The name of the purge lock on a MySQL-protocol server (`GET_LOCK`).
const TIDB_PURGE_LOCK: &str = "p8fs_conformance_purge";

/// The key of the purge lock on PostgreSQL (`pg_advisory_lock`): "p8fspurg" in ASCII.
const POSTGRES_PURGE_LOCK: i64 = 0x7038_6673_7075_7267;

/// The master key every suite seals with: the suites run through the encryption layer, as the
/// gateway does by default.
pub(crate) fn test_master_key() -> MasterKey {
    MasterKey::from_bytes([0x5e; 32])
}

fn test_master() -> MasterKeys {
    MasterKeys::new(test_master_key(), [])
}

/// `backend` behind the encryption layer.
async fn sealed(backend: Arc<dyn Backend>, keep: Box<dyn std::any::Any + Send + Sync>) -> Built {
    let sealed = Sealed::open(backend, test_master(), None)
        .await
        .unwrap_or_else(|e| panic!("open the encryption layer: {e:?}"));
    Built {
        backend: Arc::new(sealed),
        keep,
        chunk_overhead: CHUNK_OVERHEAD as u64,
    }
}

/// The purge grace of a case in mode `purging`.
fn purge_grace(purging: Purging) -> Duration {
    match purging {
        Purging::Shared => SHARED_PURGE_GRACE,
        Purging::Exclusive => Duration::ZERO,
    }
}

/// RocksDB in a fresh temporary directory, removed when the case ends.
pub(crate) fn rocksdb(clock: Arc<ManualClock>, _purging: Purging) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let backend =
            RocksBackend::open(dir.path(), clock, RocksOptions::default()).expect("open rocksdb");
        sealed(Arc::new(backend), Box::new(dir)).await
    })
}

/// The URL of the TiDB (or MariaDB stand-in) server the `tidb` suite runs against.
pub(crate) fn tidb_url() -> String {
    std::env::var("P8FS_TEST_TIDB_URL").unwrap_or_else(|_| {
        panic!(
            "set P8FS_TEST_TIDB_URL (e.g. mysql://p8fs:p8fs@127.0.0.1:3306/p8fs_test after \
             scripts/services/mariadb.sh start, or a real TiDB): the tidb suite needs a server"
        )
    })
}

/// A TiDB backend on the shared server; cases are isolated by their fresh random tenants, and an
/// exclusive case holds the server's purge lock (see [`Purging`]).
pub(crate) fn tidb(clock: Arc<ManualClock>, purging: Purging) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let url = tidb_url();
        let lock = match purging {
            Purging::Shared => None,
            Purging::Exclusive => Some(tidb_purge_lock(&url).await),
        };
        let options = TidbOptions {
            min_connections: 0,
            max_connections: 20,
            purge_grace: purge_grace(purging),
            ..TidbOptions::default()
        };
        let backend = TidbBackend::connect(&url, clock, options)
            .await
            .unwrap_or_else(|e| panic!("connect to P8FS_TEST_TIDB_URL: {e:?}"));
        sealed(Arc::new(backend), Box::new(lock)).await
    })
}

/// A connection holding the server's purge lock, which the server releases when the
/// connection closes (the case ends, or its process dies).
async fn tidb_purge_lock(url: &str) -> Mutex<mysql_async::Conn> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("connect to P8FS_TEST_TIDB_URL for the purge lock: {e}"));
    let got: Option<Option<i64>> = conn
        .exec_first(
            "SELECT GET_LOCK(?, ?)",
            (TIDB_PURGE_LOCK, PURGE_LOCK_WAIT.as_secs()),
        )
        .await
        .unwrap_or_else(|e| panic!("take the purge lock: {e}"));
    assert_eq!(
        got,
        Some(Some(1)),
        "the purge lock was held for {PURGE_LOCK_WAIT:?} by other cases"
    );
    Mutex::new(conn)
}

/// The URL of the PostgreSQL (with pgvector) server the `postgres` suite runs against.
pub(crate) fn postgres_url() -> String {
    std::env::var("P8FS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "set P8FS_TEST_POSTGRES_URL (e.g. the output of `scripts/services/postgres.sh url` \
             after `scripts/services/postgres.sh start`): the postgres suite needs a server"
        )
    })
}

/// A PostgreSQL backend on the shared server; cases are isolated by their fresh random tenants,
/// and an exclusive case holds the server's purge lock (see [`Purging`]).
pub(crate) fn postgres(clock: Arc<ManualClock>, purging: Purging) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let url = postgres_url();
        let lock = match purging {
            Purging::Shared => None,
            Purging::Exclusive => Some(postgres_purge_lock(&url).await),
        };
        let options = PgOptions {
            max_connections: 20,
            purge_grace: purge_grace(purging),
            ..PgOptions::default()
        };
        let backend = PgBackend::connect(&url, clock, options)
            .await
            .unwrap_or_else(|e| panic!("connect to P8FS_TEST_POSTGRES_URL: {e:?}"));
        sealed(Arc::new(backend), Box::new(lock)).await
    })
}

/// A connection holding the server's purge lock (a session advisory lock), which the server
/// releases when the connection closes (the case ends, or its process dies).
async fn postgres_purge_lock(url: &str) -> Mutex<sqlx::PgConnection> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to P8FS_TEST_POSTGRES_URL for the purge lock: {e}"));
    let wait = format!("{}ms", PURGE_LOCK_WAIT.as_millis());
    sqlx::query("SELECT set_config('lock_timeout', $1, false)")
        .bind(wait)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("set lock_timeout: {e}"));
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(POSTGRES_PURGE_LOCK)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| {
            panic!("take the purge lock (held for {PURGE_LOCK_WAIT:?} by other cases?): {e}")
        });
    Mutex::new(conn)
}
