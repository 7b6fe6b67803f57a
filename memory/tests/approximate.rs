//! Approximate search over real sentence embeddings: the sentences of this project's own README
//! and ARCHITECTURE, embedded with the builtin model (`P8FS_TEST_MODEL_DIR`, as in the memory
//! tests; without it this test fails rather than skips), stored in a RocksDB collection whose
//! graph starts at 500 records; every 25th sentence is held out as a query. The graph's top 10
//! must hold at least 95 % of the exact top 10.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::vector::{SearchMode, search_with, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Embedder, Filter, JsonObject, Limit, ManualClock, Metric,
    RecordId, TenantId, VectorStore,
};
use p8fs_embed::BuiltinEmbedder;

fn model_dir() -> PathBuf {
    match std::env::var_os("P8FS_TEST_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "P8FS_TEST_MODEL_DIR is not set: run `scripts/services/model.sh install` and set it \
             to the output of `scripts/services/model.sh dir`"
        ),
    }
}

/// The prose sentences of the project's documents: lines that are not tables, code or
/// headings, split after full stops, of 6 words or more, each once.
fn sentences() -> Vec<String> {
    let text = [
        include_str!("../../README.md"),
        include_str!("../../ARCHITECTURE.md"),
    ]
    .join("\n");
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || line.starts_with('|') || line.starts_with('#') || line.is_empty() {
            continue;
        }
        for sentence in line.split(". ") {
            let sentence = sentence.trim().trim_start_matches("- ");
            if sentence.split_whitespace().count() >= 6 && seen.insert(sentence.to_owned()) {
                out.push(sentence.to_owned());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approximate_search_over_sentence_embeddings_keeps_recall() {
    let texts = sentences();
    assert!(texts.len() >= 800, "{} sentences", texts.len());
    let embedder = BuiltinEmbedder::load(&model_dir()).unwrap();
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        vectors.extend(embedder.embed(batch).await.unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let options = RocksOptions {
        graph_min_rows: 500,
        ..RocksOptions::default()
    };
    let db = RocksBackend::open(dir.path(), Arc::new(ManualClock::new(1_000)), options).unwrap();
    let tenant = TenantId::new("t").unwrap();
    let name = CollectionName::new("sentences").unwrap();
    let dim = vectors[0].len() as u64;
    db.create_collection(
        &tenant,
        &CollectionSpec::new("sentences", dim, Metric::Cosine).unwrap(),
    )
    .await
    .unwrap();
    let mut queries = Vec::new();
    for (i, vector) in vectors.into_iter().enumerate() {
        if i % 25 == 0 {
            queries.push(vector);
            continue;
        }
        let id = RecordId::new(format!("s{i:05}")).unwrap();
        upsert(&db, &tenant, &name, &id, vector, &JsonObject::empty(), None)
            .await
            .unwrap();
    }

    let k = Limit::top_k(10).unwrap();
    let everything = Filter::none();
    let search = |query: &Vec<f32>, mode| {
        search_with(&db, &tenant, &name, query.clone(), k, &everything, mode)
    };
    search(&queries[0], SearchMode::Approximate { ef: 64 })
        .await
        .unwrap();
    let started = Instant::now();
    while !db.graph_ready(&tenant, &name).unwrap() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the graph is built"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut found, mut total) = (0, 0);
    for query in &queries {
        let exact = search(query, SearchMode::Exact).await.unwrap();
        let approximate = search(query, SearchMode::Approximate { ef: 64 })
            .await
            .unwrap();
        found += exact
            .iter()
            .filter(|e| approximate.iter().any(|a| a.id == e.id))
            .count();
        total += exact.len();
    }
    let recall = found as f64 / total as f64;
    assert!(
        recall >= 0.95,
        "recall@10 {recall} over {} queries",
        queries.len()
    );
}
