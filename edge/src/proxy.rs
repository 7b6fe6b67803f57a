//! The proxy: pingora's `ProxyHttp` filters for one listener (the main one or S3).
//!
//! In order, for each request: a request id (an incoming `X-Request-Id` kept when it is
//! printable and short), the per-address rate limit, then on the main listener the bearer
//! token's pre-authentication and the per-tenant rate limit; then a node is chosen, and the
//! request goes to it with `X-Request-Id`, `X-Forwarded-For` (the client's address appended) and
//! `X-Forwarded-Proto`. Bodies stream both ways as they come (pingora buffers none unless told),
//! so large S3 transfers, SSE, MCP streams, WebSocket upgrades and gRPC pass as they are; an
//! HTTP/2 request goes to the node over HTTP/2 with prior knowledge (h2c), so gRPC trailers pass.
//!
//! A node that refuses a connection is ejected and the request is tried on another (nothing was
//! sent, so this is safe for any method); a reused connection that breaks before an answer
//! ejects the node too, and pingora retries the request elsewhere when it is idempotent.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::ErrorType;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::listeners::ALPN;
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, Result};

use crate::jwks::{Checked, Keys, system_clock};
use crate::limit::{Buckets, address_key, retry_after_seconds};
use crate::request_id::RequestId;
use crate::upstream::{InFlight, Pool};

/// The longest incoming request id kept.
const MAX_REQUEST_ID: usize = 128;
/// HTTP/2 streams multiplexed on one connection to a node.
const H2_STREAMS: usize = 128;

/// Which gateway listener a proxy fronts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Front {
    /// REST, GraphQL, MCP, gRPC, OAuth: bearer tokens are checked.
    Main,
    /// S3: SigV4, checked by the node; passes untouched.
    S3,
}

/// One listener's proxy.
pub(crate) struct Edge {
    pub(crate) front: Front,
    pub(crate) pool: Arc<Pool>,
    pub(crate) keys: Option<Arc<Keys>>,
    pub(crate) per_address: Option<Arc<Buckets<IpAddr>>>,
    pub(crate) per_tenant: Option<Arc<Buckets<String>>>,
    pub(crate) retries: usize,
    pub(crate) connect_timeout: std::time::Duration,
    /// Whether this listener is TLS (for `X-Forwarded-Proto`).
    pub(crate) tls: bool,
}

/// What one request carries between the filters.
pub(crate) struct RequestState {
    /// Kept as a header value: it is copied into the request to the node and, when the node
    /// does not echo it, into the response.
    request_id: HeaderValue,
    tenant: Option<String>,
    node: Option<InFlight>,
    tried: Vec<usize>,
}

/// What a request needs from its bearer token at the edge.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Nothing is checked: public pages, OAuth endpoints (whose tokens travel in bodies or are
    /// client credentials), health, metadata.
    Nothing,
    /// A token, when present, must pass; its absence is the node's to answer (GraphQL's page
    /// and WebSocket, whose token is in the connection's first message; MCP's challenge that
    /// starts OAuth discovery; gRPC health and reflection).
    ValidIfPresent,
    /// A token must be present and pass (`/v1`).
    Valid,
}

fn need(path: &str) -> Need {
    if path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
        || path == "/openapi.json"
        || path.starts_with("/.well-known/")
        || path.starts_with("/oauth/")
    {
        Need::Nothing
    } else if path == "/v1" || path.starts_with("/v1/") {
        Need::Valid
    } else {
        Need::ValidIfPresent
    }
}

/// The bearer token of the `Authorization` header: `Some(None)` for another scheme or a value
/// that is not text (malformed), `None` without the header.
fn bearer(request: &RequestHeader) -> Option<Option<&str>> {
    let value = request.headers.get(http::header::AUTHORIZATION)?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|text| text.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim()),
    )
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    match session.as_downstream().client_addr()? {
        PeerAddr::Inet(address) => Some(address.ip()),
        PeerAddr::Unix(_) => None,
    }
}

