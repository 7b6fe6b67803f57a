//! p8fs-rest: the versioned JSON API (`/v1/...`) over `Arc<dyn Backend>`, with an OpenAPI 3.1
//! document generated from the handlers (`/openapi.json`).
//!
//! Handlers are thin: parse, authorise (the tenant always comes from the access token, never from
//! the request), call the backend trait or a core algorithm, and map errors to
//! `application/problem+json` in [`error`]. This crate names no backend.

pub mod changes;
pub mod error;
mod extract;
pub mod graph;
mod integer;
pub mod kv;
pub mod memories;
pub mod objects;
mod schema;
pub mod vectors;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use p8fs_auth::Verifier;
use p8fs_core::{Backend, ChangeSignal, Clock};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Default page size when a request names none.
pub const DEFAULT_PAGE: u64 = 100;

/// What every handler needs: [`RestServices`] behind one reference count, so that the copy axum
/// makes for each request costs one atomic increment rather than one per service.
#[derive(Clone)]
pub struct RestState(Arc<RestServices>);

impl RestState {
    pub fn new(services: RestServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for RestState {
    type Target = RestServices;

    fn deref(&self) -> &RestServices {
        &self.0
    }
}

/// The services the REST handlers use.
pub struct RestServices {
    pub backend: Arc<dyn Backend>,
    pub verifier: Arc<Verifier>,
    /// The time objects are stamped with (their last-modified), as the backend's clock.
    pub clock: Arc<dyn Clock>,
    /// Wakes change streams that have caught up.
    pub changes: Arc<dyn ChangeSignal>,
    /// Memories and search by meaning; `None` when embeddings are off.
    pub memory: Option<Arc<p8fs_memory::Memory>>,
}

/// The document's description, with the conventions its schemas rely on.
const DESCRIPTION: &str = "Key-value, vectors, graph and objects of one tenant's memory vault. The tenant \
    comes from the bearer token.\n\n\
    Lengths: names, ids, keys and paths are limited in UTF-8 bytes. JSON Schema's `maxLength` \
    counts characters, so such a string has `maxLength: N`, a bound every accepted string meets, \
    and `format: utf8-max-N-bytes`: its UTF-8 encoding has at most N bytes. The format \
    `comma-separated-utf8-max-128-bytes` is a comma-separated list of such names. A string over \
    its byte limit is a 400 naming the field.\n\n\
    Integers: a JSON body's integer fields take any number with no fractional part (`200.0` is \
    200, as in JSON Schema); `1.5` is a 400 naming the field. Query parameters are decimal digits.\n\n\
    Errors are `application/problem+json` (RFC 9457) with the offending `field`.";

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "p8fs REST API", description = DESCRIPTION),
    paths(
        kv::get_record, kv::put_record, kv::delete_record, kv::scan, kv::find,
        vectors::list_collections, vectors::create_collection, vectors::get_collection, vectors::drop_collection,
        vectors::put_vector, vectors::get_vector, vectors::delete_vector, vectors::list_vectors, vectors::search_vectors,
        graph::put_node, graph::get_node, graph::delete_node, graph::list_nodes,
        graph::put_edge, graph::get_edge, graph::delete_edge,
        graph::node_edges, graph::node_neighbors, graph::find_path,
        objects::list_buckets, objects::create_bucket, objects::delete_bucket, objects::list_objects,
        objects::put_object, objects::get_object, objects::delete_object,
        changes::read_changes, changes::stream_changes,
        memories::create_memory, memories::list_memories, memories::get_memory, memories::delete_memory,
        memories::link_memory, memories::search, memories::search_with_filters, memories::index_status,
    ),
    components(schemas(schema::AnyJson, schema::AnyJsonObject)),
    modifiers(&BearerAuth),
    tags(
        (name = "kv", description = "Versioned JSON values with optional ttl"),
        (name = "vectors", description = "Collections and exact nearest-neighbour search"),
        (name = "graph", description = "Nodes, edges and traversals"),
        (name = "changes", description = "The tenant's change log: every committed write once, in commit order, as pages or a live event stream"),
        (name = "objects", description = "Buckets and objects, the same as the S3 front-end's (scopes s3:read and s3:write)"),
        (name = "memories", description = "Notes stored as memories and search by meaning over memories and uploaded files (scopes memories:read and memories:write)"),
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

/// The OpenAPI document as served at `/openapi.json`.
///
/// utoipa 5 serializes a response's links with snake_case field names (`operation_id`); OpenAPI
/// spells them `operationId`, `operationRef` and `requestBody`, and clients ignore links spelled
/// otherwise, so they are renamed here.
pub fn openapi_document() -> Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // An `application/octet-stream` request body is any bytes: utoipa describes `Vec<u8>` as an
    // array of integers, which no client sends; the empty schema says what is accepted.
    let bodies = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(|operation| operation.pointer_mut("/requestBody/content"))
        .filter_map(|content| content.get_mut("application/octet-stream"))
        .filter_map(Value::as_object_mut);
    for body in bodies {
        body.insert("schema".to_owned(), Value::Object(Default::default()));
    }
    let responses = document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|operations| operations.values_mut())
        .filter_map(|operation| operation.get_mut("responses"))
        .filter_map(Value::as_object_mut)
        .flat_map(|responses| responses.values_mut());
    for response in responses {
        let links = response
            .get_mut("links")
            .and_then(Value::as_object_mut)
            .into_iter()
            .flat_map(|links| links.values_mut())
            .filter_map(Value::as_object_mut);
        for link in links {
            for (snake, camel) in [
                ("operation_id", "operationId"),
                ("operation_ref", "operationRef"),
                ("request_body", "requestBody"),
            ] {
                if let Some(value) = link.remove(snake) {
                    link.insert(camel.to_owned(), value);
                }
            }
        }
    }
    document
}

