//! Approximate search on RocksDB: the graph's recall against exact search on a fixed clustered
//! data set, with filters (walked and too narrow to walk), deletes, expiry, and a reopen that
//! rebuilds the graph.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use p8fs_core::vector::{SearchHit, SearchMode, search_with, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, Filter, JsonObject, Limit, ManualClock, Metric, RecordId,
    TenantId, Ttl, VectorStore,
};

use crate::{RocksBackend, RocksOptions};

const DIM: usize = 48;
const ROWS: usize = 6000;
const CLUSTERS: usize = 60;
const QUERIES: usize = 60;
const K: u64 = 10;

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> RocksBackend {
    let options = RocksOptions {
        graph_min_rows: 1000,
        ..RocksOptions::default()
    };
    RocksBackend::open(dir, clock.clone(), options).expect("open")
}

/// Rows around `CLUSTERS` centres (a fixed linear congruential generator), and queries near
/// stored rows.
fn data_set() -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut state = 42_u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 40) as f32 / (1_u64 << 24) as f32) * 2.0 - 1.0
    };
    let centres: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| (0..DIM).map(|_| uniform()).collect())
        .collect();
    let rows: Vec<Vec<f32>> = (0..ROWS)
        .map(|row| {
            let centre = &centres[(row * 7) % CLUSTERS];
            centre.iter().map(|c| c + 0.35 * uniform()).collect()
        })
        .collect();
    let queries = (0..QUERIES)
        .map(|q| {
            let near = &rows[(q * 97) % ROWS];
            near.iter().map(|x| x + 0.1 * uniform()).collect()
        })
        .collect();
    (rows, queries)
}

fn id(row: usize) -> RecordId {
    RecordId::new(format!("r{row:05}")).expect("id")
}

fn equals(path: &str, value: serde_json::Value) -> Filter {
    Filter::new([(path.to_owned(), value)]).expect("filter")
}

struct Fixture {
    db: RocksBackend,
    tenant: TenantId,
    name: CollectionName,
    queries: Vec<Vec<f32>>,
}

impl Fixture {
    async fn search(&self, q: usize, filter: &Filter, mode: SearchMode) -> Vec<SearchHit> {
        search_with(
            &self.db,
            &self.tenant,
            &self.name,
            self.queries[q].clone(),
            Limit::top_k(K).expect("k"),
            filter,
            mode,
        )
        .await
        .expect("search")
    }

    /// Recall at k of approximate search (ef 64) against exact, over every query; checks that
    /// every approximate hit is one the filter keeps and that its distance is the exact one.
    async fn recall(&self, filter: &Filter) -> f64 {
        let (mut found, mut total) = (0, 0);
        for q in 0..QUERIES {
            let exact = self.search(q, filter, SearchMode::Exact).await;
            let approximate = self
                .search(q, filter, SearchMode::Approximate { ef: 64 })
                .await;
            for hit in &approximate {
                assert!(
                    filter.matches(&hit.metadata),
                    "{} passes the filter",
                    hit.id
                );
            }
            for pair in approximate.windows(2) {
                assert!(pair[0].distance <= pair[1].distance, "ranked by distance");
            }
            found += exact
                .iter()
                .filter(|e| {
                    approximate
                        .iter()
                        .any(|a| a.id == e.id && a.distance == e.distance)
                })
                .count();
            total += exact.len();
        }
        found as f64 / total.max(1) as f64
    }

    async fn wait_for_graph(&self) {
        let started = Instant::now();
        while !self
            .db
            .graph_ready(&self.tenant, &self.name)
            .expect("graph")
        {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the graph is built"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approximate_search_finds_the_nearest_through_filters_deletes_expiry_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(1_000));
    let (rows, queries) = data_set();
    let mut f = Fixture {
        db: open(dir.path(), &clock),
        tenant: TenantId::new("t").expect("tenant"),
        name: CollectionName::new("c").expect("collection"),
        queries,
    };
    let spec = CollectionSpec::new("c", DIM as u64, Metric::Cosine).expect("spec");
    f.db.create_collection(&f.tenant, &spec)
        .await
        .expect("create");
    for (row, vector) in rows.iter().enumerate() {
        let metadata = JsonObject::new(
            "metadata",
            json!({"group": row % 4, "rare": row % 100 == 0}),
        )
        .expect("metadata");
        // Every tenth record expires after a minute.
        let ttl = (row % 10 == 9).then(|| Ttl::from_millis(60_000).expect("ttl"));
        upsert(
            &f.db,
            &f.tenant,
            &f.name,
            &id(row),
            vector.clone(),
            &metadata,
            ttl,
        )
        .await
        .expect("upsert");
    }

    // Until the graph is built, approximate searches are exact.
    let before = f
        .search(0, &Filter::none(), SearchMode::Approximate { ef: 16 })
        .await;
    assert_eq!(
        before,
        f.search(0, &Filter::none(), SearchMode::Exact).await
    );
    f.wait_for_graph().await;

    let recall = f.recall(&Filter::none()).await;
    assert!(recall >= 0.95, "recall@10 {recall}");
    let quarter = equals("group", json!(1));
    let recall = f.recall(&quarter).await;
    assert!(
        recall >= 0.95,
        "recall@10 with a filter keeping a quarter: {recall}"
    );
    // A filter keeping 1 % is answered exactly.
    let rare = equals("rare", json!(true));
    for q in 0..QUERIES {
        assert_eq!(
            f.search(q, &rare, SearchMode::Approximate { ef: 16 }).await,
            f.search(q, &rare, SearchMode::Exact).await,
            "a narrow filter is searched exactly"
        );
    }

    // Deleted records are never answered; the graph stays navigable.
    for row in (3..ROWS).step_by(10) {
        assert!(
            f.db.delete_vector(&f.tenant, &f.name, &id(row))
                .await
                .expect("delete")
        );
    }
    // Moved records are found where they are now.
    for row in (5..ROWS).step_by(50) {
        let moved: Vec<f32> = rows[(row + 1) % ROWS].iter().map(|x| x * 1.01).collect();
        let metadata = JsonObject::new("metadata", json!({"group": row % 4, "rare": false}))
            .expect("metadata");
        upsert(&f.db, &f.tenant, &f.name, &id(row), moved, &metadata, None)
            .await
            .expect("move");
    }
    let recall = f.recall(&Filter::none()).await;
    assert!(
        recall >= 0.95,
        "recall@10 after deletes and moves: {recall}"
    );

    // Expired records are never answered.
    clock.advance(120_000);
    for q in 0..QUERIES {
        for hit in f
            .search(q, &Filter::none(), SearchMode::Approximate { ef: 64 })
            .await
        {
            let row: usize = hit.id.as_str()[1..].parse().expect("row");
            assert!(row % 10 != 9, "expired {} answered", hit.id);
            assert!(row % 10 != 3, "deleted {} answered", hit.id);
        }
    }
    let recall = f.recall(&Filter::none()).await;
    assert!(recall >= 0.95, "recall@10 after expiry: {recall}");

    // Reopened, the collection rebuilds its graph by itself.
    drop(f.db);
    f.db = open(dir.path(), &clock);
    f.wait_for_graph().await;
    let recall = f.recall(&Filter::none()).await;
    assert!(recall >= 0.95, "recall@10 after reopening: {recall}");
    let bytes = f.db.graph_bytes(&f.tenant, &f.name).expect("graph");
    assert!(bytes > 0 && bytes < 400 * ROWS, "graph of {bytes} bytes");
}
