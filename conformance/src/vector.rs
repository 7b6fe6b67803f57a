//! Vectors (DESIGN.md, "Vectors"): collections and their specs, record upsert/get/delete/list,
//! exact search with pgvector's distances (cosine `1 - cos`, l2 Euclidean, dot `-(a·b)`),
//! ordering by distance then id bytes, metadata filters with the contract's JSON equality, and
//! rejection of zero (cosine), wrongly sized and non-finite vectors.

use std::fmt::Debug;

use serde_json::{Value, json};

use p8fs_core::vector::{SearchHit, SearchMode, search, search_with, upsert};
use p8fs_core::{Embedding, ErrorKind, Filter, JsonObject, Limit, Metric, Result};

use crate::Harness;
use crate::near_ties;
use crate::support::{collection, filter, limit, object, record, spec, ttl};

const TOLERANCE: f64 = 1e-6;

fn error_kind<T: Debug>(result: Result<T>, what: &str) -> ErrorKind {
    result.expect_err(what).kind()
}

fn invalid_field<T: Debug>(result: Result<T>, what: &str) -> String {
    let err = result.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
    err.field()
        .expect("InvalidInput names its field")
        .to_owned()
}

async fn create(h: &Harness, name: &str, dimension: u64, metric: Metric) {
    let created = h
        .b()
        .create_collection(&h.tenant, &spec(name, dimension, metric))
        .await
        .expect("create_collection succeeds");
    assert!(created, "collection {name} is new");
}

async fn put(h: &Harness, coll: &str, id: &str, v: &[f32], metadata: Value) {
    upsert(
        h.b(),
        &h.tenant,
        &collection(coll),
        &record(id),
        v.to_vec(),
        &object(metadata),
        None,
    )
    .await
    .expect("upsert succeeds");
}

async fn find(h: &Harness, coll: &str, query: &[f32], k: u64, f: &Filter) -> Vec<SearchHit> {
    search(
        h.b(),
        &h.tenant,
        &collection(coll),
        query.to_vec(),
        limit(k),
        f,
    )
    .await
    .expect("search succeeds")
}

fn ids(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|hit| hit.id.as_str()).collect()
}

/// Checks ids exactly and distances within [`TOLERANCE`].
fn assert_hits(hits: &[SearchHit], expected: &[(&str, f64)], what: &str) {
    let expected_ids: Vec<&str> = expected.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids(hits), expected_ids, "{what}: ranking");
    for (hit, (id, distance)) in hits.iter().zip(expected) {
        assert!(
            (hit.distance - distance).abs() <= TOLERANCE,
            "{what}: distance of {id} is {}, expected {distance}",
            hit.distance
        );
    }
}

async fn list_ids(h: &Harness, coll: &str) -> Vec<String> {
    let page = h
        .b()
        .list_vectors(&h.tenant, &collection(coll), None, Limit::MAX)
        .await
        .expect("list_vectors succeeds");
    page.items.into_iter().map(|r| r.id.into_string()).collect()
}

pub async fn create_collection_is_idempotent_and_conflicts(h: &Harness) {
    let docs = spec("docs", 3, Metric::Cosine);
    assert!(
        h.b()
            .create_collection(&h.tenant, &docs)
            .await
            .expect("create"),
        "created"
    );
    assert!(
        !h.b()
            .create_collection(&h.tenant, &docs)
            .await
            .expect("create again"),
        "an identical spec is not an error"
    );
    assert_eq!(
        h.b()
            .collection(&h.tenant, &docs.name)
            .await
            .expect("collection"),
        Some(docs.clone())
    );

    for (dimension, metric) in [
        (4, Metric::Cosine),
        (3, Metric::L2),
        (3, Metric::Dot),
        (1, Metric::Dot),
    ] {
        let kind = error_kind(
            h.b()
                .create_collection(&h.tenant, &spec("docs", dimension, metric))
                .await,
            "another dimension or metric must conflict",
        );
        assert_eq!(kind, ErrorKind::Conflict, "docs as {dimension}/{metric}");
    }
    assert_eq!(
        h.b()
            .collection(&h.tenant, &docs.name)
            .await
            .expect("collection"),
        Some(docs),
        "the spec is unchanged"
    );

    let upper = spec("Docs", 4, Metric::L2);
    assert!(
        h.b()
            .create_collection(&h.tenant, &upper)
            .await
            .expect("create"),
        "collection names are case-sensitive: Docs is another collection"
    );
    assert_eq!(
        h.b()
            .collection(&h.tenant, &upper.name)
            .await
            .expect("collection"),
        Some(upper)
    );
}

