//! Tenancy (DESIGN.md, "Tenants, ids, time"): every operation is scoped to its tenant. Records
//! of one tenant are invisible from another to every read, scan, search, traversal and listing,
//! and writes in one tenant never touch another's records, even under the same names.

use serde_json::json;

use p8fs_core::kv::find_by_field;
use p8fs_core::traverse::{PathQuery, neighbors, shortest_path};
use p8fs_core::vector::{search, upsert};
use p8fs_core::{
    Direction, ErrorKind, Filter, JsonObject, Limit, Metric, RelFilter, TenantId, Weight,
};

use crate::Harness;
use crate::support::{
    collection, depth, key, label, limit, max_depth, node, object, operand, path, prefix, record,
    rel, spec, value,
};

pub async fn kv_invisible_across_tenants(h: &Harness) {
    let (b, mine, theirs) = (h.b(), &h.tenant, &h.other);
    let k = key("secret");
    let v = b
        .put(mine, &k, &value(json!({"owner": "me"})), None)
        .await
        .expect("put");
    b.put(mine, &key("secret/2"), &value(json!({"owner": "me"})), None)
        .await
        .expect("put");

    assert_eq!(
        b.get(theirs, &k).await.expect("get"),
        None,
        "get from another tenant"
    );
    let page = b
        .scan(theirs, &prefix(""), None, Limit::MAX)
        .await
        .expect("scan");
    assert!(
        page.items.is_empty() && page.next.is_none(),
        "scan from another tenant"
    );
    let page = b
        .scan(theirs, &prefix("secret"), None, limit(1))
        .await
        .expect("scan");
    assert!(
        page.items.is_empty() && page.next.is_none(),
        "prefix scan from another tenant"
    );
    let found = find_by_field(
        b,
        theirs,
        &path("owner"),
        &operand(json!("me")),
        None,
        Limit::MAX,
    )
    .await
    .expect("find_by_field");
    assert!(found.items.is_empty(), "find_by_field from another tenant");
    let err = b
        .compare_and_swap(theirs, &k, v, &value(json!("stolen")), None)
        .await
        .expect_err("compare-and-swap from another tenant");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "even with the right version, the key is absent elsewhere"
    );
    assert!(
        !b.delete(theirs, &k).await.expect("delete"),
        "delete from another tenant finds nothing"
    );

    // The same key in the other tenant is a separate record.
    let theirs_v = b
        .put_if_absent(theirs, &k, &value(json!({"owner": "them"})), None)
        .await
        .expect("put_if_absent in another tenant is not blocked");
    b.put(theirs, &key("only-theirs"), &value(json!(1)), None)
        .await
        .expect("put");
    let their_entry = b
        .get(theirs, &k)
        .await
        .expect("get")
        .expect("visible to its tenant");
    assert_eq!(
        (their_entry.value, their_entry.version),
        (json!({"owner": "them"}), theirs_v)
    );
    assert!(
        b.delete(theirs, &k).await.expect("delete"),
        "their own record"
    );

    let mine_entry = b.get(mine, &k).await.expect("get").expect("still visible");
    assert_eq!(
        (mine_entry.value, mine_entry.version),
        (json!({"owner": "me"}), v),
        "untouched by the other tenant"
    );
    let keys: Vec<String> = b
        .scan(mine, &prefix(""), None, Limit::MAX)
        .await
        .expect("scan")
        .items
        .into_iter()
        .map(|e| e.key.into_string())
        .collect();
    assert_eq!(
        keys,
        ["secret", "secret/2"],
        "the other tenant's keys do not show up"
    );
    let found = find_by_field(
        b,
        mine,
        &path("owner"),
        &operand(json!("them")),
        None,
        Limit::MAX,
    )
    .await
    .expect("find_by_field");
    assert!(
        found.items.is_empty(),
        "find_by_field does not see the other tenant"
    );
}

