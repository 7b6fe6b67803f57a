//! Chunking: text into pieces of at most `max_tokens` tokens for the embedding model.
//!
//! The text is read once into units: the sentences (Unicode sentence bounds, UAX #29) of its
//! paragraphs (runs of non-blank lines), each counted once. A sentence over the limit is cut
//! into runs of words (UAX #29 word bounds, so CJK text is cut between ideographs), the longest
//! run that fits found by an exponential then binary search over its end; a single word over the
//! limit is cut the same way at char boundaries. Units are then packed greedily into chunks by
//! the sum of their counts; a full chunk ends instead at the last paragraph end within it when
//! at least half of the limit comes before that end. Each chunk is counted once more as a
//! whole, dropping units from its end (or its overlap from its start) while that final count is
//! over the limit: a tokenizer may count a join differently than the sum of its parts. Each
//! chunk after the first starts with the trailing whole sentences of the one before whose counts
//! add up to at most `overlap_tokens`, and that count no more than that as a whole.
//!
//! Every unit is counted once and every chunk once or a few times, so the work is linear in the
//! text but for the searches inside over-long sentences (a log factor).

use unicode_segmentation::UnicodeSegmentation;

use crate::counter::TokenCounter;

/// How to chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// The most tokens in a chunk, without the special tokens the model adds (default 254:
    /// all-MiniLM-L6-v2's 256 minus `[CLS]` and `[SEP]`).
    pub max_tokens: usize,
    /// The most tokens of whole sentences repeated from the end of a chunk at the start of the
    /// next (default 32).
    pub overlap_tokens: usize,
    /// The most chunks; the rest of the text is left out and the result marked truncated
    /// (default 2000).
    pub max_chunks: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            max_tokens: 254,
            overlap_tokens: 32,
            max_chunks: 2000,
        }
    }
}

impl ChunkOptions {
    /// The smallest `max_tokens` [`ChunkOptions::validate`] accepts.
    pub const MIN_MAX_TOKENS: usize = 16;

