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
use p8fs_core::{ManualClock, TenantId};

use near_ties::SEARCHES;

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
    let runs = near_ties::run_searches(&backend, &fresh_tenant(), &SEARCHES, &|| {
        backend.second_candidate_queries()
    })
    .await;
    for run in runs {
        // Filtered, the first window of k + max(8, k/4) kept rows ends inside the ties;
        // unfiltered (k = 316), the first window of 395 rows reaches well past them, so that
        // search is the control: one query.
        assert_eq!(
            run.counted,
            u64::from(run.filtered),
            "{}, k = {}, filtered: {}: second candidate queries",
            run.metric,
            run.k,
            run.filtered
        );
    }
}
