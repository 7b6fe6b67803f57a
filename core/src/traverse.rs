//! Graph traversals, written once over [`GraphStore::edges_of`] so every backend breaks ties the
//! same way.
//!
//! - [`neighbors`]: distinct nodes within `depth` hops, excluding the start, ordered by hop
//!   count, then id (raw bytes).
//! - [`shortest_path`]: unweighted = fewest hops; weighted = least total weight (summed in f64 in
//!   path order). Ties go to fewer hops, then to the lexicographically smallest sequence of node
//!   ids. Between two nodes joined by several edges a step uses the edge with the least weight
//!   (weighted only), then the smallest `rel`, `src`, `dst`. The total of an unweighted path is its
//!   hop count.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

use crate::error::{Error, Resource, Result};
use crate::graph::{Direction, EdgeRecord, GraphStore};
use crate::types::{Depth, Limit, NodeId, RelFilter, TenantId};

/// Most nodes passed to one [`GraphStore::edges_of`] call.
const NODES_PER_CALL: usize = 1000;

/// A node reached by [`neighbors`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Neighbor {
    pub id: NodeId,
    pub hops: u32,
}

/// A path found by [`shortest_path`].
#[derive(Clone, PartialEq, Debug)]
pub struct Path {
    /// The nodes from source to destination, both included.
    pub nodes: Vec<NodeId>,
    /// The edge taken at each step (`edges[i]` joins `nodes[i]` and `nodes[i + 1]`).
    pub edges: Vec<EdgeRecord>,
    /// The sum of the edge weights (weighted) or the hop count (unweighted).
    pub total: f64,
}

/// A shortest-path query.
#[derive(Clone, Debug)]
pub struct PathQuery {
    pub src: NodeId,
    pub dst: NodeId,
    pub direction: Direction,
    pub rels: RelFilter,
    pub max_depth: Depth,
    pub weighted: bool,
}

/// Distinct nodes reachable from `start` within `depth` hops, excluding `start`, ordered by hop
/// count, then id; at most `limit`. `NotFound` if `start` is not visible.
pub async fn neighbors(
    store: &dyn GraphStore,
    tenant: &TenantId,
    start: &NodeId,
    direction: Direction,
    rels: &RelFilter,
    depth: Depth,
    limit: Limit,
) -> Result<Vec<Neighbor>> {
    require_node(store, tenant, start).await?;
    let mut visited: HashSet<NodeId> = HashSet::from([start.clone()]);
    let mut frontier = vec![start.clone()];
    let mut found = Vec::new();
    for hops in 1..=depth.0 {
        let edges = edges_of(store, tenant, &frontier, direction, rels).await?;
        let layer: BTreeSet<NodeId> = steps(&edges, &frontier, direction)
            .map(|step| step.to.clone())
            .filter(|id| !visited.contains(id))
            .collect();
        if layer.is_empty() {
            break;
        }
        visited.extend(layer.iter().cloned());
        found.extend(layer.iter().map(|id| Neighbor {
            id: id.clone(),
            hops,
        }));
        if found.len() >= limit.get() {
            break;
        }
        frontier = layer.into_iter().collect();
    }
    found.truncate(limit.get());
    Ok(found)
}

/// The shortest path between two visible nodes under the rules in the module doc, or `None` when
/// no path of at most `max_depth` hops exists. `NotFound` if `src` or `dst` is not visible.
pub async fn shortest_path(
    store: &dyn GraphStore,
    tenant: &TenantId,
    query: &PathQuery,
) -> Result<Option<Path>> {
    require_node(store, tenant, &query.src).await?;
    require_node(store, tenant, &query.dst).await?;
    if query.src == query.dst {
        return Ok(Some(Path {
            nodes: vec![query.src.clone()],
            edges: Vec::new(),
            total: 0.0,
        }));
    }
    if query.weighted {
        weighted_path(store, tenant, query).await
    } else {
        unweighted_path(store, tenant, query).await
    }
}

async fn require_node(store: &dyn GraphStore, tenant: &TenantId, id: &NodeId) -> Result<()> {
    match store.get_node(tenant, id).await? {
        Some(_) => Ok(()),
        None => Err(Error::not_found(Resource::Node, id)),
    }
}

/// `edges_of` over any number of nodes, in bounded calls.
async fn edges_of(
    store: &dyn GraphStore,
    tenant: &TenantId,
    nodes: &[NodeId],
    direction: Direction,
    rels: &RelFilter,
) -> Result<Vec<EdgeRecord>> {
    let mut edges = Vec::new();
    for chunk in nodes.chunks(NODES_PER_CALL) {
        edges.extend(store.edges_of(tenant, chunk, direction, rels).await?);
    }
    Ok(edges)
}

