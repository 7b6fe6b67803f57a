//! Graph (DESIGN.md, "Graph"): nodes and `(src, rel, dst)` edges, endpoints that must be
//! visible, cascading node deletes, `neighbors` ordered by hop count then id bytes, and
//! `shortest_path` with its tie-breaking (fewest hops or least weight, then fewer hops, then the
//! lexicographically smallest node sequence; between parallel edges the least weight, then the
//! smallest rel), and the batched `get_nodes` (visible nodes once each, ascending by id bytes,
//! at most `MAX_NODES_PER_GET` ids, within the tenant).

use serde_json::json;

use p8fs_core::graph::MAX_NODES_PER_GET;
use p8fs_core::traverse::{Path, PathQuery, neighbors, shortest_path};
use p8fs_core::{
    Direction, EdgeRecord, Error, ErrorKind, JsonObject, Limit, NodeId, NodeRecord, RelFilter,
    Resource, TenantId, Weight,
};

use crate::Harness;
use crate::support::{
    depth, fresh_tenant, label, limit, max_depth, node, object, rel, rels, ttl, weight,
};

const TOLERANCE: f64 = 1e-9;

/// One tenant's graph, with short helpers.
struct G<'a> {
    h: &'a Harness,
    tenant: TenantId,
}

impl<'a> G<'a> {
    /// The harness tenant.
    fn main(h: &'a Harness) -> Self {
        Self {
            h,
            tenant: h.tenant.clone(),
        }
    }

    /// A fresh tenant on the same backend, for one more independent graph.
    fn fresh(h: &'a Harness) -> Self {
        Self {
            h,
            tenant: fresh_tenant(),
        }
    }

    async fn nodes(&self, ids: &[&str]) {
        for id in ids {
            self.h
                .b()
                .put_node(
                    &self.tenant,
                    &node(id),
                    &label("n"),
                    &JsonObject::empty(),
                    None,
                )
                .await
                .expect("put_node succeeds");
        }
    }

    async fn edge(&self, src: &str, r: &str, dst: &str, w: f64) {
        self.h
            .b()
            .put_edge(
                &self.tenant,
                &node(src),
                &rel(r),
                &node(dst),
                weight(w),
                &JsonObject::empty(),
                None,
            )
            .await
            .expect("put_edge succeeds");
    }

    /// Edges with rel `r` and weight 1.
    async fn edges(&self, list: &[(&str, &str)]) {
        for (src, dst) in list {
            self.edge(src, "r", dst, 1.0).await;
        }
    }

    /// `get_nodes` of these ids.
    async fn get_nodes(&self, ids: &[&str]) -> Vec<NodeRecord> {
        let ids: Vec<NodeId> = ids.iter().map(|id| node(id)).collect();
        self.h
            .b()
            .get_nodes(&self.tenant, &ids)
            .await
            .expect("get_nodes succeeds")
    }

    /// The ids `get_nodes` returns for these ids, in the order returned.
    async fn got(&self, ids: &[&str]) -> Vec<String> {
        self.get_nodes(ids)
            .await
            .into_iter()
            .map(|n| n.id.into_string())
            .collect()
    }

    /// `get_node` of each id, keeping the visible ones.
    async fn each(&self, ids: &[&str]) -> Vec<NodeRecord> {
        let mut found = Vec::new();
        for id in ids {
            if let Some(n) = self
                .h
                .b()
                .get_node(&self.tenant, &node(id))
                .await
                .expect("get_node succeeds")
            {
                found.push(n);
            }
        }
        found
    }

    async fn get_edge(&self, src: &str, r: &str, dst: &str) -> Option<EdgeRecord> {
        self.h
            .b()
            .get_edge(&self.tenant, &node(src), &rel(r), &node(dst))
            .await
            .expect("get_edge succeeds")
    }

    async fn reach(
        &self,
        start: &str,
        direction: Direction,
        only: &[&str],
        hops: u64,
        most: u64,
    ) -> Vec<(String, u32)> {
        neighbors(
            self.h.b(),
            &self.tenant,
            &node(start),
            direction,
            &rels(only),
            depth(hops),
            limit(most),
        )
        .await
        .expect("neighbors succeeds")
        .into_iter()
        .map(|n| (n.id.into_string(), n.hops))
        .collect()
    }

    async fn path_with(
        &self,
        src: &str,
        dst: &str,
        direction: Direction,
        only: &[&str],
        max: u64,
        weighted: bool,
    ) -> Option<Path> {
        let query = PathQuery {
            src: node(src),
            dst: node(dst),
            direction,
            rels: rels(only),
            max_depth: max_depth(max),
            weighted,
        };
        let path = shortest_path(self.h.b(), &self.tenant, &query)
            .await
            .expect("shortest_path succeeds");
        if let Some(p) = &path {
            check_path_shape(p, &query);
        }
        path
    }

    /// The node ids of the shortest path, any relation, at most 12 hops.
    async fn path(
        &self,
        src: &str,
        dst: &str,
        direction: Direction,
        weighted: bool,
    ) -> Option<Vec<String>> {
        self.path_with(src, dst, direction, &[], 12, weighted)
            .await
            .map(|p| ids(&p))
    }
}

/// A path starts and ends where asked, and each edge joins consecutive nodes in the direction
/// the query allows.
fn check_path_shape(p: &Path, query: &PathQuery) {
    assert_eq!(p.nodes.first(), Some(&query.src), "a path starts at src");
    assert_eq!(p.nodes.last(), Some(&query.dst), "a path ends at dst");
    assert_eq!(p.edges.len() + 1, p.nodes.len(), "one edge per step");
    assert!(
        p.edges.len() <= query.max_depth.get(),
        "a path respects max_depth"
    );
    for (i, e) in p.edges.iter().enumerate() {
        let (from, to) = (&p.nodes[i], &p.nodes[i + 1]);
        let forward = e.src == *from && e.dst == *to;
        let backward = e.dst == *from && e.src == *to;
        let ok = match query.direction {
            Direction::Out => forward,
            Direction::In => backward,
            Direction::Both => forward || backward,
        };
        assert!(
            ok,
            "edge {i} ({} -{}-> {}) joins {from} and {to} in direction {:?}",
            e.src, e.rel, e.dst, query.direction
        );
        assert!(query.rels.accepts(&e.rel), "edge {i} passes the rel filter");
    }
    let expected_total = if query.weighted {
        p.edges.iter().map(|e| e.weight).sum()
    } else {
        p.edges.len() as f64
    };
    assert!(
        (p.total - expected_total).abs() <= TOLERANCE,
        "total {} should be {expected_total}",
        p.total
    );
}

