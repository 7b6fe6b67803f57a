//! A hierarchical navigable small world graph (HNSW, Malkov and Yashunin 2018) over a
//! collection's rows, for approximate search. The graph holds no vectors: it navigates by the
//! collection's int8 copy ([`QuantizedRows`], a quarter of the f32 matrix's bytes, so a walk
//! that reads hundreds of scattered rows stays in cache far more), which the caller passes to
//! every method; it costs about `4 × (2M + 5)` bytes a record beside it (layer-0 links in one
//! flat array, the row, scale and norm of each node, and each row's node), plus the links of the
//! few nodes on upper layers.
//!
//! # Rows and nodes
//! The collection keeps its rows dense (a removed row is replaced by the last one), so the graph
//! links *nodes*, which never move, and maps each row to its node and back. A row that changes
//! its vector gets a new node; a removed row's node dies. Links to a dead node are skipped; the
//! dead node's neighbours are relinked at once to the nearest of its other neighbours, so the
//! graph stays navigable under deletes. Dead nodes are never reused (a stale link can then only
//! point at nothing); [`Graph::worn`] tells the owner when they outnumber the live ones and a
//! rebuild is due.
//!
//! # Distances
//! Navigation ranks by the metric's distance estimated from the codes (`x·y ≈ s t (q·p)`, an
//! exact integer dot product; cosine `1 - x·y / (‖x‖ ‖y‖)`, squared l2, negated dot product),
//! in f32. The graph only proposes candidates: the owner ranks them exactly from the f32 values.
//!
//! The f32 kernels are inlined into code that [`pulp`] compiles for the widest instruction
//! set the CPU has (AVX2 with FMA, or AVX-512), chosen at run time.
//!
//! # Coverage
//! A graph may start empty over a collection that already has rows ([`Graph::new`]) and catch up
//! in steps ([`Graph::catch_up`]) while writes keep it current; it serves searches once it covers
//! every row ([`Graph::is_complete`]).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use pulp::{Arch, Simd, WithSimd};

use super::quant::{QuantizedRows, quantize_row};
use crate::types::Metric;

/// Links a node keeps on each upper layer; layer 0 keeps twice as many.
const M: usize = 16;
/// The candidate list while inserting.
const EF_CONSTRUCTION: usize = 100;
/// No node or no row.
const NONE: u32 = u32::MAX;
/// The highest layer a node may reach.
const MAX_LEVEL: usize = 16;
/// Words a node takes in [`Graph::base`]: its count of layer-0 links, then room for `2M`.
const STRIDE: usize = 2 * M + 1;

/// What a walk reads of a node besides its links, in one place: the row it stands for (`NONE`
/// once dead), and its vector's code scale and norm.
#[derive(Clone, Copy, Debug)]
struct Node {
    row: u32,
    scale: f32,
    norm: f32,
}

/// A node and its distance from whatever is being searched for.
#[derive(Clone, Copy, Debug)]
struct Scored {
    distance: f32,
    node: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

/// The approximate-search graph of one collection.
#[derive(Debug, Clone)]
pub struct Graph {
    metric: Metric,
    /// Every node's layer-0 links, [`STRIDE`] words a node (see [`Graph::links`]); none when dead.
    base: Vec<u32>,
    /// `upper[node][layer - 1]`: the links on layers 1 and up of the few live nodes (one in
    /// `M`) that reach them.
    upper: HashMap<u32, Vec<Vec<u32>>>,
    nodes: Vec<Node>,
    /// Each row's node; `NONE` for a row not inserted yet.
    row_node: Vec<u32>,
    entry: u32,
    top: usize,
    dead: usize,
    /// Rows without a node, and where [`Graph::catch_up`] goes on looking for them.
    uncovered: usize,
    cursor: usize,
    rng: u64,
}

impl Graph {
    /// An empty graph over a collection that has `rows` rows, none of them inserted yet.
    pub fn new(metric: Metric, rows: usize) -> Self {
        Self {
            metric,
            base: Vec::new(),
            upper: HashMap::new(),
            nodes: Vec::new(),
            row_node: vec![NONE; rows],
            entry: NONE,
            top: 0,
            dead: 0,
            uncovered: rows,
            cursor: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ rows as u64,
        }
    }

    /// Whether every row is in the graph, so a search sees them all.
    pub fn is_complete(&self) -> bool {
        self.uncovered == 0
    }

    /// Rows not in the graph yet.
    pub fn uncovered(&self) -> usize {
        self.uncovered
    }

