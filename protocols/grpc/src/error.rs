//! The one mapping of `core::Error` to gRPC status codes:
//!
//! | kind | code |
//! |---|---|
//! | `NotFound` | `NOT_FOUND` |
//! | `AlreadyExists` | `ALREADY_EXISTS` |
//! | `Conflict` (a failed compare-and-swap, a collection of another shape) | `ABORTED` |
//! | `InvalidInput` | `INVALID_ARGUMENT`, with a `google.rpc.BadRequest` naming the field |
//! | `Unauthorized` | `UNAUTHENTICATED` |
//! | `Forbidden` | `PERMISSION_DENIED` |
//! | `Gone` (a change cursor trimmed by retention) | `FAILED_PRECONDITION`, with a `google.rpc.ErrorInfo` (reason `CURSOR_GONE`, `oldest_cursor`) |
//! | `Unavailable` | `UNAVAILABLE` |
//! | `Internal` | `INTERNAL` |
//!
//! `Gone` is `FAILED_PRECONDITION`, not `OUT_OF_RANGE`: the client cannot fix it by asking for
//! another range of the same thing, it must resume from the oldest cursor kept (the state of the
//! log changed under it). Messages are `Error::client_message`; internal details go to the log.

use std::collections::HashMap;

use p8fs_core::{Error, ErrorKind};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The status code of an error kind.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::Gone => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A `core::Error` as the status of the call that failed.
pub fn status(error: Error) -> Status {
    match &error {
        Error::Internal { .. } => tracing::error!(?error, "internal error"),
        Error::Unavailable { .. } => tracing::warn!(?error, "backend unavailable"),
        _ => {}
    }
    let code = code(error.kind());
    let message = error.client_message();
    match &error {
        Error::InvalidInput { field, reason } => Status::with_error_details(
            code,
            message,
            ErrorDetails::with_bad_request_violation(field.to_string(), reason.to_string()),
        ),
        Error::Gone { oldest } => Status::with_error_details(
            code,
            message,
            ErrorDetails::with_error_info(
                "CURSOR_GONE",
                "p8fs",
                HashMap::from([("oldest_cursor".to_owned(), oldest.to_string())]),
            ),
        ),
        _ => Status::new(code, message),
    }
}

/// Converts the result of a contract call for a handler.
pub(crate) trait GrpcResult<T> {
    fn grpc(self) -> Result<T, Status>;
}

impl<T> GrpcResult<T> for p8fs_core::Result<T> {
    fn grpc(self) -> Result<T, Status> {
        self.map_err(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_its_field_in_a_bad_request_detail() {
        let status = status(Error::invalid("key", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("a BadRequest detail");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "key");
    }

    #[test]
    fn every_kind_has_its_code_and_internal_details_stay_in() {
        assert_eq!(status(Error::conflict("version")).code(), Code::Aborted);
        assert_eq!(
            status(Error::Unauthorized("no".into())).code(),
            Code::Unauthenticated
        );
        assert_eq!(
            status(Error::Forbidden("no".into())).code(),
            Code::PermissionDenied
        );
        let gone = status(Error::Gone {
            oldest: p8fs_core::ChangeCursor(7),
        });
        assert_eq!(gone.code(), Code::FailedPrecondition);
        let info = gone.get_error_details();
        let info = info.error_info().expect("an ErrorInfo detail");
        assert_eq!(
            info.metadata.get("oldest_cursor").map(String::as_str),
            Some("7")
        );
        let internal = status(Error::internal("secret table name", None));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("secret"));
    }
}
