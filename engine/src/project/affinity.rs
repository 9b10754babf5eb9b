//! t-SNE's input affinities: Gaussian conditional probabilities over each point's nearest
//! neighbours, with each point's bandwidth calibrated to the perplexity, symmetrised.

use rayon::prelude::*;

/// A sparse symmetric matrix in compressed rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseRows {
    /// Row `i` is `columns[offsets[i]..offsets[i + 1]]` with `values` alongside.
    pub offsets: Vec<usize>,
    pub columns: Vec<u32>,
    pub values: Vec<f64>,
}

impl SparseRows {
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn row(&self, i: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let range = self.offsets[i]..self.offsets[i + 1];
        self.columns[range.clone()].iter().map(|&j| j as usize).zip(self.values[range].iter().copied())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent sums let the compiler vectorise.
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `k` nearest neighbours of every row of the `n × d` `data` (itself excluded), with squared
/// Euclidean distances, nearest first. Exact (brute force over all pairs).
pub fn nearest_neighbours(data: &[f32], n: usize, d: usize, k: usize) -> Vec<Vec<(u32, f64)>> {
    let k = k.min(n.saturating_sub(1));
    let norms: Vec<f32> = data.chunks_exact(d).map(|x| dot(x, x)).collect();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let xi = &data[i * d..(i + 1) * d];
            let mut all: Vec<(u32, f64)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let d2 = norms[i] + norms[j] - 2.0 * dot(xi, &data[j * d..(j + 1) * d]);
                    (j as u32, d2.max(0.0) as f64)
                })
                .collect();
            if k < all.len() {
                all.select_nth_unstable_by(k, |a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                all.truncate(k);
            }
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            all
        })
        .collect()
}

/// `p_{j|i} ∝ exp(−β d²_ij)` over the given neighbours, β found by bisection so that the
/// distribution's entropy is `ln(perplexity)`.
pub fn conditional_row(distances: &[f64], perplexity: f64) -> Vec<f64> {
    let target = perplexity.ln();
    if distances.is_empty() {
        return Vec::new();
    }
    // Shifting by the smallest distance leaves p unchanged and keeps exp() from underflowing.
    let min = distances.iter().copied().fold(f64::INFINITY, f64::min);
    let (mut beta, mut lo, mut hi) = (1.0, 0.0, f64::INFINITY);
    let mut p = vec![0.0; distances.len()];
    for _ in 0..200 {
        let mut sum = 0.0;
        for (p, &d) in p.iter_mut().zip(distances) {
            *p = (-beta * (d - min)).exp();
            sum += *p;
        }
        let mean_d: f64 = p.iter().zip(distances).map(|(p, d)| p * (d - min)).sum::<f64>() / sum;
        let entropy = sum.ln() + beta * mean_d;
        p.iter_mut().for_each(|v| *v /= sum);
        let error = entropy - target;
        if error.abs() < 1e-10 {
            break;
        }
        if error > 0.0 {
            // Too flat: narrow the Gaussian.
            lo = beta;
            beta = if hi.is_infinite() { beta * 2.0 } else { (beta + hi) / 2.0 };
        } else {
            hi = beta;
            beta = (beta + lo) / 2.0;
        }
    }
    p
}

/// The symmetric joint affinities `p_ij = (p_{j|i} + p_{i|j}) / 2n` over `neighbours`.
pub fn joint_affinities(neighbours: &[Vec<(u32, f64)>], perplexity: f64) -> SparseRows {
    let n = neighbours.len();
    let conditional: Vec<Vec<f64>> =
        neighbours.par_iter().map(|row| conditional_row(&row.iter().map(|&(_, d)| d).collect::<Vec<_>>(), perplexity)).collect();
    let mut rows: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
    for (i, (row, p)) in neighbours.iter().zip(&conditional).enumerate() {
        for (&(j, _), &v) in row.iter().zip(p) {
            rows[i].push((j, v));
            rows[j as usize].push((i as u32, v));
        }
    }
    let mut out = SparseRows { offsets: vec![0], ..Default::default() };
    let scale = 1.0 / (2.0 * n as f64);
    for mut row in rows {
        row.sort_by_key(|&(j, _)| j);
        let mut merged: Vec<(u32, f64)> = Vec::with_capacity(row.len());
        for (j, v) in row {
            match merged.last_mut() {
                Some(last) if last.0 == j => last.1 += v,
                _ => merged.push((j, v)),
            }
        }
        for (j, v) in merged {
            out.columns.push(j);
            out.values.push(v * scale);
        }
        out.offsets.push(out.columns.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_rows_have_the_asked_perplexity() {
        let distances: Vec<f64> = (0..90).map(|j| 0.3 + (j as f64 * 0.77).sin().abs() * 5.0 + j as f64 * 0.05).collect();
        for perplexity in [5.0, 30.0] {
            let p = conditional_row(&distances, perplexity);
            let sum: f64 = p.iter().sum();
            let entropy: f64 = -p.iter().filter(|&&v| v > 0.0).map(|v| v * v.ln()).sum::<f64>();
            assert!((sum - 1.0).abs() < 1e-12);
            assert!((entropy.exp() - perplexity).abs() < 1e-6, "perplexity {} for {perplexity}", entropy.exp());
        }
    }

    #[test]
    fn neighbours_and_joint_affinities_match_brute_force() {
        let (n, d) = (40, 3);
        let data: Vec<f32> = (0..n * d).map(|i| ((i * 37 % 101) as f32 / 10.0).sin()).collect();
        let knn = nearest_neighbours(&data, n, d, 5);
        for (i, row) in knn.iter().enumerate() {
            let mut all: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| ((0..d).map(|k| (data[i * d + k] as f64 - data[j * d + k] as f64).powi(2)).sum(), j))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (r, &(j, d2)) in row.iter().enumerate() {
                assert_eq!(j as usize, all[r].1);
                assert!((d2 - all[r].0).abs() < 1e-5);
            }
        }
        let p = joint_affinities(&knn, 2.0);
        let total: f64 = p.values.iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "affinities sum to {total}");
        for i in 0..n {
            for (j, v) in p.row(i) {
                let back = p.row(j).find(|&(k, _)| k == i).map(|(_, v)| v);
                assert_eq!(back, Some(v), "p is symmetric");
            }
        }
    }
}
