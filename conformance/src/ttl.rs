//! TTL and expiry (DESIGN.md, "Tenants, ids, time" and the ttl rules of "Key-value", "Vectors"
//! and "Graph"): a record is visible exactly while `now < expires_at`, every write sets the ttl
//! from its own call, expired records are invisible to every read and write at once, and an
//! expired node or edge is never traversed. Purges are checked in [`crate::purge`].

use serde_json::{Value, json};

use p8fs_core::traverse::{PathQuery, neighbors, shortest_path};
use p8fs_core::vector::{SearchHit, search, upsert};
use p8fs_core::{
    Clock, Direction, EdgeRecord, ErrorKind, Filter, JsonObject, KvEntry, Limit, Metric, RelFilter,
    Version, Weight,
};

use crate::Harness;
use crate::support::{
    collection, depth, key, label, limit, max_depth, node, object, operand, path, prefix, record,
    rel, spec, ttl, value,
};

pub(crate) async fn put(h: &Harness, k: &str, v: Value, ttl_ms: Option<i64>) -> Version {
    h.b()
        .put(&h.tenant, &key(k), &value(v), ttl_ms.and_then(ttl))
        .await
        .expect("put succeeds")
}

pub(crate) async fn get(h: &Harness, k: &str) -> Option<KvEntry> {
    h.b().get(&h.tenant, &key(k)).await.expect("get succeeds")
}

async fn scan_keys(h: &Harness, pre: &str) -> Vec<String> {
    let page = h
        .b()
        .scan(&h.tenant, &prefix(pre), None, Limit::MAX)
        .await
        .expect("scan succeeds");
    page.items
        .iter()
        .map(|e| e.key.as_str().to_owned())
        .collect()
}

pub(crate) async fn add_node(h: &Harness, id: &str, ttl_ms: Option<i64>) {
    h.b()
        .put_node(
            &h.tenant,
            &node(id),
            &label("thing"),
            &JsonObject::empty(),
            ttl_ms.and_then(ttl),
        )
        .await
        .expect("put_node succeeds");
}

pub(crate) async fn add_edge(h: &Harness, src: &str, dst: &str, w: f64, ttl_ms: Option<i64>) {
    h.b()
        .put_edge(
            &h.tenant,
            &node(src),
            &rel("r"),
            &node(dst),
            Weight::new(w).expect("valid weight"),
            &JsonObject::empty(),
            ttl_ms.and_then(ttl),
        )
        .await
        .expect("put_edge succeeds");
}

pub(crate) async fn edge(h: &Harness, src: &str, dst: &str) -> Option<EdgeRecord> {
    h.b()
        .get_edge(&h.tenant, &node(src), &rel("r"), &node(dst))
        .await
        .expect("get_edge succeeds")
}

async fn out_neighbors(
    h: &Harness,
    start: &str,
    direction: Direction,
    hops: u64,
) -> Vec<(String, u32)> {
    neighbors(
        h.b(),
        &h.tenant,
        &node(start),
        direction,
        &RelFilter::any(),
        depth(hops),
        Limit::MAX,
    )
    .await
    .expect("neighbors succeeds")
    .into_iter()
    .map(|n| (n.id.into_string(), n.hops))
    .collect()
}

pub(crate) fn path_query(src: &str, dst: &str, weighted: bool) -> PathQuery {
    PathQuery {
        src: node(src),
        dst: node(dst),
        direction: Direction::Out,
        rels: RelFilter::any(),
        max_depth: max_depth(12),
        weighted,
    }
}

async fn path_nodes(h: &Harness, src: &str, dst: &str, weighted: bool) -> Option<Vec<String>> {
    shortest_path(h.b(), &h.tenant, &path_query(src, dst, weighted))
        .await
        .expect("shortest_path succeeds")
        .map(|p| p.nodes.into_iter().map(|n| n.into_string()).collect())
}

