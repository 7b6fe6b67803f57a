//! The schema: the server dialect, versioned migrations applied on connect, and the encoding of
//! rows (keys and ids as raw UTF-8 bytes, JSON as its exact text, vectors in TiDB's text form).
//!
//! | table              | primary key                 | other columns                                 |
//! |--------------------|-----------------------------|-----------------------------------------------|
//! | `p8fs_kv`          | tenant, k                   | value (JSON text), version, expires_at        |
//! | `p8fs_collections` | tenant, name                | dimension, metric                             |
//! | `p8fs_vectors`     | tenant, collection, id      | embedding, norm, metadata, expires_at         |
//! | `p8fs_nodes`       | tenant, id                  | label, properties, expires_at                 |
//! | `p8fs_edges`       | tenant, src, rel, dst       | weight, properties, expires_at; index on (tenant, dst, rel, src) |
//! | `p8fs_buckets`     | tenant, name                | id (unique, never reused), created_at         |
//! | `p8fs_deleted_buckets` | id                      | tenant, deleted_at                            |
//! | `p8fs_objects`     | bucket (id), k              | tenant, size, etag, last_modified, expires_at, attributes (JSON text), segments ([`segments_bytes`]) |
//! | `p8fs_blobs`       | tenant, data                | state (1 pending, 2 freed), since; index on (state, since) |
//! | `p8fs_chunks`      | tenant, data, idx           | size, bytes (at most 1 MiB)                    |
//! | `p8fs_uploads`     | bucket (id), id             | tenant, k, initiated, attributes, expires_at; index on (bucket, k, id) |
//! | `p8fs_parts`       | upload, number              | data, size, etag, checksums (JSON text), last_modified |
//! | `p8fs_change_heads` | tenant                     | head, floor (newest and last trimmed cursor)  |
//! | `p8fs_changes`     | tenant, seq (the cursor)    | committed_at, kind, op, a, b, c (the subject's parts), version |
//! | `p8fs_migrations`  | version                     | description, applied_at                       |
//!
//! Plus the sequence `p8fs_version_seq` for key-value versions, bucket ids, data ids and upload
//! ids. `expires_at` is milliseconds since the epoch from the backend's clock, `NULL` for never.
//!
//! Migrations run under a named lock (`GET_LOCK`), each statement is idempotent and each
//! applied version is recorded, so connecting twice, or from two processes at once, is safe.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};

use p8fs_core::{DataId, Error, Metric, Result, Segment, Timestamp};

use crate::error::{classify, corrupt};
use crate::sql;

/// How long a connecting process waits for another one's migrations, in seconds.
const MIGRATION_LOCK_WAIT_SECONDS: i64 = 120;

/// Which server the backend talks to. The SQL it sends is the same on both; only the DDL of the
/// vector column differs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dialect {
    /// TiDB: native `VECTOR` columns and `VEC_*` functions, TTL tables.
    Tidb,
    /// A MySQL-protocol stand-in (MariaDB in tests) with TiDB's `VEC_*` functions installed as
    /// stored functions, and vectors kept in their text form.
    StandIn,
}

impl Dialect {
    /// The dialect of a server, from `SELECT VERSION()` (TiDB's contains `TiDB`).
    pub fn from_version(version: &str) -> Self {
        if version.contains("TiDB") {
            Dialect::Tidb
        } else {
            Dialect::StandIn
        }
    }

    fn embedding_type(self) -> &'static str {
        match self {
            Dialect::Tidb => sql::EMBEDDING_TYPE_TIDB,
            Dialect::StandIn => sql::EMBEDDING_TYPE_STAND_IN,
        }
    }
}

/// Reads the server version and checks that TiDB's vector functions exist.
pub(crate) async fn detect(conn: &mut Conn) -> Result<Dialect> {
    let version: Option<String> = conn
        .query_first(sql::SERVER_VERSION)
        .await
        .map_err(classify)?;
    let dialect = Dialect::from_version(version.as_deref().unwrap_or_default());
    let probe: std::result::Result<Option<f64>, _> =
        conn.query_first(sql::VECTOR_FUNCTIONS_PROBE).await;
    match probe {
        Ok(Some(distance)) if (distance - 5.0).abs() < 1e-9 => Ok(dialect),
        Ok(_) => Err(Error::internal(
            "the server's VEC_L2_DISTANCE gives wrong results",
            None,
        )),
        Err(mysql_async::Error::Server(e)) => Err(Error::internal(
            "the server lacks TiDB's vector functions; on a MariaDB stand-in load \
             scripts/services/tidb-vector-functions.sql into the database",
            Some(Box::new(e) as _),
        )),
        Err(e) => Err(classify(e)),
    }
}

