//! Every limit of the contract, checked in one place. Each constructor returns
//! [`Error::InvalidInput`] naming the field. Front-ends pass the field name they expose
//! (`key`, `metadata.color`, `vector`), so errors point at what the client sent.

use std::borrow::Cow;
use std::io;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::{
    BucketName, CollectionName, CollectionSpec, Depth, Dimension, Embedding, Filter, JsonMap,
    JsonObject, JsonPath, JsonValue, Key, KeyPrefix, Label, Limit, Metric, NodeId, ObjectKey,
    ObjectPrefix, RecordId, Rel, RelFilter, TenantId, Ttl, Weight,
};

/// Longest tenant id, in bytes.
pub const MAX_TENANT_BYTES: usize = 63;
/// Longest key or key prefix, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest key-value value, serialized as JSON.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest metadata or properties object, serialized as JSON.
pub const MAX_OBJECT_BYTES: usize = 64 * 1024;
/// Deepest nesting of arrays and objects in any JSON value.
pub const MAX_JSON_DEPTH: usize = 64;
/// Shortest ttl, in milliseconds.
pub const MIN_TTL_MILLIS: i64 = 1;
/// Longest ttl: 100 years of 365.25 days, in milliseconds.
pub const MAX_TTL_MILLIS: i64 = 3_155_760_000_000;
/// Largest page size and result limit.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Longest collection name, in bytes.
pub const MAX_COLLECTION_NAME_BYTES: usize = 128;
/// Largest vector dimension.
pub const MAX_DIMENSION: u32 = 4096;
/// Longest vector record id or node id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest node label or relation name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest `k` of a vector search.
pub const MAX_K: u32 = 1000;
/// Most clauses in a metadata filter.
pub const MAX_FILTER_CLAUSES: usize = 16;
/// Longest JSON dot path, in bytes.
pub const MAX_PATH_BYTES: usize = 256;
/// Deepest neighbors traversal.
pub const MAX_NEIGHBOR_DEPTH: u32 = 6;
/// Deepest shortest-path search.
pub const MAX_PATH_DEPTH: u32 = 12;
/// Most relations in a relation filter.
pub const MAX_RELS: usize = 16;
/// Most node ids in one [`GraphStore::get_nodes`](crate::GraphStore::get_nodes).
pub const MAX_NODES_PER_GET: usize = 1000;

type Field = Cow<'static, str>;

fn text(field: &Field, value: &str, min: usize, max: usize) -> Result<()> {
    let len = value.len();
    if len < min {
        return Err(Error::invalid(
            field.clone(),
            format!("must not be empty (at least {min} bytes)"),
        ));
    }
    if len > max {
        return Err(Error::invalid(
            field.clone(),
            format!("is {len} bytes; at most {max} are allowed"),
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid(field.clone(), "must not contain U+0000"));
    }
    Ok(())
}

impl TenantId {
    /// Validates a tenant id: `[a-z0-9][a-z0-9_-]{0,62}`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let field: Field = "tenant".into();
        text(&field, &value, 1, MAX_TENANT_BYTES)?;
        let bytes = value.as_bytes();
        let first_ok = bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit();
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if !first_ok || !rest_ok {
            return Err(Error::invalid(field, "must match [a-z0-9][a-z0-9_-]{0,62}"));
        }
        Ok(Self(value))
    }
}

impl Key {
    /// Validates a key: 1..=1024 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        Self::named("key", value)
    }

    /// As [`Key::new`], reporting errors under `field` (e.g. `start_after`).
    pub fn named(field: impl Into<Field>, value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&field.into(), &value, 1, MAX_KEY_BYTES)?;
        Ok(Self(value))
    }
}

impl BucketName {
    /// Validates a bucket name by S3's rules (see [`BucketName`]).
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let field: Field = "bucket".into();
        let bytes = value.as_bytes();
        if !(3..=63).contains(&bytes.len()) {
            return Err(Error::invalid(
                field,
                format!("is {} bytes; bucket names are 3 to 63 bytes", bytes.len()),
            ));
        }
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !bytes.iter().all(|&b| alnum(b) || b == b'.' || b == b'-') {
            return Err(Error::invalid(
                field,
                "may hold only lowercase letters, digits, '.' and '-'",
            ));
        }
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(Error::invalid(
                field,
                "must begin and end with a letter or digit",
            ));
        }
        if value.contains("..") {
            return Err(Error::invalid(field, "must not contain '..'"));
        }
        if value.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(Error::invalid(field, "must not be an IP address"));
        }
        if ["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| value.starts_with(p))
            || ["-s3alias", "--ol-s3", "--x-s3", ".mrap"]
                .iter()
                .any(|s| value.ends_with(s))
        {
            return Err(Error::invalid(field, "uses a reserved prefix or suffix"));
        }
        Ok(Self(value))
    }
}

