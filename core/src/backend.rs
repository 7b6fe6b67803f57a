//! The bundle front-ends depend on: one object with every capability.

use async_trait::async_trait;

use crate::change::ChangeLog;
use crate::error::Result;
use crate::graph::GraphStore;
use crate::kv::KvStore;
use crate::object::ObjectStore;
use crate::vector::VectorStore;

/// Housekeeping every backend offers.
#[async_trait]
pub trait Maintenance: Send + Sync {
    /// Physically removes records that expired before the backend clock's `now` (expired objects
    /// included: their blobs are freed), and returns how many were removed. Never observable except through storage size.
    async fn purge_expired(&self) -> Result<u64>;

    /// Drops from the store's files what deleted and overwritten records left in them, for an
    /// engine that keeps it until it compacts (RocksDB: a full compaction, which may take a
    /// while). Servers that reclaim space themselves (PostgreSQL's vacuum, TiDB's garbage
    /// collection) need nothing: the default does nothing. Wrappers forward it.
    async fn compact_storage(&self) -> Result<()> {
        Ok(())
    }
}

/// Everything a front-end needs from storage. Protocols take `Arc<dyn Backend>`.
pub trait Backend:
    KvStore + VectorStore + GraphStore + ObjectStore + ChangeLog + Maintenance + Send + Sync + 'static
{
}

impl<T> Backend for T where
    T: KvStore
        + VectorStore
        + GraphStore
        + ObjectStore
        + ChangeLog
        + Maintenance
        + Send
        + Sync
        + 'static
{
}