/// Applies every migration not yet recorded, under a named lock.
pub(crate) async fn migrate(conn: &mut Conn, dialect: Dialect, now: Timestamp) -> Result<()> {
    let latest = sql::MIGRATIONS.last().map_or(0, |m| m.version);
    // Fast path: everything applied already (the table may not exist yet: then migrate).
    if let Ok(applied) = conn.query::<i32, _>(sql::MIGRATIONS_APPLIED).await
        && applied.last().copied() == Some(latest)
    {
        return Ok(());
    }
    let locked: Option<Option<i64>> = conn
        .exec_first(sql::MIGRATION_LOCK, (MIGRATION_LOCK_WAIT_SECONDS,))
        .await
        .map_err(classify)?;
    if locked.flatten() != Some(1) {
        return Err(Error::unavailable(
            "timed out waiting for another process's migrations",
            None,
        ));
    }
    let result = apply(conn, dialect, now).await;
    let released = conn
        .query_drop(sql::MIGRATION_UNLOCK)
        .await
        .map_err(classify);
    result.and(released)
}

async fn apply(conn: &mut Conn, dialect: Dialect, now: Timestamp) -> Result<()> {
    conn.query_drop(sql::MIGRATIONS_TABLE)
        .await
        .map_err(classify)?;
    let applied: Vec<i32> = conn
        .query(sql::MIGRATIONS_APPLIED)
        .await
        .map_err(classify)?;
    for migration in sql::MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        for statement in migration.statements {
            let statement =
                statement.replace(sql::EMBEDDING_TYPE_PLACEHOLDER, dialect.embedding_type());
            conn.query_drop(statement).await.map_err(classify)?;
        }
        conn.exec_drop(
            sql::MIGRATION_RECORD,
            (migration.version, migration.description, now),
        )
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// TiDB only: lets TiDB's TTL jobs delete rows `grace` after they expired. The jobs use the
/// server's clock, hence the grace period (and this is opt-in, see `TidbOptions`).
pub(crate) async fn enable_native_ttl(conn: &mut Conn, grace: std::time::Duration) -> Result<()> {
    for table in sql::TTL_TABLES {
        conn.query_drop(sql::NATIVE_TTL_COLUMN.replace("{table}", table))
            .await
            .map_err(classify)?;
        let enable = sql::NATIVE_TTL_ENABLE
            .replace("{table}", table)
            .replace("{grace}", &grace.as_secs().max(1).to_string());
        conn.query_drop(enable).await.map_err(classify)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Row decoding
// ---------------------------------------------------------------------------------------------

/// Column `idx` of `row`, converted; a missing or unconvertible column is a corrupt row.
pub(crate) fn column<T: mysql_async::prelude::FromValue>(
    row: &mut Row,
    idx: usize,
    what: &'static str,
) -> Result<T> {
    match row.take_opt::<T, usize>(idx) {
        Some(Ok(value)) => Ok(value),
        _ => Err(corrupt(what)),
    }
}

/// A text column stored as raw UTF-8 bytes (keys, ids, labels).
pub(crate) fn text(row: &mut Row, idx: usize, what: &'static str) -> Result<String> {
    let bytes: Vec<u8> = column(row, idx, what)?;
    String::from_utf8(bytes).map_err(|_| corrupt(what))
}

/// A JSON column, parsed from its stored text.
pub(crate) fn json<T: serde::de::DeserializeOwned>(
    row: &mut Row,
    idx: usize,
    what: &'static str,
) -> Result<T> {
    let bytes: Vec<u8> = column(row, idx, what)?;
    serde_json::from_slice(&bytes).map_err(|_| corrupt(what))
}

/// Serialises JSON for storage.
pub(crate) fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::internal("cannot serialise JSON", Some(Box::new(e) as _)))
}

/// An optional expiry column.
pub(crate) fn expiry(row: &mut Row, idx: usize, what: &'static str) -> Result<Option<Timestamp>> {
    column(row, idx, what)
}

/// Bytes of a key or id, as a bind parameter.
pub(crate) fn bytes(text: &str) -> Value {
    Value::Bytes(text.as_bytes().to_vec())
}

/// The bytes of one segment in [`segments_bytes`]: data id and size, big-endian `u64`s.
pub(crate) const SEGMENT_BYTES: usize = 16;

/// An object's segments as stored: 16 bytes each (data id, size), so the 10,000 segments of
/// the largest multipart object take 160 KB.
pub(crate) fn segments_bytes(segments: &[Segment]) -> Vec<u8> {
    let mut out = Vec::with_capacity(segments.len() * SEGMENT_BYTES);
    for segment in segments {
        out.extend_from_slice(&segment.data.0.to_be_bytes());
        out.extend_from_slice(&segment.size.to_be_bytes());
    }
    out
}

/// Parses [`segments_bytes`].
pub(crate) fn parse_segments(bytes: &[u8]) -> Result<Vec<Segment>> {
    if !bytes.len().is_multiple_of(SEGMENT_BYTES) {
        return Err(corrupt("object segments"));
    }
    Ok(bytes
        .chunks_exact(SEGMENT_BYTES)
        .map(|entry| {
            let (data, size) = entry.split_at(8);
            let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
            Segment {
                data: DataId(word(data)),
                size: word(size),
            }
        })
        .collect())
}

/// The metric's name in the `p8fs_collections` table.
pub(crate) fn metric_name(metric: Metric) -> &'static str {
    metric.as_str()
}

