//! p8fs-embed: the builtin, offline embedder of p8fs, [`BuiltinEmbedder`].
//!
//! It runs sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions) on the CPU
//! with its own BERT encoder on candle-core (the `bert` module) and computes what
//! sentence-transformers computes:
//! - the text is tokenized with the model's `tokenizer.json` (BERT WordPiece, lower-cased) as
//!   `[CLS] … [SEP]`, truncated to [`MAX_SEQ_LEN`] tokens including those two (the model's
//!   `max_seq_length`);
//! - the token embeddings of the last layer are averaged over the text's tokens (mean pooling);
//! - the mean is divided by its L2 norm.
//!
//! Texts are embedded in batches of [`BATCH_SIZE`], longest first (as sentence-transformers
//! does), each batch on tokio's blocking pool; a semaphore bounds how many batches run at once
//! ([`BuiltinEmbedder::with_threads`], [`DEFAULT_THREADS`] by default), so embedding never blocks
//! the async runtime and never takes more than that many blocking threads. A batch's texts are
//! packed, not padded: each linear layer is one matrix product over all their tokens, and
//! attention runs per text. The matrix products are candle's (the `gemm` crate), which use
//! rayon's pool (one thread per core, or `RAYON_NUM_THREADS`).
//!
//! The model is read from a directory holding `model.safetensors`, `tokenizer.json` and
//! `config.json` (a sentence-transformers model directory has them); nothing is downloaded, and
//! the weights are read into memory (no memory map).

pub mod openai;
pub use openai::{OpenAiEmbedder, OpenAiOptions};
pub mod tokens;
pub use tokens::WordPieceCounter;
mod bert;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use p8fs_core::{Embedder, Error, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use tokio::sync::Semaphore;

use crate::bert::{Bert, Config};

/// The name [`Embedder::model`] reports.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The most tokens a text is embedded with, `[CLS]` and `[SEP]` included; the rest is cut off.
pub const MAX_SEQ_LEN: usize = 256;

/// How many texts one forward pass takes.
pub const BATCH_SIZE: usize = 32;

/// How many batches run at once unless [`BuiltinEmbedder::with_threads`] says otherwise.
pub const DEFAULT_THREADS: usize = 2;

/// The three files of a model directory.
pub const MODEL_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const CONFIG_FILE: &str = "config.json";

/// sentence-transformers' guards: the token count of mean pooling is at least 1e-9
/// (`torch.clamp(min=1e-9)`), and a norm at least 1e-12 (`F.normalize`'s `eps`).
const MIN_TOKEN_COUNT: f32 = 1e-9;
const MIN_NORM: f32 = 1e-12;

/// all-MiniLM-L6-v2 on the CPU: see the crate documentation.
#[derive(Clone)]
pub struct BuiltinEmbedder {
    model: Arc<Model>,
    permits: Arc<Semaphore>,
    threads: usize,
}

/// The loaded weights and tokenizer; shared by the blocking tasks.
struct Model {
    bert: Bert,
    tokenizer: Tokenizer,
    dimension: usize,
}

impl fmt::Debug for BuiltinEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltinEmbedder")
            .field("model", &MODEL_NAME)
            .field("dimension", &self.model.dimension)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl BuiltinEmbedder {
    /// Loads the model from `model_dir` (`model.safetensors`, `tokenizer.json`, `config.json`),
    /// with [`DEFAULT_THREADS`] threads. Errors name the file that is missing or unusable.
    ///
    /// This reads about 90 MB and builds the model: call it at startup, or on a blocking thread.
    pub fn load(model_dir: &Path) -> Result<Self> {
        let config: Config = serde_json::from_slice(&read(model_dir, CONFIG_FILE)?)
            .map_err(|e| corrupt(model_dir, CONFIG_FILE, e))?;
        if config.max_position_embeddings < MAX_SEQ_LEN {
            return Err(corrupt(
                model_dir,
                CONFIG_FILE,
                format!(
                    "max_position_embeddings is {}, fewer than the {MAX_SEQ_LEN} tokens a text may have",
                    config.max_position_embeddings
                ),
            ));
        }

        let mut tokenizer = Tokenizer::from_bytes(read(model_dir, TOKENIZER_FILE)?)
            .map_err(|e| corrupt(model_dir, TOKENIZER_FILE, e))?;
        // The file's own settings (all-MiniLM-L6-v2's pad every text to 128 tokens and cut it
        // there) are not what sentence-transformers uses: it cuts at max_seq_length. The
        // encoder packs a batch's texts instead of padding them.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQ_LEN,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| corrupt(model_dir, TOKENIZER_FILE, e))?;
        tokenizer.with_padding(None);

        let weights = read(model_dir, MODEL_FILE)?;
        let bert = Bert::load(&weights, &config).map_err(|e| {
            corrupt(
                model_dir,
                MODEL_FILE,
                format!("its weights do not match {CONFIG_FILE}: {e}"),
            )
        })?;

        Ok(BuiltinEmbedder {
            model: Arc::new(Model {
                bert,
                tokenizer,
                dimension: config.hidden_size,
            }),
            permits: Arc::new(Semaphore::new(DEFAULT_THREADS)),
            threads: DEFAULT_THREADS,
        })
    }

    /// The same model, running at most `threads` batches at once (at least 1).
    pub fn with_threads(self, threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(Error::invalid("threads", "must be at least 1"));
        }
        Ok(BuiltinEmbedder {
            model: self.model,
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        })
    }

