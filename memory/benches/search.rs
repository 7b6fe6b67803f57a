//! Query latency of [`Memory::search`] over 100,000 chunks in one tenant of a RocksDB backend
//! (and optionally PostgreSQL).
//!
//! Embedding 100,000 texts would take hours on a CPU, so the bench embeds the few hundred
//! sentences of the retrieval set (`retrieval/corpus.json`) once and writes 100,000 chunk records
//! whose vectors are those embeddings plus small random perturbations, re-normalised, with the
//! metadata the crate writes for a memory's chunks, under 1,000 memory source records of 100
//! chunks each, so every chunk is visible to a search. (The graph nodes and edges a memory also
//! has are not written: a search does not read them.)
//!
//! Then 200 searches with real query texts (the retrieval set's queries, cycled), k = 10, are
//! timed three ways: the whole [`Memory::search`] call (query embedding included), the query
//! embedding alone, and the contract's vector search alone ([`p8fs_core::vector::search`] on the
//! same collection with the same k, the anchor). Prints p50 and p99 of each.
//!
//! With `P8FS_BENCH_POSTGRES_URL` set, the same follows on that PostgreSQL database (in a tenant
//! of its own, whose collection is dropped at the end).
//!
//! `P8FS_TEST_MODEL_DIR=$(scripts/services/model.sh dir) cargo bench --workspace --bench search`

#![expect(clippy::unwrap_used, reason = "a benchmark")]
#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::vector::SearchMode;
use p8fs_core::{
    Backend, CollectionSpec, Embedder, Embedding, Filter, JsonMap, JsonObject, JsonValue, Key,
    Limit, ManualClock, Metric, RecordId, TenantId,
};
use p8fs_embed::{BuiltinEmbedder, WordPieceCounter};
use p8fs_memory::{Limits, Memory, MemoryRecord, Query};
use serde::Deserialize;
use serde_json::{Value, json};

const START: i64 = 1_700_000_000_000;
const SOURCES: usize = 1_000;
const CHUNKS_PER_SOURCE: usize = 100;
const SEARCHES: usize = 200;
/// Concurrent writers while filling the collection.
const WRITERS: usize = 8;
const K: u64 = 10;
/// Half-width of the uniform noise added to each component of a unit vector of 384 (whose
/// components are about 0.05): the perturbed copies keep a cosine of about 0.93 to their origin.
const NOISE: f32 = 0.035;

#[derive(Deserialize)]
struct Document {
    text: String,
}

#[derive(Deserialize)]
struct Labelled {
    query: String,
}

/// A deterministic generator (xorshift64*), so every run writes the same vectors.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
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

fn percentiles(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1000.0
    };
    (at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let corpus: Vec<Document> =
        serde_json::from_str(include_str!("retrieval/corpus.json")).unwrap();
    let queries: Vec<Labelled> =
        serde_json::from_str(include_str!("retrieval/queries.json")).unwrap();
    let sentences: Vec<String> = corpus
        .iter()
        .flat_map(|d| d.text.split_inclusive(['.', '!', '?']))
        .map(str::trim)
        .filter(|s| s.len() > 20)
        .map(str::to_owned)
        .collect();

    let model = model_dir();
    let embedder: Arc<dyn Embedder> = Arc::new(BuiltinEmbedder::load(&model).unwrap());
    let counter = Arc::new(WordPieceCounter::load(&model).unwrap());
    let started = Instant::now();
    let bases = Arc::new(embedder.embed(&sentences).await.unwrap());
    println!(
        "embedded {} sentences in {:.1} s",
        sentences.len(),
        started.elapsed().as_secs_f64()
    );
    let sentences = Arc::new(sentences);
    let texts: Vec<String> = queries
        .iter()
        .cycle()
        .take(SEARCHES)
        .map(|q| q.query.clone())
        .collect();
    let bench = Bench {
        embedder,
        counter,
        bases,
        sentences,
        texts,
    };

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let rocks: Arc<dyn Backend> =
        Arc::new(RocksBackend::open(dir.path(), clock.clone(), RocksOptions::default()).unwrap());
    bench.run("RocksDB", rocks, clock, "bench").await;

    if let Some(url) = std::env::var_os("P8FS_BENCH_POSTGRES_URL") {
        let clock = Arc::new(ManualClock::new(START));
        let postgres: Arc<dyn Backend> = Arc::new(
            PgBackend::connect(url.to_str().unwrap(), clock.clone(), PgOptions::default())
                .await
                .unwrap(),
        );
        // A tenant of its own per run, so the database may be reused.
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).unwrap();
        let tenant = format!("bench-{:016x}", u64::from_be_bytes(random));
        bench.run("PostgreSQL", postgres, clock, &tenant).await;
    }
}

struct Bench {
    embedder: Arc<dyn Embedder>,
    counter: Arc<WordPieceCounter>,
    bases: Arc<Vec<Vec<f32>>>,
    sentences: Arc<Vec<String>>,
    texts: Vec<String>,
}

