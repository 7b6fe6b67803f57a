//! Search by meaning: the query is embedded and the contract's vector search finds the nearest
//! chunks (exactly by default, or approximately: [`Query::mode`]); a chunk is returned only while
//! its source record names its generation (see the crate documentation), so a search never sees
//! half of a replacement or a deleted source.

use std::collections::HashMap;

use p8fs_core::vector::{SearchMode, search_with as vector_search};
use p8fs_core::{
    BucketName, Error, ErrorKind, Filter, JsonMap, Key, Limit, Result, TenantId, validate::MAX_K,
};
use serde_json::{Value, json};

use crate::Memory;
use crate::index::IndexRecord;
use crate::memories::check_tag;

/// What kind of source a chunk comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Memory,
    Object,
}

impl SourceKind {
    /// `memory` or `object`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Memory => "memory",
            SourceKind::Object => "object",
        }
    }

    /// Parses `memory` or `object`, naming `field` otherwise.
    pub fn parse(field: &'static str, value: &str) -> Result<Self> {
        match value {
            "memory" => Ok(SourceKind::Memory),
            "object" => Ok(SourceKind::Object),
            _ => Err(Error::invalid(field, "must be `memory` or `object`")),
        }
    }
}

/// A search.
#[derive(Clone, Debug)]
pub struct Query {
    /// What to look for, in plain words.
    pub text: String,
    pub k: Limit,
    /// Only chunks of this kind of source.
    pub source: Option<SourceKind>,
    /// Only chunks of objects in this bucket.
    pub bucket: Option<BucketName>,
    /// Only chunks of memories carrying every one of these tags.
    pub tags: Vec<String>,
    /// Only chunks of memories whose metadata holds these values at these dot paths.
    pub metadata: Vec<(String, Value)>,
    /// How the nearest chunks are found: exactly (the default), or approximately from the
    /// backend's graph index where it keeps one (see [`SearchMode`]).
    pub mode: SearchMode,
}

/// Where a found chunk comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    Memory { id: String },
    Object { bucket: String, key: String },
}

/// A chunk found by a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Cosine similarity to the query, in [-1, 1]; higher is nearer.
    pub score: f64,
    pub text: String,
    pub origin: Origin,
    /// The chunk's position among its source's chunks, and their number.
    pub chunk: u64,
    pub chunks: u64,
    /// The chunk's byte range in its source's (extracted) text.
    pub start: u64,
    pub end: u64,
    pub tags: Vec<String>,
    pub metadata: JsonMap,
}

/// The longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