fn owned(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter()
        .map(|(id, hops)| ((*id).to_owned(), *hops))
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub async fn visible_until_exactly_expires_at(h: &Harness) {
    let t0 = h.clock.now();
    put(h, "session", json!("s"), Some(1000)).await;
    put(h, "blink", json!("b"), Some(1)).await;
    let entry = get(h, "session")
        .await
        .expect("visible right after the put");
    assert_eq!(entry.expires_at, Some(t0 + 1000), "expires_at = now + ttl");
    assert_eq!(
        get(h, "blink")
            .await
            .expect("a 1 ms ttl is visible at its write time")
            .expires_at,
        Some(t0 + 1)
    );

    h.advance(1);
    assert_eq!(
        get(h, "blink").await,
        None,
        "a 1 ms record is gone 1 ms later"
    );

    h.advance(998);
    assert_eq!(h.clock.now(), t0 + 999);
    assert!(
        get(h, "session").await.is_some(),
        "visible at expires_at - 1"
    );
    assert_eq!(
        scan_keys(h, "").await,
        ["session"],
        "scan shows it at expires_at - 1"
    );

    h.advance(1);
    assert_eq!(h.clock.now(), t0 + 1000);
    assert_eq!(
        get(h, "session").await,
        None,
        "invisible exactly at expires_at"
    );
    assert_eq!(
        scan_keys(h, "").await,
        Vec::<String>::new(),
        "scan hides it exactly at expires_at"
    );
    assert!(
        !h.b()
            .delete(&h.tenant, &key("session"))
            .await
            .expect("delete"),
        "delete finds no visible record"
    );
}

pub async fn put_without_ttl_makes_permanent(h: &Harness) {
    put(h, "k", json!(1), Some(1000)).await;
    h.advance(500);
    put(h, "k", json!(2), None).await;
    assert_eq!(
        get(h, "k").await.expect("visible").expires_at,
        None,
        "a put without ttl clears the expiry"
    );
    h.advance(10_000);
    assert_eq!(
        get(h, "k")
            .await
            .expect("still visible long after the old expiry")
            .value,
        json!(2)
    );

    // A put with ttl sets the expiry from its own time, and can make a permanent record expire.
    let now = h.clock.now();
    put(h, "k", json!(3), Some(1000)).await;
    assert_eq!(
        get(h, "k").await.expect("visible").expires_at,
        Some(now + 1000)
    );
    h.advance(600);
    let now = h.clock.now();
    put(h, "k", json!(4), Some(1000)).await;
    assert_eq!(
        get(h, "k").await.expect("visible").expires_at,
        Some(now + 1000),
        "a second ttl restarts the clock"
    );
    h.advance(600);
    assert_eq!(
        get(h, "k").await.expect("visible past the first ttl").value,
        json!(4)
    );
    h.advance(400);
    assert_eq!(get(h, "k").await, None, "expired at the second ttl");
}

pub async fn expired_key_is_absent_for_writes(h: &Harness) {
    let v_create = put(h, "create", json!("old"), Some(100)).await;
    let v_swap = put(h, "swap", json!("old"), Some(100)).await;
    put(h, "delete", json!("old"), Some(100)).await;
    let v_put = put(h, "put", json!("old"), Some(100)).await;
    h.advance(100);

    let v = h
        .b()
        .put_if_absent(&h.tenant, &key("create"), &value(json!("new")), None)
        .await
        .expect("put_if_absent treats an expired record as absent");
    assert!(v > v_create, "the new incarnation gets a greater version");
    let entry = get(h, "create").await.expect("visible");
    assert_eq!(
        (entry.value, entry.expires_at),
        (json!("new"), None),
        "the new record has its own value and ttl"
    );

    let err = h
        .b()
        .compare_and_swap(&h.tenant, &key("swap"), v_swap, &value(json!("new")), None)
        .await
        .expect_err("a swap on an expired record must fail");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "an expired record is absent for compare-and-swap"
    );
    assert_eq!(
        get(h, "swap").await,
        None,
        "the failed swap did not revive the record"
    );

    assert!(
        !h.b()
            .delete(&h.tenant, &key("delete"))
            .await
            .expect("delete"),
        "delete of an expired record reports false"
    );

    let v = put(h, "put", json!("new"), None).await;
    assert!(
        v > v_put,
        "a put over an expired record gets a greater version"
    );
    assert_eq!(get(h, "put").await.expect("visible").value, json!("new"));
}

