//! Prometheus metrics: requests by route, method and status, and request latency histograms,
//! rendered in the text format at `/metrics`.
//!
//! Where `/metrics` is served is configuration (`[metrics]`): on the main listener when it is a
//! loopback address (the default), on its own `metrics.listen` address, and with
//! `metrics.require_admin_token` only to an access token with the `admin` scope, checked by the
//! same verifier as every other route.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
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
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
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
