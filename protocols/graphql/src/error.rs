//! The one mapping of `core::Error` to GraphQL errors: `extensions.code` from the error's kind
//! (the codes Apollo's tooling knows), `extensions.field` for bad input, and for `Gone` the
//! oldest cursor a reader may resume after. Internal details go to the log, never to the client.

use async_graphql::ErrorExtensions;
use p8fs_core::{Error, ErrorKind};

/// The `extensions.code` of an error kind.
pub fn code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::AlreadyExists | ErrorKind::Conflict => "CONFLICT",
        ErrorKind::InvalidInput => "BAD_USER_INPUT",
        ErrorKind::Unauthorized => "UNAUTHENTICATED",
        ErrorKind::Forbidden => "FORBIDDEN",
        ErrorKind::Gone => "GONE",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::Internal => "INTERNAL_SERVER_ERROR",
    }
}

/// A `core::Error` as the GraphQL error of the field that failed.
pub fn to_graphql(error: &Error) -> async_graphql::Error {
    match error {
        Error::Internal { .. } => tracing::error!(?error, "internal error"),
        Error::Unavailable { .. } => tracing::warn!(?error, "backend unavailable"),
        _ => {}
    }
    async_graphql::Error::new(error.client_message()).extend_with(|_, extensions| {
        extensions.set("code", code(error.kind()));
        if let Some(field) = error.field() {
            extensions.set("field", field);
        }
        if let Error::Gone { oldest } = error {
            extensions.set("oldestCursor", oldest.to_string());
        }
    })
}

/// Converts the result of a contract call for a resolver.
pub(crate) trait GqlResult<T> {
    fn gql(self) -> async_graphql::Result<T>;
}

impl<T> GqlResult<T> for p8fs_core::Result<T> {
    fn gql(self) -> async_graphql::Result<T> {
        self.map_err(|error| to_graphql(&error))
    }
}

/// An error with only a code and a message, for what the contract has no kind for.
pub(crate) fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, extensions| extensions.set("code", code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_its_field_and_internal_details_stay_in() {
        let bad = to_graphql(&Error::invalid("key", "must not be empty"));
        let extensions = bad.extensions.expect("extensions");
        assert_eq!(
            extensions.get("code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            extensions.get("field"),
            Some(&async_graphql::Value::from("key"))
        );
        let internal = to_graphql(&Error::internal("disk at /secret is full", None));
        assert!(!internal.message.contains("secret"), "{}", internal.message);
    }
}
