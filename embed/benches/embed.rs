//! Throughput of the builtin embedder: 512 prose chunks of about 200 tokens each, embedded in
//! one call (batches of 32) on 2 threads, then on 1; prints chunks per second.
//!
//! `P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir) cargo bench --workspace --bench embed`
//!
//! With `P8FS_BENCH_TEXTS_OUT=FILE` it writes the texts as a JSON array to FILE and exits, so the
//! same texts can be run through sentence-transformers (`st_bench.py` beside this file).

#![expect(clippy::unwrap_used, reason = "a benchmark")]
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::PathBuf;
use std::time::Instant;

use p8fs_core::Embedder;
use p8fs_embed::{BATCH_SIZE, BuiltinEmbedder, TOKENIZER_FILE};

const CHUNKS: usize = 512;
/// Words per chunk: with punctuation and the odd word-piece split, about 200 tokens.
const WORDS: usize = 130;
const ROUNDS: usize = 3;

const VOCABULARY: &str = "\
    the a of and to in is for that with on as it by this be are from or at an we was which can \
    our each team meeting project customer invoice storage database backup release report \
    budget quarter deadline review design document file folder note search index query latency \
    throughput server cluster network request response error warning migration schema table \
    record version update deploy rollback incident postmortem alert monitoring dashboard \
    metric user account password login permission policy contract agreement proposal estimate \
    schedule calendar travel flight hotel lunch coffee weather garden recipe kitchen family \
    holiday birthday school lesson homework library book chapter author research experiment \
    result analysis model training evaluation accuracy important urgent quickly carefully \
    before after during because however although should would could must will discussed agreed \
    decided planned finished started delayed approved rejected shared uploaded downloaded \
    renamed deleted restored encrypted compressed new old large small fast slow reliable \
    expensive cheap simple complex weekly monthly annual remote local public private next last \
    first final draft open closed pending Monday Friday March October Berlin London Tokyo \
    Alice Bob Carol PostgreSQL RocksDB Kubernetes API S3 JSON CPU GPU";

/// A deterministic generator (xorshift64*), so every run embeds the same texts.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Prose-like chunks: sentences of 6 to 20 words, capitalised, with commas, numbers and dates.
fn texts() -> Vec<String> {
    let vocabulary: Vec<&str> = VOCABULARY.split_whitespace().collect();
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    (0..CHUNKS)
        .map(|_| {
            let mut text = String::new();
            let mut words = 0;
            while words < WORDS {
                let len = 6 + rng.below(15);
                for i in 0..len {
                    let word = match rng.below(30) {
                        0 => format!("{}", rng.below(10_000)),
                        1 => format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
                        _ => vocabulary[rng.below(vocabulary.len())].to_owned(),
                    };
                    if i == 0 {
                        let mut chars = word.chars();
                        if let Some(c) = chars.next() {
                            text.extend(c.to_uppercase());
                            text.push_str(chars.as_str());
                        }
                    } else {
                        text.push_str(&word);
                    }
                    words += 1;
                    if i + 1 < len && rng.below(8) == 0 {
                        text.push(',');
                    }
                    text.push(if i + 1 < len { ' ' } else { '.' });
                }
                text.push(' ');
            }
            text.trim_end().to_owned()
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let texts = texts();
    if let Some(out) = std::env::var_os("P8FS_BENCH_TEXTS_OUT") {
        std::fs::write(&out, serde_json::to_vec(&texts).unwrap()).unwrap();
        println!(
            "wrote {} texts to {}",
            texts.len(),
            PathBuf::from(out).display()
        );
        return;
    }
    let dir = PathBuf::from(
        std::env::var_os("P8FS_TEST_MODEL_DIR")
            .expect("P8FS_TEST_MODEL_DIR: the model directory (scripts/services/model.sh dir)"),
    );

    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join(TOKENIZER_FILE)).unwrap();
    // The file itself truncates at 128 tokens; count them all, then cap at the embedder's limit.
    tokenizer.with_truncation(None).unwrap();
    tokenizer.with_padding(None);
    let tokens: usize = texts
        .iter()
        .map(|t| tokenizer.encode(t.as_str(), true).unwrap().len().min(256))
        .sum();
    println!(
        "{} chunks, {:.0} tokens each on average, batches of {BATCH_SIZE}",
        texts.len(),
        tokens as f64 / texts.len() as f64
    );

    let started = Instant::now();
    let embedder = BuiltinEmbedder::load(&dir).unwrap();
    println!("load: {:.2} s", started.elapsed().as_secs_f64());

    for threads in [2, 1] {
        let embedder = embedder.clone().with_threads(threads).unwrap();
        // Warm-up: one batch.
        embedder.embed(&texts[..BATCH_SIZE]).await.unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let vectors = embedder.embed(&texts).await.unwrap();
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(vectors.len(), texts.len());
        }
        println!(
            "threads {threads}: {:.1} chunks/s (best of {ROUNDS}: {} chunks in {best:.2} s)",
            texts.len() as f64 / best,
            texts.len()
        );
    }
}
