//! Vector search through the RocksDB backend's search API (`p8fs_core::vector::search_with` on
//! a `RocksBackend`), on a data set written by `scripts/bench/vector-anchors.sh`, which runs
//! FAISS, numpy and a C bandwidth probe on the same files and prints them side by side.
//!
//! `P8FS_BENCH_DATA=<dir> [P8FS_BENCH_EF=<ef>[,<ef>...]] cargo bench --workspace --bench exact_search`
//!
//! Exact by default; with `P8FS_BENCH_EF` the searches are approximate with each `ef` in turn,
//! after the collection's graph is built once (its build time and size are reported), and
//! queries/s with two searches at a time is measured too.
//!
//! `<dir>` holds `meta.json` (`{"rows", "dim", "queries", "k", "metric"}`), `base.f32` (`rows ×
//! dim` little-endian f32, row-major) and `queries.f32` (`queries × dim`). The records are
//! upserted (ids `r0000000`…), a few queries warm up, then every query is searched once, one at a
//! time, on a multi-threaded runtime as the server runs them. One JSON line a mode goes to stdout:
//! `{"name", "rows", "dim", "k", "load_s", "p50_ms", "p99_ms", "mean_ms", "ids"}` (`ids`: each
//! query's result rows, for the script's exactness check), plus `build_s`, `graph_mib` and
//! `qps_2` when approximate. `P8FS_BENCH_RESULT=<file>` writes the
//! lines there too. Without `P8FS_BENCH_DATA` the benchmark says so and does nothing.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use p8fs_backend_rocksdb::{RocksBackend, RocksOptions};
use p8fs_core::vector::{self, SearchHit, SearchMode};
use p8fs_core::{
    CollectionName, CollectionSpec, Filter, JsonObject, Limit, Metric, RecordId, SystemClock,
    TenantId, VectorStore,
};
use serde_json::{Value, json};

/// Upserts in flight while loading.
const LOADERS: usize = 8;
/// Queries run before the measured ones.
const WARMUP: usize = 5;

