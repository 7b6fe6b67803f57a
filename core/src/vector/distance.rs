//! Distances as pgvector defines them, computed in f64 from f32 components. Every backend's
//! results are scored by these functions, so the summation order is fixed here.

use crate::types::Metric;

/// The distance between `a` and `b` (same length) under `metric`: cosine `1 - cos(a, b)`,
/// l2 Euclidean, dot `-(a · b)`.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    match metric {
        Metric::Cosine => {
            let (mut dot, mut norm_a, mut norm_b) = (0.0_f64, 0.0_f64, 0.0_f64);
            for (x, y) in a.iter().zip(b) {
                let (x, y) = (f64::from(*x), f64::from(*y));
                dot += x * y;
                norm_a += x * x;
                norm_b += y * y;
            }
            let similarity = (dot / (norm_a * norm_b).sqrt()).clamp(-1.0, 1.0);
            1.0 - similarity
        }
        Metric::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| {
                let d = f64::from(*x) - f64::from(*y);
                d * d
            })
            .sum::<f64>()
            .sqrt(),
        Metric::Dot => -a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum::<f64>(),
    }
}

/// The Euclidean norm in f64.
pub fn norm(v: &[f32]) -> f64 {
    v.iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pgvector_examples() {
        let a = [1.0, 2.0, 3.0];
        let b = [1.0, 2.0, 4.0];
        assert!((distance(Metric::Cosine, &a, &b) - 0.008_539_866_016_332_72).abs() < 1e-12);
        assert_eq!(distance(Metric::L2, &a, &b), 1.0);
        assert_eq!(distance(Metric::Dot, &a, &b), -17.0);
        assert_eq!(distance(Metric::Cosine, &[1.0, 1.0], &[-1.0, -1.0]), 2.0);
        assert_eq!(distance(Metric::L2, &[0.0, 3.0], &[4.0, 0.0]), 5.0);
    }
}
