//! Counting tokens: the trait the chunker measures with, and an estimate for models whose
//! tokenizer is not at hand.

/// Counts the tokens a model's tokenizer makes of a text, without special tokens (`[CLS]`,
/// `[SEP]`). The embedder implements it with the model's own tokenizer.
pub trait TokenCounter {
    fn count(&self, text: &str) -> usize;
}

impl<F: Fn(&str) -> usize> TokenCounter for F {
    fn count(&self, text: &str) -> usize {
        self(text)
    }
}

/// An estimate for an unknown tokenizer: whitespace-separated words × 4/3, rounded up, plus one
/// per CJK character (Han, kana, Hangul), which WordPiece-style tokenizers split one by one,
/// plus one per 4 further characters of a word longer than 16 (not CJK), so that a long run
/// without spaces (a base64 blob, a URL) counts as the many tokens it makes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproximateCounter;

/// Characters of a word counted by the ×4/3 rule alone.
const LONG_WORD: usize = 16;

impl TokenCounter for ApproximateCounter {
    fn count(&self, text: &str) -> usize {
        let mut words = 0usize;
        let mut cjk = 0usize;
        let mut long = 0usize;
        // Non-CJK characters of the current word.
        let mut word_chars = 0usize;
        let mut in_word = false;
        for c in text.chars() {
            if c.is_whitespace() {
                long += word_chars.saturating_sub(LONG_WORD).div_ceil(4);
                word_chars = 0;
                in_word = false;
                continue;
            }
            if !in_word {
                words += 1;
                in_word = true;
            }
            if is_cjk(c) {
                cjk += 1;
            } else {
                word_chars += 1;
            }
        }
        long += word_chars.saturating_sub(LONG_WORD).div_ceil(4);
        (words * 4).div_ceil(3) + cjk + long
    }
}

/// Whether `c` is a CJK ideograph, kana, Hangul syllable or CJK punctuation.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3000..=0x303F   // CJK symbols and punctuation
        | 0x3040..=0x30FF // Hiragana, Katakana
        | 0x3100..=0x312F // Bopomofo
        | 0x3130..=0x318F // Hangul compatibility jamo
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFF00..=0xFFEF // half- and full-width forms
        | 0x20000..=0x2FA1F // CJK extensions B to F, compatibility supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_times_four_thirds_plus_cjk() {
        let c = ApproximateCounter;
        assert_eq!(c.count(""), 0);
        assert_eq!(c.count("   \n"), 0);
        assert_eq!(c.count("hello"), 2);
        assert_eq!(c.count("hello world"), 3);
        assert_eq!(c.count(" one two  three\n"), 4);
        // One word of 4 ideographs: 2 + 4.
        assert_eq!(c.count("日本語だ"), 6);
        assert_eq!(c.count("مرحبا بالعالم"), 3);
        // 16 characters count as a word, 17 to 20 as a word and one token more.
        assert_eq!(c.count(&"a".repeat(16)), 2);
        assert_eq!(c.count(&"a".repeat(17)), 3);
        assert_eq!(c.count(&format!("{} x", "a".repeat(20))), 4);
        assert_eq!(c.count(&"QUJD".repeat(1000)), 2 + (4000 - 16) / 4);
    }

    #[test]
    fn closures_count_too() {
        let bytes = |t: &str| t.len();
        assert_eq!(TokenCounter::count(&bytes, "abc"), 3);
    }
}
