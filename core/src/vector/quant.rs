//! Exact-search candidates from an int8 copy of a collection. [`QuantizedRows`] keeps every
//! record as one byte per component plus a scale, a bound of its rounding error and its norm,
//! `dimension + 16` bytes a row against the f32 matrix's `4 × dimension`; a search reads only
//! this copy, with an integer kernel, and keeps every record that could be in the exact top k
//! (ties at the k-th distance included). Only those are then rescored in f64 from the stored f32
//! values by [`super::rank`], so results are exactly those of a full f64 scan.
//!
//! # Codes
//! A row `x` (f32 components) is stored as `x = s·q + e`: the scale `s` is `max|x_i| / 127`
//! rounded to an f32, the codes `q_i = round(x_i / s)` are clamped to `[-127, 127]`, and `e` is
//! what that leaves. `‖e‖₂` is computed in f64 (`s·q_i` is exact there: 24 + 8 significant bits)
//! and stored rounded up to an f32, as `E ≥ ‖e‖₂` up to f64 rounding (below). The query `y` gets
//! the same treatment with 16-bit codes, `y = t·p + f`, `|p_j| ≤ P` with
//! `P = min(32767, ⌊(2³¹ - 1) / (127 n)⌋)`, so the integer dot product `D = q·p` of `n`
//! components cannot leave the i32 range in any summation order: it is exact.
//!
//! # Error bound
//! In real arithmetic, `x·y = x·(t p) + x·f = s t (q·p) + (t p)·e + x·f`, so by Cauchy–Schwarz
//!
//! `|x·y - s t D| ≤ R = ‖e‖ ‖t p‖ + ‖x‖ ‖f‖`.
//!
//! With `est = s t D`, `N = ‖x‖` and `M = ‖y‖` (f64, [`super::norm`]) the distances lie in:
//! - dot, `-x·y`: `[-est - R, -est + R]`;
//! - cosine, `1 - x·y / (N M)`: `1 - c` for `c` in `[(est - R) / (N M), (est + R) / (N M)]`,
//!   clamped to `[-1, 1]` as [`super::distance`] clamps (clamping is monotone);
//! - l2, `sqrt(N² + M² - 2 x·y)`: the square root of `[N² + M² - 2 est - 2R, … + 2R]`, floored at 0.
//!
//! Floating point: the contract's distance is the f64 value [`super::distance`] computes, not
//! the real one, and the bound itself is evaluated in f64. Every f32 product is exact in f64 and
//! nothing underflows or overflows there (f32 magnitudes lie in `[2⁻¹⁴⁹, 2¹²⁸)`, so every product
//! and sum of `n ≤ 4096` squares stays in `[2⁻²⁹⁸, 2²⁶⁹]`), so every computed quantity (the
//! reference's sums, the norms, `‖e‖`, `‖f‖`, `‖t p‖`, `est`, `R` and the bound's own
//! arithmetic) is within relative `γ_{2n+10} = (2n+10) u / (1 - (2n+10) u)`, `u = 2⁻⁵³`, of its
//! real value, and each sum is of terms whose magnitudes add up to at most the scale
//! `S = |est| + R + N M` (dot; `1 + (|est| + R) / (N M)` for the cosine similarity,
//! `N² + M² + 2 |est| + 2R` for the squared l2 distance). So the reference's distance is within
//! `2 γ_{2n+10} S < 2⁻³⁶ S` of the interval above for `n ≤ 4096` (`2 γ_8202 ≈ 1.8 × 10⁻¹²`
//! against `2⁻³⁶ ≈ 1.5 × 10⁻¹¹`), and we widen each side by `2⁻³⁶ S` (relative `2⁻³⁶` on the
//! l2 square root, and `2⁻³⁶` again after the cosine's `1 - c`). A bound that still came out
//! NaN would count as unbounded (see [`super::bound`]), which keeps the record.
//!
//! For unit vectors in 384 dimensions `‖e‖ ≈ s √(n/12)` is about 0.007 and `‖f‖` about 256 times
//! less, so candidates lie within about 0.014 of the k-th best cosine similarity.
//!
//! # Scan
//! Rows are scanned in blocks of [`BLOCK`]: the integer kernel (i8 × i16 → i32 multiply-adds,
//! which the compiler vectorises; [`pulp`] picks AVX2 or AVX-512 at run time) fills the block's
//! dot products, a second vectorised loop turns them into lower bounds, and only rows whose lower
//! bound does not exceed the running k-th smallest upper bound go on to the caller's filter and
//! to the selection. Collections over [`PARALLEL_CODES`] bytes are split into one contiguous
//! part per core, scanned on scoped threads, and merged (the union's k smallest upper bounds are
//! among the parts' own).

