//! Purges (DESIGN.md, "Tenants, ids, time": physical removal "is never observable except
//! through storage size"): `purge_expired` removes expired key-value records, vector records,
//! nodes with their edges, and edges, changes nothing a client can read, and never lets an old
//! incarnation come back (edges of a purged node, an earlier version of a key).
//!
//! These scenarios run in [`crate::Purging::Exclusive`] mode, so purges do real work on a
//! shared SQL server too, and they check the counts `purge_expired` returns: with no other
//! physical removal configured (none of the suite's backends removes an expired record before a
//! purge unless a write replaced or deleted it), a purge returns exactly the number of records it
//! removed, an edge removed with its expired node included. A purge that removes nothing fails
//! them.

use serde_json::{Value, json};

use p8fs_core::traverse::{Neighbor, Path, neighbors, shortest_path};
use p8fs_core::vector::{SearchHit, VectorRecord, search, upsert};
use p8fs_core::{
    Clock, Direction, EdgeRecord, ErrorKind, Filter, JsonObject, KvEntry, Limit, Metric,
    NodeRecord, RelFilter, TenantId, Version,
};

use crate::Harness;
use crate::support::{
    collection, depth, filter, key, label, limit, node, object, prefix, record, rel, spec, ttl,
    value, weight,
};
use crate::ttl::{add_edge, add_node, edge, get, path_query, put};

/// Purges and returns the count.
async fn purge(h: &Harness) -> u64 {
    h.b().purge_expired().await.expect("purge_expired succeeds")
}