    /// Checks options from configuration: `max_tokens` at least 16, `overlap_tokens` less than
    /// half of `max_tokens`, `max_chunks` at least 1.
    pub fn validate(&self) -> p8fs_core::Result<()> {
        if self.max_tokens < Self::MIN_MAX_TOKENS {
            return Err(p8fs_core::Error::invalid(
                "max_tokens",
                format!(
                    "must be at least {}, got {}",
                    Self::MIN_MAX_TOKENS,
                    self.max_tokens
                ),
            ));
        }
        if self.overlap_tokens.saturating_mul(2) >= self.max_tokens {
            return Err(p8fs_core::Error::invalid(
                "overlap_tokens",
                format!(
                    "must be less than half of max_tokens ({}), got {}",
                    self.max_tokens, self.overlap_tokens
                ),
            ));
        }
        if self.max_chunks == 0 {
            return Err(p8fs_core::Error::invalid(
                "max_chunks",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A piece of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0, 1, 2, ... in text order.
    pub index: u32,
    /// `&text[start..end]`: trimmed, never empty.
    pub text: String,
    /// Byte offset of the chunk's start in the text given to [`chunk`].
    pub start: usize,
    /// Byte offset of the chunk's end (exclusive).
    pub end: usize,
    /// The counter's count of `text`, at most `max_tokens`.
    pub tokens: usize,
}

/// The chunks of a text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunked {
    pub chunks: Vec<Chunk>,
    /// Whether text was left out because there were more than `max_chunks` chunks.
    pub truncated: bool,
}

/// A run of the text that is never split further: a sentence, or a part of an over-long one.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
    /// A whole sentence, which may be repeated as overlap.
    sentence: bool,
    /// The last unit of its paragraph.
    paragraph_end: bool,
}

/// Cuts `text` into chunks of at most `options.max_tokens` tokens as `counter` counts them.
///
/// Options are used as given, with two guards instead of failing: a `max_tokens` of 0 acts as
/// 1 and `overlap_tokens` is capped below half of `max_tokens` (use [`ChunkOptions::validate`]
/// on configuration). Whitespace-only text gives no chunks. A character that alone counts over
/// `max_tokens` (no real tokenizer does that for a limit of 16 or more) becomes a chunk of
/// its own.
pub fn chunk(text: &str, counter: &dyn TokenCounter, options: &ChunkOptions) -> Chunked {
    let max = options.max_tokens.max(1);
    let overlap = options.overlap_tokens.min(max.saturating_sub(1) / 2);
    let units = units(text, counter, max);

    let mut chunks: Vec<Chunk> = Vec::new();
    let mut truncated = false;
    // The first unit of the overlap carried into the next chunk, and the first new unit.
    let mut carried = 0usize;
    let mut next = 0usize;
    while next < units.len() {
        if chunks.len() >= options.max_chunks {
            truncated = true;
            break;
        }
        let mut first = carried;
        let mut sum: usize = units[first..next].iter().map(|u| u.tokens).sum();
        // Always at least one new unit, so every round makes progress.
        sum += units[next].tokens;
        let mut end = next + 1;
        while end < units.len() && sum + units[end].tokens <= max {
            sum += units[end].tokens;
            end += 1;
        }
        // Paragraphs before sentences: a chunk that is full (more text follows) ends at the
        // last paragraph end among its new units, if at least half of the limit comes before.
        if end < units.len() && !units[end - 1].paragraph_end {
            let mut before = sum;
            for k in (next..end - 1).rev() {
                before -= units[k + 1].tokens;
                if before < max / 2 {
                    break;
                }
                if units[k].paragraph_end {
                    sum = before;
                    end = k + 1;
                    break;
                }
            }
        }
        while first < next && sum > max {
            sum -= units[first].tokens;
            first += 1;
        }
        // The final count, on the chunk's own text.
        let tokens = loop {
            let tokens = counter.count(&text[units[first].start..units[end - 1].end]);
            if tokens <= max {
                break tokens;
            }
            if end - 1 > next {
                end -= 1;
            } else if first < next {
                first += 1;
            } else {
                break tokens;
            }
        };
        let (start, stop) = (units[first].start, units[end - 1].end);
        chunks.push(Chunk {
            index: chunks.len() as u32,
            text: text[start..stop].to_owned(),
            start,
            end: stop,
            tokens,
        });

        // Whole trailing sentences of this chunk, up to `overlap` tokens, start the next one.
        let mut back = end;
        let mut carried_tokens = 0usize;
        while back > first
            && units[back - 1].sentence
            && carried_tokens + units[back - 1].tokens <= overlap
        {
            carried_tokens += units[back - 1].tokens;
            back -= 1;
        }
        // Counted again as a whole (a join may count more than its parts), dropping sentences
        // from its start while over.
        while back < end && counter.count(&text[units[back].start..units[end - 1].end]) > overlap {
            back += 1;
        }
        carried = back;
        next = end;
    }
    Chunked { chunks, truncated }
}

/// The units of `text` in order: its sentences, over-long ones cut into runs that fit.
fn units(text: &str, counter: &dyn TokenCounter, max: usize) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    for (p_start, p_end) in paragraphs(text) {
        if let Some(last) = units.last_mut() {
            last.paragraph_end = true;
        }
        let paragraph = &text[p_start..p_end];
        for (offset, sentence) in paragraph.split_sentence_bound_indices() {
            let lead = sentence.len() - sentence.trim_start().len();
            let trimmed = sentence.trim();
            if trimmed.is_empty() {
                continue;
            }
            let start = p_start + offset + lead;
            let end = start + trimmed.len();
            let tokens = counter.count(trimmed);
            if tokens <= max {
                units.push(Unit {
                    start,
                    end,
                    tokens,
                    sentence: true,
                    paragraph_end: false,
                });
            } else {
                let words = words(text, start, end);
                pack(text, &words, counter, max, Level::Words, &mut units);
            }
        }
    }
    units
}

/// The byte ranges of the paragraphs of `text`: runs of lines that are not blank, trimmed.
fn paragraphs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    let mut last_end = 0usize;
    let mut pos = 0usize;
    for line in text.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        let content = line.trim_end();
        if content.trim_start().is_empty() {
            if let Some(start) = open.take() {
                out.push((start, last_end));
            }
        } else {
            if open.is_none() {
                open = Some(line_start + (line.len() - line.trim_start().len()));
            }
            last_end = line_start + content.len();
        }
    }
    if let Some(start) = open {
        out.push((start, last_end));
    }
    out
}