pub async fn list_and_drop_collections(h: &Harness) {
    assert!(
        h.b()
            .list_collections(&h.tenant)
            .await
            .expect("list")
            .is_empty(),
        "a fresh tenant has none"
    );
    let specs = [
        spec("b", 2, Metric::L2),
        spec("a_1", 3, Metric::Dot),
        spec("a.1", 4, Metric::Cosine),
        spec("a-1", 5, Metric::L2),
        spec("a", 6, Metric::Cosine),
        spec("B", 7, Metric::Dot),
        spec("A0", 8, Metric::L2),
    ];
    for s in &specs {
        assert!(h.b().create_collection(&h.tenant, s).await.expect("create"));
    }
    let listed = h.b().list_collections(&h.tenant).await.expect("list");
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["A0", "B", "a", "a-1", "a.1", "a_1", "b"],
        "names ascend by raw bytes"
    );
    for s in &specs {
        assert!(
            listed.contains(s),
            "{} is listed with its dimension and metric",
            s.name
        );
    }

    assert!(
        h.b()
            .drop_collection(&h.tenant, &collection("a"))
            .await
            .expect("drop"),
        "a existed"
    );
    assert!(
        !h.b()
            .drop_collection(&h.tenant, &collection("a"))
            .await
            .expect("drop"),
        "a no longer exists"
    );
    assert!(
        !h.b()
            .drop_collection(&h.tenant, &collection("never"))
            .await
            .expect("drop"),
        "never existed"
    );
    assert_eq!(
        h.b()
            .collection(&h.tenant, &collection("a"))
            .await
            .expect("collection"),
        None
    );
    let names: Vec<String> = h
        .b()
        .list_collections(&h.tenant)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name.into_string())
        .collect();
    assert_eq!(
        names,
        ["A0", "B", "a-1", "a.1", "a_1", "b"],
        "the dropped collection is gone, the rest stay"
    );
}

