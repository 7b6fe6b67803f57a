//! gRPC on the main listener: requests whose `content-type` is `application/grpc*` go to
//! [`p8fs_grpc::router`] instead of the HTTP application, whatever their path, and outside its
//! body buffering and handling timeout (gRPC streams are long-lived and bound their own
//! messages; a call's deadline is its `grpc-timeout`). They get a request id, the request span
//! and the HTTP metrics like every other request.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::server::{Services, request_span};

/// `app` with the gRPC services beside it.
pub(crate) fn beside(app: Router, services: &Services) -> Router {
    let grpc = p8fs_grpc::router(
        p8fs_grpc::GrpcState {
            backend: services.backend.clone(),
            verifier: services.verifier.clone(),
            clock: services.clock.clone(),
            changes: services.changes.clone(),
            memory: services.memory.clone(),
        },
        p8fs_grpc::GrpcConfig::default(),
    )
    .route_layer(axum::middleware::from_fn(crate::metrics::track))
    .layer(PropagateRequestIdLayer::x_request_id())
    // A status other than OK is the client's answer, not a server failure: internal errors are
    // logged where they are mapped (`p8fs_grpc::error`).
    .layer(
        TraceLayer::new_for_grpc()
            .make_span_with(request_span)
            .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    )
    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    app.layer(axum::middleware::from_fn_with_state(
        Arc::new(grpc),
        dispatch,
    ))
}

/// Hands a gRPC request to the gRPC router, anything else to the application.
async fn dispatch(State(grpc): State<Arc<Router>>, request: Request, next: Next) -> Response {
    if p8fs_grpc::is_grpc(request.headers()) {
        match Router::clone(&grpc).oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        }
        .into_response()
    } else {
        next.run(request).await
    }
}
