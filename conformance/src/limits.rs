//! Limits and bad input (DESIGN.md, "Errors" and the limits of "Key-value", "Vectors" and
//! "Graph"): every limit is rejected as `InvalidInput` naming the field, a failed write (bad
//! input, version conflict, missing endpoint, spec conflict) never changes what is stored.

use std::fmt::Debug;

use serde_json::{Value, json};

use p8fs_core::validate::{MAX_OBJECT_BYTES, MAX_TTL_MILLIS, MAX_VALUE_BYTES};
use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    Clock, CollectionName, CollectionSpec, Depth, Dimension, Direction, Embedding, ErrorKind,
    Filter, JsonObject, JsonPath, JsonValue, Key, KeyPrefix, Label, Limit, Metric, NodeId,
    RecordId, Rel, RelFilter, Result, Ttl, Weight,
};

use crate::Harness;
use crate::support::{
    collection, key, label, limit, node, object, record, rel, spec, ttl, value, weight,
};

fn invalid_field<T: Debug>(result: Result<T>, what: &str) -> String {
    let err = result.expect_err(what);
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
    err.field()
        .expect("InvalidInput names its field")
        .to_owned()
}

fn error_kind<T: Debug>(result: Result<T>, what: &str) -> ErrorKind {
    result.expect_err(what).kind()
}

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!([inner]))
}

pub async fn oversized_value_changes_nothing(h: &Harness) {
    let k = key("doc");
    let v = h
        .b()
        .put(&h.tenant, &k, &value(json!({"small": true})), None)
        .await
        .expect("put");

    let exactly = "x".repeat(MAX_VALUE_BYTES - 2); // plus two quotes: exactly 1 MiB serialized
    let over = "x".repeat(MAX_VALUE_BYTES - 1);
    let escaped = "\"".repeat(MAX_VALUE_BYTES / 2); // each quote serializes as two bytes
    let cases = [
        ("1 MiB + 1 byte", json!(over)),
        ("escaping counts", json!(escaped)),
        (
            "an object over 1 MiB",
            json!({"a": "x".repeat(MAX_VALUE_BYTES)}),
        ),
        ("nested 65 deep", nested(65)),
        ("U+0000 in a string", json!({"a": "nul\u{0}"})),
        ("U+0000 in an object key", json!({"nul\u{0}": 1})),
    ];
    for (what, bad) in cases {
        assert_eq!(
            invalid_field(JsonValue::new(bad), what),
            "value",
            "{what}: the error names the value"
        );
        let entry = h
            .b()
            .get(&h.tenant, &k)
            .await
            .expect("get")
            .expect("still visible");
        assert_eq!(
            (entry.value, entry.version),
            (json!({"small": true}), v),
            "{what}: the stored record is untouched"
        );
    }

    let at_limit = JsonValue::new(json!(exactly)).expect("exactly 1 MiB serialized is allowed");
    let deep = JsonValue::new(nested(64)).expect("nesting 64 deep is allowed");
    let v2 = h
        .b()
        .put(&h.tenant, &k, &at_limit, None)
        .await
        .expect("a 1 MiB value is stored");
    assert!(v2 > v);
    let entry = h
        .b()
        .get(&h.tenant, &k)
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        entry.value.as_str().map(str::len),
        Some(MAX_VALUE_BYTES - 2),
        "the 1 MiB value round-trips"
    );
    h.b()
        .put(&h.tenant, &key("deep"), &deep, None)
        .await
        .expect("a 64-deep value is stored");
    assert_eq!(
        h.b()
            .get(&h.tenant, &key("deep"))
            .await
            .expect("get")
            .expect("visible")
            .value,
        nested(64)
    );
}

pub async fn failed_cas_changes_nothing(h: &Harness) {
    let k = key("c");
    let v1 = h
        .b()
        .put(&h.tenant, &k, &value(json!(1)), None)
        .await
        .expect("put");
    let v2 = h
        .b()
        .put(&h.tenant, &k, &value(json!(2)), None)
        .await
        .expect("put");
    let kind = error_kind(
        h.b()
            .compare_and_swap(&h.tenant, &k, v1, &value(json!(3)), ttl(10))
            .await,
        "a stale swap",
    );
    assert_eq!(kind, ErrorKind::Conflict);
    let kind = error_kind(
        h.b()
            .put_if_absent(&h.tenant, &k, &value(json!(4)), ttl(10))
            .await,
        "a create over a record",
    );
    assert_eq!(kind, ErrorKind::AlreadyExists);
    h.advance(10);
    let entry = h
        .b()
        .get(&h.tenant, &k)
        .await
        .expect("get")
        .expect("the failed writes did not set a ttl");
    assert_eq!(
        (entry.value, entry.version, entry.expires_at),
        (json!(2), v2, None),
        "value, version and ttl unchanged"
    );
    let v3 = h
        .b()
        .compare_and_swap(&h.tenant, &k, v2, &value(json!(5)), None)
        .await
        .expect("the current version still swaps");
    assert!(v3 > v2);
}

