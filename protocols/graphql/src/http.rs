//! GraphQL over HTTP (the GraphQL-over-HTTP specification) and over WebSockets, at `/graphql`.
//!
//! - `POST` with an `application/json` body (`query`, `operationName`, `variables`,
//!   `extensions`); `GET` with the same as query parameters, for queries only (a mutation over
//!   `GET` is 405). A JSON array (a batch) is refused: batching is off.
//! - The response is `application/graphql-response+json` when the `Accept` header allows it,
//!   else `application/json` (also when there is no `Accept`), and 406 when it allows neither.
//!   With the new media type, a request that cannot be parsed or validated is 4xx (400), as the
//!   specification prescribes; with `application/json`, such a request is 200 with `errors`, as
//!   older clients expect. A body that is not JSON, or has no `query`, is 400 with both.
//! - The bearer token is required; without a valid one the answer is 401 with
//!   `WWW-Authenticate: Bearer` and `extensions.code` `UNAUTHENTICATED`. Scopes are checked per
//!   field (a missing one is a FORBIDDEN error on that field).
//! - Automatic persisted queries ([`crate::apq`]) are accepted on `GET` and `POST`.
//! - `GET` with `Upgrade: websocket` opens a subscription connection over
//!   `graphql-transport-ws` or `graphql-ws`; the token is the `Authorization` (or
//!   `authorization`, `token`) entry of the `connection_init` payload, and each subscription
//!   ends when it expires or is revoked.
//! - `GET` from a browser (`Accept: text/html`, no `query`) is the GraphiQL page.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Data, Executor, ServerError, ValidationResult, Variables};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::BoxStream;
use p8fs_auth::Principal;
use p8fs_auth::principal::bearer_token;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::apq::{Persisted, PersistedError, PersistedQueries};
use crate::changes::SessionToken;
use crate::graph::node_loader;
use crate::limits::GraphqlLimits;
use crate::{GraphqlState, VaultSchema, graphiql};

/// The new media type of GraphQL responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// The endpoint's shared parts.
struct Endpoint {
    schema: VaultSchema,
    state: GraphqlState,
    limits: GraphqlLimits,
    persisted: PersistedQueries,
    websockets: Arc<Semaphore>,
}

pub(crate) fn router(state: GraphqlState, limits: GraphqlLimits) -> Router {
    let endpoint = Arc::new(Endpoint {
        schema: crate::schema(state.clone(), &limits),
        persisted: PersistedQueries::new(limits.persisted_queries),
        websockets: Arc::new(Semaphore::new(limits.max_websockets)),
        state,
        limits,
    });
    Router::new()
        .route("/graphql", get(handle).post(handle))
        .route("/graphql/assets/{name}", get(asset))
        .with_state(endpoint)
}

async fn asset(Path(name): Path<String>) -> Response {
    graphiql::asset(&name).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

/// Which media type the response has.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Media {
    GraphqlResponse,
    Json,
}

impl Media {
    fn as_str(self) -> &'static str {
        match self {
            Media::GraphqlResponse => GRAPHQL_RESPONSE,
            Media::Json => "application/json",
        }
    }
}

/// The media type the `Accept` header allows, preferring the new one; `None` when it allows
/// neither.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let mut json = false;
    for range in accept.split(',') {
        let mut params = range.split(';');
        let essence = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let refused = params.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if refused {
            continue;
        }
        match essence.as_str() {
            GRAPHQL_RESPONSE => return Some(Media::GraphqlResponse),
            "application/json" | "application/*" | "*/*" => json = true,
            _ => {}
        }
    }
    json.then_some(Media::Json)
}

/// A response outside the engine (bad request, no token): `errors` with a code.
fn refusal(status: StatusCode, media: Media, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.as_str()),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}

/// The fields of a GraphQL-over-HTTP request.
#[derive(Default)]
struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<Value>,
    extensions: Option<Value>,
}