impl ObjectKey {
    /// Validates an object key: 1..=1024 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        Self::named("key", value)
    }

    /// As [`ObjectKey::new`], reporting errors under `field` (e.g. `start_after`).
    pub fn named(field: impl Into<Field>, value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&field.into(), &value, 1, MAX_KEY_BYTES)?;
        Ok(Self(value))
    }
}

impl ObjectPrefix {
    /// Validates an object key prefix: 0..=1024 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&"prefix".into(), &value, 0, MAX_KEY_BYTES)?;
        Ok(Self(value))
    }

    /// The empty prefix, which matches every key.
    pub fn all() -> Self {
        Self(String::new())
    }

    /// Whether `key` starts with this prefix.
    pub fn matches(&self, key: &ObjectKey) -> bool {
        key.0.as_bytes().starts_with(self.0.as_bytes())
    }
}

impl KeyPrefix {
    /// Validates a key prefix: 0..=1024 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&"prefix".into(), &value, 0, MAX_KEY_BYTES)?;
        Ok(Self(value))
    }

    /// The empty prefix, which matches every key.
    pub fn all() -> Self {
        Self(String::new())
    }

    /// Whether `key` starts with this prefix.
    pub fn matches(&self, key: &Key) -> bool {
        key.0.as_bytes().starts_with(self.0.as_bytes())
    }
}

impl CollectionName {
    /// Validates a collection name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let field: Field = "collection".into();
        text(&field, &value, 1, MAX_COLLECTION_NAME_BYTES)?;
        let bytes = value.as_bytes();
        let ok = bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(Error::invalid(
                field,
                "must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
            ));
        }
        Ok(Self(value))
    }
}

impl RecordId {
    /// Validates a vector record id: 1..=256 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&"id".into(), &value, 1, MAX_ID_BYTES)?;
        Ok(Self(value))
    }
}

impl NodeId {
    /// Validates a node id: 1..=256 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        Self::named("id", value)
    }

    /// As [`NodeId::new`], reporting errors under `field` (e.g. `src`, `dst`).
    pub fn named(field: impl Into<Field>, value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&field.into(), &value, 1, MAX_ID_BYTES)?;
        Ok(Self(value))
    }

    /// Checks a batch of ids for [`GraphStore::get_nodes`](crate::GraphStore::get_nodes): at
    /// most [`MAX_NODES_PER_GET`] (else `InvalidInput` naming `ids`). Returns them each once,
    /// ascending by raw bytes, the order the result takes.
    pub fn batch(ids: &[NodeId]) -> Result<Vec<&NodeId>> {
        if ids.len() > MAX_NODES_PER_GET {
            return Err(Error::invalid(
                "ids",
                format!("at most {MAX_NODES_PER_GET} node ids are allowed"),
            ));
        }
        let mut unique: Vec<&NodeId> = ids.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        Ok(unique)
    }
}

impl Label {
    /// Validates a node label: 1..=128 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&"label".into(), &value, 1, MAX_NAME_BYTES)?;
        Ok(Self(value))
    }
}

impl Rel {
    /// Validates a relation name: 1..=128 bytes of UTF-8 without U+0000.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        text(&"rel".into(), &value, 1, MAX_NAME_BYTES)?;
        Ok(Self(value))
    }
}

impl RelFilter {
    /// Validates a relation filter of at most 16 relations; empty means all.
    pub fn new<S: Into<String>>(rels: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut out = Vec::new();
        for (i, rel) in rels.into_iter().enumerate() {
            let rel = rel.into();
            text(&format!("rels[{i}]").into(), &rel, 1, MAX_NAME_BYTES)?;
            out.push(Rel(rel));
        }
        if out.len() > MAX_RELS {
            return Err(Error::invalid(
                "rels",
                format!("at most {MAX_RELS} relations are allowed"),
            ));
        }
        out.sort();
        out.dedup();
        Ok(Self(out))
    }
}

impl Ttl {
    /// Validates a ttl in milliseconds: 1 ms ..= 100 years.
    pub fn from_millis(millis: i64) -> Result<Self> {
        if !(MIN_TTL_MILLIS..=MAX_TTL_MILLIS).contains(&millis) {
            return Err(Error::invalid(
                "ttl",
                format!("must be between {MIN_TTL_MILLIS} ms and {MAX_TTL_MILLIS} ms (100 years)"),
            ));
        }
        Ok(Self(millis))
    }
}

impl Limit {
    /// Validates a page size or result limit: 1..=1000.
    pub fn new(value: u64) -> Result<Self> {
        Self::named("limit", value)
    }

