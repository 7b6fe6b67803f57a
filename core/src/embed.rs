//! The embedding capability: text in, one fixed-dimension vector per text out, so files and notes
//! can be searched by meaning. Providers live outside this crate (the builtin model is in
//! `p8fs-embed`); this module holds only the contract, so core takes on no model dependency.
//!
//! Contract of [`Embedder::embed`]:
//! - exactly one vector per input text, in input order, each of [`Embedder::dimension`] values;
//! - every vector is L2-normalised (unit length), so cosine similarity is a dot product;
//! - an empty input gives an empty output; an empty text is a valid text;
//! - a provider with a token limit truncates longer texts rather than failing;
//! - the call never blocks the async runtime: CPU-bound work runs off the runtime's threads.

use async_trait::async_trait;

use crate::error::Result;

/// Turns texts into L2-normalised vectors of a fixed dimension.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// The model's name, e.g. `all-MiniLM-L6-v2`; vectors of different models are not comparable.
    fn model(&self) -> &str;

    /// The number of values in every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// One unit-length vector of [`Embedder::dimension`] values per text, in input order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}
