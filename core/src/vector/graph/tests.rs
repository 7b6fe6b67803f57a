//! The HNSW graph on its own: recall against brute force for every metric, catching up over
//! existing rows, rows removed, moved and re-added as the collection moves them, and filters.

use super::*;

/// A deterministic generator of clustered vectors: `clusters` centres, each row a centre plus
/// noise, so near neighbours are meaningful and ties rare.
struct Data {
    state: u64,
}

impl Data {
    fn uniform(&mut self) -> f32 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.state >> 40) as f32 / (1_u64 << 24) as f32) * 2.0 - 1.0
    }

    fn rows(&mut self, rows: usize, dimension: usize, clusters: usize) -> Vec<f32> {
        let centres: Vec<f32> = (0..clusters * dimension).map(|_| self.uniform()).collect();
        let mut data = Vec::with_capacity(rows * dimension);
        for row in 0..rows {
            let centre = &centres[(row % clusters) * dimension..][..dimension];
            data.extend(centre.iter().map(|c| c + 0.3 * self.uniform()));
        }
        data
    }
}

/// The int8 copy of `data`, as the collection keeps it.
fn quantized(data: &[f32], dim: usize) -> QuantizedRows {
    let mut codes = QuantizedRows::new(dim);
    for row in data.chunks_exact(dim) {
        codes.push(row);
    }
    codes
}

/// A graph built by appending every row of `data`, and the int8 copy it reads.
fn appended(metric: Metric, data: &[f32], dim: usize) -> (Graph, QuantizedRows) {
    let mut graph = Graph::new(metric, 0);
    let mut codes = QuantizedRows::new(dim);
    for row in data.chunks_exact(dim) {
        codes.push(row);
        graph.pushed(&codes);
    }
    (graph, codes)
}

/// The exact `k` nearest rows (f64 distances, ties by row).
fn exact(metric: Metric, data: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(row, x)| (crate::vector::distance(metric, query, x), row))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, row)| row).collect()
}

/// Recall at 10 of the graph's first ten answers against the exact ones.
fn recall(graph: &Graph, metric: Metric, data: &[f32], dim: usize, queries: &[f32]) -> f64 {
    let codes = quantized(data, dim);
    let k = 10;
    let (mut hits, mut total) = (0, 0);
    for query in queries.chunks_exact(dim) {
        let truth = exact(metric, data, dim, query, k);
        let found: Vec<usize> = graph
            .search(&codes, query, 128, 128, |_| true)
            .into_iter()
            .take(k)
            .collect();
        hits += truth.iter().filter(|row| found.contains(row)).count();
        total += truth.len();
    }
    hits as f64 / total as f64
}

#[test]
fn built_by_appends_it_finds_the_nearest() {
    let dim = 32;
    let mut source = Data { state: 7 };
    let data = source.rows(4000, dim, 40);
    let queries = source.rows(50, dim, 40);
    for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
        let (graph, _) = appended(metric, &data, dim);
        assert!(graph.is_complete());
        let recall = recall(&graph, metric, &data, dim, &queries);
        // The dot product is no metric (a vector need not be its own nearest), which a graph
        // walk navigates worse.
        let floor = if metric == Metric::Dot { 0.8 } else { 0.95 };
        assert!(recall >= floor, "{metric:?}: recall {recall}");
    }
}

#[test]
fn it_catches_up_over_existing_rows() {
    let dim = 16;
    let mut source = Data { state: 11 };
    let data = source.rows(3000, dim, 30);
    let queries = source.rows(40, dim, 30);
    let codes = quantized(&data, dim);
    let mut graph = Graph::new(Metric::Cosine, 3000);
    assert!(!graph.is_complete());
    let none = graph.search(&codes, &queries[..dim], 10, 10, |_| true);
    assert!(none.is_empty());
    let mut steps = 0;
    while !graph.catch_up(&codes, 500) {
        steps += 1;
        assert!(steps < 10, "catch_up makes no progress");
    }
    assert_eq!(graph.uncovered(), 0);
    let recall = recall(&graph, Metric::Cosine, &data, dim, &queries);
    assert!(recall >= 0.95, "recall {recall}");
}

#[test]
fn removed_and_changed_rows_follow_the_collection() {
    let dim = 16;
    let mut source = Data { state: 13 };
    let mut data = source.rows(3000, dim, 30);
    let (mut graph, mut codes) = appended(Metric::L2, &data, dim);
    // Remove a third of the rows as the collection does (swap_remove), change another third.
    for step in 0..1000 {
        let row = (step * 7919) % (data.len() / dim);
        let last = data.len() / dim - 1;
        data.copy_within(last * dim..(last + 1) * dim, row * dim);
        data.truncate(last * dim);
        codes.swap_remove(row);
        graph.swap_removed(&codes, row);
    }
    for step in 0..1000 {
        let row = (step * 104_729) % (data.len() / dim);
        let fresh = source.rows(1, dim, 1);
        data[row * dim..(row + 1) * dim].copy_from_slice(&fresh);
        codes.set(row, &fresh);
        graph.changed(&codes, row);
    }
    assert!(graph.is_complete());
    assert_eq!(graph.row_node.len(), 2000);
    for (row, &node) in graph.row_node.iter().enumerate() {
        assert_eq!(graph.nodes[node as usize].row, row as u32);
    }
    let queries = source.rows(40, dim, 30);
    let recall = recall(&graph, Metric::L2, &data, dim, &queries);
    assert!(recall >= 0.9, "recall after churn {recall}");
    // Every row answered is a row of the collection.
    for query in queries.chunks_exact(dim) {
        for row in graph.search(&codes, query, 32, 32, |_| true) {
            assert!(row < 2000);
        }
    }
    // Removing everything leaves an empty graph that accepts rows again.
    while !codes.is_empty() {
        let last = codes.len() - 1;
        codes.swap_remove(last);
        graph.swap_removed(&codes, last);
    }
    let none = graph.search(&codes, &queries[..dim], 10, 10, |_| true);
    assert!(none.is_empty());
    codes.push(&source.rows(1, dim, 1));
    graph.pushed(&codes);
    let one = graph.search(&codes, &queries[..dim], 10, 10, |_| true);
    assert_eq!(one, vec![0]);
}

#[test]
fn only_accepted_rows_are_answered() {
    let dim = 16;
    let mut source = Data { state: 17 };
    let data = source.rows(2000, dim, 20);
    let (graph, codes) = appended(Metric::Cosine, &data, dim);
    let query = &data[..dim];
    let found = graph.search(&codes, query, 50, 50, |row| row % 3 == 0);
    assert_eq!(found.len(), 50);
    assert!(found.iter().all(|row| row % 3 == 0));
    assert_eq!(found[0], 0, "the query's own row is nearest");
}

#[test]
fn keeping_more_than_the_beam_extends_its_answer() {
    let dim = 16;
    let mut source = Data { state: 23 };
    let data = source.rows(3000, dim, 10);
    let (graph, codes) = appended(Metric::Cosine, &data, dim);
    for query in source.rows(20, dim, 10).chunks_exact(dim) {
        let beam = graph.search(&codes, query, 16, 16, |_| true);
        let more = graph.search(&codes, query, 16, 48, |_| true);
        assert_eq!(beam.len(), 16);
        assert_eq!(more.len(), 48, "the walk scores far more than 48 rows");
        // The same walk: its best 16 come first, then the next best it scored.
        assert_eq!(&more[..16], &beam[..]);
        let mut unique = more.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), more.len());
    }
}