impl Memory {
    /// The `k` chunks nearest to the query's meaning among the visible ones, nearest first.
    pub async fn search(&self, tenant: &TenantId, query: &Query) -> Result<Vec<Found>> {
        if query.text.is_empty() {
            return Err(Error::invalid("q", "must not be empty"));
        }
        if query.text.len() > MAX_QUERY_BYTES {
            return Err(Error::invalid(
                "q",
                format!("at most {MAX_QUERY_BYTES} bytes are allowed"),
            ));
        }
        let filter = filter(query)?;
        let mut vectors = self
            .embedder
            .embed(std::slice::from_ref(&query.text))
            .await?;
        let vector = vectors
            .pop()
            .ok_or_else(|| Error::internal("the embedder returned no vector", None))?;

        let k = query.k.get();
        // Chunks of replaced or deleted sources may rank among the nearest until they are
        // removed: ask for more than k, and for more again while they crowd the answer.
        let mut asked = (k * 2 + 8).min(MAX_K as usize);
        let mut sources = HashMap::new();
        loop {
            let hits = match vector_search(
                self.backend.as_ref(),
                tenant,
                &self.spec.name,
                vector.clone(),
                Limit::new(asked as u64)?,
                &filter,
                query.mode,
            )
            .await
            {
                Ok(hits) => hits,
                // No collection: nothing was ever stored.
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let exhausted = hits.len() < asked;
            let mut found = Vec::with_capacity(k);
            for hit in hits {
                let Some(record) = hit.metadata.get("record").and_then(Value::as_str) else {
                    continue;
                };
                let generation = hit.metadata.get("generation").and_then(Value::as_str);
                let current = match sources.get(record) {
                    Some(current) => current,
                    None => {
                        let current = self.current_generation(tenant, record).await?;
                        sources.entry(record.to_owned()).or_insert(current)
                    }
                };
                if current.is_none() || current.as_deref() != generation {
                    continue;
                }
                found.push(to_found(1.0 - hit.distance, hit.metadata));
                if found.len() == k {
                    return Ok(found);
                }
            }
            if exhausted || asked >= MAX_K as usize {
                return Ok(found);
            }
            asked = (asked * 4).min(MAX_K as usize);
        }
    }

    /// The generation a source record makes visible, if it exists and is indexed.
    async fn current_generation(&self, tenant: &TenantId, record: &str) -> Result<Option<String>> {
        let Ok(key) = Key::new(record) else {
            return Ok(None);
        };
        let Some(entry) = self.backend.get(tenant, &key).await? else {
            return Ok(None);
        };
        if record.starts_with(crate::memories::MEMORY_PREFIX) {
            return Ok(Some("g1".to_owned()));
        }
        Ok(serde_json::from_value::<IndexRecord>(entry.value)
            .ok()
            .filter(|index| index.state == crate::IndexState::Indexed)
            .map(|index| index.generation))
    }
}

/// The most tags and metadata equalities a search may name (with `source` and `bucket`, the
/// contract's 16 filter clauses).
pub const MAX_QUERY_TAGS: usize = 8;
pub const MAX_QUERY_METADATA: usize = 6;

/// The filter of a query: every condition must hold, so conditions no chunk can meet together
/// (`source=object` with a tag, say) simply find nothing.
fn filter(query: &Query) -> Result<Filter> {
    if query.tags.len() > MAX_QUERY_TAGS {
        return Err(Error::invalid(
            "tags",
            format!("at most {MAX_QUERY_TAGS} tags are allowed"),
        ));
    }
    if query.metadata.len() > MAX_QUERY_METADATA {
        return Err(Error::invalid(
            "metadata",
            format!("at most {MAX_QUERY_METADATA} equalities are allowed"),
        ));
    }
    let mut clauses: Vec<(String, Value)> = Vec::new();
    if let Some(source) = query.source {
        clauses.push(("source".into(), json!(source.as_str())));
    }
    if let Some(bucket) = &query.bucket {
        clauses.push(("bucket".into(), json!(bucket.as_str())));
    }
    for (i, tag) in query.tags.iter().enumerate() {
        check_tag(&format!("tags[{i}]"), tag)?;
        clauses.push((format!("tags.{tag}"), json!(true)));
    }
    for (path, value) in &query.metadata {
        clauses.push((format!("metadata.{path}"), value.clone()));
    }
    Filter::new(clauses)
}

fn to_found(score: f64, metadata: JsonMap) -> Found {
    let text = |name: &str| {
        metadata
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let number = |name: &str| metadata.get(name).and_then(Value::as_u64).unwrap_or(0);
    let origin = if metadata.get("source").and_then(Value::as_str) == Some("object") {
        Origin::Object {
            bucket: text("bucket"),
            key: text("key"),
        }
    } else {
        Origin::Memory { id: text("memory") }
    };
    let tags = match metadata.get("tags") {
        Some(Value::Object(tags)) => tags.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let user = match metadata.get("metadata") {
        Some(Value::Object(user)) => user.clone(),
        _ => JsonMap::new(),
    };
    Found {
        score,
        text: text("text"),
        origin,
        chunk: number("chunk"),
        chunks: number("chunks"),
        start: number("start"),
        end: number("end"),
        tags,
        metadata: user,
    }
}
