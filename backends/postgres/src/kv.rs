//! Key-value records in `p8fs_kv`, and the containment probes that find candidates for JSON
//! equality (also used for vector metadata filters).
//!
//! Atomicity: each write is one statement (see `sql.rs`). `put_if_absent` is an
//! `INSERT … ON CONFLICT DO UPDATE … WHERE expired`: the conflict arbiter locks the existing row
//! and evaluates the `WHERE` on its latest version, so among concurrent callers exactly one
//! inserts or replaces, and the rest get no row back (`AlreadyExists`). `compare_and_swap` is an
//! `UPDATE … WHERE version = expected AND visible`: the row lock serialises concurrent callers and
//! PostgreSQL re-checks the condition on the row's latest version after waiting, so exactly one
//! caller with a given expected version swaps. Every statement that assigns a version first takes
//! a transaction-scoped advisory lock on the key, so versions of one key follow commit order even
//! when no row exists to lock (a delete followed by two racing re-creations).
//!
//! Each of those statements also appends the write's change when, and only when, it wrote
//! (see `append_events` in `sql.rs`): a failed compare-and-swap or `put_if_absent` and the
//! delete of an absent or expired record append nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::postgres::PgRow;

use p8fs_core::kv::KvPage;
use p8fs_core::{
    Error, Filter, JsonPath, JsonValue, Key, KeyPrefix, KvEntry, KvStore, Limit, Page, Resource,
    Result, TenantId, Ttl, Version, expires_at,
};

use crate::PgBackend;
use crate::error::{classify, corrupt};
use crate::schema::{json_text, prefix_upper_bound};
use crate::sql;

/// How often a compare-and-swap re-reads when the row changed between its snapshot and its write.
const CAS_ATTEMPTS: usize = 16;

fn version(raw: i64) -> Result<Version> {
    u64::try_from(raw)
        .map(Version)
        .map_err(|_| corrupt("version"))
}

/// A row of `key, value, version, expires_at`.
fn entry(row: &PgRow) -> Result<KvEntry> {
    let key: String = row.try_get(0).map_err(classify)?;
    Ok(KvEntry {
        key: Key::new(key).map_err(|_| corrupt("key"))?,
        value: row.try_get(1).map_err(classify)?,
        version: version(row.try_get(2).map_err(classify)?)?,
        expires_at: row.try_get(3).map_err(classify)?,
    })
}

/// The largest magnitude below which a JSON number compares the same way in `jsonb` (exact
/// decimal of the text serde wrote) and in the contract (exact value). Above it a float's shortest
/// text may differ from its exact value: `9223372036854775808` and `9.223372036854776e18` are
/// equal under the contract but not as `jsonb`.
const EXACT_NUMBERS: f64 = 9_007_199_254_740_992.0; // 2^53

/// The part of `operand` that containment can require without ever rejecting a value the
/// contract calls equal: numbers beyond ±2^53 are dropped (from arrays and objects) or, as the
/// operand itself, make the requirement vanish (`None`). Containment is otherwise weaker than
/// equality: objects may have extra keys, arrays extra elements, and `jsonb` compares numbers by
/// value (`1 == 1.0`) and strings byte for byte.
fn containable(operand: &Value) -> Option<Value> {
    match operand {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.abs() < EXACT_NUMBERS)
            .map(|_| operand.clone()),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(containable).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| containable(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        Value::Null | Value::Bool(_) | Value::String(_) => Some(operand.clone()),
    }
}

/// A node of a probe under construction.
enum ProbeNode {
    /// The value at this key must contain this.
    Leaf(Value),
    /// The value at this key must be an object containing these.
    Object(BTreeMap<String, ProbeNode>),
    /// Clauses disagree on this key: require nothing of it.
    Free,
}

impl ProbeNode {
    fn into_value(self) -> Option<Value> {
        match self {
            ProbeNode::Leaf(v) => Some(v),
            ProbeNode::Object(map) => Some(Value::Object(
                map.into_iter()
                    .filter_map(|(k, node)| node.into_value().map(|v| (k, v)))
                    .collect(),
            )),
            ProbeNode::Free => None,
        }
    }
}

/// A `jsonb` value that every document holding `operand` at `path` (under the contract's
/// equality) contains; `value::jsonb @> probe` is then a superset of the matches.
pub(crate) fn containment_probe(path: &JsonPath, operand: &Value) -> Value {
    merged_probe([(path, operand)])
}

