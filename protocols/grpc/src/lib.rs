//! The gRPC front-end of p8fs: the services of `proto/p8fs/v1/` (package `p8fs.v1`) over
//! `Arc<dyn Backend>`, with `grpc.health.v1` and server reflection (v1 and v1alpha).
//!
//! Served on the main listener beside REST and GraphQL: the gateway hands it every request whose
//! `content-type` is `application/grpc*`, over HTTP/2 (prior knowledge, as gRPC clients connect
//! in cleartext) or HTTP/1.1. Each method authenticates the `authorization: Bearer` metadata with
//! the one [`Verifier`] and checks the scope REST checks for the same operation; the tenant comes
//! only from the token. Core errors become status codes in one place ([`error`]). Messages are
//! bounded ([`GrpcConfig`]), object bytes travel in chunks of at most [`MAX_CHUNK_BYTES`] and are
//! never held whole, and a `grpc-timeout` deadline ends the call with `DEADLINE_EXCEEDED`
//! (a stream at its deadline, too). Health and reflection need no token.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p8fs_auth::{Principal, Verifier};
use p8fs_core::change::ChangeSignal;
use p8fs_core::{Backend, Clock, Error};
use tonic::Status;
use tonic::metadata::MetadataMap;

pub mod changes;
pub mod error;
pub mod graph;
pub mod kv;
pub mod memories;
pub mod objects;
pub mod vectors;

/// The generated message types and service traits of `p8fs.v1`.
#[allow(unreachable_pub, clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("p8fs.v1");
}

/// The file descriptor set of `p8fs.v1`, as server reflection serves it.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/p8fs_descriptor.bin"));

/// The largest object chunk one `Upload` message may carry, and the largest `Download` sends.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// What a gRPC front-end needs.
#[derive(Clone)]
pub struct GrpcState {
    pub backend: Arc<dyn Backend>,
    pub verifier: Arc<Verifier>,
    /// The time objects are stamped with, as the backend's clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes `Watch` streams that have caught up.
    pub changes: Arc<dyn ChangeSignal>,
    /// Memories and search by meaning; `None` when embeddings are off.
    pub memory: Option<Arc<p8fs_memory::Memory>>,
}

/// Message size limits.
#[derive(Clone, Copy, Debug)]
pub struct GrpcConfig {
    /// The largest request message accepted (tonic answers a larger one with `OUT_OF_RANGE`).
    pub max_decoding_message_bytes: usize,
    /// The largest response message sent.
    pub max_encoding_message_bytes: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_decoding_message_bytes: 4 << 20,
            max_encoding_message_bytes: 4 << 20,
        }
    }
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc` or
/// `application/grpc+<codec>`.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let value = value.to_ascii_lowercase();
            value == "application/grpc"
                || value.starts_with("application/grpc+")
                || value.starts_with("application/grpc;")
        })
}

/// Every service, health and reflection, as one router (paths `/<package>.<Service>/<Method>`).
pub fn router(state: GrpcState, config: GrpcConfig) -> axum::Router {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(config.max_decoding_message_bytes)
                .max_encoding_message_size(config.max_encoding_message_bytes)
        };
    }
    let mut routes = tonic::service::Routes::builder();
    routes
        .add_service(limited!(pb::kv_server::KvServer::new(kv::KvService(
            state.clone()
        ))))
        .add_service(limited!(pb::vectors_server::VectorsServer::new(
            vectors::VectorsService(state.clone())
        )))
        .add_service(limited!(pb::graph_server::GraphServer::new(
            graph::GraphService(state.clone())
        )))
        .add_service(limited!(pb::objects_server::ObjectsServer::new(
            objects::ObjectsService(state.clone())
        )))
        .add_service(limited!(pb::memories_server::MemoriesServer::new(
            memories::MemoriesService(state.clone())
        )))
        .add_service(limited!(pb::changes_server::ChangesServer::new(
            changes::ChangesService(state)
        )))
        .add_service(health);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    match reflection.build_v1() {
        Ok(service) => {
            routes.add_service(service);
        }
        Err(error) => tracing::error!(%error, "gRPC reflection (v1) is off"),
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    match reflection.build_v1alpha() {
        Ok(service) => {
            routes.add_service(service);
        }
        Err(error) => tracing::error!(%error, "gRPC reflection (v1alpha) is off"),
    }
    // The overall status: serving as long as the process is (readiness of the backend is
    // `/readyz`'s question).
    tokio::spawn(async move {
        health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        for service in SERVICES {
            health_reporter
                .set_service_status(service, tonic_health::ServingStatus::Serving)
                .await;
        }
    });
    routes
        .routes()
        .into_axum_router()
        .fallback(unimplemented)
        .layer(axum::middleware::from_fn(deadline))
}

/// The fully qualified names of the p8fs services, as health checks and reflection name them.
pub const SERVICES: [&str; 6] = [
    "p8fs.v1.Kv",
    "p8fs.v1.Vectors",
    "p8fs.v1.Graph",
    "p8fs.v1.Objects",
    "p8fs.v1.Memories",
    "p8fs.v1.Changes",
];

/// A path that names no service or method.
async fn unimplemented() -> Response {
    Status::unimplemented("no such service or method").into_http::<axum::body::Body>()
}

/// The instant a call must be over by, from its `grpc-timeout` header.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(pub tokio::time::Instant);

/// Honours `grpc-timeout`: the deadline is put in the request's extensions (streams end at it)
/// and the handler's answer must come before it, or the call is `DEADLINE_EXCEEDED`.
async fn deadline(mut request: Request, next: Next) -> Response {
    let timeout = request
        .headers()
        .get("grpc-timeout")
        .map(|value| parse_timeout(value.as_bytes()));
    match timeout {
        None => next.run(request).await,
        Some(None) => Status::invalid_argument("grpc-timeout is malformed")
            .into_http::<axum::body::Body>()
            .into_response(),
        Some(Some(timeout)) => {
            let at = tokio::time::Instant::now() + timeout;
            request.extensions_mut().insert(Deadline(at));
            match tokio::time::timeout_at(at, next.run(request)).await {
                Ok(response) => response,
                Err(_) => Status::deadline_exceeded("the call's deadline passed")
                    .into_http::<axum::body::Body>(),
            }
        }
    }
}

/// A `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount.saturating_mul(3600)),
        b'M' => Duration::from_secs(amount.saturating_mul(60)),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The bearer token of a call's metadata.