/// A metric read back from `p8fs_collections`.
pub(crate) fn parse_metric(name: &str) -> Result<Metric> {
    match name {
        "cosine" => Ok(Metric::Cosine),
        "l2" => Ok(Metric::L2),
        "dot" => Ok(Metric::Dot),
        _ => Err(corrupt("collection")),
    }
}

/// TiDB's text form of a vector, `[1,2.5,-3]`. `f32`'s `Display` prints the shortest decimal
/// that reads back to the same `f32`, never with an exponent, as TiDB prints its vectors.
pub(crate) fn embedding_text(values: &[f32]) -> String {
    let mut out = String::with_capacity(values.len() * 10 + 2);
    out.push('[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&value.to_string());
    }
    out.push(']');
    out
}

/// Parses the text form of a vector back into `f32` components.
pub(crate) fn parse_embedding(text: &str) -> Result<Vec<f32>> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| corrupt("vector"))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|component| {
            component
                .trim()
                .parse::<f32>()
                .map_err(|_| corrupt("vector"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_version() {
        assert_eq!(Dialect::from_version("8.0.11-TiDB-v8.5.1"), Dialect::Tidb);
        assert_eq!(
            Dialect::from_version("10.11.19-MariaDB-0+deb12u1"),
            Dialect::StandIn
        );
    }

    #[test]
    fn embeddings_round_trip_exactly() {
        let values = [
            0.0,
            -0.0,
            1.0,
            0.1,
            -2.5,
            f32::MAX,
            -f32::MAX,
            f32::MIN_POSITIVE,
            1e-45,
            16_777_217.0,
        ];
        let text = embedding_text(&values);
        assert!(!text.contains('e'), "no exponent: {text}");
        let back = parse_embedding(&text).unwrap();
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits(), "{a} round-trips");
        }
        assert_eq!(parse_embedding("[1, 2.5,-3]").unwrap(), [1.0, 2.5, -3.0]);
        assert!(parse_embedding("1,2").is_err());
        assert!(parse_embedding("[1,x]").is_err());
    }

    #[test]
    fn segments_round_trip() {
        let segments = [
            Segment {
                data: DataId(1),
                size: 0,
            },
            Segment {
                data: DataId(u64::MAX),
                size: 5 * 1024 * 1024 * 1024,
            },
        ];
        let bytes = segments_bytes(&segments);
        assert_eq!(bytes.len(), 32);
        assert_eq!(parse_segments(&bytes).unwrap(), segments);
        assert_eq!(parse_segments(&[]).unwrap(), []);
        assert!(parse_segments(&bytes[..15]).is_err());
    }
}
