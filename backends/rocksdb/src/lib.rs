//! The embedded RocksDB backend of p8fs, the default: `p8fs serve` needs no other server.
//!
//! One RocksDB database with a column family per record kind (see [`schema`]). Writes go
//! through the write-ahead log before they are acknowledged; with
//! [`RocksOptions::sync_writes`] the log is also fsynced, which makes them survive power loss and
//! not only a process crash. Expired records are invisible at once and removed later by
//! [`p8fs_core::Maintenance::purge_expired`]. Each vector collection is also held in memory,
//! contiguously, for exact search (see [`vector`]). Objects are a metadata record plus data
//! blobs stored as 1 MiB chunks, committed in one write batch (see [`object`]). Every write
//! appends its changes to the tenant's change log in its own write batch (see [`change`]).

mod change;
mod error;
mod graph;
mod kv;
mod object;
mod schema;
mod vector;
pub use vector::GRAPH_MIN_ROWS;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options, WriteBatch, WriteOptions,
};

use p8fs_core::{Clock, Error, Result, Timestamp};

use crate::error::classify;
use crate::schema::{ALL_CFS, CF_META, META_VERSION_RESERVED};

/// How many versions are reserved at a time; see [`Versions`].
const VERSION_BLOCK: u64 = 1 << 20;
/// Lock stripes for key-value writes.
const KV_STRIPES: usize = 256;
/// Lock stripes for buckets (see [`object`]).
const BUCKET_STRIPES: usize = 64;

/// Tuning of the RocksDB backend.
#[derive(Clone, Debug)]
pub struct RocksOptions {
    /// Fsync the write-ahead log on every write (survives power loss; slower). Without it an
    /// acknowledged write is in the log and survives a crash of the process.
    pub sync_writes: bool,
    /// Size of the block cache, in bytes.
    pub block_cache_bytes: usize,
    /// Size of each memtable, in bytes.
    pub write_buffer_bytes: usize,
    /// Collections with fewer records are searched exactly in either mode (an exact scan of
    /// them is about as fast as a graph walk); larger ones get an approximate-search graph the
    /// first time they are searched approximately.
    pub graph_min_rows: usize,
}

impl Default for RocksOptions {
    fn default() -> Self {
        Self {
            sync_writes: false,
            block_cache_bytes: 64 * 1024 * 1024,
            write_buffer_bytes: 16 * 1024 * 1024,
            graph_min_rows: GRAPH_MIN_ROWS,
        }
    }
}

/// The RocksDB backend.
pub struct RocksBackend {
    db: DB,
    clock: Arc<dyn Clock>,
    write_options: WriteOptions,
    versions: Versions,
    kv_locks: Vec<Mutex<()>>,
    /// Object writes in a bucket hold its stripe shared, deleting a bucket holds it exclusively.
    bucket_locks: Vec<RwLock<()>>,
    /// Serialises creating and deleting buckets, so the per-tenant bucket limit holds.
    bucket_admin: Mutex<()>,
    /// Serialises graph writes, so endpoint checks and edge cascades are atomic.
    graph_lock: Mutex<()>,
    vectors: vector::Collections,
    /// Each tenant's change-log lock and position (see [`change`]).
    logs: change::Logs,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl RocksBackend {
    /// Opens (creating if needed) the database in `path`, reading time from `clock`, and loads
    /// the vector collections into memory.
    pub fn open(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
        options: RocksOptions,
    ) -> Result<Self> {
        let mut db_options = Options::default();
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_compression_type(DBCompressionType::Lz4);
        db_options.increase_parallelism(2);
        // Point lookups dominate: memtables and flushed tables get whole-key bloom filters, and
        // tables hash-indexed data blocks, with index and filter blocks in the block cache.
        db_options.set_write_buffer_size(options.write_buffer_bytes);
        let cache = rocksdb::Cache::new_lru_cache(options.block_cache_bytes);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // The change log is appended and read in key order, never looked up by key, so its
        // families build no filters: each append would otherwise pay for one.
        let mut log_options = db_options.clone();
        log_options.set_block_based_table_factory(&table);
        table.set_bloom_filter(10.0, false);
        table.set_data_block_index_type(rocksdb::DataBlockIndexType::BinaryAndHash);
        db_options.set_block_based_table_factory(&table);
        db_options.set_memtable_whole_key_filtering(true);
        db_options.set_memtable_prefix_bloom_ratio(0.1);
        let families = ALL_CFS.iter().map(|name| {
            let family_options = if schema::LOG_CFS.contains(name) {
                &log_options
            } else {
                &db_options
            };
            ColumnFamilyDescriptor::new(*name, family_options.clone())
        });
        let db = DB::open_cf_descriptors(&db_options, path, families).map_err(classify)?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync_writes);
        let versions = Versions::load(&db)?;
        let vectors = vector::Collections::load(&db, options.graph_min_rows)?;
        Ok(Self {
            db,
            clock,
            write_options,
            versions,
            kv_locks: (0..KV_STRIPES).map(|_| Mutex::new(())).collect(),
            bucket_locks: (0..BUCKET_STRIPES).map(|_| RwLock::new(())).collect(),
            bucket_admin: Mutex::new(()),
            graph_lock: Mutex::new(()),
            vectors,
            logs: change::Logs::default(),
        })
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        cf(&self.db, name)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(classify)
    }

