//! Distance-weighted sampling of the margin loss: sampled negatives follow the weights of
//! docs/losses.md (a chi-square test with fixed seeds), and the two cut-offs act as specified.

mod common;

use common::*;
use dml_engine::burn::tensor::{Tensor, TensorData};
use dml_engine::loss::{MarginConfig, MarginLoss};
use rand::RngExt;

/// `log w` of docs/losses.md for a distance, or None where the weight is 0.
fn log_weight(dist: f64, dim: f64, cutoff: f64, nonzero: f64) -> Option<f64> {
    (dist < nonzero).then(|| {
        let d = dist.max(cutoff);
        -(dim - 2.0) * d.ln() - (dim - 3.0) / 2.0 * (1.0 - d * d / 4.0).ln()
    })
}

/// Samples `draws` negatives for every anchor with seeded uniforms; returns counts `[n][n]`.
fn sample_counts(loss: &MarginLoss, x: &[f64], y: &[i64], d: usize, draws: usize, seed: u64) -> Vec<Vec<usize>> {
    let n = y.len();
    let device = device();
    let mut r = rng(seed);
    let u: Vec<f32> = (0..n * draws).map(|_| r.random::<f32>()).collect();
    let u = Tensor::<2>::from_data(TensorData::new(u, [n, draws]), &device);
    let drawn: Vec<i64> = loss.sample_negatives(tensor(x, n, d, &device), labels(y, &device), u).try_into_vec_as().unwrap();
    let mut counts = vec![vec![0usize; n]; n];
    for a in 0..n {
        for j in 0..draws {
            counts[a][drawn[a * draws + j] as usize] += 1;
        }
    }
    counts
}

/// Chi-square statistic of `counts` against `probs` (bins with probability 0 must be empty) and
/// its critical value at p = 1e-6 (Wilson–Hilferty).
fn chi_square(counts: &[usize], probs: &[f64]) -> (f64, f64) {
    let total: usize = counts.iter().sum();
    let mut stat = 0.0;
    let mut bins = 0;
    for (&c, &p) in counts.iter().zip(probs) {
        if p == 0.0 {
            assert_eq!(c, 0, "a zero-weight item was sampled");
            continue;
        }
        let e = p * total as f64;
        stat += (c as f64 - e).powi(2) / e;
        bins += 1;
    }
    let df = (bins - 1).max(1) as f64;
    let z = 4.753; // one-sided normal quantile for 1e-6
    let crit = df * (1.0 - 2.0 / (9.0 * df) + z * (2.0 / (9.0 * df)).sqrt()).powi(3);
    (stat, crit)
}

fn expected(x: &[f64], y: &[i64], d: usize, a: usize, c: &MarginConfig) -> Vec<f64> {
    let n = y.len();
    let logs: Vec<Option<f64>> =
        (0..n).map(|k| if y[k] == y[a] { None } else { log_weight(dist(x, d, a, k), d as f64, c.cutoff, c.nonzero_loss_cutoff) }).collect();
    let top = logs.iter().flatten().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut w: Vec<f64> = if top.is_finite() {
        logs.iter().map(|l| l.map_or(0.0, |l| (l - top).exp())).collect()
    } else {
        (0..n).map(|k| if y[k] != y[a] { 1.0 } else { 0.0 }).collect()
    };
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    w
}

#[test]
fn sampled_negatives_follow_the_weights() {
    let d = 6; // low dimension: the weights vary strongly with distance
    let (x, y) = clustered(50, 3, 4, d, 1.5);
    let config = MarginConfig::default();
    let loss = config.init();
    let draws = 40_000;
    let counts = sample_counts(&loss, &x, &y, d, draws, 1);
    for a in 0..y.len() {
        let probs = expected(&x, &y, d, a, &config);
        let nonzero = probs.iter().filter(|&&p| p > 0.0).count();
        let (stat, crit) = chi_square(&counts[a], &probs);
        assert!(stat < crit, "anchor {a}: chi-square {stat:.1} ≥ {crit:.1} over {nonzero} bins");
        for k in 0..y.len() {
            if y[k] == y[a] {
                assert_eq!(counts[a][k], 0, "anchor {a} drew a non-negative {k}");
            }
        }
    }
}

/// Unit vectors in the plane of the first two axes at distance `dist` from e1.
fn at_distance(dist: f64, d: usize) -> Vec<f64> {
    let theta = 2.0 * (dist / 2.0).asin();
    let mut v = vec![0.0; d];
    v[0] = theta.cos();
    v[1] = theta.sin();
    v
}

#[test]
fn cutoffs_flatten_near_and_remove_far_negatives() {
    let d = 16;
    // Anchor e1, a positive, and negatives at chosen distances.
    let dists = [0.2, 0.45, 0.9, 1.2, 1.45, 1.9];
    let mut x = at_distance(0.0, d);
    x.extend(at_distance(0.3, d));
    for &dist in &dists {
        x.extend(at_distance(dist, d));
    }
    let y = vec![0, 0, 1, 1, 1, 1, 1, 1];
    let config = MarginConfig::default();
    let counts = sample_counts(&config.init(), &x, &y, d, 60_000, 2);
    let row = &counts[0];
    // Below the cut-off 0.5, every negative weighs as one at exactly 0.5.
    let w = |dist: f64| log_weight(dist, d as f64, 0.5, 1.4).unwrap().exp();
    let near = w(0.5);
    let probs_raw = [near, near, w(0.9), w(1.2), 0.0, 0.0];
    let total: f64 = probs_raw.iter().sum();
    let mut probs = vec![0.0, 0.0];
    probs.extend(probs_raw.iter().map(|p| p / total));
    let (stat, crit) = chi_square(row, &probs);
    assert!(stat < crit, "chi-square {stat:.1} ≥ {crit:.1}: {row:?} vs {probs:?}");
    assert_eq!(row[6] + row[7], 0, "negatives at or beyond 1.4 must never be drawn");
    let ratio = row[2] as f64 / row[3] as f64;
    assert!((ratio - 1.0).abs() < 0.05, "negatives below the cut-off are drawn alike: {ratio}");

    // All negatives beyond the non-zero cut-off: uniform among them.
    let mut far = at_distance(0.0, d);
    far.extend(at_distance(0.3, d));
    for dist in [1.45, 1.6, 1.9] {
        far.extend(at_distance(dist, d));
    }
    let y = vec![0, 0, 1, 1, 1];
    let row = &sample_counts(&config.init(), &far, &y, d, 30_000, 3)[0];
    let (stat, crit) = chi_square(row, &[0.0, 0.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
    assert!(stat < crit, "uniform fallback: {row:?}");
}

#[test]
fn the_stream_is_seeded_and_moves_on() {
    let (x, y) = clustered(51, 4, 4, 8, 1.0);
    let device = device();
    let run = |seed: u64| {
        let loss = MarginConfig { seed, ..Default::default() }.init();
        (0..3).map(|_| loss.forward(tensor(&x, 16, 8, &device), labels(&y, &device)).into_scalar::<f32>()).collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same losses");
    assert!(a[0] != a[1] || a[1] != a[2], "successive calls draw new negatives: {a:?}");
    assert_ne!(a, run(8), "another seed draws other negatives");
}