pub async fn vectors_invisible_across_tenants(h: &Harness) {
    let (b, mine, theirs) = (h.b(), &h.tenant, &h.other);
    let c = collection("shared-name");
    assert!(
        b.create_collection(mine, &spec("shared-name", 2, Metric::L2))
            .await
            .expect("create")
    );
    upsert(
        b,
        mine,
        &c,
        &record("r"),
        vec![1.0, 0.0],
        &object(json!({"owner": "me"})),
        None,
    )
    .await
    .expect("upsert");

    assert_eq!(
        b.collection(theirs, &c).await.expect("collection"),
        None,
        "collection spec from another tenant"
    );
    assert!(
        b.list_collections(theirs).await.expect("list").is_empty(),
        "collection listing from another tenant"
    );
    let kind = |r: p8fs_core::Error| r.kind();
    assert_eq!(
        kind(
            b.get_vector(theirs, &c, &record("r"))
                .await
                .expect_err("get")
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            b.list_vectors(theirs, &c, None, limit(10))
                .await
                .expect_err("list")
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            b.delete_vector(theirs, &c, &record("r"))
                .await
                .expect_err("delete")
        ),
        ErrorKind::NotFound
    );
    let err = search(b, theirs, &c, vec![1.0, 0.0], limit(10), &Filter::none())
        .await
        .expect_err("search");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "search from another tenant"
    );
    let err = upsert(
        b,
        theirs,
        &c,
        &record("x"),
        vec![1.0, 0.0],
        &JsonObject::empty(),
        None,
    )
    .await
    .expect_err("upsert");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "upsert into another tenant's collection"
    );
    assert!(
        !b.drop_collection(theirs, &c).await.expect("drop"),
        "drop from another tenant finds nothing"
    );

    // The same name with another spec is no conflict in the other tenant.
    assert!(
        b.create_collection(theirs, &spec("shared-name", 3, Metric::Cosine))
            .await
            .expect("create")
    );
    upsert(
        b,
        theirs,
        &c,
        &record("r"),
        vec![0.0, 0.0, 1.0],
        &object(json!({"owner": "them"})),
        None,
    )
    .await
    .expect("upsert");
    upsert(
        b,
        theirs,
        &c,
        &record("s"),
        vec![0.0, 1.0, 0.0],
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("upsert");

    let mine_spec = b
        .collection(mine, &c)
        .await
        .expect("collection")
        .expect("exists");
    assert_eq!(
        mine_spec,
        spec("shared-name", 2, Metric::L2),
        "the first tenant's spec is unchanged"
    );
    let r = b
        .get_vector(mine, &c, &record("r"))
        .await
        .expect("get")
        .expect("visible");
    assert_eq!(
        (r.vector, r.metadata),
        (vec![1.0, 0.0], object(json!({"owner": "me"})).into_inner())
    );
    let hits = search(b, mine, &c, vec![0.0, 0.0], limit(10), &Filter::none())
        .await
        .expect("search");
    let ids: Vec<&str> = hits.iter().map(|hit| hit.id.as_str()).collect();
    assert_eq!(ids, ["r"], "search sees only its tenant's records");
    let page = b
        .list_vectors(mine, &c, None, limit(10))
        .await
        .expect("list");
    assert_eq!(
        page.items.len(),
        1,
        "listing sees only its tenant's records"
    );

    assert!(
        b.drop_collection(theirs, &c).await.expect("drop"),
        "their own collection"
    );
    assert!(
        b.get_vector(mine, &c, &record("r"))
            .await
            .expect("get")
            .is_some(),
        "dropping theirs leaves mine"
    );
    assert_eq!(b.list_collections(mine).await.expect("list").len(), 1);
}

