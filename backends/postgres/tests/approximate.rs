//! The approximate mode keeps its documented promise, on the shared test server
//! (`P8FS_TEST_POSTGRES_URL`): on clustered data, recall@10 of
//! [`PgBackend::search_approximate`] with `ef_search = 100` is at least 0.95 against the exact
//! search; and while the collection's HNSW index exists, the exact search still returns exactly
//! the brute-force answer (the index never serves it).
//!
//! The data set is generated deterministically, like the benchmark's clustered one
//! (`conformance/benches/backends.rs`) but small: 3,000 vectors of 128 dimensions around 30
//! centres, and 50 queries near stored points.

use std::sync::Arc;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_core::vector::{SearchMode, distance, search, search_with, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Filter, JsonObject, Limit, ManualClock, Metric, RecordId,
    TenantId, VectorStore,
};

const START: i64 = 1_700_000_000_000;
const POINTS: usize = 3000;
const DIMENSION: usize = 128;
const CENTRES: usize = 30;
const QUERIES: usize = 50;
const K: u64 = 10;
/// The documented setting and bound (README, "PostgreSQL (pgvector)").
const EF_SEARCH: u32 = 100;
const MIN_RECALL: f64 = 0.95;

/// SplitMix64, so the data set is the same on every run.
struct Generator(u64);

impl Generator {
    /// A number in [low, high).
    fn uniform(&mut self, low: f32, high: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
        low + (high - low) * unit
    }

    fn index(&mut self, len: usize) -> usize {
        ((self.uniform(0.0, 1.0) * len as f32) as usize).min(len - 1)
    }
}

fn fresh_tenant() -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one("approximate");
    TenantId::new(format!("a{n:016x}")).expect("valid tenant")
}

/// The exact top k by brute force: f64 distances, ties by id.
fn brute_force(data: &[(String, Vec<f32>)], query: &[f32]) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> = data
        .iter()
        .map(|(id, v)| (id.clone(), distance(Metric::Cosine, query, v)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(K as usize);
    all
}

async fn exact(
    backend: &PgBackend,
    tenant: &TenantId,
    name: &CollectionName,
    query: &[f32],
) -> Vec<(String, f64)> {
    search(
        backend,
        tenant,
        name,
        query.to_vec(),
        Limit::top_k(K).expect("k"),
        &Filter::none(),
    )
    .await
    .expect("exact search")
    .into_iter()
    .map(|hit| (hit.id.into_string(), hit.distance))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_meets_its_recall_and_exact_search_stays_exact() {
    let url = std::env::var("P8FS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set P8FS_TEST_POSTGRES_URL (scripts/services/postgres.sh url): this test needs a server")
    });
    let backend = PgBackend::connect(
        &url,
        Arc::new(ManualClock::new(START)),
        PgOptions::default(),
    )
    .await
    .expect("connect to P8FS_TEST_POSTGRES_URL");
    let tenant = fresh_tenant();
    let name = CollectionName::new("clustered").expect("name");
    let spec = CollectionSpec::new("clustered", DIMENSION as u64, Metric::Cosine).expect("spec");
    backend
        .create_collection(&tenant, &spec)
        .await
        .expect("create");

    let mut generator = Generator(11);
    let centres: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| {
            (0..DIMENSION)
                .map(|_| generator.uniform(-1.0, 1.0))
                .collect()
        })
        .collect();
    let mut data = Vec::with_capacity(POINTS);
    for i in 0..POINTS {
        let v: Vec<f32> = centres[i % CENTRES]
            .iter()
            .map(|c| c + generator.uniform(-0.5, 0.5))
            .collect();
        data.push((format!("doc-{i:05}"), v));
    }
    for (id, v) in &data {
        upsert(
            &backend,
            &tenant,
            &name,
            &RecordId::new(id.clone()).expect("id"),
            v.clone(),
            &JsonObject::empty(),
            None,
        )
        .await
        .expect("upsert");
    }
    let queries: Vec<Vec<f32>> = (0..QUERIES)
        .map(|_| {
            let base = data[generator.index(POINTS)].1.clone();
            base.iter()
                .map(|x| x + generator.uniform(-0.2, 0.2))
                .collect()
        })
        .collect();
    let truth: Vec<Vec<(String, f64)>> = queries.iter().map(|q| brute_force(&data, q)).collect();
    for (q, expected) in queries.iter().zip(&truth) {
        assert_eq!(
            &exact(&backend, &tenant, &name, q).await,
            expected,
            "exact search without an index"
        );
    }

    backend
        .create_approximate_index(&tenant, &name)
        .await
        .expect("build the HNSW index");
    let (mut found, mut found_by_mode) = (0, 0);
    for (q, expected) in queries.iter().zip(&truth) {
        assert_eq!(
            &exact(&backend, &tenant, &name, q).await,
            expected,
            "exact search while the HNSW index exists"
        );
        let hits = backend
            .search_approximate(
                &tenant,
                &name,
                q.clone(),
                Limit::top_k(K).expect("k"),
                EF_SEARCH,
            )
            .await
            .expect("approximate search");
        assert!(hits.len() <= K as usize, "at most k hits");
        found += hits
            .iter()
            .filter(|hit| expected.iter().any(|(id, _)| id == hit.id.as_str()))
            .count();
        // The contract's approximate mode takes the same index.
        let hits = search_with(
            &backend,
            &tenant,
            &name,
            q.clone(),
            Limit::top_k(K).expect("k"),
            &p8fs_core::Filter::none(),
            SearchMode::Approximate {
                ef: EF_SEARCH as usize,
            },
        )
        .await
        .expect("search in approximate mode");
        found_by_mode += hits
            .iter()
            .filter(|hit| expected.iter().any(|(id, _)| id == hit.id.as_str()))
            .count();
    }
    let recall_by_mode = found_by_mode as f64 / (QUERIES as f64 * K as f64);
    assert!(
        recall_by_mode >= MIN_RECALL,
        "recall@{K} of mode approximate, ef {EF_SEARCH}: {recall_by_mode:.3}"
    );
    let recall = found as f64 / (QUERIES as f64 * K as f64);
    eprintln!(
        "recall@{K} at ef_search {EF_SEARCH}: {recall:.3} ({found} of {})",
        QUERIES as u64 * K
    );
    assert!(
        recall >= MIN_RECALL,
        "recall@{K} at ef_search {EF_SEARCH} is {recall:.3}, below the documented {MIN_RECALL}"
    );

    // Dropping the collection removes its index too, leaving the shared server as it was.
    assert!(backend.drop_collection(&tenant, &name).await.expect("drop"));
}
