//! JSON numbers at the edges (DESIGN.md, "Orderings, equality and predicates"): numbers compare
//! by exact value (`core/src/json.rs` decides), in `find_by_field` and in vector metadata
//! filters alike. The hard cases for a backend that finds candidates natively: integers beyond
//! 2^53, where an f64 and the decimal text serde writes for it differ (2^63 as an integer equals
//! `9.223372036854776e18`, but `i64::MAX` does not; `u64::MAX` is not the float 2^64), negative
//! integers against floats, `-0.0` against `0`, numbers inside arrays and objects, and filters
//! with two clauses on one key (`a = 1 ∧ a = 1.0`, `a = {..} ∧ a.b = 2`).

use serde_json::{Value, json};

use p8fs_core::kv::find_by_field;
use p8fs_core::vector::{search, upsert};
use p8fs_core::{Filter, Limit, Metric};

use crate::Harness;
use crate::support::{collection, filter, key, limit, object, operand, path, record, spec, value};

/// The clauses of a filter: (dot path, operand).
type Clauses = Vec<(&'static str, Value)>;

/// Stored values: (name, value at `n`). Names order as their raw bytes, so expectations can be
/// written sorted.
fn stored() -> Vec<(&'static str, Value)> {
    vec![
        ("i63", json!(9_223_372_036_854_775_808_u64)),
        ("f63", json!(9.223_372_036_854_776e18)),
        ("imax", json!(i64::MAX)),
        ("umax", json!(u64::MAX)),
        ("f64", json!(1.844_674_407_370_955_2e19)),
        ("imin", json!(i64::MIN)),
        ("fmin", json!(-9.223_372_036_854_776e18)),
        ("neg5", json!(-5)),
        ("neg5f", json!(-5.0)),
        ("neg5h", json!(-5.5)),
        ("zero", json!(0)),
        ("zerof", json!(0.0)),
        ("negzero", json!(-0.0)),
        ("i53", json!(9_007_199_254_740_993_u64)),
        ("f53", json!(9_007_199_254_740_992.0)),
        ("neg17", json!(-100_000_000_000_000_000_i64)),
        ("neg17f", json!(-1e17)),
        ("str63", json!("9223372036854775808")),
        ("arr", json!([9.223_372_036_854_776e18, -0.0, -5])),
        (
            "obj",
            json!({"x": 9_223_372_036_854_775_808_u64, "y": -1e17}),
        ),
    ]
}

/// (operand, the names it matches under the contract).
fn cases() -> Vec<(Value, Vec<&'static str>)> {
    vec![
        (json!(9_223_372_036_854_775_808_u64), vec!["f63", "i63"]),
        (json!(9.223_372_036_854_776e18), vec!["f63", "i63"]),
        (json!(i64::MAX), vec!["imax"]),
        (json!(u64::MAX), vec!["umax"]),
        (json!(1.844_674_407_370_955_2e19), vec!["f64"]),
        (json!(i64::MIN), vec!["fmin", "imin"]),
        (json!(-9.223_372_036_854_776e18), vec!["fmin", "imin"]),
        (json!(-5), vec!["neg5", "neg5f"]),
        (json!(-5.0), vec!["neg5", "neg5f"]),
        (json!(-5.5), vec!["neg5h"]),
        (json!(0), vec!["negzero", "zero", "zerof"]),
        (json!(-0.0), vec!["negzero", "zero", "zerof"]),
        (json!(9_007_199_254_740_993_u64), vec!["i53"]),
        (json!(9_007_199_254_740_992.0), vec!["f53"]),
        (json!(-1e17), vec!["neg17", "neg17f"]),
        (json!("9223372036854775808"), vec!["str63"]),
        (json!([9_223_372_036_854_775_808_u64, 0, -5.0]), vec!["arr"]),
        (json!([9_223_372_036_854_775_807_u64, 0, -5]), vec![]),
        (
            json!({"y": -100_000_000_000_000_000_i64, "x": 9.223_372_036_854_776e18}),
            vec!["obj"],
        ),
        (json!({"x": 9_223_372_036_854_775_808_u64}), vec![]),
    ]
}

pub async fn find_by_field_numbers_at_the_edges(h: &Harness) {
    for (name, n) in stored() {
        h.b()
            .put(
                &h.tenant,
                &key(name),
                &value(json!({"n": n.clone(), "m": {"n": n}})),
                None,
            )
            .await
            .expect("put succeeds");
    }
    for (at, what) in [("n", "top level"), ("m.n", "nested")] {
        for (wanted, expected) in cases() {
            let page = find_by_field(
                h.b(),
                &h.tenant,
                &path(at),
                &operand(wanted.clone()),
                None,
                Limit::MAX,
            )
            .await
            .expect("find_by_field succeeds");
            let found: Vec<&str> = page.items.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(found, expected, "{at} = {wanted} ({what})");
        }
    }
}

pub async fn filter_numbers_at_the_edges(h: &Harness) {
    let c = collection("numbers");
    h.b()
        .create_collection(&h.tenant, &spec("numbers", 2, Metric::L2))
        .await
        .expect("create");
    for (name, n) in stored() {
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record(name),
            vec![1.0, 0.0],
            &object(json!({"n": n.clone(), "m": {"n": n}})),
            None,
        )
        .await
        .expect("upsert succeeds");
    }
    for at in ["n", "m.n"] {
        for (wanted, expected) in cases() {
            // Every record is at the same distance, so hits come in id order.
            let hits = search(
                h.b(),
                &h.tenant,
                &c,
                vec![0.0, 1.0],
                limit(100),
                &filter(&[(at, wanted.clone())]),
            )
            .await
            .expect("search succeeds");
            let found: Vec<&str> = hits.iter().map(|hit| hit.id.as_str()).collect();
            assert_eq!(found, expected, "filter {at} = {wanted}");
        }
    }
}

