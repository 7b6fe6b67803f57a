//! The only place sqlx and PostgreSQL errors are classified into core error kinds.
//!
//! | cause | kind |
//! |---|---|
//! | SQLSTATE 23505 unique violation | `AlreadyExists` (of the record kind the table holds) |
//! | SQLSTATE 23503 foreign key violation | `NotFound` of what the row references: the collection of a vector record, the nodes of an edge, the bucket of an object or upload, the upload of a part |
//! | 40001 serialization failure, 40P01 deadlock, 55P03 lock not available | `Unavailable` |
//! | 57014 query canceled (statement timeout), 57P01-57P05 shutdown, class 08 connection, class 53 resources | `Unavailable` |
//! | IO errors, TLS errors, pool timeout, closed pool, crashed worker | `Unavailable` |
//! | anything else | `Internal`, with the source kept |
//!
//! Callers that know more (a unique violation that means `Conflict` in their context) map the
//! kind themselves after classifying.

use p8fs_core::{Error, Resource};

/// Classifies a sqlx error; see the module table.
pub(crate) fn classify(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let resource = db.table().and_then(resource_of_table);
            match code.as_str() {
                "23505" => Error::already_exists(
                    resource.unwrap_or(Resource::Key),
                    db.constraint().unwrap_or("a unique constraint"),
                ),
                "23503" => Error::not_found(
                    match resource {
                        Some(Resource::VectorRecord) => Resource::Collection,
                        Some(Resource::Object | Resource::Upload) => Resource::Bucket,
                        Some(Resource::Part) => Resource::Upload,
                        _ => Resource::Node,
                    },
                    "the referenced record",
                ),
                code if is_transient_sqlstate(code) => {
                    Error::unavailable(transient_reason(code), Some(Box::new(error) as _))
                }
                _ => Error::internal("postgres rejected a statement", Some(Box::new(error) as _)),
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => Error::unavailable(
            "lost the connection to postgres",
            Some(Box::new(error) as _),
        ),
        sqlx::Error::PoolTimedOut => Error::unavailable(
            "no postgres connection became free in time",
            Some(Box::new(error) as _),
        ),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Error::unavailable(
            "the postgres connection pool is closed",
            Some(Box::new(error) as _),
        ),
        _ => Error::internal("postgres driver error", Some(Box::new(error) as _)),
    }
}

/// Classifies a migration error: driver errors as [`classify`], the rest (a changed or missing
/// migration, a dirty schema) `Internal`.
pub(crate) fn classify_migration(error: sqlx::migrate::MigrateError) -> Error {
    match error {
        sqlx::migrate::MigrateError::Execute(inner) => classify(inner),
        other => Error::internal(
            "the postgres schema cannot be migrated",
            Some(Box::new(other) as _),
        ),
    }
}

/// A value read from the database that the backend cannot interpret.
pub(crate) fn corrupt(what: &'static str) -> Error {
    Error::internal(format!("corrupt {what} in postgres"), None)
}

/// Whether a SQLSTATE names a condition that may pass when the call is retried.
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "57P05"
    ) || code.starts_with("08")
        || code.starts_with("53")
}

fn transient_reason(code: &str) -> &'static str {
    match code {
        "40001" => "serialization failure in postgres",
        "40P01" => "deadlock detected in postgres",
        "55P03" => "a postgres lock was not available",
        "57014" => "the postgres statement timed out or was canceled",
        _ if code.starts_with("57") => "postgres is shutting down or restarting",
        _ if code.starts_with("53") => "postgres is out of resources",
        _ => "lost the connection to postgres",
    }
}

fn resource_of_table(table: &str) -> Option<Resource> {
    match table {
        "p8fs_kv" => Some(Resource::Key),
        "p8fs_collections" => Some(Resource::Collection),
        "p8fs_vectors" => Some(Resource::VectorRecord),
        "p8fs_nodes" => Some(Resource::Node),
        "p8fs_edges" => Some(Resource::Edge),
        "p8fs_buckets" => Some(Resource::Bucket),
        "p8fs_objects" => Some(Resource::Object),
        "p8fs_uploads" => Some(Resource::Upload),
        "p8fs_parts" => Some(Resource::Part),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::fmt;

    use p8fs_core::ErrorKind;
    use sqlx::error::{DatabaseError, ErrorKind as DbErrorKind};

    use super::*;

    /// A server error as the driver reports it: a SQLSTATE and, for constraint errors, the table.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        table: Option<&'static str>,
    }

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}", self.code)
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }

        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn table(&self) -> Option<&str> {
            self.table
        }

        fn kind(&self) -> DbErrorKind {
            DbErrorKind::Other
        }
    }

    fn server(code: &'static str, table: Option<&'static str>) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code, table }))
    }

    #[test]
    fn unique_violation_is_already_exists_of_the_table_kind() {
        let e = classify(server("23505", Some("p8fs_collections")));
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(matches!(
            e,
            Error::AlreadyExists {
                resource: Resource::Collection,
                ..
            }
        ));
        assert!(matches!(
            classify(server("23505", None)),
            Error::AlreadyExists {
                resource: Resource::Key,
                ..
            }
        ));
    }

    #[test]
    fn foreign_key_violation_is_not_found_of_the_referenced_kind() {
        assert!(matches!(
            classify(server("23503", Some("p8fs_vectors"))),
            Error::NotFound {
                resource: Resource::Collection,
                ..
            }
        ));
        assert!(matches!(
            classify(server("23503", Some("p8fs_edges"))),
            Error::NotFound {
                resource: Resource::Node,
                ..
            }
        ));
        for (table, referenced) in [
            ("p8fs_objects", Resource::Bucket),
            ("p8fs_uploads", Resource::Bucket),
            ("p8fs_parts", Resource::Upload),
        ] {
            match classify(server("23503", Some(table))) {
                Error::NotFound { resource, .. } => assert_eq!(resource, referenced, "{table}"),
                other => panic!("{table}: {other:?}"),
            }
        }
        assert!(matches!(
            classify(server("23505", Some("p8fs_buckets"))),
            Error::AlreadyExists {
                resource: Resource::Bucket,
                ..
            }
        ));
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_unavailable() {
        for code in ["40001", "40P01", "55P03"] {
            assert_eq!(
                classify(server(code, None)).kind(),
                ErrorKind::Unavailable,
                "{code}"
            );
        }
    }

    #[test]
    fn statement_timeout_is_unavailable() {
        assert_eq!(
            classify(server("57014", None)).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn shutdown_connection_and_resource_errors_are_unavailable() {
        for code in ["57P01", "57P02", "57P03", "08006", "08001", "53300"] {
            assert_eq!(
                classify(server(code, None)).kind(),
                ErrorKind::Unavailable,
                "{code}"
            );
        }
    }

    #[test]
    fn io_and_pool_errors_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(io).kind(), ErrorKind::Unavailable);
        assert_eq!(
            classify(sqlx::Error::PoolTimedOut).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            classify(sqlx::Error::PoolClosed).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            classify(sqlx::Error::WorkerCrashed).kind(),
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn everything_else_is_internal_with_its_source() {
        use std::error::Error as _;
        let e = classify(server("42P01", None));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(
            e.source().is_some(),
            "the driver error is kept as the source"
        );
        let e = classify(sqlx::Error::Protocol("garbled".into()));
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.source().is_some());
        assert_eq!(corrupt("kv value").kind(), ErrorKind::Internal);
    }
}