    /// How many batches run at once.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

#[async_trait]
impl Embedder for BuiltinEmbedder {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn dimension(&self) -> usize {
        self.model.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        // Longest first, so each batch holds texts of similar length and pads little.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| Reverse(texts[i].len()));

        let mut tasks = Vec::with_capacity(order.len().div_ceil(BATCH_SIZE));
        for chunk in order.chunks(BATCH_SIZE) {
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .map_err(|e| Error::unavailable("the embedding pool is closed", boxed(e)))?;
            let model = Arc::clone(&self.model);
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                model.embed_batch(&batch)
            });
            tasks.push((chunk, task));
        }

        let mut vectors = vec![Vec::new(); texts.len()];
        for (chunk, task) in tasks {
            let batch = task
                .await
                .map_err(|e| Error::internal("an embedding task failed", boxed(e)))??;
            if batch.len() != chunk.len() {
                return Err(Error::internal(
                    format!(
                        "the model returned {} vectors for {} texts",
                        batch.len(),
                        chunk.len()
                    ),
                    None,
                ));
            }
            for (&i, vector) in chunk.iter().zip(batch) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }
}

impl Model {
    /// One forward pass over `texts`: their unit-length mean-pooled embeddings, in order.
    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| Error::internal("tokenizing failed", Some(e)))?;
        if encodings.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::new();
        let mut type_ids = Vec::new();
        let mut lens = Vec::with_capacity(encodings.len());
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            type_ids.extend_from_slice(encoding.get_type_ids());
            lens.push(encoding.len());
        }
        let hidden = self
            .bert
            .forward(&ids, &type_ids, &lens)
            .and_then(|hidden| hidden.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| Error::internal("the embedding model failed", boxed(e)))?;

        let mut vectors = Vec::with_capacity(lens.len());
        let mut tokens = hidden.chunks_exact(self.dimension);
        for &len in &lens {
            // Mean pooling over the text's tokens (none is padding), then L2 normalisation.
            let mut mean = vec![0f32; self.dimension];
            for token in tokens.by_ref().take(len) {
                for (m, t) in mean.iter_mut().zip(token) {
                    *m += t;
                }
            }
            let count = (len as f32).max(MIN_TOKEN_COUNT);
            for m in &mut mean {
                *m /= count;
            }
            let norm = mean.iter().map(|m| m * m).sum::<f32>().sqrt().max(MIN_NORM);
            for m in &mut mean {
                *m /= norm;
            }
            vectors.push(mean);
        }
        Ok(vectors)
    }
}

fn boxed(e: impl std::error::Error + Send + Sync + 'static) -> Option<p8fs_core::error::Source> {
    Some(Box::new(e))
}

/// Reads one file of the model directory; a missing or unreadable file is named.
fn read(model_dir: &Path, file: &str) -> Result<Vec<u8>> {
    let path = model_dir.join(file);
    std::fs::read(&path).map_err(|e| {
        Error::invalid(
            "model_dir",
            format!("cannot read {file} ({}): {e}", path.display()),
        )
    })
}

/// A file of the model directory that is there but unusable.
fn corrupt(model_dir: &Path, file: &str, reason: impl fmt::Display) -> Error {
    let reason: Cow<'static, str> = format!(
        "{file} ({}) is not usable: {reason}",
        model_dir.join(file).display()
    )
    .into();
    Error::invalid("model_dir", reason)
}
