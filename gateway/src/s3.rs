//! The S3 listener and the object reaper. The listener serves `p8fs_s3`'s service through
//! the same accept loop as the main listener ([`crate::connections::serve`]: connection limits,
//! header-read and idle timeouts) but without the main listener's body buffering: S3 bodies
//! stream. A request takes one of `s3.concurrency` slots and must finish, body included,
//! within `s3.request_timeout`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use p8fs_core::{Backend, Clock, ReapPolicy};
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::{Config, S3Config};
use crate::server::Services;

/// The S3 application: every path goes to the S3 service.
pub fn app(services: &Services, config: &Config, clock: Arc<dyn Clock>) -> Result<Router, String> {
    let settings = p8fs_s3::S3Settings {
        domain: config.s3.domain.clone(),
    };
    let service = p8fs_s3::service(
        services.backend.clone(),
        Arc::new(services.s3.clone()),
        clock,
        &settings,
    )?;
    let limits = Arc::new(S3Limits {
        slots: Semaphore::new(config.s3.concurrency),
        request_timeout: config.s3.request_timeout,
    });
    let router = Router::new()
        .fallback(move |request: Request| {
            let service = service.clone();
            async move { handle(&service, request).await }
        })
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limit_s3_request,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(crate::server::request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    Ok(router)
}

async fn handle(service: &s3s::service::S3Service, request: Request) -> Response {
    let request = request.map(s3s::Body::http_body_unsync);
    match service.call(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => {
            tracing::warn!(error = ?error, "the S3 service failed a request");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The slots and the deadline of S3 requests.
struct S3Limits {
    slots: Semaphore,
    request_timeout: Duration,
}

/// Takes a slot and runs the request, both within `s3.request_timeout`; the body streams
/// (it is read by the operation, inside the deadline). Counts requests by method and status.
async fn limit_s3_request(
    State(limits): State<Arc<S3Limits>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let handled = async {
        let _permit = limits.slots.acquire().await;
        next.run(request).await
    };
    let response = match tokio::time::timeout(limits.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("http_request_timeouts_total", "phase" => "s3").increment(1);
            request_timeout()
        }
    };
    let status = response.status().as_u16().to_string();
    metrics::counter!("s3_requests_total", "method" => method, "status" => status).increment(1);
    response
}

/// S3's `RequestTimeout` error.
fn request_timeout() -> Response {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>RequestTimeout</Code>\
                <Message>the request did not complete within s3.request_timeout</Message></Error>";
    let mut response = (StatusCode::BAD_REQUEST, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// What the object reaper removes at `now`: uploads and unfinished blobs older than
/// `s3.abandoned_upload_age`, blobs freed longer than `s3.freed_grace` ago.
pub fn reap_policy(config: &S3Config, now: p8fs_core::Timestamp) -> ReapPolicy {
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    ReapPolicy {
        abandoned_before: now.saturating_sub(millis(config.abandoned_upload_age)),
        freed_before: now.saturating_sub(millis(config.freed_grace)),
    }
}

/// Runs the object reaper every `interval`.
pub fn spawn_object_reaper(
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    config: S3Config,
    interval: Duration,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match backend
                .reap_objects(reap_policy(&config, clock.now()))
                .await
            {
                Ok(removed) if removed > 0 => tracing::info!(removed, "reaped object blobs"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "reaping object blobs failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reap_policy_follows_the_configured_ages() {
        let config = S3Config::default();
        let now = 10 * 86_400_000;
        let policy = reap_policy(&config, now);
        assert_eq!(policy.abandoned_before, now - 7 * 86_400_000);
        assert_eq!(policy.freed_before, now - 3_600_000);
    }
}
