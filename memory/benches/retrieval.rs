//! Retrieval quality of search by meaning against a keyword baseline, on a small labelled set
//! written for it (`retrieval/corpus.json`: 49 short everyday and work documents;
//! `retrieval/queries.json`: 58 queries phrased differently from the passage they look for,
//! each with the id(s) of its relevant document(s)).
//!
//! The documents are stored as memories in a RocksDB [`Memory`] with the builtin model, every
//! query goes through [`Memory::search`] (k = 5), and the same queries are ranked by BM25 over
//! the same documents (lowercase word tokens, k1 = 1.2, b = 0.75). Prints recall@5 (the share of
//! queries with a relevant document among the first five) and MRR@5 (the mean of 1/rank of the
//! first relevant document, 0 past the fifth) for both.
//!
//! `P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir) cargo bench --workspace --bench retrieval`

#![expect(clippy::unwrap_used, reason = "a benchmark")]
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::vector::SearchMode;
use p8fs_core::{Backend, Limit, ManualClock, TenantId};
use p8fs_embed::{BuiltinEmbedder, WordPieceCounter};
use p8fs_memory::{Limits, Memory, NewMemory, Origin, Query};
use serde::Deserialize;

const K: usize = 5;

#[derive(Deserialize)]
struct Document {
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct Labelled {
    query: String,
    relevant: Vec<String>,
}

/// Recall@k and MRR@k over the rankings (document ids, best first) of every query.
fn score(queries: &[Labelled], rankings: &[Vec<String>]) -> (f64, f64) {
    let mut hits = 0usize;
    let mut reciprocal = 0.0;
    for (query, ranking) in queries.iter().zip(rankings) {
        if let Some(rank) = ranking
            .iter()
            .take(K)
            .position(|id| query.relevant.contains(id))
        {
            hits += 1;
            reciprocal += 1.0 / (rank + 1) as f64;
        }
    }
    let n = queries.len() as f64;
    (hits as f64 / n, reciprocal / n)
}

/// Lowercase alphanumeric word tokens.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Okapi BM25 over a fixed set of documents.
struct Bm25 {
    /// Per document: term frequencies and length in tokens.
    documents: Vec<(HashMap<String, f64>, f64)>,
    /// Documents containing each term.
    frequency: HashMap<String, f64>,
    average_length: f64,
}

impl Bm25 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;

    fn new(texts: &[&str]) -> Self {
        let mut documents = Vec::new();
        let mut frequency: HashMap<String, f64> = HashMap::new();
        for text in texts {
            let words = tokens(text);
            let mut terms: HashMap<String, f64> = HashMap::new();
            for word in &words {
                *terms.entry(word.clone()).or_default() += 1.0;
            }
            for term in terms.keys() {
                *frequency.entry(term.clone()).or_default() += 1.0;
            }
            documents.push((terms, words.len() as f64));
        }
        let average_length =
            documents.iter().map(|(_, len)| len).sum::<f64>() / documents.len().max(1) as f64;
        Bm25 {
            documents,
            frequency,
            average_length,
        }
    }

    /// Document indexes by descending score (ties by index), those scoring above zero.
    fn rank(&self, query: &str) -> Vec<usize> {
        let n = self.documents.len() as f64;
        let mut terms = tokens(query);
        terms.sort();
        terms.dedup();
        let mut scored: Vec<(usize, f64)> = self
            .documents
            .iter()
            .enumerate()
            .map(|(i, (tf, len))| {
                let score = terms
                    .iter()
                    .filter_map(|term| {
                        let f = *tf.get(term)?;
                        let df = self.frequency[term];
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        let norm = Self::K1 * (1.0 - Self::B + Self::B * len / self.average_length);
                        Some(idf * f * (Self::K1 + 1.0) / (f + norm))
                    })
                    .sum::<f64>();
                (i, score)
            })
            .filter(|(_, score)| *score > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.into_iter().map(|(i, _)| i).collect()
    }
}

fn model_dir() -> PathBuf {
    match std::env::var_os("P8FS_TEST_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
             to the output of `scripts/services/model.sh dir`"
        ),
    }
}

