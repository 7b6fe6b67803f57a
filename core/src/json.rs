//! The contract's JSON equality, decided here and nowhere else: deep and type-strict, except
//! that numbers compare by exact value (`1 == 1.0`, `1 != "1"`, `true != 1`, `null` matches only
//! `null`). A dot path walks object keys only; a missing path never matches.

use serde_json::{Number, Value};

use crate::types::{JsonMap, JsonPath};

/// Deep, type-strict equality with numbers compared by exact value.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => number_equal(x, y),
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_equal(a, b)))
        }
        _ => false,
    }
}

/// Exact numeric equality across integer and floating representations.
fn number_equal(x: &Number, y: &Number) -> bool {
    match (exact_integer(x), exact_integer(y)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => x.as_f64() == y.as_f64(),
        // One side is a non-integral (or out of range) float, the other an integer.
        _ => false,
    }
}

/// The number as an exact integer, if it has an integral value within the range of i64 ∪ u64.
pub(crate) fn exact_integer(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    // 2^64 and -2^63 are exact in f64; within that range an integral f64 converts exactly.
    if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..18_446_744_073_709_551_616.0).contains(&f)
    {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "integral and range-checked above"
        )]
        return Some(f as i128);
    }
    None
}

/// The value at a dot path, walking object keys only.
pub fn lookup<'a>(value: &'a Value, path: &JsonPath) -> Option<&'a Value> {
    path.segments()
        .iter()
        .try_fold(value, |current, segment| current.as_object()?.get(segment))
}

/// Whether `value` holds something equal to `operand` at `path`.
pub fn path_equals(value: &Value, path: &JsonPath, operand: &Value) -> bool {
    lookup(value, path).is_some_and(|found| json_equal(found, operand))
}

/// As [`path_equals`], for an object (metadata, properties).
pub fn object_path_equals(object: &JsonMap, path: &JsonPath, operand: &Value) -> bool {
    let (first, rest) = match path.segments().split_first() {
        Some(split) => split,
        None => return false,
    };
    let mut current = match object.get(first) {
        Some(v) => v,
        None => return false,
    };
    for segment in rest {
        current = match current.as_object().and_then(|o| o.get(segment)) {
            Some(v) => v,
            None => return false,
        };
    }
    json_equal(current, operand)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_compare_by_value_and_types_stay_strict() {
        assert!(json_equal(&json!(1), &json!(1.0)));
        assert!(json_equal(&json!(-0.0), &json!(0)));
        assert!(!json_equal(&json!(1), &json!("1")));
        assert!(!json_equal(&json!(true), &json!(1)));
        assert!(!json_equal(&json!(null), &json!(0)));
        assert!(json_equal(&json!(null), &json!(null)));
        assert!(json_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_equal(
            &json!(9_007_199_254_740_993_u64),
            &json!(9_007_199_254_740_992.0)
        ));
        assert!(json_equal(
            &json!(9_007_199_254_740_992_u64),
            &json!(9_007_199_254_740_992.0)
        ));
        assert!(!json_equal(&json!(1.5), &json!(1)));
        assert!(json_equal(
            &json!({"a": [1, {"b": 2.0}]}),
            &json!({"a": [1.0, {"b": 2}]})
        ));
        assert!(!json_equal(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        assert!(!json_equal(&json!([1, 2]), &json!([2, 1])));
    }

    #[test]
    fn paths_walk_objects_only() {
        let v = json!({"a": {"b": [1, 2], "c": null}, "x.y": 3});
        let path = |p: &str| JsonPath::new(p).unwrap();
        assert!(path_equals(&v, &path("a.b"), &json!([1, 2])));
        assert!(path_equals(&v, &path("a.c"), &json!(null)));
        assert!(!path_equals(&v, &path("a.d"), &json!(null)));
        assert!(!path_equals(&v, &path("a.b.0"), &json!(1)));
        assert!(!path_equals(&v, &path("x.y"), &json!(3)));
        let object = v.as_object().unwrap();
        assert!(object_path_equals(object, &path("a.c"), &json!(null)));
        assert!(!object_path_equals(object, &path("a.b.0"), &json!(1)));
    }
}