fn bearer(metadata: &MetadataMap) -> Result<&str, Error> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| Error::Unauthorized("a bearer token is required".into()))?
        .to_str()
        .map_err(|_| Error::Unauthorized("malformed authorization metadata".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(Error::Unauthorized(
            "the authorization scheme must be Bearer".into(),
        )),
    }
}

impl GrpcState {
    /// The caller of a call, authenticated by its bearer token and holding `scope`.
    pub(crate) async fn caller(
        &self,
        metadata: &MetadataMap,
        scope: p8fs_auth::Scope,
    ) -> Result<Principal, Status> {
        let principal = self.authenticate(metadata).await?;
        principal.require(scope).map_err(error::status)?;
        Ok(principal)
    }

    /// The caller of a call, authenticated by its bearer token.
    pub(crate) async fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let token = bearer(metadata).map_err(error::status)?;
        self.verifier.verify(token).await.map_err(error::status)
    }
}

/// The deadline of a call, if it has one.
pub(crate) fn deadline_of<T>(request: &tonic::Request<T>) -> Option<tokio::time::Instant> {
    request.extensions().get::<Deadline>().map(|d| d.0)
}

/// A `ttl_ms` field as a ttl.
pub(crate) fn ttl(ttl_ms: Option<i64>) -> Result<Option<p8fs_core::Ttl>, Status> {
    ttl_ms
        .map(|ms| p8fs_core::Ttl::from_millis(ms).map_err(|e| e.renamed("ttl_ms")))
        .transpose()
        .map_err(error::status)
}

/// A page size: `limit`, or 100 when absent.
pub(crate) fn limit(limit: Option<u32>) -> Result<p8fs_core::Limit, Status> {
    p8fs_core::Limit::new(u64::from(limit.unwrap_or(100)))
        .map_err(|e| error::status(e.renamed("limit")))
}

/// A JSON object given as text (`field`); empty text is an empty object.
pub(crate) fn json_object(
    field: &'static str,
    text: &str,
) -> Result<p8fs_core::JsonObject, Status> {
    let map = if text.is_empty() {
        serde_json::Map::new()
    } else {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text).map_err(|e| {
            error::status(Error::invalid(field, format!("must be a JSON object: {e}")))
        })?
    };
    p8fs_core::JsonObject::from_map(field, map).map_err(error::status)
}

/// A JSON value given as text (`field`).
pub(crate) fn json_value(field: &'static str, text: &str) -> Result<serde_json::Value, Status> {
    serde_json::from_str(text)
        .map_err(|e| error::status(Error::invalid(field, format!("must be JSON: {e}"))))
}

/// A JSON map as text.
pub(crate) fn json_text(map: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::to_string(map).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout(b"123456789m"), None);
        assert_eq!(parse_timeout(b"m"), None);
        assert_eq!(parse_timeout(b"10x"), None);
    }

    #[test]
    fn grpc_content_types_are_recognised() {
        let mut headers = http::HeaderMap::new();
        assert!(!is_grpc(&headers));
        for (value, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(value),
            );
            assert_eq!(is_grpc(&headers), grpc, "{value}");
        }
    }
}