use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::OnceLock;

use pulp::{Arch, Simd, WithSimd};

use super::bound::Window;
use super::norm;
use crate::types::{Embedding, Limit, Metric};

/// Rows per block of the scan.
const BLOCK: usize = 64;
/// From this many bytes of codes a search splits across the cores.
const PARALLEL_CODES: usize = 1 << 21;
/// The largest magnitude of a row's code.
const ROW_CODE: f64 = 127.0;
/// The relative widening that covers every f64 rounding (module doc).
const SLACK: f64 = 1.0 / (1_u64 << 36) as f64;

/// The int8 copy of a collection's vectors, row for row.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    dimension: usize,
    /// Row-major `len × dimension` codes.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// Upper bounds of each row's rounding error `‖x - s q‖₂`.
    residuals: Vec<f32>,
    /// Each row's Euclidean norm, as [`super::norm`] computes it.
    norms: Vec<f64>,
}

impl QuantizedRows {
    /// Bytes this copy keeps per row: the codes, the scale, the error bound and the norm.
    pub const fn bytes_per_row(dimension: usize) -> usize {
        dimension + 4 + 4 + 8
    }

    /// An empty copy for vectors of `dimension` components.
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            codes: Vec::new(),
            scales: Vec::new(),
            residuals: Vec::new(),
            norms: Vec::new(),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Row `row`'s Euclidean norm, as [`super::norm`] computes it.
    pub fn norm(&self, row: usize) -> f64 {
        self.norms[row]
    }

    /// Appends a row (`vector` has the copy's dimension).
    pub fn push(&mut self, vector: &[f32]) {
        let start = self.codes.len();
        self.codes.resize(start + self.dimension, 0);
        let (scale, residual) = quantize_row(vector, &mut self.codes[start..]);
        self.scales.push(scale);
        self.residuals.push(residual);
        self.norms.push(norm(vector));
    }

    /// Replaces row `row`.
    pub fn set(&mut self, row: usize, vector: &[f32]) {
        let dim = self.dimension;
        let (scale, residual) = quantize_row(vector, &mut self.codes[row * dim..(row + 1) * dim]);
        self.scales[row] = scale;
        self.residuals[row] = residual;
        self.norms[row] = norm(vector);
    }

    /// Row `row`'s codes and scale: the row is about `scale × codes`.
    pub fn codes(&self, row: usize) -> (&[i8], f32) {
        let dim = self.dimension;
        (&self.codes[row * dim..(row + 1) * dim], self.scales[row])
    }

    /// Removes row `row`, moving the last row into its place (as `Vec::swap_remove`).
    pub fn swap_remove(&mut self, row: usize) {
        let dim = self.dimension;
        let last = self.len() - 1;
        if row != last {
            self.codes
                .copy_within(last * dim..(last + 1) * dim, row * dim);
        }
        self.codes.truncate(last * dim);
        self.scales.swap_remove(row);
        self.residuals.swap_remove(row);
        self.norms.swap_remove(row);
    }

    /// The rows that could be among the `k` nearest to `query` of those `accept` keeps (ties at
    /// the k-th distance included), ascending. `accept` is asked only about rows whose lower
    /// bound is within the running threshold, possibly from several threads.
    pub fn candidates<F>(&self, query: &Embedding, k: Limit, accept: F) -> Vec<usize>
    where
        F: Fn(usize) -> bool + Sync,
    {
        let work = self.len() * self.dimension;
        let parts = if work >= PARALLEL_CODES {
            cores().min(work / (PARALLEL_CODES / 2))
        } else {
            1
        };
        self.select(query, k, &accept, parts)
    }

