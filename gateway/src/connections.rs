//! Serving HTTP/1.1 and HTTP/2 over TCP so that slow or numerous clients cannot exhaust the
//! server.
//!
//! `axum::serve` offers no header-read timeout and no connection limits, so [`serve`] runs its
//! own accept loop over hyper-util's automatic connection builder: HTTP/1.1, or HTTP/2 when the
//! client opens with its preface (prior knowledge in cleartext, as gRPC clients do), with at
//! most [`MAX_HTTP2_STREAMS`] concurrent streams per connection:
//! - At most `limits.max_connections` open connections, and `limits.max_connections_per_address`
//!   from one IP address; a connection over either limit is closed as soon as it is accepted
//!   (counted in `http_connections_refused_total`).
//! - hyper's `header_read_timeout`: a request head must arrive in full within
//!   `limits.header_read_timeout` of the connection being ready for it, or the connection is
//!   closed. The timer also runs while a keep-alive connection waits for its next request.
//! - `limits.idle_timeout`: a connection with no request in progress (no request being read,
//!   handled or answered) is closed after that long.
//! - [`RequestLimits`] (a middleware on the router): the body is read in full within
//!   `limits.body_read_timeout` *before* the request takes one of `limits.concurrency` slots,
//!   then waiting for a slot and handling share `limits.request_timeout`; each is a 408. The
//!   bodies held in memory by all requests together are at most `limits.body_buffer_bytes`
//!   (a body waits for room, within its read timeout).
//! - Object uploads (`PUT /v1/objects/{bucket}/{key}`, [`p8fs_rest::objects::streams_body`]) are
//!   the exception: their handler streams the body into storage in bounded memory, so it is not
//!   buffered here; such a request takes a slot at once and has `s3.request_timeout` for all of
//!   it, like an S3 upload.
//! - Every request carries `ConnectInfo<SocketAddr>`, its client's address, in its extensions,
//!   for per-address rate limits and the request span: the TCP peer, or, when the peer is one
//!   of `limits.trusted_proxies`, the client named by `X-Forwarded-For` ([`client_of`]), with
//!   the proxy's own address beside it as [`ProxyPeer`]. `X-Forwarded-For` from any other peer
//!   is ignored. Every listener (main, S3, metrics) is served here, so all behave alike.
//! - Shutdown stops accepting, lets requests in flight finish and closes idle connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, SemaphorePermit, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use p8fs_auth::oauth::client_network;

use crate::config::{LimitsConfig, ProxyNetwork};

/// File descriptors kept for the store, its database connections, the admin socket and the
/// metrics listener on top of `limits.max_connections` when the soft open-file limit is raised.
pub const RESERVED_FILE_DESCRIPTORS: u64 = 512;

/// How long the accept loop pauses after an accept error that is not the client's (out of
/// file descriptors, out of memory), instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The most streams (requests) one HTTP/2 connection may have open at once.
pub const MAX_HTTP2_STREAMS: u32 = 256;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the requests in flight
/// (each bounded by the limits) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_HTTP2_STREAMS);
    let table = Arc::new(ConnectionTable::new(limits));
    let trusted: Arc<[ProxyNetwork]> = limits.trusted_proxies.clone().into();
    let idle_timeout = limits.idle_timeout;
    // Every connection holds a receiver; `closed()` on the sender tells when all have ended.
    let (stop, stopped) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
        };
        // A trusted proxy carries many clients: only the total cap applies to it.
        let proxy = is_trusted(&trusted, peer.ip());
        let slot = match table.admit(peer.ip(), proxy) {
            Ok(slot) => slot,
            Err(limit) => {
                metrics::counter!("http_connections_refused_total", "limit" => limit).increment(1);
                tracing::debug!(%peer, limit, "connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Decided once per connection: the peer does not change.
        let proxies = proxy.then(|| trusted.clone());
        tokio::spawn(connection(
            stream,
            Peer {
                address: peer,
                proxies,
            },
            app.clone(),
            builder.clone(),
            idle_timeout,
            stopped.clone(),
            slot,
        ));
    }
    drop(listener);
    drop(stopped);
    let _ = stop.send(());
    // Requests in flight are bounded by the body, slot and handling timeouts.
    let grace = limits.body_read_timeout + limits.request_timeout + limits.header_read_timeout;
    if tokio::time::timeout(grace, stop.closed()).await.is_err() {
        tracing::warn!("connections still open at shutdown were dropped");
    }
}

/// Logs an accept error; pauses when the process is out of resources.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    // The client gave up between SYN and accept: nothing to do.
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "accepting a connection failed");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

/// A connection's TCP peer, with the trusted proxies when the peer is one of them.
struct Peer {
    address: SocketAddr,
    proxies: Option<Arc<[ProxyNetwork]>>,
}