fn main() {
    let Ok(data) = std::env::var("P8FS_BENCH_DATA") else {
        println!(
            "exact_search: set P8FS_BENCH_DATA to a directory written by scripts/bench/vector-anchors.sh"
        );
        return;
    };
    let data = Path::new(&data);
    let meta: Value =
        serde_json::from_slice(&std::fs::read(data.join("meta.json")).expect("meta.json"))
            .expect("meta.json is JSON");
    let field = |name: &str| {
        meta[name]
            .as_u64()
            .unwrap_or_else(|| panic!("meta.json: {name}")) as usize
    };
    let (rows, dim, queries, k) = (field("rows"), field("dim"), field("queries"), field("k"));
    let metric = Metric::parse(meta["metric"].as_str().unwrap_or("cosine")).expect("metric");
    // One exact run, or one approximate run for each `ef` of a comma-separated list, over
    // one graph.
    let modes: Vec<SearchMode> = match std::env::var("P8FS_BENCH_EF") {
        Err(_) => vec![SearchMode::Exact],
        Ok(list) => list
            .split(',')
            .map(|ef| {
                let ef = ef.trim().parse::<u64>().expect("P8FS_BENCH_EF: numbers");
                SearchMode::parse(Some("approximate"), Some(ef)).expect("P8FS_BENCH_EF")
            })
            .collect(),
    };
    let approximate = modes[0] != SearchMode::Exact;
    let base = floats(&data.join("base.f32"), rows * dim);
    let query_values = Arc::new(floats(&data.join("queries.f32"), queries * dim));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend = Arc::new(
        RocksBackend::open(dir.path(), Arc::new(SystemClock), RocksOptions::default())
            .expect("open rocksdb"),
    );
    let tenant = TenantId::new("bench").expect("tenant");
    let name = CollectionName::new("vectors").expect("collection");
    let base = Arc::new(base);
    let reports = runtime.block_on(async {
        backend
            .create_collection(
                &tenant,
                &CollectionSpec::new("vectors", dim as u64, metric).expect("spec"),
            )
            .await
            .expect("create collection");
        let started = Instant::now();
        let mut loaders = Vec::new();
        for part in 0..LOADERS {
            let (backend, tenant, name, base) =
                (backend.clone(), tenant.clone(), name.clone(), base.clone());
            loaders.push(tokio::spawn(async move {
                let metadata = JsonObject::empty();
                for row in (part..rows).step_by(LOADERS) {
                    vector::upsert(
                        backend.as_ref(),
                        &tenant,
                        &name,
                        &RecordId::new(format!("r{row:07}")).expect("id"),
                        base[row * dim..(row + 1) * dim].to_vec(),
                        &metadata,
                        None,
                    )
                    .await
                    .expect("upsert");
                }
            }));
        }
        for loader in loaders {
            loader.await.expect("loader");
        }
        let load = started.elapsed();
        let limit = Limit::top_k(k as u64).expect("k");
        let mut extra = json!({});
        if approximate {
            // The first approximate search starts the graph; wait for it.
            let started = Instant::now();
            vector::search_with(
                backend.as_ref(),
                &tenant,
                &name,
                query_values[..dim].to_vec(),
                limit,
                &Filter::none(),
                modes[0],
            )
            .await
            .expect("search");
            while !backend.graph_ready(&tenant, &name).expect("graph") {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let bytes = backend.graph_bytes(&tenant, &name).expect("graph");
            extra = json!({
                "build_s": started.elapsed().as_secs_f64(),
                "graph_mib": bytes as f64 / f64::from(1 << 20),
            });
        }
        let mut reports = Vec::new();
        for &mode in &modes {
            let search = {
                let (backend, tenant, name) = (backend.clone(), tenant.clone(), name.clone());
                let query_values = query_values.clone();
                move |q: usize| {
                    let (backend, tenant, name) = (backend.clone(), tenant.clone(), name.clone());
                    let values = query_values[q * dim..(q + 1) * dim].to_vec();
                    async move {
                        vector::search_with(
                            backend.as_ref(),
                            &tenant,
                            &name,
                            values,
                            limit,
                            &Filter::none(),
                            mode,
                        )
                        .await
                        .expect("search")
                    }
                }
            };
            for q in 0..WARMUP.min(queries) {
                search(q).await;
            }
            let mut times = Vec::with_capacity(queries);
            let mut ids = Vec::with_capacity(queries);
            for q in 0..queries {
                let started = Instant::now();
                let hits = search(q).await;
                times.push(started.elapsed());
                ids.push(hits.iter().map(row_of).collect::<Vec<usize>>());
            }
            let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
            times.sort();
            if let SearchMode::Approximate { .. } = mode {
                // Two searches at a time, each going through every query.
                let started = Instant::now();
                let runs: Vec<_> = (0..2)
                    .map(|_| {
                        let search = search.clone();
                        tokio::spawn(async move {
                            for q in 0..queries {
                                search(q).await;
                            }
                        })
                    })
                    .collect();
                for run in runs {
                    run.await.expect("search task");
                }
                extra["qps_2"] = json!((2 * queries) as f64 / started.elapsed().as_secs_f64());
            }
            let name = match mode {
                SearchMode::Exact => "p8fs".to_string(),
                SearchMode::Approximate { ef } => format!("p8fs HNSW M=16 ef={ef}"),
            };
            let mut report = json!({
                "name": name,
                "rows": rows,
                "dim": dim,
                "k": k,
                "load_s": load.as_secs_f64(),
                "p50_ms": ms(percentile(&times, 0.50)),
                "p99_ms": ms(percentile(&times, 0.99)),
                "mean_ms": ms(mean),
                "ids": ids,
            });
            if let (Some(report), Some(extra)) = (report.as_object_mut(), extra.as_object()) {
                report.extend(extra.clone());
            }
            reports.push(report);
        }
        reports
    });
    let mut lines = String::new();
    for report in reports {
        let line = report.to_string();
        println!("{line}");
        lines.push_str(&line);
        lines.push('\n');
    }
    if let Ok(path) = std::env::var("P8FS_BENCH_RESULT") {
        std::fs::write(path, lines).expect("write P8FS_BENCH_RESULT");
    }
}

/// `count` little-endian f32 values from `path`.
fn floats(path: &Path, count: usize) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len(), count * 4, "{}: size", path.display());
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The row a hit's id names (`r0000042` → 42).
fn row_of(hit: &SearchHit) -> usize {
    hit.id.as_str()[1..].parse().expect("bench id")
}

/// The `p` quantile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
