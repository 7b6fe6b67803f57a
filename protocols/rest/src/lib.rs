//! p8fs-rest: the versioned JSON API (`/v1/...`) over `Arc<dyn Backend>`, with an OpenAPI 3.1
//! document generated from the handlers (`/openapi.json`).
//!
//! Handlers are thin: parse, authorise (the tenant always comes from the access token, never from
//! the request), call the backend trait or a core algorithm, and map errors to
//! `application/problem+json` in [`error`]. This crate names no backend.

pub mod error;
mod extract;
pub mod graph;
pub mod kv;
pub mod vectors;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use p8fs_auth::Verifier;
use p8fs_core::Backend;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Default page size when a request names none.
pub const DEFAULT_PAGE: u64 = 100;

/// What every handler needs.
#[derive(Clone)]
pub struct RestState {
    pub backend: Arc<dyn Backend>,
    pub verifier: Arc<Verifier>,
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "p8fs REST API", description = "Key-value, vectors and graph of one tenant's memory vault. The tenant comes from the bearer token."),
    paths(
        kv::get_record, kv::put_record, kv::delete_record, kv::scan, kv::find,
        vectors::list_collections, vectors::create_collection, vectors::get_collection, vectors::drop_collection,
        vectors::put_vector, vectors::get_vector, vectors::delete_vector, vectors::list_vectors, vectors::search_vectors,
        graph::put_node, graph::get_node, graph::delete_node, graph::list_nodes,
        graph::put_edge, graph::get_edge, graph::delete_edge,
        graph::node_edges, graph::node_neighbors, graph::find_path,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "kv", description = "Versioned JSON values with optional ttl"),
        (name = "vectors", description = "Collections and exact nearest-neighbour search"),
        (name = "graph", description = "Nodes, edges and traversals"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The `/v1` routes and `/openapi.json`.
pub fn router(state: RestState) -> Router {
    Router::new()
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/v1/kv", get(kv::scan))
        .route(
            "/v1/kv/{*key}",
            get(kv::get_record)
                .put(kv::put_record)
                .delete(kv::delete_record),
        )
        .route("/v1/kv-find", post(kv::find))
        .route("/v1/collections", get(vectors::list_collections))
        .route(
            "/v1/collections/{name}",
            get(vectors::get_collection)
                .put(vectors::create_collection)
                .delete(vectors::drop_collection),
        )
        .route("/v1/collections/{name}/records", get(vectors::list_vectors))
        .route(
            "/v1/collections/{name}/records/{id}",
            get(vectors::get_vector)
                .put(vectors::put_vector)
                .delete(vectors::delete_vector),
        )
        .route(
            "/v1/collections/{name}/search",
            post(vectors::search_vectors),
        )
        .route("/v1/graph/nodes", get(graph::list_nodes))
        .route(
            "/v1/graph/nodes/{id}",
            get(graph::get_node)
                .put(graph::put_node)
                .delete(graph::delete_node),
        )
        .route("/v1/graph/nodes/{id}/edges", get(graph::node_edges))
        .route("/v1/graph/nodes/{id}/neighbors", get(graph::node_neighbors))
        .route(
            "/v1/graph/edges/{src}/{rel}/{dst}",
            get(graph::get_edge)
                .put(graph::put_edge)
                .delete(graph::delete_edge),
        )
        .route("/v1/graph/shortest-path", post(graph::find_path))
        .with_state(state)
}
