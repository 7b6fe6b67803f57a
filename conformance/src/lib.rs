//! The p8fs conformance suite: the contract of `DESIGN.md` ("The semantic contract") as
//! executable scenarios, a reference model, and property-based differential tests.
//!
//! Scenarios are async functions over a [`Harness`], grouped by contract area (`kv`, `ttl`,
//! `vector`, `graph`, `tenancy`, `limits`, `numbers`, `races`, `cursors`, `object`, `change`,
//! `purge`, `reaper`, `retention`). [`suite!`] instantiates every scenario and every differential
//! test for one backend factory as separate tests, so a failure is reported as
//! `rocksdb::kv::cas_has_exactly_one_winner` and one failure does not hide the rest. A factory that
//! cannot reach its server panics: a missing server is a failure, never a pass.
//!
//! Purges on a shared server: SQL cases share one database and tell their records apart by
//! tenant, but `purge_expired` removes every tenant's expired records by the case's own clock (and
//! `reap_objects` every tenant's abandoned and freed blobs by its policy, `trim_changes` every
//! tenant's changes committed before its time). So cases run in one of two modes ([`Purging`]).
//! Most cases are [`Purging::Shared`]: their clocks start at [`START`], their backends purge
//! nothing (an unbounded purge grace) and they never reap or trim. The `purge`, `reaper` and
//! `retention` scenarios and the differential tests are [`Purging::Exclusive`]: the factory holds
//! the server's purge lock (a session lock on the server, released when the case ends or its
//! process dies) and sets no purge grace, and the clock runs from [`PURGE_START`], a month before
//! [`START`]. A purge there removes only records that expired before its clock's now, which no
//! shared case ever wrote (their records expire after `START`) and only one exclusive case at a
//! time owns; [`build`] first purges at `START - 1` what earlier exclusive cases left, so the counts
//! a purge returns are the case's own. A `reaper` scenario likewise first reaps with a policy at
//! `START - 1` (`reaper::clean_slate`) and then reaps only with policies before `START`, and a
//! `retention` scenario first trims at `START - 1` and then trims only before `START`: every
//! change of a shared case is committed at or after `START`.

pub mod change;
#[cfg(test)]
mod check_suites;
pub mod cursors;
pub mod differential;
pub mod graph;
pub mod kv;
pub mod limits;
pub mod model;
pub mod near_ties;
pub mod numbers;
pub mod object;
pub mod purge;
pub mod races;
pub mod reaper;
pub mod retention;
pub mod support;
pub mod tenancy;
pub mod ttl;
pub mod vector;

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use p8fs_core::{Backend, ManualClock, TenantId, Timestamp};

pub use model::ModelBackend;

/// The time every [`Purging::Shared`] case starts at (2023-11-14T22:13:20Z).
pub const START: Timestamp = 1_700_000_000_000;

/// The time every [`Purging::Exclusive`] case starts at: 30 days before [`START`]. Exclusive cases
/// advance their clocks by far less than that, so their purges never reach a record of a shared
/// case.
pub const PURGE_START: Timestamp = START - 30 * 24 * 3_600_000;

/// How a case's backend may purge on a server it shares with concurrent cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purging {
    /// The clock starts at [`START`]; `purge_expired` on a shared server removes nothing.
    Shared,
    /// The case holds its server's purge lock while it runs; the clock starts at
    /// [`PURGE_START`], and `purge_expired` removes what expired before the clock's now.
    Exclusive,
}

/// A backend built for one case, with whatever must live as long as it (a temporary directory,
/// a database handle).
pub struct Built {
    pub backend: Arc<dyn Backend>,
    pub keep: Box<dyn Any + Send + Sync>,
    /// Bytes the backend stores per object chunk beyond the chunk's own (what an encryption
    /// layer adds); `stored_bytes` counts them.
    pub chunk_overhead: u64,
}

/// Builds a fresh backend reading time from the given clock, for a case of the given
/// [`Purging`] mode. Panics when its server is missing. Use [`build`], which also sets the clock.
pub type Factory = fn(Arc<ManualClock>, Purging) -> BoxFuture<'static, Built>;

/// Builds a backend with `factory` for a case in mode `purging`, on a clock at [`START`] (shared)
/// or [`PURGE_START`] (exclusive). An exclusive case first purges, at `START - 1`, whatever
/// earlier exclusive cases left expired on a shared server: no shared record expires that early,
/// and no other exclusive case runs meanwhile.
pub async fn build(factory: Factory, purging: Purging) -> (Arc<ManualClock>, Built) {
    match purging {
        Purging::Shared => {
            let clock = Arc::new(ManualClock::new(START));
            let built = factory(clock.clone(), purging).await;
            (clock, built)
        }
        Purging::Exclusive => {
            let clock = Arc::new(ManualClock::new(START - 1));
            let built = factory(clock.clone(), purging).await;
            built
                .backend
                .purge_expired()
                .await
                .expect("purge what earlier exclusive cases left");
            clock.set(PURGE_START);
            (clock, built)
        }
    }
}