/// The client's `X-Request-Id` when it is printable and short, else a new one.
fn request_id(request: &RequestHeader) -> HeaderValue {
    request
        .headers
        .get("x-request-id")
        .filter(|v| {
            let v = v.as_bytes();
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// A new request id (a version 4 UUID).
fn new_request_id() -> HeaderValue {
    let id = RequestId::new();
    HeaderValue::from_bytes(id.as_bytes()).unwrap_or(HeaderValue::from_static("-"))
}

/// Whether `path` is the MCP endpoint's, whose 401 names its resource metadata.
fn is_mcp(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/")
}

/// An answer the edge makes itself.
struct Refusal {
    status: u16,
    error: &'static str,
    description: &'static str,
    challenge: Option<String>,
    retry_after: Option<u64>,
}

impl Edge {
    async fn refuse(
        &self,
        session: &mut Session,
        state: &RequestState,
        refusal: Refusal,
    ) -> Result<bool> {
        let body = Bytes::from(
            serde_json::json!({
                "error": refusal.error,
                "error_description": refusal.description,
            })
            .to_string(),
        );
        let mut response = ResponseHeader::build(refusal.status, Some(6))?;
        response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        response.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
        response.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        response.insert_header("x-request-id", state.request_id.clone())?;
        if let Some(challenge) = refusal.challenge {
            response.insert_header(http::header::WWW_AUTHENTICATE, challenge)?;
        }
        if let Some(seconds) = refusal.retry_after {
            response.insert_header(http::header::RETRY_AFTER, seconds.to_string())?;
        }
        session.set_keepalive(None);
        session
            .write_response_header(Box::new(response), false)
            .await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    /// The bearer-token pre-check of a request on the main listener: what the token says when
    /// one passed, `None` when none is needed or the node is to judge, or the refusal.
    async fn pre_authenticate(
        &self,
        keys: &Keys,
        request: &RequestHeader,
    ) -> std::result::Result<Option<Checked>, Refusal> {
        let path = request.uri.path();
        let need = need(path);
        if need == Need::Nothing {
            return Ok(None);
        }
        match bearer(request) {
            None if need == Need::Valid => {
                Err(self.unauthorized(is_mcp(path), "a bearer token is required", false))
            }
            None => Ok(None),
            // Another scheme on a route that may do without a token is the node's to judge.
            Some(None) if need == Need::ValidIfPresent => Ok(None),
            Some(None) => Err(self.unauthorized(is_mcp(path), "malformed token", true)),
            Some(Some(token)) => match keys.check(token, system_clock()).await {
                Ok(checked) => Ok(Some(checked)),
                Err(reason) => Err(self.unauthorized(is_mcp(path), reason, true)),
            },
        }
    }

    fn too_many(wait: std::time::Duration, which: &'static str) -> Refusal {
        Refusal {
            status: 429,
            error: "rate_limited",
            description: which,
            challenge: None,
            retry_after: Some(retry_after_seconds(wait)),
        }
    }

    /// The 401 for a refused token; on `/mcp` (`mcp`), with the resource metadata the node's
    /// own challenge names, so MCP clients can start OAuth discovery from it.
    fn unauthorized(&self, mcp: bool, reason: &'static str, presented: bool) -> Refusal {
        let mut challenge = if presented {
            format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"")
        } else {
            "Bearer".to_owned()
        };
        if mcp && let Some(issuer) = self.keys.as_ref().and_then(|keys| keys.issuer()) {
            challenge.push_str(&format!(
                ", resource_metadata=\"{issuer}/.well-known/oauth-protected-resource/mcp\""
            ));
        }
        Refusal {
            status: 401,
            error: if presented {
                "invalid_token"
            } else {
                "unauthorized"
            },
            description: reason,
            challenge: Some(challenge),
            retry_after: None,
        }
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = RequestState;

    /// No modules: pingora's default is its response compression module, disabled, which
    /// still made a context and ran its filters for every request. The edge never compresses.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> RequestState {
        RequestState {
            request_id: HeaderValue::from_static(""),
            tenant: None,
            node: None,
            tried: Vec::new(),
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        state: &mut RequestState,
    ) -> Result<bool> {
        state.request_id = request_id(session.req_header());
        let now = Instant::now();
        if let (Some(buckets), Some(ip)) = (&self.per_address, client_ip(session))
            && let Err(wait) = buckets.take(address_key(ip), now)
        {
            let refusal = Self::too_many(wait, "too many requests from this address");
            return self.refuse(session, state, refusal).await;
        }
        let Some(keys) = self.keys.as_ref().filter(|_| self.front == Front::Main) else {
            return Ok(false);
        };
        let checked = match self.pre_authenticate(keys, session.req_header()).await {
            Ok(checked) => checked,
            Err(refusal) => return self.refuse(session, state, refusal).await,
        };
        if let Some(checked) = checked {
            if let Some(buckets) = &self.per_tenant
                && let Err(wait) = buckets.take(checked.tenant.clone(), now)
            {
                let refusal = Self::too_many(wait, "too many requests for this tenant");
                return self.refuse(session, state, refusal).await;
            }
            state.tenant = Some(checked.tenant);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        state: &mut RequestState,
    ) -> Result<Box<HttpPeer>> {
        // A retry: the previous node's count ends here.
        state.node = None;
        let chosen = self
            .pool
            .choose(state.tenant.as_deref(), &state.tried, Instant::now())
            .ok_or_else(|| {
                Error::explain(
                    ErrorType::HTTPStatus(502),
                    "no gateway node could be reached",
                )
            })?;
        let index = chosen.index();
        let address = self
            .pool
            .address(index)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "node out of range"))?;
        state.tried.push(index);
        state.node = Some(chosen);
        let mut peer = HttpPeer::new(address, false, String::new());
        peer.options.connection_timeout = Some(self.connect_timeout);
        if session.is_http2() {
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = H2_STREAMS;
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        state: &mut RequestState,
    ) -> Result<()> {
        upstream.insert_header("x-request-id", state.request_id.clone())?;
        if let Some(ip) = client_ip(session) {
            let forwarded = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {ip}"),
                _ => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", forwarded)?;
        }
        let proto = HeaderValue::from_static(if self.tls { "https" } else { "http" });
        upstream.insert_header("x-forwarded-proto", proto)?;
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        state: &mut RequestState,
    ) -> Result<()> {
        if !response.headers.contains_key("x-request-id") {
            response.insert_header("x-request-id", state.request_id.clone())?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        state: &mut RequestState,
        mut error: Box<Error>,
    ) -> Box<Error> {
        if let Some(node) = &state.node {
            self.pool.eject(node.index(), Instant::now());
        }
        // Nothing reached the node: any method may go to another.
        if state.tried.len() <= self.retries {
            error.set_retry(true);
        }
        error
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        error: Box<Error>,
        state: &mut RequestState,
        client_reused: bool,
    ) -> Box<Error> {
        let mut error = error.more_context(format!("Peer: {peer}"));
        if error.esource() == &pingora::ErrorSource::Upstream
            && matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            )
            && let Some(node) = &state.node
        {
            self.pool.eject(node.index(), Instant::now());
        }
        // pingora's own policy: only an idempotent request whose body is still whole, and only
        // when a reused connection broke.
        if !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
            || state.tried.len() > self.retries
        {
            error.set_retry(false);
        } else {
            error.retry.decide_reuse(client_reused);
        }
        error
    }

    async fn logging(
        &self,
        session: &mut Session,
        error: Option<&Error>,
        state: &mut RequestState,
    ) {
        state.node = None;
        if let Some(error) = error {
            tracing::info!(
                request_id = %String::from_utf8_lossy(state.request_id.as_bytes()),
                method = %session.req_header().method,
                path = %session.req_header().uri.path(),
                %error,
                "request failed at the edge"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_routes_need() {
        assert_eq!(need("/healthz"), Need::Nothing);
        assert_eq!(need("/.well-known/jwks.json"), Need::Nothing);
        assert_eq!(need("/oauth/token"), Need::Nothing);
        assert_eq!(need("/v1/kv/a"), Need::Valid);
        assert_eq!(need("/v1"), Need::Valid);
        assert_eq!(need("/v1x"), Need::ValidIfPresent);
        assert_eq!(need("/graphql"), Need::ValidIfPresent);
        assert_eq!(need("/mcp"), Need::ValidIfPresent);
        assert_eq!(need("/p8fs.v1.Kv/Get"), Need::ValidIfPresent);
    }

    #[test]
    fn bearer_tokens() {
        let mut request = RequestHeader::build("GET", b"/v1/kv", None).unwrap();
        assert_eq!(bearer(&request), None);
        request
            .insert_header("authorization", "Bearer abc ")
            .unwrap();
        assert_eq!(bearer(&request), Some(Some("abc")));
        request.insert_header("authorization", "Basic abc").unwrap();
        assert_eq!(bearer(&request), Some(None));
    }

    #[test]
    fn request_ids() {
        let mut request = RequestHeader::build("GET", b"/", None).unwrap();
        let made = request_id(&request);
        assert_eq!(made.len(), 36);
        assert_eq!(&made.to_str().unwrap()[14..15], "4");
        assert_ne!(made, request_id(&request));
        request.insert_header("x-request-id", "abc-123").unwrap();
        assert_eq!(request_id(&request), "abc-123");
        request.insert_header("x-request-id", "a b").unwrap();
        assert_ne!(request_id(&request), "a b");
        request
            .insert_header("x-request-id", "x".repeat(200))
            .unwrap();
        assert_eq!(request_id(&request).len(), 36);
    }
}