pub async fn upsert_get_delete(h: &Harness) {
    create(h, "v", 3, Metric::L2).await;
    let c = collection("v");
    let values = [1.5_f32, -2.25, 0.1];
    put(
        h,
        "v",
        "r1",
        &values,
        json!({"k": "v", "n": 2, "nested": {"ok": true}}),
    )
    .await;
    put(h, "v", "r2", &[0.0, 0.0, 0.0], json!({})).await;

    let r1 = h
        .b()
        .get_vector(&h.tenant, &c, &record("r1"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(r1.id, record("r1"));
    assert_eq!(r1.vector, values, "the f32 components round-trip exactly");
    assert_eq!(
        r1.metadata,
        *object(json!({"k": "v", "n": 2, "nested": {"ok": true}})).get()
    );
    assert_eq!(r1.expires_at, None);

    put(h, "v", "r1", &[0.0, 0.0, 1.0], json!({"replaced": true})).await;
    let r1 = h
        .b()
        .get_vector(&h.tenant, &c, &record("r1"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(r1.vector, [0.0, 0.0, 1.0], "upsert replaces the vector");
    assert_eq!(
        r1.metadata,
        *object(json!({"replaced": true})).get(),
        "upsert replaces the metadata"
    );
    assert_eq!(
        list_ids(h, "v").await,
        ["r1", "r2"],
        "an upsert of an existing id adds no record"
    );

    assert!(
        h.b()
            .delete_vector(&h.tenant, &c, &record("r1"))
            .await
            .expect("delete"),
        "r1 existed"
    );
    assert_eq!(
        h.b()
            .get_vector(&h.tenant, &c, &record("r1"))
            .await
            .expect("get"),
        None,
        "r1 is gone"
    );
    assert!(
        !h.b()
            .delete_vector(&h.tenant, &c, &record("r1"))
            .await
            .expect("delete"),
        "r1 no longer exists"
    );
    assert!(
        !h.b()
            .delete_vector(&h.tenant, &c, &record("never"))
            .await
            .expect("delete"),
        "never existed"
    );
    assert_eq!(
        list_ids(h, "v").await,
        ["r2"],
        "delete touches only its record"
    );
    assert_eq!(
        ids(&find(h, "v", &[1.0, 1.0, 1.0], 10, &Filter::none()).await),
        ["r2"]
    );
}

pub async fn missing_collection_is_not_found(h: &Harness) {
    let c = collection("nope");
    let s = spec("nope", 2, Metric::L2);
    let kind = error_kind(
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record("r"),
            vec![1.0, 2.0],
            &JsonObject::empty(),
            None,
        )
        .await,
        "upsert into a missing collection",
    );
    assert_eq!(kind, ErrorKind::NotFound, "vector::upsert");
    let embedding = Embedding::new("vector", &s, vec![1.0, 2.0]).expect("valid");
    let kind = error_kind(
        h.b()
            .upsert_vector(
                &h.tenant,
                &c,
                &record("r"),
                &embedding,
                &JsonObject::empty(),
                None,
            )
            .await,
        "upsert_vector into a missing collection",
    );
    assert_eq!(kind, ErrorKind::NotFound, "upsert_vector");
    let kind = error_kind(
        h.b().get_vector(&h.tenant, &c, &record("r")).await,
        "get_vector",
    );
    assert_eq!(kind, ErrorKind::NotFound, "get_vector");
    let kind = error_kind(
        h.b().delete_vector(&h.tenant, &c, &record("r")).await,
        "delete_vector",
    );
    assert_eq!(kind, ErrorKind::NotFound, "delete_vector");
    let kind = error_kind(
        h.b().list_vectors(&h.tenant, &c, None, limit(10)).await,
        "list_vectors",
    );
    assert_eq!(kind, ErrorKind::NotFound, "list_vectors");
    let kind = error_kind(
        search(
            h.b(),
            &h.tenant,
            &c,
            vec![1.0, 2.0],
            limit(10),
            &Filter::none(),
        )
        .await,
        "search",
    );
    assert_eq!(kind, ErrorKind::NotFound, "search");
    assert_eq!(
        h.b().collection(&h.tenant, &c).await.expect("collection"),
        None
    );
    assert!(
        !h.b().drop_collection(&h.tenant, &c).await.expect("drop"),
        "nothing to drop"
    );
    assert!(
        h.b()
            .list_collections(&h.tenant)
            .await
            .expect("list")
            .is_empty(),
        "no failed call created the collection"
    );
}

pub async fn search_orders_by_distance_then_id(h: &Harness) {
    create(h, "pts", 2, Metric::L2).await;
    put(h, "pts", "far", &[3.0, 4.0], json!({})).await;
    put(h, "pts", "near", &[1.0, 0.0], json!({})).await;
    put(h, "pts", "mid", &[0.0, -2.0], json!({})).await;
    put(h, "pts", "diag", &[1.0, 1.0], json!({})).await;

    let all = find(h, "pts", &[0.0, 0.0], 10, &Filter::none()).await;
    assert_hits(
        &all,
        &[
            ("near", 1.0),
            ("diag", 2.0_f64.sqrt()),
            ("mid", 2.0),
            ("far", 5.0),
        ],
        "from the origin",
    );
    let top = find(h, "pts", &[0.0, 0.0], 2, &Filter::none()).await;
    assert_hits(
        &top,
        &[("near", 1.0), ("diag", 2.0_f64.sqrt())],
        "k = 2 keeps the two nearest",
    );

    let from_far = find(h, "pts", &[3.0, 4.0], 10, &Filter::none()).await;
    assert_hits(
        &from_far,
        &[
            ("far", 0.0),
            ("diag", 13.0_f64.sqrt()),
            ("near", 20.0_f64.sqrt()),
            ("mid", 45.0_f64.sqrt()),
        ],
        "from (3, 4)",
    );
    assert_eq!(
        from_far[0].metadata,
        *object(json!({})).get(),
        "hits carry metadata"
    );
}

pub async fn search_ties_break_by_id(h: &Harness) {
    create(h, "ring", 2, Metric::L2).await;
    // Every point on an axis at distance exactly 1, inserted out of order, plus one nearer point.
    for (id, v) in [
        ("🔑", [1.0, 0.0]),
        ("é", [-1.0, 0.0]),
        ("b", [1.0, 0.0]),
        ("a", [0.0, 1.0]),
        ("Z", [0.0, -1.0]),
        ("中", [0.0, 1.0]),
        ("A", [0.0, 0.5]),
    ] {
        put(h, "ring", id, &v, json!({})).await;
    }
    let all = find(h, "ring", &[0.0, 0.0], 10, &Filter::none()).await;
    assert_hits(
        &all,
        &[
            ("A", 0.5),
            ("Z", 1.0),
            ("a", 1.0),
            ("b", 1.0),
            ("é", 1.0),
            ("中", 1.0),
            ("🔑", 1.0),
        ],
        "equal distances ascend by raw id bytes",
    );
    let top = find(h, "ring", &[0.0, 0.0], 3, &Filter::none()).await;
    assert_eq!(ids(&top), ["A", "Z", "a"], "k cuts a tie by id");
    let top = find(h, "ring", &[0.0, 0.0], 1, &Filter::none()).await;
    assert_eq!(ids(&top), ["A"]);

    create(h, "dir", 2, Metric::Cosine).await;
    for (id, v) in [
        ("x3", [5.0, 0.0]),
        ("x1", [1.0, 0.0]),
        ("x2", [2.0, 0.0]),
        ("y", [0.0, 1.0]),
    ] {
        put(h, "dir", id, &v, json!({})).await;
    }
    let hits = find(h, "dir", &[3.0, 0.0], 2, &Filter::none()).await;
    assert_hits(
        &hits,
        &[("x1", 0.0), ("x2", 0.0)],
        "parallel vectors tie at cosine distance 0",
    );

    create(h, "dots", 2, Metric::Dot).await;
    for (id, v) in [("q", [2.0, 1.0]), ("p", [1.0, 2.0]), ("r", [3.0, 0.0])] {
        put(h, "dots", id, &v, json!({})).await;
    }
    let hits = find(h, "dots", &[1.0, 1.0], 3, &Filter::none()).await;
    assert_hits(
        &hits,
        &[("p", -3.0), ("q", -3.0), ("r", -3.0)],
        "equal inner products tie",
    );
}

pub async fn search_metrics_match_pgvector(h: &Harness) {
    let half_sqrt2 = 0.5_f64.sqrt();

    create(h, "cos", 2, Metric::Cosine).await;
    for (id, v) in [
        ("same", [1.0, 0.0]),
        ("scaled", [3.0, 0.0]),
        ("diag", [1.0, 1.0]),
        ("ortho", [0.0, 2.0]),
        ("anti", [-1.0, 0.0]),
        ("obtuse", [-1.0, 1.0]),
    ] {
        put(h, "cos", id, &v, json!({})).await;
    }
    let hits = find(h, "cos", &[2.0, 0.0], 10, &Filter::none()).await;
    assert_hits(
        &hits,
        &[
            ("same", 0.0),
            ("scaled", 0.0),
            ("diag", 1.0 - half_sqrt2),
            ("ortho", 1.0),
            ("obtuse", 1.0 + half_sqrt2),
            ("anti", 2.0),
        ],
        "cosine distance is 1 - cos(a, b), independent of length",
    );

    create(h, "l2", 3, Metric::L2).await;
    for (id, v) in [
        ("a", [1.0, 2.0, 4.0]),
        ("b", [4.0, 6.0, 3.0]),
        ("c", [1.0, 2.0, 3.0]),
        ("d", [0.0, 0.0, 0.0]),
    ] {
        put(h, "l2", id, &v, json!({})).await;
    }
    let hits = find(h, "l2", &[1.0, 2.0, 3.0], 10, &Filter::none()).await;
    assert_hits(
        &hits,
        &[("c", 0.0), ("a", 1.0), ("d", 14.0_f64.sqrt()), ("b", 5.0)],
        "l2 distance is Euclidean, not squared",
    );

    create(h, "dot", 2, Metric::Dot).await;
    for (id, v) in [
        ("p", [3.0, 4.0]),
        ("q", [1.0, 1.0]),
        ("r", [-1.0, 0.0]),
        ("s", [0.0, 0.0]),
        ("t", [2.0, -2.0]),
    ] {
        put(h, "dot", id, &v, json!({})).await;
    }
    let hits = find(h, "dot", &[1.0, 2.0], 10, &Filter::none()).await;
    assert_hits(
        &hits,
        &[
            ("p", -11.0),
            ("q", -3.0),
            ("s", 0.0),
            ("r", 1.0),
            ("t", 2.0),
        ],
        "dot distance is the negated inner product",
    );

    // Precision: the distances are computed in f64 from the stored f32 values.
    create(h, "fine", 1, Metric::L2).await;
    put(h, "fine", "tenth", &[0.1], json!({})).await;
    let hits = find(h, "fine", &[0.0], 1, &Filter::none()).await;
    assert!(
        (hits[0].distance - f64::from(0.1_f32)).abs() < 1e-12,
        "the distance of the f32 0.1 is {} (f64 of the stored f32), not 0.1",
        hits[0].distance
    );
}

pub async fn search_with_filter(h: &Harness) {
    create(h, "f", 1, Metric::L2).await;
    let records = [
        (
            "r1",
            1.0,
            json!({"color": "red", "n": 1, "tags": {"a": true}}),
        ),
        ("r2", 2.0, json!({"color": "red", "n": 1.0})),
        ("r3", 3.0, json!({"color": "blue", "n": 1})),
        ("r4", 0.5, json!({"color": "RED", "n": "1"})),
        ("r5", 4.0, json!({"color": null})),
        ("r6", 5.0, json!({})),
        ("r7", 6.0, json!({"tags.a": true, "n": true})),
    ];
    for (id, x, metadata) in &records {
        put(h, "f", id, &[*x], metadata.clone()).await;
    }
    let q = [0.0];
    let matched = |clauses: &[(&str, Value)], k: u64| {
        let f = filter(clauses);
        async move {
            ids(&find(h, "f", &q, k, &f).await)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        matched(&[], 10).await,
        ["r4", "r1", "r2", "r3", "r5", "r6", "r7"],
        "no filter: all, by distance"
    );
    assert_eq!(
        matched(&[("color", json!("red"))], 10).await,
        ["r1", "r2"],
        "strings compare case-sensitively"
    );
    assert_eq!(
        matched(&[("n", json!(1))], 10).await,
        ["r1", "r2", "r3"],
        "1 == 1.0, 1 != \"1\", 1 != true"
    );
    assert_eq!(matched(&[("n", json!("1"))], 10).await, ["r4"]);
    assert_eq!(
        matched(&[("n", json!(true))], 10).await,
        ["r7"],
        "true != 1"
    );
    assert_eq!(
        matched(&[("color", json!("red")), ("n", json!(1.0))], 10).await,
        ["r1", "r2"],
        "clauses are a conjunction"
    );
    assert_eq!(
        matched(&[("color", json!("blue")), ("n", json!("1"))], 10).await,
        Vec::<String>::new()
    );
    assert_eq!(
        matched(&[("color", json!(null))], 10).await,
        ["r5"],
        "null matches only a present null"
    );
    assert_eq!(
        matched(&[("tags.a", json!(true))], 10).await,
        ["r1"],
        "a dot path walks objects, not dotted keys"
    );
    assert_eq!(
        matched(&[("color", json!("green"))], 10).await,
        Vec::<String>::new()
    );
    assert_eq!(
        matched(&[("n", json!(1))], 1).await,
        ["r1"],
        "k applies after the filter"
    );
    assert_eq!(
        matched(&[("n", json!(1))], 2).await,
        ["r1", "r2"],
        "k applies after the filter"
    );
}

pub async fn zero_vectors_rejected_in_cosine(h: &Harness) {
    create(h, "cos", 3, Metric::Cosine).await;
    let c = collection("cos");
    for zero in [vec![0.0, 0.0, 0.0], vec![-0.0, 0.0, -0.0]] {
        let field = invalid_field(
            upsert(
                h.b(),
                &h.tenant,
                &c,
                &record("z"),
                zero.clone(),
                &JsonObject::empty(),
                None,
            )
            .await,
            "a zero vector in a cosine collection",
        );
        assert_eq!(field, "vector", "record {zero:?}");
        let field = invalid_field(
            search(
                h.b(),
                &h.tenant,
                &c,
                zero.clone(),
                limit(10),
                &Filter::none(),
            )
            .await,
            "a zero query in a cosine collection",
        );
        assert_eq!(field, "query", "query {zero:?}");
    }
    assert!(
        list_ids(h, "cos").await.is_empty(),
        "the rejected record was not stored"
    );

    for (name, metric) in [("l2", Metric::L2), ("dot", Metric::Dot)] {
        create(h, name, 3, metric).await;
        put(h, name, "z", &[0.0, 0.0, 0.0], json!({})).await;
        let hits = find(h, name, &[0.0, 0.0, 0.0], 10, &Filter::none()).await;
        assert_hits(
            &hits,
            &[("z", 0.0)],
            &format!("zero vectors are fine in a {metric} collection"),
        );
    }
}

pub async fn dimension_mismatch_rejected(h: &Harness) {
    create(h, "d3", 3, Metric::L2).await;
    let c = collection("d3");
    put(h, "d3", "ok", &[1.0, 2.0, 3.0], json!({})).await;
    for wrong in [vec![1.0, 2.0], vec![1.0, 2.0, 3.0, 4.0], vec![1.0]] {
        let field = invalid_field(
            upsert(
                h.b(),
                &h.tenant,
                &c,
                &record("bad"),
                wrong.clone(),
                &JsonObject::empty(),
                None,
            )
            .await,
            "a vector of the wrong dimension",
        );
        assert_eq!(field, "vector", "record of {} dimensions", wrong.len());
        let field = invalid_field(
            search(
                h.b(),
                &h.tenant,
                &c,
                wrong.clone(),
                limit(10),
                &Filter::none(),
            )
            .await,
            "a query of the wrong dimension",
        );
        assert_eq!(field, "query", "query of {} dimensions", wrong.len());
    }

    // Embeddings validated for another spec are refused by the backend itself.
    for other in [spec("d3", 2, Metric::L2), spec("d3", 3, Metric::Dot)] {
        let embedding = Embedding::new("vector", &other, vec![1.0; other.dimension.get()])
            .expect("valid for its spec");
        let kind = error_kind(
            h.b()
                .upsert_vector(
                    &h.tenant,
                    &c,
                    &record("bad"),
                    &embedding,
                    &JsonObject::empty(),
                    None,
                )
                .await,
            "an embedding for another spec",
        );
        assert_eq!(
            kind,
            ErrorKind::Conflict,
            "upsert_vector with an embedding for {other:?}"
        );
        let kind = error_kind(
            h.b()
                .search_candidates(&h.tenant, &c, &embedding, limit(10), &Filter::none())
                .await,
            "a query embedding for another spec",
        );
        assert_eq!(
            kind,
            ErrorKind::Conflict,
            "search_candidates with an embedding for {other:?}"
        );
    }
    assert_eq!(
        list_ids(h, "d3").await,
        ["ok"],
        "no rejected record was stored"
    );
}

pub async fn non_finite_rejected(h: &Harness) {
    create(h, "nf", 3, Metric::Dot).await;
    let c = collection("nf");
    let cases = [
        (vec![1.0, f32::NAN, 0.0], "[1]"),
        (vec![f32::INFINITY, 0.0, 0.0], "[0]"),
        (vec![1.0, 2.0, f32::NEG_INFINITY], "[2]"),
        (vec![f32::NAN, f32::INFINITY, 1.0], "[0]"),
    ];
    for (values, index) in cases {
        let field = invalid_field(
            upsert(
                h.b(),
                &h.tenant,
                &c,
                &record("bad"),
                values.clone(),
                &JsonObject::empty(),
                None,
            )
            .await,
            "a non-finite component",
        );
        assert_eq!(
            field,
            format!("vector{index}"),
            "record {values:?}: the field names the first bad component"
        );
        let field = invalid_field(
            search(
                h.b(),
                &h.tenant,
                &c,
                values.clone(),
                limit(10),
                &Filter::none(),
            )
            .await,
            "a non-finite query component",
        );
        assert_eq!(
            field,
            format!("query{index}"),
            "query {values:?}: the field names the first bad component"
        );
    }
    assert!(
        list_ids(h, "nf").await.is_empty(),
        "no rejected record was stored"
    );

    // The largest finite f32 is accepted.
    put(h, "nf", "max", &[f32::MAX, -f32::MAX, 0.0], json!({})).await;
    let r = h
        .b()
        .get_vector(&h.tenant, &c, &record("max"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        r.vector,
        [f32::MAX, -f32::MAX, 0.0],
        "extreme finite values round-trip"
    );
}

pub async fn search_k_larger_than_collection(h: &Harness) {
    create(h, "small", 2, Metric::L2).await;
    assert!(
        find(h, "small", &[0.0, 0.0], 1000, &Filter::none())
            .await
            .is_empty(),
        "an empty collection finds nothing"
    );
    put(h, "small", "a", &[1.0, 0.0], json!({})).await;
    put(h, "small", "b", &[2.0, 0.0], json!({})).await;
    put(h, "small", "c", &[3.0, 0.0], json!({})).await;
    let hits = find(h, "small", &[0.0, 0.0], 1000, &Filter::none()).await;
    assert_hits(
        &hits,
        &[("a", 1.0), ("b", 2.0), ("c", 3.0)],
        "k = 1000 returns every record",
    );
    assert_eq!(Limit::top_k(0).expect_err("k = 0").field(), Some("k"));
    assert_eq!(Limit::top_k(1001).expect_err("k = 1001").field(), Some("k"));
}

pub async fn list_vectors_pages(h: &Harness) {
    create(h, "many", 1, Metric::L2).await;
    let c = collection("many");
    let expected = ["A", "Z", "a", "a-", "a0", "b", "é", "中", "\u{FF61}", "🔑"];
    for (i, id) in expected.iter().enumerate().rev() {
        put(h, "many", id, &[i as f32], json!({})).await;
    }
    for size in [1_usize, 3, 4, 5, 10, 11] {
        let mut pages: Vec<Vec<String>> = Vec::new();
        let mut after = None;
        loop {
            let page = h
                .b()
                .list_vectors(&h.tenant, &c, after.as_ref(), limit(size as u64))
                .await
                .expect("list");
            let page_ids: Vec<String> = page
                .items
                .iter()
                .map(|r| r.id.as_str().to_owned())
                .collect();
            match page.next {
                Some(cursor) => {
                    assert_eq!(
                        Some(&cursor),
                        page.items.last().map(|r| &r.id),
                        "the cursor is the last id"
                    );
                    after = Some(cursor);
                    pages.push(page_ids);
                }
                None => {
                    pages.push(page_ids);
                    break;
                }
            }
            assert!(pages.len() <= 20, "listing does not terminate");
        }
        let want: Vec<Vec<String>> = expected
            .chunks(size)
            .map(|chunk| chunk.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        assert_eq!(
            pages, want,
            "pages of {size}: ids ascending by raw bytes, a cursor exactly when more follow"
        );
    }
}

pub async fn drop_removes_records(h: &Harness) {
    create(h, "tmp", 2, Metric::L2).await;
    let c = collection("tmp");
    put(h, "tmp", "a", &[1.0, 0.0], json!({})).await;
    put(h, "tmp", "b", &[0.0, 1.0], json!({})).await;
    assert!(h.b().drop_collection(&h.tenant, &c).await.expect("drop"));
    let kind = error_kind(
        h.b().get_vector(&h.tenant, &c, &record("a")).await,
        "get from a dropped collection",
    );
    assert_eq!(kind, ErrorKind::NotFound);

    // Re-created under the same name with another spec: no conflict, and empty.
    let again = spec("tmp", 3, Metric::Cosine);
    assert!(
        h.b()
            .create_collection(&h.tenant, &again)
            .await
            .expect("create"),
        "the name is free again"
    );
    assert_eq!(
        h.b()
            .get_vector(&h.tenant, &c, &record("a"))
            .await
            .expect("get"),
        None,
        "old records are gone"
    );
    assert!(
        list_ids(h, "tmp").await.is_empty(),
        "the new collection is empty"
    );
    assert!(
        find(h, "tmp", &[1.0, 0.0, 0.0], 10, &Filter::none())
            .await
            .is_empty(),
        "search finds no old record"
    );
}

/// Exact search where the SQL backends' first candidate page is not enough: 500 records of
/// dimension 256 per metric with near ties at the k-th place (distances a few f32 ulps apart,
/// ordered in f64 against their ids) and a filter that rejects 88% of the records, the nearest
/// ones included (see [`crate::near_ties`]). The hits must be exactly core's f64 ranking, with
/// the distances core computes.
pub async fn search_beyond_the_first_candidate_page(h: &Harness) {
    near_ties::run_searches(h.b(), &h.tenant, &near_ties::SEARCHES, &|| 0).await;
}

/// Approximate mode keeps the contract's promises about what it returns: visible records only,
/// matching the filter, at most k, ranked by the exact distance then id; and a collection this
/// small is answered exactly (the contract lets a backend do so below its graph's size, and every
/// backend does at a few hundred records).
pub async fn approximate_search_is_ranked_filtered_and_visible(h: &Harness) {
    create(h, "ap", 8, Metric::Cosine).await;
    let vector = |i: usize| -> Vec<f32> {
        (0..8)
            .map(|d| (((i * 31 + d * 17) % 23) as f32 - 11.0) / 7.0 + 0.01 * d as f32)
            .collect()
    };
    let c = collection("ap");
    for i in 0..300 {
        // Every fifth record expires after one second.
        let expiry = if i % 5 == 4 { ttl(1000) } else { None };
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record(&format!("r{i:03}")),
            vector(i),
            &object(json!({"g": i % 3})),
            expiry,
        )
        .await
        .expect("upsert");
    }
    for i in (0..300).step_by(7) {
        assert!(
            h.b()
                .delete_vector(&h.tenant, &c, &record(&format!("r{i:03}")))
                .await
                .expect("delete")
        );
    }
    h.clock.advance(2000);
    for (q, clauses) in [
        (1, vec![]),
        (2, vec![("g", json!(1))]),
        (3, vec![("g", json!(5))]),
    ] {
        let f = filter(&clauses);
        let query = vector(q * 1000 + 5);
        let exact = find(h, "ap", &query, 10, &f).await;
        for ef in [1, 10, 64] {
            let approximate = search_with(
                h.b(),
                &h.tenant,
                &c,
                query.clone(),
                limit(10),
                &f,
                SearchMode::Approximate { ef },
            )
            .await
            .expect("approximate search succeeds");
            assert_eq!(approximate, exact, "ef {ef}, filter {clauses:?}");
            for hit in &approximate {
                let i: usize = hit.id.as_str()[1..].parse().expect("record id");
                assert!(
                    i % 5 != 4 && !i.is_multiple_of(7),
                    "{} is not visible",
                    hit.id
                );
            }
        }
    }
    assert_eq!(
        SearchMode::parse(Some("approximate"), Some(0))
            .expect_err("ef 0")
            .field(),
        Some("ef")
    );
    assert_eq!(
        SearchMode::parse(Some("fuzzy"), None)
            .expect_err("unknown mode")
            .field(),
        Some("mode")
    );
}