async fn handle(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let get = parts.method == Method::GET;
    if get
        && parts
            .headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    {
        return websocket(endpoint, &mut parts).await;
    }
    let query_string = parts.uri.query().unwrap_or_default().to_owned();
    if get
        && !query_string.contains("query=")
        && !query_string.contains("extensions=")
        && wants_html(&parts.headers)
    {
        return graphiql::page("/graphql");
    }
    let Some(media) = negotiate(&parts.headers) else {
        return refusal(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            "NOT_ACCEPTABLE",
            "Accept must allow application/graphql-response+json or application/json",
        );
    };
    let params = if get {
        get_params(&query_string)
    } else {
        let limit = endpoint.limits.max_body_bytes;
        match axum::body::to_bytes(body, limit).await {
            Ok(bytes) => post_params(&parts.headers, &bytes),
            Err(_) => {
                return refusal(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    media,
                    "BAD_REQUEST",
                    &format!("the body is larger than {limit} bytes (max_body_bytes)"),
                );
            }
        }
    };
    let params = match params {
        Ok(params) => params,
        Err(message) => return refusal(StatusCode::BAD_REQUEST, media, "BAD_REQUEST", &message),
    };
    let principal = match bearer_token(&parts.headers) {
        None => {
            return refusal(
                StatusCode::UNAUTHORIZED,
                media,
                "UNAUTHENTICATED",
                "a bearer token is required",
            );
        }
        Some(token) => match endpoint.state.verifier.verify(token).await {
            Ok(principal) => principal,
            Err(error) => {
                let status = if error.kind() == p8fs_core::ErrorKind::Unauthorized {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                return refusal(
                    status,
                    media,
                    crate::error::code(error.kind()),
                    &error.client_message(),
                );
            }
        },
    };
    run(&endpoint, params, principal, get, media).await
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// The request of a `GET`'s query string.
fn get_params(query: &str) -> Result<Params, String> {
    let mut params = Params::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let json = |field: &str| {
            serde_json::from_str::<Value>(&value)
                .map_err(|e| format!("the {field} parameter is not JSON: {e}"))
        };
        match name.as_ref() {
            "query" => params.query = value.into_owned(),
            "operationName" => params.operation_name = Some(value.into_owned()),
            "variables" => params.variables = Some(json("variables")?),
            "extensions" => params.extensions = Some(json("extensions")?),
            _ => {}
        }
    }
    Ok(params)
}

/// The request of a `POST`'s JSON body.
fn post_params(headers: &HeaderMap, body: &Bytes) -> Result<Params, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Err("the body must be sent as application/json".to_owned());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err(if value.is_array() {
            "batched requests are not accepted: send one request per POST".to_owned()
        } else {
            "the body must be a JSON object".to_owned()
        });
    };
    let text = |value: Option<Value>, field: &str| -> Result<Option<String>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(format!("{field} must be a string")),
        }
    };
    let object = |value: Option<Value>, field: &str| -> Result<Option<Value>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value)),
            Some(_) => Err(format!("{field} must be an object")),
        }
    };
    Ok(Params {
        query: text(fields.remove("query"), "query")?.unwrap_or_default(),
        operation_name: text(fields.remove("operationName"), "operationName")?,
        variables: object(fields.remove("variables"), "variables")?,
        extensions: object(fields.remove("extensions"), "extensions")?,
    })
}

/// Whether the request failed before execution (its document was not valid).
#[derive(Default)]
struct Invalid(AtomicBool);

/// An engine extension that records a validation failure in the request's [`Invalid`], so the
/// HTTP layer can answer it with 400.
pub(crate) struct Phases;

impl ExtensionFactory for Phases {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Phases)
    }
}

#[async_trait::async_trait]
impl Extension for Phases {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_err()
            && let Some(invalid) = ctx.data_opt::<Arc<Invalid>>()
        {
            invalid.0.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// Checks the document against the limits and the method; the error response if it fails.
fn check(
    limits: &GraphqlLimits,
    query: &str,
    operation_name: Option<&str>,
    get: bool,
) -> Result<(), (StatusCode, &'static str, String)> {
    limits
        .check_text(query)
        .map_err(|over| (StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED", over.0))?;
    let document = async_graphql::parser::parse_query(query).map_err(|error| {
        (
            StatusCode::BAD_REQUEST,
            "GRAPHQL_PARSE_FAILED",
            error.to_string(),
        )
    })?;
    limits
        .check_document(&document)
        .map_err(|over| (StatusCode::BAD_REQUEST, "GRAPHQL_VALIDATION_FAILED", over.0))?;
    if get {
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(operation), _) => Some(operation.node.ty),
            (DocumentOperations::Multiple(operations), Some(name)) => operations
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, operation)| operation.node.ty),
            (DocumentOperations::Multiple(_), None) => None,
        };
        if operation.is_some_and(|ty| ty != OperationType::Query) {
            return Err((
                StatusCode::METHOD_NOT_ALLOWED,
                "BAD_REQUEST",
                "only queries may be sent with GET; send mutations with POST".to_owned(),
            ));
        }
    }
    Ok(())
}

