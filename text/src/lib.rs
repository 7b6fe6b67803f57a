//! p8fs-text: from the bytes of an uploaded file to chunks of text ready to embed.
//!
//! Three pure steps, no IO, no async, no backend:
//!
//! 1. [`Format::detect`] picks a [`Format`] from the object's content type, falling back to the
//!    key's extension when the content type is absent or generic.
//! 2. [`extract`] turns the bytes into plain text ([`Extracted`]) within [`Limits`]: UTF-8 text,
//!    Markdown without markup, HTML without tags, scripts or styles, the text layer of a PDF, or
//!    the scalar values of a JSON document with their key paths. Failures are [`ExtractError`]s
//!    whose `Display` is shown to users and whose [`ExtractError::code`] is stable.
//! 3. [`chunk`] cuts the text into [`Chunk`]s of at most [`ChunkOptions::max_tokens`] tokens as
//!    the caller's [`TokenCounter`] counts them (the embedding model's tokenizer, or
//!    [`ApproximateCounter`]), cutting at paragraphs, then sentences, then words, and inside a
//!    word only as a last resort, with whole trailing sentences of each chunk repeated at the
//!    start of the next as overlap.
//!
//! Invariants: every chunk's text counts at most `max_tokens` with the counter given (checked on
//! the final text), chunk offsets are byte offsets into the text given to [`chunk`], and the work
//! is near-linear in the size of the text.

mod chunk;
mod counter;
mod error;
mod extract;
mod format;

pub use chunk::{Chunk, ChunkOptions, Chunked, chunk};
pub use counter::{ApproximateCounter, TokenCounter};
pub use error::ExtractError;
pub use extract::{Extracted, Limits, extract, truncate_text};
pub use format::Format;