pub async fn purge_is_unobservable(h: &Harness) {
    // Expiries are a few seconds after the case's start, long before the wall clock: a backend
    // that purges by the database's clock instead of the injected one removes visible records
    // and fails here.
    put(h, "kv/permanent", json!(1), None).await;
    let v_expired = put(h, "kv/expired", json!(2), Some(100)).await;
    put(h, "kv/later", json!(3), Some(5000)).await;
    put(h, "kv/boundary", json!(4), Some(1001)).await;

    let c = collection("docs");
    h.b()
        .create_collection(&h.tenant, &spec("docs", 2, Metric::L2))
        .await
        .expect("create");
    for (id, v, t) in [
        ("v1", [0.0, 0.0], None),
        ("v2", [1.0, 0.0], Some(100)),
        ("v3", [0.0, 2.0], Some(5000)),
    ] {
        upsert(
            h.b(),
            &h.tenant,
            &c,
            &record(id),
            v.to_vec(),
            &object(json!({"id": id})),
            t.and_then(ttl),
        )
        .await
        .expect("upsert");
    }

    add_node(h, "a", None).await;
    add_node(h, "b", None).await;
    add_node(h, "gone", Some(100)).await;
    add_node(h, "late", Some(5000)).await;
    add_edge(h, "a", "b", 1.0, None).await;
    add_edge(h, "a", "gone", 1.0, None).await;
    add_edge(h, "gone", "b", 1.0, None).await;
    add_edge(h, "b", "late", 1.0, Some(100)).await;
    add_edge(h, "a", "late", 2.0, None).await;

    h.advance(1000);
    let before = snapshot(h).await;
    assert_eq!(
        before.kv.len(),
        3,
        "kv/expired is already invisible, kv/boundary is visible until +1001"
    );
    let removed = h.b().purge_expired().await.expect("purge_expired succeeds");
    let after = snapshot(h).await;
    assert_eq!(
        after, before,
        "purge_expired (which removed {removed} records) changed something observable"
    );
    assert_eq!(
        removed, 6,
        "kv/expired, v2, the node gone with its two edges, and the edge b -> late"
    );

    // A second purge with nothing newly expired is just as invisible.
    assert_eq!(purge(h).await, 0, "nothing newly expired");
    assert_eq!(
        snapshot(h).await,
        before,
        "a second purge changed something observable"
    );

    // Expiry after a purge still happens exactly on time, and versions keep increasing.
    h.advance(1);
    assert_eq!(
        get(h, "kv/boundary").await,
        None,
        "kv/boundary expires at +1001 as written"
    );
    let v = put(h, "kv/expired", json!("again"), None).await;
    assert!(
        v > v_expired,
        "a key re-created after purge gets a greater version than its purged incarnation"
    );
    add_node(h, "gone", None).await;
    assert_eq!(
        edge(h, "a", "gone").await,
        None,
        "edges of a purged node do not come back"
    );
    assert_eq!(
        edge(h, "gone", "b").await,
        None,
        "edges of a purged node do not come back"
    );
    upsert(
        h.b(),
        &h.tenant,
        &c,
        &record("v2"),
        vec![5.0, 5.0],
        &object(json!({})),
        None,
    )
    .await
    .expect("upsert over a purged record");
    let v2 = h
        .b()
        .get_vector(&h.tenant, &c, &record("v2"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(v2.vector, [5.0, 5.0], "the new record, not the purged one");
}

/// Everything a client can read, for [`purge_is_unobservable`].
#[derive(Debug, PartialEq)]
struct Snapshot {
    kv: Vec<KvEntry>,
    vectors: Vec<VectorRecord>,
    hits: Vec<SearchHit>,
    nodes: Vec<NodeRecord>,
    edges: Vec<Option<EdgeRecord>>,
    reach: Vec<Neighbor>,
    path: Option<Path>,
}

async fn snapshot(h: &Harness) -> Snapshot {
    let c = collection("docs");
    let kv = h
        .b()
        .scan(&h.tenant, &prefix(""), None, Limit::MAX)
        .await
        .expect("scan")
        .items;
    let vectors = h
        .b()
        .list_vectors(&h.tenant, &c, None, Limit::MAX)
        .await
        .expect("list")
        .items;
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
    let nodes = h
        .b()
        .list_nodes(&h.tenant, None, Limit::MAX)
        .await
        .expect("list")
        .items;
    let mut edges = Vec::new();
    for (src, dst) in [
        ("a", "b"),
        ("a", "gone"),
        ("gone", "b"),
        ("b", "late"),
        ("a", "late"),
    ] {
        edges.push(edge(h, src, dst).await);
    }
    let reach = neighbors(
        h.b(),
        &h.tenant,
        &node("a"),
        Direction::Both,
        &RelFilter::any(),
        depth(6),
        Limit::MAX,
    )
    .await
    .expect("neighbors");
    let path = shortest_path(h.b(), &h.tenant, &path_query("a", "late", true))
        .await
        .expect("path");
    Snapshot {
        kv,
        vectors,
        hits,
        nodes,
        edges,
        reach,
        path,
    }
}

/// Upserts a vector record in `tenant`'s collection `coll`.
async fn put_vector(
    h: &Harness,
    tenant: &TenantId,
    coll: &str,
    id: &str,
    v: &[f32],
    metadata: Value,
    ttl_ms: Option<i64>,
) {
    upsert(
        h.b(),
        tenant,
        &collection(coll),
        &record(id),
        v.to_vec(),
        &object(metadata),
        ttl_ms.and_then(ttl),
    )
    .await
    .expect("upsert succeeds");
}

async fn vector_ids(h: &Harness, tenant: &TenantId, coll: &str) -> Vec<String> {
    h.b()
        .list_vectors(tenant, &collection(coll), None, Limit::MAX)
        .await
        .expect("list_vectors succeeds")
        .items
        .into_iter()
        .map(|r| r.id.into_string())
        .collect()
}

async fn hit_ids(h: &Harness, coll: &str, query: &[f32], f: &Filter) -> Vec<String> {
    search(
        h.b(),
        &h.tenant,
        &collection(coll),
        query.to_vec(),
        limit(10),
        f,
    )
    .await
    .expect("search succeeds")
    .into_iter()
    .map(|hit| hit.id.into_string())
    .collect()
}

pub async fn expired_vectors_are_purged(h: &Harness) {
    let t = &h.tenant;
    for (name, metric) in [("docs", Metric::L2), ("other", Metric::Cosine)] {
        h.b()
            .create_collection(t, &spec(name, 2, metric))
            .await
            .expect("create");
    }
    put_vector(h, t, "docs", "keep", &[1.0, 0.0], json!({"k": 1}), None).await;
    put_vector(
        h,
        t,
        "docs",
        "short",
        &[0.0, 1.0],
        json!({"k": 1}),
        Some(100),
    )
    .await;
    put_vector(
        h,
        t,
        "docs",
        "long",
        &[1.0, 1.0],
        json!({"k": 1}),
        Some(5000),
    )
    .await;
    put_vector(h, t, "other", "o1", &[1.0, 0.0], json!({}), Some(100)).await;
    put_vector(h, t, "other", "o2", &[0.0, 1.0], json!({}), None).await;

    h.advance(100);
    assert_eq!(purge(h).await, 2, "short and o1 expired");
    assert_eq!(vector_ids(h, t, "docs").await, ["keep", "long"]);
    assert_eq!(vector_ids(h, t, "other").await, ["o2"]);
    let by_k = filter(&[("k", json!(1))]);
    assert_eq!(
        hit_ids(h, "docs", &[0.0, 1.0], &by_k).await,
        ["long", "keep"]
    );
    assert_eq!(
        h.b()
            .get_vector(t, &collection("docs"), &record("short"))
            .await
            .expect("get"),
        None
    );

    // A purged id written again is a new record, with nothing of the old one.
    put_vector(h, t, "docs", "short", &[3.0, 3.0], json!({"k": 2}), None).await;
    let again = h
        .b()
        .get_vector(t, &collection("docs"), &record("short"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        (again.vector, again.metadata, again.expires_at),
        (vec![3.0, 3.0], object(json!({"k": 2})).get().clone(), None)
    );
    assert_eq!(
        hit_ids(h, "docs", &[0.0, 1.0], &by_k).await,
        ["long", "keep"]
    );

    h.advance(4900);
    assert_eq!(purge(h).await, 1, "long expired at +5000");
    assert_eq!(vector_ids(h, t, "docs").await, ["keep", "short"]);
    assert_eq!(purge(h).await, 0, "nothing newly expired");

    // Records dropped with their collection are gone already: a purge finds none of them, and a
    // collection created again under the name starts empty.
    put_vector(h, t, "other", "o3", &[1.0, 1.0], json!({}), Some(100)).await;
    assert!(
        h.b()
            .drop_collection(t, &collection("other"))
            .await
            .expect("drop")
    );
    h.advance(100);
    assert_eq!(
        purge(h).await,
        0,
        "the dropped o2 and o3 are not purged again"
    );
    h.b()
        .create_collection(t, &spec("other", 2, Metric::Cosine))
        .await
        .expect("create again");
    assert!(vector_ids(h, t, "other").await.is_empty());
    assert_eq!(vector_ids(h, t, "docs").await, ["keep", "short"]);
}

pub async fn purged_node_recreated_without_old_edges(h: &Harness) {
    for (id, t) in [("a", None), ("b", None), ("n", Some(100)), ("m", Some(100))] {
        add_node(h, id, t).await;
    }
    for (src, dst, t) in [
        ("a", "n", None),
        ("n", "b", None),
        ("n", "n", None),
        ("n", "m", None),
        ("a", "b", None),
        ("b", "a", Some(100)),
    ] {
        add_edge(h, src, dst, 1.0, t).await;
    }
    h.advance(100);
    assert_eq!(
        purge(h).await,
        7,
        "nodes n and m, their edges a->n, n->b, n->n, n->m, and the expired edge b->a"
    );

    add_node(h, "n", None).await;
    for (src, dst) in [("a", "n"), ("n", "b"), ("n", "n"), ("n", "m"), ("b", "a")] {
        assert_eq!(
            edge(h, src, dst).await,
            None,
            "{src} -> {dst} does not come back"
        );
    }
    assert_eq!(
        h.b()
            .edges_of(&h.tenant, &[node("n")], Direction::Both, &RelFilter::any())
            .await
            .expect("edges_of"),
        Vec::<EdgeRecord>::new(),
        "the new incarnation of n has no edges"
    );
    let reach = |start: &'static str| async move {
        neighbors(
            h.b(),
            &h.tenant,
            &node(start),
            Direction::Both,
            &RelFilter::any(),
            depth(3),
            Limit::MAX,
        )
        .await
        .expect("neighbors")
        .into_iter()
        .map(|x| x.id.into_string())
        .collect::<Vec<_>>()
    };
    assert!(reach("n").await.is_empty());
    assert_eq!(reach("a").await, ["b"]);

    // Edges of the new incarnation survive later purges.
    add_edge(h, "a", "n", 2.0, None).await;
    add_node(h, "m", None).await;
    assert_eq!(purge(h).await, 0, "nothing newly expired");
    assert_eq!(
        edge(h, "a", "n").await.map(|e| e.weight),
        Some(2.0),
        "the new edge a -> n"
    );
    assert_eq!(edge(h, "n", "m").await, None, "m came back without n -> m");
    assert_eq!(reach("a").await, ["b", "n"]);
}

pub async fn versions_increase_after_purge(h: &Harness) {
    let k = key("k");
    let v1 = put(h, "k", json!(1), Some(100)).await;
    let v2 = h
        .b()
        .compare_and_swap(&h.tenant, &k, v1, &value(json!(2)), ttl(100))
        .await
        .expect("swap");
    assert!(v2 > v1);
    h.advance(100);
    assert_eq!(purge(h).await, 1, "k expired");

    // The purged key is absent for every write that checks existence...
    let error = h
        .b()
        .compare_and_swap(&h.tenant, &k, v2, &value(json!(3)), None)
        .await
        .expect_err("no record to swap");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    // ...and its next incarnation has a greater version than any earlier one.
    let v3 = h
        .b()
        .put_if_absent(&h.tenant, &k, &value(json!(3)), ttl(50))
        .await
        .expect("put_if_absent over a purged key");
    assert!(v3 > v2, "{v3} > {v2}");
    let stale = h
        .b()
        .compare_and_swap(&h.tenant, &k, v2, &value(json!(4)), None)
        .await
        .expect_err("a version of a purged incarnation");
    assert_eq!(stale.kind(), ErrorKind::Conflict);
    h.advance(50);
    assert_eq!(purge(h).await, 1, "k expired again");
    let v4 = put(h, "k", json!(4), None).await;
    assert!(v4 > v3, "{v4} > {v3}");
    assert_eq!(get(h, "k").await.map(|e| e.version), Some(v4));

    // Many keys purged at once, each written again.
    let mut old: Vec<(String, Version)> = Vec::new();
    for i in 0..20 {
        let name = format!("many/{i:02}");
        old.push((name.clone(), put(h, &name, json!(i), Some(10)).await));
    }
    h.advance(10);
    assert_eq!(purge(h).await, 20, "the 20 keys expired");
    for (name, before) in old {
        let after = put(h, &name, json!("again"), None).await;
        assert!(after > before, "{name}: {after} > {before}");
    }
    assert_eq!(
        h.b()
            .scan(&h.tenant, &prefix("many/"), None, Limit::MAX)
            .await
            .expect("scan")
            .items
            .len(),
        20
    );
}

pub async fn purge_respects_tenant_prefixes(h: &Harness) {
    // Tenants that are prefixes of each other; `_` is also a LIKE wildcard.
    let base = h.tenant.as_str();
    let tenant = |suffix: &str| TenantId::new(format!("{base}{suffix}")).expect("valid tenant");
    let expiring = [tenant(""), tenant("_b")];
    let permanent = [tenant("-b"), tenant("b")];
    for (t, ttl_ms) in expiring
        .iter()
        .map(|t| (t, Some(100)))
        .chain(permanent.iter().map(|t| (t, None)))
    {
        h.b()
            .put(
                t,
                &key("k"),
                &value(json!(t.as_str())),
                ttl_ms.and_then(ttl),
            )
            .await
            .expect("put");
        h.b()
            .create_collection(t, &spec("c", 2, Metric::L2))
            .await
            .expect("create");
        put_vector(h, t, "c", "r", &[1.0, 2.0], json!({}), ttl_ms).await;
        for (id, node_ttl) in [("n", ttl_ms), ("p", None)] {
            h.b()
                .put_node(
                    t,
                    &node(id),
                    &label("thing"),
                    &JsonObject::empty(),
                    node_ttl.and_then(ttl),
                )
                .await
                .expect("put_node");
        }
        for (src, dst) in [("n", "p"), ("p", "n")] {
            h.b()
                .put_edge(
                    t,
                    &node(src),
                    &rel("r"),
                    &node(dst),
                    weight(1.0),
                    &JsonObject::empty(),
                    None,
                )
                .await
                .expect("put_edge");
        }
    }
    h.advance(100);
    assert_eq!(
        purge(h).await,
        10,
        "in each of the two expiring tenants: k, r, n and its two edges"
    );
    for t in &permanent {
        let what = t.as_str();
        assert_eq!(
            h.b().get(t, &key("k")).await.expect("get").map(|e| e.value),
            Some(json!(what)),
            "{what}: k"
        );
        assert_eq!(vector_ids(h, t, "c").await, ["r"], "{what}: r");
        let ids: Vec<String> = h
            .b()
            .list_nodes(t, None, Limit::MAX)
            .await
            .expect("list_nodes")
            .items
            .into_iter()
            .map(|n| n.id.into_string())
            .collect();
        assert_eq!(ids, ["n", "p"], "{what}: nodes");
        let edges = h
            .b()
            .edges_of(t, &[node("p")], Direction::Both, &RelFilter::any())
            .await
            .expect("edges_of");
        assert_eq!(edges.len(), 2, "{what}: both edges of p");
    }
    for t in &expiring {
        let what = t.as_str();
        h.b()
            .put_node(t, &node("n"), &label("thing"), &JsonObject::empty(), None)
            .await
            .expect("put_node again");
        let edges = h
            .b()
            .edges_of(t, &[node("p")], Direction::Both, &RelFilter::any())
            .await
            .expect("edges_of");
        assert!(edges.is_empty(), "{what}: the purged edges stay gone");
        assert!(vector_ids(h, t, "c").await.is_empty(), "{what}: r purged");
    }
    assert_eq!(purge(h).await, 0, "nothing newly expired");
}

pub async fn expired_objects_are_purged(h: &Harness) {
    use p8fs_core::object::plan_completion;
    use p8fs_core::{ObjectAttributes, ObjectMeta, Precondition, ReapPolicy, Resource};

    use crate::object::{
        assert_not_found, bucket, get, keys_in, make_bucket, okey, part_of, put, put_with,
        read_all, store, write_data,
    };

    crate::reaper::clean_slate(h).await;
    let (s, t, o) = (store(h), &h.tenant, &h.other);
    make_bucket(h, t, "bkt").await;
    make_bucket(h, o, "bkt").await;
    let now = h.clock.now();
    let expiring = |tenant, key, content: &'static [u8], after: i64| async move {
        put_with(
            h,
            tenant,
            "bkt",
            key,
            content,
            Some(now + after),
            &Precondition::None,
        )
        .await
        .expect("put_object succeeds")
    };
    let short = expiring(t, "short", b"short-lived", 100).await;
    let long = expiring(t, "long", b"long-lived", 5000).await;
    let forever = put(h, t, "bkt", "forever", b"permanent").await;
    let theirs = expiring(o, "theirs", b"other tenant", 100).await;
    // A multipart object with the expiry of its upload.
    let upload = s
        .create_upload(
            t,
            &bucket("bkt"),
            &okey("multi"),
            &ObjectAttributes::default(),
            Some(now + 100),
        )
        .await
        .expect("create_upload");
    let written = write_data(h, t, b"one part").await;
    s.put_part(t, &bucket("bkt"), upload.id, &part_of(h, 1, &written))
        .await
        .expect("put_part");
    let parts = s
        .list_parts(t, &bucket("bkt"), upload.id, 0, Limit::MAX)
        .await
        .expect("list_parts");
    let plan = plan_completion(&[(1, written.md5.clone())], &parts).expect("a valid part list");
    let multi = ObjectMeta {
        key: okey("multi"),
        size: plan.size,
        etag: plan.etag,
        last_modified: now,
        expires_at: upload.expires_at,
        attributes: ObjectAttributes::default(),
        segments: plan.segments,
    };
    s.complete_upload(t, &bucket("bkt"), upload.id, &multi, &Precondition::None)
        .await
        .expect("complete_upload");

    h.advance(100);
    let purged_at = h.clock.now();
    let before = keys_in(h, t, "bkt").await;
    assert_eq!(before, ["forever", "long"]);
    assert_eq!(
        purge(h).await,
        3,
        "short, multi and the other tenant's object expired"
    );
    assert_eq!(
        keys_in(h, t, "bkt").await,
        before,
        "a purge changes nothing visible"
    );
    assert!(keys_in(h, o, "bkt").await.is_empty());
    assert_eq!(get(h, t, "bkt", "long").await, Some(long.clone()));
    assert_eq!(purge(h).await, 0, "nothing newly expired");

    // Their blobs are freed, not removed: readable until a reap reaches the purge's time.
    assert_eq!(read_all(h, t, &short).await, b"short-lived");
    assert_eq!(read_all(h, t, &multi).await, b"one part");
    let reap = |freed_before| async move {
        s.reap_objects(ReapPolicy {
            abandoned_before: now,
            freed_before,
        })
        .await
        .expect("reap_objects succeeds")
    };
    assert_eq!(reap(purged_at).await, 0, "freed at the purge: kept");
    assert_eq!(
        reap(purged_at + 1).await,
        3,
        "the three purged objects' blobs"
    );
    for (meta, tenant) in [(&short, t), (&multi, t), (&theirs, o)] {
        assert_not_found(
            s.read_chunk(tenant, meta.segments[0].data, 0).await,
            Resource::Object,
            "a purged object's reaped chunk",
        );
    }
    assert_eq!(
        s.stored_bytes(t).await.expect("stored_bytes"),
        h.stored((b"long-lived".len() + b"permanent".len()) as u64, 2)
    );
    assert_eq!(s.stored_bytes(o).await.expect("stored_bytes"), 0);

    // A purged key written again is a new object; the rest expire on time.
    let again = put_with(
        h,
        t,
        "bkt",
        "short",
        b"again",
        None,
        &Precondition::IfAbsent,
    )
    .await
    .expect("If-None-Match: * over a purged object");
    h.advance(4900);
    assert_eq!(purge(h).await, 1, "long expired at +5000");
    assert_eq!(keys_in(h, t, "bkt").await, ["forever", "short"]);
    assert_eq!(get(h, t, "bkt", "short").await, Some(again));
    assert_eq!(read_all(h, t, &forever).await, b"permanent");
}