/// Serves one connection until it ends, the server stops, or it sits idle too long.
async fn connection(
    stream: TcpStream,
    peer: Peer,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    mut stop: watch::Receiver<()>,
    _slot: Slot,
) {
    let Peer {
        address: peer,
        proxies,
    } = peer;
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let (client, proxy) = client_of(peer, proxies.as_deref(), request.headers());
            request.extensions_mut().insert(ConnectInfo(client));
            if let Some(proxy) = proxy {
                request.extensions_mut().insert(proxy);
            }
            // In progress until the response body has been written (or dropped).
            let busy = activity.begin();
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _in_progress = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    // Upgrades: GraphQL subscriptions are WebSockets; once upgraded, the socket is the
    // subscription's and no longer this loop's.
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(idle_timeout), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The TCP peer of a request whose client address was taken from `X-Forwarded-For`: the
/// trusted proxy that forwarded it. The client itself is the request's `ConnectInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyPeer(pub SocketAddr);

/// The header a proxy appends the address of its own client to.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Whether `address` is in one of the `trusted` networks.
fn is_trusted(trusted: &[ProxyNetwork], address: IpAddr) -> bool {
    trusted.iter().any(|network| network.contains(address))
}

/// The client of a request from `peer` with these `headers`, and the proxy it came through.
///
/// `proxies` is the trusted proxies when `peer` is one of them, else `None`: then the client is
/// the peer and `X-Forwarded-For` is not read (anyone can send one). From a trusted proxy, the
/// `X-Forwarded-For` lines are read as one list from the right (each proxy appends the address
/// it was reached from): trusted addresses are other proxies of the chain and are passed, the
/// first untrusted one is the client. An entry that is not an address (`unknown`, a name, an
/// obfuscated identifier, a line that is not ASCII) ends the walk: the last address read wins,
/// or, if there is none, the peer, as without the header. Entries may carry a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`); without one the client's port is 0. Addresses are
/// canonical (IPv4-mapped IPv6 becomes IPv4).
pub fn client_of(
    peer: SocketAddr,
    proxies: Option<&[ProxyNetwork]>,
    headers: &HeaderMap,
) -> (SocketAddr, Option<ProxyPeer>) {
    let Some(trusted) = proxies else {
        return (peer, None);
    };
    let mut found = None;
    'walk: for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let Ok(line) = line.to_str() else {
            break;
        };
        for entry in line.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let Some(address) = forwarded_address(entry) else {
                break 'walk;
            };
            found = Some(address);
            if !is_trusted(trusted, address.ip()) {
                break 'walk;
            }
        }
    }
    match found {
        Some(client) => (client, Some(ProxyPeer(peer))),
        None => (peer, None),
    }
}

/// One `X-Forwarded-For` entry: an IP address, with or without a port (IPv6 with a port in
/// brackets), or `None`.
fn forwarded_address(entry: &str) -> Option<SocketAddr> {
    let bracketed = || {
        entry
            .strip_prefix('[')?
            .strip_suffix(']')?
            .parse::<std::net::Ipv6Addr>()
            .ok()
    };
    let (ip, port) = if let Ok(ip) = entry.parse::<IpAddr>() {
        (ip, 0)
    } else if let Ok(address) = entry.parse::<SocketAddr>() {
        (address.ip(), address.port())
    } else {
        (IpAddr::V6(bracketed()?), 0)
    };
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// Whether a connection has a request in progress, and since when it has not.
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

struct ActivityState {
    in_progress: usize,
    idle_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_progress: 0,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    /// Marks a request in progress until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.state.lock().in_progress += 1;
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// Completes once the connection has had no request in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            // Created before the state is read, so no change in between is missed.
            let changed = self.changed.notified();
            let deadline = {
                let state = self.state.lock();
                (state.in_progress == 0).then(|| state.idle_since + limit)
            };
            match deadline {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// A request in progress on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut state = self.0.state.lock();
            state.in_progress = state.in_progress.saturating_sub(1);
            if state.in_progress == 0 {
                state.idle_since = Instant::now();
            }
        }
        self.0.changed.notify_waiters();
    }
}

/// Open connections, in total and per client address.
struct ConnectionTable {
    max_total: usize,
    max_per_address: usize,
    state: Mutex<TableState>,
}

#[derive(Default)]
struct TableState {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl ConnectionTable {
    fn new(limits: &LimitsConfig) -> Self {
        Self {
            max_total: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            state: Mutex::new(TableState::default()),
        }
    }

    /// A slot for a connection from `address`, or the name of the limit that refuses it. A
    /// trusted `proxy` is held to the total only, not to the per-address cap.
    fn admit(self: &Arc<Self>, address: IpAddr, proxy: bool) -> Result<Slot, &'static str> {
        let address = client_network(address);
        let mut state = self.state.lock();
        if state.total >= self.max_total {
            return Err("max_connections");
        }
        let count = state.per_address.get(&address).copied().unwrap_or(0);
        if count >= self.max_per_address && !proxy {
            return Err("max_connections_per_address");
        }
        state.per_address.insert(address, count + 1);
        state.total += 1;
        metrics::gauge!("http_connections_open").set(state.total as f64);
        Ok(Slot {
            table: self.clone(),
            address,
        })
    }
}