fn ids(p: &Path) -> Vec<String> {
    p.nodes.iter().map(|n| n.as_str().to_owned()).collect()
}

fn triples(p: &Path) -> Vec<(String, String, String)> {
    p.edges
        .iter()
        .map(|e| {
            (
                e.src.as_str().to_owned(),
                e.rel.as_str().to_owned(),
                e.dst.as_str().to_owned(),
            )
        })
        .collect()
}

fn seq(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

fn hops(list: &[(&str, u32)]) -> Vec<(String, u32)> {
    list.iter().map(|(id, n)| ((*id).to_owned(), *n)).collect()
}

fn triple(src: &str, r: &str, dst: &str) -> (String, String, String) {
    (src.to_owned(), r.to_owned(), dst.to_owned())
}

pub async fn nodes_and_edges_round_trip(h: &Harness) {
    let (b, t) = (h.b(), &h.tenant);
    b.put_node(
        t,
        &node("ann"),
        &label("person"),
        &object(json!({"name": "Ann", "age": 40})),
        None,
    )
    .await
    .expect("put_node");
    let ann = b
        .get_node(t, &node("ann"))
        .await
        .expect("get_node")
        .expect("visible");
    assert_eq!(ann.id, node("ann"));
    assert_eq!(ann.label, label("person"));
    assert_eq!(
        ann.properties,
        *object(json!({"name": "Ann", "age": 40})).get()
    );
    assert_eq!(ann.expires_at, None);

    b.put_node(
        t,
        &node("ann"),
        &label("robot"),
        &object(json!({"model": 7})),
        None,
    )
    .await
    .expect("put_node again");
    let ann = b
        .get_node(t, &node("ann"))
        .await
        .expect("get_node")
        .expect("visible");
    assert_eq!(
        (ann.label, ann.properties),
        (label("robot"), object(json!({"model": 7})).into_inner()),
        "put_node upserts"
    );
    assert_eq!(
        b.get_node(t, &node("bob")).await.expect("get_node"),
        None,
        "a node never written is absent"
    );
    b.put_node(
        t,
        &node("bob"),
        &label("person"),
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("put_node");

    let knows = rel("knows");
    b.put_edge(
        t,
        &node("ann"),
        &knows,
        &node("bob"),
        weight(2.5),
        &object(json!({"since": 2020})),
        None,
    )
    .await
    .expect("put_edge");
    let e = b
        .get_edge(t, &node("ann"), &knows, &node("bob"))
        .await
        .expect("get_edge")
        .expect("visible");
    assert_eq!(
        (e.src, e.rel, e.dst),
        (node("ann"), knows.clone(), node("bob"))
    );
    assert_eq!(e.weight, 2.5);
    assert_eq!(e.properties, *object(json!({"since": 2020})).get());
    assert_eq!(e.expires_at, None);

    b.put_edge(
        t,
        &node("ann"),
        &knows,
        &node("bob"),
        Weight::ONE,
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("put_edge again");
    let e = b
        .get_edge(t, &node("ann"), &knows, &node("bob"))
        .await
        .expect("get_edge")
        .expect("visible");
    assert_eq!(
        (e.weight, e.properties.is_empty()),
        (1.0, true),
        "(src, rel, dst) is unique: put_edge upserts"
    );

    b.put_edge(
        t,
        &node("ann"),
        &rel("likes"),
        &node("bob"),
        weight(0.5),
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("another rel");
    b.put_edge(
        t,
        &node("bob"),
        &knows,
        &node("ann"),
        weight(3.0),
        &JsonObject::empty(),
        None,
    )
    .await
    .expect("the other direction");
    let g = G::main(h);
    assert_eq!(
        g.get_edge("ann", "likes", "bob")
            .await
            .expect("visible")
            .weight,
        0.5,
        "another rel is another edge"
    );
    assert_eq!(
        g.get_edge("bob", "knows", "ann")
            .await
            .expect("visible")
            .weight,
        3.0,
        "edges are directed"
    );
    assert_eq!(
        g.get_edge("ann", "knows", "bob")
            .await
            .expect("visible")
            .weight,
        1.0,
        "the other edges left it alone"
    );
    assert_eq!(
        g.get_edge("ann", "Knows", "bob").await,
        None,
        "rels are case-sensitive"
    );

    assert!(
        b.delete_edge(t, &node("ann"), &knows, &node("bob"))
            .await
            .expect("delete_edge"),
        "it existed"
    );
    assert_eq!(
        g.get_edge("ann", "knows", "bob").await,
        None,
        "the edge is gone"
    );
    assert!(
        !b.delete_edge(t, &node("ann"), &knows, &node("bob"))
            .await
            .expect("delete_edge"),
        "already gone"
    );
    assert!(
        g.get_edge("ann", "likes", "bob").await.is_some(),
        "delete_edge touches one edge"
    );
    assert!(
        g.get_edge("bob", "knows", "ann").await.is_some(),
        "delete_edge touches one edge"
    );
    assert!(
        b.get_node(t, &node("ann"))
            .await
            .expect("get_node")
            .is_some(),
        "delete_edge keeps the nodes"
    );
}

pub async fn edge_needs_visible_endpoints(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a"]).await;
    let put = |src: &'static str, dst: &'static str| async move {
        h.b()
            .put_edge(
                &h.tenant,
                &node(src),
                &rel("r"),
                &node(dst),
                Weight::ONE,
                &JsonObject::empty(),
                None,
            )
            .await
            .expect_err("an edge needs both endpoints")
    };
    for (src, dst) in [("a", "ghost"), ("ghost", "a")] {
        match put(src, dst).await {
            Error::NotFound { resource, id } => {
                assert_eq!(resource, Resource::Node, "the error is about a node");
                assert_eq!(id, "ghost", "the error names the missing node");
            }
            other => panic!("put_edge {src} -> {dst}: expected NotFound, got {other}"),
        }
    }
    assert_eq!(
        put("ghost", "phantom").await.kind(),
        ErrorKind::NotFound,
        "both endpoints missing"
    );

    assert_eq!(
        h.b()
            .get_node(&h.tenant, &node("ghost"))
            .await
            .expect("get_node"),
        None,
        "put_edge creates no node"
    );
    let nodes = h
        .b()
        .list_nodes(&h.tenant, None, Limit::MAX)
        .await
        .expect("list_nodes")
        .items;
    assert_eq!(nodes.len(), 1, "only a exists");
    g.nodes(&["ghost"]).await;
    assert_eq!(
        g.get_edge("a", "r", "ghost").await,
        None,
        "the failed put_edge left no edge behind"
    );
    assert_eq!(
        g.get_edge("ghost", "r", "a").await,
        None,
        "the failed put_edge left no edge behind"
    );
    assert!(
        g.reach("a", Direction::Both, &[], 1, 10).await.is_empty(),
        "no edge to traverse"
    );
}

pub async fn delete_node_deletes_edges(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c"]).await;
    g.edges(&[("a", "b"), ("c", "a"), ("b", "c"), ("a", "a")])
        .await;
    assert!(
        h.b()
            .delete_node(&h.tenant, &node("a"))
            .await
            .expect("delete_node"),
        "a existed"
    );
    assert_eq!(
        h.b()
            .get_node(&h.tenant, &node("a"))
            .await
            .expect("get_node"),
        None
    );
    assert_eq!(
        g.get_edge("a", "r", "b").await,
        None,
        "an outgoing edge went with the node"
    );
    assert_eq!(
        g.get_edge("c", "r", "a").await,
        None,
        "an incoming edge went with the node"
    );
    assert_eq!(
        g.get_edge("a", "r", "a").await,
        None,
        "a self-loop went with the node"
    );
    assert!(
        g.get_edge("b", "r", "c").await.is_some(),
        "edges not touching the node stay"
    );
    assert_eq!(
        g.reach("b", Direction::Both, &[], 6, 10).await,
        hops(&[("c", 1)])
    );
    assert!(
        !h.b()
            .delete_node(&h.tenant, &node("a"))
            .await
            .expect("delete_node"),
        "a no longer exists"
    );

    g.nodes(&["a"]).await;
    assert_eq!(
        g.get_edge("a", "r", "b").await,
        None,
        "re-creating the node does not bring its edges back"
    );
    assert_eq!(
        g.get_edge("c", "r", "a").await,
        None,
        "re-creating the node does not bring its edges back"
    );
    assert!(g.reach("a", Direction::Both, &[], 6, 10).await.is_empty());
}

pub async fn neighbors_by_hops_then_id(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["s", "c", "a", "B", "é", "z", "d", "中", "y"])
        .await;
    g.edges(&[
        ("s", "c"),
        ("s", "a"),
        ("s", "é"),
        ("s", "B"),
        ("a", "z"),
        ("a", "d"),
        ("a", "c"),
        ("B", "d"),
        ("c", "s"),
        ("é", "中"),
        ("z", "y"),
    ])
    .await;
    assert_eq!(
        g.reach("s", Direction::Out, &[], 1, 100).await,
        hops(&[("B", 1), ("a", 1), ("c", 1), ("é", 1)]),
        "one hop: ids ascending by raw bytes"
    );
    assert_eq!(
        g.reach("s", Direction::Out, &[], 2, 100).await,
        hops(&[
            ("B", 1),
            ("a", 1),
            ("c", 1),
            ("é", 1),
            ("d", 2),
            ("z", 2),
            ("中", 2)
        ]),
        "by hop count, then id; d (reached twice) once; c stays at hop 1; s itself excluded"
    );
    assert_eq!(
        g.reach("s", Direction::Out, &[], 6, 100).await,
        hops(&[
            ("B", 1),
            ("a", 1),
            ("c", 1),
            ("é", 1),
            ("d", 2),
            ("z", 2),
            ("中", 2),
            ("y", 3)
        ]),
        "depth 6 reaches everything"
    );
}

pub async fn neighbors_directions_and_rel_filter(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c", "d", "e"]).await;
    g.edge("a", "knows", "b", 1.0).await;
    g.edge("c", "knows", "a", 1.0).await;
    g.edge("a", "likes", "d", 1.0).await;
    g.edge("d", "knows", "e", 1.0).await;

    assert_eq!(
        g.reach("a", Direction::Out, &[], 1, 10).await,
        hops(&[("b", 1), ("d", 1)]),
        "out"
    );
    assert_eq!(
        g.reach("a", Direction::In, &[], 1, 10).await,
        hops(&[("c", 1)]),
        "in"
    );
    assert_eq!(
        g.reach("a", Direction::Both, &[], 1, 10).await,
        hops(&[("b", 1), ("c", 1), ("d", 1)]),
        "both"
    );
    assert_eq!(
        g.reach("a", Direction::Both, &[], 2, 10).await,
        hops(&[("b", 1), ("c", 1), ("d", 1), ("e", 2)])
    );
    assert_eq!(
        g.reach("a", Direction::Out, &["knows"], 1, 10).await,
        hops(&[("b", 1)]),
        "rel filter"
    );
    assert_eq!(
        g.reach("a", Direction::Both, &["knows"], 2, 10).await,
        hops(&[("b", 1), ("c", 1)]),
        "rel filter, both ways"
    );
    assert_eq!(
        g.reach("a", Direction::Out, &["likes"], 2, 10).await,
        hops(&[("d", 1)]),
        "d -knows-> e is filtered out"
    );
    assert_eq!(
        g.reach("a", Direction::Out, &["likes", "knows"], 2, 10)
            .await,
        hops(&[("b", 1), ("d", 1), ("e", 2)]),
        "several rels"
    );
    assert_eq!(
        g.reach("a", Direction::Out, &["knows", "knows"], 1, 10)
            .await,
        hops(&[("b", 1)]),
        "repeated rels"
    );
    assert!(
        g.reach("a", Direction::Out, &["hates"], 3, 10)
            .await
            .is_empty(),
        "an unknown rel matches nothing"
    );
    assert!(
        g.reach("a", Direction::Out, &["Knows"], 3, 10)
            .await
            .is_empty(),
        "rels are case-sensitive"
    );
    assert_eq!(
        g.reach("e", Direction::In, &[], 3, 10).await,
        hops(&[("d", 1), ("a", 2), ("c", 3)]),
        "in, several hops"
    );
    assert!(
        g.reach("e", Direction::Out, &[], 3, 10).await.is_empty(),
        "nothing leaves e"
    );
}

pub async fn neighbors_limit_and_depth(h: &Harness) {
    let g = G::main(h);
    let chain = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];
    g.nodes(&chain).await;
    for pair in chain.windows(2) {
        g.edges(&[(pair[0], pair[1])]).await;
    }
    let along =
        |n: usize| -> Vec<(String, u32)> { (1..=n).map(|i| (format!("n{i}"), i as u32)).collect() };
    assert_eq!(
        g.reach("n0", Direction::Out, &[], 1, 100).await,
        along(1),
        "depth 1"
    );
    assert_eq!(
        g.reach("n0", Direction::Out, &[], 6, 100).await,
        along(6),
        "depth 6 stops before n7"
    );
    assert_eq!(
        g.reach("n0", Direction::Out, &[], 6, 3).await,
        along(3),
        "limit 3"
    );

    g.nodes(&["s", "x1", "x2", "x3", "x4", "x5", "y"]).await;
    g.edges(&[
        ("s", "x5"),
        ("s", "x3"),
        ("s", "x1"),
        ("s", "x4"),
        ("s", "x2"),
        ("x1", "y"),
    ])
    .await;
    assert_eq!(
        g.reach("s", Direction::Out, &[], 2, 2).await,
        hops(&[("x1", 1), ("x2", 1)]),
        "a limit inside a layer keeps the smallest ids"
    );
    assert_eq!(
        g.reach("s", Direction::Out, &[], 2, 5).await,
        hops(&[("x1", 1), ("x2", 1), ("x3", 1), ("x4", 1), ("x5", 1)]),
        "a limit at a layer's end"
    );
    assert_eq!(
        g.reach("s", Direction::Out, &[], 2, 6).await,
        hops(&[
            ("x1", 1),
            ("x2", 1),
            ("x3", 1),
            ("x4", 1),
            ("x5", 1),
            ("y", 2)
        ]),
        "a limit past a layer's end"
    );

    let err = neighbors(
        h.b(),
        &h.tenant,
        &node("missing"),
        Direction::Out,
        &RelFilter::any(),
        depth(1),
        limit(10),
    )
    .await
    .expect_err("a missing start node");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    for bad in [0, 7] {
        let err = p8fs_core::Depth::neighbors(bad).expect_err("depth out of range");
        assert_eq!(err.field(), Some("depth"), "depth {bad}");
    }
    assert!(p8fs_core::Depth::neighbors(6).is_ok());
}

pub async fn shortest_path_fewest_hops(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c", "d", "x"]).await;
    g.edge("a", "r", "b", 1.0).await;
    g.edge("b", "r", "c", 1.0).await;
    g.edge("c", "r", "d", 1.0).await;
    g.edge("a", "r", "x", 50.0).await;
    g.edge("x", "r", "d", 50.0).await;
    let p = g
        .path_with("a", "d", Direction::Out, &[], 12, false)
        .await
        .expect("a path exists");
    assert_eq!(
        ids(&p),
        ["a", "x", "d"],
        "unweighted: fewest hops, whatever the weights"
    );
    assert_eq!(
        triples(&p),
        [triple("a", "r", "x"), triple("x", "r", "d")],
        "the edges taken"
    );
    assert_eq!(
        p.total, 2.0,
        "the total of an unweighted path is its hop count"
    );
    assert_eq!(p.edges[0].weight, 50.0, "path edges are full records");
    assert_eq!(
        g.path("a", "b", Direction::Out, false).await,
        seq(&["a", "b"]),
        "one hop"
    );
}

pub async fn shortest_path_tie_smallest_sequence(h: &Harness) {
    // Two hops, three ways.
    let g = G::main(h);
    g.nodes(&["s", "a", "b", "c", "t"]).await;
    g.edges(&[
        ("s", "c"),
        ("c", "t"),
        ("s", "b"),
        ("b", "t"),
        ("s", "a"),
        ("a", "t"),
    ])
    .await;
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        seq(&["s", "a", "t"])
    );
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        seq(&["s", "a", "t"]),
        "weighted ties too"
    );

    // Raw bytes: "Z" < "a" and "z" < "é".
    let g = G::fresh(h);
    g.nodes(&["s", "a", "Z", "t", "u", "é", "z"]).await;
    g.edges(&[
        ("s", "a"),
        ("a", "t"),
        ("s", "Z"),
        ("Z", "t"),
        ("t", "é"),
        ("é", "u"),
        ("t", "z"),
        ("z", "u"),
    ])
    .await;
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        seq(&["s", "Z", "t"]),
        "\"Z\" < \"a\" by bytes"
    );
    assert_eq!(
        g.path("t", "u", Direction::Out, false).await,
        seq(&["t", "z", "u"]),
        "\"z\" < \"é\" by bytes"
    );
    assert_eq!(
        g.path("s", "u", Direction::Out, true).await,
        seq(&["s", "Z", "t", "z", "u"])
    );

    // The first differing position decides, even when later ids are larger.
    let g = G::fresh(h);
    g.nodes(&["s", "a", "b", "m", "x", "y", "t"]).await;
    g.edges(&[
        ("s", "b"),
        ("b", "m"),
        ("m", "t"),
        ("s", "a"),
        ("a", "y"),
        ("y", "t"),
        ("b", "x"),
        ("x", "t"),
    ])
    .await;
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        seq(&["s", "a", "y", "t"])
    );
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        seq(&["s", "a", "y", "t"])
    );

    // Five hops, with branches that cross; plus a longer path of smaller ids that must lose.
    let g = G::fresh(h);
    g.nodes(&[
        "s", "a1", "a2", "b1", "b2", "c0", "c1", "d0", "d1", "t", "0", "1", "2", "3", "4",
    ])
    .await;
    g.edges(&[
        ("s", "a2"),
        ("s", "a1"),
        ("a1", "b2"),
        ("a2", "b1"),
        ("b2", "c1"),
        ("b2", "c0"),
        ("b1", "c0"),
        ("c0", "d1"),
        ("c0", "d0"),
        ("c1", "d0"),
        ("d1", "t"),
        ("d0", "t"),
        ("s", "0"),
        ("0", "1"),
        ("1", "2"),
        ("2", "3"),
        ("3", "4"),
        ("4", "t"),
    ])
    .await;
    let forward = seq(&["s", "a1", "b2", "c0", "d0", "t"]);
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        forward,
        "the smallest of five 5-hop paths"
    );
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        forward,
        "weighted, all weights 1"
    );
    assert_eq!(
        g.path("t", "s", Direction::In, false).await,
        seq(&["t", "d0", "c0", "b1", "a2", "s"]),
        "the sequence is compared from src, so walking backwards picks another path"
    );
    assert_eq!(
        g.path("t", "s", Direction::In, true).await,
        seq(&["t", "d0", "c0", "b1", "a2", "s"])
    );
    assert_eq!(
        g.path("t", "s", Direction::Out, false).await,
        None,
        "no path against the edges"
    );

    // Direction::Both may walk an edge backwards to reach a smaller sequence.
    let g = G::fresh(h);
    g.nodes(&["s", "x", "y", "t"]).await;
    g.edges(&[("s", "y"), ("y", "t"), ("x", "s"), ("x", "t")])
        .await;
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        seq(&["s", "y", "t"])
    );
    assert_eq!(
        g.path("s", "t", Direction::Both, false).await,
        seq(&["s", "x", "t"]),
        "both directions"
    );
    assert_eq!(
        g.path("s", "t", Direction::Both, true).await,
        seq(&["s", "x", "t"]),
        "both directions, weighted"
    );
}