impl Bench {
    async fn run(
        &self,
        name: &str,
        backend: Arc<dyn Backend>,
        clock: Arc<ManualClock>,
        tenant: &str,
    ) {
        let counter = self.counter.clone();
        let embedder = self.embedder.clone();
        let texts = &self.texts;
        let memory = Memory::new(
            backend.clone(),
            embedder.clone(),
            Arc::new(move |text: &str| counter.count(text)),
            clock,
            Limits::default(),
        )
        .unwrap();
        let tenant = TenantId::new(tenant).unwrap();
        let spec = CollectionSpec::new(
            memory.collection().as_str().to_owned(),
            embedder.dimension() as u64,
            Metric::Cosine,
        )
        .unwrap();
        backend.create_collection(&tenant, &spec).await.unwrap();
        let started = Instant::now();
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let (backend, tenant, spec) = (backend.clone(), tenant.clone(), spec.clone());
            let (bases, sentences) = (self.bases.clone(), self.sentences.clone());
            writers.push(tokio::spawn(async move {
                let mut rng = Rng(0x5eed_0000_1234_abcd + writer as u64);
                for source in (writer..SOURCES).step_by(WRITERS) {
                    write_source(
                        backend.as_ref(),
                        &tenant,
                        &spec,
                        &bases,
                        &sentences,
                        &mut rng,
                        source,
                    )
                    .await;
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        println!(
            "{name}: wrote {} chunks under {SOURCES} memories in {:.1} s ({WRITERS} writers)",
            SOURCES * CHUNKS_PER_SOURCE,
            started.elapsed().as_secs_f64()
        );

        let query = |text: &str| Query {
            text: text.to_owned(),
            k: Limit::new(K).unwrap(),
            source: None,
            bucket: None,
            tags: Vec::new(),
            metadata: Vec::new(),
            mode: SearchMode::Exact,
        };
        // Warm up: the first search loads the collection's index.
        memory.search(&tenant, &query(&texts[0])).await.unwrap();

        let mut whole = Vec::with_capacity(SEARCHES);
        for text in texts {
            let started = Instant::now();
            let found = memory.search(&tenant, &query(text)).await.unwrap();
            whole.push(started.elapsed());
            assert_eq!(found.len(), K as usize);
        }

        let mut embedding = Vec::with_capacity(SEARCHES);
        let mut vectors = Vec::with_capacity(SEARCHES);
        for text in texts {
            let started = Instant::now();
            let vector = embedder.embed(std::slice::from_ref(text)).await.unwrap();
            embedding.push(started.elapsed());
            vectors.extend(vector);
        }

        let mut anchor = Vec::with_capacity(SEARCHES);
        for vector in vectors {
            let started = Instant::now();
            let hits = p8fs_core::vector::search(
                backend.as_ref(),
                &tenant,
                memory.collection(),
                vector,
                Limit::new(K).unwrap(),
                &Filter::none(),
            )
            .await
            .unwrap();
            anchor.push(started.elapsed());
            assert_eq!(hits.len(), K as usize);
            assert!(
                hits.iter()
                    .all(|h| h.metadata.get("record").is_some_and(Value::is_string))
            );
        }

        println!(
            "{name}: {SEARCHES} searches, k = {K}, over {} chunks:",
            SOURCES * CHUNKS_PER_SOURCE
        );
        println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");
        for (label, times) in [
            ("Memory::search (embedding included)", whole),
            ("query embedding alone", embedding),
            ("p8fs_core::vector::search alone", anchor),
        ] {
            let (p50, p99) = percentiles(times);
            println!("{label:<44} {p50:>9.2} {p99:>9.2}");
        }
        backend
            .drop_collection(&tenant, memory.collection())
            .await
            .unwrap();
    }
}

/// Writes one memory's chunks, then its record (the switch that makes them visible), as
/// `Memory::remember` does.
async fn write_source(
    backend: &dyn Backend,
    tenant: &TenantId,
    spec: &CollectionSpec,
    bases: &[Vec<f32>],
    sentences: &[String],
    rng: &mut Rng,
    source: usize,
) {
    let id = format!("m{START:012x}{source:016x}");
    let record = format!("p8fs.memory/{id}");
    let mut text = String::new();
    for chunk in 0..CHUNKS_PER_SOURCE {
        let n = source * CHUNKS_PER_SOURCE + chunk;
        let base = &bases[n % bases.len()];
        let mut vector: Vec<f32> = base.iter().map(|x| x + NOISE * rng.signed()).collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        let sentence = &sentences[n % sentences.len()];
        let start = text.len();
        text.push_str(sentence);
        text.push(' ');
        let metadata = json!({
            "source": "memory",
            "memory": id,
            "tags": {},
            "metadata": {},
            "record": record,
            "generation": "g1",
            "chunk": chunk,
            "chunks": CHUNKS_PER_SOURCE,
            "start": start,
            "end": start + sentence.len(),
            "text": sentence,
        });
        backend
            .upsert_vector(
                tenant,
                &spec.name,
                &RecordId::new(format!("{id}.g1.{chunk}")).unwrap(),
                &Embedding::new("vector", spec, vector).unwrap(),
                &JsonObject::new("metadata", metadata).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let stored = MemoryRecord {
        id: id.clone(),
        text,
        metadata: JsonMap::new(),
        tags: Vec::new(),
        created_at: START,
        chunks: CHUNKS_PER_SOURCE,
        truncated: false,
        expires_at: None,
    };
    backend
        .put_if_absent(
            tenant,
            &Key::new(record).unwrap(),
            &JsonValue::new(serde_json::to_value(&stored).unwrap()).unwrap(),
            None,
        )
        .await
        .unwrap();
}