#[tokio::main]
async fn main() {
    let corpus: Vec<Document> =
        serde_json::from_str(include_str!("retrieval/corpus.json")).unwrap();
    let queries: Vec<Labelled> =
        serde_json::from_str(include_str!("retrieval/queries.json")).unwrap();
    for query in &queries {
        for id in &query.relevant {
            assert!(corpus.iter().any(|d| &d.id == id), "unknown document {id}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let backend: Arc<dyn Backend> =
        Arc::new(RocksBackend::open(dir.path(), clock.clone(), RocksOptions::default()).unwrap());
    let embedder = Arc::new(BuiltinEmbedder::load(&model_dir()).unwrap());
    let counter = Arc::new(WordPieceCounter::load(&model_dir()).unwrap());
    let memory = Memory::new(
        backend,
        embedder,
        Arc::new(move |text: &str| counter.count(text)),
        clock,
        Limits::default(),
    )
    .unwrap();
    let tenant = TenantId::new("bench").unwrap();

    let started = Instant::now();
    let mut documents = HashMap::new();
    let mut chunks = 0;
    for document in &corpus {
        let stored = memory
            .remember(
                &tenant,
                NewMemory {
                    text: document.text.clone(),
                    ..NewMemory::default()
                },
            )
            .await
            .unwrap();
        chunks += stored.chunks;
        documents.insert(stored.id, document.id.clone());
    }
    let indexing = started.elapsed();

    let started = Instant::now();
    let mut semantic = Vec::new();
    for query in &queries {
        let found = memory
            .search(
                &tenant,
                &Query {
                    text: query.query.clone(),
                    k: Limit::new(K as u64).unwrap(),
                    source: None,
                    bucket: None,
                    tags: Vec::new(),
                    metadata: Vec::new(),
                    mode: SearchMode::Exact,
                },
            )
            .await
            .unwrap();
        let mut ranking: Vec<String> = Vec::new();
        for hit in found {
            let Origin::Memory { id } = hit.origin else {
                panic!("a search found an object");
            };
            let document = documents[&id].clone();
            if !ranking.contains(&document) {
                ranking.push(document);
            }
        }
        semantic.push(ranking);
    }
    let searching = started.elapsed();

    let texts: Vec<&str> = corpus.iter().map(|d| d.text.as_str()).collect();
    let bm25 = Bm25::new(&texts);
    let keyword: Vec<Vec<String>> = queries
        .iter()
        .map(|query| {
            bm25.rank(&query.query)
                .into_iter()
                .map(|i| corpus[i].id.clone())
                .collect()
        })
        .collect();

    println!(
        "{} documents ({chunks} chunks, indexed in {:.1} s), {} queries, k = {K}; \
         {:.1} ms per semantic search",
        corpus.len(),
        indexing.as_secs_f64(),
        queries.len(),
        searching.as_secs_f64() * 1000.0 / queries.len() as f64
    );
    println!("{:<34} {:>9} {:>7}", "method", "recall@5", "MRR@5");
    for (name, rankings) in [
        ("Memory::search (all-MiniLM-L6-v2)", &semantic),
        ("BM25 (k1 = 1.2, b = 0.75)", &keyword),
    ] {
        let (recall, mrr) = score(&queries, rankings);
        println!("{name:<34} {recall:>9.3} {mrr:>7.3}");
    }
    if std::env::var_os("P8FS_BENCH_VERBOSE").is_some() {
        for ((query, semantic), keyword) in queries.iter().zip(&semantic).zip(&keyword) {
            println!(
                "{:?} -> {:?}: semantic {:?}, bm25 {:?}",
                query.query,
                query.relevant,
                &semantic[..semantic.len().min(3)],
                &keyword[..keyword.len().min(3)]
            );
        }
    }
}
