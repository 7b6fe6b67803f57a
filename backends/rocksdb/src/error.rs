//! The only place RocksDB errors and undecodable records are classified into core error kinds.

use p8fs_core::Error;

/// Classifies a RocksDB error: transient conditions are `Unavailable`, the rest `Internal`.
pub(crate) fn classify(error: rocksdb::Error) -> Error {
    use rocksdb::ErrorKind as Kind;
    match error.kind() {
        Kind::Busy
        | Kind::TimedOut
        | Kind::TryAgain
        | Kind::Incomplete
        | Kind::ShutdownInProgress => {
            Error::unavailable("rocksdb is busy", Some(Box::new(error) as _))
        }
        Kind::NotFound
        | Kind::Corruption
        | Kind::NotSupported
        | Kind::InvalidArgument
        | Kind::IOError
        | Kind::MergeInProgress
        | Kind::Expired
        | Kind::Aborted
        | Kind::ColumnFamilyDropped
        | Kind::CompactionTooLarge
        | Kind::Unknown => Error::internal("rocksdb failed", Some(Box::new(error) as _)),
    }
}

/// A stored record that cannot be decoded.
pub(crate) fn corrupt(what: &'static str) -> Error {
    Error::internal(format!("corrupt {what} record in rocksdb"), None)
}

#[cfg(test)]
mod tests {
    use p8fs_core::ErrorKind;

    use super::*;

    #[test]
    fn corrupt_records_are_internal() {
        assert_eq!(corrupt("kv").kind(), ErrorKind::Internal);
    }
}