/// One admitted connection; frees its place when dropped.
struct Slot {
    table: Arc<ConnectionTable>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.table.state.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_address.remove(&self.address);
            }
        }
        metrics::gauge!("http_connections_open").set(state.total as f64);
    }
}

/// The per-request limits: body size and read deadline, the memory all buffered bodies may
/// take together, concurrency slots, handling timeout. Used as the state of [`limit_request`].
pub struct RequestLimits {
    body_bytes: usize,
    body_read_timeout: Duration,
    request_timeout: Duration,
    /// The whole time of an object upload, which is not buffered.
    upload_timeout: Duration,
    /// One permit per byte of request body held in memory, by all requests together.
    body_budget: Semaphore,
    body_budget_bytes: usize,
    slots: Semaphore,
}

impl RequestLimits {
    /// The limits of `[limits]`.
    pub fn new(limits: &LimitsConfig, upload_timeout: Duration) -> Self {
        Self {
            upload_timeout,
            body_bytes: limits.body_bytes,
            body_read_timeout: limits.body_read_timeout,
            request_timeout: limits.request_timeout,
            body_budget: Semaphore::new(limits.body_buffer_bytes),
            body_budget_bytes: limits.body_buffer_bytes,
            slots: Semaphore::new(limits.concurrency),
        }
    }
}

/// Reads the body in full within `body_read_timeout` (each byte held counted against
/// `body_buffer_bytes` until the request is done), then takes a concurrency slot and runs the
/// request, both within `request_timeout`. A body over `body_bytes` is read no further than
/// one byte past the limit: the route's own extractor then answers 413 in its own format
/// (`DefaultBodyLimit` is the same limit).
pub async fn limit_request(
    State(limits): State<Arc<RequestLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if p8fs_rest::objects::streams_body(request.method(), request.uri().path()) {
        let handled = async {
            let _permit = limits.slots.acquire().await;
            next.run(request).await
        };
        return match tokio::time::timeout(limits.upload_timeout, handled).await {
            Ok(response) => response,
            Err(_) => {
                metrics::counter!("http_request_timeouts_total", "phase" => "upload").increment(1);
                StatusCode::REQUEST_TIMEOUT.into_response()
            }
        };
    }
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(limits.body_read_timeout, read_body(body, &limits)).await
    {
        Ok(Ok(read)) => read,
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot read the request body");
            return (StatusCode::BAD_REQUEST, "cannot read the request body\n").into_response();
        }
        Err(_) => {
            metrics::counter!("http_request_timeouts_total", "phase" => "body").increment(1);
            return (
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within limits.body_read_timeout\n",
            )
                .into_response();
        }
    };
    let (body, _held) = body;
    let request = Request::from_parts(parts, Body::from(body));
    let handled = async {
        let _permit = limits.slots.acquire().await;
        next.run(request).await
    };
    match tokio::time::timeout(limits.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("http_request_timeouts_total", "phase" => "handling").increment(1);
            StatusCode::REQUEST_TIMEOUT.into_response()
        }
    }
}

/// The body's bytes, stopping once more than `limits.body_bytes` have arrived (the route's
/// extractor then rejects the oversized result), with the budget permits for them.
async fn read_body(
    mut body: Body,
    limits: &RequestLimits,
) -> Result<(Bytes, Option<SemaphorePermit<'_>>), axum::Error> {
    let mut bytes = Vec::new();
    let mut held: Option<SemaphorePermit<'_>> = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            // A frame is at most hyper's read buffer; clamped so it can always be granted.
            let wanted = data.len().min(limits.body_budget_bytes);
            let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
            if wanted > 0 {
                let permit = limits
                    .body_budget
                    .acquire_many(wanted)
                    .await
                    .map_err(axum::Error::new)?;
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            bytes.extend_from_slice(&data);
            if bytes.len() > limits.body_bytes {
                break;
            }
        }
    }
    Ok((Bytes::from(bytes), held))
}

/// Raises the soft open-file limit towards what `limits.max_connections` needs (up to the hard
/// limit); warns when even the hard limit is too low.
pub fn raise_open_file_limit(limits: &LimitsConfig) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = (limits.max_connections as u64).saturating_add(RESERVED_FILE_DESCRIPTORS);
    let current = getrlimit(Resource::Nofile);
    let soft = current.current.unwrap_or(u64::MAX);
    if soft >= wanted {
        return;
    }
    let hard = current.maximum.unwrap_or(u64::MAX);
    let raised = wanted.min(hard);
    if raised > soft {
        let new = Rlimit {
            current: Some(raised),
            maximum: current.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, new) {
            tracing::warn!(%error, "cannot raise the open-file limit");
        }
    }
    if raised < wanted {
        tracing::warn!(
            hard_limit = hard,
            wanted,
            "the open-file hard limit is below limits.max_connections + {RESERVED_FILE_DESCRIPTORS}; \
             connections beyond it fail to be accepted (raise `ulimit -Hn` or lower \
             limits.max_connections)"
        );
    }
}

#[cfg(test)]
mod tests;
