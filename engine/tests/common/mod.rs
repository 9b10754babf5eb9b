//! Shared pieces of the engine tests: seeded data, float64 reference helpers and comparisons.
#![allow(dead_code)]

use dml_engine::burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

pub fn rng(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// Standard normal by Box-Muller.
pub fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A batch like a P×K sampler gives: `classes` × `per_class` unit vectors in `dim` dimensions,
/// scattered with `spread` around random class centres. Values are exactly f32-representable.
pub fn clustered(seed: u64, classes: usize, per_class: usize, dim: usize, spread: f64) -> (Vec<f64>, Vec<i64>) {
    let mut rng = rng(seed);
    let centres: Vec<Vec<f64>> = (0..classes).map(|_| (0..dim).map(|_| normal(&mut rng)).collect()).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..classes * per_class {
        // Interleave classes so that positives are not contiguous.
        let c = i % classes;
        let centre = &centres[c];
        let norm_c = centre.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut v: Vec<f64> = centre.iter().map(|a| a / norm_c + spread * normal(&mut rng) / (dim as f64).sqrt()).collect();
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        for a in v.iter_mut() {
            *a = ((*a / norm) as f32) as f64;
        }
        x.extend(v);
        y.push(c as i64 * 7 + 3); // labels need not be 0..C
    }
    (x, y)
}

pub fn dot(x: &[f64], d: usize, i: usize, j: usize) -> f64 {
    (0..d).map(|t| x[i * d + t] * x[j * d + t]).sum()
}

/// `D_ij = sqrt(max(‖x_i − x_j‖², 1e-12))`.
pub fn dist(x: &[f64], d: usize, i: usize, j: usize) -> f64 {
    let sq: f64 = (0..d).map(|t| (x[i * d + t] - x[j * d + t]).powi(2)).sum();
    sq.max(1e-12).sqrt()
}

pub fn positives(y: &[i64], i: usize) -> Vec<usize> {
    (0..y.len()).filter(|&j| j != i && y[j] == y[i]).collect()
}

pub fn negatives(y: &[i64], i: usize) -> Vec<usize> {
    (0..y.len()).filter(|&k| y[k] != y[i]).collect()
}

pub fn device() -> Device {
    Device::flex().autodiff()
}

pub fn tensor(x: &[f64], n: usize, d: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [n, d]), device)
}

pub fn labels(y: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(y.to_vec(), [y.len()]), device)
}

pub fn to_vec(t: Tensor<2>) -> Vec<f64> {
    t.try_into_vec_as::<f32>().unwrap().into_iter().map(f64::from).collect()
}

/// Central finite differences of a float64 function, step `h`.
pub fn finite_difference(f: &dyn Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            let keep = probe[i];
            probe[i] = keep + h;
            let up = f(&probe);
            probe[i] = keep - h;
            let down = f(&probe);
            probe[i] = keep;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `|a − b| ≤ rel · |b| + abs` for a scalar.
pub fn assert_close(what: &str, got: f64, want: f64, rel: f64, abs: f64) {
    assert!((got - want).abs() <= rel * want.abs() + abs, "{what}: got {got:.9e}, want {want:.9e} (diff {:.3e})", (got - want).abs());
}

/// Vectors agree to `rel` of the reference's largest entry (plus `abs`), element by element.
pub fn assert_all_close(what: &str, got: &[f64], want: &[f64], rel: f64, abs: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (worst, at) =
        got.iter().zip(want).enumerate().map(|(i, (g, w))| ((g - w).abs(), i)).fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
    assert!(
        worst <= rel * scale + abs,
        "{what}: worst difference {worst:.3e} at {at} (got {:.9e}, want {:.9e}; scale {scale:.3e})",
        got[at],
        want[at]
    );
}

/// Unit vectors whose entries are ±0.5 on 4 of `dim` coordinates: every dot product is an exact
/// multiple of 0.25 in f32 as in f64, so ties are frequent and exact.
pub fn tie_heavy(seed: u64, n: usize, dim: usize) -> Vec<f64> {
    let mut r = rng(seed);
    let mut x = vec![0.0; n * dim];
    for i in 0..n {
        let mut coords: Vec<usize> = (0..dim).collect();
        for j in 0..4 {
            let pick = r.random_range(j..dim);
            coords.swap(j, pick);
            x[i * dim + coords[j]] = if r.random::<bool>() { 0.5 } else { -0.5 };
        }
    }
    x
}