pub async fn filter_two_clauses_on_one_key(h: &Harness) {
    let c = collection("clauses");
    h.b()
        .create_collection(&h.tenant, &spec("clauses", 2, Metric::L2))
        .await
        .expect("create");
    for (id, metadata) in [
        ("big", json!({"a": 9_223_372_036_854_775_808_u64})),
        ("obj", json!({"a": {"b": 2}})),
        ("objf", json!({"a": {"b": 2.0}})),
        ("objx", json!({"a": {"b": 2, "c": 3}})),
        ("one", json!({"a": 1})),
        ("onef", json!({"a": 1.0})),
        ("two", json!({"a": 2})),
    ] {
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record(id),
            vec![1.0, 0.0],
            &object(metadata),
            None,
        )
        .await
        .expect("upsert succeeds");
    }
    let cases: Vec<(Clauses, Vec<&str>)> = vec![
        (
            vec![("a", json!(1)), ("a", json!(1.0))],
            vec!["one", "onef"],
        ),
        (
            vec![("a", json!(1.0)), ("a", json!(1))],
            vec!["one", "onef"],
        ),
        (vec![("a", json!(1)), ("a", json!(2))], vec![]),
        (
            vec![("a", json!({"b": 2})), ("a.b", json!(2))],
            vec!["obj", "objf"],
        ),
        (
            vec![("a.b", json!(2.0)), ("a", json!({"b": 2}))],
            vec!["obj", "objf"],
        ),
        (vec![("a.b", json!(2)), ("a.c", json!(3))], vec!["objx"]),
        (vec![("a", json!({"b": 2})), ("a.c", json!(3))], vec![]),
        (vec![("a", json!(1)), ("a.b", json!(2))], vec![]),
        (
            vec![
                ("a", json!(9.223_372_036_854_776e18)),
                ("a", json!(9_223_372_036_854_775_808_u64)),
            ],
            vec!["big"],
        ),
        (
            vec![
                ("a", json!(9.223_372_036_854_776e18)),
                ("a", json!(i64::MAX)),
            ],
            vec![],
        ),
    ];
    for (clauses, expected) in cases {
        let hits = search(
            h.b(),
            &h.tenant,
            &c,
            vec![0.0, 1.0],
            limit(100),
            &filter(&clauses),
        )
        .await
        .expect("search succeeds");
        let found: Vec<&str> = hits.iter().map(|hit| hit.id.as_str()).collect();
        assert_eq!(found, expected, "filter {clauses:?}");
    }
    let all = search(
        h.b(),
        &h.tenant,
        &c,
        vec![0.0, 1.0],
        limit(100),
        &Filter::none(),
    )
    .await
    .expect("search succeeds");
    assert_eq!(all.len(), 7);
}
