//! Backend benchmarks through the `Backend` trait, one thread, in process:
//! - key-value: gets/s and puts/s;
//! - exact vector search, 100k × 384 cosine, k = 10: p50/p90, against a naive scalar loop over
//!   `Vec<Vec<f32>>` on the same data;
//! - shortest path (unweighted, max depth 6) and neighbors on a 100k-node, 1M-edge random graph;
//! - change log: 100k kv puts of distinct keys in a fresh tenant (puts/s, each appending its
//!   change), then the whole log read back through `ChangeLog::changes` in pages of 1000
//!   (changes/s).
//!
//! `cargo bench --workspace --bench backends [-- kv vector graph changes]`
//! Sizes scale with `P8FS_BENCH_SCALE` (default 1.0); the backend is chosen with
//! `P8FS_BENCH_BACKEND` (default `rocksdb`).
//!
//! `P8FS_BENCH_BACKEND=postgres` needs `P8FS_BENCH_POSTGRES_URL` (the data of each run goes to a
//! fresh tenant there) and adds, on the same vectors: the bare SQL
//! `ORDER BY embedding <=> $1 LIMIT 10` issued directly (our overhead is ours/bare), and the
//! approximate mode (HNSW index, `PgBackend::search_approximate`): queries per second and
//! recall@10 against the exact search, on these uniform random vectors and on as many clustered
//! ones (centres plus noise, queries near stored points), which resemble real embeddings. `tidb` connects to `P8FS_BENCH_TIDB_URL` and works in
//! a fresh tenant; on a MariaDB stand-in (not TiDB) the vector benchmark is skipped, since the
//! stand-in's stored `VEC_*` functions scan about 1,700 rows/s at 384 dimensions (a minute per
//! query on 100k records), which would measure the emulation, not the backend.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_backend_tidb::{Dialect, TidbBackend, TidbOptions};
use p8fs_conformance::support::{collection, key, label, node, object, rel, spec, value};
use p8fs_core::traverse::{self, PathQuery};
use p8fs_core::vector;
use p8fs_core::{
    Backend, ChangeCursor, Clock, Depth, Direction, Filter, JsonObject, Limit, Metric, RecordId,
    RelFilter, SystemClock, TenantId, Weight,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

struct Bench {
    backend: Arc<dyn Backend>,
    tenant: TenantId,
    scale: f64,
    rng: StdRng,
    /// The PostgreSQL backend and a plain pool on its database, for the PostgreSQL-only figures.
    postgres: Option<(PgBackend, sqlx::PgPool)>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let scale: f64 = std::env::var("P8FS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let backend_name = std::env::var("P8FS_BENCH_BACKEND").unwrap_or_else(|_| "rocksdb".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut tenant = TenantId::new("bench").expect("tenant");
    let mut skip_vector = None;
    let mut postgres = None;
    let backend: Arc<dyn Backend> = match backend_name.as_str() {
        "rocksdb" => Arc::new(
            RocksBackend::open(dir.path(), clock, RocksOptions::default()).expect("open rocksdb"),
        ),
        "tidb" => {
            let url = std::env::var("P8FS_BENCH_TIDB_URL")
                .expect("set P8FS_BENCH_TIDB_URL (mysql://user:password@host:port/database)");
            let backend = runtime
                .block_on(TidbBackend::connect(&url, clock, TidbOptions::default()))
                .expect("connect to P8FS_BENCH_TIDB_URL");
            if backend.dialect() == Dialect::StandIn {
                skip_vector = Some(
                    "the MariaDB stand-in's stored VEC_* functions scan ~1,700 rows/s at 384-d",
                );
            }
            // The database outlives the run: start from an empty tenant.
            tenant = p8fs_conformance::support::fresh_tenant();
            Arc::new(backend)
        }
        "postgres" => {
            let url = std::env::var("P8FS_BENCH_POSTGRES_URL").expect(
                "set P8FS_BENCH_POSTGRES_URL (postgres://user:password@host:port/database)",
            );
            let (backend, pool) = runtime.block_on(async {
                let backend = PgBackend::connect(&url, clock, PgOptions::default())
                    .await
                    .expect("connect to P8FS_BENCH_POSTGRES_URL");
                let pool = sqlx::PgPool::connect(&url).await.expect("a plain pool");
                (backend, pool)
            });
            // The database outlives the run: start from an empty tenant.
            tenant = p8fs_conformance::support::fresh_tenant();
            postgres = Some((backend.clone(), pool));
            Arc::new(backend)
        }
        other => panic!("unknown P8FS_BENCH_BACKEND {other}; known: rocksdb, tidb, postgres"),
    };
    println!("# p8fs backend benchmarks: backend {backend_name}, scale {scale}");
    println!(
        "# machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    let mut bench = Bench {
        backend,
        tenant,
        scale,
        rng: StdRng::seed_from_u64(42),
        postgres,
    };
    runtime.block_on(async {
        if wanted("kv") {
            bench.kv().await;
        }
        if wanted("vector") {
            match skip_vector {
                Some(why) => println!("vector: skipped: {why}"),
                None => bench.vector().await,
            }
        }
        if wanted("graph") {
            bench.graph().await;
        }
        if wanted("changes") {
            bench.changes().await;
        }
    });
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Bench {
    fn n(&self, base: usize) -> usize {
        ((base as f64 * self.scale) as usize).max(10)
    }

    async fn kv(&mut self) {
        let keys: Vec<_> = (0..self.n(100_000))
            .map(|i| key(&format!("user/{i:08}")))
            .collect();
        let payload = value(json!({"name": "a memory", "tags": ["x", "y"], "n": 42}));
        let puts = self.n(200_000);
        let started = Instant::now();
        for i in 0..puts {
            self.backend
                .put(&self.tenant, &keys[i % keys.len()], &payload, None)
                .await
                .expect("put");
        }
        let put_rate = puts as f64 / started.elapsed().as_secs_f64();
        let gets = self.n(1_000_000);
        let order: Vec<usize> = (0..gets)
            .map(|_| self.rng.random_range(0..keys.len()))
            .collect();
        let started = Instant::now();
        for i in order {
            let found = self.backend.get(&self.tenant, &keys[i]).await.expect("get");
            assert!(found.is_some());
        }
        let get_rate = gets as f64 / started.elapsed().as_secs_f64();
        println!(
            "kv: {} keys; put {put_rate:.0}/s ({puts} puts); get {get_rate:.0}/s ({gets} random gets)",
            keys.len()
        );
    }

    /// Writes distinct keys in a tenant of their own, then reads the tenant's whole change log
    /// back, page by page, as a follower catching up does.
    async fn changes(&mut self) {
        let tenant = p8fs_conformance::support::fresh_tenant();
        let n = self.n(100_000);
        let keys: Vec<_> = (0..n).map(|i| key(&format!("log/{i:08}"))).collect();
        let payload = value(json!({"name": "a memory", "tags": ["x", "y"], "n": 42}));
        let started = Instant::now();
        for k in &keys {
            self.backend
                .put(&tenant, k, &payload, None)
                .await
                .expect("put");
        }
        let put_rate = n as f64 / started.elapsed().as_secs_f64();
        let page_size = Limit::new(1000).expect("limit");
        let mut after = ChangeCursor(0);
        let mut read = 0;
        let mut pages = Vec::new();
        let started = Instant::now();
        loop {
            let page_started = Instant::now();
            let page = self
                .backend
                .changes(&tenant, after, page_size)
                .await
                .expect("changes");
            if page.changes.is_empty() {
                break;
            }
            pages.push(page_started.elapsed());
            read += page.changes.len();
            after = page.next;
            if page.next == page.head {
                break;
            }
        }
        let elapsed = started.elapsed();
        assert_eq!(read, n, "the log holds one change per put");
        println!(
            "changes: {n} kv puts (distinct keys, fresh tenant) {put_rate:.0}/s; read back in pages of 1000: {:.0} changes/s ({} pages, page p50 {:.2} ms, p90 {:.2} ms)",
            read as f64 / elapsed.as_secs_f64(),
            pages.len(),
            ms(percentile(&mut pages, 0.5)),
            ms(percentile(&mut pages, 0.9))
        );
    }

    async fn vector(&mut self) {
        let (n, dim, k) = (self.n(100_000), 384, 10);
        let name = collection("bench-vectors");
        self.backend
            .create_collection(
                &self.tenant,
                &spec("bench-vectors", dim as u64, Metric::Cosine),
            )
            .await
            .expect("create collection");
        let data: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| self.rng.random_range(-1.0_f32..1.0))
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let metadata = JsonObject::empty();
        for (i, v) in data.iter().enumerate() {
            let id = RecordId::new(format!("doc-{i:07}")).expect("id");
            vector::upsert(
                self.backend.as_ref(),
                &self.tenant,
                &name,
                &id,
                v.clone(),
                &metadata,
                None,
            )
            .await
            .expect("upsert");
        }
        let load = started.elapsed();
        let queries: Vec<Vec<f32>> = (0..50)
            .map(|_| {
                (0..dim)
                    .map(|_| self.rng.random_range(-1.0_f32..1.0))
                    .collect()
            })
            .collect();
        let limit = Limit::top_k(k as u64).expect("k");
        let mut ours = Vec::new();
        let mut naive = Vec::new();
        let mut exact_ids = Vec::new();
        for q in &queries {
            let started = Instant::now();
            let hits = vector::search(
                self.backend.as_ref(),
                &self.tenant,
                &name,
                q.clone(),
                limit,
                &Filter::none(),
            )
            .await
            .expect("search");
            ours.push(started.elapsed());
            let started = Instant::now();
            let baseline = naive_top_k(&data, q, k);
            naive.push(started.elapsed());
            assert_eq!(hits.len(), k);
            assert_eq!(
                hits[0].id.as_str(),
                format!("doc-{:07}", baseline[0]),
                "exact search must agree with the naive loop"
            );
            exact_ids.push(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
        }
        let (p50, p90) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.9));
        let naive_p50 = percentile(&mut naive, 0.5);
        println!(
            "vector: {n} x {dim} cosine, k={k}, load {:.1}s; search p50 {:.2} ms, p90 {:.2} ms; naive scalar loop p50 {:.2} ms; naive/ours {:.2}x",
            load.as_secs_f64(),
            ms(p50),
            ms(p90),
            ms(naive_p50),
            naive_p50.as_secs_f64() / p50.as_secs_f64()
        );
        if let Some((backend, pool)) = self.postgres.clone() {
            postgres_vector(&pool, &self.tenant, &name, &queries, p50).await;
            approximate_recall(
                &backend,
                &self.tenant,
                &name,
                &queries,
                &exact_ids,
                "uniform",
            )
            .await;
            self.clustered_recall(&backend, n, dim, k).await;
        }
    }

    /// PostgreSQL only: approximate search on data with neighbourhoods, as embeddings have (and
    /// uniform random vectors in 384 dimensions, where every point is nearly equidistant, do not):
    /// `n / 100` centres, each point a centre plus noise, queries near stored points.
    async fn clustered_recall(&mut self, backend: &PgBackend, n: usize, dim: usize, k: usize) {
        let name = collection("bench-clustered");
        self.backend
            .create_collection(
                &self.tenant,
                &spec("bench-clustered", dim as u64, Metric::Cosine),
            )
            .await
            .expect("create collection");
        let centres: Vec<Vec<f32>> = (0..(n / 100).max(1))
            .map(|_| {
                (0..dim)
                    .map(|_| self.rng.random_range(-1.0_f32..1.0))
                    .collect()
            })
            .collect();
        let mut data = Vec::with_capacity(n);
        for i in 0..n {
            let centre = &centres[i % centres.len()];
            let v: Vec<f32> = centre
                .iter()
                .map(|c| c + self.rng.random_range(-0.5_f32..0.5))
                .collect();
            let id = RecordId::new(format!("doc-{i:07}")).expect("id");
            vector::upsert(
                self.backend.as_ref(),
                &self.tenant,
                &name,
                &id,
                v.clone(),
                &JsonObject::empty(),
                None,
            )
            .await
            .expect("upsert");
            data.push(v);
        }
        let limit = Limit::top_k(k as u64).expect("k");
        let mut queries = Vec::new();
        let mut exact_ids = Vec::new();
        for _ in 0..50 {
            let base = &data[self.rng.random_range(0..data.len())];
            let q: Vec<f32> = base
                .iter()
                .map(|x| x + self.rng.random_range(-0.2_f32..0.2))
                .collect();
            let hits = vector::search(
                self.backend.as_ref(),
                &self.tenant,
                &name,
                q.clone(),
                limit,
                &Filter::none(),
            )
            .await
            .expect("search");
            exact_ids.push(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
            queries.push(q);
        }
        approximate_recall(
            backend,
            &self.tenant,
            &name,
            &queries,
            &exact_ids,
            "clustered",
        )
        .await;
    }

    async fn graph(&mut self) {
        let (n, m) = (self.n(100_000), self.n(1_000_000));
        let ids: Vec<_> = (0..n).map(|i| node(&format!("n{i:06}"))).collect();
        let started = Instant::now();
        let properties = object(json!({}));
        for id in &ids {
            self.backend
                .put_node(&self.tenant, id, &label("thing"), &properties, None)
                .await
                .expect("node");
        }
        let link = rel("links");
        for _ in 0..m {
            let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
            self.backend
                .put_edge(
                    &self.tenant,
                    &ids[a],
                    &link,
                    &ids[b],
                    Weight::ONE,
                    &properties,
                    None,
                )
                .await
                .expect("edge");
        }
        let load = started.elapsed();
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..50 {
            let (a, b) = (self.rng.random_range(0..n), self.rng.random_range(0..n));
            let query = PathQuery {
                src: ids[a].clone(),
                dst: ids[b].clone(),
                direction: Direction::Out,
                rels: RelFilter::any(),
                max_depth: Depth::path(6).expect("depth"),
                weighted: false,
            };
            let started = Instant::now();
            let path = traverse::shortest_path(self.backend.as_ref(), &self.tenant, &query)
                .await
                .expect("path");
            times.push(started.elapsed());
            found += usize::from(path.is_some());
        }
        let (p50, p90) = (percentile(&mut times, 0.5), percentile(&mut times, 0.9));
        let mut neighbor_times = Vec::new();
        for _ in 0..50 {
            let start = &ids[self.rng.random_range(0..n)];
            let started = Instant::now();
            traverse::neighbors(
                self.backend.as_ref(),
                &self.tenant,
                start,
                Direction::Out,
                &RelFilter::any(),
                Depth::neighbors(2).expect("depth"),
                Limit::MAX,
            )
            .await
            .expect("neighbors");
            neighbor_times.push(started.elapsed());
        }
        println!(
            "graph: {n} nodes, {m} edges, load {:.1}s; shortest path (unweighted, max depth 6, {found}/50 found) p50 {:.2} ms, p90 {:.2} ms; neighbors depth 2 p50 {:.2} ms",
            load.as_secs_f64(),
            ms(p50),
            ms(p90),
            ms(percentile(&mut neighbor_times, 0.5))
        );
    }
}

/// The baseline: a plain scalar loop over `Vec<Vec<f32>>`, cosine distance in f32, full sort.
fn naive_top_k(data: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let query_norm = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut dot = 0.0_f32;
            let mut norm = 0.0_f32;
            for (a, b) in v.iter().zip(query) {
                dot += a * b;
                norm += a * a;
            }
            (1.0 - dot / (norm.sqrt() * query_norm), i)
        })
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}