pub async fn cas_sets_ttl_from_the_call(h: &Harness) {
    let k = key("code");
    let v1 = put(h, "code", json!(1), Some(1000)).await;
    h.advance(100);
    let v2 = h
        .b()
        .compare_and_swap(&h.tenant, &k, v1, &value(json!(2)), None)
        .await
        .expect("swap");
    assert_eq!(
        get(h, "code").await.expect("visible").expires_at,
        None,
        "a swap without ttl makes the record permanent"
    );
    h.advance(5000);
    assert_eq!(
        get(h, "code")
            .await
            .expect("visible past the first ttl")
            .value,
        json!(2)
    );

    let now = h.clock.now();
    let v3 = h
        .b()
        .compare_and_swap(&h.tenant, &k, v2, &value(json!(3)), ttl(50))
        .await
        .expect("swap");
    assert_eq!(
        get(h, "code").await.expect("visible").expires_at,
        Some(now + 50),
        "a swap with ttl expires from its own time"
    );
    h.advance(49);
    assert!(get(h, "code").await.is_some(), "visible at expires_at - 1");
    h.advance(1);
    assert_eq!(get(h, "code").await, None, "invisible at expires_at");
    let err = h
        .b()
        .compare_and_swap(&h.tenant, &k, v3, &value(json!(4)), None)
        .await
        .expect_err("the record expired");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn scan_skips_expired(h: &Harness) {
    for i in 0..10 {
        let ttl_ms = if i % 2 == 1 { Some(100) } else { None };
        put(h, &format!("s/{i}"), json!(i), ttl_ms).await;
    }
    assert_eq!(
        scan_keys(h, "s/").await.len(),
        10,
        "all visible before expiry"
    );
    h.advance(100);
    assert_eq!(
        scan_keys(h, "s/").await,
        ["s/0", "s/2", "s/4", "s/6", "s/8"],
        "expired entries are skipped"
    );

    let page = h
        .b()
        .scan(&h.tenant, &prefix("s/"), None, limit(2))
        .await
        .expect("scan");
    assert_eq!(page.next, Some(key("s/2")));
    let page = h
        .b()
        .scan(&h.tenant, &prefix("s/"), Some(&key("s/2")), limit(2))
        .await
        .expect("scan");
    assert_eq!(
        page.items
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["s/4", "s/6"]
    );
    assert_eq!(page.next, Some(key("s/6")), "s/8 is still visible");
    let page = h
        .b()
        .scan(&h.tenant, &prefix("s/"), Some(&key("s/6")), limit(2))
        .await
        .expect("scan");
    assert_eq!(
        page.items
            .iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>(),
        ["s/8"]
    );
    assert_eq!(
        page.next, None,
        "only an expired entry (s/9) follows, so there is no cursor"
    );

    let page = h
        .b()
        .scan(&h.tenant, &prefix("s/"), None, limit(5))
        .await
        .expect("scan");
    assert_eq!(page.items.len(), 5);
    assert_eq!(
        page.next, None,
        "five visible entries fill the page exactly; the expired s/9 does not count"
    );
}

pub async fn find_by_field_skips_expired(h: &Harness) {
    put(h, "a", json!({"role": "admin"}), None).await;
    put(h, "b", json!({"role": "admin"}), Some(100)).await;
    put(h, "c", json!({"role": "admin"}), Some(200)).await;
    put(h, "d", json!({"role": "user"}), None).await;
    let find = |lim: u64| {
        let (at, wanted) = (path("role"), operand(json!("admin")));
        async move {
            p8fs_core::kv::find_by_field(h.b(), &h.tenant, &at, &wanted, None, limit(lim))
                .await
                .expect("find_by_field succeeds")
        }
    };
    let keys = |page: &p8fs_core::kv::KvPage| {
        page.items
            .iter()
            .map(|e| e.key.as_str().to_owned())
            .collect::<Vec<_>>()
    };

    assert_eq!(keys(&find(10).await), ["a", "b", "c"]);
    h.advance(100);
    assert_eq!(keys(&find(10).await), ["a", "c"], "b expired exactly now");
    let page = find(1).await;
    assert_eq!(
        (keys(&page), page.next),
        (strings(&["a"]), Some(key("a"))),
        "c still follows"
    );
    h.advance(100);
    let page = find(1).await;
    assert_eq!(
        (keys(&page), page.next),
        (strings(&["a"]), None),
        "only expired matches follow: no cursor"
    );
}

pub async fn expired_vector_is_invisible(h: &Harness) {
    let c = collection("v");
    h.b()
        .create_collection(&h.tenant, &spec("v", 2, Metric::L2))
        .await
        .expect("create");
    let t0 = h.clock.now();
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("keep"),
        vec![3.0, 4.0],
        &object(json!({})),
        None,
    )
    .await
    .expect("upsert");
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("gone"),
        vec![0.0, 0.0],
        &object(json!({"x": 1})),
        ttl(1000),
    )
    .await
    .expect("upsert");
    let ids = |hits: Vec<SearchHit>| {
        hits.into_iter()
            .map(|hit| hit.id.into_string())
            .collect::<Vec<_>>()
    };
    let listed = |page: p8fs_core::vector::VectorPage| {
        page.items
            .into_iter()
            .map(|r| r.id.into_string())
            .collect::<Vec<_>>()
    };

    let gone = h
        .b()
        .get_vector(&h.tenant, &c, &record("gone"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(gone.expires_at, Some(t0 + 1000), "expires_at = now + ttl");
    h.advance(999);
    assert!(
        h.b()
            .get_vector(&h.tenant, &c, &record("gone"))
            .await
            .expect("get")
            .is_some(),
        "visible at expires_at - 1"
    );
    let hits = search(
        h.b(),
        &h.tenant,
        &c,
        vec![0.0, 0.0],
        limit(10),
        &Filter::none(),
    )
    .await
    .expect("search");
    assert_eq!(ids(hits), ["gone", "keep"]);

    h.advance(1);
    assert_eq!(
        h.b()
            .get_vector(&h.tenant, &c, &record("gone"))
            .await
            .expect("get"),
        None,
        "invisible at expires_at"
    );
    let page = h
        .b()
        .list_vectors(&h.tenant, &c, None, limit(10))
        .await
        .expect("list");
    assert_eq!(listed(page), ["keep"], "listing skips the expired record");
    let page = h
        .b()
        .list_vectors(&h.tenant, &c, Some(&record("a")), limit(1))
        .await
        .expect("list");
    assert_eq!(page.next, None, "nothing visible follows \"keep\"");
    let hits = search(
        h.b(),
        &h.tenant,
        &c,
        vec![0.0, 0.0],
        limit(10),
        &Filter::none(),
    )
    .await
    .expect("search");
    assert_eq!(ids(hits), ["keep"], "search skips the expired record");
    let filter = crate::support::filter(&[("x", json!(1))]);
    let hits = search(h.b(), &h.tenant, &c, vec![0.0, 0.0], limit(10), &filter)
        .await
        .expect("search");
    assert!(
        hits.is_empty(),
        "a filtered search skips the expired record"
    );
    assert!(
        !h.b()
            .delete_vector(&h.tenant, &c, &record("gone"))
            .await
            .expect("delete"),
        "delete finds no visible record"
    );

    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("gone"),
        vec![6.0, 8.0],
        &object(json!({})),
        None,
    )
    .await
    .expect("upsert");
    let back = h
        .b()
        .get_vector(&h.tenant, &c, &record("gone"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        (back.vector, back.expires_at),
        (vec![6.0, 8.0], None),
        "the re-created record is the new one"
    );
}

pub async fn expired_node_hides_its_edges(h: &Harness) {
    add_node(h, "a", None).await;
    add_node(h, "b", Some(1000)).await;
    add_node(h, "c", None).await;
    add_edge(h, "a", "b", 1.0, None).await;
    add_edge(h, "b", "c", 1.0, None).await;
    add_edge(h, "a", "c", 5.0, None).await;

    h.advance(999);
    assert!(
        edge(h, "a", "b").await.is_some(),
        "visible while the node is"
    );
    assert_eq!(
        out_neighbors(h, "a", Direction::Out, 1).await,
        owned(&[("b", 1), ("c", 1)])
    );
    assert_eq!(
        path_nodes(h, "a", "c", true).await,
        Some(strings(&["a", "b", "c"])),
        "the light path through b"
    );

    h.advance(1);
    assert_eq!(
        h.b().get_node(&h.tenant, &node("b")).await.expect("get"),
        None,
        "the node expired"
    );
    assert_eq!(
        edge(h, "a", "b").await,
        None,
        "an edge into an expired node is invisible"
    );
    assert_eq!(
        edge(h, "b", "c").await,
        None,
        "an edge out of an expired node is invisible"
    );
    assert_eq!(
        out_neighbors(h, "a", Direction::Both, 6).await,
        owned(&[("c", 1)]),
        "the expired node is not traversed"
    );
    assert_eq!(
        out_neighbors(h, "c", Direction::In, 6).await,
        owned(&[("a", 1)]),
        "the expired node is not traversed"
    );
    assert_eq!(
        path_nodes(h, "a", "c", true).await,
        Some(strings(&["a", "c"])),
        "paths avoid the expired node"
    );
    let nodes = h
        .b()
        .list_nodes(&h.tenant, None, Limit::MAX)
        .await
        .expect("list")
        .items;
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"],
        "listing skips the expired node"
    );

    let err = neighbors(
        h.b(),
        &h.tenant,
        &node("b"),
        Direction::Out,
        &RelFilter::any(),
        depth(1),
        Limit::MAX,
    )
    .await
    .expect_err("an expired start node is absent");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = shortest_path(h.b(), &h.tenant, &path_query("a", "b", false))
        .await
        .expect_err("an expired end node is absent");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = h
        .b()
        .put_edge(
            &h.tenant,
            &node("a"),
            &rel("r"),
            &node("b"),
            Weight::ONE,
            &JsonObject::empty(),
            None,
        )
        .await
        .expect_err("an edge needs visible endpoints");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        !h.b()
            .delete_edge(&h.tenant, &node("a"), &rel("r"), &node("b"))
            .await
            .expect("delete_edge"),
        "an invisible edge is not reported as deleted"
    );
    assert!(
        !h.b()
            .delete_node(&h.tenant, &node("b"))
            .await
            .expect("delete_node"),
        "an expired node is not reported as deleted"
    );
}