    /// As [`Limit::new`], reporting errors under `field` (e.g. `k`).
    pub fn named(field: impl Into<Field>, value: u64) -> Result<Self> {
        match u32::try_from(value) {
            Ok(v) if (1..=MAX_PAGE_SIZE).contains(&v) => Ok(Self(v)),
            _ => Err(Error::invalid(
                field.into(),
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            )),
        }
    }

    /// Validates the `k` of a vector search: 1..=1000.
    pub fn top_k(value: u64) -> Result<Self> {
        debug_assert_eq!(MAX_K, MAX_PAGE_SIZE);
        Self::named("k", value)
    }
}

impl Dimension {
    /// Validates a vector dimension: 1..=4096.
    pub fn new(value: u64) -> Result<Self> {
        match u32::try_from(value) {
            Ok(v) if (1..=MAX_DIMENSION).contains(&v) => Ok(Self(v)),
            _ => Err(Error::invalid(
                "dimension",
                format!("must be between 1 and {MAX_DIMENSION}"),
            )),
        }
    }
}

impl Metric {
    /// Parses a metric name: `cosine`, `l2` or `dot`.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "cosine" => Ok(Metric::Cosine),
            "l2" => Ok(Metric::L2),
            "dot" => Ok(Metric::Dot),
            _ => Err(Error::invalid("metric", "must be one of cosine, l2, dot")),
        }
    }
}

impl CollectionSpec {
    /// Validates a collection spec.
    pub fn new(name: impl Into<String>, dimension: u64, metric: Metric) -> Result<Self> {
        Ok(Self {
            name: CollectionName::new(name)?,
            dimension: Dimension::new(dimension)?,
            metric,
        })
    }
}

impl Embedding {
    /// Validates a vector for a collection: exactly its dimension, every component finite, and not
    /// all zero in a cosine collection. `field` is the name the caller exposes (`vector`, `query`).
    pub fn new(field: impl Into<Field>, spec: &CollectionSpec, values: Vec<f32>) -> Result<Self> {
        let field = field.into();
        let dimension = spec.dimension.get();
        if values.len() != dimension {
            return Err(Error::invalid(
                field,
                format!(
                    "has {} dimensions; collection {} has {dimension}",
                    values.len(),
                    spec.name
                ),
            ));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                "must be a finite number",
            ));
        }
        if spec.metric == Metric::Cosine && values.iter().all(|v| *v == 0.0) {
            return Err(Error::invalid(
                field,
                "a zero vector has no cosine distance",
            ));
        }
        Ok(Self {
            values,
            metric: spec.metric,
        })
    }
}

impl Depth {
    /// Validates the depth of a neighbors traversal: 1..=6.
    pub fn neighbors(value: u64) -> Result<Self> {
        Self::bounded("depth", value, MAX_NEIGHBOR_DEPTH)
    }

    /// Validates the maximum depth of a shortest-path search: 1..=12.
    pub fn path(value: u64) -> Result<Self> {
        Self::bounded("max_depth", value, MAX_PATH_DEPTH)
    }

    fn bounded(field: &'static str, value: u64, max: u32) -> Result<Self> {
        match u32::try_from(value) {
            Ok(v) if (1..=max).contains(&v) => Ok(Self(v)),
            _ => Err(Error::invalid(
                field,
                format!("must be between 1 and {max}"),
            )),
        }
    }
}

impl Weight {
    /// Validates an edge weight: finite and greater than zero.
    pub fn new(value: f64) -> Result<Self> {
        if value.is_finite() && value > 0.0 {
            Ok(Self(value))
        } else {
            Err(Error::invalid(
                "weight",
                "must be a finite number greater than 0",
            ))
        }
    }
}

impl JsonValue {
    /// Validates a key-value value: at most 1 MiB serialized, nesting at most 64 deep, no U+0000
    /// in any string or object key.
    pub fn new(value: Value) -> Result<Self> {
        Self::named("value", value, MAX_VALUE_BYTES)
    }

    /// Validates a JSON value compared against stored data (a filter or find-by-field operand).
    pub fn operand(field: impl Into<Field>, value: Value) -> Result<Self> {
        Self::named(field, value, MAX_OBJECT_BYTES)
    }

    fn named(field: impl Into<Field>, value: Value, max_bytes: usize) -> Result<Self> {
        let field = field.into();
        check_json(&field, &value, max_bytes)?;
        Ok(Self(value))
    }
}

impl JsonObject {
    /// Validates metadata or properties: a JSON object, at most 64 KiB serialized, nesting at
    /// most 64 deep, no U+0000 in any string or object key.
    pub fn new(field: impl Into<Field>, value: Value) -> Result<Self> {
        let field = field.into();
        match value {
            Value::Object(map) => Self::from_map(field, map),
            _ => Err(Error::invalid(field, "must be a JSON object")),
        }
    }