/// As [`containment_probe`], for the conjunction of a metadata filter's clauses. Clauses that
/// meet at one key (`a = 1` and `a.b = 2`, or `a = 1` and `a = 1.0`) leave that key free: a
/// weaker probe is always safe.
pub(crate) fn filter_probe(filter: &Filter) -> Value {
    merged_probe(filter.clauses().iter().map(|(path, value)| (path, value)))
}

fn merged_probe<'a>(clauses: impl IntoIterator<Item = (&'a JsonPath, &'a Value)>) -> Value {
    let mut root: BTreeMap<String, ProbeNode> = BTreeMap::new();
    for (path, operand) in clauses {
        require(&mut root, path.segments(), containable(operand));
    }
    ProbeNode::Object(root)
        .into_value()
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// Records that the value at `segments` (below `level`) must contain `leaf`; `None` requires only
/// that the parents are objects. A key two clauses meet at becomes free.
fn require(level: &mut BTreeMap<String, ProbeNode>, segments: &[String], leaf: Option<Value>) {
    let Some((first, rest)) = segments.split_first() else {
        return;
    };
    if rest.is_empty() {
        match level.get_mut(first) {
            None => {
                level.insert(first.clone(), leaf.map_or(ProbeNode::Free, ProbeNode::Leaf));
            }
            Some(existing) => *existing = ProbeNode::Free,
        }
        return;
    }
    let node = level
        .entry(first.clone())
        .or_insert_with(|| ProbeNode::Object(BTreeMap::new()));
    match node {
        ProbeNode::Object(children) => require(children, rest, leaf),
        ProbeNode::Leaf(_) => *node = ProbeNode::Free,
        ProbeNode::Free => {}
    }
}

impl PgBackend {
    async fn scan_page(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        let rows = sqlx::query(sql::KV_SCAN)
            .bind(tenant.as_str())
            .bind(prefix.as_str())
            .bind(prefix_upper_bound(prefix.as_str()))
            .bind(start_after.map_or("", Key::as_str))
            .bind(self.now())
            .bind(overfetch(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let items = rows.iter().map(entry).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.key.clone()))
    }
}

/// `limit + 1` rows: the extra one only tells whether more exist.
pub(crate) fn overfetch(limit: Limit) -> i64 {
    limit.get() as i64 + 1
}