pub async fn traversal_never_passes_expired_edge(h: &Harness) {
    for id in ["s", "a", "b", "c", "t"] {
        add_node(h, id, None).await;
    }
    add_edge(h, "s", "a", 1.0, Some(1000)).await; // the short path's first step expires
    add_edge(h, "a", "t", 1.0, None).await;
    add_edge(h, "s", "b", 1.0, None).await;
    add_edge(h, "b", "c", 1.0, None).await;
    add_edge(h, "c", "t", 1.0, None).await;

    h.advance(999);
    assert_eq!(
        path_nodes(h, "s", "t", false).await,
        Some(strings(&["s", "a", "t"]))
    );
    assert_eq!(
        path_nodes(h, "s", "t", true).await,
        Some(strings(&["s", "a", "t"]))
    );
    assert_eq!(
        out_neighbors(h, "s", Direction::Out, 1).await,
        owned(&[("a", 1), ("b", 1)])
    );

    h.advance(1);
    assert_eq!(
        edge(h, "s", "a").await,
        None,
        "the edge expired exactly at expires_at"
    );
    assert_eq!(
        path_nodes(h, "s", "t", false).await,
        Some(strings(&["s", "b", "c", "t"])),
        "unweighted paths avoid the expired edge"
    );
    assert_eq!(
        path_nodes(h, "s", "t", true).await,
        Some(strings(&["s", "b", "c", "t"])),
        "weighted paths avoid the expired edge"
    );
    assert_eq!(
        path_nodes(h, "s", "a", false).await,
        None,
        "the expired edge was the only way to a"
    );
    assert_eq!(
        path_nodes(h, "s", "a", true).await,
        None,
        "the expired edge was the only way to a"
    );
    assert_eq!(
        out_neighbors(h, "s", Direction::Out, 6).await,
        owned(&[("b", 1), ("c", 2), ("t", 3)]),
        "neighbors do not pass the expired edge"
    );
    assert_eq!(
        out_neighbors(h, "a", Direction::In, 6).await,
        Vec::new(),
        "nothing enters a any more"
    );
}

