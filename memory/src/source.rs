//! Writing and removing one generation of a source's chunks: a vector and a graph node per
//! chunk, an edge from the source's node to each, all with the source's ttl. The caller writes
//! the source record (the switch that makes them visible) after [`Memory::write_chunks`] and
//! removes it before [`Memory::remove_chunks`].

use p8fs_core::{
    Embedding, Error, ErrorKind, JsonMap, JsonObject, Label, NodeId, RecordId, Rel, Result,
    TenantId, Ttl, Weight,
};
use p8fs_text::Chunk;
use serde_json::{Value, json};

use crate::Memory;

/// The relation from a source's node to its chunks' nodes.
pub(crate) const HAS_CHUNK: &str = "has_chunk";
/// The label of a chunk's node.
pub(crate) const CHUNK_LABEL: &str = "chunk";
/// The most bytes of a chunk's text kept in its record (a chunk of 254 tokens is rarely over
/// 2 KiB, but a token may stand for a long unknown word).
const MAX_STORED_TEXT: usize = 16 * 1024;

/// One generation of a source, as its chunks name it.
pub(crate) struct Generation<'a> {
    /// The source's graph node (a memory's id, `o.<hash>` for an object).
    pub(crate) node: &'a NodeId,
    /// The key of the source record.
    pub(crate) record: &'a str,
    pub(crate) generation: &'a str,
    /// What every chunk's metadata carries about its source (kind, ids, tags, metadata).
    pub(crate) base: &'a JsonMap,
    pub(crate) ttl: Option<Ttl>,
}

/// The id of chunk `index` of a generation: also its graph node's id.
pub(crate) fn chunk_id(node: &NodeId, generation: &str, index: usize) -> Result<RecordId> {
    RecordId::new(format!("{}.{generation}.{index}", node.as_str()))
}

impl Memory {
    /// Makes sure the tenant has the chunks' collection.
    pub(crate) async fn ensure_collection(&self, tenant: &TenantId) -> Result<()> {
        self.backend
            .create_collection(tenant, &self.spec)
            .await
            .map(drop)
    }

    /// Embeds the chunks' texts.
    pub(crate) async fn embed_chunks(&self, chunks: &[Chunk]) -> Result<Vec<Embedding>> {
        let texts: Vec<String> = chunks.iter().map(|chunk| chunk.text.clone()).collect();
        let vectors = self.embedder.embed(&texts).await?;
        if vectors.len() != texts.len() {
            return Err(Error::internal(
                format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    texts.len()
                ),
                None,
            ));
        }
        vectors
            .into_iter()
            .map(|vector| {
                Embedding::new("vector", &self.spec, vector).map_err(|e| {
                    Error::internal(
                        format!("the embedder returned an unusable vector: {e}"),
                        None,
                    )
                })
            })
            .collect()
    }

    /// Writes a generation's chunks; the source's node must exist.
    pub(crate) async fn write_chunks(
        &self,
        tenant: &TenantId,
        source: &Generation<'_>,
        chunks: &[Chunk],
        vectors: &[Embedding],
    ) -> Result<()> {
        let label = Label::new(CHUNK_LABEL)?;
        let rel = Rel::new(HAS_CHUNK)?;
        let weight = Weight::new(1.0)?;
        for (index, (chunk, vector)) in chunks.iter().zip(vectors).enumerate() {
            let id = chunk_id(source.node, source.generation, index)?;
            let mut metadata = source.base.clone();
            metadata.insert("record".into(), json!(source.record));
            metadata.insert("generation".into(), json!(source.generation));
            metadata.insert("chunk".into(), json!(index));
            metadata.insert("chunks".into(), json!(chunks.len()));
            metadata.insert("start".into(), json!(chunk.start));
            metadata.insert("end".into(), json!(chunk.end));
            metadata.insert("text".into(), json!(cut(&chunk.text, MAX_STORED_TEXT)));
            let metadata = JsonObject::new("metadata", Value::Object(metadata))?;
            let result = self
                .backend
                .upsert_vector(tenant, &self.spec.name, &id, vector, &metadata, source.ttl)
                .await;
            match result {
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // The collection was dropped under us: make it again, once.
                    self.ensure_collection(tenant).await?;
                    self.backend
                        .upsert_vector(tenant, &self.spec.name, &id, vector, &metadata, source.ttl)
                        .await?;
                }
                other => other?,
            }
            let node = NodeId::new(id.as_str())?;
            let properties = JsonObject::new(
                "properties",
                json!({"source": source.node.as_str(), "chunk": index}),
            )?;
            self.backend
                .put_node(tenant, &node, &label, &properties, source.ttl)
                .await?;
            self.backend
                .put_edge(
                    tenant,
                    source.node,
                    &rel,
                    &node,
                    weight,
                    &JsonObject::empty(),
                    source.ttl,
                )
                .await?;
        }
        Ok(())
    }

    /// Removes chunks `0..count` of a generation (their vectors and nodes, edges with them).
    pub(crate) async fn remove_chunks(
        &self,
        tenant: &TenantId,
        node: &NodeId,
        generation: &str,
        count: usize,
    ) -> Result<()> {
        for index in 0..count {
            let id = chunk_id(node, generation, index)?;
            match self
                .backend
                .delete_vector(tenant, &self.spec.name, &id)
                .await
            {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => drop(other?),
            }
            self.backend
                .delete_node(tenant, &NodeId::new(id.as_str())?)
                .await?;
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub(crate) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
