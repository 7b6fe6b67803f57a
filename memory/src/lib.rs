//! p8fs-memory: what a tenant stores becomes searchable by meaning.
//!
//! Two kinds of *source* are chunked ([`p8fs_text::chunk`]), embedded (an
//! [`p8fs_core::Embedder`]) and stored as vectors of one per-tenant collection:
//! - **memories**, notes stored through [`Memory::remember`] (text, tags, metadata, ttl);
//! - **objects** uploaded through S3 or REST, indexed by [`Memory::index_object`] (the ingest
//!   worker calls it for every object change of the change log).
//!
//! Everything is ordinary records of the backend contract, so it works the same on every
//! backend and the graph operations see it too:
//! - the collection `memory.<model>.<dimension>` (cosine) holds one vector per chunk, with the
//!   chunk's text, position and its source's tags and metadata as the record's metadata;
//! - a graph node per source (label `memory` or `object`) and per chunk (label `chunk`), and an
//!   edge `has_chunk` from each source to each of its chunks; memories may `link` to each other;
//! - a key-value record per source, the *source record*: `p8fs.memory/<id>` for a memory (its
//!   text, tags, metadata), `p8fs.index/<hash of bucket and key>` for an object (its index
//!   status). These two prefixes of a tenant's key space are p8fs's.
//!
//! **Visibility.** A chunk belongs to a *generation* of its source (a memory has one; an object
//! one per stored version, derived from its ETag and last-modified time). Chunks are written
//! first and the source record last, naming the generation, so the record is the switch: a
//! search returns a chunk only when its source record exists and names its generation. A
//! re-upload is therefore replaced atomically from a reader's point of view (the old chunks until
//! the new record is written, then only the new ones), an interrupted write leaves nothing
//! visible, and deleting the record hides every chunk at once before they are removed.
//! Chunks and records carry their source's ttl, so a chunk never outlives its source.

mod index;
mod memories;
mod search;
mod source;

use std::sync::Arc;

use p8fs_core::{Backend, Clock, CollectionName, CollectionSpec, Embedder, Error, Metric, Result};
use p8fs_text::{ChunkOptions, Limits as TextLimits, TokenCounter};

pub use index::{CLIENT_HELD_KEY, IndexState, IndexStatus, extraction_input};
pub use memories::{
    MAX_METADATA_BYTES, MAX_TAG_BYTES, MAX_TAGS, MIN_MEMORY_TTL_MS, MemoryPage, MemoryRecord,
    NewMemory, record_key,
};
pub use search::{
    Found, MAX_QUERY_BYTES, MAX_QUERY_METADATA, MAX_QUERY_TAGS, Origin, Query, SourceKind,
};

/// Limits of what is indexed, all configurable (`[embeddings]`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// The longest memory text, in bytes (default 64 KiB); a longer one is refused.
    pub max_memory_bytes: usize,
    /// The most text extracted from one object, in bytes (default 2 MiB); the rest is not
    /// indexed and the object's status says `truncated`.
    pub max_text_bytes: usize,
    /// The largest PDF or JSON object read whole to extract its text (default 64 MiB); a larger
    /// one fails as `too_large`.
    pub max_input_bytes: usize,
    /// The most chunks of one source (default 2,000); the rest is not indexed (`truncated`).
    pub max_chunks: usize,
    /// Tokens per chunk (default 254: the builtin model's 256 minus `[CLS]` and `[SEP]`).
    pub chunk_tokens: usize,
    /// Tokens a chunk repeats from the end of the previous one (default 32).
    pub overlap_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 * 1024,
            max_text_bytes: 2 * 1024 * 1024,
            max_input_bytes: 64 * 1024 * 1024,
            max_chunks: 2000,
            chunk_tokens: 254,
            overlap_tokens: 32,
        }
    }
}

impl Limits {
    fn chunk_options(&self) -> ChunkOptions {
        ChunkOptions {
            max_tokens: self.chunk_tokens,
            overlap_tokens: self.overlap_tokens,
            max_chunks: self.max_chunks,
        }
    }

    /// The text extraction limits (what indexing reads and keeps of an object).
    pub fn text_limits(&self) -> TextLimits {
        TextLimits {
            max_text_bytes: self.max_text_bytes,
            max_input_bytes: self.max_input_bytes,
        }
    }
}

/// Memories and semantic search over one backend with one embedder.
#[derive(Clone)]
pub struct Memory {
    backend: Arc<dyn Backend>,
    embedder: Arc<dyn Embedder>,
    counter: Arc<dyn TokenCounter + Send + Sync>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    spec: CollectionSpec,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("model", &self.embedder.model())
            .field("collection", &self.spec.name.as_str())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Memory {
    /// `counter` counts tokens as the embedder's model does (chunks stay within its window).
    pub fn new(
        backend: Arc<dyn Backend>,
        embedder: Arc<dyn Embedder>,
        counter: Arc<dyn TokenCounter + Send + Sync>,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Result<Self> {
        limits
            .chunk_options()
            .validate()
            .map_err(|e| Error::invalid("embeddings.chunk_tokens", e.to_string()))?;
        let spec = CollectionSpec::new(
            collection_name(embedder.model(), embedder.dimension()),
            embedder.dimension() as u64,
            Metric::Cosine,
        )?;
        Ok(Memory {
            backend,
            embedder,
            counter,
            clock,
            limits,
            spec,
        })
    }

    /// The collection that holds the chunks' vectors in every tenant.
    pub fn collection(&self) -> &CollectionName {
        &self.spec.name
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// `memory.<model>.<dimension>`, the model's name reduced to the characters a collection name
/// allows: vectors of different models (or dimensions) never share a collection.
fn collection_name(model: &str, dimension: usize) -> String {
    let model: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(96)
        .collect();
    format!("memory.{model}.{dimension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_valid_for_any_model_name() {
        for model in [
            "all-MiniLM-L6-v2",
            "nomic-embed-text:latest",
            "ünïcode/model",
            "",
        ] {
            let name = collection_name(model, 384);
            assert!(CollectionName::new(name.clone()).is_ok(), "{name}");
        }
        assert_eq!(
            collection_name("all-MiniLM-L6-v2", 384),
            "memory.all-MiniLM-L6-v2.384"
        );
    }
}