/// The non-whitespace word-bound segments of `text[start..end]`, as absolute byte ranges.
fn words(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    text[start..end]
        .split_word_bound_indices()
        .filter(|(_, w)| !w.trim().is_empty())
        .map(|(i, w)| (start + i, start + i + w.len()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Words,
    Chars,
}

/// Cuts the run `text[atoms[0].0..atoms[last].1]` into pieces of whole atoms, each the longest
/// that counts at most `max`: an exponential search for an end that does not fit, then a binary
/// search below it, counting each probe's text once. An atom that alone is over the limit is cut
/// at chars (or, a single char, kept whole).
fn pack(
    text: &str,
    atoms: &[(usize, usize)],
    counter: &dyn TokenCounter,
    max: usize,
    level: Level,
    out: &mut Vec<Unit>,
) {
    let mut i = 0usize;
    while i < atoms.len() {
        let start = atoms[i].0;
        let count = |j: usize| counter.count(&text[start..atoms[j].1]);
        let alone = count(i);
        if alone > max {
            match level {
                Level::Words => {
                    let (a, b) = atoms[i];
                    let chars: Vec<(usize, usize)> = text[a..b]
                        .char_indices()
                        .map(|(k, c)| (a + k, a + k + c.len_utf8()))
                        .collect();
                    pack(text, &chars, counter, max, Level::Chars, out);
                }
                Level::Chars => out.push(Unit {
                    start,
                    end: atoms[i].1,
                    tokens: alone,
                    sentence: false,
                    paragraph_end: false,
                }),
            }
            i += 1;
            continue;
        }
        // `fit` fits with `fit_tokens`; `over`, when known, does not.
        let (mut fit, mut fit_tokens) = (i, alone);
        let mut over = None;
        let mut step = 1usize;
        while fit + 1 < atoms.len() {
            let probe = (i + step).min(atoms.len() - 1);
            let tokens = count(probe);
            if tokens <= max {
                (fit, fit_tokens) = (probe, tokens);
                step = step.saturating_mul(2);
            } else {
                over = Some(probe);
                break;
            }
        }
        if let Some(mut over) = over {
            while over - fit > 1 {
                let mid = fit + (over - fit) / 2;
                let tokens = count(mid);
                if tokens <= max {
                    (fit, fit_tokens) = (mid, tokens);
                } else {
                    over = mid;
                }
            }
        }
        out.push(Unit {
            start,
            end: atoms[fit].1,
            tokens: fit_tokens,
            sentence: false,
            paragraph_end: false,
        });
        i = fit + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counter::ApproximateCounter;

    fn opts(max_tokens: usize, overlap_tokens: usize) -> ChunkOptions {
        ChunkOptions {
            max_tokens,
            overlap_tokens,
            max_chunks: 2000,
        }
    }

    fn texts(chunked: &Chunked) -> Vec<&str> {
        chunked.chunks.iter().map(|c| c.text.as_str()).collect()
    }

    #[test]
    fn options_are_validated() {
        assert!(ChunkOptions::default().validate().is_ok());
        let e = opts(15, 0).validate().unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
        let e = opts(64, 32).validate().unwrap_err();
        assert!(e.to_string().contains("overlap_tokens"), "{e}");
        assert!(opts(64, 31).validate().is_ok());
        let mut o = opts(64, 0);
        o.max_chunks = 0;
        assert!(o.validate().unwrap_err().to_string().contains("max_chunks"));
    }

    #[test]
    fn empty_text_has_no_chunks() {
        for text in ["", "   ", "\n\n \t\n"] {
            assert_eq!(
                chunk(text, &ApproximateCounter, &ChunkOptions::default()),
                Chunked::default()
            );
        }
    }

    #[test]
    fn short_paragraphs_are_packed_together() {
        let text = "  One two.\n\nThree four.  \n \nFive six. ";
        let got = chunk(text, &ApproximateCounter, &ChunkOptions::default());
        assert_eq!(texts(&got), ["One two.\n\nThree four.  \n \nFive six."]);
        assert_eq!(
            (got.chunks[0].start, got.chunks[0].end),
            (2, text.len() - 1)
        );
        assert_eq!(got.chunks[0].tokens, 8);
        assert!(!got.truncated);
    }

    #[test]
    fn cuts_at_paragraphs_then_sentences_with_overlap() {
        // Each sentence is 3 words: 4 tokens; a limit of 16 holds 4 sentences (12 words: 16), but
        // the first chunk ends with the first paragraph (12 tokens, at least half the limit).
        // (UAX #29 does not end a sentence at a period followed by a lower-case word.)
        let text = "A b c. D e f. G h i.\n\nJ k l. M n o. P q r. S t u. V w x.";
        let got = chunk(text, &ApproximateCounter, &opts(16, 4));
        assert_eq!(
            texts(&got),
            [
                "A b c. D e f. G h i.",
                "G h i.\n\nJ k l. M n o. P q r.",
                "P q r. S t u. V w x."
            ]
        );
    }

    #[test]
    fn no_overlap_when_the_last_sentence_is_too_long() {
        let text = "A b c d e f. G h i j k l. M n o p q r.";
        let got = chunk(text, &ApproximateCounter, &opts(16, 4));
        assert_eq!(texts(&got), ["A b c d e f. G h i j k l.", "M n o p q r."]);
    }

    #[test]
    fn long_sentences_are_cut_at_words_and_long_words_at_chars() {
        let text = (0..40)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let got = chunk(&text, &ApproximateCounter, &opts(16, 4));
        // 12 words make 16 tokens.
        assert!(
            got.chunks
                .iter()
                .all(|c| c.text.split(' ').count() == 12 || c.index == 3)
        );
        assert_eq!(got.chunks.len(), 4);
        assert_eq!(
            got.chunks
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            text
        );

        // A character-counting tokenizer and a 40-char "word".
        let by_chars = |t: &str| t.chars().count();
        let blob = "é".repeat(40);
        let got = chunk(&blob, &by_chars, &opts(16, 4));
        assert_eq!(
            got.chunks.iter().map(|c| c.tokens).collect::<Vec<_>>(),
            [16, 16, 8]
        );
        assert_eq!(got.chunks.concat_text(), blob);
    }

    #[test]
    fn cjk_sentences_are_cut_between_ideographs() {
        let text = "日本語の文章です".repeat(10);
        let got = chunk(&text, &ApproximateCounter, &opts(20, 4));
        assert!(got.chunks.len() > 1);
        for c in &got.chunks {
            assert!(ApproximateCounter.count(&c.text) <= 20);
        }
        assert_eq!(got.chunks.concat_text(), text);
    }

    #[test]
    fn a_counter_that_counts_joins_higher_is_honoured() {
        // Counts one extra token per newline: joins of paragraphs count more than their parts.
        let counter = |t: &str| ApproximateCounter.count(t) + t.matches('\n').count() * 3;
        let text = "A b c.\n\nD e f.\n\nG h i.\n\nJ k l.";
        let got = chunk(text, &counter, &opts(16, 0));
        for c in &got.chunks {
            assert!(counter(&c.text) <= 16, "{c:?}");
        }
        assert_eq!(got.chunks.len(), 2);
    }

    #[test]
    fn max_chunks_truncates() {
        let text = "A b c d e f. ".repeat(10);
        let mut o = opts(16, 0);
        o.max_chunks = 2;
        let got = chunk(&text, &ApproximateCounter, &o);
        assert_eq!(got.chunks.len(), 2);
        assert!(got.truncated);
    }

    trait Concat {
        fn concat_text(&self) -> String;
    }

    impl Concat for Vec<Chunk> {
        fn concat_text(&self) -> String {
            self.iter().map(|c| c.text.as_str()).collect()
        }
    }
}