pub async fn shortest_path_weighted(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c", "d"]).await;
    g.edge("a", "r", "b", 1.0).await;
    g.edge("b", "r", "d", 1.0).await;
    g.edge("a", "r", "d", 5.0).await;
    g.edge("a", "r", "c", 0.5).await;
    g.edge("c", "r", "d", 2.0).await;

    let p = g
        .path_with("a", "d", Direction::Out, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(ids(&p), ["a", "b", "d"], "weighted: least total weight");
    assert!(
        (p.total - 2.0).abs() <= TOLERANCE,
        "total weight is 2, got {}",
        p.total
    );
    assert_eq!(
        g.path("a", "d", Direction::Out, false).await,
        seq(&["a", "d"]),
        "unweighted: fewest hops"
    );
    assert_eq!(
        g.path("d", "a", Direction::In, true).await,
        seq(&["d", "b", "a"]),
        "weighted, walking edges backwards"
    );

    // A rel filter can force the heavier route.
    g.edge("a", "fast", "d", 0.25).await;
    let p = g
        .path_with("a", "d", Direction::Out, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("a", "fast", "d")],
        "the new light edge wins"
    );
    assert!((p.total - 0.25).abs() <= TOLERANCE);
    let p = g
        .path_with("a", "d", Direction::Out, &["r"], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        ids(&p),
        ["a", "b", "d"],
        "the rel filter excludes the light edge"
    );

    // Many light steps beat one heavy one.
    let g = G::fresh(h);
    g.nodes(&["s", "p1", "p2", "p3", "t"]).await;
    g.edge("s", "r", "t", 3.0).await;
    g.edge("s", "r", "p1", 0.5).await;
    g.edge("p1", "r", "p2", 0.5).await;
    g.edge("p2", "r", "p3", 0.5).await;
    g.edge("p3", "r", "t", 0.5).await;
    let p = g
        .path_with("s", "t", Direction::Out, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(ids(&p), ["s", "p1", "p2", "p3", "t"]);
    assert!(
        (p.total - 2.0).abs() <= TOLERANCE,
        "total weight is 2, got {}",
        p.total
    );
}

pub async fn shortest_path_weighted_ties(h: &Harness) {
    // Equal weight: fewer hops wins, even against a smaller sequence.
    let g = G::main(h);
    g.nodes(&["s", "a", "t"]).await;
    g.edge("s", "r", "t", 2.0).await;
    g.edge("s", "r", "a", 1.0).await;
    g.edge("a", "r", "t", 1.0).await;
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        seq(&["s", "t"]),
        "a tie on weight goes to fewer hops"
    );

    // Equal weight and hops: the smallest sequence, even though its prefix is heavier.
    let g = G::fresh(h);
    g.nodes(&["s", "a", "b", "t"]).await;
    g.edge("s", "r", "b", 0.5).await;
    g.edge("b", "r", "t", 1.5).await;
    g.edge("s", "r", "a", 1.5).await;
    g.edge("a", "r", "t", 0.5).await;
    let p = g
        .path_with("s", "t", Direction::Out, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        ids(&p),
        ["s", "a", "t"],
        "a tie on weight and hops goes to the smallest sequence"
    );
    assert!((p.total - 2.0).abs() <= TOLERANCE);

    // Weight comes first: a lighter path with more hops beats a heavier one with fewer.
    let g = G::fresh(h);
    g.nodes(&["s", "a", "b", "t"]).await;
    g.edge("s", "r", "t", 3.0).await;
    g.edge("s", "r", "a", 1.0).await;
    g.edge("a", "r", "b", 1.0).await;
    g.edge("b", "r", "t", 0.5).await;
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        seq(&["s", "a", "b", "t"]),
        "least weight first"
    );

    // Ties through a shared middle node: the smallest sequence up to it is kept.
    let g = G::fresh(h);
    g.nodes(&["s", "p", "q", "m", "x", "y", "t"]).await;
    for (src, dst, w) in [
        ("s", "q", 1.0),
        ("s", "p", 1.0),
        ("q", "m", 1.0),
        ("p", "m", 1.0),
        ("m", "y", 1.0),
        ("m", "x", 1.0),
        ("x", "t", 1.0),
        ("y", "t", 1.0),
    ] {
        g.edge(src, "r", dst, w).await;
    }
    assert_eq!(
        g.path("s", "t", Direction::Out, true).await,
        seq(&["s", "p", "m", "x", "t"])
    );
    assert_eq!(
        g.path("s", "t", Direction::Out, false).await,
        seq(&["s", "p", "m", "x", "t"])
    );
}

