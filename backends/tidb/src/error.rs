//! The only place driver errors are classified into core error kinds, and the one place that
//! decides which failures a transaction may retry.

use mysql_async::{DriverError, Error as MysqlError};

use p8fs_core::{Error, Resource};

/// `ER_DUP_ENTRY`: a unique key already holds the value.
const DUPLICATE_ENTRY: u16 = 1062;
/// `ER_LOCK_DEADLOCK`: the transaction was chosen as a deadlock victim and rolled back.
const DEADLOCK: u16 = 1213;
/// `ER_LOCK_WAIT_TIMEOUT`.
const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// TiDB `ErrCantRetry`/`ErrRetryable` family: "can not retry select for update statement".
const TIDB_CANT_RETRY: u16 = 8002;
/// TiDB: "Error: KV error safe to retry".
const TIDB_KV_RETRYABLE: u16 = 8022;
/// TiDB: "Information schema is changed during the execution".
const TIDB_SCHEMA_CHANGED: u16 = 8028;
/// TiDB: write conflict (optimistic transactions, or a pessimistic one losing a race).
const TIDB_WRITE_CONFLICT: u16 = 9007;
/// TiDB: PD, TiKV or region temporarily unavailable (9001 to 9005).
const TIDB_STORAGE_BUSY: std::ops::RangeInclusive<u16> = 9001..=9005;
/// `ER_QUERY_INTERRUPTED` (`KILL QUERY`).
const QUERY_INTERRUPTED: u16 = 1317;
/// MariaDB `ER_STATEMENT_TIMEOUT`: `max_statement_time` exceeded.
const MARIADB_STATEMENT_TIMEOUT: u16 = 1969;
/// MySQL and TiDB `ER_QUERY_TIMEOUT`: `MAX_EXECUTION_TIME` exceeded.
const QUERY_TIMEOUT: u16 = 3024;
/// `ER_CON_COUNT_ERROR`: too many connections.
const TOO_MANY_CONNECTIONS: u16 = 1040;
/// `ER_SERVER_SHUTDOWN`: the server is shutting down.
const SERVER_SHUTDOWN: u16 = 1053;
/// MariaDB `ER_CONNECTION_KILLED`.
const CONNECTION_KILLED: u16 = 1927;

/// The server error code, if `error` is a server error.
fn server_code(error: &MysqlError) -> Option<u16> {
    match error {
        MysqlError::Server(server) => Some(server.code),
        _ => None,
    }
}

/// Whether a transaction that failed with `error` was rolled back by a conflict with another
/// transaction (or lost a race to create the same row), so running it again from the start is
/// safe and may succeed. Connection loss is not retried: a commit may have happened.
pub(crate) fn is_conflict(error: &MysqlError) -> bool {
    matches!(
        server_code(error),
        Some(
            DUPLICATE_ENTRY
                | DEADLOCK
                | LOCK_WAIT_TIMEOUT
                | TIDB_CANT_RETRY
                | TIDB_KV_RETRYABLE
                | TIDB_SCHEMA_CHANGED
                | TIDB_WRITE_CONFLICT
        )
    )
}