    /// Whether dead nodes outnumber the live ones (past a few thousand), so a rebuild would
    /// make the graph smaller and its searches better.
    pub fn worn(&self) -> bool {
        self.dead > 4096 && self.dead > self.nodes.len() - self.dead
    }

    /// Bytes held, approximately.
    pub fn bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .values()
            .map(|layers| {
                32 + layers
                    .iter()
                    .map(|list| 24 + 4 * list.capacity())
                    .sum::<usize>()
            })
            .sum();
        4 * self.base.capacity()
            + upper
            + std::mem::size_of::<Node>() * self.nodes.capacity()
            + 4 * self.row_node.capacity()
    }

    /// A row was appended to the collection (it is the last row of `codes`).
    pub fn pushed(&mut self, codes: &QuantizedRows) {
        let row = self.row_node.len();
        self.row_node.push(NONE);
        self.uncovered += 1;
        self.insert(codes, row);
    }

    /// Row `row` got a new vector.
    pub fn changed(&mut self, codes: &QuantizedRows, row: usize) {
        let node = self.row_node[row];
        if node != NONE {
            self.row_node[row] = NONE;
            self.uncovered += 1;
            self.kill(codes, node);
        }
        self.insert(codes, row);
    }

    /// Row `row` was removed and the last row moved into its place (`Vec::swap_remove`); `codes`
    /// is already without it.
    pub fn swap_removed(&mut self, codes: &QuantizedRows, row: usize) {
        let last = self.row_node.len() - 1;
        let gone = self.row_node[row];
        if row != last {
            let moved = self.row_node[last];
            self.row_node[row] = moved;
            if moved != NONE {
                self.nodes[moved as usize].row = row as u32;
            }
        }
        self.row_node.pop();
        if gone == NONE {
            self.uncovered -= 1;
        } else {
            self.kill(codes, gone);
        }
    }

    /// Inserts up to `budget` rows not in the graph yet; returns whether it is complete.
    pub fn catch_up(&mut self, codes: &QuantizedRows, budget: usize) -> bool {
        let mut inserted = 0;
        let mut looked = 0;
        while self.uncovered > 0 && inserted < budget && looked <= 2 * self.row_node.len() {
            if self.cursor >= self.row_node.len() {
                self.cursor = 0;
            }
            if self.row_node[self.cursor] == NONE {
                self.insert(codes, self.cursor);
                inserted += 1;
            }
            self.cursor += 1;
            looked += 1;
        }
        self.is_complete()
    }

    /// Up to `keep` rows near `query` that `accept` keeps, nearest first by the graph's
    /// estimated distance: the best `keep` of those a walk with a beam of `ef` scored (`keep`
    /// above `ef` gives an exact ranking more of the rows the estimate may have misplaced, at
    /// no cost to the walk). `accept` is asked only about rows the walk reaches.
    pub fn search<F: Fn(usize) -> bool>(
        &self,
        codes: &QuantizedRows,
        query: &[f32],
        ef: usize,
        keep: usize,
        accept: F,
    ) -> Vec<usize> {
        let mut probe = Probe {
            codes: vec![0; query.len()],
            scale: 0.0,
            norm: 0.0,
        };
        probe.scale = quantize_row(query, &mut probe.codes).0;
        probe.norm = dot(query, query).sqrt();
        Arch::new().dispatch(SearchOp {
            graph: self,
            codes,
            probe,
            ef,
            keep,
            accept,
        })
    }

    #[inline(always)]
    fn search_here(
        &self,
        codes: &QuantizedRows,
        probe: &Probe,
        ef: usize,
        keep: usize,
        accept: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        if self.entry == NONE {
            return Vec::new();
        }
        let mut entry = vec![self.scored(codes, probe, self.entry)];
        for layer in (1..=self.top).rev() {
            entry = self.search_layer(codes, probe, &entry, 1, 1, layer, |_| true);
        }
        let accept = |node: u32| accept(self.nodes[node as usize].row as usize);
        let ef = ef.max(1);
        self.search_layer(codes, probe, &entry, ef, keep.max(ef), 0, accept)
            .into_iter()
            .map(|s| self.nodes[s.node as usize].row as usize)
            .collect()
    }

    fn is_live(&self, node: u32) -> bool {
        self.nodes[node as usize].row != NONE
    }