pub async fn shortest_path_respects_max_depth(h: &Harness) {
    let g = G::main(h);
    let chain: Vec<String> = (0..13).map(|i| format!("c{i:02}")).collect();
    let chain: Vec<&str> = chain.iter().map(String::as_str).collect();
    g.nodes(&chain).await;
    for pair in chain.windows(2) {
        g.edges(&[(pair[0], pair[1])]).await;
    }
    for weighted in [false, true] {
        let five = g
            .path_with("c00", "c05", Direction::Out, &[], 5, weighted)
            .await;
        assert_eq!(
            five.map(|p| p.nodes.len()),
            Some(6),
            "a 5-hop path fits max_depth 5 (weighted: {weighted})"
        );
        let four = g
            .path_with("c00", "c05", Direction::Out, &[], 4, weighted)
            .await;
        assert!(
            four.is_none(),
            "a 5-hop path does not fit max_depth 4 (weighted: {weighted})"
        );
        let twelve = g
            .path_with("c00", "c12", Direction::Out, &[], 12, weighted)
            .await;
        assert_eq!(
            twelve.map(|p| p.nodes.len()),
            Some(13),
            "a 12-hop path fits max_depth 12 (weighted: {weighted})"
        );
        let eleven = g
            .path_with("c00", "c12", Direction::Out, &[], 11, weighted)
            .await;
        assert!(
            eleven.is_none(),
            "a 12-hop path does not fit max_depth 11 (weighted: {weighted})"
        );
    }

    // Weighted: the lightest path within max_depth, even if a lighter one is longer.
    let g = G::fresh(h);
    g.nodes(&["s", "a", "b", "c", "t"]).await;
    g.edge("s", "r", "t", 10.0).await;
    g.edge("s", "r", "a", 1.0).await;
    g.edge("a", "r", "b", 1.0).await;
    g.edge("b", "r", "c", 1.0).await;
    g.edge("c", "r", "t", 1.0).await;
    let p = g
        .path_with("s", "t", Direction::Out, &[], 4, true)
        .await
        .expect("a path");
    assert_eq!(ids(&p), ["s", "a", "b", "c", "t"]);
    let p = g
        .path_with("s", "t", Direction::Out, &[], 3, true)
        .await
        .expect("a path");
    assert_eq!(
        ids(&p),
        ["s", "t"],
        "the light 4-hop path is out of reach at max_depth 3"
    );
    assert!((p.total - 10.0).abs() <= TOLERANCE);

    for bad in [0, 13] {
        let err = p8fs_core::Depth::path(bad).expect_err("max_depth out of range");
        assert_eq!(err.field(), Some("max_depth"), "max_depth {bad}");
    }
}