    /// [`Self::candidates`] with the rows split into `parts` contiguous parts, all but the first
    /// scanned on scoped threads.
    fn select<F>(&self, query: &Embedding, k: Limit, accept: &F, parts: usize) -> Vec<usize>
    where
        F: Fn(usize) -> bool + Sync,
    {
        let query = QueryCodes::new(query);
        let rows = self.len();
        if parts <= 1 {
            return self.scan(&query, k, 0..rows, accept).finish();
        }
        let size = rows.div_ceil(parts);
        let windows = std::thread::scope(|scope| {
            let query = &query;
            let spawned: Vec<_> = (1..parts)
                .map(|part| {
                    let range = (part * size).min(rows)..((part + 1) * size).min(rows);
                    let thread = std::thread::Builder::new().spawn_scoped(scope, {
                        let range = range.clone();
                        move || self.scan(query, k, range, accept)
                    });
                    (range, thread)
                })
                .collect();
            let mut windows = vec![self.scan(query, k, 0..size.min(rows), accept)];
            for (range, thread) in spawned {
                windows.push(match thread {
                    Ok(handle) => match handle.join() {
                        Ok(window) => window,
                        Err(panic) => std::panic::resume_unwind(panic),
                    },
                    // No thread to be had: scan that part here.
                    Err(_) => self.scan(query, k, range, accept),
                });
            }
            windows
        });
        Window::merge(windows)
    }

    /// Scans `rows` on this thread.
    fn scan<F>(&self, query: &QueryCodes, k: Limit, rows: Range<usize>, accept: &F) -> Window
    where
        F: Fn(usize) -> bool + Sync,
    {
        Arch::new().dispatch(Scan {
            rows: self,
            query,
            range: rows,
            accept,
            window: Window::new(k),
        })
    }
}

/// The number of cores to split a large scan across, looked up once.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(NonZeroUsize::get)
            .unwrap_or(1)
    })
}

/// Fills `codes` for `vector` and returns the scale and the rounded-up norm of the residual.
pub(super) fn quantize_row(vector: &[f32], codes: &mut [i8]) -> (f32, f32) {
    let max = vector.iter().fold(0.0_f32, |max, v| max.max(v.abs()));
    let scale = (f64::from(max) / ROW_CODE) as f32;
    let (scale, residual) = quantize(vector, scale, ROW_CODE, codes.iter_mut(), |c, q| {
        // In [-127, 127], so the cast is exact.
        *c = q as i8;
    });
    (scale, round_up(residual))
}

/// Codes `values` with `scale` into `codes` (clamped to `±limit`) and returns the scale used
/// and the f64 norm of the residual `values - scale · codes`. A scale that rounded to zero codes
/// everything as 0, leaving the values themselves as the residual.
fn quantize<'c, C: 'c>(
    values: &[f32],
    scale: f32,
    limit: f64,
    codes: impl Iterator<Item = &'c mut C>,
    mut write: impl FnMut(&mut C, f64),
) -> (f32, f64) {
    let s = f64::from(scale);
    let mut squares = 0.0_f64;
    for (code, value) in codes.zip(values) {
        let x = f64::from(*value);
        let q = if s > 0.0 {
            (x / s).round().clamp(-limit, limit)
        } else {
            0.0
        };
        write(code, q);
        let e = x - s * q;
        squares += e * e;
    }
    (scale, squares.sqrt())
}

/// The smallest f32 not below `value` (finite and non-negative).
fn round_up(value: f64) -> f32 {
    let rounded = value as f32;
    if f64::from(rounded) < value {
        rounded.next_up()
    } else {
        rounded
    }
}

/// A query in 16-bit codes, with the terms of the bound that depend on it alone.
#[derive(Debug)]
struct QueryCodes {
    metric: Metric,
    codes: Vec<i16>,
    /// The query's scale `t`.
    scale: f64,
    /// `‖t p‖₂`.
    coded_norm: f64,
    /// `‖f‖₂ = ‖y - t p‖₂`.
    residual: f64,
    /// `‖y‖₂`.
    norm: f64,
}