/// PostgreSQL only: the bare pgvector query on the same data.
async fn postgres_vector(
    pool: &sqlx::PgPool,
    tenant: &TenantId,
    name: &p8fs_core::CollectionName,
    queries: &[Vec<f32>],
    ours_p50: Duration,
) {
    let collection_id: i64 =
        sqlx::query_scalar("SELECT id FROM p8fs_collections WHERE tenant = $1 AND name = $2")
            .bind(tenant.as_str())
            .bind(name.as_str())
            .fetch_one(pool)
            .await
            .expect("collection id");
    let mut bare = Vec::new();
    for q in queries {
        let started = Instant::now();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM p8fs_vectors WHERE collection_id = $2 ORDER BY embedding <=> $1 LIMIT 10",
        )
        .bind(BareVector(q))
        .bind(collection_id)
        .fetch_all(pool)
        .await
        .expect("bare query");
        bare.push(started.elapsed());
        assert_eq!(ids.len(), 10);
    }
    let bare_p50 = percentile(&mut bare, 0.5);
    println!(
        "vector (postgres): bare SQL `ORDER BY embedding <=> $1 LIMIT 10` p50 {:.2} ms; ours/bare {:.2}",
        ms(bare_p50),
        ours_p50.as_secs_f64() / bare_p50.as_secs_f64()
    );
}

