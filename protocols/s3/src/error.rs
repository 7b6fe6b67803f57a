//! The one mapping from `p8fs_core::Error` (and the completion errors of core's multipart
//! planning) to S3 error codes. Internal details go to the log, never to the wire.

use p8fs_core::object::CompletionError;
use p8fs_core::{BucketName, Error, ObjectKey, Resource};
use s3s::{S3Error, S3ErrorCode};

/// The S3 error for a core error. `NotFound` and `AlreadyExists` choose their code by the
/// resource; `InvalidInput` by the field (`bucket`, `key`, `range`, ...); `Conflict` is what a
/// failed write condition reports.
pub(crate) fn s3_error(error: Error) -> S3Error {
    let code = match &error {
        Error::NotFound { resource, .. } => match resource {
            Resource::Bucket => S3ErrorCode::NoSuchBucket,
            Resource::Upload | Resource::Part => S3ErrorCode::NoSuchUpload,
            Resource::Object
            | Resource::Key
            | Resource::Collection
            | Resource::VectorRecord
            | Resource::Node
            | Resource::Edge
            | Resource::Memory => S3ErrorCode::NoSuchKey,
        },
        Error::AlreadyExists { resource, .. } => match resource {
            Resource::Bucket => S3ErrorCode::BucketAlreadyOwnedByYou,
            Resource::Object
            | Resource::Upload
            | Resource::Part
            | Resource::Key
            | Resource::Collection
            | Resource::VectorRecord
            | Resource::Node
            | Resource::Edge
            | Resource::Memory => S3ErrorCode::PreconditionFailed,
        },
        Error::Conflict { .. } => S3ErrorCode::PreconditionFailed,
        Error::InvalidInput { field, .. } => match field.as_ref() {
            // Names are validated by `bucket_name` and `object_key` below; a backend reports
            // `bucket` only when the tenant already has the most buckets allowed.
            "bucket" => S3ErrorCode::TooManyBuckets,
            "range" => S3ErrorCode::InvalidRange,
            "body" => S3ErrorCode::EntityTooLarge,
            "metadata" | "headers" => S3ErrorCode::MetadataTooLarge,
            _ => S3ErrorCode::InvalidArgument,
        },
        Error::Unauthorized(_) | Error::Forbidden(_) => S3ErrorCode::AccessDenied,
        Error::Unavailable { .. } => S3ErrorCode::ServiceUnavailable,
        // The S3 front-end never reads the change log.
        Error::Internal { .. } | Error::Gone { .. } => S3ErrorCode::InternalError,
    };
    match &error {
        Error::Internal { .. } | Error::Unavailable { .. } | Error::Gone { .. } => {
            tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "S3 request failed");
            S3Error::new(code)
        }
        Error::Forbidden(reason) | Error::Unauthorized(reason) => {
            S3Error::with_message(code, reason.to_string())
        }
        Error::NotFound { resource, .. } => {
            S3Error::with_message(code, format!("the {resource} does not exist"))
        }
        Error::AlreadyExists { resource, .. } => {
            S3Error::with_message(code, format!("the {resource} already exists"))
        }
        Error::Conflict { .. } => S3Error::with_message(
            code,
            "at least one of the preconditions you specified did not hold",
        ),
        Error::InvalidInput { .. } => S3Error::with_message(code, error.to_string()),
    }
}

/// A bucket name from the wire: `InvalidBucketName` unless it follows S3's rules.
pub(crate) fn bucket_name(name: &str) -> Result<BucketName, S3Error> {
    BucketName::new(name)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))
}

/// An object key from the wire (`field` names it in the message): `KeyTooLongError` past 1024
/// bytes, `InvalidArgument` when empty or holding U+0000.
pub(crate) fn object_key(field: &'static str, key: &str) -> Result<ObjectKey, S3Error> {
    ObjectKey::named(field, key).map_err(|e| {
        let code = if key.len() > p8fs_core::validate::MAX_KEY_BYTES {
            S3ErrorCode::KeyTooLongError
        } else {
            S3ErrorCode::InvalidArgument
        };
        S3Error::with_message(code, e.to_string())
    })
}

/// The S3 error for a part list that core's `plan_completion` refuses.
pub(crate) fn completion_error(error: CompletionError) -> S3Error {
    let code = match &error {
        CompletionError::NoParts => S3ErrorCode::MalformedXML,
        CompletionError::InvalidPartOrder => S3ErrorCode::InvalidPartOrder,
        CompletionError::InvalidPart { .. } => S3ErrorCode::InvalidPart,
        CompletionError::EntityTooSmall { .. } => S3ErrorCode::EntityTooSmall,
        CompletionError::EntityTooLarge => S3ErrorCode::EntityTooLarge,
    };
    S3Error::with_message(code, Error::from(error).to_string())
}