pub async fn recreated_node_does_not_revive_old_edges(h: &Harness) {
    for id in ["a", "b", "d"] {
        add_node(h, id, None).await;
    }
    add_node(h, "c", Some(1000)).await;
    add_edge(h, "a", "b", 1.0, None).await;
    add_edge(h, "a", "c", 1.0, None).await;
    add_edge(h, "c", "a", 1.0, None).await;
    add_edge(h, "a", "d", 1.0, None).await;

    // Deleted, then re-created.
    assert!(
        h.b()
            .delete_node(&h.tenant, &node("b"))
            .await
            .expect("delete_node")
    );
    add_node(h, "b", None).await;
    assert_eq!(
        edge(h, "a", "b").await,
        None,
        "re-creating a deleted node does not revive its edges"
    );

    // Expired, then re-created.
    h.advance(1000);
    add_node(h, "c", None).await;
    assert_eq!(
        edge(h, "a", "c").await,
        None,
        "re-creating an expired node does not revive its edges"
    );
    assert_eq!(
        edge(h, "c", "a").await,
        None,
        "re-creating an expired node does not revive its edges"
    );

    // Upserting a node that is still visible keeps its edges.
    h.b()
        .put_node(
            &h.tenant,
            &node("d"),
            &label("renamed"),
            &object(json!({"v": 2})),
            None,
        )
        .await
        .expect("put_node");
    assert!(
        edge(h, "a", "d").await.is_some(),
        "updating a visible node keeps its edges"
    );
    assert_eq!(
        out_neighbors(h, "a", Direction::Both, 6).await,
        owned(&[("d", 1)]),
        "only the edge to the never-removed node is traversed"
    );

    // A new edge between the re-created nodes is a new edge, with its own weight.
    add_edge(h, "a", "c", 3.0, None).await;
    assert_eq!(edge(h, "a", "c").await.expect("visible").weight, 3.0);
    assert_eq!(
        edge(h, "c", "a").await,
        None,
        "only the edge written anew exists"
    );
}

