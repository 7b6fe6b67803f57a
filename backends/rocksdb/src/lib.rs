//! RocksDB backend.
