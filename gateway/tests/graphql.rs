//! The GraphQL endpoint over HTTP, as the GraphQL-over-HTTP specification and a hostile client
//! see it: media types and status codes, the token, per-field scopes, tenant isolation, the
//! limits (depth, complexity, aliases, root fields, document size, batching), persisted
//! queries, and the DataLoader (a neighbours list costs one batched node read, counted in the
//! backend's metrics). Clients no one here wrote are in `graphql_clients.rs`.

#![expect(
    clippy::unwrap_used,
    reason = "a failed step should fail the test loudly"
)]

mod graphql {
    use std::sync::Arc;
    use std::time::Duration;

    use p8fs_auth::{Issuer, ScopeSet};
    use p8fs_core::{Clock, SystemClock, TenantId};
    use p8fs_gateway::config::{Config, Overrides};
    use p8fs_gateway::server;
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    const ALL: &str =
        "kv:read kv:write vectors:read vectors:write graph:read graph:write s3:read s3:write";
    const NEW: &str = "application/graphql-response+json";

    struct Server {
        base: String,
        http: reqwest::Client,
        services: server::Services,
        config: Config,
        _dir: tempfile::TempDir,
    }

    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        };
        let config = Config::load(None, Vec::new(), &overrides).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let services = server::services(&config, clock).await.unwrap();
        let app = server::app(&services, &config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        Server {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
            services,
            config,
            _dir: dir,
        }
    }

    impl Server {
        fn token(&self, tenant: &str, scopes: &str) -> String {
            Issuer::new(
                self.services.keys.clone(),
                server::token_config(&self.config),
                Arc::new(SystemClock),
            )
            .issue(
                &TenantId::new(tenant).unwrap(),
                "tester",
                "tests",
                &ScopeSet::parse(scopes).unwrap(),
                Duration::from_secs(600),
            )
            .unwrap()
            .token
        }

        /// POSTs a request body with `Accept: accept`; the status, content type and JSON body.
        async fn post(
            &self,
            token: Option<&str>,
            accept: &str,
            body: Value,
        ) -> (StatusCode, String, Value) {
            let mut request = self
                .http
                .post(format!("{}/graphql", self.base))
                .header("accept", accept)
                .json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            reply(response).await
        }

        async fn get(&self, token: &str, query: &[(&str, &str)]) -> (StatusCode, String, Value) {
            let response = self
                .http
                .get(format!("{}/graphql", self.base))
                .header("accept", NEW)
                .bearer_auth(token)
                .query(query)
                .send()
                .await
                .unwrap();
            reply(response).await
        }

        async fn query(&self, token: &str, query: &str, variables: Value) -> Value {
            let (status, _, body) = self
                .post(
                    Some(token),
                    NEW,
                    json!({ "query": query, "variables": variables }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }

        async fn metric(&self, op: &str) -> u64 {
            let text = self
                .http
                .get(format!("{}/metrics", self.base))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let needle =
                format!("backend_operation_duration_seconds_count{{op=\"{op}\",outcome=\"ok\"}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&needle))
                .map_or(0, |n| n.trim().parse().unwrap())
        }
    }

    async fn reply(response: reqwest::Response) -> (StatusCode, String, Value) {
        let status = response.status();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        (
            status,
            media,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn code(body: &Value) -> &str {
        body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn key_values_round_trip_with_connections_and_conditions() {
        let server = start().await;
        let token = server.token("alpha", ALL);
        for key in ["notes/a", "notes/b", "notes/c", "other"] {
            let written = server
                .query(
                    &token,
                    "mutation($k: String!, $v: JSON!) { kvPut(key: $k, value: $v) { key version } }",
                    json!({ "k": key, "v": { "title": key } }),
                )
                .await;
            assert_eq!(written["data"]["kvPut"]["key"], key, "{written}");
        }
        let page = server
            .query(
                &token,
                "{ kvScan(prefix: \"notes/\", first: 2) { edges { cursor node { key value } } pageInfo { hasNextPage endCursor } } }",
                json!({}),
            )
            .await;
        let scan = &page["data"]["kvScan"];
        assert_eq!(scan["edges"][1]["node"]["key"], "notes/b", "{page}");
        assert_eq!(scan["pageInfo"]["hasNextPage"], true);
        let rest = server
            .query(
                &token,
                "query($after: String) { kvScan(prefix: \"notes/\", after: $after) { edges { node { key } } pageInfo { hasNextPage } } }",
                json!({ "after": scan["pageInfo"]["endCursor"] }),
            )
            .await;
        assert_eq!(
            rest["data"]["kvScan"]["edges"],
            json!([{ "node": { "key": "notes/c" } }])
        );
        assert_eq!(rest["data"]["kvScan"]["pageInfo"]["hasNextPage"], false);

        // Put-if-absent on a stored key and a stale compare-and-swap are CONFLICT on that field.
        let conflict = server
            .query(
                &token,
                "mutation { kvPutIfAbsent(key: \"other\", value: 1) { version } }",
                json!({}),
            )
            .await;
        assert_eq!(code(&conflict), "CONFLICT", "{conflict}");
        assert_eq!(conflict["errors"][0]["path"], json!(["kvPutIfAbsent"]));
        let stale = server
            .query(&token, "mutation { kvCompareAndSwap(key: \"other\", version: \"1\", value: 2) { version } }", json!({}))
            .await;
        assert_eq!(code(&stale), "CONFLICT", "{stale}");
        let found = server
            .query(
                &token,
                "{ kvFind(path: \"title\", equals: \"other\") { edges { node { key } } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            found["data"]["kvFind"]["edges"][0]["node"]["key"], "other",
            "{found}"
        );
        let deleted = server
            .query(
                &token,
                "mutation { a: kvDelete(key: \"other\") b: kvDelete(key: \"other\") }",
                json!({}),
            )
            .await;
        assert_eq!(deleted["data"], json!({ "a": true, "b": false }));
    }

    #[tokio::test]
    async fn media_types_and_status_codes_follow_graphql_over_http() {
        let server = start().await;
        let token = server.token("alpha", ALL);
        // A syntax error is 400 with the new media type, 200 with application/json.
        let (status, media, body) = server
            .post(Some(&token), NEW, json!({ "query": "{ kv(key: " }))
            .await;
        assert_eq!(
            (status, media.as_str()),
            (StatusCode::BAD_REQUEST, NEW),
            "{body}"
        );
        assert_eq!(code(&body), "GRAPHQL_PARSE_FAILED");
        let (status, media, body) = server
            .post(
                Some(&token),
                "application/json",
                json!({ "query": "{ kv(key: " }),
            )
            .await;
        assert_eq!(
            (status, media.as_str()),
            (StatusCode::OK, "application/json"),
            "{body}"
        );
        // Unknown fields and wrong argument types fail validation: 400.
        for query in ["{ nope }", "{ kv(key: 5) { key } }", "{ kv { key } }"] {
            let (status, _, body) = server
                .post(Some(&token), NEW, json!({ "query": query }))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert!(body.get("data").is_none_or(Value::is_null), "{body}");
        }
        // A body that is not JSON, a batch, or no query: 400 with both media types.
        let response = server
            .http
            .post(format!("{}/graphql", server.base))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let (status, _, body) = server
            .post(
                Some(&token),
                "application/json",
                json!([{ "query": "{ __typename }" }]),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("batch"),
            "{body}"
        );
        let (status, ..) = server
            .post(Some(&token), NEW, json!({ "variables": {} }))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // An Accept that allows neither JSON type: 406.
        let (status, ..) = server
            .post(
                Some(&token),
                "text/plain",
                json!({ "query": "{ __typename }" }),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
        // GET runs queries, refuses mutations with 405.
        let (status, media, body) = server.get(&token, &[("query", "{ __typename }")]).await;
        assert_eq!((status, media.as_str()), (StatusCode::OK, NEW));
        assert_eq!(body["data"]["__typename"], "Query");
        let (status, ..) = server
            .get(&token, &[("query", "mutation { kvDelete(key: \"a\") }")])
            .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        // No token, or a bad one: 401 with WWW-Authenticate.
        let (status, _, body) = server
            .post(None, NEW, json!({ "query": "{ __typename }" }))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code(&body), "UNAUTHENTICATED");
        let (status, ..) = server
            .post(
                Some("not.a.token"),
                NEW,
                json!({ "query": "{ __typename }" }),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Introspection is on by default.
        let body = server
            .query(&token, "{ __schema { queryType { name } } }", json!({}))
            .await;
        assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
    }

    #[tokio::test]
    async fn a_missing_scope_fails_its_field_and_tenants_stay_apart() {
        let server = start().await;
        let alpha = server.token("alpha", ALL);
        let kv_only = server.token("alpha", "kv:read kv:write");
        let beta = server.token("beta", ALL);
        server
            .query(&alpha, "mutation { kvPut(key: \"secret\", value: 1) { version } putNode(id: \"n\", label: \"l\") { id } }", json!({}))
            .await;
        let partial = server
            .query(
                &kv_only,
                "{ kv(key: \"secret\") { value } node(id: \"n\") { id } }",
                json!({}),
            )
            .await;
        assert_eq!(partial["data"]["kv"]["value"], 1, "{partial}");
        assert!(partial["data"]["node"].is_null());
        assert_eq!(code(&partial), "FORBIDDEN", "{partial}");
        assert_eq!(partial["errors"][0]["path"], json!(["node"]));
        let other = server
            .query(&beta, "{ kv(key: \"secret\") { value } node(id: \"n\") { id } kvScan { edges { node { key } } } }", json!({}))
            .await;
        assert_eq!(other["data"]["kv"], Value::Null, "{other}");
        assert_eq!(other["data"]["node"], Value::Null);
        assert_eq!(other["data"]["kvScan"]["edges"], json!([]));
        assert!(other.get("errors").is_none(), "{other}");
        // Bad input names the argument.
        let bad = server
            .query(
                &alpha,
                "{ kvScan(first: 0) { edges { cursor } } }",
                json!({}),
            )
            .await;
        assert_eq!(code(&bad), "BAD_USER_INPUT", "{bad}");
        assert_eq!(bad["errors"][0]["extensions"]["field"], "first");
    }

    #[tokio::test]
    async fn limits_refuse_hostile_documents_and_store_nothing() {
        let server = start().await;
        let token = server.token("alpha", ALL);
        let deep = format!(
            "{{ node(id: \"a\") {{ {} id {} }} }}",
            "neighbors { node { ".repeat(8),
            "} } ".repeat(8)
        );
        let aliases: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
        let roots: String = (0..25)
            .map(|i| format!("k{i}: kv(key: \"k\") {{ key }} "))
            .collect();
        let scans: String = (0..10)
            .map(|i| format!("s{i}: kvScan(first: 1000) {{ edges {{ node {{ key }} }} }} "))
            .collect();
        let complex = format!("{{ {scans} }}");
        let huge = format!("{{ __typename {} }}", "# padding\n".repeat(8_000));
        let writes: String = (0..25)
            .map(|i| format!("w{i}: kvPut(key: \"bomb{i}\", value: 1) {{ key }} "))
            .collect();
        for (what, query) in [
            ("depth", deep),
            ("aliases", format!("{{ {aliases} }}")),
            ("root fields", format!("{{ {roots} }}")),
            ("complexity", complex),
            ("document size", huge),
            ("mutation root fields", format!("mutation {{ {writes} }}")),
        ] {
            let (status, _, body) = server
                .post(Some(&token), NEW, json!({ "query": query }))
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
            assert!(body["errors"][0]["message"].is_string(), "{what}: {body}");
        }
        // The refused mutation stored nothing.
        let none = server
            .query(
                &token,
                "{ kvScan(prefix: \"bomb\") { edges { node { key } } } }",
                json!({}),
            )
            .await;
        assert_eq!(none["data"]["kvScan"]["edges"], json!([]), "{none}");
    }

    #[tokio::test]
    async fn persisted_queries_are_learnt_by_hash() {
        let server = start().await;
        let token = server.token("alpha", ALL);
        let query = "{ __typename }";
        let hash = format!("{:x}", Sha256::digest(query.as_bytes()));
        let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
        let (status, _, body) = server
            .post(Some(&token), NEW, json!({ "extensions": extensions }))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["errors"][0]["message"], "PersistedQueryNotFound",
            "{body}"
        );
        let (_, _, body) = server
            .post(
                Some(&token),
                NEW,
                json!({ "query": query, "extensions": extensions }),
            )
            .await;
        assert_eq!(body["data"]["__typename"], "Query", "{body}");
        let (status, _, body) = server
            .get(&token, &[("extensions", &extensions.to_string())])
            .await;
        assert_eq!(
            (status, &body["data"]["__typename"]),
            (StatusCode::OK, &json!("Query")),
            "{body}"
        );
        let (status, _, body) = server
            .post(
                Some(&token),
                NEW,
                json!({ "query": "{ other: __typename }", "extensions": extensions }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    #[tokio::test]
    async fn neighbours_with_properties_cost_one_batched_node_read() {
        let server = start().await;
        let token = server.token("alpha", ALL);
        server
            .query(
                &token,
                "mutation { putNode(id: \"hub\", label: \"person\") { id } }",
                json!({}),
            )
            .await;
        // Ten nodes and their edges per operation: within the limit of 20 root fields.
        for half in [0..10, 10..20] {
            let mut writes = String::from("mutation { ");
            for i in half {
                writes.push_str(&format!(
                    "n{i}: putNode(id: \"n{i:02}\", label: \"note\", properties: {{ rank: {i} }}) {{ id }} \
                     e{i}: putEdge(src: \"hub\", rel: \"wrote\", dst: \"n{i:02}\") {{ rel }} "
                ));
            }
            writes.push('}');
            let written = server.query(&token, &writes, json!({})).await;
            assert!(written.get("errors").is_none(), "{written}");
        }

        let (single_before, batch_before) = (
            server.metric("graph.get_node").await,
            server.metric("graph.get_nodes").await,
        );
        let body = server
            .query(
                &token,
                "{ node(id: \"hub\") { id neighbors(first: 20) { hops node { id label properties } } } }",
                json!({}),
            )
            .await;
        let neighbors = body["data"]["node"]["neighbors"].as_array().unwrap();
        assert_eq!(neighbors.len(), 20, "{body}");
        assert_eq!(neighbors[19]["node"]["properties"]["rank"], 19);
        let singles = server.metric("graph.get_node").await - single_before;
        let batches = server.metric("graph.get_nodes").await - batch_before;
        // One get_node for `node(id)` and one inside the traversal's start check; the 20
        // neighbours come in one batch.
        assert_eq!(batches, 1, "neighbour nodes in one batch");
        assert!(singles <= 2, "{singles} single node reads");
    }
}