pub async fn upserts_set_ttl_from_the_call(h: &Harness) {
    // As for key-value puts, every upsert sets the record's ttl from its own call.
    let c = collection("v");
    h.b()
        .create_collection(&h.tenant, &spec("v", 1, Metric::L2))
        .await
        .expect("create");
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("r"),
        vec![1.0],
        &object(json!({})),
        ttl(100),
    )
    .await
    .expect("upsert");
    add_node(h, "a", Some(100)).await;
    add_node(h, "b", None).await;
    add_edge(h, "b", "b", 1.0, Some(100)).await;

    h.advance(50);
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("r"),
        vec![2.0],
        &object(json!({})),
        None,
    )
    .await
    .expect("upsert without ttl");
    add_node(h, "a", None).await;
    add_edge(h, "b", "b", 2.0, None).await;
    let now = h.clock.now();
    add_node(h, "b", Some(100)).await;

    let r = h
        .b()
        .get_vector(&h.tenant, &c, &record("r"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        r.expires_at, None,
        "an upsert without ttl makes a vector permanent"
    );
    let a = h
        .b()
        .get_node(&h.tenant, &node("a"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        a.expires_at, None,
        "a put_node without ttl makes a node permanent"
    );
    let b = h
        .b()
        .get_node(&h.tenant, &node("b"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        b.expires_at,
        Some(now + 100),
        "a put_node with ttl makes a permanent node expire"
    );
    assert_eq!(
        edge(h, "b", "b").await.expect("visible").expires_at,
        None,
        "a put_edge without ttl makes an edge permanent"
    );

    h.advance(99);
    assert!(
        h.b()
            .get_vector(&h.tenant, &c, &record("r"))
            .await
            .expect("get")
            .is_some(),
        "past the first ttl"
    );
    assert!(
        h.b()
            .get_node(&h.tenant, &node("a"))
            .await
            .expect("get")
            .is_some(),
        "past the first ttl"
    );
    assert!(edge(h, "b", "b").await.is_some(), "past the first ttl");
    h.advance(1);
    assert_eq!(
        h.b().get_node(&h.tenant, &node("b")).await.expect("get"),
        None,
        "b expires at its new ttl"
    );
    assert_eq!(edge(h, "b", "b").await, None, "and its edge with it");
    assert!(
        h.b()
            .get_vector(&h.tenant, &c, &record("r"))
            .await
            .expect("get")
            .is_some(),
        "permanent"
    );
}