/// One traversal step: from a node of the frontier to another node along `edge`.
struct Step<'a> {
    from: &'a NodeId,
    to: &'a NodeId,
    edge: &'a EdgeRecord,
}

/// The steps that `edges` offer from `frontier` in `direction`.
fn steps<'a>(
    edges: &'a [EdgeRecord],
    frontier: &'a [NodeId],
    direction: Direction,
) -> impl Iterator<Item = Step<'a>> + 'a {
    let in_frontier: HashSet<&NodeId> = frontier.iter().collect();
    edges.iter().flat_map(move |edge| {
        let forward = direction != Direction::In && in_frontier.contains(&edge.src);
        let backward = direction != Direction::Out && in_frontier.contains(&edge.dst);
        let a = forward.then_some(Step {
            from: &edge.src,
            to: &edge.dst,
            edge,
        });
        let b = backward.then_some(Step {
            from: &edge.dst,
            to: &edge.src,
            edge,
        });
        a.into_iter().chain(b)
    })
}

/// The order among parallel edges: least weight (weighted only), then rel, src, dst.
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

/// One side of a bidirectional breadth-first search.
struct Side {
    direction: Direction,
    dist: HashMap<NodeId, usize>,
    layers: Vec<Vec<NodeId>>,
    /// For each expanded node, the nodes one step further from this side's root, with the edge.
    adjacent: HashMap<NodeId, Vec<(NodeId, EdgeRecord)>>,
}

impl Side {
    fn new(root: &NodeId, direction: Direction) -> Self {
        Self {
            direction,
            dist: HashMap::from([(root.clone(), 0)]),
            layers: vec![vec![root.clone()]],
            adjacent: HashMap::new(),
        }
    }

    fn radius(&self) -> usize {
        self.layers.len() - 1
    }

    fn frontier(&self) -> &[NodeId] {
        self.layers.last().map_or(&[], Vec::as_slice)
    }

    /// Expands the frontier by one layer and returns the shortest length through a node newly
    /// met by both sides, if any.
    async fn expand(
        &mut self,
        store: &dyn GraphStore,
        tenant: &TenantId,
        rels: &RelFilter,
        other: &Side,
    ) -> Result<Option<usize>> {
        let frontier = self.frontier().to_vec();
        let edges = edges_of(store, tenant, &frontier, self.direction, rels).await?;
        let next_dist = self.radius() + 1;
        let mut layer = Vec::new();
        for step in steps(&edges, &frontier, self.direction) {
            self.adjacent
                .entry(step.from.clone())
                .or_default()
                .push((step.to.clone(), step.edge.clone()));
            if !self.dist.contains_key(step.to) {
                self.dist.insert(step.to.clone(), next_dist);
                layer.push(step.to.clone());
            }
        }
        for node in &frontier {
            self.adjacent.entry(node.clone()).or_default();
        }
        let met = layer
            .iter()
            .filter_map(|node| other.dist.get(node).map(|d| next_dist + d))
            .min();
        self.layers.push(layer);
        Ok(met)
    }
}

async fn unweighted_path(
    store: &dyn GraphStore,
    tenant: &TenantId,
    query: &PathQuery,
) -> Result<Option<Path>> {
    let mut forward = Side::new(&query.src, query.direction);
    let mut backward = Side::new(&query.dst, query.direction.reverse());
    let max_depth = query.max_depth.get();
    let length = loop {
        if forward.radius() + backward.radius() >= max_depth
            || forward.frontier().is_empty()
            || backward.frontier().is_empty()
        {
            return Ok(None);
        }
        let met = if forward.frontier().len() <= backward.frontier().len() {
            forward
                .expand(store, tenant, &query.rels, &backward)
                .await?
        } else {
            backward
                .expand(store, tenant, &query.rels, &forward)
                .await?
        };
        if let Some(length) = met {
            break length;
        }
    };
    if length > max_depth {
        return Ok(None);
    }
    Ok(Some(smallest_shortest_path(&forward, &backward, length)))
}