async fn run(
    endpoint: &Endpoint,
    params: Params,
    principal: Principal,
    get: bool,
    media: Media,
) -> Response {
    let query = match endpoint
        .persisted
        .resolve(&params.query, params.extensions.as_ref())
    {
        Ok(Persisted::None) => params.query,
        Ok(Persisted::Known(query)) => query,
        Err(PersistedError::NotFound) => {
            // Apollo clients look for this message and code, then send the document.
            return refusal(
                StatusCode::OK,
                media,
                "PERSISTED_QUERY_NOT_FOUND",
                "PersistedQueryNotFound",
            );
        }
        Err(PersistedError::Invalid(message)) => {
            return refusal(StatusCode::BAD_REQUEST, media, "BAD_REQUEST", message);
        }
    };
    if query.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            media,
            "BAD_REQUEST",
            "the request has no query",
        );
    }
    if let Err((status, code, message)) = check(
        &endpoint.limits,
        &query,
        params.operation_name.as_deref(),
        get,
    ) {
        let status = if media == Media::Json && status == StatusCode::BAD_REQUEST {
            StatusCode::OK
        } else {
            status
        };
        return refusal(status, media, code, &message);
    }
    let invalid = Arc::new(Invalid::default());
    let mut request = async_graphql::Request::new(query)
        .variables(Variables::from_json(
            params.variables.unwrap_or(Value::Null),
        ))
        .data(node_loader(
            endpoint.state.backend.clone(),
            principal.tenant.clone(),
        ))
        .data(principal)
        .data(invalid.clone());
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    let mut response = endpoint.schema.execute(request).await;
    let invalid = invalid.0.load(Ordering::Relaxed);
    if invalid {
        // The engine's validation errors carry no code; clients branch on one.
        for error in &mut response.errors {
            let extensions = error.extensions.get_or_insert_with(Default::default);
            if extensions.get("code").is_none() {
                extensions.set("code", "GRAPHQL_VALIDATION_FAILED");
            }
        }
    }
    let status = if invalid && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = serde_json::to_vec(&response).unwrap_or_default();
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.as_str()),
    );
    response
}

/// Opens a subscription connection: a slot among `max_websockets`, the protocol the client
/// offers, and a `connection_init` carrying a valid token.
async fn websocket(endpoint: Arc<Endpoint>, parts: &mut axum::http::request::Parts) -> Response {
    let Ok(slot) = endpoint.websockets.clone().try_acquire_owned() else {
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            Media::Json,
            "UNAVAILABLE",
            "too many WebSocket connections (max_websockets); retry later",
        );
    };
    let protocol = match GraphQLProtocol::from_request_parts(parts, &()).await {
        Ok(protocol) => protocol,
        Err(_) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                Media::Json,
                "BAD_REQUEST",
                "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
            );
        }
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let max_message = endpoint.limits.max_body_bytes;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max_message)
        .on_upgrade(move |socket| async move {
            let executor = Guarded(endpoint.clone());
            let verifier = endpoint.state.verifier.clone();
            let backend = endpoint.state.backend.clone();
            GraphQLWebSocket::new(socket, executor, protocol)
                .on_connection_init(move |payload| async move {
                    let token = init_token(&payload).ok_or_else(|| {
                        async_graphql::Error::new("connection_init must carry the bearer token")
                    })?;
                    let principal = verifier
                        .verify(&token)
                        .await
                        .map_err(|e| async_graphql::Error::new(e.client_message()))?;
                    let mut data = Data::default();
                    data.insert(node_loader(backend, principal.tenant.clone()));
                    data.insert(principal);
                    data.insert(SessionToken(token.into()));
                    data.insert(Arc::new(AtomicUsize::new(0)));
                    Ok(data)
                })
                .serve()
                .await;
            drop(slot);
        })
}

