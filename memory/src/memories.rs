//! Memories: notes stored by text, chunked and embedded, found by [`Memory::search`], removed
//! with all their chunks by [`Memory::forget`], and linked to each other in the graph.
//!
//! A memory's id is `m` and 28 hex digits: the creation time in milliseconds (12 digits, so ids
//! sort by age) and 64 random bits.

use std::collections::BTreeSet;

use p8fs_core::{
    Error, JsonMap, JsonObject, JsonValue, Key, KeyPrefix, Label, Limit, NodeId, Rel, Resource,
    Result, TenantId, Timestamp, Ttl, Weight,
};
use p8fs_text::chunk;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Memory;
use crate::source::{Generation, cut};

/// The prefix of memory records in a tenant's key space.
pub(crate) const MEMORY_PREFIX: &str = "p8fs.memory/";
/// The label of a memory's node.
pub(crate) const MEMORY_LABEL: &str = "memory";
/// A memory's only generation.
const GENERATION: &str = "g1";
/// The most tags a memory carries, and the longest tag in bytes.
pub const MAX_TAGS: usize = 32;
pub const MAX_TAG_BYTES: usize = 64;
/// The most bytes of a memory's metadata, serialized (it is copied into every chunk).
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// The shortest ttl of a memory, in milliseconds: one minute.
pub const MIN_MEMORY_TTL_MS: i64 = 60_000;
/// How much of a memory's text its graph node shows.
const PREVIEW_BYTES: usize = 200;

/// A memory to store.
#[derive(Clone, Debug, Default)]
pub struct NewMemory {
    pub text: String,
    pub metadata: JsonMap,
    pub tags: Vec<String>,
    pub ttl: Option<Ttl>,
}

/// A stored memory: its source record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryRecord {
    pub id: String,
    pub text: String,
    pub metadata: JsonMap,
    pub tags: Vec<String>,
    pub created_at: Timestamp,
    /// How many chunks the text became.
    pub chunks: usize,
    /// Whether text past the chunk limit was left out of the index.
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A page of memories, oldest first.
#[derive(Clone, Debug)]
pub struct MemoryPage {
    pub items: Vec<MemoryRecord>,
    pub next: Option<String>,
}

impl Memory {
    /// Stores a memory: validates it, chunks and embeds its text, writes the chunks and then
    /// the record that makes them visible.
    pub async fn remember(&self, tenant: &TenantId, memory: NewMemory) -> Result<MemoryRecord> {
        if memory.text.is_empty() {
            return Err(Error::invalid("text", "must not be empty"));
        }
        if memory.text.contains('\0') {
            return Err(Error::invalid("text", "must not contain U+0000"));
        }
        if memory
            .ttl
            .is_some_and(|ttl| ttl.as_millis() < MIN_MEMORY_TTL_MS)
        {
            return Err(Error::invalid(
                "ttl_ms",
                format!("must be at least {MIN_MEMORY_TTL_MS} (a minute)"),
            ));
        }
        if memory.text.len() > self.limits.max_memory_bytes {
            return Err(Error::invalid(
                "text",
                format!(
                    "is {} bytes; at most {} are allowed",
                    memory.text.len(),
                    self.limits.max_memory_bytes
                ),
            ));
        }
        let tags = validate_tags(memory.tags)?;
        let metadata = validate_metadata(memory.metadata)?;

        let chunked = chunk(
            &memory.text,
            self.counter.as_ref(),
            &self.limits.chunk_options(),
        );
        let vectors = self.embed_chunks(&chunked.chunks).await?;
        self.ensure_collection(tenant).await?;

        let now = self.clock.now();
        let id = new_id(now)?;
        let node = NodeId::new(id.as_str())?;
        let record = record_key(&id)?;
        let preview = cut(&memory.text, PREVIEW_BYTES);
        let properties = JsonObject::new(
            "properties",
            json!({"preview": preview, "tags": tags, "metadata": metadata, "created_at": now}),
        )?;
        self.backend
            .put_node(
                tenant,
                &node,
                &Label::new(MEMORY_LABEL)?,
                &properties,
                memory.ttl,
            )
            .await?;

        let mut base = JsonMap::new();
        base.insert("source".into(), json!("memory"));
        base.insert("memory".into(), json!(id));
        base.insert("tags".into(), tag_object(&tags));
        base.insert("metadata".into(), Value::Object(metadata.clone()));
        let generation = Generation {
            node: &node,
            record: record.as_str(),
            generation: GENERATION,
            base: &base,
            ttl: memory.ttl,
        };
        self.write_chunks(tenant, &generation, &chunked.chunks, &vectors)
            .await?;

        let stored = MemoryRecord {
            id,
            text: memory.text,
            metadata,
            tags,
            created_at: now,
            chunks: chunked.chunks.len(),
            truncated: chunked.truncated,
            expires_at: memory.ttl.map(|ttl| ttl.expires_at(now)),
        };
        let value = JsonValue::new(serde_json::to_value(&stored).map_err(internal)?)?;
        self.backend
            .put_if_absent(tenant, &record, &value, memory.ttl)
            .await?;
        Ok(stored)
    }

    /// The memory `id`, or `NotFound`.
    pub async fn memory(&self, tenant: &TenantId, id: &str) -> Result<MemoryRecord> {
        let key = record_key(id)?;
        let entry = self
            .backend
            .get(tenant, &key)
            .await?
            .ok_or_else(|| Error::not_found(Resource::Memory, id))?;
        serde_json::from_value(entry.value).map_err(internal)
    }

