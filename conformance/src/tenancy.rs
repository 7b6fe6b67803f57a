//! Tenancy (DESIGN.md, "Tenants, ids, time"): every operation is scoped to its tenant. Records
//! of one tenant are invisible from another to every read, scan, search, traversal and listing,
//! and writes in one tenant never touch another's records, even under the same names.

use serde_json::json;

use p8fs_core::kv::find_by_field;
use p8fs_core::traverse::{PathQuery, neighbors, shortest_path};
use p8fs_core::vector::{search, upsert};
use p8fs_core::{Direction, ErrorKind, Filter, JsonObject, Limit, Metric, RelFilter, Weight};

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
