//! p8fs-embed: the builtin, offline embedder of p8fs, [`BuiltinEmbedder`].
//!
//! It runs sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions) on the CPU
//! with candle and computes exactly what sentence-transformers computes:
//! - the text is tokenized with the model's `tokenizer.json` (BERT WordPiece, lower-cased) as
//!   `[CLS] … [SEP]`, truncated to [`MAX_SEQ_LEN`] tokens including those two (the model's
//!   `max_seq_length`);
//! - the token embeddings of the last layer are averaged over the attention mask (mean pooling,
//!   padding excluded);
//! - the mean is divided by its L2 norm.
//!
//! Texts are embedded in batches of [`BATCH_SIZE`], longest first (as sentence-transformers does,
//! so a batch pads little), each batch on tokio's blocking pool; a semaphore bounds how many
//! batches run at once ([`BuiltinEmbedder::with_threads`], [`DEFAULT_THREADS`] by default), so
//! embedding never blocks the async runtime and never takes more than that many blocking threads.
//! Within a batch, candle's matrix products use its rayon pool (one thread per core, or
//! `RAYON_NUM_THREADS`).
//!
//! The model is read from a directory holding `model.safetensors`, `tokenizer.json` and
//! `config.json` (a sentence-transformers model directory has them); nothing is downloaded, and
//! the weights are read into memory (no memory map).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use p8fs_core::{Embedder, Error, Result};
use tokenizers::{
    PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};
use tokio::sync::Semaphore;

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
const MIN_TOKEN_COUNT: f64 = 1e-9;
const MIN_NORM: f64 = 1e-12;

/// all-MiniLM-L6-v2 on the CPU: see the crate documentation.
#[derive(Clone)]
pub struct BuiltinEmbedder {
    model: Arc<Model>,
    permits: Arc<Semaphore>,
    threads: usize,
}

/// The loaded weights and tokenizer; shared by the blocking tasks.
struct Model {
    bert: BertModel,
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
        // there) are not what sentence-transformers uses: it cuts at max_seq_length and pads a
        // batch to its longest text.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQ_LEN,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| corrupt(model_dir, TOKENIZER_FILE, e))?;
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_to_multiple_of: None,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));

        let weights = read(model_dir, MODEL_FILE)?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| corrupt(model_dir, MODEL_FILE, e))?;
        let bert = BertModel::load(vb, &config).map_err(|e| {
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
        let Some(first) = encodings.first() else {
            return Ok(Vec::new());
        };
        let (rows, len) = (encodings.len(), first.len());
        let mut ids = Vec::with_capacity(rows * len);
        let mut type_ids = Vec::with_capacity(rows * len);
        let mut mask = Vec::with_capacity(rows * len);
        for encoding in &encodings {
            if encoding.len() != len {
                return Err(Error::internal(
                    "the tokenizer did not pad the batch to one length",
                    None,
                ));
            }
            ids.extend_from_slice(encoding.get_ids());
            type_ids.extend_from_slice(encoding.get_type_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        self.forward(ids, type_ids, mask, (rows, len))
            .map_err(|e| Error::internal("the embedding model failed", boxed(e)))
    }

    fn forward(
        &self,
        ids: Vec<u32>,
        type_ids: Vec<u32>,
        mask: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let device = &Device::Cpu;
        let ids = Tensor::from_vec(ids, shape, device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, device)?;
        let mask = Tensor::from_vec(mask, shape, device)?;
        // (batch, tokens, hidden)
        let hidden = self.bert.forward(&ids, &type_ids, Some(&mask))?;
        // Mean pooling: the sum over the real tokens divided by their count.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(MIN_TOKEN_COUNT, f64::from(f32::MAX))?;
        let mean = summed.broadcast_div(&counts)?;
        // L2 normalisation.
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(MIN_NORM, f64::from(f32::MAX))?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
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
