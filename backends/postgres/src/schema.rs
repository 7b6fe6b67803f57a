//! The schema and the column codecs.
//!
//! The schema is a list of versioned migrations embedded in the binary from `migrations/` and
//! applied by sqlx's migrator, which holds a PostgreSQL advisory lock while it runs: applying it
//! twice is a no-op, and two processes starting at once apply it once. Migrations are never edited
//! once released (the migrator checks their checksums); a change is a new file and a new entry in
//! [`MIGRATIONS`].
//!
//! | table | primary key | holds |
//! |---|---|---|
//! | `p8fs_kv` | tenant, key | JSON value (`json`), version, expiry |
//! | `p8fs_collections` | id (tenant, name unique) | dimension, metric |
//! | `p8fs_vectors` | collection id, id | `vector` embedding, norm, metadata, expiry |
//! | `p8fs_nodes` | tenant, id | label, properties, expiry |
//! | `p8fs_edges` | tenant, src, rel, dst | weight, properties, expiry |
//! | `p8fs_buckets` | tenant, name | creation time |
//! | `p8fs_objects` | tenant, bucket, key (`bytea`) | size, ETag, attributes, segments, expiry |
//! | `p8fs_uploads` | tenant, bucket, id | key (`bytea`), initiation, attributes, expiry to give |
//! | `p8fs_parts` | tenant, bucket, upload id, number | data id, size, ETag, checksums |
//! | `p8fs_blobs` | tenant, data id | `pending` or `freed`, since when |
//! | `p8fs_chunks` | tenant, data id, index | the bytes (`bytea` stored uncompressed, at most 1 MiB) |
//! | `p8fs_change_heads` | tenant | newest cursor (head), last trimmed cursor (floor) |
//! | `p8fs_changes` | tenant, cursor | time, kind, operation, subject parts, version |
//!
//! Codecs: JSON is written as text cast to `json`, so the stored text is exactly what serde wrote
//! and reads back to the same value; embeddings travel in pgvector's binary format, so f32
//! components are exact both ways.

use std::borrow::Cow;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use p8fs_core::{Error, Metric, Result};

use crate::error::classify_migration;

/// The migrations, oldest first: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (2, "objects", include_str!("../migrations/0002_objects.sql")),
    (
        3,
        "chunk storage",
        include_str!("../migrations/0003_chunk_storage.sql"),
    ),
    (4, "changes", include_str!("../migrations/0004_changes.sql")),
];

/// The embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'s, std::result::Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Applies every migration not applied yet, under the migrator's advisory lock, on a connection
/// of its own (closed afterwards, which also releases the lock if a migration failed).
pub(crate) async fn migrate(options: &sqlx::postgres::PgConnectOptions) -> Result<()> {
    use sqlx::Connection;
    let migrator = Migrator::new(Embedded).await.map_err(classify_migration)?;
    let mut connection = sqlx::PgConnection::connect_with(options)
        .await
        .map_err(crate::error::classify)?;
    let applied = migrator
        .run_direct(&mut connection)
        .await
        .map_err(classify_migration);
    // Closing is best effort: the server releases the session's locks when the socket goes.
    let _ = connection.close().await;
    applied
}

/// An embedding as a bind parameter, in pgvector's binary format: dimension (u16), a reserved u16,
/// then each component as a big-endian f32.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VectorParam<'a>(pub(crate) &'a [f32]);

impl Type<Postgres> for VectorParam<'_> {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("vector")
    }
}

impl Encode<'_, Postgres> for VectorParam<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        let dimension = u16::try_from(self.0.len())?;
        buf.extend_from_slice(&dimension.to_be_bytes());
        buf.extend_from_slice(&0_u16.to_be_bytes());
        for component in self.0 {
            buf.extend_from_slice(&component.to_be_bytes());
        }
        Ok(IsNull::No)
    }
}

/// An embedding read from a `vector` column (binary format, as above).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VectorColumn(pub(crate) Vec<f32>);

impl Type<Postgres> for VectorColumn {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("vector")
    }
}

impl Decode<'_, Postgres> for VectorColumn {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("vector columns are read in binary format".into());
        }
        let bytes = value.as_bytes()?;
        let (header, body) = bytes.split_at_checked(4).ok_or("truncated vector")?;
        let dimension = usize::from(u16::from_be_bytes([header[0], header[1]]));
        if body.len() != dimension * 4 {
            return Err("vector length does not match its dimension".into());
        }
        Ok(Self(
            body.chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

/// JSON as the text written to a `json` column.
pub(crate) fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::internal("cannot serialise JSON", Some(Box::new(e) as _)))
}

/// A JSON object read back (metadata, properties).
pub(crate) fn json_object(
    value: serde_json::Value,
    what: &'static str,
) -> Result<p8fs_core::JsonMap> {
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(crate::error::corrupt(what)),
    }
}

/// The metric's name in the `metric` column.
pub(crate) fn metric_name(metric: Metric) -> &'static str {
    metric.as_str()
}

/// The metric named in the `metric` column.
pub(crate) fn parse_metric(name: &str) -> Result<Metric> {
    match name {
        "cosine" => Ok(Metric::Cosine),
        "l2" => Ok(Metric::L2),
        "dot" => Ok(Metric::Dot),
        _ => Err(crate::error::corrupt("collection metric")),
    }
}

/// The upper bound of a key range for "starts with `prefix`": the smallest string greater than
/// every string with that prefix (the last character that can be incremented is, and the rest
/// dropped), or a string above every valid key when none can. Under `COLLATE "C"` strings order
/// by UTF-8 bytes, which is code point order.
pub(crate) fn prefix_upper_bound(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    // Every valid key is at most 1024 bytes; 257 four-byte maximal characters sort above them all.
    std::iter::repeat_n(char::MAX, 257).collect()
}

fn next_char(c: char) -> Option<char> {
    match c {
        char::MAX => None,
        '\u{D7FF}' => Some('\u{E000}'),
        _ => char::from_u32(u32::from(c) + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_strings() {
        assert_eq!(prefix_upper_bound("ab"), "ac");
        assert_eq!(prefix_upper_bound("a\u{D7FF}"), "a\u{E000}");
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), "b");
        let top = prefix_upper_bound("");
        assert!(top.as_bytes() > "\u{10FFFF}".repeat(256).as_bytes());
        for (prefix, inside, outside) in [
            ("a/", "a/\u{10FFFF}z", "a0"),
            ("é", "éz", "ê"),
            ("🔑", "🔑🔑", "🔒"),
        ] {
            let upper = prefix_upper_bound(prefix);
            assert!(inside.as_bytes() >= prefix.as_bytes() && inside.as_bytes() < upper.as_bytes());
            assert!(outside.as_bytes() >= upper.as_bytes());
        }
    }

    #[test]
    fn every_migration_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(
            files,
            MIGRATIONS.len(),
            "add each file of migrations/ to MIGRATIONS"
        );
    }
}