/// Among all paths of `length` hops between the two roots, the one with the lexicographically
/// smallest node sequence.
fn smallest_shortest_path(forward: &Side, backward: &Side, length: usize) -> Path {
    // A position `pivot` where both distances are known; positions before it are walked with the
    // forward side's adjacency, positions after it with the backward side's.
    let pivot = forward.radius().min(length);
    let mut on_path: Vec<HashSet<&NodeId>> = vec![HashSet::new(); length + 1];
    on_path[pivot] = forward
        .layers
        .get(pivot)
        .into_iter()
        .flatten()
        .filter(|node| backward.dist.get(*node) == Some(&(length - pivot)))
        .collect();
    for position in (0..pivot).rev() {
        let next = on_path[position + 1].clone();
        on_path[position] = forward.layers[position]
            .iter()
            .filter(|node| {
                forward.adjacent[*node]
                    .iter()
                    .any(|(to, _)| next.contains(to))
            })
            .collect();
    }
    for position in pivot + 1..=length {
        let previous = on_path[position - 1].clone();
        on_path[position] = backward.layers[length - position]
            .iter()
            .filter(|node| {
                backward.adjacent[*node]
                    .iter()
                    .any(|(from, _)| previous.contains(from))
            })
            .collect();
    }

    let mut nodes = vec![forward.layers[0][0].clone()];
    let mut edges = Vec::with_capacity(length);
    for position in 1..=length {
        let current = &nodes[position - 1];
        // (next node, edge) pairs leaving `current` towards the path's next position.
        let options: Vec<(&NodeId, &EdgeRecord)> = if position <= pivot {
            forward.adjacent[current]
                .iter()
                .filter(|(to, _)| on_path[position].contains(to))
                .map(|(to, edge)| (to, edge))
                .collect()
        } else {
            on_path[position]
                .iter()
                .flat_map(|node| {
                    backward.adjacent[*node]
                        .iter()
                        .filter(|(from, _)| from == current)
                        .map(move |(_, edge)| (*node, edge))
                })
                .collect()
        };
        let best = options
            .into_iter()
            .min_by(|a, b| a.0.cmp(b.0).then_with(|| edge_order(false, a.1, b.1)));
        if let Some((node, edge)) = best {
            let node = node.clone();
            edges.push(edge.clone());
            nodes.push(node);
        }
    }
    Path {
        total: edges.len() as f64,
        nodes,
        edges,
    }
}

/// A partial path in the weighted search.
#[derive(Clone)]
struct Label {
    weight: f64,
    nodes: Vec<NodeId>,
    edges: Vec<EdgeRecord>,
}

impl Label {
    fn hops(&self) -> usize {
        self.edges.len()
    }

    fn last(&self) -> &NodeId {
        &self.nodes[self.nodes.len() - 1]
    }

    /// The path order: weight, then hops, then node sequence.
    fn order(&self, other: &Self) -> Ordering {
        self.weight
            .total_cmp(&other.weight)
            .then_with(|| self.hops().cmp(&other.hops()))
            .then_with(|| self.nodes.cmp(&other.nodes))
    }
}

/// Heap entry: the smallest label first.
struct Queued(Label);

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.0.order(&other.0).is_eq()
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.order(&self.0)
    }
}

/// A label-setting search on (weight, hops, node sequence) with a hop limit. A node may be
/// settled once per Pareto-optimal (weight, hops) pair; a label dominated by a settled one is
/// dropped, since extending the settled one is never worse.
async fn weighted_path(
    store: &dyn GraphStore,
    tenant: &TenantId,
    query: &PathQuery,
) -> Result<Option<Path>> {
    let max_depth = query.max_depth.get();
    let mut settled: HashMap<NodeId, Vec<(f64, usize)>> = HashMap::new();
    let mut adjacency: HashMap<NodeId, Vec<(NodeId, EdgeRecord)>> = HashMap::new();
    let mut queue = BinaryHeap::from([Queued(Label {
        weight: 0.0,
        nodes: vec![query.src.clone()],
        edges: Vec::new(),
    })]);
    while let Some(Queued(label)) = queue.pop() {
        let node = label.last().clone();
        let fronts = settled.entry(node.clone()).or_default();
        if fronts
            .iter()
            .any(|(w, h)| *w <= label.weight && *h <= label.hops())
        {
            continue;
        }
        fronts.push((label.weight, label.hops()));
        if node == query.dst {
            return Ok(Some(Path {
                total: label.weight,
                nodes: label.nodes,
                edges: label.edges,
            }));
        }
        if label.hops() >= max_depth {
            continue;
        }
        if !adjacency.contains_key(&node) {
            let frontier = [node.clone()];
            let edges = edges_of(store, tenant, &frontier, query.direction, &query.rels).await?;
            let mut best: HashMap<NodeId, EdgeRecord> = HashMap::new();
            for step in steps(&edges, &frontier, query.direction) {
                match best.get(step.to) {
                    Some(kept) if edge_order(true, kept, step.edge).is_le() => {}
                    _ => {
                        best.insert(step.to.clone(), step.edge.clone());
                    }
                }
            }
            adjacency.insert(node.clone(), best.into_iter().collect());
        }
        for (to, edge) in adjacency.get(&node).into_iter().flatten() {
            if label.nodes.contains(to) {
                continue;
            }
            let mut next = label.clone();
            next.weight += edge.weight;
            next.nodes.push(to.clone());
            next.edges.push(edge.clone());
            queue.push(Queued(next));
        }
    }
    Ok(None)
}