pub async fn kv_input_limits_name_their_field(h: &Harness) {
    assert_eq!(invalid_field(Key::new(""), "empty key"), "key");
    assert_eq!(
        invalid_field(Key::new("k".repeat(1025)), "1025-byte key"),
        "key"
    );
    assert_eq!(
        invalid_field(
            Key::new(format!("{}x", "é".repeat(512))),
            "1025 bytes in 513 chars"
        ),
        "key"
    );
    assert_eq!(invalid_field(Key::new("a\u{0}b"), "U+0000 in a key"), "key");
    assert_eq!(
        invalid_field(Key::named("start_after", ""), "empty cursor"),
        "start_after"
    );
    assert_eq!(
        invalid_field(KeyPrefix::new("p".repeat(1025)), "1025-byte prefix"),
        "prefix"
    );
    for bad in [0, -1, MAX_TTL_MILLIS + 1, i64::MIN] {
        assert_eq!(
            invalid_field(Ttl::from_millis(bad), "ttl out of range"),
            "ttl",
            "ttl {bad}"
        );
    }
    for bad in [0, 1001, u64::MAX] {
        assert_eq!(
            invalid_field(Limit::new(bad), "limit out of range"),
            "limit",
            "limit {bad}"
        );
    }
    for bad in ["", "a..b", ".a", "a.", "a\u{0}"] {
        assert_eq!(
            invalid_field(JsonPath::new(bad), "bad path"),
            "path",
            "path {bad:?}"
        );
    }
    assert_eq!(
        invalid_field(JsonPath::new("p".repeat(257)), "257-byte path"),
        "path"
    );
    let big_operand = json!("x".repeat(MAX_OBJECT_BYTES));
    assert_eq!(
        invalid_field(
            JsonValue::operand("value", big_operand),
            "operand over 64 KiB"
        ),
        "value"
    );

    // The largest key and ttl are accepted and stored.
    let longest = key(&"é".repeat(512));
    assert_eq!(longest.as_bytes().len(), 1024);
    let now = h.clock.now();
    let forever = Ttl::from_millis(MAX_TTL_MILLIS).expect("100 years is allowed");
    h.b()
        .put(&h.tenant, &longest, &value(json!(1)), Some(forever))
        .await
        .expect("put");
    let entry = h
        .b()
        .get(&h.tenant, &longest)
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        entry.expires_at,
        Some(now + MAX_TTL_MILLIS),
        "a 100-year ttl"
    );
    assert!(Limit::new(1000).is_ok() && Limit::new(1).is_ok());
}