/// The token of a `connection_init` payload: `Authorization: Bearer <token>` (any case) or
/// `token`.
fn init_token(payload: &Value) -> Option<String> {
    let object = payload.as_object()?;
    let header = object
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str());
    if let Some(header) = header {
        let (scheme, token) = header.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    object
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The schema behind the WebSocket protocols, with the document limits of the HTTP layer and
/// at most `max_subscriptions_per_connection` subscriptions per connection.
#[derive(Clone)]
struct Guarded(Arc<Endpoint>);

impl Executor for Guarded {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        if let Err((_, code, message)) = check(&self.0.limits, &request.query, None, false) {
            return error_response(code, message);
        }
        self.0.schema.execute(request).await
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        if let Err((_, code, message)) = check(
            &self.0.limits,
            &request.query,
            request.operation_name.as_deref(),
            false,
        ) {
            return futures::stream::once(async move { error_response(code, message) }).boxed();
        }
        let open = session
            .as_ref()
            .and_then(|data| data.get(&std::any::TypeId::of::<Arc<AtomicUsize>>()))
            .and_then(|any| any.downcast_ref::<Arc<AtomicUsize>>())
            .cloned();
        let Some(open) = open else {
            return futures::stream::once(async {
                error_response(
                    "UNAUTHENTICATED",
                    "connection_init must carry the bearer token".to_owned(),
                )
            })
            .boxed();
        };
        if open.fetch_add(1, Ordering::SeqCst) >= self.0.limits.max_subscriptions_per_connection {
            open.fetch_sub(1, Ordering::SeqCst);
            let limit = self.0.limits.max_subscriptions_per_connection;
            return futures::stream::once(async move {
                error_response(
                    "BAD_REQUEST",
                    format!("at most {limit} subscriptions per connection (max_subscriptions_per_connection)"),
                )
            })
            .boxed();
        }
        let release = Release(open);
        self.0
            .schema
            .execute_stream_with_session_data(request, session.unwrap_or_default())
            .map(move |response| {
                let _open = &release;
                response
            })
            .boxed()
    }
}

/// Counts a subscription as closed when its stream is dropped.
struct Release(Arc<AtomicUsize>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn error_response(code: &'static str, message: String) -> async_graphql::Response {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", code);
    error.extensions = Some(extensions);
    async_graphql::Response::from_errors(vec![error])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn the_new_media_type_is_preferred_and_json_is_the_fallback() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json, application/json;q=0.9"
            )),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(negotiate(&accept("application/json")), Some(Media::Json));
        assert_eq!(negotiate(&accept("*/*")), Some(Media::Json));
        assert_eq!(negotiate(&accept("text/html")), None);
        assert_eq!(
            negotiate(&accept(
                "application/graphql-response+json;q=0, application/json"
            )),
            Some(Media::Json)
        );
    }

    #[test]
    fn a_mutation_over_get_is_405_and_a_syntax_error_is_400() {
        let limits = GraphqlLimits::default();
        let (status, ..) = check(&limits, "mutation { kvDelete(key: \"a\") }", None, true)
            .expect_err("mutation over GET");
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(check(&limits, "mutation { kvDelete(key: \"a\") }", None, false).is_ok());
        let (status, code, _) = check(&limits, "{ kv(key: ", None, false).expect_err("syntax");
        assert_eq!(
            (status, code),
            (StatusCode::BAD_REQUEST, "GRAPHQL_PARSE_FAILED")
        );
    }

    #[test]
    fn init_payload_tokens() {
        assert_eq!(
            init_token(&json!({"Authorization": "Bearer abc"})),
            Some("abc".to_owned())
        );
        assert_eq!(
            init_token(&json!({"authorization": "bearer abc"})),
            Some("abc".to_owned())
        );
        assert_eq!(init_token(&json!({"token": "abc"})), Some("abc".to_owned()));
        assert_eq!(init_token(&json!({"Authorization": "Basic abc"})), None);
        assert_eq!(init_token(&json!(null)), None);
    }
}
