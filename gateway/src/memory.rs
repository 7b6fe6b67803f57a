//! Building the memory service from `[embeddings]`: the embedder the configuration names (the
//! builtin model from its directory, an OpenAI-compatible server, or none), the token counter
//! that matches it, and the limits.

use std::path::Path;
use std::sync::Arc;

use p8fs_core::{Backend, Clock, Embedder};
use p8fs_embed::{BuiltinEmbedder, MAX_SEQ_LEN, OpenAiEmbedder, OpenAiOptions, WordPieceCounter};
use p8fs_memory::{Limits, Memory};
use p8fs_text::{ApproximateCounter, TokenCounter};

use crate::config::{Config, EmbeddingsProvider};

/// The files of a builtin model directory.
pub const MODEL_FILES: [&str; 3] = [
    p8fs_embed::MODEL_FILE,
    p8fs_embed::TOKENIZER_FILE,
    p8fs_embed::CONFIG_FILE,
];

/// The memory service, or `None` when embeddings are off (configured so, or left unset with no
/// model installed: then a warning says how to install one).
pub async fn build(
    config: &Config,
    backend: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<Memory>>, String> {
    let section = &config.embeddings;
    let model_dir = section.model_dir(&config.data_dir);
    let provider = match section.provider {
        Some(provider) => provider,
        None if installed(&model_dir) => EmbeddingsProvider::Builtin,
        None => {
            tracing::warn!(
                model_dir = %model_dir.display(),
                "embeddings are off: no model in embeddings.model_dir; install one with \
                 `p8fs models install`, or set [embeddings] provider"
            );
            return Ok(None);
        }
    };
    let (embedder, counter): (Arc<dyn Embedder>, Arc<dyn TokenCounter + Send + Sync>) =
        match provider {
            EmbeddingsProvider::None => return Ok(None),
            EmbeddingsProvider::Builtin => {
                if section.chunk_tokens > MAX_SEQ_LEN - 2 {
                    return Err(format!(
                        "embeddings.chunk_tokens: the builtin model takes at most {} tokens",
                        MAX_SEQ_LEN - 2
                    ));
                }
                let dir = model_dir.clone();
                let threads = section.threads;
                let loaded = tokio::task::spawn_blocking(move || {
                    let embedder = BuiltinEmbedder::load(&dir)?.with_threads(threads)?;
                    let counter = WordPieceCounter::load(&dir)?;
                    Ok::<_, p8fs_core::Error>((embedder, counter))
                })
                .await
                .map_err(|e| format!("loading the embedding model: {e}"))?
                .map_err(|e| {
                    format!(
                        "embeddings.model_dir {}: {e} (install the model with `p8fs models install`)",
                        model_dir.display()
                    )
                })?;
                let (embedder, counter) = loaded;
                let counter = move |text: &str| counter.count(text);
                (Arc::new(embedder), Arc::new(counter))
            }
            EmbeddingsProvider::Openai => {
                let mut options = OpenAiOptions::new(
                    section.url.clone().unwrap_or_default(),
                    section.model.clone().unwrap_or_default(),
                );
                options.api_key = section
                    .api_key
                    .as_ref()
                    .map(|key| key.expose().to_owned())
                    .or_else(OpenAiOptions::api_key_from_env);
                options.dimension = section.dimension;
                let embedder = OpenAiEmbedder::connect(options)
                    .await
                    .map_err(|e| format!("embeddings (provider = \"openai\"): {e}"))?;
                (Arc::new(embedder), Arc::new(ApproximateCounter))
            }
        };
    let limits = Limits {
        max_memory_bytes: section.max_memory_bytes,
        max_text_bytes: section.max_text_bytes,
        max_input_bytes: section.max_input_bytes,
        max_chunks: section.max_chunks,
        chunk_tokens: section.chunk_tokens,
        overlap_tokens: section.overlap_tokens,
    };
    let memory = Memory::new(backend, embedder, counter, clock, limits)
        .map_err(|e| format!("embeddings: {e}"))?;
    tracing::info!(collection = %memory.collection().as_str(), "embeddings on");
    Ok(Some(Arc::new(memory)))
}

/// Whether `dir` holds the builtin model's three files.
pub fn installed(dir: &Path) -> bool {
    MODEL_FILES.iter().all(|file| dir.join(file).is_file())
}
