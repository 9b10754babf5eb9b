//! Training-mode batch normalisation followed by a clamp (ReLU: [0, ∞); ReLU6: [0, 6]; none:
//! (−∞, ∞)), NCHW f32 on the host: statistics, forward and backward, each one or two passes over
//! the activation.
//!
//! Burn's generic batch norm swaps the batch and channel axes (a full copy) for every reduction,
//! forward and backward; here the reductions walk each channel's planes in place. Sums are taken
//! per channel in f64, sequentially, so results do not depend on the thread count.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::common::parallel::par_written;
use crate::common::simd::isa_dispatch;

/// `[batch, channels, plane]` of an NCHW activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub plane: usize,
}

impl BnShape {
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }

    fn planes<'a>(&self, x: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (channels, plane) = (self.channels, self.plane);
        (0..self.batch).map(move |n| &x[(n * channels + c) * plane..][..plane])
    }
}

isa_dispatch! {
    /// Σ x and Σ (x − shift)² over a plane, in eight f32 lanes (so that it vectorises) added in f64.
    fn plane_moments(p: &[f32], shift: f32) -> (f64, f64) {
        let (mut s1, mut s2) = ([0.0f32; 8], [0.0f32; 8]);
        let chunks = p.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..8 {
                let d = c[l] - shift;
                s1[l] += c[l];
                s2[l] += d * d;
            }
        }
        let total = |lanes: [f32; 8]| lanes.iter().map(|&v| v as f64).sum::<f64>();
        let (t1, t2) = rest.iter().fold((0.0f64, 0.0f64), |(a, b), &v| (a + v as f64, b + ((v - shift) * (v - shift)) as f64));
        (total(s1) + t1, total(s2) + t2)
    }
}

/// The output range of the activation after batch norm, and where its gradient passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clamp {
    pub low: f32,
    pub high: f32,
}

impl Clamp {
    pub const RELU: Clamp = Clamp { low: 0.0, high: f32::INFINITY };
    pub const RELU6: Clamp = Clamp { low: 0.0, high: 6.0 };
    pub const NONE: Clamp = Clamp { low: f32::NEG_INFINITY, high: f32::INFINITY };

    #[inline(always)]
    fn apply(self, z: f32) -> f32 {
        z.max(self.low).min(self.high)
    }

    /// Whether the gradient passes: strictly inside the range.
    #[inline(always)]
    fn inside(self, z: f32) -> bool {
        (z > self.low) & (z < self.high)
    }

    /// 1 where the gradient passes, else 0.
    #[inline(always)]
    fn passes(self, z: f32) -> f32 {
        self.inside(z) as u32 as f32
    }
}

/// Σ g and Σ g·(x − mean) over a plane, g = gy where the clamp passed (else exactly 0).
fn plane_grad_sums(xp: &[f32], gp: &[f32], a: f32, b: f32, mean: f32, clamp: Clamp) -> (f64, f64) {
    let whole = xp.len() / 8 * 8;
    let (s1, s2) = grad_lane_sums(&xp[..whole], &gp[..whole], a, b, mean, clamp);
    let total = |lanes: [f32; 8]| lanes.iter().map(|&v| v as f64).sum::<f64>();
    let (mut t1, mut t2) = (total(s1), total(s2));
    for (&x, &g) in xp[whole..].iter().zip(&gp[whole..]) {
        let g = if clamp.inside(a * x + b) { g } else { 0.0 };
        t1 += g as f64;
        t2 += (g * (x - mean)) as f64;
    }
    (t1, t2)
}

