//! Exact search past the first candidate page, on the shared test server
//! (`P8FS_TEST_POSTGRES_URL`): the data set of the conformance scenario
//! `vector::search_beyond_the_first_candidate_page` (its module is included from the conformance
//! crate) has near ties at the k-th place, so every filtered search needs the second candidate
//! query, which [`PgBackend::second_candidate_queries`] counts, and the answers stay exact.

#[allow(dead_code, unreachable_pub)]
#[path = "../../../conformance/src/near_ties.rs"]
mod near_ties;

use std::sync::Arc;

use p8fs_backend_postgres::{PgBackend, PgOptions};
use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    CollectionName, CollectionSpec, JsonObject, Limit, ManualClock, RecordId, TenantId, VectorStore,
};

use near_ties::{NearTies, SEARCHES};

const START: i64 = 1_700_000_000_000;

async fn connect() -> PgBackend {
    let url = std::env::var("P8FS_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("set P8FS_TEST_POSTGRES_URL (scripts/services/postgres.sh url): this test needs a server")
    });
    PgBackend::connect(
        &url,
        Arc::new(ManualClock::new(START)),
        PgOptions::default(),
    )
    .await
    .expect("connect to P8FS_TEST_POSTGRES_URL")
}

fn fresh_tenant() -> TenantId {
    use std::hash::BuildHasher;
    let n = std::collections::hash_map::RandomState::new().hash_one("search_paths");
    TenantId::new(format!("s{n:016x}")).expect("valid tenant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_ties_behind_a_filter_take_the_second_candidate_query() {
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
            let before = backend.second_candidate_queries();
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
            let second = backend.second_candidate_queries() - before;
            // Filtered, the first window of k + max(8, k/4) kept rows ends inside the ties;
            // unfiltered (k = 316), the first window of 395 rows reaches well past them, so that
            // search is the control: one query.
            assert_eq!(
                second,
                u64::from(filtered),
                "{metric}, k = {k}, filtered: {filtered}: second candidate queries"
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
        backend.drop_collection(&tenant, &name).await.expect("drop");
    }
}