/// Classifies a driver error: a duplicate key is `AlreadyExists`; conflicts between
/// transactions, timeouts, an overloaded or restarting server and a lost connection are
/// `Unavailable` (retryable); anything else is `Internal`, keeping the source for logs.
pub(crate) fn classify(error: MysqlError) -> Error {
    if let Some(code) = server_code(&error) {
        return match code {
            DUPLICATE_ENTRY => Error::already_exists(Resource::Key, "a row with this key"),
            DEADLOCK | LOCK_WAIT_TIMEOUT | TIDB_CANT_RETRY | TIDB_KV_RETRYABLE
            | TIDB_SCHEMA_CHANGED | TIDB_WRITE_CONFLICT => Error::unavailable(
                "the database aborted the transaction because of a concurrent one; retry",
                Some(Box::new(error) as _),
            ),
            QUERY_INTERRUPTED | MARIADB_STATEMENT_TIMEOUT | QUERY_TIMEOUT => Error::unavailable(
                "the database statement timed out or was interrupted",
                Some(Box::new(error) as _),
            ),
            TOO_MANY_CONNECTIONS | SERVER_SHUTDOWN | CONNECTION_KILLED => {
                Error::unavailable("the database is unavailable", Some(Box::new(error) as _))
            }
            code if TIDB_STORAGE_BUSY.contains(&code) => Error::unavailable(
                "the TiDB storage layer is busy or unavailable",
                Some(Box::new(error) as _),
            ),
            _ => Error::internal(
                "the database rejected a statement",
                Some(Box::new(error) as _),
            ),
        };
    }
    let connection_lost = match &error {
        MysqlError::Io(_) => true,
        MysqlError::Driver(driver) => matches!(
            driver,
            DriverError::ConnectionClosed
                | DriverError::PoolDisconnected
                | DriverError::PacketOutOfOrder
        ),
        MysqlError::Other(_) | MysqlError::Url(_) | MysqlError::Server(_) => false,
    };
    if connection_lost {
        Error::unavailable(
            "the connection to the database was lost",
            Some(Box::new(error) as _),
        )
    } else {
        Error::internal("database driver error", Some(Box::new(error) as _))
    }
}

/// A stored row that cannot be decoded.
pub(crate) fn corrupt(what: &'static str) -> Error {
    Error::internal(format!("corrupt {what} row in the database"), None)
}

#[cfg(test)]
mod tests {
    use mysql_async::{IoError, ServerError, UrlError};
    use p8fs_core::ErrorKind;

    use super::*;

    fn server(code: u16) -> MysqlError {
        MysqlError::Server(ServerError {
            code,
            message: format!("error {code}"),
            state: "HY000".to_owned(),
        })
    }

    #[test]
    fn duplicate_entry_is_already_exists() {
        assert_eq!(classify(server(1062)).kind(), ErrorKind::AlreadyExists);
        assert!(is_conflict(&server(1062)), "a lost create race is retried");
    }

    #[test]
    fn transaction_conflicts_are_unavailable_and_retried() {
        for code in [1213, 1205, 8002, 8022, 8028, 9007] {
            assert_eq!(
                classify(server(code)).kind(),
                ErrorKind::Unavailable,
                "{code}"
            );
            assert!(is_conflict(&server(code)), "{code} is retried");
        }
    }

    #[test]
    fn timeouts_and_overload_are_unavailable_but_not_retried() {
        for code in [1317, 1969, 3024, 1040, 1053, 1927, 9001, 9005] {
            assert_eq!(
                classify(server(code)).kind(),
                ErrorKind::Unavailable,
                "{code}"
            );
            assert!(
                !is_conflict(&server(code)),
                "{code} is not retried in a transaction"
            );
        }
    }

    #[test]
    fn connection_loss_is_unavailable() {
        let io = MysqlError::Io(IoError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(classify(io).kind(), ErrorKind::Unavailable);
        for driver in [DriverError::ConnectionClosed, DriverError::PoolDisconnected] {
            let error = MysqlError::Driver(driver);
            assert!(!is_conflict(&error));
            assert_eq!(classify(error).kind(), ErrorKind::Unavailable);
        }
    }

    #[test]
    fn everything_else_is_internal_with_its_source() {
        use std::error::Error as _;
        let syntax = classify(server(1064));
        assert_eq!(syntax.kind(), ErrorKind::Internal);
        assert!(syntax.source().is_some(), "the driver error is kept");
        assert_eq!(
            classify(MysqlError::Url(UrlError::Invalid)).kind(),
            ErrorKind::Internal
        );
        assert_eq!(
            classify(MysqlError::Driver(DriverError::NestedTransaction)).kind(),
            ErrorKind::Internal
        );
        assert_eq!(corrupt("kv").kind(), ErrorKind::Internal);
    }
}
