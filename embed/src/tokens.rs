//! Counting tokens as the builtin model does, so text is cut into chunks that fit its window.

use std::path::Path;

use p8fs_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::TOKENIZER_FILE;

/// Counts the WordPiece tokens of a text (without `[CLS]` and `[SEP]`) with the model
/// directory's `tokenizer.json`, untruncated: the chunker needs the true count to cut a text
/// into pieces of at most [`crate::MAX_SEQ_LEN`] − 2 tokens.
pub struct WordPieceCounter {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for WordPieceCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceCounter").finish_non_exhaustive()
    }
}

impl WordPieceCounter {
    /// Loads `tokenizer.json` from `model_dir`; errors name the file.
    pub fn load(model_dir: &Path) -> Result<Self> {
        let path = model_dir.join(TOKENIZER_FILE);
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::invalid(
                "model_dir",
                format!("cannot read {TOKENIZER_FILE} ({}): {e}", path.display()),
            )
        })?;
        let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| {
            Error::invalid(
                "model_dir",
                format!("{TOKENIZER_FILE} ({}) is not usable: {e}", path.display()),
            )
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::invalid("model_dir", e.to_string()))?;
        Ok(WordPieceCounter { tokenizer })
    }

    /// The number of tokens of `text`, special tokens excluded. A text the tokenizer cannot
    /// handle counts as one token per byte, which only makes chunks smaller.
    pub fn count(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.len())
            .unwrap_or(text.len())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_tokenizer_is_named() {
        let dir = std::env::temp_dir().join("p8fs-no-such-model-dir");
        let error = super::WordPieceCounter::load(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("tokenizer.json"), "{error}");
    }
}