    fn get_raw(
        &self,
        family: &'static str,
        key: &[u8],
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.db
            .get_pinned_cf(self.cf(family)?, key)
            .map_err(classify)
    }

    /// Visits `(key, value)` pairs of `family` whose key starts with `prefix`, from `start`
    /// (inclusive, when it sorts after `prefix`), in key order, until `visit` returns `false`.
    fn scan_raw(
        &self,
        family: &'static str,
        prefix: &[u8],
        start: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut iter = self.db.raw_iterator_cf(self.cf(family)?);
        iter.seek(start.map_or(prefix, |start| start.max(prefix)));
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else {
                break;
            };
            if !key.starts_with(prefix) || !visit(key, value)? {
                return Ok(());
            }
            iter.next();
        }
        iter.status().map_err(classify)
    }

    fn kv_lock(&self, key: &[u8]) -> MutexGuard<'_, ()> {
        self.kv_locks[stripe(key, KV_STRIPES)].lock()
    }

    /// Locks the stripes of several keys at once, in stripe order, so two callers locking
    /// overlapping sets never deadlock. A caller must not hold any stripe when it calls this.
    fn lock_keys<'a, 'k>(
        &'a self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Vec<MutexGuard<'a, ()>> {
        let mut stripes: Vec<usize> = keys
            .into_iter()
            .map(|key| stripe(key, KV_STRIPES))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .into_iter()
            .map(|i| self.kv_locks[i].lock())
            .collect()
    }
}

/// The stripe of `key` among `stripes`.
fn stripe(key: &[u8], stripes: usize) -> usize {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
    (hash as usize) % stripes
}

fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::internal(format!("column family {name} is missing"), None))
}

/// The per-store version counter. Versions must increase for the life of the store, across
/// restarts, so the counter hands out numbers from a reserved block whose end is persisted
/// (through the same write-ahead log, before any version of the block is used). A restart
/// resumes after the reserved block; unused numbers are skipped, which is fine because versions
/// are opaque.
struct Versions {
    next: AtomicU64,
    reserved: Mutex<u64>,
}

impl Versions {
    fn load(db: &DB) -> Result<Self> {
        let stored = db
            .get_cf(cf(db, CF_META)?, META_VERSION_RESERVED)
            .map_err(classify)?;
        let reserved = match stored {
            Some(bytes) => {
                let raw: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| crate::error::corrupt("version reservation"))?;
                u64::from_be_bytes(raw)
            }
            None => 0,
        };
        Ok(Self {
            next: AtomicU64::new(reserved + 1),
            reserved: Mutex::new(reserved),
        })
    }

    /// The next version, reserving a new block first when the current one is used up.
    fn allocate(&self, backend: &RocksBackend) -> Result<u64> {
        let version = self.next.fetch_add(1, Ordering::SeqCst);
        let mut reserved = self.reserved.lock();
        if version > *reserved {
            let end = version + VERSION_BLOCK;
            let mut batch = WriteBatch::default();
            batch.put_cf(
                backend.cf(CF_META)?,
                META_VERSION_RESERVED,
                end.to_be_bytes(),
            );
            backend.write(batch)?;
            *reserved = end;
        }
        Ok(version)
    }
}

#[async_trait::async_trait]
impl p8fs_core::Maintenance for RocksBackend {
    async fn purge_expired(&self) -> Result<u64> {
        let now = self.now();
        let mut removed = self.purge_kv(now)?;
        removed += self.purge_vectors(now)?;
        removed += self.purge_graph(now)?;
        removed += self.purge_objects(now)?;
        Ok(removed)
    }

    /// Flushes every column family and compacts it down to its last level, forced: values
    /// overwritten or deleted (the plaintext a reseal replaced, reaped blobs) leave the files,
    /// and write-ahead logs holding them are dropped once flushed.
    async fn compact_storage(&self) -> Result<()> {
        let mut options = rocksdb::CompactOptions::default();
        options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        for name in ALL_CFS {
            let family = self.cf(name)?;
            self.db.flush_cf(family).map_err(classify)?;
            self.db
                .compact_range_cf_opt(family, None::<&[u8]>, None::<&[u8]>, &options);
        }
        self.db.flush_wal(true).map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