    /// Memories oldest first, after the id `start_after`.
    pub async fn memories(
        &self,
        tenant: &TenantId,
        start_after: Option<&str>,
        limit: Limit,
    ) -> Result<MemoryPage> {
        let prefix = KeyPrefix::new(MEMORY_PREFIX)?;
        let start_after = start_after.map(record_key).transpose()?;
        let page = self
            .backend
            .scan(tenant, &prefix, start_after.as_ref(), limit)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|entry| serde_json::from_value(entry.value).map_err(internal))
            .collect::<Result<Vec<MemoryRecord>>>()?;
        let next = page
            .next
            .map(|key| key.as_str()[MEMORY_PREFIX.len()..].to_owned());
        Ok(MemoryPage { items, next })
    }

    /// Removes a memory and all its chunks; `NotFound` if there is none.
    pub async fn forget(&self, tenant: &TenantId, id: &str) -> Result<()> {
        let stored = self.memory(tenant, id).await?;
        let key = record_key(id)?;
        // The record first: every chunk is invisible from here on.
        self.backend.delete(tenant, &key).await?;
        let node = NodeId::new(id)?;
        self.remove_chunks(tenant, &node, GENERATION, stored.chunks)
            .await?;
        self.backend.delete_node(tenant, &node).await?;
        Ok(())
    }

    /// Links memory `from` to memory `to` with `rel` (`link` when none); both must exist.
    /// (A memory's `has_chunk` edges lead to its chunks; a link named so leads to a memory.)
    pub async fn link(
        &self,
        tenant: &TenantId,
        from: &str,
        to: &str,
        rel: Option<&str>,
        weight: Option<f64>,
    ) -> Result<()> {
        self.memory(tenant, from).await?;
        // The path's memory missing is a 404; the body's target missing is a conflict with what
        // is stored, not a missing resource of this request.
        if let Err(e) = self.memory(tenant, to).await {
            return Err(if e.kind() == p8fs_core::ErrorKind::NotFound {
                Error::conflict(format!("the memory `to` ({to}) does not exist"))
            } else {
                e
            });
        }
        let rel = Rel::new(rel.unwrap_or("link"))?;
        self.backend
            .put_edge(
                tenant,
                &NodeId::new(from)?,
                &rel,
                &NodeId::new(to)?,
                Weight::new(weight.unwrap_or(1.0))?,
                &JsonObject::empty(),
                None,
            )
            .await
    }
}

/// The key of a memory's record; the id must look like one of ours.
/// The key-value record of memory `id` (its changes in the change log are the memory's).
pub fn record_key(id: &str) -> Result<Key> {
    let well_formed = id.len() == 29
        && id.starts_with('m')
        && id[1..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(Error::invalid(
            "id",
            "is not a memory id (`m` and 28 lower-case hex digits)",
        ));
    }
    Key::new(format!("{MEMORY_PREFIX}{id}"))
}

fn new_id(now: Timestamp) -> Result<String> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random)
        .map_err(|e| Error::internal("no randomness for a memory id", Some(Box::new(e) as _)))?;
    let millis = u64::try_from(now).unwrap_or(0) & 0xffff_ffff_ffff;
    Ok(format!("m{millis:012x}{:016x}", u64::from_be_bytes(random)))
}

fn validate_tags(tags: Vec<String>) -> Result<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid(
            "tags",
            format!("at most {MAX_TAGS} tags are allowed"),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        check_tag(&format!("tags[{i}]"), tag)?;
        seen.insert(tag.clone());
    }
    Ok(seen.into_iter().collect())
}

/// A tag: 1..=64 bytes, no `.` (tags are filter paths), no control characters.
pub(crate) fn check_tag(field: &str, tag: &str) -> Result<()> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(Error::invalid(
            field.to_owned(),
            format!("must be 1..={MAX_TAG_BYTES} bytes"),
        ));
    }
    if tag.chars().any(|c| c == '.' || c.is_control()) {
        return Err(Error::invalid(
            field.to_owned(),
            "must not contain `.` or control characters",
        ));
    }
    Ok(())
}

fn validate_metadata(metadata: JsonMap) -> Result<JsonMap> {
    let size = serde_json::to_vec(&metadata).map_err(internal)?.len();
    if size > MAX_METADATA_BYTES {
        return Err(Error::invalid(
            "metadata",
            format!("is {size} bytes serialized; at most {MAX_METADATA_BYTES} are allowed"),
        ));
    }
    Ok(JsonObject::new("metadata", Value::Object(metadata))?.into_inner())
}

/// Tags as the chunks carry them, `{"tag": true}`, so a filter can ask for one by path.
pub(crate) fn tag_object(tags: &[String]) -> Value {
    Value::Object(tags.iter().map(|tag| (tag.clone(), json!(true))).collect())
}

pub(crate) fn internal(e: serde_json::Error) -> Error {
    Error::internal("a memory record did not serialize", Some(Box::new(e) as _))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_well_formed_and_sort_by_time() {
        let a = new_id(1_700_000_000_000).unwrap_or_default();
        let b = new_id(1_700_000_000_001).unwrap_or_default();
        assert!(record_key(&a).is_ok(), "{a}");
        assert!(a < b);
        assert!(record_key("m123").is_err());
        assert!(record_key("../etc/passwd").is_err());
    }

    #[test]
    fn tags_are_checked_and_deduplicated() {
        let tags = validate_tags(vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(tags.ok(), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert!(validate_tags(vec!["a.b".into()]).is_err());
        assert!(validate_tags(vec![String::new()]).is_err());
        assert!(validate_tags(vec!["x".into(); 33]).is_err());
    }
}
