//! Backend factories for the suite: each builds a fresh backend on the case's manual clock.

use std::sync::Arc;

use futures::future::BoxFuture;
use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_conformance::Built;
use p8fs_core::ManualClock;

/// RocksDB in a fresh temporary directory, removed when the case ends.
pub(crate) fn rocksdb(clock: Arc<ManualClock>) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let backend =
            RocksBackend::open(dir.path(), clock, RocksOptions::default()).expect("open rocksdb");
        Built {
            backend: Arc::new(backend),
            keep: Box::new(dir),
        }
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

/// A TiDB backend on the shared server; cases are isolated by their fresh random tenants.
pub(crate) fn tidb(clock: Arc<ManualClock>) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let url = tidb_url();
        let options = TidbOptions {
            min_connections: 0,
            max_connections: 20,
            // Cases share the server but each runs its own manual clock; a purge must not remove
            // what a concurrent case (whose clock is behind) still sees. Every case's clock stays
            // within minutes of `START`, so with this grace purges in the suite remove nothing of
            // other cases; the reaper's deletions are tested in the backend's own tests.
            purge_grace: std::time::Duration::from_secs(3600),
            ..TidbOptions::default()
        };
        let backend = TidbBackend::connect(&url, clock, options)
            .await
            .unwrap_or_else(|e| panic!("connect to P8FS_TEST_TIDB_URL: {e:?}"));
        Built {
            backend: Arc::new(backend),
            keep: Box::new(()),
        }
    })
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

/// A PostgreSQL backend on the shared server; cases are isolated by their fresh random tenants.
pub(crate) fn postgres(clock: Arc<ManualClock>) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        let url = postgres_url();
        let options = PgOptions {
            max_connections: 20,
            // Cases share the server but each runs its own manual clock; a purge must not remove
            // what another case still sees. Every case's clock stays within minutes of `START`,
            // so with this grace purges in the suite remove nothing of a concurrent case (the
            // backend's own tests check that purges do remove expired records).
            purge_grace: std::time::Duration::from_secs(3600),
            ..PgOptions::default()
        };
        let backend = PgBackend::connect(&url, clock, options)
            .await
            .unwrap_or_else(|e| panic!("connect to P8FS_TEST_POSTGRES_URL: {e:?}"));
        Built {
            backend: Arc::new(backend),
            keep: Box::new(()),
        }
    })
}