    /// As [`JsonObject::new`], from an object already parsed.
    pub fn from_map(field: impl Into<Field>, map: JsonMap) -> Result<Self> {
        let value = Value::Object(map);
        check_json(&field.into(), &value, MAX_OBJECT_BYTES)?;
        match value {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(Error::internal(
                "object changed shape during validation",
                None,
            )),
        }
    }

    /// The empty object.
    pub fn empty() -> Self {
        Self::default()
    }
}

impl JsonPath {
    /// Validates a dot path: 1..=256 bytes, segments separated by `.`, none empty.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        Self::named("path", value)
    }

    /// As [`JsonPath::new`], reporting errors under `field`.
    pub fn named(field: impl Into<Field>, value: impl Into<String>) -> Result<Self> {
        let field = field.into();
        let raw = value.into();
        text(&field, &raw, 1, MAX_PATH_BYTES)?;
        let segments: Vec<String> = raw.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(Error::invalid(field, "path segments must not be empty"));
        }
        Ok(Self { raw, segments })
    }
}

impl Filter {
    /// Validates a metadata filter: at most 16 `path == value` clauses.
    pub fn new(clauses: impl IntoIterator<Item = (String, Value)>) -> Result<Self> {
        let mut out = Vec::new();
        for (path, value) in clauses {
            let path = JsonPath::named("filter", path)?;
            let field = format!("filter.{}", path.as_str());
            let value = JsonValue::operand(field, value)?;
            out.push((path, value.0));
        }
        if out.len() > MAX_FILTER_CLAUSES {
            return Err(Error::invalid(
                "filter",
                format!("at most {MAX_FILTER_CLAUSES} clauses are allowed"),
            ));
        }
        Ok(Self(out))
    }
}

/// Storage forms the sealing layer ([`crate::sealed`]) builds from input validated above: the
/// sealed form of a value is larger (and its token tree one level deeper) than the limits admit
/// for user input, and every backend stores it as it is.
pub(crate) mod stored {
    use serde_json::Value;

    use crate::types::{Filter, JsonMap, JsonObject, JsonPath, JsonValue};

    /// The sealed form of a validated value or operand.
    pub(crate) fn value(value: Value) -> JsonValue {
        JsonValue(value)
    }

    /// The sealed form of validated metadata or properties.
    pub(crate) fn object(map: JsonMap) -> JsonObject {
        JsonObject(map)
    }

    /// A validated path under one more leading segment (`a.b` under `t` is `t.a.b`).
    pub(crate) fn path_under(first: &str, path: &JsonPath) -> JsonPath {
        let mut segments = Vec::with_capacity(path.segments.len() + 1);
        segments.push(first.to_owned());
        segments.extend(path.segments.iter().cloned());
        JsonPath {
            raw: format!("{first}.{}", path.raw),
            segments,
        }
    }

    /// A filter of clauses made from a validated filter's.
    pub(crate) fn filter(clauses: Vec<(JsonPath, Value)>) -> Filter {
        Filter(clauses)
    }
}

/// Checks size, depth and U+0000 of a JSON value.
fn check_json(field: &Field, value: &Value, max_bytes: usize) -> Result<()> {
    check_strings_and_depth(field, value, 0)?;
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value)
        .map_err(|e| Error::invalid(field.clone(), format!("cannot be serialized: {e}")))?;
    if counter.0 > max_bytes {
        return Err(Error::invalid(
            field.clone(),
            format!(
                "is {} bytes serialized; at most {max_bytes} are allowed",
                counter.0
            ),
        ));
    }
    Ok(())
}

fn check_strings_and_depth(field: &Field, value: &Value, depth: usize) -> Result<()> {
    match value {
        Value::String(s) if s.contains('\0') => Err(Error::invalid(
            field.clone(),
            "strings must not contain U+0000",
        )),
        Value::Array(items) => {
            nested(field, depth)?;
            items
                .iter()
                .try_for_each(|v| check_strings_and_depth(field, v, depth + 1))
        }
        Value::Object(map) => {
            nested(field, depth)?;
            map.iter().try_for_each(|(k, v)| {
                if k.contains('\0') {
                    return Err(Error::invalid(
                        field.clone(),
                        "object keys must not contain U+0000",
                    ));
                }
                check_strings_and_depth(field, v, depth + 1)
            })
        }
        _ => Ok(()),
    }
}

fn nested(field: &Field, depth: usize) -> Result<()> {
    if depth >= MAX_JSON_DEPTH {
        return Err(Error::invalid(
            field.clone(),
            format!("nests deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    Ok(())
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