pub async fn shortest_path_none_and_same_node(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c"]).await;
    g.edges(&[("a", "b")]).await;
    for weighted in [false, true] {
        assert_eq!(
            g.path("a", "c", Direction::Both, weighted).await,
            None,
            "c is unreachable"
        );
        assert_eq!(
            g.path("b", "a", Direction::Out, weighted).await,
            None,
            "no path against the edge"
        );
        assert_eq!(
            g.path("b", "a", Direction::In, weighted).await,
            seq(&["b", "a"]),
            "In walks edges backwards"
        );
        assert_eq!(
            g.path("b", "a", Direction::Both, weighted).await,
            seq(&["b", "a"])
        );
        let same = g
            .path_with("a", "a", Direction::Out, &[], 12, weighted)
            .await
            .expect("a node reaches itself");
        assert_eq!(ids(&same), ["a"]);
        assert!(same.edges.is_empty());
        assert_eq!(same.total, 0.0, "the empty path has total 0");
        let same = g
            .path_with("c", "c", Direction::Out, &[], 1, weighted)
            .await
            .expect("even an isolated node");
        assert_eq!(ids(&same), ["c"]);

        for (src, dst) in [("a", "missing"), ("missing", "a"), ("missing", "missing")] {
            let query = PathQuery {
                src: node(src),
                dst: node(dst),
                direction: Direction::Out,
                rels: RelFilter::any(),
                max_depth: max_depth(12),
                weighted,
            };
            let err = shortest_path(h.b(), &h.tenant, &query)
                .await
                .expect_err("a missing endpoint");
            assert_eq!(err.kind(), ErrorKind::NotFound, "{src} -> {dst}");
        }
    }
}