pub async fn graph_invisible_across_tenants(h: &Harness) {
    let (b, mine, theirs) = (h.b(), &h.tenant, &h.other);
    let r = rel("knows");
    for id in ["a", "b"] {
        b.put_node(
            mine,
            &node(id),
            &label("person"),
            &JsonObject::empty(),
            None,
        )
        .await
        .expect("put_node");
    }
    b.put_edge(
        mine,
        &node("a"),
        &r,
        &node("b"),
        Weight::ONE,
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("put_edge");

    assert_eq!(
        b.get_node(theirs, &node("a")).await.expect("get_node"),
        None,
        "node from another tenant"
    );
    let page = b
        .list_nodes(theirs, None, Limit::MAX)
        .await
        .expect("list_nodes");
    assert!(
        page.items.is_empty() && page.next.is_none(),
        "node listing from another tenant"
    );
    assert_eq!(
        b.get_edge(theirs, &node("a"), &r, &node("b"))
            .await
            .expect("get_edge"),
        None,
        "edge from another tenant"
    );
    let edges = b
        .edges_of(
            theirs,
            &[node("a"), node("b")],
            Direction::Both,
            &RelFilter::any(),
        )
        .await
        .expect("edges_of");
    assert!(edges.is_empty(), "edges_of from another tenant");
    let err = neighbors(
        b,
        theirs,
        &node("a"),
        Direction::Both,
        &RelFilter::any(),
        depth(1),
        limit(10),
    )
    .await
    .expect_err("neighbors from another tenant");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let query = PathQuery {
        src: node("a"),
        dst: node("b"),
        direction: Direction::Out,
        rels: RelFilter::any(),
        max_depth: max_depth(12),
        weighted: false,
    };
    let err = shortest_path(b, theirs, &query)
        .await
        .expect_err("shortest_path from another tenant");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = b
        .put_edge(
            theirs,
            &node("a"),
            &r,
            &node("b"),
            Weight::ONE,
            &JsonObject::empty(),
            None,
        )
        .await
        .expect_err("put_edge between another tenant's nodes");
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "the endpoints do not exist in this tenant"
    );
    assert!(
        !b.delete_edge(theirs, &node("a"), &r, &node("b"))
            .await
            .expect("delete_edge"),
        "nothing to delete"
    );
    assert!(
        !b.delete_node(theirs, &node("a"))
            .await
            .expect("delete_node"),
        "nothing to delete"
    );

    // Creating (and deleting) same-named nodes in the other tenant neither sees nor removes our edges.
    for id in ["a", "b"] {
        b.put_node(
            theirs,
            &node(id),
            &label("robot"),
            &JsonObject::empty(),
            None,
        )
        .await
        .expect("put_node");
    }
    assert_eq!(
        b.get_edge(theirs, &node("a"), &r, &node("b"))
            .await
            .expect("get_edge"),
        None,
        "no edge in their tenant"
    );
    let reached = neighbors(
        b,
        theirs,
        &node("a"),
        Direction::Both,
        &RelFilter::any(),
        depth(6),
        limit(10),
    )
    .await
    .expect("neighbors");
    assert!(reached.is_empty(), "their a has no neighbours");
    assert_eq!(
        shortest_path(b, theirs, &query)
            .await
            .expect("shortest_path"),
        None,
        "no path in their tenant"
    );
    assert!(
        b.delete_node(theirs, &node("a"))
            .await
            .expect("delete_node"),
        "their own node"
    );

    let mine_a = b
        .get_node(mine, &node("a"))
        .await
        .expect("get_node")
        .expect("still visible");
    assert_eq!(mine_a.label, label("person"), "our node is untouched");
    assert!(
        b.get_edge(mine, &node("a"), &r, &node("b"))
            .await
            .expect("get_edge")
            .is_some(),
        "our edge survives"
    );
    let path = shortest_path(b, mine, &query)
        .await
        .expect("shortest_path")
        .expect("our path");
    assert_eq!(path.nodes, [node("a"), node("b")]);
    let reached = neighbors(
        b,
        mine,
        &node("a"),
        Direction::Out,
        &RelFilter::any(),
        depth(1),
        limit(10),
    )
    .await
    .expect("neighbors");
    assert_eq!(reached.len(), 1, "our a still reaches b");
    let nodes = b
        .list_nodes(mine, None, Limit::MAX)
        .await
        .expect("list_nodes")
        .items;
    let labels: Vec<&str> = nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        labels,
        ["person", "person"],
        "our listing shows only our nodes"
    );
}

