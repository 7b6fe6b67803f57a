//! The one place that turns `storage.provider` into a concrete backend. No other module of the
//! workspace names a backend type.

use std::sync::Arc;

use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::{Backend, Clock};

use crate::config::{Config, StorageConfig};
use crate::sealing::Encryption;

/// Opens the configured backend, behind the encryption layer unless `encryption.enabled` is
/// off.
pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Backend>, String> {
    Ok(open_with_encryption(config, clock).await?.0)
}

/// As [`open`], with the encryption layer's handle (for master-key rotation) when it is on.
pub async fn open_with_encryption(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Backend>, Option<Encryption>), String> {
    let inner = open_store(config, clock).await?;
    crate::sealing::seal(config, inner).await
}

/// The configured backend itself.
async fn open_store(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn Backend>, String> {
    match &config.storage {
        StorageConfig::Rocksdb { sync_writes } => {
            let path = config.data_dir.join("rocksdb");
            std::fs::create_dir_all(&path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let options = RocksOptions {
                sync_writes: *sync_writes,
                ..RocksOptions::default()
            };
            let backend = RocksBackend::open(&path, clock, options).map_err(|e| {
                format!(
                    "cannot open the RocksDB store in {}: {e}{}",
                    path.display(),
                    source_text(&e)
                )
            })?;
            Ok(Arc::new(backend))
        }
        #[cfg(feature = "postgres")]
        StorageConfig::Postgres { url } => {
            let options = p8fs_backend_postgres::PgOptions::default();
            let backend = p8fs_backend_postgres::PgBackend::connect(url.expose(), clock, options)
                .await
                .map_err(|e| format!("cannot connect to PostgreSQL (storage.url): {e}"))?;
            Ok(Arc::new(backend))
        }
        #[cfg(feature = "tidb")]
        StorageConfig::Tidb { url } => {
            let options = p8fs_backend_tidb::TidbOptions::default();
            let backend = p8fs_backend_tidb::TidbBackend::connect(url.expose(), clock, options)
                .await
                .map_err(|e| format!("cannot connect to TiDB (storage.url): {e}"))?;
            Ok(Arc::new(backend))
        }
        #[allow(
            unreachable_patterns,
            reason = "reachable only when a backend feature is off"
        )]
        other => Err(format!(
            "storage.provider = \"{}\": support is not compiled into this build (cargo feature)",
            provider_name(other)
        )),
    }
}

/// The configuration name of a provider.
pub fn provider_name(storage: &StorageConfig) -> &'static str {
    match storage {
        StorageConfig::Rocksdb { .. } => "rocksdb",
        StorageConfig::Postgres { .. } => "postgres",
        StorageConfig::Tidb { .. } => "tidb",
    }
}

fn source_text(error: &p8fs_core::Error) -> String {
    std::error::Error::source(error).map_or_else(String::new, |source| format!(" ({source})"))
}
