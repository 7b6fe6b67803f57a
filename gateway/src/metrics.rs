//! Prometheus metrics: requests by route, method and status, and request latency histograms,
//! rendered in the text format at `/metrics`.
//!
//! Where `/metrics` is served is configuration (`[metrics]`): on the main listener when it is a
//! loopback address (the default), on its own `metrics.listen` address, and with
//! `metrics.require_admin_token` only to an access token with the `admin` scope, checked by the
//! same verifier as every other route.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use p8fs_auth::{Scope, Verifier, bearer_token};

/// Latency buckets in seconds, from 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide recorder, installed on first use.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Renders every metric in the Prometheus text format.
pub async fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Records one request: `http_requests_total` and `http_request_duration_seconds`, labelled by
/// the route template (never the raw path, which could hold keys), method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let seconds = started.elapsed().as_secs_f64();
    record(route, &method, response.status(), seconds);
    response
}

/// The two metrics of one label set.
struct Handles {
    method: Method,
    status: StatusCode,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// Label sets remembered per route, at most this many (methods are not a closed set).
const MAX_HANDLES_PER_ROUTE: usize = 64;
/// Routes remembered, at most (the router's templates and `unmatched`; a bound all the same).
const MAX_ROUTES: usize = 1024;

thread_local! {
    /// The handles of the label sets this thread has recorded, by route template: a request
    /// then costs no label strings and no registry lookup. The recorder is installed before
    /// the first request ([`crate::server::app`]) and never replaced, so a handle stays valid.
    static HANDLES: RefCell<HashMap<Box<str>, Vec<Handles>>> = RefCell::new(HashMap::new());
}

fn record(route: &str, method: &Method, status: StatusCode, seconds: f64) {
    HANDLES.with_borrow_mut(|routes| {
        if let Some(sets) = routes.get_mut(route) {
            record_in(sets, route, method, status, seconds);
            return;
        }
        if routes.len() >= MAX_ROUTES {
            routes.clear();
        }
        let sets = routes.entry(route.into()).or_default();
        record_in(sets, route, method, status, seconds);
    });
}

/// Records in the handles of `sets` that match, creating them on first use.
fn record_in(
    sets: &mut Vec<Handles>,
    route: &str,
    method: &Method,
    status: StatusCode,
    seconds: f64,
) {
    if let Some(handles) = sets
        .iter()
        .find(|h| h.status == status && h.method == *method)
    {
        handles.requests.increment(1);
        handles.duration.record(seconds);
        return;
    }
    let labels = [
        ("route", route.to_owned()),
        ("method", method.as_str().to_owned()),
        ("status", status.as_u16().to_string()),
    ];
    let handles = Handles {
        method: method.clone(),
        status,
        requests: metrics::counter!("http_requests_total", &labels),
        duration: metrics::histogram!("http_request_duration_seconds", &labels),
    };
    handles.requests.increment(1);
    handles.duration.record(seconds);
    if sets.len() < MAX_HANDLES_PER_ROUTE {
        sets.push(handles);
    }
}

/// The `/metrics` route; with a verifier, only for an access token with the `admin` scope.
pub fn router(admin_token: Option<Arc<Verifier>>) -> Router {
    let route = get(render);
    let route = match admin_token {
        Some(verifier) => route.layer(axum::middleware::from_fn_with_state(
            verifier,
            require_admin,
        )),
        None => route,
    };
    Router::new().route("/metrics", route)
}

/// 401 without a valid bearer access token, 403 without the `admin` scope.
async fn require_admin(
    State(verifier): State<Arc<Verifier>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(request.headers()) else {
        return challenge(StatusCode::UNAUTHORIZED, "Bearer");
    };
    match verifier.verify(token).await {
        Ok(principal) => match principal.require(Scope::Admin) {
            Ok(()) => next.run(request).await,
            Err(_) => challenge(
                StatusCode::FORBIDDEN,
                "Bearer error=\"insufficient_scope\", scope=\"admin\"",
            ),
        },
        Err(_) => challenge(StatusCode::UNAUTHORIZED, "Bearer error=\"invalid_token\""),
    }
}

fn challenge(status: StatusCode, value: &'static str) -> Response {
    (
        status,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static(value))],
    )
        .into_response()
}
