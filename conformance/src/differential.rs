//! Property-based differential tests: random operation sequences applied to a backend and to the
//! reference model ([`ModelBackend`]), comparing every result.
//!
//! Each test generates sequences of operations (`Op`) over tiny closed sets (a few keys, ids,
//! values and two tenants) so that operations collide: a setup (collections; keys, vectors, nodes
//! and edges seeded so that reads meet records), then up to 40 random operations. It replays every
//! sequence on a fresh backend from the factory and on a fresh model, each reading its own
//! [`ManualClock`] that starts at [`PURGE_START`] and advances together with the other. After every
//! operation both results must be equal: values, pages and cursors (listings are followed to their
//! end), search hits with their distances, traversal results, and for errors the [`ErrorKind`].
//! After `purge_expired` and at the end of each case the whole visible state of both tenants is
//! compared too, and so are both tenants' change logs, read from the start in pages to the head:
//! cursors, commit times, operations, subjects and key-value versions (as ordinals, below), and
//! the heads `change_heads` reports for the case's tenants.
//!
//! Versions are opaque and are never compared across sides. Each side remembers, per
//! (tenant, key), the versions its own writes returned; a write must return a version greater than
//! every earlier one for that key (also across delete and expiry), and a version is reported as
//! its ordinal among them (0 for the key's first write). A read returning a version that no write
//! to that key returned fails the case, and so does a change carrying one. Compare-and-swap picks its expected version on each side
//! by position in that side's list (`Expected`), never by value.
//!
//! Each case runs in [`Purging::Exclusive`] mode, so `purge_expired` removes what expired on the
//! backend too, also on a server shared with concurrent tests.
//!
//! Not compared: the count `purge_expired` returns. Physical removal is unobservable by contract,
//! so a backend may legitimately remove expired records earlier (a compaction filter, a delete that
//! also drops an expired record, a TTL job); the `purge` scenarios check counts where they are
//! defined. Both sides must succeed, and every read afterwards must agree.
//!
//! The model's traversal results are also checked against a brute force written here
//! (breadth-first hop counts; enumeration of every simple path), which tests `core::traverse`
//! itself, since backend and model share it.
//!
//! Object operations (`objects_match_model`, in `differential/object.rs`) are compared the same
//! way, with the objects' blob ids left out; the state compared then also holds each tenant's
//! buckets, objects and stored bytes.
//!
//! `P8FS_PROPTEST_CASES` sets the number of cases per test (default 256; zero or anything but a
//! positive integer fails the test, so a misconfigured run cannot pass by generating nothing);
//! `PROPTEST_RNG_SEED` fixes the random seed; without it a seed is drawn and a failure names it.
//! A failing case is printed as soon as it fails, then shrunk for at most three minutes, so a
//! failure on a slow SQL server is reported rather than lost to the test timeout.

use std::any::Any;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError, TestCaseResult, TestError, TestRunner};
use serde_json::{Value, json};

use p8fs_core::graph::NodePage;
use p8fs_core::kv::KvEntry;
use p8fs_core::traverse::{self, Neighbor, Path, PathQuery};
use p8fs_core::vector::{self, VectorPage};
use p8fs_core::{
    Backend, Change, ChangeCursor, ChangeOp, Clock, CollectionSpec, Direction, EdgeRecord,
    ErrorKind, Key, KeyPrefix, Limit, ManualClock, Metric, NodeId, NodeRecord, Page, RecordId,
    SearchHit, Subject, TenantId, Timestamp, Ttl, VectorRecord, Version, kv,
};

use crate::support as s;
use crate::{Factory, ModelBackend, PURGE_START, Purging};

mod object;

use object::{ObjOp, ObjOut};

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// Key-value operations (put, put_if_absent, compare_and_swap with a current or older version,
/// delete, get, scans and find_by_field followed to their last page) with ttls, clock advances and
/// purges, compared with the model after every operation.
pub fn kv_matches_model(factory: Factory) {
    let ops = prop::collection::vec(
        prop_oneof![
            20 => kv_op(ttl(0.3, 40)).prop_map(Op::Kv),
            2 => advance(30),
            1 => advance_to_expiry(),
            1 => Just(Op::Purge),
        ],
        1..=40,
    );
    run(
        "kv_matches_model",
        factory,
        concat(seed_keys(ttl(0.3, 60)), ops),
    );
}

/// Short ttls across key-value, vector and graph records, with clock advances of a few
/// milliseconds and advances to exactly one millisecond before, at and after a recorded expiry,
/// so reads happen at the visibility boundary `now == expires_at`.
pub fn ttl_matches_model(factory: Factory) {
    let setup = prop::sample::select(METRICS).prop_map(|metric| {
        (0..2)
            .map(|t| {
                Op::Vector(VecOp::Create {
                    t,
                    c: TTL_COLLECTIONS[0],
                    dim: 2,
                    metric,
                })
            })
            .collect::<Vec<_>>()
    });
    let setup = [
        seed_keys(ttl(0.6, 12)),
        seed_vectors(TTL_COLLECTIONS, ttl(0.6, 12)),
        seed_graph(ttl(0.5, 12)),
    ]
    .into_iter()
    .fold(setup.boxed(), concat);
    let ttl = ttl(0.8, 12);
    let body = prop::collection::vec(
        prop_oneof![
            6 => kv_op(ttl.clone()).prop_map(Op::Kv),
            4 => vec_op(ttl.clone(), TTL_COLLECTIONS).prop_map(Op::Vector),
            6 => graph_op(ttl).prop_map(Op::Graph),
            4 => advance(6),
            4 => advance_to_expiry(),
            1 => Just(Op::Purge),
        ],
        1..=40,
    );
    run("ttl_matches_model", factory, concat(setup, body));
}

/// One or two collections per tenant (dimension 2 or 3, any metric), upserts of small integer
/// vectors (so distances tie), deletes, gets, listings followed to their end, exact searches with
/// up to three metadata filter clauses (two may meet at one key) and numbers at the edges of JSON
/// equality, collection create/drop/inspect, ttls, advances and purges. In about a third of the
/// cases collection `c` of tenant 0 also gets up to 48 more records ([`seed_bulk`]) and searches
/// take k up to 64, so the SQL backends' candidate windows (PostgreSQL `k + max(8, k/4)` rows,
/// TiDB `k + 16`) end inside ties or hold too few records that pass the filter.
pub fn vectors_match_model(factory: Factory) {
    let setup =
        prop::collection::vec((2u64..=3, prop::sample::select(METRICS)), 1..=2).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .flat_map(|(i, (dim, metric))| {
                    (0..2).map(move |t| {
                        Op::Vector(VecOp::Create {
                            t,
                            c: COLLECTIONS[i],
                            dim,
                            metric,
                        })
                    })
                })
                .collect::<Vec<_>>()
        });
    let body = prop::collection::vec(
        prop_oneof![
            16 => vec_op(ttl(0.3, 40), COLLECTIONS).prop_map(Op::Vector),
            2 => vec_admin_op().prop_map(Op::Vector),
            2 => advance(50),
            1 => advance_to_expiry(),
            1 => Just(Op::Purge),
        ],
        1..=40,
    );
    let setup = concat(setup, seed_vectors(COLLECTIONS, ttl(0.2, 60)));
    let setup = concat(setup, seed_bulk());
    run("vectors_match_model", factory, concat(setup, body));
}

/// Nodes and edges over five node ids and two relations with exact binary-fraction weights,
/// optional ttls, deletes, gets, node listings, neighbors and shortest paths in every direction
/// (also checked against a brute force), advances and purges.
pub fn graph_matches_model(factory: Factory) {
    let body = prop::collection::vec(
        prop_oneof![
            20 => graph_op(ttl(0.25, 40)).prop_map(Op::Graph),
            1 => advance(50),
            1 => advance_to_expiry(),
            1 => Just(Op::Purge),
        ],
        1..=40,
    );
    run(
        "graph_matches_model",
        factory,
        concat(seed_graph(ttl(0.2, 60)), body),
    );
}

