//! t-SNE (van der Maaten & Hinton 2008) with Barnes-Hut forces (van der Maaten 2014): perplexity-
//! calibrated affinities over 3 × perplexity nearest neighbours, PCA initialisation, early
//! exaggeration, momentum and per-coordinate gains.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::affinity::{SparseRows, joint_affinities, nearest_neighbours};
use super::pca::pca;
use super::quadtree::{QuadTree, Repulsion};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsneConfig {
    pub perplexity: f64,
    /// All iterations, the exaggerated ones included.
    pub iterations: usize,
    /// Iterations at the start with the attractive forces multiplied by `early_exaggeration`.
    pub exaggeration_iterations: usize,
    pub early_exaggeration: f64,
    /// 0: `max(n / early_exaggeration, 50)` (Belkina et al. 2019).
    pub learning_rate: f64,
    /// Barnes-Hut accuracy: a cell acts as one point when its width is below `theta` × its
    /// distance. 0: exact forces over all pairs (O(n²), small n only).
    pub theta: f64,
    /// Random initialisation where PCA has too few points or dimensions.
    pub seed: u64,
}

impl Default for TsneConfig {
    fn default() -> Self {
        Self {
            perplexity: 30.0,
            iterations: 750,
            exaggeration_iterations: 250,
            early_exaggeration: 12.0,
            learning_rate: 0.0,
            theta: 0.5,
            seed: 0,
        }
    }
}

/// A t-SNE optimisation in progress.
pub struct Tsne {
    config: TsneConfig,
    p: SparseRows,
    /// `n × 2`, row-major.
    y: Vec<f64>,
    update: Vec<f64>,
    gains: Vec<f64>,
    learning_rate: f64,
    iteration: usize,
}

/// Gradient of the KL divergence and the normalisation `Z = Σ_{k≠l} w_kl`.
fn gradient(p: &SparseRows, y: &[f64], exaggeration: f64, theta: f64) -> (Vec<f64>, f64) {
    let n = y.len() / 2;
    let tree = QuadTree::new(y);
    let parts: Vec<([f64; 2], Repulsion)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let yi = [y[2 * i], y[2 * i + 1]];
            let mut attraction = [0.0; 2];
            for (j, pij) in p.row(i) {
                let dx = [yi[0] - y[2 * j], yi[1] - y[2 * j + 1]];
                let w = 1.0 / (1.0 + dx[0] * dx[0] + dx[1] * dx[1]);
                attraction[0] += pij * w * dx[0];
                attraction[1] += pij * w * dx[1];
            }
            (attraction, tree.repulsion(i, yi, y, theta))
        })
        .collect();
    let z: f64 = parts.iter().map(|(_, r)| r.z).sum();
    let mut grad = vec![0.0; 2 * n];
    for (i, (attraction, repulsion)) in parts.iter().enumerate() {
        for a in 0..2 {
            grad[2 * i + a] = 4.0 * (exaggeration * attraction[a] - repulsion.force[a] / z);
        }
    }
    (grad, z)
}

/// `KL(P ‖ Q)` of the embedding `y`, with `Z` as [`gradient`] computes it.
fn kl_divergence(p: &SparseRows, y: &[f64], z: f64) -> f64 {
    (0..p.rows())
        .into_par_iter()
        .map(|i| {
            p.row(i)
                .filter(|&(_, pij)| pij > 0.0)
                .map(|(j, pij)| {
                    let d2 = (y[2 * i] - y[2 * j]).powi(2) + (y[2 * i + 1] - y[2 * j + 1]).powi(2);
                    let q = 1.0 / (1.0 + d2) / z;
                    pij * (pij / q).ln()
                })
                .sum::<f64>()
        })
        .sum()
}

/// A standard normal draw (Box-Muller).
pub(crate) fn standard_normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

impl Tsne {
    /// Affinities of the `n × d` `data` and the PCA initialisation (scaled to standard deviation
    /// 1e-4 on the first axis, as openTSNE does).
    pub fn new(data: &[f32], n: usize, d: usize, config: &TsneConfig) -> Self {
        let k = if config.theta == 0.0 { n.saturating_sub(1) } else { (3.0 * config.perplexity) as usize };
        let p = joint_affinities(&nearest_neighbours(data, n, d, k), config.perplexity);
        let y = if n >= 3 && d >= 2 {
            let mut y = pca(data, n, d, 2).coordinates;
            let std = (y.iter().step_by(2).map(|v| v * v).sum::<f64>() / n as f64).sqrt();
            let scale = if std > 0.0 { 1e-4 / std } else { 1.0 };
            y.iter_mut().for_each(|v| *v *= scale);
            y
        } else {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(config.seed);
            (0..2 * n).map(|_| 1e-4 * standard_normal(&mut rng)).collect()
        };
        let learning_rate =
            if config.learning_rate > 0.0 { config.learning_rate } else { (n as f64 / config.early_exaggeration).max(50.0) };
        Tsne { config: config.clone(), p, update: vec![0.0; 2 * n], gains: vec![1.0; 2 * n], y, learning_rate, iteration: 0 }
    }

    pub fn iteration(&self) -> usize {
        self.iteration
    }

    pub fn finished(&self) -> bool {
        self.iteration >= self.config.iterations
    }

