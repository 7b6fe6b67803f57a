//! Domain types. Identifier newtypes can only be built through the constructors in
//! [`crate::validate`], so a backend never receives unvalidated input.

use std::fmt;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch.
pub type Timestamp = i64;

/// A JSON object: vector metadata, node and edge properties.
pub type JsonMap = Map<String, Value>;

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub(crate) String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The validated text, as raw UTF-8 bytes (the order every listing uses).
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }

            /// The validated text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_newtype!(
    /// A tenant id: `[a-z0-9][a-z0-9_-]{0,62}`.
    TenantId
);
text_newtype!(
    /// A key-value key: 1..=1024 bytes of UTF-8 without U+0000.
    Key
);
text_newtype!(
    /// A key prefix for scans: 0..=1024 bytes of UTF-8 without U+0000.
    KeyPrefix
);
text_newtype!(
    /// A bucket name, by S3's naming rules: 3..=63 bytes of `[a-z0-9.-]`, starting and ending
    /// with a letter or digit, no `..`, not an IPv4 address, no `xn--` / `sthree-` prefix and no
    /// `-s3alias` / `--ol-s3` suffix.
    BucketName
);
text_newtype!(
    /// An object key: 1..=1024 bytes of UTF-8 without U+0000.
    ObjectKey
);
text_newtype!(
    /// An object key prefix for listings: 0..=1024 bytes of UTF-8 without U+0000.
    ObjectPrefix
);
text_newtype!(
    /// A vector collection name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
    CollectionName
);
text_newtype!(
    /// A vector record id: 1..=256 bytes of UTF-8 without U+0000.
    RecordId
);
text_newtype!(
    /// A graph node id: 1..=256 bytes of UTF-8 without U+0000.
    NodeId
);
text_newtype!(
    /// A node label: 1..=128 bytes of UTF-8 without U+0000.
    Label
);
text_newtype!(
    /// An edge relation name: 1..=128 bytes of UTF-8 without U+0000.
    Rel
);

/// A record version: opaque, strictly increasing per key for the life of a store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A time to live, 1 ms ..= 100 years.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Ttl(pub(crate) i64);

impl Ttl {
    /// The ttl in milliseconds.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// The expiry of a record written at `now` with this ttl.
    pub fn expires_at(self, now: Timestamp) -> Timestamp {
        now.saturating_add(self.0)
    }
}

/// The expiry of a record written at `now` with an optional ttl; `None` is forever.
pub fn expires_at(now: Timestamp, ttl: Option<Ttl>) -> Option<Timestamp> {
    ttl.map(|t| t.expires_at(now))
}

/// Whether a record with this expiry is visible at `now` (visible exactly while `now < expires_at`).
pub fn is_visible(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|e| now < e)
}

/// A page size or result limit, 1..=1000.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Limit(pub(crate) u32);

impl Limit {
    /// The largest page the contract allows.
    pub const MAX: Limit = Limit(crate::validate::MAX_PAGE_SIZE);

    /// The limit as a count.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// A vector dimension, 1..=4096.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Dimension(pub(crate) u32);

impl Dimension {
    /// The dimension as a count.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// A distance metric, as pgvector defines it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Metric {
    /// `1 - cos(a, b)`.
    Cosine,
    /// Euclidean distance (not squared).
    L2,
    /// `-(a · b)`.
    Dot,
}

impl Metric {
    /// The metric's name in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Dot => "dot",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vector collection: name, dimension and metric.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CollectionSpec {
    pub name: CollectionName,
    pub dimension: Dimension,
    pub metric: Metric,
}

/// A JSON value admitted by the contract (no U+0000 in strings, bounded size and depth).
#[derive(Clone, PartialEq, Debug)]
pub struct JsonValue(pub(crate) Value);

impl JsonValue {
    /// The value.
    pub fn get(&self) -> &Value {
        &self.0
    }

    /// The value, owned.
    pub fn into_inner(self) -> Value {
        self.0
    }
}

/// The text of one JSON value, checked to parse: a stored value handed on as it is, without
/// building a [`Value`] only to write it out again (a REST read answers it unchanged).
#[derive(Clone, Debug)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// `text` if it is one JSON value; `Internal` naming `what` otherwise. For text read back
    /// from a store, which was valid when written: text that does not parse is corrupt.
    pub fn stored(text: String, what: &str) -> crate::error::Result<Self> {
        // A pass over the text that builds nothing.
        RawValue::from_string(text).map(Self).map_err(|e| {
            crate::error::Error::internal(format!("a stored {what} is not JSON"), Some(e.into()))
        })
    }