    /// The node's links on `layer`: none when it is dead or does not reach `layer`.
    #[inline(always)]
    fn links(&self, node: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let start = node as usize * STRIDE;
            let count = self.base[start] as usize;
            &self.base[start + 1..start + 1 + count]
        } else {
            self.upper
                .get(&node)
                .and_then(|layers| layers.get(layer - 1))
                .map_or(&[], Vec::as_slice)
        }
    }

    /// Whether the node is live and reaches `layer`.
    fn reaches(&self, node: u32, layer: usize) -> bool {
        self.is_live(node)
            && (layer == 0 || self.upper.get(&node).is_some_and(|l| layer <= l.len()))
    }

    /// Replaces the node's links on `layer` (which it reaches) by `links` (at most the layer's
    /// capacity).
    fn set_links(&mut self, node: u32, layer: usize, links: &[u32]) {
        if layer == 0 {
            let start = node as usize * STRIDE;
            self.base[start] = links.len() as u32;
            self.base[start + 1..start + 1 + links.len()].copy_from_slice(links);
        } else {
            if let Some(list) = self
                .upper
                .get_mut(&node)
                .and_then(|layers| layers.get_mut(layer - 1))
            {
                list.clear();
                list.extend_from_slice(links);
            }
        }
    }

    /// The estimated distance for an estimated dot product between vectors of norms `a`, `b`.
    #[inline(always)]
    fn distance(&self, dot: f32, a: f32, b: f32) -> f32 {
        match self.metric {
            Metric::Cosine => {
                let norms = a * b;
                if norms > 0.0 { 1.0 - dot / norms } else { 1.0 }
            }
            Metric::L2 => a * a + b * b - 2.0 * dot,
            Metric::Dot => -dot,
        }
    }

    #[inline(always)]
    fn scored(&self, codes: &QuantizedRows, probe: &Probe, node: u32) -> Scored {
        let info = self.nodes[node as usize];
        let (x, _) = codes.codes(info.row as usize);
        let dot = probe.scale * info.scale * dot_i8(&probe.codes, x) as f32;
        Scored {
            distance: self.distance(dot, probe.norm, info.norm),
            node,
        }
    }

    #[inline(always)]
    fn between(&self, codes: &QuantizedRows, a: u32, b: u32) -> f32 {
        let (a, b) = (self.nodes[a as usize], self.nodes[b as usize]);
        let (x, _) = codes.codes(a.row as usize);
        let (y, _) = codes.codes(b.row as usize);
        let dot = a.scale * b.scale * dot_i8(x, y) as f32;
        self.distance(dot, a.norm, b.norm)
    }

    /// The `keep` nearest nodes that `accept` keeps among those a best-first walk of `layer`
    /// from `entry` with a beam of `ef` (at most `keep`) scores, ascending.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn search_layer(
        &self,
        codes: &QuantizedRows,
        probe: &Probe,
        entry: &[Scored],
        ef: usize,
        keep: usize,
        layer: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Scored> {
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.reset(self.nodes.len());
            let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
            let mut found: BinaryHeap<Scored> = BinaryHeap::new();
            // The best `keep` scored, when that is more than the beam.
            let mut kept: BinaryHeap<Scored> = BinaryHeap::new();
            let offer = |kept: &mut BinaryHeap<Scored>, scored: Scored| {
                if keep > ef {
                    kept.push(scored);
                    if kept.len() > keep {
                        kept.pop();
                    }
                }
            };
            for &start in entry {
                if visited.insert(start.node) {
                    candidates.push(Reverse(start));
                    if accept(start.node) {
                        found.push(start);
                        offer(&mut kept, start);
                    }
                }
            }
            while found.len() > ef {
                found.pop();
            }
            while let Some(Reverse(nearest)) = candidates.pop() {
                if found.len() >= ef
                    && found
                        .peek()
                        .is_some_and(|worst| nearest.distance > worst.distance)
                {
                    break;
                }
                for batch in self.links(nearest.node, layer).chunks(2 * M) {
                    // Read one byte of every cache line of the unseen neighbours' codes first,
                    // so that their misses overlap instead of stalling one distance at a time.
                    let mut fresh = [0_u32; 2 * M];
                    let mut count = 0;
                    let mut touched = 0_i8;
                    for &node in batch {
                        if self.is_live(node) && visited.insert(node) {
                            let (row, _) = codes.codes(self.nodes[node as usize].row as usize);
                            touched ^= row.iter().step_by(64).fold(0, |a, b| a ^ b);
                            fresh[count] = node;
                            count += 1;
                        }
                    }
                    std::hint::black_box(touched);
                    for &node in &fresh[..count] {
                        let scored = self.scored(codes, probe, node);
                        let accepted = accept(node);
                        if accepted {
                            offer(&mut kept, scored);
                        }
                        let worst = found.peek().map_or(f32::INFINITY, |w| w.distance);
                        if found.len() < ef || scored.distance < worst {
                            candidates.push(Reverse(scored));
                            if accepted {
                                found.push(scored);
                                if found.len() > ef {
                                    found.pop();
                                }
                            }
                        }
                    }
                }
            }
            if keep > ef { kept } else { found }.into_sorted_vec()
        })
    }

    /// The neighbours to keep from `candidates` (ascending by distance to the base): a
    /// candidate is kept unless a kept one is nearer to it than the base is (the paper's
    /// heuristic, which keeps links spread in every direction), at most `m`.
    #[inline(always)]
    fn select(&self, codes: &QuantizedRows, candidates: &[Scored], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for candidate in candidates {
            if kept.len() >= m {
                break;
            }
            if kept
                .iter()
                .all(|&k| self.between(codes, candidate.node, k) > candidate.distance)
            {
                kept.push(candidate.node);
            }
        }
        kept
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: plenty for drawing levels.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let uniform = (bits as f64 + 1.0) / (1_u64 << 53) as f64;
        let level = (-uniform.ln() / (M as f64).ln()) as usize;
        level.min(MAX_LEVEL)
    }

    fn insert(&mut self, codes: &QuantizedRows, row: usize) {
        Arch::new().dispatch(InsertOp {
            graph: self,
            codes,
            row,
        });
    }

    #[inline(always)]
    fn insert_here(&mut self, codes: &QuantizedRows, row: usize) {
        let node = self.nodes.len() as u32;
        let level = self.random_level();
        let (row_codes, scale) = codes.codes(row);
        let probe = Probe {
            codes: row_codes.to_vec(),
            scale,
            norm: codes.norm(row) as f32,
        };
        self.base.resize(self.base.len() + STRIDE, 0);
        if level > 0 {
            self.upper.insert(node, vec![Vec::new(); level]);
        }
        self.nodes.push(Node {
            row: row as u32,
            scale,
            norm: probe.norm,
        });
        self.row_node[row] = node;
        self.uncovered -= 1;
        if self.entry == NONE {
            self.entry = node;
            self.top = level;
            return;
        }
        let mut entry = vec![self.scored(codes, &probe, self.entry)];
        for layer in (level + 1..=self.top).rev() {
            entry = self.search_layer(codes, &probe, &entry, 1, 1, layer, |_| true);
        }
        for layer in (0..=level.min(self.top)).rev() {
            let (ef, keep) = (EF_CONSTRUCTION, EF_CONSTRUCTION);
            let found = self.search_layer(codes, &probe, &entry, ef, keep, layer, |n| n != node);
            let chosen = self.select(codes, &found, M);
            for &neighbour in &chosen {
                self.link(codes, neighbour, node, layer);
            }
            self.set_links(node, layer, &chosen);
            entry = found;
        }
        if level > self.top {
            self.top = level;
            self.entry = node;
        }
    }

    fn capacity(layer: usize) -> usize {
        if layer == 0 { 2 * M } else { M }
    }

    /// Adds `to` to `from`'s links on `layer`, pruning them with the heuristic when full.
    #[inline(always)]
    fn link(&mut self, codes: &QuantizedRows, from: u32, to: u32, layer: usize) {
        let cap = Self::capacity(layer);
        if !self.reaches(from, layer) {
            return;
        }
        let list = self.links(from, layer);
        let count = list.len();
        if count < cap {
            if layer == 0 {
                let start = from as usize * STRIDE;
                self.base[start + 1 + count] = to;
                self.base[start] += 1;
            } else {
                if let Some(list) = self
                    .upper
                    .get_mut(&from)
                    .and_then(|layers| layers.get_mut(layer - 1))
                {
                    list.push(to);
                }
            }
            return;
        }
        let mut scored: Vec<Scored> = list
            .iter()
            .copied()
            .chain([to])
            .filter(|&n| self.is_live(n))
            .map(|n| Scored {
                distance: self.between(codes, from, n),
                node: n,
            })
            .collect();
        scored.sort_unstable();
        let kept = self.select(codes, &scored, cap);
        self.set_links(from, layer, &kept);
    }

    /// Kills `node` (its row is gone or has a new vector) and relinks its neighbours.
    fn kill(&mut self, codes: &QuantizedRows, node: u32) {
        Arch::new().dispatch(KillOp {
            graph: self,
            codes,
            node,
        });
    }

    #[inline(always)]
    fn kill_here(&mut self, codes: &QuantizedRows, node: u32) {
        let mut layers = vec![self.links(node, 0).to_vec()];
        layers.extend(self.upper.remove(&node).unwrap_or_default());
        self.set_links(node, 0, &[]);
        self.nodes[node as usize].row = NONE;
        self.dead += 1;
        for (layer, around) in layers.iter().enumerate() {
            for &neighbour in around {
                if !self.reaches(neighbour, layer) {
                    continue;
                }
                let list = self.links(neighbour, layer);
                if !list.contains(&node) {
                    continue;
                }
                // The nearest of its other links and of the dead node's other neighbours.
                let mut pool: Vec<u32> = list
                    .iter()
                    .chain(around)
                    .copied()
                    .filter(|&n| n != node && n != neighbour && self.is_live(n))
                    .collect();
                pool.sort_unstable();
                pool.dedup();
                let mut scored: Vec<Scored> = pool
                    .into_iter()
                    .map(|n| Scored {
                        distance: self.between(codes, neighbour, n),
                        node: n,
                    })
                    .collect();
                scored.sort_unstable();
                scored.truncate(Self::capacity(layer));
                let kept: Vec<u32> = scored.into_iter().map(|s| s.node).collect();
                self.set_links(neighbour, layer, &kept);
            }
        }
        if self.entry == node {
            self.reenter();
        }
    }

    /// Picks a new entry point: a live node on the highest layer any live node reaches.
    fn reenter(&mut self) {
        self.entry = NONE;
        self.top = 0;
        // The lowest node of the highest layer, so that the choice does not depend on the
        // map's order; dead nodes have left the map.
        let highest = self
            .upper
            .iter()
            .map(|(&node, layers)| (layers.len(), Reverse(node)))
            .max();
        if let Some((top, Reverse(node))) = highest {
            self.entry = node;
            self.top = top;
        } else if let Some(node) = self.nodes.iter().position(|n| n.row != NONE) {
            self.entry = node as u32;
        }
    }
}