pub async fn shortest_path_parallel_edges(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c"]).await;
    g.edge("a", "r2", "b", 1.0).await;
    g.edge("a", "r1", "b", 1.0).await;
    g.edge("a", "r0", "b", 3.0).await;
    g.edge("b", "x", "c", 1.0).await;

    let p = g
        .path_with("a", "c", Direction::Out, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("a", "r1", "b"), triple("b", "x", "c")],
        "weighted: least weight, then smallest rel"
    );
    assert!((p.total - 2.0).abs() <= TOLERANCE);
    let p = g
        .path_with("a", "c", Direction::Out, &[], 12, false)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("a", "r0", "b"), triple("b", "x", "c")],
        "unweighted: smallest rel"
    );
    let p = g
        .path_with("a", "c", Direction::Out, &["r2", "x"], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("a", "r2", "b"), triple("b", "x", "c")],
        "the rel filter applies to parallel edges"
    );

    // Opposite edges between the same nodes, walked in both directions.
    let g = G::fresh(h);
    g.nodes(&["u", "v"]).await;
    g.edge("u", "r", "v", 1.0).await;
    g.edge("v", "r", "u", 1.0).await;
    let p = g
        .path_with("u", "v", Direction::Both, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("u", "r", "v")],
        "equal weight and rel: smallest src"
    );
    g.edge("v", "r", "u", 0.5).await;
    let p = g
        .path_with("u", "v", Direction::Both, &[], 12, true)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("v", "r", "u")],
        "weighted: the lighter edge, walked backwards"
    );
    assert!((p.total - 0.5).abs() <= TOLERANCE);
    let p = g
        .path_with("u", "v", Direction::Both, &[], 12, false)
        .await
        .expect("a path");
    assert_eq!(
        triples(&p),
        [triple("u", "r", "v")],
        "unweighted ignores weight: smallest src"
    );
}