/// PostgreSQL only: builds the HNSW index of a collection and measures queries per second and
/// recall@k of the approximate mode against the exact results.
async fn approximate_recall(
    backend: &PgBackend,
    tenant: &TenantId,
    name: &p8fs_core::CollectionName,
    queries: &[Vec<f32>],
    exact_ids: &[Vec<RecordId>],
    data: &str,
) {
    let k = exact_ids.first().map_or(10, Vec::len);
    let started = Instant::now();
    backend
        .create_approximate_index(tenant, name)
        .await
        .expect("build the HNSW index");
    let build = started.elapsed();
    let limit = Limit::top_k(k as u64).expect("k");
    for ef_search in [40, 100, 200, 400] {
        let started = Instant::now();
        let mut found = 0;
        for (q, exact) in queries.iter().zip(exact_ids) {
            let hits = backend
                .search_approximate(tenant, name, q.clone(), limit, ef_search)
                .await
                .expect("approximate search");
            found += hits.iter().filter(|h| exact.contains(&h.id)).count();
        }
        let elapsed = started.elapsed();
        println!(
            "vector (postgres, approximate, {data} data): HNSW build {:.1}s; ef_search {ef_search}: {:.0} queries/s, recall@{k} {:.3}",
            build.as_secs_f64(),
            queries.len() as f64 / elapsed.as_secs_f64(),
            found as f64 / (queries.len() * k) as f64
        );
    }
}

/// A query vector bound in pgvector's binary format, as a client using pgvector directly would.
struct BareVector<'a>(&'a [f32]);

impl sqlx::Type<sqlx::Postgres> for BareVector<'_> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("vector")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for BareVector<'_> {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        buf.extend_from_slice(&u16::try_from(self.0.len())?.to_be_bytes());
        buf.extend_from_slice(&0_u16.to_be_bytes());
        for x in self.0 {
            buf.extend_from_slice(&x.to_be_bytes());
        }
        Ok(sqlx::encode::IsNull::No)
    }
}
