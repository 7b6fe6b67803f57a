//! Request extractors whose rejections are problem documents naming the field: the bearer-token
//! principal, JSON bodies, query strings and path parameters.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use p8fs_auth::Principal;
use p8fs_core::Error;
use serde::de::DeserializeOwned;

use crate::RestState;
use crate::error::ApiError;

/// The caller, authenticated by an `Authorization: Bearer` access token.
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<RestState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &RestState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| Error::Unauthorized("a bearer token is required".into()))?;
        let value = header
            .to_str()
            .map_err(|_| Error::Unauthorized("malformed authorization header".into()))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(
                    Error::Unauthorized("the authorization scheme must be Bearer".into()).into(),
                );
            }
        };
        Ok(Self(state.verifier.verify(token).await?))
    }
}

/// A JSON body; a malformed one is a 400 naming `body`.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid("content-type", "the body must be sent as application/json")
        }
        JsonRejection::BytesRejection(r) if r.status().as_u16() == 413 => ApiError::too_large(),
        other => ApiError::invalid("body", other.body_text()),
    }
}

/// A query string; a malformed one is a 400 naming `query`.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::invalid("query", rejection.body_text())
}

/// Path parameters; undecodable ones are a 400 naming `path`.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::invalid("path", rejection.body_text())
}