/// Buckets and objects in two tenants (small objects at keys of up to four characters among
/// `a`, `b`, `/` and `é`; plain and If-None-Match puts with ttls; one-part multipart uploads
/// completed, plainly or If-None-Match, or aborted; deletes; reads of metadata and bytes; bucket
/// create, delete and list; ListObjectsV2 walks with random prefix, delimiter,
/// start-after and max-keys from 0 to 1000), clock advances to and around expiries, and purges.
pub fn objects_match_model(factory: Factory) {
    let body = prop::collection::vec(
        prop_oneof![
            20 => object::obj_op(ttl(0.3, 40)).prop_map(Op::Object),
            2 => advance(30),
            2 => advance_to_expiry(),
            1 => Just(Op::Purge),
        ],
        1..=40,
    );
    run(
        "objects_match_model",
        factory,
        concat(object::seed_objects(), body),
    );
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Keys, ordered by raw bytes: "A" < "a" < "a/b" < "ab" < "b" < "é" < "🔑". ("" is not a valid key.)
const KEYS: &[&str] = &["a", "a/b", "ab", "A", "b", "é", "🔑"];
const PREFIXES: &[&str] = &["", "a", "a/", "A", "b", "é", "🔑"];
const COLLECTIONS: &[&str] = &["c", "C"];
const TTL_COLLECTIONS: &[&str] = &["c"];
const RECORD_IDS: &[&str] = &["a", "ab", "B", "b", "é", "🔑"];
/// Record ids of [`seed_bulk`], more than the SQL backends' first candidate windows for small k.
const BULK_IDS: &[&str] = &[
    "g00", "g01", "g02", "g03", "g04", "g05", "g06", "g07", "g08", "g09", "g10", "g11", "g12",
    "g13", "g14", "g15", "g16", "g17", "g18", "g19", "g20", "g21", "g22", "g23", "g24", "g25",
    "g26", "g27", "g28", "g29", "g30", "g31", "g32", "g33", "g34", "g35", "g36", "g37", "g38",
    "g39", "g40", "g41", "g42", "g43", "g44", "g45", "g46", "g47",
];
/// Most clauses of a search filter.
const MAX_CLAUSES: usize = 3;
const METRICS: &[Metric] = &[Metric::Cosine, Metric::L2, Metric::Dot];
const NODES: &[&str] = &["a", "b", "c", "d", "e"];
const LABELS: &[&str] = &["L", "l"];
const RELS: &[&str] = &["r", "s"];
const REL_FILTERS: &[&[&str]] = &[&[], &["r"], &["s"], &["r", "s"]];
const DIRECTIONS: &[Direction] = &[Direction::Out, Direction::In, Direction::Both];
/// Exact binary fractions, so path totals are exact whatever the summation order.
const WEIGHTS: &[f64] = &[0.5, 1.0, 1.5, 2.0];
/// More pages than any listing here can legitimately have; beyond it a cursor does not advance.
const MAX_PAGES: usize = 64;

/// A JSON value that prints as JSON text.
#[derive(Clone, PartialEq)]
struct Json(Value);

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One step of a sequence; `t` is the tenant (0 or 1), ttls are in milliseconds.
#[derive(Clone, Debug)]
enum Op {
    Kv(KvOp),
    Vector(VecOp),
    Graph(GraphOp),
    Object(ObjOp),
    /// Moves both clocks forward by this many milliseconds.
    Advance(i64),
    /// Moves both clocks to `offset` ms from a recorded expiry still ahead (the `pick`-th of
    /// them, modulo their number); nothing if none is ahead.
    AdvanceToExpiry {
        pick: usize,
        offset: i64,
    },
    /// `purge_expired` on both sides, then a comparison of the whole visible state.
    Purge,
}

#[derive(Clone, Debug)]
enum KvOp {
    Put {
        t: usize,
        key: &'static str,
        value: Json,
        ttl: Option<i64>,
    },
    PutIfAbsent {
        t: usize,
        key: &'static str,
        value: Json,
        ttl: Option<i64>,
    },
    Cas {
        t: usize,
        key: &'static str,
        expected: Expected,
        value: Json,
        ttl: Option<i64>,
    },
    Delete {
        t: usize,
        key: &'static str,
    },
    Get {
        t: usize,
        key: &'static str,
    },
    /// A scan followed through its cursor to the last page.
    Scan {
        t: usize,
        prefix: &'static str,
        start_after: Option<&'static str>,
        limit: u64,
    },
    /// `core::kv::find_by_field` followed through its cursor to the last page.
    Find {
        t: usize,
        path: &'static str,
        operand: Json,
        start_after: Option<&'static str>,
        limit: u64,
    },
}

/// The expected version of a compare-and-swap, chosen per side among the versions that side's
/// writes returned for the key (never by value). With none, `Version(0)`: the key was never
/// written, so the result is `NotFound` whatever the value.
#[derive(Clone, Copy, Debug)]
enum Expected {
    /// The last version issued for the key.
    Latest,
    /// The version issued this many writes before the last (clamped to the first).
    Older(usize),
}

#[derive(Clone, Debug)]
enum VecOp {
    Create {
        t: usize,
        c: &'static str,
        dim: u64,
        metric: Metric,
    },
    Drop {
        t: usize,
        c: &'static str,
    },
    Spec {
        t: usize,
        c: &'static str,
    },
    Collections {
        t: usize,
    },
    /// Through `core::vector::upsert`. The vector is the first `dim` components of `v` (`dim + 1`
    /// with `bad_dim`), `dim` being the collection's dimension in the model (3 without one).
    Upsert {
        t: usize,
        c: &'static str,
        id: &'static str,
        v: [i8; 4],
        bad_dim: bool,
        meta: Json,
        ttl: Option<i64>,
    },
    Delete {
        t: usize,
        c: &'static str,
        id: &'static str,
    },
    Get {
        t: usize,
        c: &'static str,
        id: &'static str,
    },
    /// `list_vectors` followed through its cursor to the last page.
    List {
        t: usize,
        c: &'static str,
        start_after: Option<&'static str>,
        limit: u64,
    },
    /// Through `core::vector::search`; the query is built from `q` as `Upsert` builds its vector.
    Search {
        t: usize,
        c: &'static str,
        q: [i8; 4],
        bad_dim: bool,
        k: u64,
        /// The filter's clauses (none: no filter).
        filter: Vec<(&'static str, Json)>,
    },
}

#[derive(Clone, Debug)]
enum GraphOp {
    PutNode {
        t: usize,
        id: &'static str,
        label: &'static str,
        props: Json,
        ttl: Option<i64>,
    },
    DeleteNode {
        t: usize,
        id: &'static str,
    },
    GetNode {
        t: usize,
        id: &'static str,
    },
    /// `get_nodes` of a batch, repeats and absent ids included.
    GetNodes {
        t: usize,
        ids: Vec<&'static str>,
    },
    /// `list_nodes` followed through its cursor to the last page.
    ListNodes {
        t: usize,
        start_after: Option<&'static str>,
        limit: u64,
    },
    PutEdge {
        t: usize,
        src: &'static str,
        rel: &'static str,
        dst: &'static str,
        weight: f64,
        props: Json,
        ttl: Option<i64>,
    },
    DeleteEdge {
        t: usize,
        src: &'static str,
        rel: &'static str,
        dst: &'static str,
    },
    GetEdge {
        t: usize,
        src: &'static str,
        rel: &'static str,
        dst: &'static str,
    },
    Neighbors {
        t: usize,
        start: &'static str,
        direction: Direction,
        rels: &'static [&'static str],
        depth: u64,
        limit: u64,
    },
    Path {
        t: usize,
        src: &'static str,
        dst: &'static str,
        direction: Direction,
        rels: &'static [&'static str],
        max_depth: u64,
        weighted: bool,
    },
}