/// The STS error (code, status, message) for a core error of `AssumeRoleWithWebIdentity`.
pub(crate) fn sts_error(error: &Error) -> (&'static str, http::StatusCode, String) {
    use http::StatusCode;
    match error {
        Error::Unauthorized(_) => (
            "InvalidIdentityToken",
            StatusCode::BAD_REQUEST,
            "the web identity token is not valid".to_owned(),
        ),
        Error::Forbidden(reason) => ("AccessDenied", StatusCode::FORBIDDEN, reason.to_string()),
        Error::InvalidInput { .. } => (
            "ValidationError",
            StatusCode::BAD_REQUEST,
            error.to_string(),
        ),
        Error::NotFound { .. } | Error::AlreadyExists { .. } | Error::Conflict { .. } => (
            "InvalidParameterValue",
            StatusCode::BAD_REQUEST,
            error.to_string(),
        ),
        Error::Unavailable { .. } => {
            tracing::warn!(%error, "STS request failed");
            (
                "ServiceUnavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is unavailable; retry".to_owned(),
            )
        }
        Error::Internal { .. } | Error::Gone { .. } => {
            tracing::warn!(%error, source = ?std::error::Error::source(error), "STS request failed");
            (
                "InternalFailure",
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            )
        }
    }
}

/// The S3 error for a request body that could not be read. s3s verifies signed payloads while
/// the body streams and reports a failure as an error of the stream; its error types are
/// private, so the kind is told by the name s3s gives it (`Sha256Mismatch`,
/// `SignatureMismatch`). Anything else is a body that ended early or was malformed.
pub(crate) fn body_error(error: &(dyn std::error::Error + 'static)) -> S3Error {
    let text = error.to_string();
    if text.contains("Sha256Mismatch") {
        custom(
            "XAmzContentSHA256Mismatch",
            http::StatusCode::BAD_REQUEST,
            "the x-amz-content-sha256 you specified did not match what we received",
        )
    } else if text.contains("SignatureMismatch") {
        S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "a chunk signature of the body does not match",
        )
    } else {
        tracing::debug!(%text, "cannot read the request body");
        S3Error::with_message(
            S3ErrorCode::IncompleteBody,
            "the request body ended early or is malformed",
        )
    }
}

/// An S3 error code s3s does not list, with its status.
pub(crate) fn custom(
    code: &'static str,
    status: http::StatusCode,
    message: &'static str,
) -> S3Error {
    let mut error = S3Error::with_message(S3ErrorCode::Custom(code.into()), message);
    error.set_status_code(status);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_chooses_the_code_by_resource() {
        let code = |resource| s3_error(Error::not_found(resource, "x")).code().clone();
        assert_eq!(code(Resource::Bucket), S3ErrorCode::NoSuchBucket);
        assert_eq!(code(Resource::Object), S3ErrorCode::NoSuchKey);
        assert_eq!(code(Resource::Upload), S3ErrorCode::NoSuchUpload);
    }

    #[test]
    fn invalid_input_chooses_the_code_by_field() {
        let code = |field: &'static str, reason: &'static str| {
            s3_error(Error::invalid(field, reason)).code().clone()
        };
        assert_eq!(
            bucket_name("A").unwrap_err().code().clone(),
            S3ErrorCode::InvalidBucketName
        );
        assert_eq!(
            object_key("key", &"k".repeat(1025))
                .unwrap_err()
                .code()
                .clone(),
            S3ErrorCode::KeyTooLongError
        );
        assert_eq!(
            object_key("key", "").unwrap_err().code().clone(),
            S3ErrorCode::InvalidArgument
        );
        assert_eq!(code("bucket", "x"), S3ErrorCode::TooManyBuckets);
        assert_eq!(code("range", "x"), S3ErrorCode::InvalidRange);
        assert_eq!(code("max-keys", "x"), S3ErrorCode::InvalidArgument);
    }

    #[test]
    fn internal_details_stay_off_the_wire() {
        let error = s3_error(Error::internal("SELECT secret FROM t", None));
        assert_eq!(error.code().clone(), S3ErrorCode::InternalError);
        assert_eq!(error.message(), None);
    }
}
