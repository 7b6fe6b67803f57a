//! Small constructors that keep scenarios short. They panic on invalid input, which in a
//! scenario is a bug in the scenario itself.

use rand::RngExt;
use serde_json::Value;

use p8fs_core::{
    CollectionName, CollectionSpec, Depth, Filter, JsonObject, JsonPath, JsonValue, Key, KeyPrefix,
    Label, Limit, Metric, NodeId, RecordId, Rel, RelFilter, TenantId, Ttl, Weight,
};

/// A fresh random tenant id.
pub fn fresh_tenant() -> TenantId {
    let n: u64 = rand::rng().random();
    TenantId::new(format!("t{n:016x}")).expect("generated tenant ids are valid")
}

pub fn key(s: &str) -> Key {
    Key::new(s).expect("valid key")
}

pub fn prefix(s: &str) -> KeyPrefix {
    KeyPrefix::new(s).expect("valid prefix")
}

pub fn value(v: Value) -> JsonValue {
    JsonValue::new(v).expect("valid value")
}

pub fn operand(v: Value) -> JsonValue {
    JsonValue::operand("value", v).expect("valid operand")
}

pub fn object(v: Value) -> JsonObject {
    JsonObject::new("metadata", v).expect("valid object")
}

pub fn path(s: &str) -> JsonPath {
    JsonPath::new(s).expect("valid path")
}

pub fn ttl(millis: i64) -> Option<Ttl> {
    Some(Ttl::from_millis(millis).expect("valid ttl"))
}

pub fn limit(n: u64) -> Limit {
    Limit::new(n).expect("valid limit")
}

pub fn collection(s: &str) -> CollectionName {
    CollectionName::new(s).expect("valid collection name")
}

pub fn spec(name: &str, dimension: u64, metric: Metric) -> CollectionSpec {
    CollectionSpec::new(name, dimension, metric).expect("valid spec")
}

pub fn record(s: &str) -> RecordId {
    RecordId::new(s).expect("valid record id")
}

pub fn filter(clauses: &[(&str, Value)]) -> Filter {
    Filter::new(clauses.iter().map(|(p, v)| ((*p).to_owned(), v.clone()))).expect("valid filter")
}

pub fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node id")
}

pub fn label(s: &str) -> Label {
    Label::new(s).expect("valid label")
}

pub fn rel(s: &str) -> Rel {
    Rel::new(s).expect("valid rel")
}

pub fn rels(list: &[&str]) -> RelFilter {
    RelFilter::new(list.iter().copied()).expect("valid rel filter")
}

pub fn weight(w: f64) -> Weight {
    Weight::new(w).expect("valid weight")
}

pub fn depth(n: u64) -> Depth {
    Depth::neighbors(n).expect("valid depth")
}

pub fn max_depth(n: u64) -> Depth {
    Depth::path(n).expect("valid max depth")
}