pub async fn list_nodes_pages(h: &Harness) {
    let g = G::main(h);
    let expected = ["A", "Z", "a", "a0", "b", "é", "中", "🔑"];
    let mut shuffled = expected.to_vec();
    shuffled.reverse();
    g.nodes(&shuffled).await;
    for size in [1_usize, 3, 4, 7, 8, 9] {
        let mut pages: Vec<Vec<String>> = Vec::new();
        let mut after = None;
        loop {
            let page = h
                .b()
                .list_nodes(&h.tenant, after.as_ref(), limit(size as u64))
                .await
                .expect("list_nodes");
            pages.push(
                page.items
                    .iter()
                    .map(|n| n.id.as_str().to_owned())
                    .collect(),
            );
            match page.next {
                Some(cursor) => {
                    assert_eq!(
                        Some(&cursor),
                        page.items.last().map(|n| &n.id),
                        "the cursor is the last id"
                    );
                    after = Some(cursor);
                }
                None => break,
            }
            assert!(pages.len() <= 20, "listing does not terminate");
        }
        let want: Vec<Vec<String>> = expected
            .chunks(size)
            .map(|chunk| chunk.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        assert_eq!(
            pages, want,
            "pages of {size}: ids ascending by raw bytes, a cursor exactly when more follow"
        );
    }
    let rest = h
        .b()
        .list_nodes(&h.tenant, Some(&node("a1")), limit(2))
        .await
        .expect("list_nodes");
    let rest_ids: Vec<&str> = rest.items.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(rest_ids, ["b", "é"], "start_after need not exist");
    assert_eq!(rest.next, Some(node("é")));
}

pub async fn edges_of_lists_each_edge_once(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["a", "b", "c", "d"]).await;
    h.b()
        .put_node(
            &h.tenant,
            &node("e"),
            &label("n"),
            &JsonObject::empty(),
            crate::support::ttl(100),
        )
        .await
        .expect("put_node");
    g.edge("a", "r", "b", 1.0).await;
    g.edge("b", "r", "c", 1.0).await;
    g.edge("c", "s", "a", 1.0).await;
    g.edge("a", "s", "a", 1.0).await;
    g.edge("a", "r", "e", 1.0).await;
    let of = |ids: &'static [&'static str], direction: Direction, only: &'static [&'static str]| async move {
        let nodes: Vec<_> = ids.iter().map(|id| node(id)).collect();
        let mut found: Vec<(String, String, String)> = h
            .b()
            .edges_of(&h.tenant, &nodes, direction, &rels(only))
            .await
            .expect("edges_of succeeds")
            .into_iter()
            .map(|e| {
                (
                    e.src.into_string(),
                    e.rel.into_string(),
                    e.dst.into_string(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let (ab, bc, ca, aa, ae) = (
        triple("a", "r", "b"),
        triple("b", "r", "c"),
        triple("c", "s", "a"),
        triple("a", "s", "a"),
        triple("a", "r", "e"),
    );
    assert_eq!(
        of(&["a", "b"], Direction::Out, &[]).await,
        [ab.clone(), ae.clone(), aa.clone(), bc.clone()]
    );
    assert_eq!(
        of(&["a", "b"], Direction::In, &[]).await,
        [ab.clone(), aa.clone(), ca.clone()]
    );
    assert_eq!(
        of(&["a", "b"], Direction::Both, &[]).await,
        [ab.clone(), ae.clone(), aa.clone(), bc.clone(), ca.clone()],
        "an edge touching two of the nodes (or a self-loop) appears once"
    );
    assert_eq!(
        of(&["a"], Direction::Out, &["s"]).await,
        vec![aa.clone()],
        "the rel filter applies"
    );
    assert!(
        of(&[], Direction::Both, &[]).await.is_empty(),
        "no nodes, no edges"
    );
    assert!(
        of(&["d"], Direction::Both, &[]).await.is_empty(),
        "an isolated node"
    );
    assert_eq!(
        of(&["b", "missing"], Direction::Out, &[]).await,
        vec![bc.clone()],
        "a missing node adds nothing"
    );

    h.advance(100);
    assert_eq!(
        of(&["a"], Direction::Out, &[]).await,
        [ab, aa],
        "an edge into an expired node is not listed"
    );
}

pub async fn get_nodes_returns_visible_nodes_once_by_id(h: &Harness) {
    let g = G::main(h);
    let b = h.b();
    // Written out of order, with distinct labels and properties, one with a ttl still running.
    for (id, props) in [
        ("🔑", json!({"k": 1})),
        ("b", json!({"k": [1, 2]})),
        ("é", json!({"k": "e"})),
        ("A", json!({})),
        ("a0", json!({"k": null})),
        ("a", json!({"k": {"deep": true}})),
    ] {
        b.put_node(
            &h.tenant,
            &node(id),
            &label(&format!("l{id}")),
            &object(props),
            None,
        )
        .await
        .expect("put_node");
    }
    b.put_node(
        &h.tenant,
        &node("soon"),
        &label("n"),
        &object(json!({"t": 1})),
        ttl(100),
    )
    .await
    .expect("put_node with ttl");
    b.put_node(
        &h.tenant,
        &node("brief"),
        &label("n"),
        &JsonObject::empty(),
        ttl(10),
    )
    .await
    .expect("put_node with ttl");
    g.nodes(&["gone"]).await;
    assert!(
        b.delete_node(&h.tenant, &node("gone"))
            .await
            .expect("delete_node"),
        "the node existed"
    );
    h.advance(10);

    let asked = [
        "soon", "b", "missing", "🔑", "brief", "a", "gone", "é", "A", "a0", "b", "a",
    ];
    let got = g.get_nodes(&asked).await;
    let ids: Vec<&str> = got.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        ["A", "a", "a0", "b", "soon", "é", "🔑"],
        "the visible nodes, each once, ascending by raw bytes; absent, deleted and expired ids \
         are left out"
    );
    let mut sorted = asked.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        got,
        g.each(&sorted).await,
        "each record is what get_node returns (label, properties, expiry)"
    );
    assert!(
        got.iter()
            .any(|n| n.id.as_str() == "soon" && n.expires_at.is_some()),
        "a node with a ttl carries its expiry"
    );

    assert!(g.get_nodes(&[]).await.is_empty(), "no ids, no nodes");
    assert!(
        g.get_nodes(&["missing", "gone", "brief"]).await.is_empty(),
        "no visible node among the ids"
    );
    assert_eq!(
        g.got(&["a", "a", "a"]).await,
        ["a"],
        "a repeated id gives its node once"
    );
    assert_eq!(g.got(&["é"]).await, ["é"], "one id");

    h.advance(90);
    assert_eq!(
        g.got(&["soon", "b", "gone"]).await,
        ["b"],
        "a node is left out from the instant it expires"
    );
    g.nodes(&["gone", "soon"]).await;
    assert_eq!(
        g.got(&["soon", "b", "gone"]).await,
        ["b", "gone", "soon"],
        "a node written again after its delete or expiry is returned"
    );
}

pub async fn get_nodes_limits_its_ids(h: &Harness) {
    let g = G::main(h);
    g.nodes(&["n0", "n999", "x"]).await;
    let most: Vec<NodeId> = (0..MAX_NODES_PER_GET)
        .map(|i| node(&format!("n{i}")))
        .collect();
    let got = h
        .b()
        .get_nodes(&h.tenant, &most)
        .await
        .expect("get_nodes of the most ids");
    let ids: Vec<&str> = got.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["n0", "n999"], "the most ids, most of them absent");

    let mut over = most.clone();
    over.push(node("x"));
    let err = h
        .b()
        .get_nodes(&h.tenant, &over)
        .await
        .expect_err("more than the most ids are refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("ids"), "the error names `ids`");
    let repeated = vec![node("x"); MAX_NODES_PER_GET + 1];
    let err = h
        .b()
        .get_nodes(&h.tenant, &repeated)
        .await
        .expect_err("the limit counts ids as given, repeats included");
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::InvalidInput, Some("ids"))
    );
    assert_eq!(
        h.b()
            .list_nodes(&h.tenant, None, Limit::MAX)
            .await
            .expect("list_nodes")
            .items
            .len(),
        3,
        "a refused read changes nothing"
    );
}