    /// The current map, `n × 2` row-major.
    pub fn embedding(&self) -> &[f64] {
        &self.y
    }

    /// One gradient step.
    pub fn step(&mut self) {
        let early = self.iteration < self.config.exaggeration_iterations;
        let exaggeration = if early { self.config.early_exaggeration } else { 1.0 };
        let momentum = if early { 0.5 } else { 0.8 };
        let (grad, _) = gradient(&self.p, &self.y, exaggeration, self.config.theta);
        let coordinates = self.y.iter_mut().zip(&mut self.update).zip(&mut self.gains).zip(&grad);
        for (((y, update), gain), &g) in coordinates {
            let same_direction = (g > 0.0) == (*update > 0.0);
            *gain = if same_direction { *gain * 0.8 } else { *gain + 0.2 }.max(0.01);
            *update = momentum * *update - self.learning_rate * *gain * g;
            *y += *update;
        }
        let n = self.y.len() / 2;
        for a in 0..2 {
            let mean = self.y.iter().skip(a).step_by(2).sum::<f64>() / n as f64;
            self.y.iter_mut().skip(a).step_by(2).for_each(|v| *v -= mean);
        }
        self.iteration += 1;
    }

    /// Runs the remaining iterations, calling `observe(iteration, map)` after each.
    pub fn run(&mut self, mut observe: impl FnMut(usize, &[f64])) {
        while !self.finished() {
            self.step();
            observe(self.iteration, &self.y);
        }
    }

    /// `KL(P ‖ Q)` of the current map (Q's normalisation by the same Barnes-Hut approximation
    /// as the forces; exact when `theta = 0`).
    pub fn kl_divergence(&self) -> f64 {
        let (_, z) = gradient(&self.p, &self.y, 1.0, self.config.theta);
        kl_divergence(&self.p, &self.y, z)
    }

    /// The exact gradient and KL divergence of an arbitrary map, for tests.
    #[cfg(test)]
    fn exact_at(&self, y: &[f64]) -> (Vec<f64>, f64) {
        let (grad, z) = gradient(&self.p, y, 1.0, 0.0);
        (grad, kl_divergence(&self.p, y, z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `clusters` Gaussian blobs of `per` points in `d` dimensions, centres 10 apart.
    pub(crate) fn blobs(clusters: usize, per: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut data = Vec::new();
        let mut labels = Vec::new();
        for c in 0..clusters {
            for _ in 0..per {
                for k in 0..d {
                    let centre = if k == c % d { 10.0 } else { 0.0 } + if k == (c + 1) % d { 5.0 * (c / d) as f64 } else { 0.0 };
                    data.push((centre + standard_normal(&mut rng)) as f32);
                }
                labels.push(c);
            }
        }
        (data, labels)
    }

    #[test]
    fn exact_gradient_matches_finite_differences_of_the_kl_divergence() {
        let (data, _) = blobs(3, 8, 4, 1);
        let config = TsneConfig { perplexity: 5.0, theta: 0.0, ..Default::default() };
        let tsne = Tsne::new(&data, 24, 4, &config);
        let y: Vec<f64> = (0..48).map(|k| ((k * 37 % 19) as f64 / 4.0).sin()).collect();
        let (grad, _) = tsne.exact_at(&y);
        let h = 1e-6;
        for c in 0..48 {
            let (mut plus, mut minus) = (y.clone(), y.clone());
            plus[c] += h;
            minus[c] -= h;
            let numeric = (tsne.exact_at(&plus).1 - tsne.exact_at(&minus).1) / (2.0 * h);
            assert!((numeric - grad[c]).abs() < 1e-6 + 1e-4 * numeric.abs(), "coordinate {c}: {numeric} vs {}", grad[c]);
        }
    }

    #[test]
    fn separated_clusters_stay_separated_and_barnes_hut_matches_exact() {
        let (data, labels) = blobs(5, 60, 10, 2);
        let n = labels.len();
        let mut kls = Vec::new();
        for theta in [0.0, 0.5] {
            let config = TsneConfig { theta, iterations: 500, ..Default::default() };
            let mut tsne = Tsne::new(&data, n, 10, &config);
            let kl_start = tsne.kl_divergence();
            tsne.run(|_, _| {});
            let kl = tsne.kl_divergence();
            assert!(kl < kl_start / 2.0, "theta {theta}: KL {kl_start} → {kl}");
            // Every point's nearest map neighbour is of its own cluster.
            let y = tsne.embedding();
            for i in 0..n {
                let nearest = (0..n)
                    .filter(|&j| j != i)
                    .min_by(|&a, &b| {
                        let d = |j: usize| (y[2 * i] - y[2 * j]).powi(2) + (y[2 * i + 1] - y[2 * j + 1]).powi(2);
                        d(a).total_cmp(&d(b))
                    })
                    .unwrap();
                assert_eq!(labels[nearest], labels[i], "theta {theta}: point {i}");
            }
            kls.push(kl);
        }
        // The exact run uses all pairs, Barnes-Hut 90 neighbours: same optimum within a few %.
        assert!((kls[1] - kls[0]).abs() < 0.1 * kls[0], "KL exact {} vs Barnes-Hut {}", kls[0], kls[1]);
    }
}