#[async_trait]
impl KvStore for PgBackend {
    async fn get(&self, tenant: &TenantId, key: &Key) -> Result<Option<KvEntry>> {
        let row = sqlx::query(sql::KV_GET)
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(KvEntry {
                key: key.clone(),
                value: row.try_get(0).map_err(classify)?,
                version: version(row.try_get(1).map_err(classify)?)?,
                expires_at: row.try_get(2).map_err(classify)?,
            })
        })
        .transpose()
    }

    async fn put(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let now = self.now();
        let raw: i64 = sqlx::query_scalar(sql::KV_PUT)
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(json_text(value.get())?)
            .bind(expires_at(now, ttl))
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        version(raw)
    }

    async fn put_if_absent(
        &self,
        tenant: &TenantId,
        key: &Key,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let now = self.now();
        let raw: Option<i64> = sqlx::query_scalar(sql::KV_PUT_IF_ABSENT)
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(json_text(value.get())?)
            .bind(expires_at(now, ttl))
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        match raw {
            Some(raw) => version(raw),
            None => Err(Error::already_exists(Resource::Key, key)),
        }
    }

    async fn compare_and_swap(
        &self,
        tenant: &TenantId,
        key: &Key,
        expected: Version,
        value: &JsonValue,
        ttl: Option<Ttl>,
    ) -> Result<Version> {
        let text = json_text(value.get())?;
        let expected_raw = i64::try_from(expected.0).ok();
        for _ in 0..CAS_ATTEMPTS {
            let now = self.now();
            let row = sqlx::query(sql::KV_COMPARE_AND_SWAP)
                .bind(tenant.as_str())
                .bind(key.as_str())
                .bind(now)
                // A version beyond i64 was never issued: compare with one no row has.
                .bind(expected_raw.unwrap_or(-1))
                .bind(&text)
                .bind(expires_at(now, ttl))
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
            let swapped: Option<i64> = row.try_get(0).map_err(classify)?;
            let current: Option<i64> = row.try_get(1).map_err(classify)?;
            match (swapped, current) {
                (Some(raw), _) => return version(raw),
                (None, None) => return Err(Error::not_found(Resource::Key, key)),
                (None, Some(current)) if Some(current) != expected_raw => {
                    return Err(Error::conflict(format!(
                        "key {key} is at version {current}, not {expected}"
                    )));
                }
                // The row matched in the snapshot but changed before the update reached it:
                // look again, so the answer describes one consistent state.
                (None, Some(_)) => {}
            }
        }
        Err(Error::unavailable(
            format!("key {key} kept changing during compare-and-swap"),
            None,
        ))
    }

    async fn delete(&self, tenant: &TenantId, key: &Key) -> Result<bool> {
        let visible: Option<bool> = sqlx::query_scalar(sql::KV_DELETE)
            .bind(tenant.as_str())
            .bind(key.as_str())
            .bind(self.now())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(visible.unwrap_or(false))
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        prefix: &KeyPrefix,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        self.scan_page(tenant, prefix, start_after, limit).await
    }

    async fn find_candidates(
        &self,
        tenant: &TenantId,
        path: &JsonPath,
        operand: &JsonValue,
        start_after: Option<&Key>,
        limit: Limit,
    ) -> Result<KvPage> {
        // Planned for the actual probe every time: whether the GIN index helps depends on it
        // (an empty probe matches everything and is best answered by the key order).
        let rows = sqlx::query(sql::KV_FIND_CANDIDATES)
            .persistent(false)
            .bind(tenant.as_str())
            .bind(containment_probe(path, operand.get()))
            .bind(start_after.map_or("", Key::as_str))
            .bind(self.now())
            .bind(overfetch(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let items = rows.iter().map(entry).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.key.clone()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(p: &str) -> JsonPath {
        JsonPath::new(p).unwrap()
    }

    #[test]
    fn probes_nest_the_operand_under_the_path() {
        assert_eq!(
            containment_probe(&path("a.b"), &json!(1)),
            json!({"a": {"b": 1}})
        );
        assert_eq!(
            containment_probe(&path("a"), &json!({"x": [1, "y"]})),
            json!({"a": {"x": [1, "y"]}})
        );
        assert_eq!(
            containment_probe(&path("a"), &json!(null)),
            json!({"a": null})
        );
    }

    #[test]
    fn numbers_beyond_two_to_the_53_are_not_required() {
        let big = json!(9_223_372_036_854_775_808_u64);
        assert_eq!(containment_probe(&path("a.b"), &big), json!({"a": {}}));
        assert_eq!(containment_probe(&path("a"), &big), json!({}));
        assert_eq!(
            containment_probe(&path("a"), &json!([1, 1e300, 2])),
            json!({"a": [1, 2]})
        );
        assert_eq!(
            containment_probe(&path("a"), &json!({"x": -1e17, "y": 3})),
            json!({"a": {"y": 3}})
        );
        assert_eq!(
            containment_probe(&path("a"), &json!(9_007_199_254_740_991_u64)),
            json!({"a": 9_007_199_254_740_991_u64})
        );
    }

    #[test]
    fn filter_clauses_merge_and_conflicts_leave_the_key_free() {
        let filter = Filter::new([
            ("a.b".to_owned(), json!(1)),
            ("a.c".to_owned(), json!("x")),
            ("d".to_owned(), json!(true)),
        ])
        .unwrap();
        assert_eq!(
            filter_probe(&filter),
            json!({"a": {"b": 1, "c": "x"}, "d": true})
        );
        let filter =
            Filter::new([("a".to_owned(), json!(1)), ("a.b".to_owned(), json!(2))]).unwrap();
        assert_eq!(filter_probe(&filter), json!({}));
        let filter =
            Filter::new([("a.b".to_owned(), json!(2)), ("a".to_owned(), json!(1))]).unwrap();
        assert_eq!(filter_probe(&filter), json!({}));
        let filter =
            Filter::new([("a.b".to_owned(), json!(1e300)), ("c".to_owned(), json!(1))]).unwrap();
        assert_eq!(filter_probe(&filter), json!({"a": {}, "c": 1}));
        let filter =
            Filter::new([("a".to_owned(), json!(1)), ("a".to_owned(), json!(1.0))]).unwrap();
        assert_eq!(filter_probe(&filter), json!({}));
        assert_eq!(filter_probe(&Filter::none()), json!({}));
    }
}