pub async fn get_nodes_stays_in_its_tenant(h: &Harness) {
    let mine = G::main(h);
    let theirs = G::fresh(h);
    // A tenant whose id extends this one's: its keys share this tenant's bytes as a prefix.
    let longer = G {
        h,
        tenant: TenantId::new(format!("{}0", h.tenant.as_str())).expect("valid tenant"),
    };
    mine.nodes(&["a", "b"]).await;
    for (g, tag) in [(&theirs, "theirs"), (&longer, "longer")] {
        h.b()
            .put_node(
                &g.tenant,
                &node("a"),
                &label(tag),
                &object(json!({"owner": tag})),
                None,
            )
            .await
            .expect("put_node");
        g.nodes(&["c"]).await;
    }
    let got = mine.get_nodes(&["a", "b", "c"]).await;
    let ids: Vec<&str> = got.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"], "another tenant's node c is not returned");
    assert_eq!(
        got[0].label,
        label("n"),
        "the same id in another tenant is not this tenant's node"
    );
    for (g, tag) in [(&theirs, "theirs"), (&longer, "longer")] {
        let got = g.get_nodes(&["a", "b", "c"]).await;
        let seen: Vec<(&str, &str)> = got
            .iter()
            .map(|n| (n.id.as_str(), n.label.as_str()))
            .collect();
        assert_eq!(
            seen,
            [("a", tag), ("c", "n")],
            "each tenant sees its own nodes"
        );
    }
    assert!(
        h.b()
            .delete_node(&theirs.tenant, &node("a"))
            .await
            .expect("delete_node"),
        "their node existed"
    );
    assert_eq!(
        mine.got(&["a"]).await,
        ["a"],
        "deleting another tenant's node of that id leaves this one"
    );
}
