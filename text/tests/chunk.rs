//! Chunking invariants on real extracted text and on random texts (proptest): the token bound
//! for the counter given, offsets that map back into the text, order, coverage of every
//! sentence, overlap made of whole trailing sentences, and a 2 MiB text.

use p8fs_text::{
    ApproximateCounter, ChunkOptions, Chunked, Format, Limits, TokenCounter, chunk, extract,
};
use proptest::prelude::*;
use unicode_segmentation::UnicodeSegmentation;

/// A counter unlike the approximate one: one token per 3 bytes of each word, rounded up,
/// plus one per punctuation mark, so joins and long words count differently.
fn byteish(text: &str) -> usize {
    text.split_whitespace()
        .map(|w| w.len().div_ceil(3) + w.chars().filter(|c| c.is_ascii_punctuation()).count())
        .sum()
}

/// Checks every invariant of `chunked` for `text`.
fn check(text: &str, counter: &dyn TokenCounter, options: &ChunkOptions, chunked: &Chunked) {
    let chunks = &chunked.chunks;
    if text.trim().is_empty() {
        assert!(chunks.is_empty());
        return;
    }
    assert!(!chunks.is_empty());
    let sentence_starts = sentence_starts(text);
    let mut previous: Option<&p8fs_text::Chunk> = None;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index as usize, i);
        assert!(!c.text.is_empty());
        assert_eq!(c.text, c.text.trim());
        assert_eq!(&text[c.start..c.end], c.text, "offsets of chunk {i}");
        assert_eq!(c.tokens, counter.count(&c.text));
        // The bound holds unless a single character alone is over it.
        assert!(
            c.tokens <= options.max_tokens || c.text.chars().count() == 1,
            "chunk {i} has {} tokens: {:?}",
            c.tokens,
            c.text
        );
        if let Some(p) = previous {
            // In order, new text in every chunk, overlapping the previous one only with its
            // trailing whole sentences within the overlap budget.
            assert!(c.start >= p.start && c.end > p.end, "order at chunk {i}");
            if c.start < p.end {
                let carried = &text[c.start..p.end];
                assert!(
                    counter.count(carried) <= options.overlap_tokens,
                    "overlap of chunk {i} is {:?}",
                    carried
                );
                assert!(
                    sentence_starts.binary_search(&c.start).is_ok(),
                    "overlap of chunk {i} does not start a sentence: {carried:?}"
                );
            }
        }
        previous = Some(c);
    }
    // Coverage: every non-whitespace byte of the text is in some chunk (unless truncated).
    if !chunked.truncated {
        let mut covered_to = 0usize;
        for c in chunks {
            if c.start > covered_to {
                let gap = &text[covered_to..c.start];
                assert!(gap.trim().is_empty(), "gap before {}: {gap:?}", c.start);
            }
            covered_to = covered_to.max(c.end);
        }
        assert!(text[covered_to..].trim().is_empty());
    }
}

/// Where the sentences of `text` start (after their leading whitespace), in order.
fn sentence_starts(text: &str) -> Vec<usize> {
    text.split_sentence_bound_indices()
        .map(|(i, s)| i + (s.len() - s.trim_start().len()))
        .collect()
}

#[test]
fn every_sentence_of_an_extracted_document_is_in_a_chunk() {
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/notes.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let text = extract(Format::Markdown, &bytes, &Limits::default())
        .unwrap()
        .text;
    let text = text.repeat(20);
    let options = ChunkOptions {
        max_tokens: 40,
        overlap_tokens: 8,
        max_chunks: 2000,
    };
    for counter in [&ApproximateCounter as &dyn TokenCounter, &byteish] {
        let got = chunk(&text, counter, &options);
        check(&text, counter, &options, &got);
        for (i, sentence) in text.split_sentence_bound_indices() {
            let s = sentence.trim();
            if s.is_empty() {
                continue;
            }
            let start = i + sentence.find(s).unwrap();
            let end = start + s.len();
            // A sentence that fits is whole in some chunk.
            if counter.count(s) <= options.max_tokens {
                assert!(
                    got.chunks.iter().any(|c| c.start <= start && end <= c.end),
                    "{s:?} is in no chunk"
                );
            }
        }
        assert!(got.chunks.len() > 20);
    }
}

