//! Tests of every limit in `validate.rs`: each rejection names its field.

use serde_json::json;

use super::*;
use crate::error::ErrorKind;

fn field_of<T: std::fmt::Debug>(result: Result<T>) -> String {
    let error = result.expect_err("input should be rejected");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    error.field().unwrap_or_default().to_owned()
}

#[test]
fn identifiers_name_their_field() {
    assert_eq!(field_of(TenantId::new("")), "tenant");
    assert_eq!(field_of(TenantId::new("Upper")), "tenant");
    assert_eq!(field_of(TenantId::new("-lead")), "tenant");
    assert_eq!(field_of(TenantId::new("a".repeat(64))), "tenant");
    assert!(TenantId::new("a".repeat(63)).is_ok());
    assert!(TenantId::new("t_0-x").is_ok());
    assert_eq!(field_of(Key::new("")), "key");
    assert_eq!(field_of(Key::new("a\0b")), "key");
    assert_eq!(field_of(Key::new("k".repeat(1025))), "key");
    assert!(Key::new("k".repeat(1024)).is_ok());
    assert!(Key::new("ключ/🔑").is_ok());
    assert_eq!(field_of(Key::named("start_after", "")), "start_after");
    assert!(KeyPrefix::new("").is_ok());
    assert_eq!(field_of(CollectionName::new("bad name")), "collection");
    assert_eq!(field_of(RecordId::new("x".repeat(257))), "id");
    assert_eq!(field_of(NodeId::named("src", "")), "src");
    assert_eq!(field_of(Rel::new("")), "rel");
    assert_eq!(field_of(RelFilter::new(["ok", ""])), "rels[1]");
}

#[test]
fn numbers_have_bounds() {
    assert_eq!(field_of(Ttl::from_millis(0)), "ttl");
    assert_eq!(field_of(Ttl::from_millis(MAX_TTL_MILLIS + 1)), "ttl");
    assert!(Ttl::from_millis(1).is_ok() && Ttl::from_millis(MAX_TTL_MILLIS).is_ok());
    assert_eq!(field_of(Limit::new(0)), "limit");
    assert_eq!(field_of(Limit::new(1001)), "limit");
    assert_eq!(field_of(Limit::top_k(5000)), "k");
    assert_eq!(field_of(Dimension::new(0)), "dimension");
    assert_eq!(field_of(Dimension::new(4097)), "dimension");
    assert_eq!(field_of(Depth::neighbors(7)), "depth");
    assert_eq!(field_of(Depth::path(13)), "max_depth");
    assert_eq!(field_of(Weight::new(0.0)), "weight");
    assert_eq!(field_of(Weight::new(f64::NAN)), "weight");
    assert_eq!(field_of(Metric::parse("hamming")), "metric");
}

#[test]
fn embeddings_fit_their_collection() {
    let cosine = CollectionSpec::new("c", 3, Metric::Cosine).unwrap();
    let l2 = CollectionSpec::new("l", 3, Metric::L2).unwrap();
    assert_eq!(
        field_of(Embedding::new("vector", &cosine, vec![1.0, 2.0])),
        "vector"
    );
    assert_eq!(
        field_of(Embedding::new("vector", &cosine, vec![1.0, f32::NAN, 0.0])),
        "vector[1]"
    );
    assert_eq!(
        field_of(Embedding::new("query", &cosine, vec![0.0; 3])),
        "query"
    );
    assert!(Embedding::new("vector", &l2, vec![0.0; 3]).is_ok());
}

#[test]
fn json_limits() {
    assert!(JsonValue::new(json!({"a": [1, 2, "three"]})).is_ok());
    assert_eq!(field_of(JsonValue::new(json!("a\u{0}b"))), "value");
    assert_eq!(field_of(JsonValue::new(json!({"a\u{0}": 1}))), "value");
    let big = "x".repeat(MAX_VALUE_BYTES);
    assert_eq!(field_of(JsonValue::new(json!(big))), "value");
    let mut deep = json!(1);
    for _ in 0..MAX_JSON_DEPTH + 1 {
        deep = json!([deep]);
    }
    assert_eq!(field_of(JsonValue::new(deep)), "value");
    assert_eq!(
        field_of(JsonObject::new("metadata", json!([1]))),
        "metadata"
    );
    assert_eq!(field_of(JsonPath::new("a..b")), "path");
    assert_eq!(
        field_of(Filter::new([("a".to_owned(), json!("\u{0}"))])),
        "filter.a"
    );
}

#[test]
fn node_batches_are_bounded_unique_and_ordered() {
    let ids = |list: &[&str]| -> Vec<NodeId> {
        list.iter()
            .map(|id| NodeId::new(*id).expect("valid id"))
            .collect()
    };
    let given = ids(&["é", "b", "B", "b", "a0", "a"]);
    let batch: Vec<&str> = NodeId::batch(&given)
        .expect("a small batch")
        .into_iter()
        .map(NodeId::as_str)
        .collect();
    assert_eq!(batch, ["B", "a", "a0", "b", "é"], "unique, by raw bytes");
    assert!(NodeId::batch(&[]).expect("an empty batch").is_empty());
    let most: Vec<NodeId> = (0..MAX_NODES_PER_GET)
        .map(|i| NodeId::new(format!("n{i}")).expect("valid id"))
        .collect();
    assert_eq!(
        NodeId::batch(&most).expect("the most ids").len(),
        MAX_NODES_PER_GET
    );
    let same = vec![NodeId::new("x").expect("valid id"); MAX_NODES_PER_GET + 1];
    assert_eq!(
        field_of(NodeId::batch(&same)),
        "ids",
        "the count, not distinct ids"
    );
}
