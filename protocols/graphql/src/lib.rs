//! p8fs-graphql: the GraphQL front-end at `/graphql` on the main listener, over
//! `Arc<dyn Backend>`: one schema over everything the contract offers a tenant (key-value
//! records, vector collections, the graph, buckets and objects, memories and search by meaning),
//! live change subscriptions over WebSockets, and a GraphiQL page served from vendored assets.
//!
//! Resolvers are thin: check the field's scope ([`context::caller`]; the tenant always comes
//! from the access token), validate arguments with the contract's types, call the backend trait
//! or a core algorithm, and map errors once ([`error`]). The HTTP layer ([`http`]) follows the
//! GraphQL-over-HTTP specification and enforces the limits of [`limits::GraphqlLimits`] before
//! anything runs. This crate names no backend.

mod apq;
pub mod changes;
mod context;
pub mod error;
pub mod graph;
pub mod graphiql;
mod http;
pub mod kv;
pub mod limits;
pub mod memories;
pub mod objects;
mod page;
pub mod scalars;
pub mod vectors;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};
use axum::Router;
use p8fs_auth::Verifier;
use p8fs_core::{Backend, ChangeSignal, Clock};

pub use limits::GraphqlLimits;

/// What every resolver needs.
#[derive(Clone)]
pub struct GraphqlState {
    pub backend: Arc<dyn Backend>,
    pub verifier: Arc<Verifier>,
    /// The backend's clock (token expiry of subscriptions).
    pub clock: Arc<dyn Clock>,
    /// Wakes change subscriptions that have caught up.
    pub changes: Arc<dyn ChangeSignal>,
    /// Memories and search by meaning; `None` when embeddings are off.
    pub memory: Option<Arc<p8fs_memory::Memory>>,
    /// Signs objects' download URLs on the S3 listener; `None` when S3 is not served.
    pub presigner: Option<Arc<p8fs_s3::presign::Presigner>>,
}

/// Every query field.
#[derive(MergedObject, Default)]
pub struct Query(
    kv::KvQuery,
    vectors::VectorQuery,
    graph::GraphQuery,
    objects::ObjectQuery,
    memories::MemoryQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    kv::KvMutation,
    vectors::VectorMutation,
    graph::GraphMutation,
    objects::ObjectMutation,
    memories::MemoryMutation,
);

/// The schema served at `/graphql`.
pub type VaultSchema = Schema<Query, Mutation, changes::ChangeSubscription>;

/// The schema with its limits; `state` is available to every resolver.
pub fn schema(state: GraphqlState, limits: &GraphqlLimits) -> VaultSchema {
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        changes::ChangeSubscription,
    )
    .data(state)
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(limits.max_recursion)
    .limit_directives(limits.max_directives)
    .extension(http::Phases);
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The schema in SDL, for clients' code generators and the README.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        changes::ChangeSubscription,
    )
    .finish()
    .sdl()
}

/// `/graphql` (queries, mutations, WebSocket subscriptions and the GraphiQL page) and its
/// assets.
pub fn router(state: GraphqlState, limits: GraphqlLimits) -> Router {
    http::router(state, limits)
}