pub async fn vector_errors_change_nothing(h: &Harness) {
    let c = collection("v");
    assert!(
        h.b()
            .create_collection(&h.tenant, &spec("v", 3, Metric::L2))
            .await
            .expect("create")
    );
    let meta = object(json!({"a": 1}));
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("r"),
        vec![1.0, 2.0, 3.0],
        &meta,
        None,
    )
    .await
    .expect("upsert");

    let attempts: [(Vec<f32>, &str); 4] = [
        (vec![1.0, 2.0], "vector"),
        (vec![1.0, 2.0, 3.0, 4.0], "vector"),
        (vec![1.0, f32::NAN, 3.0], "vector[1]"),
        (vec![1.0, 2.0, f32::INFINITY], "vector[2]"),
    ];
    for (bad, field) in attempts {
        let got = invalid_field(
            upsert(
                h.b(),
                &h.tenant,
                &c,
                &record("r"),
                bad.clone(),
                &JsonObject::empty(),
                None,
            )
            .await,
            "a bad vector",
        );
        assert_eq!(got, field, "upsert of {bad:?}");
    }
    let got = invalid_field(
        search(h.b(), &h.tenant, &c, vec![1.0], limit(1), &Filter::none()).await,
        "a bad query",
    );
    assert_eq!(got, "query");
    let other = CollectionSpec::new("v", 2, Metric::L2).expect("valid");
    let embedding = Embedding::new("vector", &other, vec![9.0, 9.0]).expect("valid for its spec");
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
        "an embedding for another spec",
    );
    assert_eq!(kind, ErrorKind::Conflict);

    assert_eq!(
        invalid_field(JsonObject::new("metadata", json!([1])), "array metadata"),
        "metadata"
    );
    assert_eq!(
        invalid_field(JsonObject::new("metadata", json!("x")), "string metadata"),
        "metadata"
    );
    let big = json!({"a": "x".repeat(MAX_OBJECT_BYTES)});
    assert_eq!(
        invalid_field(JsonObject::new("metadata", big), "metadata over 64 KiB"),
        "metadata"
    );
    assert_eq!(invalid_field(RecordId::new(""), "empty id"), "id");
    assert_eq!(
        invalid_field(RecordId::new("i".repeat(257)), "257-byte id"),
        "id"
    );
    assert!(RecordId::new("i".repeat(256)).is_ok());
    for bad in [0, 4097] {
        assert_eq!(
            invalid_field(Dimension::new(bad), "dimension out of range"),
            "dimension",
            "dimension {bad}"
        );
    }
    assert!(Dimension::new(4096).is_ok());
    for bad in [
        String::new(),
        "bad name".to_owned(),
        "-x".to_owned(),
        "x".repeat(129),
        "é".to_owned(),
    ] {
        assert_eq!(
            invalid_field(CollectionName::new(bad.clone()), "bad collection name"),
            "collection",
            "{bad:?}"
        );
    }
    assert_eq!(
        invalid_field(Metric::parse("hamming"), "unknown metric"),
        "metric"
    );
    let many: Vec<(String, Value)> = (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
    assert_eq!(invalid_field(Filter::new(many), "17 clauses"), "filter");
    assert_eq!(
        invalid_field(
            Filter::new([("a..b".to_owned(), json!(1))]),
            "bad filter path"
        ),
        "filter"
    );
    assert_eq!(invalid_field(Limit::top_k(0), "k = 0"), "k");

    let r = h
        .b()
        .get_vector(&h.tenant, &c, &record("r"))
        .await
        .expect("get")
        .expect("still visible");
    assert_eq!(
        (r.vector, r.metadata),
        (vec![1.0, 2.0, 3.0], meta.into_inner()),
        "the record is untouched"
    );
    let page = h
        .b()
        .list_vectors(&h.tenant, &c, None, limit(10))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 1, "no rejected record was added");
    let hits = search(
        h.b(),
        &h.tenant,
        &c,
        vec![1.0, 2.0, 3.0],
        limit(10),
        &Filter::none(),
    )
    .await
    .expect("search");
    assert_eq!(hits.len(), 1);
    assert!(
        hits[0].distance.abs() < 1e-6,
        "the stored vector is the original"
    );
    assert_eq!(
        h.b().collection(&h.tenant, &c).await.expect("collection"),
        Some(spec("v", 3, Metric::L2))
    );

    // A cosine collection refuses a zero vector without touching the record it would replace.
    assert!(
        h.b()
            .create_collection(&h.tenant, &spec("cos", 2, Metric::Cosine))
            .await
            .expect("create")
    );
    let cos = collection("cos");
    upsert(
        h.b(),
        &h.tenant,
        &cos,
        &record("r"),
        vec![1.0, 1.0],
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("upsert");
    let got = invalid_field(
        upsert(
            h.b(),
            &h.tenant,
            &cos,
            &record("r"),
            vec![0.0, 0.0],
            &JsonObject::empty(),
            None,
        )
        .await,
        "a zero vector",
    );
    assert_eq!(got, "vector");
    let r = h
        .b()
        .get_vector(&h.tenant, &cos, &record("r"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(r.vector, [1.0, 1.0], "the record is untouched");
}

pub async fn graph_errors_change_nothing(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    for id in ["a", "b"] {
        b.put_node(t, &node(id), &label("n"), &JsonObject::empty(), None)
            .await
            .expect("put_node");
    }
    let r = rel("r");
    b.put_edge(
        t,
        &node("a"),
        &r,
        &node("b"),
        weight(2.0),
        &object(json!({"p": 1})),
        None,
    )
    .await
    .expect("put_edge");

    for (src, dst) in [("a", "ghost"), ("ghost", "b"), ("ghost", "phantom")] {
        let kind = error_kind(
            b.put_edge(
                t,
                &node(src),
                &r,
                &node(dst),
                weight(5.0),
                &JsonObject::empty(),
                None,
            )
            .await,
            "an edge to a missing node",
        );
        assert_eq!(kind, ErrorKind::NotFound, "{src} -> {dst}");
    }
    assert_eq!(
        b.get_node(t, &node("ghost")).await.expect("get_node"),
        None,
        "no node was created"
    );
    assert_eq!(
        b.get_edge(t, &node("a"), &r, &node("ghost"))
            .await
            .expect("get_edge"),
        None,
        "no edge was created"
    );
    let ids: Vec<String> = b
        .list_nodes(t, None, Limit::MAX)
        .await
        .expect("list_nodes")
        .items
        .into_iter()
        .map(|n| n.id.into_string())
        .collect();
    assert_eq!(ids, ["a", "b"], "the node set is unchanged");

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
        assert_eq!(
            invalid_field(Weight::new(bad), "a bad weight"),
            "weight",
            "weight {bad}"
        );
    }
    assert!(
        Weight::new(f64::MIN_POSITIVE).is_ok(),
        "any positive weight is allowed"
    );
    assert_eq!(invalid_field(NodeId::named("src", ""), "empty src"), "src");
    assert_eq!(
        invalid_field(NodeId::named("dst", "n\u{0}"), "U+0000 in dst"),
        "dst"
    );
    assert_eq!(
        invalid_field(NodeId::new("n".repeat(257)), "257-byte node id"),
        "id"
    );
    assert_eq!(invalid_field(Label::new(""), "empty label"), "label");
    assert_eq!(
        invalid_field(Label::new("l".repeat(129)), "129-byte label"),
        "label"
    );
    assert_eq!(invalid_field(Rel::new(""), "empty rel"), "rel");
    assert_eq!(
        invalid_field(RelFilter::new(["ok", ""]), "an empty rel in a filter"),
        "rels[1]"
    );
    let many: Vec<String> = (0..17).map(|i| format!("r{i}")).collect();
    assert_eq!(invalid_field(RelFilter::new(many), "17 rels"), "rels");
    assert_eq!(
        invalid_field(
            JsonObject::new("properties", json!(1)),
            "non-object properties"
        ),
        "properties"
    );
    assert_eq!(
        invalid_field(Direction::parse("up"), "unknown direction"),
        "direction"
    );
    assert_eq!(invalid_field(Depth::neighbors(0), "depth 0"), "depth");
    assert_eq!(invalid_field(Depth::path(13), "max_depth 13"), "max_depth");

    assert!(
        !b.delete_edge(t, &node("a"), &rel("other"), &node("b"))
            .await
            .expect("delete_edge"),
        "no edge with that rel"
    );
    assert!(
        !b.delete_edge(t, &node("b"), &r, &node("a"))
            .await
            .expect("delete_edge"),
        "no edge in that direction"
    );
    let e = b
        .get_edge(t, &node("a"), &r, &node("b"))
        .await
        .expect("get_edge")
        .expect("still visible");
    assert_eq!(
        (e.weight, e.properties),
        (2.0, object(json!({"p": 1})).into_inner()),
        "the edge is untouched"
    );
}

pub async fn collection_spec_conflict_changes_nothing(h: &Harness) {
    let original = spec("c", 3, Metric::Cosine);
    let c = collection("c");
    assert!(
        h.b()
            .create_collection(&h.tenant, &original)
            .await
            .expect("create")
    );
    for (id, v) in [("x", vec![1.0, 0.0, 0.0]), ("y", vec![0.0, 1.0, 0.0])] {
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record(id),
            v,
            &JsonObject::empty(),
            None,
        )
        .await
        .expect("upsert");
    }

    for (dimension, metric) in [
        (4, Metric::Cosine),
        (3, Metric::L2),
        (3, Metric::Dot),
        (2, Metric::L2),
    ] {
        let kind = error_kind(
            h.b()
                .create_collection(&h.tenant, &spec("c", dimension, metric))
                .await,
            "a different spec",
        );
        assert_eq!(kind, ErrorKind::Conflict, "{dimension}/{metric}");
    }
    assert_eq!(
        h.b().collection(&h.tenant, &c).await.expect("collection"),
        Some(original.clone()),
        "the spec is unchanged"
    );
    assert_eq!(
        h.b().list_collections(&h.tenant).await.expect("list"),
        [original],
        "listed once, with the original spec"
    );

    let hits = search(
        h.b(),
        &h.tenant,
        &c,
        vec![1.0, 1.0, 0.0],
        limit(10),
        &Filter::none(),
    )
    .await
    .expect("search");
    let ids: Vec<&str> = hits.iter().map(|hit| hit.id.as_str()).collect();
    assert_eq!(ids, ["x", "y"], "the records are intact");
    let expected = 1.0 - 0.5_f64.sqrt();
    assert!(
        hits.iter()
            .all(|hit| (hit.distance - expected).abs() < 1e-6),
        "still scored by cosine"
    );
    let field = invalid_field(
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record("z"),
            vec![1.0, 0.0, 0.0, 0.0],
            &JsonObject::empty(),
            None,
        )
        .await,
        "a vector of the conflicting dimension",
    );
    assert_eq!(field, "vector", "the collection still has dimension 3");
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("z"),
        vec![0.0, 0.0, 1.0],
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("a vector of the original dimension is still accepted");
}