impl Op {
    /// The ttl of a write, if it has one.
    fn ttl(&self) -> Option<i64> {
        match self {
            Op::Kv(
                KvOp::Put { ttl, .. } | KvOp::PutIfAbsent { ttl, .. } | KvOp::Cas { ttl, .. },
            )
            | Op::Vector(VecOp::Upsert { ttl, .. })
            | Op::Graph(GraphOp::PutNode { ttl, .. } | GraphOp::PutEdge { ttl, .. }) => *ttl,
            Op::Object(op) => op.ttl(),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Numbers at the edges of JSON equality, each beside its nearest look-alike: 2^53 and 2^53 + 1
/// (no f64 has that value) as integers and 2^53 as a float; 2^63 as an integer and as the float
/// `9.223372036854776e18` (equal); u64::MAX and the float 2^64 (not equal); i64::MIN and the
/// float -2^63 (equal); negative integers and floats; -0.0, 0.0 and 0 (all equal); a fraction.
fn edge_numbers() -> Vec<Value> {
    vec![
        json!(9_007_199_254_740_992_u64),
        json!(9_007_199_254_740_993_u64),
        json!(9_007_199_254_740_992.0),
        json!(9_223_372_036_854_775_808_u64),
        json!(9.223_372_036_854_776e18),
        json!(u64::MAX),
        json!(1.844_674_407_370_955_2e19),
        json!(i64::MIN),
        json!(-9.223_372_036_854_776e18),
        json!(-3),
        json!(-3.0),
        json!(-0.0),
        json!(0.0),
        json!(0),
        json!(0.5),
    ]
}

/// [`kv_values`] mostly, sometimes an object holding one of [`edge_numbers`] at "f".
fn kv_value() -> BoxedStrategy<Json> {
    let edges = edge_numbers()
        .into_iter()
        .map(|n| json!({ "f": n }))
        .collect();
    prop_oneof![3 => json_set(kv_values()), 1 => json_set(edges)].boxed()
}

/// [`operands`] mostly, sometimes one of [`edge_numbers`].
fn operand() -> BoxedStrategy<Json> {
    prop_oneof![3 => json_set(operands()), 1 => json_set(edge_numbers())].boxed()
}

fn kv_values() -> Vec<Value> {
    vec![
        json!(1),
        json!(1.0),
        json!("1"),
        json!(true),
        json!(null),
        json!({"f": 1}),
        json!({"f": 1.0}),
        json!({"f": "1"}),
        json!({"f": {"g": null}}),
        json!({"f": {"g": 1}}),
        json!({"f": [1]}),
        json!({"x": true}),
    ]
}

/// Find-by-field operands: mostly values found at the paths "f", "f.g" and "x" of
/// [`kv_values`], in the same and in other representations.
fn operands() -> Vec<Value> {
    vec![
        json!(1),
        json!(1.0),
        json!("1"),
        json!(true),
        json!(null),
        json!({"g": null}),
        json!({"g": 1.0}),
        json!([1.0]),
        json!({}),
        json!({"f": 1}),
    ]
}

fn metadata() -> Vec<Value> {
    vec![
        json!({}),
        json!({"tag": "x"}),
        json!({"tag": "y"}),
        json!({"tag": 1}),
        json!({"tag": 1.0}),
        json!({"tag": "1"}),
        json!({"tag": true}),
        json!({"tag": {"n": null}}),
    ]
}

/// Metadata holding numbers at the edges ([`edge_numbers`]) at "tag", and objects at "tag" that
/// a clause on "tag" and one on "tag.m" can both match.
fn edge_metadata() -> Vec<Value> {
    let mut all: Vec<Value> = edge_numbers()
        .into_iter()
        .map(|n| json!({ "tag": n }))
        .collect();
    all.push(json!({"tag": {"n": null, "m": 2}}));
    all.push(json!({"tag": {"n": null, "m": 2.5}}));
    all.push(json!({"tag": "x", "m": u64::MAX}));
    all
}

/// [`metadata`] mostly, sometimes [`edge_metadata`].
fn metadata_value() -> BoxedStrategy<Json> {
    prop_oneof![3 => json_set(metadata()), 1 => json_set(edge_metadata())].boxed()
}

fn filter_clauses() -> Vec<(&'static str, Json)> {
    vec![
        ("tag", Json(json!("x"))),
        ("tag", Json(json!("y"))),
        ("tag", Json(json!(1))),
        ("tag", Json(json!(1.0))),
        ("tag.n", Json(json!(null))),
    ]
}

/// Clauses matching [`edge_metadata`] in the same and in other representations.
fn edge_clauses() -> Vec<(&'static str, Json)> {
    let mut all: Vec<(&'static str, Json)> = edge_numbers()
        .into_iter()
        .map(|n| ("tag", Json(n)))
        .collect();
    all.extend([
        ("tag.m", Json(json!(2.0))),
        ("tag.m", Json(json!(2))),
        ("tag", Json(json!({"n": null, "m": 2.0}))),
        ("m", Json(json!(u64::MAX))),
        ("m", Json(json!(1.844_674_407_370_955_2e19))),
    ]);
    all
}

/// A search filter: none mostly, else one to [`MAX_CLAUSES`] clauses, which may meet at one key
/// (`tag = 1 ∧ tag = 1.0`, `tag = {..} ∧ tag.m = 2`).
fn search_filter() -> BoxedStrategy<Vec<(&'static str, Json)>> {
    let clause = || {
        prop_oneof![
            3 => prop::sample::select(filter_clauses()),
            2 => prop::sample::select(edge_clauses()),
        ]
    };
    prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec(clause(), 1..=1),
        1 => prop::collection::vec(clause(), 2..=MAX_CLAUSES),
    ]
    .boxed()
}

fn node_props() -> Vec<Value> {
    vec![
        json!({}),
        json!({"k": 1}),
        json!({"k": 1.0}),
        json!({"k": "1"}),
    ]
}

fn edge_props() -> Vec<Value> {
    vec![json!({}), json!({"since": 2020})]
}

fn json_set(values: Vec<Value>) -> BoxedStrategy<Json> {
    prop::sample::select(values.into_iter().map(Json).collect::<Vec<_>>()).boxed()
}

/// Tenant 0 mostly, so records meet; tenant 1 sometimes, to catch leaks between tenants.
fn tenant() -> BoxedStrategy<usize> {
    prop_oneof![4 => Just(0usize), 1 => Just(1usize)].boxed()
}

/// `None` or `Some(1..=max)` milliseconds.
fn ttl(probability_of_some: f64, max: i64) -> BoxedStrategy<Option<i64>> {
    prop::option::weighted(probability_of_some, 1..=max).boxed()
}

fn advance(max: i64) -> BoxedStrategy<Op> {
    (0..=max).prop_map(Op::Advance).boxed()
}

fn advance_to_expiry() -> BoxedStrategy<Op> {
    (0usize..16, -1i64..=1)
        .prop_map(|(pick, offset)| Op::AdvanceToExpiry { pick, offset })
        .boxed()
}

fn concat(
    setup: impl Strategy<Value = Vec<Op>> + 'static,
    body: impl Strategy<Value = Vec<Op>> + 'static,
) -> BoxedStrategy<Vec<Op>> {
    (setup, body)
        .prop_map(|(mut ops, body)| {
            ops.extend(body);
            ops
        })
        .boxed()
}

fn kv_op(ttl: BoxedStrategy<Option<i64>>) -> BoxedStrategy<KvOp> {
    let key = || prop::sample::select(KEYS);
    let value = kv_value;
    let expected = prop_oneof![
        1 => Just(Expected::Latest),
        1 => (1usize..4).prop_map(Expected::Older),
    ];
    prop_oneof![
        4 => (tenant(), key(), value(), ttl.clone())
            .prop_map(|(t, key, value, ttl)| KvOp::Put { t, key, value, ttl }),
        2 => (tenant(), key(), value(), ttl.clone())
            .prop_map(|(t, key, value, ttl)| KvOp::PutIfAbsent { t, key, value, ttl }),
        3 => (tenant(), key(), expected, value(), ttl).prop_map(
            |(t, key, expected, value, ttl)| KvOp::Cas { t, key, expected, value, ttl }
        ),
        1 => (tenant(), key()).prop_map(|(t, key)| KvOp::Delete { t, key }),
        3 => (tenant(), key()).prop_map(|(t, key)| KvOp::Get { t, key }),
        2 => (tenant(), prop::sample::select(PREFIXES), prop::option::of(key()), 1u64..=4)
            .prop_map(|(t, prefix, start_after, limit)| KvOp::Scan { t, prefix, start_after, limit }),
        2 => (
            tenant(),
            prop_oneof![3 => Just("f"), 1 => Just("f.g"), 1 => Just("x")],
            operand(),
            prop::option::of(key()),
            1u64..=4,
        )
            .prop_map(|(t, path, operand, start_after, limit)| KvOp::Find {
                t,
                path,
                operand,
                start_after,
                limit,
            }),
    ]
    .boxed()
}

/// Record operations on the given collections.
fn vec_op(
    ttl: BoxedStrategy<Option<i64>>,
    collections: &'static [&'static str],
) -> BoxedStrategy<VecOp> {
    let c = move || prop::sample::select(collections);
    let id = || prop::sample::select(RECORD_IDS);
    let grid = || prop::array::uniform4(-2i8..=2);
    let bad_dim = || prop::bool::weighted(0.05);
    prop_oneof![
        6 => (tenant(), c(), id(), grid(), bad_dim(), metadata_value(), ttl).prop_map(
            |(t, c, id, v, bad_dim, meta, ttl)| VecOp::Upsert { t, c, id, v, bad_dim, meta, ttl }
        ),
        1 => (tenant(), c(), id()).prop_map(|(t, c, id)| VecOp::Delete { t, c, id }),
        2 => (tenant(), c(), id()).prop_map(|(t, c, id)| VecOp::Get { t, c, id }),
        2 => (tenant(), c(), prop::option::of(id()), 1u64..=4)
            .prop_map(|(t, c, start_after, limit)| VecOp::List { t, c, start_after, limit }),
        5 => (
            tenant(),
            c(),
            grid(),
            bad_dim(),
            prop_oneof![4 => 1u64..=5, 1 => 6u64..=64],
            search_filter(),
        )
            .prop_map(|(t, c, q, bad_dim, k, filter)| VecOp::Search { t, c, q, bad_dim, k, filter }),
    ]
    .boxed()
}

/// Collection operations: create (idempotent or conflicting), drop, inspect, list.
fn vec_admin_op() -> BoxedStrategy<VecOp> {
    let c = || prop::sample::select(COLLECTIONS);
    prop_oneof![
        2 => (tenant(), c(), 2u64..=3, prop::sample::select(METRICS))
            .prop_map(|(t, c, dim, metric)| VecOp::Create { t, c, dim, metric }),
        1 => (tenant(), c()).prop_map(|(t, c)| VecOp::Drop { t, c }),
        1 => (tenant(), c()).prop_map(|(t, c)| VecOp::Spec { t, c }),
        1 => tenant().prop_map(|t| VecOp::Collections { t }),
    ]
    .boxed()
}

/// For each of `ids` with probability `p`, one operation built from the id and a generated
/// payload.
fn seed<P>(
    ids: &'static [&'static str],
    p: f64,
    payload: impl Strategy<Value = P> + Clone + 'static,
    op: impl Fn(&'static str, P) -> Op + Clone + 'static,
) -> BoxedStrategy<Vec<Op>>
where
    P: fmt::Debug + Clone + 'static,
{
    prop::collection::vec(prop::option::weighted(p, payload), ids.len())
        .prop_map(move |items| {
            ids.iter()
                .zip(items)
                .filter_map(|(id, item)| item.map(|item| op(id, item)))
                .collect::<Vec<_>>()
        })
        .boxed()
}

/// Puts about half the keys in tenant 0 and fewer in tenant 1, so reads and swaps meet records.
fn seed_keys(ttl: BoxedStrategy<Option<i64>>) -> BoxedStrategy<Vec<Op>> {
    let record = (kv_value(), ttl);
    let put = |t: usize| move |key, (value, ttl)| Op::Kv(KvOp::Put { t, key, value, ttl });
    concat(
        seed(KEYS, 0.5, record.clone(), put(0)),
        seed(KEYS, 0.25, record, put(1)),
    )
}

/// Upserts about half the record ids into each collection of tenant 0.
fn seed_vectors(
    collections: &'static [&'static str],
    ttl: BoxedStrategy<Option<i64>>,
) -> BoxedStrategy<Vec<Op>> {
    let record = (prop::array::uniform4(-2i8..=2), metadata_value(), ttl);
    collections
        .iter()
        .map(|c| {
            seed(
                RECORD_IDS,
                0.5,
                record.clone(),
                move |id, (v, meta, ttl)| {
                    Op::Vector(VecOp::Upsert {
                        t: 0,
                        c,
                        id,
                        v,
                        bad_dim: false,
                        meta,
                        ttl,
                    })
                },
            )
        })
        .fold(Just(Vec::new()).boxed(), concat)
}

/// In about a third of the cases, upserts most of [`BULK_IDS`] into collection `c` of tenant 0
/// (small integer vectors, so many distances tie; metadata as elsewhere, so most filters reject
/// most of them; a few with ttls).
fn seed_bulk() -> BoxedStrategy<Vec<Op>> {
    let record = (
        prop::array::uniform4(-2i8..=2),
        metadata_value(),
        ttl(0.1, 60),
    );
    let bulk = seed(BULK_IDS, 0.85, record, |id, (v, meta, ttl)| {
        Op::Vector(VecOp::Upsert {
            t: 0,
            c: COLLECTIONS[0],
            id,
            v,
            bad_dim: false,
            meta,
            ttl,
        })
    });
    prop_oneof![2 => Just(Vec::new()).boxed(), 1 => bulk].boxed()
}

/// Puts most nodes in tenant 0 and some in tenant 1, then some edges among them, so that
/// traversals have something to walk.
fn seed_graph(ttl: BoxedStrategy<Option<i64>>) -> BoxedStrategy<Vec<Op>> {
    let node = (
        prop::sample::select(LABELS),
        json_set(node_props()),
        ttl.clone(),
    );
    let put_node = |t: usize| {
        move |id, (label, props, ttl)| {
            Op::Graph(GraphOp::PutNode {
                t,
                id,
                label,
                props,
                ttl,
            })
        }
    };
    let edges = |t: usize, n: std::ops::RangeInclusive<usize>| {
        let edge = (
            prop::sample::select(NODES),
            prop::sample::select(RELS),
            prop::sample::select(NODES),
            prop::sample::select(WEIGHTS),
            ttl.clone(),
        );
        prop::collection::vec(edge, n)
            .prop_map(move |edges| {
                edges
                    .into_iter()
                    .map(|(src, rel, dst, weight, ttl)| {
                        Op::Graph(GraphOp::PutEdge {
                            t,
                            src,
                            rel,
                            dst,
                            weight,
                            props: Json(json!({})),
                            ttl,
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .boxed()
    };
    let nodes = concat(
        seed(NODES, 0.85, node.clone(), put_node(0)),
        seed(NODES, 0.4, node, put_node(1)),
    );
    concat(nodes, concat(edges(0, 0..=16), edges(1, 0..=4)))
}

fn graph_op(ttl: BoxedStrategy<Option<i64>>) -> BoxedStrategy<GraphOp> {
    let node = || prop::sample::select(NODES);
    let rel = || prop::sample::select(RELS);
    let direction = || prop::sample::select(DIRECTIONS);
    let rels = || prop::sample::select(REL_FILTERS);
    prop_oneof![
        3 => (tenant(), node(), prop::sample::select(LABELS), json_set(node_props()), ttl.clone())
            .prop_map(|(t, id, label, props, ttl)| GraphOp::PutNode { t, id, label, props, ttl }),
        1 => (tenant(), node()).prop_map(|(t, id)| GraphOp::DeleteNode { t, id }),
        1 => (tenant(), node()).prop_map(|(t, id)| GraphOp::GetNode { t, id }),
        1 => (tenant(), prop::collection::vec(node(), 0..=7))
            .prop_map(|(t, ids)| GraphOp::GetNodes { t, ids }),
        1 => (tenant(), prop::option::of(node()), 1u64..=4)
            .prop_map(|(t, start_after, limit)| GraphOp::ListNodes { t, start_after, limit }),
        8 => (
            tenant(),
            node(),
            rel(),
            node(),
            prop::sample::select(WEIGHTS),
            json_set(edge_props()),
            ttl,
        )
            .prop_map(|(t, src, rel, dst, weight, props, ttl)| GraphOp::PutEdge {
                t,
                src,
                rel,
                dst,
                weight,
                props,
                ttl,
            }),
        1 => (tenant(), node(), rel(), node())
            .prop_map(|(t, src, rel, dst)| GraphOp::DeleteEdge { t, src, rel, dst }),
        1 => (tenant(), node(), rel(), node())
            .prop_map(|(t, src, rel, dst)| GraphOp::GetEdge { t, src, rel, dst }),
        4 => (tenant(), node(), direction(), rels(), 1u64..=4, 1u64..=6).prop_map(
            |(t, start, direction, rels, depth, limit)| GraphOp::Neighbors {
                t,
                start,
                direction,
                rels,
                depth,
                limit,
            }
        ),
        5 => (tenant(), node(), node(), direction(), rels(), 1u64..=5, any::<bool>()).prop_map(
            |(t, src, dst, direction, rels, max_depth, weighted)| GraphOp::Path {
                t,
                src,
                dst,
                direction,
                rels,
                max_depth,
                weighted,
            }
        ),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------------

/// Cases per test without `P8FS_PROPTEST_CASES`.
const DEFAULT_CASES: u32 = 256;

/// The number of cases per test from the value of `P8FS_PROPTEST_CASES` (`None`: unset): a
/// positive integer. Zero or anything else is an error, so a run cannot pass by generating
/// nothing.
fn cases(setting: Option<&str>) -> Result<u32, String> {
    let Some(setting) = setting else {
        return Ok(DEFAULT_CASES);
    };
    match setting.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "P8FS_PROPTEST_CASES must be a positive integer, not {setting:?}"
        )),
    }
}

/// How long a failing case is shrunk (milliseconds).
const SHRINK_TIME_MS: u32 = 180_000;

/// The runner's configuration and the seed it draws cases from.
fn config() -> (ProptestConfig, u64) {
    let setting = match std::env::var("P8FS_PROPTEST_CASES") {
        Ok(setting) => Some(setting),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(raw)) => {
            panic!("P8FS_PROPTEST_CASES must be a positive integer, not {raw:?}")
        }
    };
    let cases = cases(setting.as_deref()).unwrap_or_else(|problem| panic!("{problem}"));
    let defaults = ProptestConfig::default();
    // A random seed is chosen here rather than inside proptest, so a failure can name it.
    let seed = match defaults.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        }
    };
    let config = ProptestConfig {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // The automatic limit (4 × cases) stops before sequences this long are minimal.
        max_shrink_iters: 20_000,
        // On a SQL server a step of shrinking takes tens of milliseconds: the test reports the
        // smallest sequence found in this time rather than run into the test timeout.
        max_shrink_time: SHRINK_TIME_MS,
        ..defaults
    };
    (config, seed)
}

fn run(name: &str, factory: Factory, ops: impl Strategy<Value = Vec<Op>>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the differential test");
    // Build one backend up front, so a missing server fails at once rather than on every
    // shrinking step.
    runtime.block_on(async {
        drop(crate::build(factory, Purging::Shared).await);
    });
    let (config, seed) = config();
    let mut runner = TestRunner::new(config);
    // The first failure is printed before shrinking starts, so it is on record even when
    // shrinking is cut short.
    let reported = std::sync::atomic::AtomicBool::new(false);
    let result = runner.run(&ops, |ops| {
        let outcome = runtime.block_on(run_case(factory, &ops));
        if let Err(TestCaseError::Fail(reason)) = &outcome
            && !reported.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!(
                "{name}: a case failed (PROPTEST_RNG_SEED={seed}), shrinking it: {reason}\n\
                 the failing sequence ({} ops):\n{}",
                ops.len(),
                listing(&ops)
            );
        }
        outcome
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => panic!(
            "{name} (PROPTEST_RNG_SEED={seed}): {reason}\nminimal failing sequence ({} ops):\n{}",
            ops.len(),
            listing(&ops)
        ),
        Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
    }
}

fn listing(ops: &[Op]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("  #{i:<3} {op:?}\n"))
        .collect()
}

async fn run_case(factory: Factory, ops: &[Op]) -> TestCaseResult {
    let objects = ops.iter().any(|op| matches!(op, Op::Object(_)));
    let mut case = Case::new(factory, objects).await;
    for (i, op) in ops.iter().enumerate() {
        case.step(i, op).await?;
    }
    case.compare_state("at the end of the case").await
}

/// The result of one operation on one side, in a form comparable across sides.
#[derive(Debug, PartialEq)]
enum Out {
    Done,
    Flag(bool),
    /// The ordinal of a version among those issued for its key on this side.
    Version(usize),
    Entry(Option<Entry>),
    Entries(Vec<Page<Entry, String>>),
    Spec(Option<CollectionSpec>),
    Specs(Vec<CollectionSpec>),
    Vector(Option<VectorRecord>),
    Vectors(Vec<VectorPage>),
    Hits(Vec<SearchHit>),
    Node(Option<NodeRecord>),
    Edge(Option<EdgeRecord>),
    Nodes(Vec<NodePage>),
    NodeList(Vec<NodeRecord>),
    Graph(Vec<NodeRecord>, Vec<EdgeRecord>),
    Neighbors(Vec<Neighbor>),
    Path(Option<Path>),
    Object(ObjOut),
    State(Vec<Out>),
    Failed(ErrorKind),
}

/// A change with its key-value version replaced by its ordinal.
#[derive(Debug, PartialEq)]
struct Logged {
    cursor: u64,
    at: Timestamp,
    op: ChangeOp,
    subject: Subject,
    version: Option<usize>,
}

/// A tenant's change log read whole: its changes and its head.
#[derive(Debug, PartialEq)]
struct Log {
    changes: Vec<Logged>,
    head: u64,
}

/// How many changes a page of the change log asks for when a log is compared.
const CHANGE_PAGE: u64 = 50;

/// A key-value entry with its version replaced by its ordinal.
#[derive(Debug, PartialEq)]
struct Entry {
    key: String,
    value: Json,
    version: usize,
    expires_at: Option<Timestamp>,
}

fn out<T>(result: p8fs_core::Result<T>, ok: impl FnOnce(T) -> Out) -> Out {
    match result {
        Ok(value) => ok(value),
        Err(e) => Out::Failed(e.kind()),
    }
}

fn ttl_of(millis: Option<i64>) -> Option<Ttl> {
    millis.and_then(s::ttl)
}

/// The first `dim` grid components (`dim + 1` with `bad_dim`) as f32.
fn components(grid: &[i8; 4], dim: usize, bad_dim: bool) -> Vec<f32> {
    let n = if bad_dim { dim + 1 } else { dim };
    grid.iter().take(n).map(|x| f32::from(*x)).collect()
}

/// Fetches pages through `fetch` from `start`, following each cursor until the last page.
async fn follow<T, C, F, Fut>(
    start: Option<C>,
    mut fetch: F,
) -> Result<Result<Vec<Page<T, C>>, ErrorKind>, TestCaseError>
where
    C: Clone,
    F: FnMut(Option<C>) -> Fut,
    Fut: Future<Output = p8fs_core::Result<Page<T, C>>>,
{
    let mut pages = Vec::new();
    let mut after = start;
    loop {
        let page = match fetch(after).await {
            Ok(page) => page,
            Err(e) => return Ok(Err(e.kind())),
        };
        let next = page.next.clone();
        pages.push(page);
        match next {
            None => return Ok(Ok(pages)),
            Some(_) if pages.len() >= MAX_PAGES => {
                return Err(TestCaseError::fail(format!(
                    "a listing returned {MAX_PAGES} pages and still a cursor: it does not advance"
                )));
            }
            Some(cursor) => after = Some(cursor),
        }
    }
}

/// A failure found on one side alone (a contract check, not a disagreement), with its context.
fn blame(side: &str, context: fmt::Arguments<'_>, error: TestCaseError) -> TestCaseError {
    match error {
        TestCaseError::Fail(reason) => {
            TestCaseError::fail(format!("{context}: {side}: {}", reason.message()))
        }
        reject @ TestCaseError::Reject(_) => reject,
    }
}

/// One side of the comparison: the backend under test or the model.
struct Side {
    backend: Arc<dyn Backend>,
    clock: Arc<ManualClock>,
    /// Per (tenant, key), the versions this side's writes returned, in order.
    issued: HashMap<(usize, String), Vec<Version>>,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Side {
    /// Records a version a write returned and gives its ordinal; it must exceed every earlier
    /// version of the key.
    fn issue(&mut self, t: usize, key: &str, version: Version) -> Result<usize, TestCaseError> {
        let list = self.issued.entry((t, key.to_owned())).or_default();
        if let Some(last) = list.last()
            && version <= *last
        {
            return Err(TestCaseError::fail(format!(
                "a write to key {key:?} (tenant {t}) returned version {version}, not greater \
                 than the earlier {last}"
            )));
        }
        list.push(version);
        Ok(list.len() - 1)
    }

    /// The ordinal of a version read back; it must be one a write to that key returned.
    fn canon(&self, t: usize, key: &str, version: Version) -> Result<usize, TestCaseError> {
        self.issued
            .get(&(t, key.to_owned()))
            .and_then(|list| list.iter().position(|v| *v == version))
            .ok_or_else(|| {
                TestCaseError::fail(format!(
                    "key {key:?} (tenant {t}) was read at version {version}, which no write to it \
                     returned"
                ))
            })
    }

    /// The expected version of a compare-and-swap on this side.
    fn expected(&self, t: usize, key: &str, expected: Expected) -> Version {
        let Some(list) = self
            .issued
            .get(&(t, key.to_owned()))
            .filter(|l| !l.is_empty())
        else {
            return Version(0);
        };
        let back = match expected {
            Expected::Latest => 0,
            Expected::Older(n) => n.min(list.len() - 1),
        };
        list[list.len() - 1 - back]
    }

    fn entry(&self, t: usize, e: KvEntry) -> Result<Entry, TestCaseError> {
        Ok(Entry {
            version: self.canon(t, e.key.as_str(), e.version)?,
            key: e.key.into_string(),
            value: Json(e.value),
            expires_at: e.expires_at,
        })
    }

    /// A change as both sides must agree on it: a key-value change's version as its ordinal
    /// among the versions the key's writes returned on this side.
    fn logged(&self, t: usize, change: Change) -> Result<Logged, TestCaseError> {
        let version = match (&change.subject, change.version) {
            (Subject::Kv { key }, Some(version)) => Some(self.canon(t, key.as_str(), version)?),
            (_, None) => None,
            (subject, Some(version)) => {
                return Err(TestCaseError::fail(format!(
                    "change {} ({subject:?}, tenant {t}) carries version {version}, which only \
                     key-value changes do",
                    change.cursor
                )));
            }
        };
        Ok(Logged {
            cursor: change.cursor.0,
            at: change.at,
            op: change.op,
            subject: change.subject,
            version,
        })
    }

    /// The change log of tenant `t`, read from its start in pages up to its head.
    async fn log(&self, t: usize, tenant: &TenantId) -> Result<Log, TestCaseError> {
        let limit = s::limit(CHANGE_PAGE);
        let mut changes = Vec::new();
        let mut after = ChangeCursor(0);
        loop {
            let page = self
                .backend
                .changes(tenant, after, limit)
                .await
                .map_err(|e| {
                    TestCaseError::fail(format!(
                        "reading the change log of tenant {t} after {after}: {e}"
                    ))
                })?;
            let expected_next = page.changes.last().map_or(after, |c| c.cursor);
            prop_assert_eq!(
                page.next,
                expected_next,
                "next is the last cursor of a page, or after for an empty one"
            );
            if page.changes.is_empty() && page.next != page.head {
                return Err(TestCaseError::fail(format!(
                    "an empty page of tenant {t}'s change log after {after}, below its head {}",
                    page.head
                )));
            }
            for change in page.changes {
                changes.push(self.logged(t, change)?);
            }
            after = page.next;
            if page.next == page.head {
                return Ok(Log {
                    changes,
                    head: page.head.0,
                });
            }
        }
    }

    /// Both tenants' change logs, and the heads `change_heads` lists for them.
    async fn logs(
        &self,
        tenants: &[TenantId; 2],
    ) -> Result<(Vec<Log>, Vec<(usize, u64)>), TestCaseError> {
        let mut logs = Vec::new();
        for (t, tenant) in tenants.iter().enumerate() {
            logs.push(self.log(t, tenant).await?);
        }
        let heads = self
            .backend
            .change_heads()
            .await
            .map_err(|e| TestCaseError::fail(format!("change_heads: {e}")))?
            .into_iter()
            .filter_map(|(tenant, head)| {
                tenants
                    .iter()
                    .position(|t| *t == tenant)
                    .map(|t| (t, head.0))
            })
            .collect();
        Ok((logs, heads))
    }

    fn entry_pages(
        &self,
        t: usize,
        pages: Result<Vec<Page<KvEntry, Key>>, ErrorKind>,
    ) -> Result<Out, TestCaseError> {
        let pages = match pages {
            Ok(pages) => pages,
            Err(kind) => return Ok(Out::Failed(kind)),
        };
        let mut canonical = Vec::with_capacity(pages.len());
        for page in pages {
            canonical.push(Page {
                items: page
                    .items
                    .into_iter()
                    .map(|e| self.entry(t, e))
                    .collect::<Result<Vec<_>, _>>()?,
                next: page.next.map(Key::into_string),
            });
        }
        Ok(Out::Entries(canonical))
    }

    fn written(
        &mut self,
        t: usize,
        key: &str,
        result: p8fs_core::Result<Version>,
    ) -> Result<Out, TestCaseError> {
        match result {
            Ok(version) => Ok(Out::Version(self.issue(t, key, version)?)),
            Err(e) => Ok(Out::Failed(e.kind())),
        }
    }

    async fn run_kv(&mut self, tenants: &[TenantId; 2], op: &KvOp) -> Result<Out, TestCaseError> {
        let backend = Arc::clone(&self.backend);
        let b: &dyn Backend = backend.as_ref();
        match op {
            KvOp::Put { t, key, value, ttl } => {
                let result = b
                    .put(
                        &tenants[*t],
                        &s::key(key),
                        &s::value(value.0.clone()),
                        ttl_of(*ttl),
                    )
                    .await;
                self.written(*t, key, result)
            }
            KvOp::PutIfAbsent { t, key, value, ttl } => {
                let result = b
                    .put_if_absent(
                        &tenants[*t],
                        &s::key(key),
                        &s::value(value.0.clone()),
                        ttl_of(*ttl),
                    )
                    .await;
                self.written(*t, key, result)
            }
            KvOp::Cas {
                t,
                key,
                expected,
                value,
                ttl,
            } => {
                let expected = self.expected(*t, key, *expected);
                let result = b
                    .compare_and_swap(
                        &tenants[*t],
                        &s::key(key),
                        expected,
                        &s::value(value.0.clone()),
                        ttl_of(*ttl),
                    )
                    .await;
                self.written(*t, key, result)
            }
            KvOp::Delete { t, key } => {
                Ok(out(b.delete(&tenants[*t], &s::key(key)).await, Out::Flag))
            }
            KvOp::Get { t, key } => match b.get(&tenants[*t], &s::key(key)).await {
                Ok(entry) => Ok(Out::Entry(entry.map(|e| self.entry(*t, e)).transpose()?)),
                Err(e) => Ok(Out::Failed(e.kind())),
            },
            KvOp::Scan {
                t,
                prefix,
                start_after,
                limit,
            } => {
                let pages = scan_pages(
                    b,
                    &tenants[*t],
                    &s::prefix(prefix),
                    start_after.map(s::key),
                    s::limit(*limit),
                )
                .await?;
                self.entry_pages(*t, pages)
            }
            KvOp::Find {
                t,
                path,
                operand,
                start_after,
                limit,
            } => {
                let tenant = &tenants[*t];
                let path = &s::path(path);
                let operand = &s::operand(operand.0.clone());
                let limit = s::limit(*limit);
                let pages = follow(
                    start_after.map(s::key),
                    move |after: Option<Key>| async move {
                        kv::find_by_field(b, tenant, path, operand, after.as_ref(), limit).await
                    },
                )
                .await?;
                self.entry_pages(*t, pages)
            }
        }
    }

    /// The whole visible state of both tenants: every key, collection, vector, node and edge.
    async fn state(&self, tenants: &[TenantId; 2]) -> Result<Out, TestCaseError> {
        let b = self.backend.as_ref();
        let mut parts = Vec::new();
        for (t, tenant) in tenants.iter().enumerate() {
            let pages = scan_pages(b, tenant, &KeyPrefix::all(), None, Limit::MAX).await?;
            parts.push(self.entry_pages(t, pages)?);
            parts.push(out(b.list_collections(tenant).await, Out::Specs));
            for c in COLLECTIONS {
                parts.push(vector_pages(b, tenant, &s::collection(c), None, Limit::MAX).await?);
            }
            parts.push(out(graph_view(b, tenant).await, |(nodes, edges)| {
                Out::Graph(nodes, edges)
            }));
        }
        Ok(Out::State(parts))
    }
}

async fn scan_pages(
    b: &dyn Backend,
    tenant: &TenantId,
    prefix: &KeyPrefix,
    start_after: Option<Key>,
    limit: Limit,
) -> Result<Result<Vec<Page<KvEntry, Key>>, ErrorKind>, TestCaseError> {
    follow(start_after, move |after: Option<Key>| async move {
        b.scan(tenant, prefix, after.as_ref(), limit).await
    })
    .await
}

async fn vector_pages(
    b: &dyn Backend,
    tenant: &TenantId,
    collection: &p8fs_core::CollectionName,
    start_after: Option<RecordId>,
    limit: Limit,
) -> Result<Out, TestCaseError> {
    let pages = follow(start_after, move |after: Option<RecordId>| async move {
        b.list_vectors(tenant, collection, after.as_ref(), limit)
            .await
    })
    .await?;
    Ok(pages.map_or_else(Out::Failed, Out::Vectors))
}

/// Every visible node (ascending) and every visible edge among them (by src, rel, dst).
async fn graph_view(
    b: &dyn Backend,
    tenant: &TenantId,
) -> p8fs_core::Result<(Vec<NodeRecord>, Vec<EdgeRecord>)> {
    let nodes = b.list_nodes(tenant, None, Limit::MAX).await?.items;
    let mut edges = Vec::new();
    for src in &nodes {
        for rel in RELS {
            for dst in &nodes {
                if let Some(edge) = b.get_edge(tenant, &src.id, &s::rel(rel), &dst.id).await? {
                    edges.push(edge);
                }
            }
        }
    }
    Ok((nodes, edges))
}

async fn run_vector(
    b: &dyn Backend,
    tenants: &[TenantId; 2],
    op: &VecOp,
    dim: usize,
) -> Result<Out, TestCaseError> {
    Ok(match op {
        VecOp::Create { t, c, dim, metric } => out(
            b.create_collection(&tenants[*t], &s::spec(c, *dim, *metric))
                .await,
            Out::Flag,
        ),
        VecOp::Drop { t, c } => out(
            b.drop_collection(&tenants[*t], &s::collection(c)).await,
            Out::Flag,
        ),
        VecOp::Spec { t, c } => out(
            b.collection(&tenants[*t], &s::collection(c)).await,
            Out::Spec,
        ),
        VecOp::Collections { t } => out(b.list_collections(&tenants[*t]).await, Out::Specs),
        VecOp::Upsert {
            t,
            c,
            id,
            v,
            bad_dim,
            meta,
            ttl,
        } => out(
            vector::upsert(
                b,
                &tenants[*t],
                &s::collection(c),
                &s::record(id),
                components(v, dim, *bad_dim),
                &s::object(meta.0.clone()),
                ttl_of(*ttl),
            )
            .await,
            |()| Out::Done,
        ),
        VecOp::Delete { t, c, id } => out(
            b.delete_vector(&tenants[*t], &s::collection(c), &s::record(id))
                .await,
            Out::Flag,
        ),
        VecOp::Get { t, c, id } => out(
            b.get_vector(&tenants[*t], &s::collection(c), &s::record(id))
                .await,
            Out::Vector,
        ),
        VecOp::List {
            t,
            c,
            start_after,
            limit,
        } => {
            vector_pages(
                b,
                &tenants[*t],
                &s::collection(c),
                start_after.map(s::record),
                s::limit(*limit),
            )
            .await?
        }
        VecOp::Search {
            t,
            c,
            q,
            bad_dim,
            k,
            filter,
        } => {
            let clauses: Vec<(&str, Value)> = filter
                .iter()
                .map(|(path, value)| (*path, value.0.clone()))
                .collect();
            let filter = s::filter(&clauses);
            let k = Limit::top_k(*k).expect("k is generated within 1..=1000");
            out(
                vector::search(
                    b,
                    &tenants[*t],
                    &s::collection(c),
                    components(q, dim, *bad_dim),
                    k,
                    &filter,
                )
                .await,
                Out::Hits,
            )
        }
    })
}

async fn run_graph(
    b: &dyn Backend,
    tenants: &[TenantId; 2],
    op: &GraphOp,
) -> Result<Out, TestCaseError> {
    Ok(match op {
        GraphOp::PutNode {
            t,
            id,
            label,
            props,
            ttl,
        } => out(
            b.put_node(
                &tenants[*t],
                &s::node(id),
                &s::label(label),
                &s::object(props.0.clone()),
                ttl_of(*ttl),
            )
            .await,
            |()| Out::Done,
        ),
        GraphOp::DeleteNode { t, id } => {
            out(b.delete_node(&tenants[*t], &s::node(id)).await, Out::Flag)
        }
        GraphOp::GetNode { t, id } => out(b.get_node(&tenants[*t], &s::node(id)).await, Out::Node),
        GraphOp::GetNodes { t, ids } => {
            let ids: Vec<NodeId> = ids.iter().map(|id| s::node(id)).collect();
            out(b.get_nodes(&tenants[*t], &ids).await, Out::NodeList)
        }
        GraphOp::ListNodes {
            t,
            start_after,
            limit,
        } => {
            let tenant = &tenants[*t];
            let limit = s::limit(*limit);
            let pages = follow(
                start_after.map(s::node),
                move |after: Option<NodeId>| async move {
                    b.list_nodes(tenant, after.as_ref(), limit).await
                },
            )
            .await?;
            pages.map_or_else(Out::Failed, Out::Nodes)
        }
        GraphOp::PutEdge {
            t,
            src,
            rel,
            dst,
            weight,
            props,
            ttl,
        } => out(
            b.put_edge(
                &tenants[*t],
                &s::node(src),
                &s::rel(rel),
                &s::node(dst),
                s::weight(*weight),
                &s::object(props.0.clone()),
                ttl_of(*ttl),
            )
            .await,
            |()| Out::Done,
        ),
        GraphOp::DeleteEdge { t, src, rel, dst } => out(
            b.delete_edge(&tenants[*t], &s::node(src), &s::rel(rel), &s::node(dst))
                .await,
            Out::Flag,
        ),
        GraphOp::GetEdge { t, src, rel, dst } => out(
            b.get_edge(&tenants[*t], &s::node(src), &s::rel(rel), &s::node(dst))
                .await,
            Out::Edge,
        ),
        GraphOp::Neighbors {
            t,
            start,
            direction,
            rels,
            depth,
            limit,
        } => out(
            traverse::neighbors(
                b,
                &tenants[*t],
                &s::node(start),
                *direction,
                &s::rels(rels),
                s::depth(*depth),
                s::limit(*limit),
            )
            .await,
            Out::Neighbors,
        ),
        GraphOp::Path {
            t,
            src,
            dst,
            direction,
            rels,
            max_depth,
            weighted,
        } => {
            let query = PathQuery {
                src: s::node(src),
                dst: s::node(dst),
                direction: *direction,
                rels: s::rels(rels),
                max_depth: s::max_depth(*max_depth),
                weighted: *weighted,
            };
            out(
                traverse::shortest_path(b, &tenants[*t], &query).await,
                Out::Path,
            )
        }
    })
}

/// A backend and the model, fed the same operations.
struct Case {
    tenants: [TenantId; 2],
    real: Side,
    model: Side,
    /// The expiries of successful writes with a ttl, from the model's clock.
    expiries: Vec<Timestamp>,
    /// Whether the state compared includes objects.
    objects: bool,
    /// The model, to count its chunks.
    model_store: Arc<ModelBackend>,
    /// What the backend stores per chunk beyond its bytes ([`crate::Built::chunk_overhead`]).
    chunk_overhead: u64,
}

impl Case {
    async fn new(factory: Factory, objects: bool) -> Self {
        let (clock, built) = crate::build(factory, Purging::Exclusive).await;
        let model_clock = Arc::new(ManualClock::new(PURGE_START));
        let model_store = Arc::new(ModelBackend::new(model_clock.clone()));
        let model: Arc<dyn Backend> = model_store.clone();
        let chunk_overhead = built.chunk_overhead;
        Self {
            tenants: [s::fresh_tenant(), s::fresh_tenant()],
            real: Side {
                backend: built.backend,
                clock,
                issued: HashMap::new(),
                _keep: built.keep,
            },
            model: Side {
                backend: model,
                clock: model_clock,
                issued: HashMap::new(),
                _keep: Box::new(()),
            },
            expiries: Vec::new(),
            objects,
            model_store,
            chunk_overhead,
        }
    }

    fn advance(&self, millis: i64) {
        self.real.clock.advance(millis);
        self.model.clock.advance(millis);
    }

    async fn step(&mut self, i: usize, op: &Op) -> TestCaseResult {
        let (real, model) = match op {
            Op::Advance(millis) => {
                self.advance(*millis);
                return Ok(());
            }
            Op::AdvanceToExpiry { pick, offset } => {
                let now = self.model.clock.now();
                let ahead: Vec<Timestamp> = self
                    .expiries
                    .iter()
                    .map(|e| e + offset)
                    .filter(|target| *target > now)
                    .collect();
                if !ahead.is_empty() {
                    self.advance(ahead[pick % ahead.len()] - now);
                }
                return Ok(());
            }
            Op::Purge => {
                let real = self.real.backend.purge_expired().await;
                let model = self.model.backend.purge_expired().await;
                // The model removes an expired record only when it is purged, overwritten or
                // deleted, as every backend does: when the model purged something, so did the
                // backend (the counts themselves may differ, see the module documentation).
                if let (Ok(removed), Ok(expected)) = (&real, &model) {
                    prop_assert!(
                        *expected == 0 || *removed > 0,
                        "op #{} purge_expired: the model removed {} expired records, the backend none",
                        i,
                        expected
                    );
                }
                prop_assert_eq!(
                    real.map(|_| ()).map_err(|e| e.kind()),
                    model.map(|_| ()).map_err(|e| e.kind()),
                    "op #{} purge_expired: the backend (left) and the model (right) disagree",
                    i
                );
                return self
                    .compare_state(&format!("after op #{i} (purge_expired)"))
                    .await;
            }
            Op::Kv(kv) => (
                self.real.run_kv(&self.tenants, kv).await,
                self.model.run_kv(&self.tenants, kv).await,
            ),
            Op::Vector(vector) => {
                let dim = self.model_dimension(vector).await;
                (
                    run_vector(self.real.backend.as_ref(), &self.tenants, vector, dim).await,
                    run_vector(self.model.backend.as_ref(), &self.tenants, vector, dim).await,
                )
            }
            Op::Graph(graph) => (
                run_graph(self.real.backend.as_ref(), &self.tenants, graph).await,
                run_graph(self.model.backend.as_ref(), &self.tenants, graph).await,
            ),
            Op::Object(op) => (
                Ok(object::run_object(
                    self.real.backend.as_ref(),
                    &self.tenants,
                    op,
                    self.real.clock.now(),
                )
                .await),
                Ok(object::run_object(
                    self.model.backend.as_ref(),
                    &self.tenants,
                    op,
                    self.model.clock.now(),
                )
                .await),
            ),
        };
        let real = real.map_err(|e| blame("the backend", format_args!("op #{i} {op:?}"), e))?;
        let model = model.map_err(|e| blame("the model", format_args!("op #{i} {op:?}"), e))?;
        prop_assert_eq!(
            &real,
            &model,
            "op #{} {:?}: the backend (left) and the model (right) disagree",
            i,
            op
        );
        if !matches!(model, Out::Failed(_))
            && let Some(ttl) = op.ttl()
        {
            self.expiries.push(self.model.clock.now() + ttl);
        }
        if let Op::Graph(op) = op
            && let Some(expected) = self.brute_force(op).await?
        {
            prop_assert_eq!(
                &model,
                &expected,
                "op #{} {:?}: core's traversal over the model (left) and the brute force (right) \
                 disagree",
                i,
                op
            );
        }
        Ok(())
    }

    /// The dimension vectors of an upsert or search are built for: the model's collection's,
    /// or 3 without one (the operation then fails on both sides).
    async fn model_dimension(&self, op: &VecOp) -> usize {
        let (t, c) = match op {
            VecOp::Upsert { t, c, .. } | VecOp::Search { t, c, .. } => (*t, *c),
            _ => return 0,
        };
        match self
            .model
            .backend
            .collection(&self.tenants[t], &s::collection(c))
            .await
        {
            Ok(Some(spec)) => spec.dimension.get(),
            _ => 3,
        }
    }

    async fn compare_state(&self, when: &str) -> TestCaseResult {
        let mut real = (self.real.state(&self.tenants).await)
            .map_err(|e| blame("the backend", format_args!("reading the state {when}"), e))?;
        let mut model = (self.model.state(&self.tenants).await)
            .map_err(|e| blame("the model", format_args!("reading the state {when}"), e))?;
        if self.objects
            && let (Out::State(real), Out::State(model)) = (&mut real, &mut model)
        {
            for tenant in &self.tenants {
                real.extend(object::state(self.real.backend.as_ref(), tenant).await);
                let mut expected = object::state(self.model.backend.as_ref(), tenant).await;
                // The backend's stored bytes include its per-chunk overhead.
                if let Some(Out::Object(object::ObjOut::StoredBytes(n))) = expected.last_mut() {
                    *n += self.chunk_overhead * self.model_store.stored_chunks(tenant);
                }
                model.extend(expected);
            }
        }
        prop_assert_eq!(
            real,
            model,
            "the visible state {} differs: the backend (left), the model (right)",
            when
        );
        let real = (self.real.logs(&self.tenants).await).map_err(|e| {
            blame(
                "the backend",
                format_args!("reading the change logs {when}"),
                e,
            )
        })?;
        let model = (self.model.logs(&self.tenants).await).map_err(|e| {
            blame(
                "the model",
                format_args!("reading the change logs {when}"),
                e,
            )
        })?;
        prop_assert_eq!(
            real,
            model,
            "the change logs {} differ: the backend (left), the model (right)",
            when
        );
        Ok(())
    }

    /// For a traversal, the answer of the brute force over the model's visible graph.
    async fn brute_force(&self, op: &GraphOp) -> Result<Option<Out>, TestCaseError> {
        let t = match op {
            GraphOp::Neighbors { t, .. } | GraphOp::Path { t, .. } => *t,
            _ => return Ok(None),
        };
        let (nodes, edges) = graph_view(self.model.backend.as_ref(), &self.tenants[t])
            .await
            .map_err(|e| TestCaseError::fail(format!("the model cannot list its graph: {e}")))?;
        let graph = View { nodes, edges };
        Ok(match op {
            GraphOp::Neighbors {
                start,
                direction,
                rels,
                depth,
                limit,
                ..
            } => Some(graph.neighbors(start, *direction, rels, *depth, *limit)),
            GraphOp::Path {
                src,
                dst,
                direction,
                rels,
                max_depth,
                weighted,
                ..
            } => Some(graph.path(src, dst, *direction, rels, *max_depth, *weighted)),
            _ => None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Brute-force traversals, written independently of core::traverse
// ---------------------------------------------------------------------------------------------

/// A visible graph: nodes and the edges between them.
struct View {
    nodes: Vec<NodeRecord>,
    edges: Vec<EdgeRecord>,
}

impl View {
    fn has(&self, id: &NodeId) -> bool {
        self.nodes.iter().any(|n| n.id == *id)
    }

    /// The (from, to, edge) steps the edges allow in `direction` under the relation filter.
    fn steps(&self, direction: Direction, rels: &[&str]) -> Vec<(&NodeId, &NodeId, &EdgeRecord)> {
        let mut steps = Vec::new();
        for edge in &self.edges {
            if !rels.is_empty() && !rels.contains(&edge.rel.as_str()) {
                continue;
            }
            if direction != Direction::In {
                steps.push((&edge.src, &edge.dst, edge));
            }
            if direction != Direction::Out {
                steps.push((&edge.dst, &edge.src, edge));
            }
        }
        steps
    }

    /// Hop counts by breadth-first search, one whole layer at a time.
    fn neighbors(
        &self,
        start: &str,
        direction: Direction,
        rels: &[&str],
        depth: u64,
        limit: u64,
    ) -> Out {
        let start = s::node(start);
        if !self.has(&start) {
            return Out::Failed(ErrorKind::NotFound);
        }
        let steps = self.steps(direction, rels);
        let mut hops: BTreeMap<NodeId, u32> = BTreeMap::from([(start.clone(), 0)]);
        for h in 1..=u32::try_from(depth).expect("small depth") {
            let layer: BTreeSet<NodeId> = steps
                .iter()
                .filter(|(from, to, _)| {
                    hops.get(*from) == Some(&(h - 1)) && !hops.contains_key(*to)
                })
                .map(|(_, to, _)| (*to).clone())
                .collect();
            hops.extend(layer.into_iter().map(|id| (id, h)));
        }
        let mut found: Vec<Neighbor> = hops
            .into_iter()
            .filter(|(id, _)| *id != start)
            .map(|(id, hops)| Neighbor { id, hops })
            .collect();
        found.sort_by(|a, b| a.hops.cmp(&b.hops).then_with(|| a.id.cmp(&b.id)));
        found.truncate(usize::try_from(limit).expect("small limit"));
        Out::Neighbors(found)
    }

    /// Every simple path of at most `max_depth` hops, each step along its best parallel edge;
    /// the least by (total, hops, node sequence).
    fn path(
        &self,
        src: &str,
        dst: &str,
        direction: Direction,
        rels: &[&str],
        max_depth: u64,
        weighted: bool,
    ) -> Out {
        let (src, dst) = (s::node(src), s::node(dst));
        if !self.has(&src) || !self.has(&dst) {
            return Out::Failed(ErrorKind::NotFound);
        }
        if src == dst {
            return Out::Path(Some(Path {
                nodes: vec![src],
                edges: Vec::new(),
                total: 0.0,
            }));
        }
        let mut best: BTreeMap<(&NodeId, &NodeId), &EdgeRecord> = BTreeMap::new();
        for (from, to, edge) in self.steps(direction, rels) {
            if from == to {
                continue;
            }
            let slot = best.entry((from, to)).or_insert(edge);
            if edge_order(weighted, edge, slot).is_lt() {
                *slot = edge;
            }
        }
        let mut search = PathSearch {
            best: &best,
            dst: &dst,
            max_depth: usize::try_from(max_depth).expect("small depth"),
            weighted,
            found: None,
        };
        search.extend(&mut vec![src], &mut Vec::new());
        Out::Path(search.found)
    }
}

/// Among parallel edges: least weight (weighted only), then rel, src, dst.
fn edge_order(weighted: bool, a: &EdgeRecord, b: &EdgeRecord) -> Ordering {
    let by_weight = if weighted {
        a.weight.total_cmp(&b.weight)
    } else {
        Ordering::Equal
    };
    by_weight
        .then_with(|| a.rel.cmp(&b.rel))
        .then_with(|| a.src.cmp(&b.src))
        .then_with(|| a.dst.cmp(&b.dst))
}

struct PathSearch<'a> {
    best: &'a BTreeMap<(&'a NodeId, &'a NodeId), &'a EdgeRecord>,
    dst: &'a NodeId,
    max_depth: usize,
    weighted: bool,
    found: Option<Path>,
}

impl PathSearch<'_> {
    fn extend(&mut self, nodes: &mut Vec<NodeId>, edges: &mut Vec<EdgeRecord>) {
        let last = nodes.last().expect("a path has a first node").clone();
        if last == *self.dst {
            let total = if self.weighted {
                edges.iter().fold(0.0, |sum, e| sum + e.weight)
            } else {
                edges.len() as f64
            };
            let candidate = Path {
                nodes: nodes.clone(),
                edges: edges.clone(),
                total,
            };
            let better = self.found.as_ref().is_none_or(|found| {
                candidate
                    .total
                    .total_cmp(&found.total)
                    .then_with(|| candidate.edges.len().cmp(&found.edges.len()))
                    .then_with(|| candidate.nodes.cmp(&found.nodes))
                    .is_lt()
            });
            if better {
                self.found = Some(candidate);
            }
            return;
        }
        if edges.len() >= self.max_depth {
            return;
        }
        let next: Vec<(NodeId, EdgeRecord)> = self
            .best
            .iter()
            .filter(|((from, to), _)| **from == last && !nodes.contains(to))
            .map(|((_, to), edge)| ((*to).clone(), (*edge).clone()))
            .collect();
        for (to, edge) in next {
            nodes.push(to);
            edges.push(edge);
            self.extend(nodes, edges);
            nodes.pop();
            edges.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cases_setting_must_be_a_positive_integer() {
        assert_eq!(cases(None), Ok(DEFAULT_CASES));
        assert_eq!(cases(Some("1")), Ok(1));
        assert_eq!(cases(Some("5000")), Ok(5000));
        for bad in ["0", "", "-1", "ten", "1.5", " 8", "99999999999"] {
            let problem = cases(Some(bad)).expect_err(bad);
            assert!(problem.contains("P8FS_PROPTEST_CASES"), "{problem}");
        }
    }
}