/// [`plane_grad_sums`]' eight lanes over whole chunks of eight: lane `l` sums the values at
/// `l, l + 8, …`. The AVX2 path computes exactly these sums (same operations, same order, no
/// fused multiply-add); LLVM does not vectorise the masked sums by itself.
fn grad_lane_sums(xp: &[f32], gp: &[f32], a: f32, b: f32, mean: f32, clamp: Clamp) -> ([f32; 8], [f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::common::simd::avx2_allowed() {
        // SAFETY: the CPU has AVX2, the only feature the function needs.
        return unsafe { grad_lane_sums_avx2(xp, gp, a, b, mean, clamp) };
    }
    let (mut s1, mut s2) = ([0.0f32; 8], [0.0f32; 8]);
    for (x8, g8) in xp.chunks_exact(8).zip(gp.chunks_exact(8)) {
        for l in 0..8 {
            let g = if clamp.inside(a * x8[l] + b) { g8[l] } else { 0.0 };
            s1[l] += g;
            s2[l] += g * (x8[l] - mean);
        }
    }
    (s1, s2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn grad_lane_sums_avx2(xp: &[f32], gp: &[f32], a: f32, b: f32, mean: f32, clamp: Clamp) -> ([f32; 8], [f32; 8]) {
    use std::arch::x86_64::*;
    let (va, vb, vmean) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_set1_ps(mean));
    let (low, high) = (_mm256_set1_ps(clamp.low), _mm256_set1_ps(clamp.high));
    let (mut s1, mut s2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x8, g8) in xp.chunks_exact(8).zip(gp.chunks_exact(8)) {
        // SAFETY: each chunk holds exactly eight f32; unaligned loads.
        let (x, g) = unsafe { (_mm256_loadu_ps(x8.as_ptr()), _mm256_loadu_ps(g8.as_ptr())) };
        let z = _mm256_add_ps(_mm256_mul_ps(va, x), vb);
        let inside = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(z, low), _mm256_cmp_ps::<_CMP_LT_OQ>(z, high));
        let g = _mm256_and_ps(g, inside);
        s1 = _mm256_add_ps(s1, g);
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(g, _mm256_sub_ps(x, vmean)));
    }
    let (mut out1, mut out2) = ([0.0f32; 8], [0.0f32; 8]);
    // SAFETY: each array holds exactly eight f32; unaligned stores.
    unsafe {
        _mm256_storeu_ps(out1.as_mut_ptr(), s1);
        _mm256_storeu_ps(out2.as_mut_ptr(), s2);
    }
    (out1, out2)
}

isa_dispatch! {
    /// `out = clamp(a·x + b)` over a plane (`out` as long as `xp`).
    fn affine_clamp_plane(out: &mut [MaybeUninit<f32>], xp: &[f32], a: f32, b: f32, clamp: Clamp) -> () {
        for (o, &v) in out.iter_mut().zip(xp) {
            o.write(clamp.apply(a * v + b));
        }
    }
}

isa_dispatch! {
    /// The input gradient over a plane: `k·(g − mean_g − (x − mean)·inv·mean_gx)` with g = gy where
    /// the clamp passed, or with fixed statistics (`mean_g = mean_gx = 0`, `k = a`) `a·g`.
    fn input_grad_plane(out: &mut [MaybeUninit<f32>], xp: &[f32], gp: &[f32], a: f32, b: f32, clamp: Clamp, fixed: bool, k: f32, mean: f32, inv: f32, mean_g: f32, mean_gx: f32) -> () {
        if fixed {
            for ((o, &v), &g) in out.iter_mut().zip(xp).zip(gp) {
                o.write(a * g * clamp.passes(a * v + b));
            }
            return;
        }
        for ((o, &v), &g) in out.iter_mut().zip(xp).zip(gp) {
            let g = g * clamp.passes(a * v + b);
            o.write(k * (g - mean_g - (v - mean) * inv * mean_gx));
        }
    }
}

/// Per-channel batch mean and biased variance, as `[mean…, variance…]`.
pub fn stats(s: &BnShape, x: &[f32]) -> Vec<f32> {
    let pairs: Vec<(f32, f32)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            // Moments about the first value, then shifted to the mean: one pass, and no
            // cancellation when the mean is large against the spread.
            let shift = x[c * s.plane];
            let (sum, sq) = s.planes(x, c).map(|p| plane_moments(p, shift)).fold((0.0, 0.0), |(a, b), (u, v)| (a + u, b + v));
            let d = sum / s.count() - shift as f64;
            let mean = shift as f64 + d;
            (mean as f32, (sq / s.count() - d * d).max(0.0) as f32)
        })
        .collect();
    pairs.iter().map(|p| p.0).chain(pairs.iter().map(|p| p.1)).collect()
}

fn scale_shift(s: &BnShape, gamma: &[f32], beta: &[f32], stats: &[f32], epsilon: f64) -> (Vec<f32>, Vec<f32>) {
    (0..s.channels)
        .map(|c| {
            let inv = 1.0 / (stats[s.channels + c] as f64 + epsilon).sqrt();
            let scale = gamma[c] as f64 * inv;
            (scale as f32, (beta[c] as f64 - stats[c] as f64 * scale) as f32)
        })
        .unzip()
}