/// The `/v1` routes and `/openapi.json`.
pub fn router(state: RestState) -> Router {
    let document = Arc::new(openapi_document());
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { Json(Value::clone(&document)) }
            }),
        )
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
        .route("/v1/changes", get(changes::read_changes))
        .route("/v1/changes/stream", get(changes::stream_changes))
        .route("/v1/objects", get(objects::list_buckets))
        .route(
            "/v1/objects/{bucket}",
            get(objects::list_objects)
                .put(objects::create_bucket)
                .delete(objects::delete_bucket),
        )
        .route(
            "/v1/objects/{bucket}/{*key}",
            get(objects::get_object)
                .put(objects::put_object)
                .delete(objects::delete_object),
        )
        .route(
            "/v1/memories",
            get(memories::list_memories).post(memories::create_memory),
        )
        .route(
            "/v1/memories/{id}",
            get(memories::get_memory).delete(memories::delete_memory),
        )
        .route("/v1/memories/{id}/links", post(memories::link_memory))
        .route(
            "/v1/search",
            get(memories::search).post(memories::search_with_filters),
        )
        .route("/v1/index/{bucket}/{*key}", get(memories::index_status))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use p8fs_core::validate::{
        MAX_DIMENSION, MAX_FILTER_CLAUSES, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_NAME_BYTES,
        MAX_PAGE_SIZE, MAX_PATH_BYTES, MAX_RELS, MAX_TTL_MILLIS,
    };
    use serde_json::json;

    use super::*;

    /// Every schema object in the document, depth first.
    fn schemas<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
        match value {
            Value::Object(map) => {
                out.push(value);
                map.values().for_each(|v| schemas(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| schemas(v, out)),
            _ => {}
        }
    }

    fn parameter<'a>(document: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        document["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map_or(&Value::Null, |p| &p["schema"])
    }

    #[test]
    fn byte_limits_are_the_contract_s() {
        let document = openapi_document();
        let mut all = Vec::new();
        schemas(&document, &mut all);
        let mut limited = 0;
        // The memory API's own limits: tags, a search's text, a memory's text (the default of
        // `embeddings.max_memory_bytes`) and a metadata path under `metadata.`.
        let memory_limits = [
            p8fs_memory::MAX_TAG_BYTES,
            p8fs_memory::MAX_QUERY_BYTES,
            p8fs_memory::Limits::default().max_memory_bytes,
            MAX_PATH_BYTES - "metadata.".len(),
        ];
        for schema in all {
            let Some(format) = schema.get("format").and_then(Value::as_str) else {
                continue;
            };
            if let Some(bytes) = format
                .strip_prefix("utf8-max-")
                .and_then(|f| f.strip_suffix("-bytes"))
            {
                let bytes: usize = bytes.parse().unwrap();
                assert!(
                    [MAX_KEY_BYTES, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES].contains(&bytes)
                        || memory_limits.contains(&bytes),
                    "{schema}"
                );
                assert_eq!(schema["maxLength"], json!(bytes), "{schema}");
                limited += 1;
            }
        }
        assert!(limited >= 20, "only {limited} byte-limited strings");
        let cases = [
            ("/v1/kv/{key}", "get", "key", MAX_KEY_BYTES),
            ("/v1/kv", "get", "prefix", MAX_KEY_BYTES),
            ("/v1/kv", "get", "start_after", MAX_KEY_BYTES),
            ("/v1/graph/nodes/{id}", "put", "id", MAX_ID_BYTES),
            ("/v1/graph/nodes", "get", "start_after", MAX_ID_BYTES),
            (
                "/v1/collections/{name}/records/{id}",
                "put",
                "id",
                MAX_ID_BYTES,
            ),
            (
                "/v1/graph/edges/{src}/{rel}/{dst}",
                "put",
                "src",
                MAX_ID_BYTES,
            ),
            (
                "/v1/graph/edges/{src}/{rel}/{dst}",
                "put",
                "rel",
                MAX_NAME_BYTES,
            ),
        ];
        for (path, method, name, bytes) in cases {
            let schema = parameter(&document, path, method, name);
            assert_eq!(schema["maxLength"], json!(bytes), "{method} {path} {name}");
            assert_eq!(schema["format"], json!(format!("utf8-max-{bytes}-bytes")));
        }
        let components = &document["components"]["schemas"];
        assert_eq!(
            components["PutNode"]["properties"]["label"]["maxLength"],
            json!(MAX_NAME_BYTES)
        );
        assert_eq!(
            components["FindRequest"]["properties"]["path"]["maxLength"],
            json!(MAX_PATH_BYTES)
        );
        assert_eq!(
            components["PathRequest"]["properties"]["src"]["maxLength"],
            json!(MAX_ID_BYTES)
        );
        let rels = &components["PathRequest"]["properties"]["rels"];
        assert_eq!(rels["maxItems"], json!(MAX_RELS));
        assert_eq!(rels["items"]["maxLength"], json!(MAX_NAME_BYTES));
        assert_eq!(rels["items"]["minLength"], json!(1));
    }

    #[test]
    fn numeric_limits_are_the_contract_s() {
        let document = openapi_document();
        let components = &document["components"]["schemas"];
        let dimension = &components["CreateCollection"]["properties"]["dimension"];
        assert_eq!(dimension["maximum"], json!(MAX_DIMENSION));
        for (schema, field) in [("PutVector", "vector"), ("SearchRequest", "query")] {
            let vector = &components[schema]["properties"][field];
            assert_eq!(vector["minItems"], json!(1), "{schema}");
            assert_eq!(vector["maxItems"], json!(MAX_DIMENSION), "{schema}");
            assert_eq!(vector["items"]["maximum"], json!(f64::from(f32::MAX)));
            assert_eq!(vector["items"]["minimum"], json!(-f64::from(f32::MAX)));
        }
        let filter = &components["SearchRequest"]["properties"]["filter"];
        assert_eq!(filter["maxProperties"], json!(MAX_FILTER_CLAUSES));
        assert_eq!(filter["propertyNames"]["maxLength"], json!(MAX_PATH_BYTES));
        for schema in ["PutNode", "PutEdge", "PutVector"] {
            let ttl = &components[schema]["properties"]["ttl_ms"];
            assert_eq!(ttl["maximum"], json!(MAX_TTL_MILLIS), "{schema}");
            assert_eq!(ttl["minimum"], json!(1), "{schema}");
        }
        let limit = parameter(&document, "/v1/kv", "get", "limit");
        assert_eq!(limit["maximum"], json!(MAX_PAGE_SIZE));
        let weight = &components["PutEdge"]["properties"]["weight"];
        assert_eq!(weight["maximum"], json!(f64::MAX));
    }

    #[test]
    fn links_are_spelled_as_openapi_spells_them() {
        let document = openapi_document();
        let text = document.to_string();
        assert!(!text.contains("operation_id") && !text.contains("request_body"));
        let operation_ids: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|ops| ops.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let mut links = 0;
        for ops in document["paths"].as_object().unwrap().values() {
            for op in ops.as_object().unwrap().values() {
                for response in op["responses"].as_object().unwrap().values() {
                    for link in response["links"]
                        .as_object()
                        .into_iter()
                        .flat_map(|l| l.values())
                    {
                        let target = link["operationId"].as_str().unwrap();
                        assert!(operation_ids.contains(&target), "{target}");
                        links += 1;
                    }
                }
            }
        }
        assert!(links >= 8, "{links} links");
    }

    #[test]
    fn strings_in_json_values_exclude_nul_at_every_depth() {
        let document = openapi_document();
        let json = &document["components"]["schemas"]["Json"];
        let branches = json["anyOf"].as_array().unwrap();
        let string = branches.iter().find(|b| b["type"] == "string").unwrap();
        assert_eq!(string["pattern"], json!("^[^\\u0000]*$"));
        let array = branches.iter().find(|b| b["type"] == "array").unwrap();
        assert_eq!(array["items"]["$ref"], json!("#/components/schemas/Json"));
        let object = &document["components"]["schemas"]["JsonObject"];
        assert_eq!(
            object["additionalProperties"]["$ref"],
            json!("#/components/schemas/Json")
        );
        assert_eq!(object["propertyNames"]["pattern"], json!("^[^\\u0000]*$"));
    }

    #[test]
    fn a_node_s_edges_document_the_missing_node() {
        let document = openapi_document();
        let responses = &document["paths"]["/v1/graph/nodes/{id}/edges"]["get"]["responses"];
        assert!(responses["404"].is_object());
        let params =
            document["paths"]["/v1/graph/nodes/{id}/edges"]["get"]["parameters"].to_string();
        assert!(
            !params.contains("\"depth\""),
            "edges take no depth: {params}"
        );
    }
}
