//! Fast candidate selection for in-memory exact search. Distances are estimated with an f32
//! kernel that the compiler vectorises; each estimate carries a rigorous error bound, and every
//! record whose lower bound does not exceed the k-th smallest upper bound is kept. The exact
//! top k (ties included) is therefore always among the candidates, which [`super::rank`] then
//! scores in f64.
//!
//! Bounds: a dot product of m terms summed in f32 in any order is within
//! `γ_m · Σ|a_i b_i| ≤ γ_m · |a| |b|` of the real value, with `γ_m = m u / (1 - m u)` and
//! `u = 2^-24`; a sum of squares of rounded differences is within relative `γ_m`. We take
//! `m = n + 32`, add `1e-12` (relative) for the f64 reference's own rounding and an absolute
//! `1e-37` for f32 underflow; when the f32 estimate overflows we use the exact f64 distance.

use std::collections::BinaryHeap;

use super::distance::distance;
use crate::types::{Embedding, Limit, Metric};

const LANES: usize = 16;
const UNDERFLOW_SLACK: f64 = 1e-37;
const REFERENCE_SLACK: f64 = 1e-12;

/// The relative error bound `γ_m = m u / (1 - m u)` (with `u = 2^-24` and `m = dimension + 32`)
/// of an f32 dot product or sum of squares over `dimension` components, summed in any order.
/// Every backend that ranks candidates by f32 distances (this module, pgvector, TiDB) builds its
/// bound on this one figure.
pub fn f32_sum_error(dimension: usize) -> f64 {
    let m = (dimension + 32) as f64;
    let unit = f64::from(f32::EPSILON) / 2.0;
    m * unit / (1.0 - m * unit)
}

/// Selects the candidates of an exact top-k search from records offered one by one.
#[derive(Debug)]
pub struct CandidateSelector<'q> {
    query: &'q [f32],
    metric: Metric,
    query_norm: f64,
    gamma: f64,
    window: Window,
}

impl<'q> CandidateSelector<'q> {
    /// A selector for the `k` records nearest to `query`.
    pub fn new(query: &'q Embedding, k: Limit) -> Self {
        let values = query.values();
        Self {
            query: values,
            metric: query.metric(),
            query_norm: super::norm(values),
            gamma: f32_sum_error(values.len()) + REFERENCE_SLACK,
            window: Window::new(k),
        }
    }

    /// Offers the record at position `idx` with components `vector` (same dimension as the
    /// query) and Euclidean norm `norm` (see [`super::norm`]).
    pub fn offer(&mut self, idx: usize, vector: &[f32], norm: f64) {
        let (lower, upper) = self.bounds(vector, norm);
        self.window.offer(idx, lower, upper);
    }

    /// The positions of the candidates, in the order offered.
    pub fn finish(self) -> Vec<usize> {
        self.window.finish()
    }

    /// Lower and upper bounds of the exact f64 distance.
    fn bounds(&self, vector: &[f32], norm: f64) -> (f64, f64) {
        let gamma = self.gamma;
        let estimate = match self.metric {
            Metric::Dot => {
                let dot = f64::from(dot_f32(self.query, vector));
                let slack = gamma * self.query_norm * norm + UNDERFLOW_SLACK;
                (-dot - slack, -dot + slack)
            }
            Metric::Cosine => {
                let scale = self.query_norm * norm;
                let dot = f64::from(dot_f32(self.query, vector));
                let slack = gamma + UNDERFLOW_SLACK / scale;
                let estimate = 1.0 - (dot / scale).clamp(-1.0, 1.0);
                (estimate - slack, estimate + slack)
            }
            Metric::L2 => {
                let squared = f64::from(squared_l2_f32(self.query, vector));
                let lower = ((squared - UNDERFLOW_SLACK).max(0.0) / (1.0 + gamma)).sqrt();
                let upper = ((squared + UNDERFLOW_SLACK) / (1.0 - gamma)).sqrt();
                (
                    lower * (1.0 - REFERENCE_SLACK),
                    upper * (1.0 + REFERENCE_SLACK),
                )
            }
        };
        if estimate.0.is_finite() && estimate.1.is_finite() {
            estimate
        } else {
            let exact = distance(self.metric, self.query, vector);
            (exact, exact)
        }
    }
}

/// `a · b` in f32 with independent lanes, which the compiler turns into SIMD.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut lanes = [0.0_f32; LANES];
    for (ca, cb) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            lanes[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `|a - b|²` in f32 with independent lanes.
fn squared_l2_f32(a: &[f32], b: &[f32]) -> f32 {
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut lanes = [0.0_f32; LANES];
    for (ca, cb) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            let d = ca[i] - cb[i];
            lanes[i] += d * d;
        }
    }
    let tail: f32 = a_tail
        .iter()
        .zip(b_tail)
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    lanes.iter().sum::<f32>() + tail
}