/// What a scenario gets: a backend, its manual clock, and two fresh tenants.
pub struct Harness {
    pub backend: Arc<dyn Backend>,
    pub clock: Arc<ManualClock>,
    /// The tenant a scenario works in.
    pub tenant: TenantId,
    /// A second tenant, for isolation checks.
    pub other: TenantId,
    pub factory: Factory,
    /// See [`Built::chunk_overhead`].
    pub chunk_overhead: u64,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Harness {
    /// Builds a backend with `factory` and picks two fresh random tenants, so cases can share a
    /// database server and run concurrently. Purges remove nothing on a shared server.
    pub async fn start(factory: Factory) -> Self {
        Self::start_in(factory, Purging::Shared).await
    }

    /// Like [`Harness::start`] for a case whose purges must do real work: the case waits for and
    /// holds its server's purge lock, and its clock starts at [`PURGE_START`].
    pub async fn start_exclusive(factory: Factory) -> Self {
        Self::start_in(factory, Purging::Exclusive).await
    }

    async fn start_in(factory: Factory, purging: Purging) -> Self {
        let (clock, built) = build(factory, purging).await;
        Self {
            backend: built.backend,
            clock,
            tenant: support::fresh_tenant(),
            other: support::fresh_tenant(),
            factory,
            chunk_overhead: built.chunk_overhead,
            _keep: built.keep,
        }
    }

    /// The backend, as the bundle trait object.
    pub fn b(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// What `stored_bytes` reports for `bytes` of data in `chunks` chunks.
    pub fn stored(&self, bytes: u64, chunks: u64) -> u64 {
        bytes + chunks * self.chunk_overhead
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: i64) -> Timestamp {
        self.clock.advance(millis)
    }
}

/// A factory for the reference model (a fresh model purges only its own records).
pub fn model_factory(clock: Arc<ManualClock>, _purging: Purging) -> BoxFuture<'static, Built> {
    Box::pin(async move {
        Built {
            backend: Arc::new(ModelBackend::new(clock)),
            keep: Box::new(()),
            chunk_overhead: 0,
        }
    })
}

/// Instantiates the whole suite for one backend: `suite!(rocksdb, crate::rocksdb::factory);`
/// expands to `mod rocksdb { mod kv { #[tokio::test] async fn ... } ... }`. The factory must be
/// an absolute path (`crate::...`).
#[macro_export]
macro_rules! suite {
    ($name:ident, $factory:path) => {
        mod $name {
            $crate::__scenarios! { $factory;
                kv: [
                    put_then_get_returns_value_and_version,
                    put_replaces_and_versions_increase,
                    versions_increase_across_delete_and_recreate,
                    get_missing_is_none,
                    get_text_is_get_written_out,
                    delete_reports_whether_visible,
                    put_if_absent_creates_once,
                    compare_and_swap_semantics,
                    cas_has_exactly_one_winner,
                    put_if_absent_has_exactly_one_winner,
                    empty_and_unicode_keys,
                    scan_orders_by_raw_bytes,
                    scan_pages_with_cursor,
                    scan_prefix_and_start_after,
                    find_by_field_json_equality,
                    find_by_field_null_matches_only_null,
                    find_by_field_dot_paths,
                    find_by_field_pages,
                    find_by_field_spans_candidate_pages,
                ],
                ttl: [
                    visible_until_exactly_expires_at,
                    put_without_ttl_makes_permanent,
                    expired_key_is_absent_for_writes,
                    cas_sets_ttl_from_the_call,
                    scan_skips_expired,
                    find_by_field_skips_expired,
                    expired_vector_is_invisible,
                    expired_node_hides_its_edges,
                    traversal_never_passes_expired_edge,
                    recreated_node_does_not_revive_old_edges,
                    upserts_set_ttl_from_the_call,
                ],
                vector: [
                    create_collection_is_idempotent_and_conflicts,
                    list_and_drop_collections,
                    upsert_get_delete,
                    missing_collection_is_not_found,
                    search_orders_by_distance_then_id,
                    search_ties_break_by_id,
                    search_metrics_match_pgvector,
                    search_with_filter,
                    zero_vectors_rejected_in_cosine,
                    dimension_mismatch_rejected,
                    non_finite_rejected,
                    search_k_larger_than_collection,
                    list_vectors_pages,
                    drop_removes_records,
                    search_beyond_the_first_candidate_page,
                    approximate_search_is_ranked_filtered_and_visible,
                ],
                graph: [
                    nodes_and_edges_round_trip,
                    edge_needs_visible_endpoints,
                    delete_node_deletes_edges,
                    neighbors_by_hops_then_id,
                    neighbors_directions_and_rel_filter,
                    neighbors_limit_and_depth,
                    shortest_path_fewest_hops,
                    shortest_path_tie_smallest_sequence,
                    shortest_path_weighted,
                    shortest_path_weighted_ties,
                    shortest_path_respects_max_depth,
                    shortest_path_none_and_same_node,
                    shortest_path_parallel_edges,
                    list_nodes_pages,
                    edges_of_lists_each_edge_once,
                    get_nodes_returns_visible_nodes_once_by_id,
                    get_nodes_limits_its_ids,
                    get_nodes_stays_in_its_tenant,
                ],
                tenancy: [
                    kv_invisible_across_tenants,
                    vectors_invisible_across_tenants,
                    graph_invisible_across_tenants,
                    prefix_tenants_stay_apart,
                ],
                limits: [
                    oversized_value_changes_nothing,
                    failed_cas_changes_nothing,
                    kv_input_limits_name_their_field,
                    vector_errors_change_nothing,
                    graph_errors_change_nothing,
                    collection_spec_conflict_changes_nothing,
                ],
                numbers: [
                    find_by_field_numbers_at_the_edges,
                    filter_numbers_at_the_edges,
                    filter_two_clauses_on_one_key,
                ],
                races: [
                    put_if_absent_races_over_ended_key,
                    creates_and_stale_swaps_race_over_ended_key,
                    swaps_race_over_ended_key_and_all_lose,
                    versions_increase_when_puts_and_swaps_race,
                ],
                cursors: [
                    scan_cursor_under_change,
                    list_vectors_cursor_under_change,
                    list_nodes_cursor_under_change,
                ],
                object: [
                    buckets_create_list_head_delete,
                    missing_bucket_is_not_found_everywhere,
                    delete_of_non_empty_bucket_conflicts,
                    delete_bucket_aborts_its_uploads,
                    buckets_are_per_tenant,
                    buckets_hold_their_own_objects,
                    bucket_count_is_limited,
                    objects_round_trip_at_chunk_sizes,
                    attributes_round_trip,
                    replace_and_delete,
                    only_pending_blobs_can_be_committed,
                    expired_objects_are_invisible,
                    conditional_puts,
                    if_absent_has_exactly_one_winner,
                    if_absent_has_one_winner_among_puts_and_completions,
                    objects_invisible_across_tenants,
                    list_objects_orders_by_raw_bytes,
                    list_v2_matches_reference,
                    list_v2_pages_past_the_store_page,
                    multipart_upload_completes,
                    completion_uses_the_named_parts,
                    invalid_part_lists_are_refused,
                    list_parts_pages,
                    list_uploads_by_key_then_id,
                    abort_ends_an_upload,
                    completion_checks_its_condition,
                ],
                change: [
                    kv_writes_are_logged,
                    vector_writes_are_logged,
                    graph_writes_are_logged,
                    object_writes_are_logged,
                    expiry_appends_nothing,
                    cursors_are_dense_and_page,
                    logs_are_per_tenant,
                    concurrent_writers_are_logged_once,
                ],
            }
            $crate::__scenarios! { $factory, start_exclusive;
                purge: [
                    purge_is_unobservable,
                    expired_vectors_are_purged,
                    purged_node_recreated_without_old_edges,
                    versions_increase_after_purge,
                    purge_respects_tenant_prefixes,
                    expired_objects_are_purged,
                ],
                reaper: [
                    uncommitted_blob_is_invisible_until_reaped,
                    freed_blobs_outlive_their_object_until_reaped,
                    abandoned_uploads_are_reaped_with_their_parts,
                    ended_uploads_and_buckets_free_their_blobs,
                ],
                retention: [
                    trim_keeps_a_suffix,
                    trim_keeps_a_suffix_when_clocks_disagree,
                    purge_and_reap_append_nothing,
                ],
            }
            $crate::__differential! { $factory;
                kv_matches_model,
                ttl_matches_model,
                vectors_match_model,
                graph_matches_model,
                objects_match_model,
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios {
    ($factory:path; $($area:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $crate::__scenarios! { $factory, start; $($area: [$($case),*]),* }
    };
    ($factory:path, $start:ident; $($area:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $area {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let harness = $crate::Harness::$start($factory).await;
                        $crate::$area::$case(&harness).await;
                    }
                )*
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __differential {
    ($factory:path; $($case:ident),* $(,)?) => {
        mod differential {
            $(
                #[test]
                fn $case() {
                    $crate::differential::$case($factory);
                }
            )*
        }
    };
}