impl QueryCodes {
    fn new(query: &Embedding) -> Self {
        let values = query.values();
        // |q·p| ≤ n · 127 · limit ≤ i32::MAX, so the integer dot product cannot overflow.
        let limit = (i32::MAX as usize / (127 * values.len().max(1))).min(i16::MAX as usize);
        let limit = limit as f64;
        let max = values.iter().fold(0.0_f32, |max, v| max.max(v.abs()));
        let scale = (f64::from(max) / limit) as f32;
        let mut codes = vec![0_i16; values.len()];
        let (scale, residual) = quantize(values, scale, limit, codes.iter_mut(), |c, q| {
            // In [-limit, limit] ⊂ [-32767, 32767], so the cast is exact.
            *c = q as i16;
        });
        let scale = f64::from(scale);
        let coded_norm = codes
            .iter()
            .map(|c| {
                let v = scale * f64::from(*c);
                v * v
            })
            .sum::<f64>()
            .sqrt();
        Self {
            metric: query.metric(),
            codes,
            scale,
            coded_norm,
            residual,
            norm: norm(values),
        }
    }

    /// `est` and `R` of the module doc for a row.
    #[inline(always)]
    fn estimate(&self, dot: i32, scale: f32, residual: f32, norm: f64) -> (f64, f64) {
        let est = f64::from(scale) * self.scale * f64::from(dot);
        let radius = f64::from(residual) * self.coded_norm + norm * self.residual;
        (est, radius)
    }

    /// A lower bound of the row's f64 distance.
    #[inline(always)]
    fn lower(&self, dot: i32, scale: f32, residual: f32, norm: f64) -> f64 {
        let (est, radius) = self.estimate(dot, scale, residual, norm);
        match self.metric {
            Metric::Dot => {
                let size = est.abs() + radius + norm * self.norm;
                -est - radius - SLACK * size
            }
            Metric::Cosine => {
                let product = norm * self.norm;
                let size = 1.0 + (est.abs() + radius) / product;
                let high = (est + radius) / product + SLACK * size;
                1.0 - min(high, 1.0) - SLACK
            }
            Metric::L2 => {
                let squares = norm * norm + self.norm * self.norm;
                let size = squares + 2.0 * (est.abs() + radius);
                let low = squares - 2.0 * (est + radius) - SLACK * size;
                max(low, 0.0).sqrt() * (1.0 - SLACK)
            }
        }
    }

    /// An upper bound of the row's f64 distance.
    #[inline(always)]
    fn upper(&self, dot: i32, scale: f32, residual: f32, norm: f64) -> f64 {
        let (est, radius) = self.estimate(dot, scale, residual, norm);
        match self.metric {
            Metric::Dot => {
                let size = est.abs() + radius + norm * self.norm;
                -est + radius + SLACK * size
            }
            Metric::Cosine => {
                let product = norm * self.norm;
                let size = 1.0 + (est.abs() + radius) / product;
                let low = (est - radius) / product - SLACK * size;
                1.0 - max(low, -1.0) + SLACK
            }
            Metric::L2 => {
                let squares = norm * norm + self.norm * self.norm;
                let size = squares + 2.0 * (est.abs() + radius);
                // Not below the true square, so not negative (a NaN stays NaN: unbounded).
                let high = squares - 2.0 * (est - radius) + SLACK * size;
                high.sqrt() * (1.0 + SLACK)
            }
        }
    }
}