/// Tenants whose names are prefixes of each other: `t`, `t-b`, `t_b` and `tb` for a fresh `t`
/// (`_` is also a `LIKE` wildcard, `-` sorts before `_`, and `tb` extends `t` with no separator).
fn prefix_family(h: &Harness) -> Vec<TenantId> {
    let base = h.tenant.as_str();
    ["", "-b", "_b", "b"]
        .iter()
        .map(|suffix| TenantId::new(format!("{base}{suffix}")).expect("valid tenant"))
        .collect()
}

pub async fn prefix_tenants_stay_apart(h: &Harness) {
    let b = h.b();
    let tenants = prefix_family(h);
    // The same names in every tenant, with a value, dimension and edges of its own. Records of
    // tenant 0 and 2 expire after 100 ms.
    for (i, t) in tenants.iter().enumerate() {
        let expiring = (i % 2 == 0).then_some(100);
        let name = t.as_str();
        b.put(t, &key("k"), &value(json!({"owner": name})), None)
            .await
            .expect("put");
        b.put(
            t,
            &key("k/short"),
            &value(json!(name)),
            expiring.and_then(crate::support::ttl),
        )
        .await
        .expect("put");
        let dimension = 2 + i as u64;
        b.create_collection(t, &spec("c", dimension, Metric::L2))
            .await
            .expect("create");
        let mut vector = vec![0.0; dimension as usize];
        vector[0] = 1.0;
        upsert(
            b,
            t,
            &collection("c"),
            &record("r"),
            vector.clone(),
            &object(json!({"owner": name})),
            None,
        )
        .await
        .expect("upsert");
        upsert(
            b,
            t,
            &collection("c"),
            &record("r-short"),
            vector,
            &object(json!({"owner": name})),
            expiring.and_then(crate::support::ttl),
        )
        .await
        .expect("upsert");
        for id in ["n", "p", "q"] {
            b.put_node(t, &node(id), &label(name), &JsonObject::empty(), None)
                .await
                .expect("put_node");
        }
        // Tenant i links n to the i-th of p, q, n, p.
        let dst = ["p", "q", "n", "p"][i];
        b.put_edge(
            t,
            &node("n"),
            &rel("r"),
            &node(dst),
            Weight::new(1.0).expect("weight"),
            &JsonObject::empty(),
            expiring.and_then(crate::support::ttl),
        )
        .await
        .expect("put_edge");
    }

    let check = |when: &'static str, expired: bool| {
        let tenants = tenants.clone();
        async move {
            for (i, t) in tenants.iter().enumerate() {
                let name = t.as_str();
                let gone = expired && i % 2 == 0;
                let what = format!("{name} ({when})");
                // Key-value: get, scan, find_by_field.
                assert_eq!(
                    b.get(t, &key("k")).await.expect("get").map(|e| e.value),
                    Some(json!({"owner": name})),
                    "{what}: get"
                );
                let keys: Vec<String> = b
                    .scan(t, &prefix(""), None, Limit::MAX)
                    .await
                    .expect("scan")
                    .items
                    .into_iter()
                    .map(|e| e.key.into_string())
                    .collect();
                let expected: &[&str] = if gone { &["k"] } else { &["k", "k/short"] };
                assert_eq!(keys, expected, "{what}: scan");
                for (j, other) in tenants.iter().enumerate() {
                    let found = find_by_field(
                        b,
                        t,
                        &path("owner"),
                        &operand(json!(other.as_str())),
                        None,
                        Limit::MAX,
                    )
                    .await
                    .expect("find_by_field")
                    .items
                    .len();
                    assert_eq!(found, usize::from(i == j), "{what}: find owner {other}");
                }
                // Vectors: the collection has this tenant's dimension and records only.
                let specs = b.list_collections(t).await.expect("list_collections");
                assert_eq!(specs.len(), 1, "{what}: one collection");
                assert_eq!(specs[0].dimension.get(), 2 + i, "{what}: dimension");
                let mut query = vec![0.0; 2 + i];
                query[0] = 1.0;
                let hits = search(b, t, &collection("c"), query, limit(10), &Filter::none())
                    .await
                    .expect("search");
                let ids: Vec<&str> = hits.iter().map(|hit| hit.id.as_str()).collect();
                let expected: &[&str] = if gone { &["r"] } else { &["r", "r-short"] };
                assert_eq!(ids, expected, "{what}: search");
                assert!(
                    hits.iter().all(|hit| hit.metadata["owner"] == json!(name)),
                    "{what}: search metadata"
                );
                let listed = b
                    .list_vectors(t, &collection("c"), None, Limit::MAX)
                    .await
                    .expect("list_vectors")
                    .items
                    .len();
                assert_eq!(listed, expected.len(), "{what}: list_vectors");
                // Graph: nodes labelled by this tenant, and its own edge.
                let nodes = b.list_nodes(t, None, Limit::MAX).await.expect("list_nodes");
                assert_eq!(nodes.items.len(), 3, "{what}: list_nodes");
                assert!(
                    nodes.items.iter().all(|n| n.label.as_str() == name),
                    "{what}: node labels"
                );
                let edges = b
                    .edges_of(t, &[node("n")], Direction::Both, &RelFilter::any())
                    .await
                    .expect("edges_of");
                let dst = ["p", "q", "n", "p"][i];
                let expected: Vec<(String, String)> = if gone {
                    Vec::new()
                } else {
                    vec![("n".to_owned(), dst.to_owned())]
                };
                let got: Vec<(String, String)> = edges
                    .iter()
                    .map(|e| (e.src.as_str().to_owned(), e.dst.as_str().to_owned()))
                    .collect();
                assert_eq!(got, expected, "{what}: edges_of n");
                let reached: Vec<String> = neighbors(
                    b,
                    t,
                    &node("n"),
                    Direction::Out,
                    &RelFilter::any(),
                    depth(3),
                    Limit::MAX,
                )
                .await
                .expect("neighbors")
                .into_iter()
                .map(|n| n.id.into_string())
                .collect();
                let expected: Vec<String> = if gone || dst == "n" {
                    Vec::new()
                } else {
                    vec![dst.to_owned()]
                };
                assert_eq!(reached, expected, "{what}: neighbors of n");
            }
        }
    };
    check("before expiry", false).await;
    h.advance(100);
    check("after expiry", true).await;

    // Writes in one tenant leave the others alone.
    let (first, second) = (&tenants[0], &tenants[1]);
    let version = b
        .get(second, &key("k"))
        .await
        .expect("get")
        .expect("visible")
        .version;
    assert_eq!(
        b.put_if_absent(first, &key("k/short"), &value(json!(1)), None)
            .await
            .map_err(|e| e.kind())
            .map(|_| ()),
        Ok(()),
        "k/short expired in {first}"
    );
    assert_eq!(
        b.put_if_absent(second, &key("k/short"), &value(json!(1)), None)
            .await
            .map_err(|e| e.kind()),
        Err(ErrorKind::AlreadyExists),
        "k/short is visible in {second}"
    );
    assert!(b.delete(first, &key("k")).await.expect("delete"));
    assert!(
        b.drop_collection(first, &collection("c"))
            .await
            .expect("drop")
    );
    assert!(b.delete_node(first, &node("n")).await.expect("delete_node"));
    for t in &tenants[1..] {
        let what = t.as_str();
        assert!(
            b.get(t, &key("k")).await.expect("get").is_some(),
            "{what}: k"
        );
        assert_eq!(
            b.list_collections(t).await.expect("list").len(),
            1,
            "{what}: c"
        );
        assert!(
            b.get_node(t, &node("n")).await.expect("get_node").is_some(),
            "{what}: n"
        );
    }
    assert_eq!(
        b.get(second, &key("k"))
            .await
            .expect("get")
            .map(|e| e.version),
        Some(version),
        "{second}: k untouched"
    );
    let path = PathQuery {
        src: node("n"),
        dst: node("q"),
        direction: Direction::Out,
        rels: RelFilter::any(),
        max_depth: max_depth(6),
        weighted: false,
    };
    assert!(
        shortest_path(b, second, &path)
            .await
            .expect("path")
            .is_some(),
        "{second}: n -> q"
    );
    assert!(
        shortest_path(b, &tenants[3], &path)
            .await
            .expect("path")
            .is_none(),
        "{}: no n -> q",
        tenants[3]
    );
}