/// `clamp(γ (x − μ) / √(σ² + ε) + β)` with the batch statistics `stats` of `x`.
pub fn forward(s: &BnShape, x: &[f32], gamma: &[f32], beta: &[f32], stats: &[f32], epsilon: f64, clamp: Clamp) -> Vec<f32> {
    let (scale, shift) = scale_shift(s, gamma, beta, stats, epsilon);
    let fill = |i: usize, out: &mut [MaybeUninit<f32>]| {
        let c = i % s.channels;
        affine_clamp_plane(out, &x[i * s.plane..][..s.plane], scale[c], shift[c], clamp);
    };
    // SAFETY: each plane of the output is as long as the input plane it is computed from.
    unsafe { par_written(x.len(), s.plane, fill) }.0
}

/// Gradients `(x, γ, β)` of [`forward`] from the output gradient `gy`. `stats` are either the
/// batch statistics of `x`, differentiated through, or with `fixed` statistics that do not
/// depend on `x` (the running ones of a frozen batch norm), for which `x`'s gradient is the
/// affine map's.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: &BnShape,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
    epsilon: f64,
    clamp: Clamp,
    fixed: bool,
    gy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (scale, shift) = scale_shift(s, gamma, beta, stats, epsilon);
    let inv: Vec<f64> = (0..s.channels).map(|c| 1.0 / (stats[s.channels + c] as f64 + epsilon).sqrt()).collect();
    // Per channel: Σ g and Σ g·x̂, with g = gy where the clamp passed.
    let sums: Vec<(f64, f64)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (a, b, mean) = (scale[c], shift[c], stats[c]);
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for (xp, gp) in s.planes(x, c).zip(s.planes(gy, c)) {
                let (u, v) = plane_grad_sums(xp, gp, a, b, mean, clamp);
                sg += u;
                sgx += v;
            }
            (sg, sgx * inv[c])
        })
        .collect();
    let gbeta: Vec<f32> = sums.iter().map(|p| p.0 as f32).collect();
    let ggamma: Vec<f32> = sums.iter().map(|p| p.1 as f32).collect();
    let fill = |i: usize, out: &mut [MaybeUninit<f32>]| {
        let c = i % s.channels;
        let (xp, gp) = (&x[i * s.plane..][..s.plane], &gy[i * s.plane..][..s.plane]);
        let k = (gamma[c] as f64 * inv[c]) as f32;
        let mean_g = (sums[c].0 / s.count()) as f32;
        let mean_gx = (sums[c].1 / s.count()) as f32;
        input_grad_plane(out, xp, gp, scale[c], shift[c], clamp, fixed, k, stats[c], inv[c] as f32, mean_g, mean_gx);
    };
    // SAFETY: each plane of the gradient is as long as the planes it is computed from.
    let gx = unsafe { par_written(x.len(), s.plane, fill) }.0;
    (gx, ggamma, gbeta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_values as values;

    /// The whole layer in f64 from the definition: statistics recomputed from x.
    fn loss_reference(s: &BnShape, x: &[f64], gamma: &[f64], beta: &[f64], eps: f64, clamp: Clamp, u: &[f32]) -> f64 {
        let mut total = 0.0;
        for c in 0..s.channels {
            let idx: Vec<usize> = (0..s.batch).flat_map(|n| (0..s.plane).map(move |j| (n * s.channels + c) * s.plane + j)).collect();
            let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
            for &i in &idx {
                let y = (gamma[c] * (x[i] - mean) / (var + eps).sqrt() + beta[c]).max(clamp.low as f64).min(clamp.high as f64);
                total += y * u[i] as f64;
            }
        }
        total
    }

    #[test]
    fn matches_the_definition_and_its_finite_differences() {
        // ReLU6's upper bound at 0.3 so that these small values reach it.
        for clamp in [Clamp::RELU, Clamp::NONE, Clamp { low: 0.0, high: 0.3 }] {
            check(clamp);
        }
    }

    fn check(clamp: Clamp) {
        let s = BnShape { batch: 3, channels: 2, plane: 5 };
        let x = values(30, 1);
        let gamma = vec![1.3f32, 0.7];
        let beta = vec![0.1f32, -0.05];
        let eps = 1e-5;
        let u = values(30, 2);
        let st = stats(&s, &x);
        let y = forward(&s, &x, &gamma, &beta, &st, eps, clamp);
        let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (x64, g64, b64) = (to64(&x), to64(&gamma), to64(&beta));
        let value: f64 = y.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((value - loss_reference(&s, &x64, &g64, &b64, eps, clamp, &u)).abs() < 1e-5);
        let (gx, gg, gb) = backward(&s, &x, &gamma, &beta, &st, eps, clamp, false, &u);
        let h = 1e-6;
        let fd = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        for i in 0..x.len() {
            let d = fd(&|e| {
                let mut xe = x64.clone();
                xe[i] += e;
                loss_reference(&s, &xe, &g64, &b64, eps, clamp, &u)
            });
            assert!((gx[i] as f64 - d).abs() < 1e-3, "x[{i}]: {} vs {d}", gx[i]);
        }
        for c in 0..2 {
            let d = fd(&|e| {
                let mut ge = g64.clone();
                ge[c] += e;
                loss_reference(&s, &x64, &ge, &b64, eps, clamp, &u)
            });
            assert!((gg[c] as f64 - d).abs() < 1e-3, "gamma[{c}]");
            let d = fd(&|e| {
                let mut be = b64.clone();
                be[c] += e;
                loss_reference(&s, &x64, &g64, &be, eps, clamp, &u)
            });
            assert!((gb[c] as f64 - d).abs() < 1e-3, "beta[{c}]");
        }
    }

    /// With fixed statistics (a frozen batch norm): the affine map and its finite differences.
    #[test]
    fn fixed_statistics_differentiate_only_the_affine_map() {
        let s = BnShape { batch: 3, channels: 2, plane: 5 };
        let x = values(30, 3);
        let (gamma, beta) = (vec![1.3f32, 0.7], vec![0.1f32, -0.05]);
        let fixed = vec![0.2f32, -0.1, 0.5, 1.7]; // means, then variances
        let (eps, u) = (1e-3, values(30, 4));
        let clamp = Clamp { low: 0.0, high: 0.3 };
        let loss = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
            (0..x.len())
                .map(|i| {
                    let c = (i / s.plane) % s.channels;
                    let z = g[c] * (x[i] - fixed[c] as f64) / (fixed[2 + c] as f64 + eps).sqrt() + b[c];
                    z.max(clamp.low as f64).min(clamp.high as f64) * u[i] as f64
                })
                .sum()
        };
        let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (x64, g64, b64) = (to64(&x), to64(&gamma), to64(&beta));
        let y = forward(&s, &x, &gamma, &beta, &fixed, eps, clamp);
        let value: f64 = y.iter().zip(&u).map(|(a, b)| *a as f64 * *b as f64).sum();
        assert!((value - loss(&x64, &g64, &b64)).abs() < 1e-5);
        assert!(y.contains(&0.3) && y.contains(&0.0), "the test does not reach both ends of the clamp");
        let (gx, gg, gb) = backward(&s, &x, &gamma, &beta, &fixed, eps, clamp, true, &u);
        let h = 1e-6;
        let bump = |v: &[f64], i: usize, e: f64| {
            let mut w = v.to_vec();
            w[i] += e;
            w
        };
        assert_eq!(gx.len(), x.len());
        for (i, &g) in gx.iter().enumerate() {
            let d = (loss(&bump(&x64, i, h), &g64, &b64) - loss(&bump(&x64, i, -h), &g64, &b64)) / (2.0 * h);
            assert!((g as f64 - d).abs() < 1e-3, "x[{i}]: {g} vs {d}");
        }
        for c in 0..2 {
            let d = (loss(&x64, &bump(&g64, c, h), &b64) - loss(&x64, &bump(&g64, c, -h), &b64)) / (2.0 * h);
            assert!((gg[c] as f64 - d).abs() < 1e-3, "gamma[{c}]: {} vs {d}", gg[c]);
            let d = (loss(&x64, &g64, &bump(&b64, c, h)) - loss(&x64, &g64, &bump(&b64, c, -h))) / (2.0 * h);
            assert!((gb[c] as f64 - d).abs() < 1e-3, "beta[{c}]: {} vs {d}", gb[c]);
        }
    }
}