/// `min` as a compare and select, which vectorises (NaN goes to `b`).
#[inline(always)]
fn min(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// `max` as a compare and select, which vectorises (NaN goes to `b`).
#[inline(always)]
fn max(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// `codes · query` in i32; exact, since the query's code range keeps every partial sum in range.
#[inline(always)]
fn dot(codes: &[i8], query: &[i16]) -> i32 {
    codes
        .iter()
        .zip(query)
        .map(|(c, q)| i32::from(*c) * i32::from(*q))
        .sum()
}

/// One thread's scan of a range of rows, run under [`Arch::dispatch`] so that the kernels
/// inlined into it are compiled for the widest instruction set the CPU has.
struct Scan<'a, F> {
    rows: &'a QuantizedRows,
    query: &'a QueryCodes,
    range: Range<usize>,
    accept: &'a F,
    window: Window,
}

impl<F: Fn(usize) -> bool + Sync> WithSimd for Scan<'_, F> {
    type Output = Window;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Window {
        let Scan {
            rows,
            query,
            range,
            accept,
            mut window,
        } = self;
        let dim = rows.dimension;
        let mut dots = [0_i32; BLOCK];
        let mut lowers = [0.0_f64; BLOCK];
        let mut start = range.start;
        while start < range.end {
            let end = (start + BLOCK).min(range.end);
            let len = end - start;
            let codes = &rows.codes[start * dim..end * dim];
            for (out, row) in dots.iter_mut().zip(codes.chunks_exact(dim)) {
                *out = dot(row, &query.codes);
            }
            let (scales, residuals, norms) = (
                &rows.scales[start..end],
                &rows.residuals[start..end],
                &rows.norms[start..end],
            );
            for i in 0..len {
                lowers[i] = query.lower(dots[i], scales[i], residuals[i], norms[i]);
            }
            for i in 0..len {
                // A NaN lower bound is kept (it compares as unordered).
                let possible = lowers[i]
                    .partial_cmp(&window.threshold())
                    .is_none_or(|order| order.is_le());
                if possible && accept(start + i) {
                    let upper = query.upper(dots[i], scales[i], residuals[i], norms[i]);
                    window.offer(start + i, lowers[i], upper);
                }
            }
            start = end;
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CollectionSpec;
    use crate::vector::distance;

    #[test]
    fn residual_bound_covers_the_rounding() {
        let mut rows = QuantizedRows::new(4);
        rows.push(&[1.0, -0.3, 1e-30, 5e-3]);
        rows.push(&[0.0, 0.0, 0.0, 0.0]);
        rows.push(&[f32::MAX, -f32::MAX, 1.0, f32::MIN_POSITIVE]);
        rows.push(&[1e-45, -1e-45, 0.0, 1e-45]);
        for row in 0..rows.len() {
            let codes = &rows.codes[row * 4..(row + 1) * 4];
            assert!(codes.iter().all(|c| (-127..=127).contains(c)));
            assert!(rows.residuals[row] >= 0.0);
        }
        assert_eq!(rows.codes[4..8], [0, 0, 0, 0]);
        assert_eq!(rows.residuals[1], 0.0);
        // Too small for a scale: everything is residual.
        assert_eq!(rows.scales[3], 0.0);
        assert!(f64::from(rows.residuals[3]) >= norm(&[1e-45, -1e-45, 0.0, 1e-45]));
    }

    #[test]
    fn swap_remove_and_set_keep_rows_aligned() {
        let mut rows = QuantizedRows::new(2);
        rows.push(&[1.0, 0.0]);
        rows.push(&[0.0, 2.0]);
        rows.push(&[3.0, 3.0]);
        rows.swap_remove(0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.codes, [127, 127, 0, 127]);
        assert_eq!(rows.norm(1), 2.0);
        rows.set(1, &[-4.0, 0.0]);
        assert_eq!(rows.codes[2..], [-127, 0]);
        assert_eq!(rows.norm(1), 4.0);
        rows.swap_remove(1);
        rows.swap_remove(0);
        assert!(rows.is_empty() && rows.codes.is_empty());
    }

    #[test]
    fn bounds_enclose_the_reference_distance() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed % 20_001) as f32 - 10_000.0) / 9_973.0
        };
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            for dim in [1, 2, 7, 64, 384, 4096] {
                let spec = CollectionSpec::new("c", dim as u64, metric).unwrap();
                let mut rows = QuantizedRows::new(dim);
                let data: Vec<Vec<f32>> = (0..20)
                    .map(|i| {
                        let magnitude = [1e-30_f32, 1e-3, 1.0, 1e20, 1e30][i % 5];
                        (0..dim).map(|_| next() * magnitude).collect()
                    })
                    .collect();
                for v in &data {
                    rows.push(v);
                }
                let values: Vec<f32> = (0..dim).map(|_| next()).collect();
                let query = QueryCodes::new(&Embedding::new("q", &spec, values.clone()).unwrap());
                for (row, v) in data.iter().enumerate() {
                    let codes = &rows.codes[row * dim..(row + 1) * dim];
                    let d = dot(codes, &query.codes);
                    let args = (d, rows.scales[row], rows.residuals[row], rows.norms[row]);
                    let lower = query.lower(args.0, args.1, args.2, args.3);
                    let upper = query.upper(args.0, args.1, args.2, args.3);
                    let exact = distance(metric, &values, v);
                    assert!(
                        lower <= exact && exact <= upper,
                        "{metric} dim {dim} row {row}: {exact} outside [{lower}, {upper}]"
                    );
                }
            }
        }
    }

    #[test]
    fn the_integer_dot_product_reaches_its_largest_value_exactly() {
        let dim = crate::validate::MAX_DIMENSION as usize;
        for metric in [Metric::Cosine, Metric::L2, Metric::Dot] {
            let spec = CollectionSpec::new("c", dim as u64, metric).unwrap();
            let mut rows = QuantizedRows::new(dim);
            rows.push(&vec![1.0; dim]);
            rows.push(&vec![-1.0; dim]);
            let values = vec![1.0; dim];
            let query = QueryCodes::new(&Embedding::new("q", &spec, values.clone()).unwrap());
            let limit = query.codes[0];
            assert_eq!(i32::from(limit), i32::MAX / (127 * dim as i32));
            for (row, sign) in [(0, 1), (1, -1)] {
                let d = dot(&rows.codes[row * dim..(row + 1) * dim], &query.codes);
                assert_eq!(i64::from(d), sign * 127 * i64::from(limit) * dim as i64);
                let args = (d, rows.scales[row], rows.residuals[row], rows.norms[row]);
                let exact = distance(metric, &values, &vec![sign as f32; dim]);
                assert!(query.lower(args.0, args.1, args.2, args.3) <= exact);
                assert!(exact <= query.upper(args.0, args.1, args.2, args.3));
            }
        }
    }

    /// Clustered 384-dimensional unit vectors with near-duplicates, as embeddings are, split
    /// across threads: the candidates hold the exact top k and few others.
    #[test]
    fn clustered_unit_vectors_in_parts() {
        let dim = 384;
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1_000_001) as f32 / 500_000.0 - 1.0
        };
        let unit = |v: Vec<f32>| {
            let n = norm(&v) as f32;
            v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        let centres: Vec<Vec<f32>> = (0..20)
            .map(|_| unit((0..dim).map(|_| next()).collect()))
            .collect();
        let data: Vec<Vec<f32>> = (0..6_000)
            .map(|i| {
                let centre = &centres[i % centres.len()];
                let spread = if i.is_multiple_of(7) { 1e-4 } else { 0.3 };
                unit(centre.iter().map(|c| c + spread * next()).collect())
            })
            .collect();
        let spec = CollectionSpec::new("c", dim as u64, Metric::Cosine).unwrap();
        let mut rows = QuantizedRows::new(dim);
        for v in &data {
            rows.push(v);
        }
        for (q, parts) in [(0, 1), (1, 2), (2, 3), (3, 7)] {
            let values = unit(data[q * 97].iter().map(|c| c + 0.05 * next()).collect());
            let query = Embedding::new("q", &spec, values.clone()).unwrap();
            let k = 10;
            let accept = |row: usize| !row.is_multiple_of(5);
            let candidates = rows.select(&query, Limit::new(k as u64).unwrap(), &accept, parts);
            let mut exact: Vec<(f64, usize)> = (0..data.len())
                .filter(|r| accept(*r))
                .map(|r| (distance(Metric::Cosine, &values, &data[r]), r))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let kth = exact[k - 1].0;
            for (d, r) in exact.iter().take_while(|(d, _)| *d <= kth) {
                assert!(candidates.contains(r), "row {r} at {d} missing");
            }
            assert!(candidates.iter().all(|r| accept(*r)));
            assert!(candidates.windows(2).all(|w| w[0] < w[1]));
            assert!(
                candidates.len() < data.len() / 10,
                "{} candidates",
                candidates.len()
            );
        }
    }
}

