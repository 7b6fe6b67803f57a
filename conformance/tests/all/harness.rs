//! Backend factories for the suite: each builds a fresh backend on the case's manual clock.

use std::sync::Arc;

use futures::future::BoxFuture;
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
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
