//! Configuration: one TOML file plus `P8FS_*` environment overrides (the environment wins), then
//! command-line flags. Unknown keys are an error that names the key; secrets print as `****`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The effective configuration of a `p8fs` process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where `p8fs serve` listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where local state lives: the RocksDB database and the signing keys.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The storage backend.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Access tokens.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Background maintenance.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
}

/// Which backend stores the data; `provider` picks the variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase", deny_unknown_fields)]
pub enum StorageConfig {
    /// Embedded RocksDB in `<data_dir>/rocksdb`.
    Rocksdb {
        /// Fsync the write-ahead log on every write (survives power loss, slower).
        #[serde(default)]
        sync_writes: bool,
    },
    /// PostgreSQL with pgvector.
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: Secret,
    },
    /// TiDB (MySQL protocol).
    Tidb {
        /// `mysql://user:password@host:port/database`.
        url: Secret,
    },
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Rocksdb { sync_writes: false }
    }
}

/// Access-token settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` of tokens this server issues and accepts.
    #[serde(default = "default_issuer")]
    pub issuer: String,
    /// The `aud` of tokens this server issues and accepts.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: default_issuer(),
            audience: default_audience(),
            leeway: default_leeway(),
        }
    }
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes.
    #[serde(default = "default_body_bytes")]
    pub body_bytes: usize,
    /// Most requests served at once; more wait.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest a request may take before it gets 408.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: default_body_bytes(),
            concurrency: default_concurrency(),
            request_timeout: default_request_timeout(),
        }
    }
}

/// Log format and level.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `p8fs=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: default_log_format(),
            level: default_log_level(),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Background maintenance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// How often expired records are physically removed.
    #[serde(default = "default_purge_interval", with = "humantime_serde")]
    pub purge_interval: Duration,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            purge_interval: default_purge_interval(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./p8fs-data")
}
fn default_issuer() -> String {
    "http://127.0.0.1:8080".to_owned()
}
fn default_audience() -> String {
    "p8fs".to_owned()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_body_bytes() -> usize {
    2 * 1024 * 1024
}
fn default_concurrency() -> usize {
    1024
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_log_format() -> LogFormat {
    LogFormat::Text
}
fn default_log_level() -> String {
    "info".to_owned()
}
fn default_purge_interval() -> Duration {
    Duration::from_secs(60)
}

/// A secret (a database URL with a password): printed as `****`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("****")
    }
}

/// Environment variables that override file keys.
const ENV_KEYS: &[(&str, &[&str])] = &[
    ("P8FS_LISTEN", &["listen"]),
    ("P8FS_DATA_DIR", &["data_dir"]),
    ("P8FS_STORAGE_PROVIDER", &["storage", "provider"]),
    ("P8FS_STORAGE_URL", &["storage", "url"]),
    ("P8FS_AUTH_ISSUER", &["auth", "issuer"]),
    ("P8FS_AUTH_AUDIENCE", &["auth", "audience"]),
    ("P8FS_LOG_FORMAT", &["log", "format"]),
    ("P8FS_LOG_LEVEL", &["log", "level"]),
];

/// Prefixes of variables that belong to tests and benchmarks, not to the server.
const FOREIGN_PREFIXES: &[&str] = &["P8FS_TEST_", "P8FS_BENCH_", "P8FS_PROPTEST_"];

/// Flags given on the command line; they win over the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads the file (if any), applies `P8FS_*` variables from `env`, then `overrides`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, String> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                text.parse::<toml::Table>()
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            if !name.starts_with("P8FS_") || FOREIGN_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            let Some((_, path)) = ENV_KEYS.iter().find(|(known, _)| *known == name) else {
                let known: Vec<&str> = ENV_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "unknown environment variable {name}; known: {}",
                    known.join(", ")
                ));
            };
            set(&mut table, path, value);
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("configuration: {}", e.message()))?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.limits.body_bytes < 1024 {
            return Err("limits.body_bytes: must be at least 1024".into());
        }
        if self.limits.concurrency == 0 {
            return Err("limits.concurrency: must be at least 1".into());
        }
        if self.limits.request_timeout.is_zero() {
            return Err("limits.request_timeout: must be greater than 0".into());
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return Err("auth.issuer and auth.audience: must not be empty".into());
        }
        Ok(())
    }
}

/// Sets `path` in `table` to `value`, keeping TOML's types: an integer or boolean stays one.
fn set(table: &mut toml::Table, path: &[&str], value: String) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for parent in parents {
        let entry = current
            .entry((*parent).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let Some(next) = entry.as_table_mut() else {
            return;
        };
        current = next;
    }
    current.insert((*last).to_owned(), toml::Value::String(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(matches!(config.storage, StorageConfig::Rocksdb { .. }));
    }

    #[test]
    fn environment_wins_over_the_file_and_flags_win_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("P8FS_LOG_FORMAT", "text")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.log.format, LogFormat::Text);
        let overrides = Overrides {
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            data_dir: None,
        };
        let config = Config::load(
            Some(&file),
            env(&[("P8FS_LISTEN", "127.0.0.1:8000")]),
            &overrides,
        )
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p8fs.toml");
        std::fs::write(&file, "[limits]\nbody_byte = 10\n").unwrap();
        let error = Config::load(Some(&file), env(&[]), &Overrides::default()).unwrap_err();
        assert!(error.contains("body_byte"), "{error}");
        let error = Config::load(
            None,
            env(&[("P8FS_STORAGE_PROVIDER", "mongo")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            error.contains("mongo") && error.contains("rocksdb"),
            "{error}"
        );
        let error = Config::load(
            None,
            env(&[("P8FS_LISTEN_ADDR", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(error.contains("P8FS_LISTEN_ADDR"), "{error}");
        assert!(
            Config::load(
                None,
                env(&[("P8FS_TEST_POSTGRES_URL", "x")]),
                &Overrides::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let config = Config::load(
            None,
            env(&[
                ("P8FS_STORAGE_PROVIDER", "postgres"),
                ("P8FS_STORAGE_URL", "postgres://u:hunter2@db/p8fs"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let shown = format!("{config:?}") + &toml::to_string(&config).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