/// The quantised path against brute force on adversarial data: small integers (exact ties),
/// duplicated rows, components and whole rows scaled to huge and tiny magnitudes, every metric,
/// a filter, and the rows split into parts.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::types::CollectionSpec;
    use crate::vector::distance;

    fn component() -> impl Strategy<Value = f32> {
        prop_oneof![
            3 => (-3_i32..=3).prop_map(|v| v as f32),
            3 => -1.0_f32..1.0,
            2 => (-1.0_f32..1.0, -45_i32..=38).prop_map(|(m, e)| m * 10_f32.powi(e)),
            1 => prop_oneof![
                Just(f32::MAX),
                Just(-f32::MAX),
                Just(f32::MIN_POSITIVE),
                Just(1e-45_f32),
                Just(0.0_f32),
            ],
        ]
    }

    /// One row as generated: components, whether it repeats an earlier row (and which), a
    /// factor for the whole row, and whether the filter keeps it.
    type RowPlan = (Vec<f32>, Option<prop::sample::Index>, f32, bool);

    fn case() -> impl Strategy<Value = (usize, Vec<RowPlan>, Vec<f32>, Metric, usize, usize)> {
        (1_usize..=24, 1_usize..=150).prop_flat_map(|(dim, rows)| {
            let plan = (
                prop::collection::vec(component(), dim),
                prop::option::weighted(0.3, any::<prop::sample::Index>()),
                prop_oneof![3 => Just(1.0_f32), 1 => Just(1e-30_f32), 1 => Just(1e30_f32)],
                prop::bool::weighted(0.8),
            );
            (
                Just(dim),
                prop::collection::vec(plan, rows),
                prop::collection::vec(component(), dim),
                prop_oneof![Just(Metric::Cosine), Just(Metric::L2), Just(Metric::Dot)],
                1_usize..=12,
                1_usize..=4,
            )
        })
    }

    /// A stored vector: finite, and not all zero under cosine (as validation requires).
    fn valid(mut v: Vec<f32>, metric: Metric) -> Vec<f32> {
        for x in &mut v {
            if !x.is_finite() {
                *x = f32::MAX.copysign(*x);
            }
        }
        if metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
            v[0] = 1.0;
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn quantised_search_equals_brute_force(
            (dim, plans, query, metric, k, parts) in case()
        ) {
            let mut data: Vec<Vec<f32>> = Vec::new();
            let mut kept = Vec::new();
            for (values, repeat, factor, keep) in plans {
                let row = match repeat {
                    Some(index) if !data.is_empty() => data[index.index(data.len())].clone(),
                    _ => valid(values.into_iter().map(|x| x * factor).collect(), metric),
                };
                data.push(row);
                kept.push(keep);
            }
            let spec = CollectionSpec::new("c", dim as u64, metric).unwrap();
            let query = Embedding::new("q", &spec, valid(query, metric)).unwrap();
            let mut rows = QuantizedRows::new(dim);
            for v in &data {
                rows.push(v);
            }
            let accept = |row: usize| kept[row];
            let limit = Limit::new(k as u64).unwrap();
            let candidates = rows.select(&query, limit, &accept, parts);
            prop_assert!(candidates.iter().all(|r| kept[*r]));
            prop_assert!(candidates.windows(2).all(|w| w[0] < w[1]));

            let ranked = |rows: &mut dyn Iterator<Item = usize>| {
                let mut hits: Vec<(f64, usize)> = rows
                    .map(|r| (distance(metric, query.values(), &data[r]), r))
                    .collect();
                hits.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                hits
            };
            let exact = ranked(&mut (0..data.len()).filter(|r| kept[*r]));
            // Every record tied with the k-th (or any, with fewer than k) is a candidate.
            if let Some(&(kth, _)) = exact.get(k - 1).or(exact.last()) {
                for (d, r) in exact.iter().filter(|(d, _)| d.total_cmp(&kth).is_le()) {
                    prop_assert!(candidates.contains(r), "row {} at {} missing", r, d);
                }
            }
            let mut found = ranked(&mut candidates.iter().copied());
            found.truncate(k);
            let mut expected = exact;
            expected.truncate(k);
            prop_assert_eq!(found, expected);
        }
    }
}
