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
use p8fs_core::{ManualClock, TenantId};

use near_ties::SEARCHES;

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
    // The control, k = 1000: k + 16 rows are more than the collection holds, so one query takes
    // them all and nothing widens.
    let searches = [SEARCHES[0], SEARCHES[1], (1000, false)];
    let runs = near_ties::run_searches(&backend, &fresh_tenant(), &searches, &|| {
        backend.search_widenings()
    })
    .await;
    for run in runs {
        eprintln!(
            "{}, k = {}, filtered: {}: {} widenings",
            run.metric, run.k, run.filtered, run.counted
        );
        if run.k == 1000 {
            assert_eq!(run.counted, 0, "{}, k = 1000: widenings", run.metric);
        } else {
            assert!(
                run.counted >= 1,
                "{}, k = {}, filtered: {}: the window was never widened",
                run.metric,
                run.k,
                run.filtered
            );
        }
    }
}