    /// The compact text of `value`, as `serde_json` writes it.
    pub fn of(value: &Value) -> Self {
        // Writing a `Value` cannot fail: its object keys are strings.
        Self(serde_json::value::to_raw_value(value).unwrap_or_else(|_| unreachable!()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The text as `serde_json` writes it into a document, verbatim.
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        String::from(Box::<str>::from(self.0))
    }

    /// The value the text holds.
    pub fn parse(&self) -> crate::error::Result<Value> {
        serde_json::from_str(self.as_str()).map_err(|e| {
            crate::error::Error::internal("stored JSON does not parse", Some(e.into()))
        })
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for JsonText {}

/// A JSON object admitted by the contract (metadata, properties): at most 64 KiB serialized.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct JsonObject(pub(crate) JsonMap);

impl JsonObject {
    /// The object.
    pub fn get(&self) -> &JsonMap {
        &self.0
    }

    /// The object, owned.
    pub fn into_inner(self) -> JsonMap {
        self.0
    }
}

/// A dot path into a JSON value: object keys only, no array indexing.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct JsonPath {
    pub(crate) raw: String,
    pub(crate) segments: Vec<String>,
}

impl JsonPath {
    /// The path as written (`a.b.c`).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The object keys the path walks.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

/// A conjunction of metadata equalities, `path == value` each.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Filter(pub(crate) Vec<(JsonPath, Value)>);

impl Filter {
    /// The filter that accepts everything.
    pub fn none() -> Self {
        Self::default()
    }

    /// The clauses.
    pub fn clauses(&self) -> &[(JsonPath, Value)] {
        &self.0
    }

    /// Whether the filter accepts a JSON object under the contract's JSON equality.
    pub fn matches(&self, object: &JsonMap) -> bool {
        self.0
            .iter()
            .all(|(path, value)| crate::json::object_path_equals(object, path, value))
    }
}

/// A vector validated against a collection: exactly its dimension, finite values, and non-zero
/// for cosine collections.
#[derive(Clone, PartialEq, Debug)]
pub struct Embedding {
    pub(crate) values: Vec<f32>,
    pub(crate) metric: Metric,
}

impl Embedding {
    /// The components.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The dimension.
    pub fn dimension(&self) -> usize {
        self.values.len()
    }

    /// The metric of the collection it was validated for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether this embedding was validated for `spec`.
    pub fn fits(&self, spec: &CollectionSpec) -> bool {
        self.metric == spec.metric && self.values.len() == spec.dimension.get()
    }
}

/// A traversal depth: 1..=6 for neighbors, 1..=12 for shortest paths.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Depth(pub(crate) u32);

impl Depth {
    /// The depth in hops.
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// An edge weight: finite and greater than zero.
#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
pub struct Weight(pub(crate) f64);

impl Weight {
    /// The default weight, 1.
    pub const ONE: Weight = Weight(1.0);

    /// The weight.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A set of relations a traversal may follow; empty means all.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct RelFilter(pub(crate) Vec<Rel>);

impl RelFilter {
    /// The filter that accepts every relation.
    pub fn any() -> Self {
        Self::default()
    }

    /// The accepted relations, sorted and distinct; empty means all.
    pub fn rels(&self) -> &[Rel] {
        &self.0
    }

    /// Whether `rel` passes the filter.
    pub fn accepts(&self, rel: &Rel) -> bool {
        self.0.is_empty() || self.0.binary_search(rel).is_ok()
    }
}

/// One page of a listing. `next` is the cursor to pass as `start_after` for the following page;
/// it is `Some` exactly when more entries exist after this page.
#[derive(Clone, PartialEq, Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` items in order: the extra item only signals that more
    /// exist, and the cursor is the last item kept.
    pub fn from_overfetch(mut items: Vec<T>, limit: Limit, cursor: impl Fn(&T) -> C) -> Self {
        let more = items.len() > limit.get();
        items.truncate(limit.get());
        let next = if more { items.last().map(cursor) } else { None };
        Self { items, next }
    }
}