/// A vector reduced to what the distances read: int8 codes with their scale, and the norm.
struct Probe {
    codes: Vec<i8>,
    scale: f32,
    norm: f32,
}

// The graph's operations, each run under [`Arch::dispatch`] so that the kernels inlined into
// them use the CPU's widest vector instructions.

struct SearchOp<'a, F> {
    graph: &'a Graph,
    codes: &'a QuantizedRows,
    probe: Probe,
    ef: usize,
    keep: usize,
    accept: F,
}

impl<F: Fn(usize) -> bool> WithSimd for SearchOp<'_, F> {
    type Output = Vec<usize>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<usize> {
        self.graph
            .search_here(self.codes, &self.probe, self.ef, self.keep, self.accept)
    }
}

struct InsertOp<'a> {
    graph: &'a mut Graph,
    codes: &'a QuantizedRows,
    row: usize,
}

impl WithSimd for InsertOp<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.graph.insert_here(self.codes, self.row);
    }
}

struct KillOp<'a> {
    graph: &'a mut Graph,
    codes: &'a QuantizedRows,
    node: u32,
}

impl WithSimd for KillOp<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        self.graph.kill_here(self.codes, self.node);
    }
}

/// Per-thread marks of the nodes a walk has seen, cleared by bumping a generation.
struct Visited {
    marks: Vec<u32>,
    generation: u32,
}

impl Visited {
    fn reset(&mut self, nodes: usize) {
        if self.marks.len() < nodes {
            self.marks.resize(nodes, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.marks.fill(0);
            self.generation = 1;
        }
    }

    /// Marks `node`; false if it was marked already.
    fn insert(&mut self, node: u32) -> bool {
        let mark = &mut self.marks[node as usize];
        let fresh = *mark != self.generation;
        *mark = self.generation;
        fresh
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const {
        RefCell::new(Visited { marks: Vec::new(), generation: 0 })
    };
}

/// The f32 dot product (for the query's norm).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The exact integer dot product of two rows of codes (`|code| ≤ 127`, so at most
/// `4096 × 127²` in magnitude: no overflow).
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| i32::from(*x) * i32::from(*y))
        .sum()
}

#[cfg(test)]
mod tests;