/// The selection state shared by every candidate scan: the k smallest upper bounds seen so far
/// and the records whose lower bound did not exceed the k-th of them when offered. A record is a
/// candidate when its lower bound does not exceed the final k-th smallest upper bound; since every
/// record's exact distance lies within its bounds, the exact top k (ties at the k-th distance
/// included) is always among the candidates. A NaN bound counts as unbounded on that side, so no
/// arithmetic accident can drop a record.
#[derive(Debug, Clone)]
pub(super) struct Window {
    k: usize,
    /// The k smallest upper bounds seen so far (a max-heap).
    uppers: BinaryHeap<TotalF64>,
    /// The k-th smallest upper bound seen so far, or infinity while fewer than k were offered.
    threshold: f64,
    /// Offered records whose lower bound did not exceed the running threshold.
    pending: Vec<(f64, usize)>,
}

impl Window {
    pub(super) fn new(k: Limit) -> Self {
        Self {
            k: k.get(),
            uppers: BinaryHeap::with_capacity(k.get() + 1),
            threshold: f64::INFINITY,
            pending: Vec::new(),
        }
    }

    /// The running threshold: a record whose lower bound exceeds it is not a candidate.
    #[inline]
    pub(super) fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Offers record `idx` whose exact distance lies in `[lower, upper]`.
    pub(super) fn offer(&mut self, idx: usize, lower: f64, upper: f64) {
        let lower = if lower.is_nan() {
            f64::NEG_INFINITY
        } else {
            lower
        };
        let upper = if upper.is_nan() { f64::INFINITY } else { upper };
        if self.uppers.len() < self.k {
            self.uppers.push(TotalF64(upper));
            if self.uppers.len() == self.k {
                self.threshold = self.uppers.peek().map_or(f64::INFINITY, |top| top.0);
            }
        } else if upper < self.threshold {
            self.uppers.pop();
            self.uppers.push(TotalF64(upper));
            self.threshold = self.uppers.peek().map_or(f64::INFINITY, |top| top.0);
        }
        if lower <= self.threshold {
            self.pending.push((lower, idx));
            if self.pending.len() >= 4 * self.k + 1024 {
                let threshold = self.threshold;
                self.pending.retain(|(lower, _)| *lower <= threshold);
            }
        }
    }

    /// The positions of the candidates, in the order offered.
    pub(super) fn finish(self) -> Vec<usize> {
        let threshold = self.threshold;
        self.pending
            .into_iter()
            .filter(|(lower, _)| *lower <= threshold)
            .map(|(_, idx)| idx)
            .collect()
    }

    /// The candidates of the union of the windows' records, each window's in the order offered:
    /// the k smallest upper bounds of the union are among the windows' own k smallest.
    pub(super) fn merge(windows: Vec<Window>) -> Vec<usize> {
        let Some(k) = windows.first().map(|w| w.k) else {
            return Vec::new();
        };
        let mut uppers: Vec<f64> = windows
            .iter()
            .flat_map(|w| w.uppers.iter().map(|u| u.0))
            .collect();
        let threshold = if uppers.len() < k {
            f64::INFINITY
        } else {
            let (_, kth, _) = uppers.select_nth_unstable_by(k - 1, f64::total_cmp);
            *kth
        };
        windows
            .into_iter()
            .flat_map(|w| w.pending)
            .filter(|(lower, _)| *lower <= threshold)
            .map(|(_, idx)| idx)
            .collect()
    }
}

/// An f64 ordered by `total_cmp`, for the heap.
#[derive(Debug, Clone, Copy)]
struct TotalF64(f64);

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for TotalF64 {}

impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CollectionSpec;
    use crate::vector::norm;

    /// A deterministic pseudo-random sequence (xorshift), so the test needs no dependency.
    fn values(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed % 2001) as f32 - 1000.0) / 997.0
            })
            .collect()
    }

    #[test]
    fn candidates_always_contain_the_exact_top_k() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            for dim in [1, 3, 17, 64, 384] {
                let spec = CollectionSpec::new("c", dim as u64, metric).unwrap();
                let data: Vec<Vec<f32>> = (0..300).map(|_| values(&mut seed, dim)).collect();
                // Duplicates force ties at the k-th place.
                let data: Vec<Vec<f32>> =
                    data.iter().chain(data.iter().take(50)).cloned().collect();
                let query = Embedding::new("query", &spec, values(&mut seed, dim)).unwrap();
                for k in [1, 5, 40] {
                    let limit = Limit::new(k as u64).unwrap();
                    let mut selector = CandidateSelector::new(&query, limit);
                    for (i, v) in data.iter().enumerate() {
                        selector.offer(i, v, norm(v));
                    }
                    let candidates = selector.finish();
                    let mut exact: Vec<(f64, usize)> = data
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (distance(metric, query.values(), v), i))
                        .collect();
                    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let kth = exact[k - 1].0;
                    for (d, i) in exact.iter().filter(|(d, _)| *d <= kth) {
                        assert!(
                            candidates.contains(i),
                            "{metric} dim {dim} k {k}: {i} at {d} missing"
                        );
                    }
                }
            }
        }
    }
}
