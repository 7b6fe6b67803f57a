//! Exact search past the first candidate window, on the shared test server
//! (`P8FS_TEST_TIDB_URL`: TiDB or the MariaDB stand-in): the data set of the conformance scenario
//! `vector::search_beyond_the_first_candidate_page` (its module is included from the conformance
//! crate) makes every search whose k-th place is a near tie widen its window, which
//! [`TidbBackend::search_widenings`] counts: the filtered ones because the nearest records are
//! all rejected, the unfiltered k = 316 because its first window ends inside the ties, where the
//! rounding bound cannot prove the top k complete. The answers stay exact.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../conformance/src/near_ties.rs"]
mod near_ties;

use std::sync::Arc;

use p8fs_backend_tidb::{TidbBackend, TidbOptions};
use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, JsonObject, Limit, ManualClock, Metric, RecordId, TenantId,
    VectorStore,
};

use near_ties::{NearTies, SEARCHES};

const START: i64 = 1_700_000_000_000;

async fn connect() -> TidbBackend {
    let url = std::env::var("P8FS_TEST_TIDB_URL").unwrap_or_else(|_| {
        panic!("set P8FS_TEST_TIDB_URL (scripts/services/mariadb.sh url, or a TiDB): this test needs a server")
    });
    TidbBackend::connect(
        &url,
        Arc::new(ManualClock::new(START)),
        TidbOptions::default(),
    )
    .await
    .expect("connect to P8FS_TEST_TIDB_URL")
}

fn fresh_tenant() -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one("search_paths");
    TenantId::new(format!("s{n:016x}")).expect("valid tenant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_ties_and_filters_widen_the_candidate_window() {
    let backend = connect().await;
    let tenant = fresh_tenant();
    for metric in near_ties::METRICS {
        let data = NearTies::new(metric);
        if let Err(problem) = data.check() {
            panic!("the {metric} data set is not what it claims: {problem}");
        }
        let name = CollectionName::new(format!("ties-{metric}")).expect("name");
        let spec =
            CollectionSpec::new(name.as_str(), near_ties::DIMENSION as u64, metric).expect("spec");
        backend
            .create_collection(&tenant, &spec)
            .await
            .expect("create");
        for item in &data.items {
            let metadata = JsonObject::new("metadata", item.metadata.clone()).expect("metadata");
            let id = RecordId::new(item.id.clone()).expect("id");
            upsert(
                &backend,
                &tenant,
                &name,
                &id,
                item.vector.clone(),
                &metadata,
                None,
            )
            .await
            .expect("upsert");
        }
        for (k, filtered) in SEARCHES {
            let filter = near_ties::filter_of(filtered);
            let before = backend.search_widenings();
            let hits = search(
                &backend,
                &tenant,
                &name,
                data.query.clone(),
                Limit::top_k(k).expect("k"),
                &filter,
            )
            .await
            .expect("search");
            let widenings = backend.search_widenings() - before;
            eprintln!("{metric}, k = {k}, filtered: {filtered}: {widenings} widenings");
            assert!(
                widenings >= 1,
                "{metric}, k = {k}, filtered: {filtered}: the window was never widened"
            );
            let got: Vec<(String, f64)> = hits
                .into_iter()
                .map(|hit| (hit.id.into_string(), hit.distance))
                .collect();
            assert_eq!(
                got,
                data.expected(k, &filter),
                "{metric}, k = {k}, filtered: {filtered}: the exact ranking"
            );
        }
        if metric == Metric::Cosine {
            // The control: k + 16 rows are more than the collection holds, so one query takes
            // them all and nothing widens.
            let before = backend.search_widenings();
            let hits = search(
                &backend,
                &tenant,
                &name,
                data.query.clone(),
                Limit::top_k(1000).expect("k"),
                &near_ties::filter_of(false),
            )
            .await
            .expect("search");
            assert_eq!(
                backend.search_widenings() - before,
                0,
                "k = 1000: widenings"
            );
            assert_eq!(hits.len(), data.items.len(), "k = 1000: every record");
        }
        backend.drop_collection(&tenant, &name).await.expect("drop");
    }
}