#[test]
fn overlap_repeats_whole_trailing_sentences() {
    let text = (0..30)
        .map(|i| format!("Sentence number {i} is here."))
        .collect::<Vec<_>>()
        .join(" ");
    let options = ChunkOptions {
        max_tokens: 32,
        overlap_tokens: 12,
        max_chunks: 2000,
    };
    let got = chunk(&text, &ApproximateCounter, &options);
    check(&text, &ApproximateCounter, &options, &got);
    // Each sentence is 5 words: 7 tokens. 32 tokens hold 4 sentences (20 words: 27 by sum),
    // and one sentence (7 <= 12) is carried.
    for pair in got.chunks.windows(2) {
        let last_sentence = pair[0]
            .text
            .rsplit_once(". ")
            .map_or(&*pair[0].text, |(_, s)| s);
        assert!(pair[1].text.starts_with(last_sentence), "{pair:?}");
        assert!(pair[1].start < pair[0].end);
    }
}

#[test]
fn two_mebibytes_of_text_chunk() {
    let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 2 << 20 {
        text.push_str(sentence);
        i += 1;
        if i % 7 == 0 {
            text.push_str("\n\n");
        }
    }
    let options = ChunkOptions {
        max_chunks: 100_000,
        ..ChunkOptions::default()
    };
    let got = chunk(&text, &ApproximateCounter, &options);
    assert!(!got.truncated);
    assert!(got.chunks.len() > 1000, "{}", got.chunks.len());
    check(&text, &ApproximateCounter, &options, &got);
    // More than max_chunks chunks: the first max_chunks and truncated.
    let few = ChunkOptions {
        max_chunks: 100,
        ..options
    };
    let cut = chunk(&text, &ApproximateCounter, &few);
    assert_eq!(cut.chunks.len(), 100);
    assert!(cut.truncated);
    assert_eq!(cut.chunks[..], got.chunks[..100]);
}

#[test]
fn a_single_long_word_is_cut_at_char_boundaries() {
    let blob = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo".repeat(200) + "é";
    let counter = |t: &str| t.len().div_ceil(4);
    let options = ChunkOptions {
        max_tokens: 64,
        overlap_tokens: 8,
        max_chunks: 2000,
    };
    let got = chunk(&blob, &counter, &options);
    check(&blob, &counter, &options, &got);
    assert_eq!(
        got.chunks
            .iter()
            .map(|c| c.text.as_str())
            .collect::<String>(),
        blob
    );
    // The approximate counter counts a long run without spaces by its length, so it is cut too.
    let got = chunk(&blob, &ApproximateCounter, &options);
    check(&blob, &ApproximateCounter, &options, &got);
    assert!(got.chunks.len() > 20, "{}", got.chunks.len());
    let joined: String = got.chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(joined, blob);
}

/// Random texts of words, sentences, paragraphs, CJK, emoji and long blobs.
fn text_strategy() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        6 => "[a-z]{1,9}",
        1 => "[A-Za-z0-9+/]{30,120}",
        1 => "[日本語中文字]{1,12}",
        1 => "(🚀|👨‍👩‍👧|é|ß|مرحبا)",
    ];
    let sep = prop_oneof![
        8 => Just(" ".to_owned()),
        2 => Just(". ".to_owned()),
        1 => Just("! ".to_owned()),
        1 => Just("。".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\n\n".to_owned()),
        1 => Just(" \n \t\n".to_owned()),
    ];
    prop::collection::vec((word, sep), 0..300)
        .prop_map(|parts| parts.into_iter().map(|(w, s)| w + &s).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn chunk_invariants_hold_for_random_texts(
        text in text_strategy(),
        max_tokens in 16usize..120,
        overlap_percent in 0usize..50,
        approximate in any::<bool>(),
    ) {
        let options = ChunkOptions {
            max_tokens,
            overlap_tokens: max_tokens * overlap_percent / 100,
            max_chunks: 100_000,
        };
        prop_assert!(options.validate().is_ok());
        let counter: &dyn TokenCounter = if approximate { &ApproximateCounter } else { &byteish };
        let got = chunk(&text, counter, &options);
        check(&text, counter, &options, &got);
    }
}
