//! Time of each host kernel of the default job's small CNN at batch 80 (28×28 grey input):
//! convolution forward / backward, batch norm statistics / forward / backward, max pooling
//! forward / backward, median of repeated calls. Their sum against `train_step`'s step time says
//! how much of a step lies outside the kernels (autodiff, loss, optimiser, allocation).
//!
//! `kernel_times [REPS] resnet18`: instead, each distinct convolution of ResNet-18 at batch 32
//! of 224×224 photos, forward and backward, with its count in the network and GFLOP/s, and its
//! stem's max pool.
//!
//! GFLOP/s count a direct convolution's multiply-adds, also for the layers that run by
//! Winograd's algorithm (fewer actual operations); those layers also show the im2col kernel's
//! times, the baseline the algorithm replaced.

use std::time::Instant;

use dml_kernels::batch_norm::kernel::{self as batch_norm, BnShape};
use dml_kernels::conv2d::{self, ConvGeometry, winograd};
use dml_kernels::max_pool::kernel as max_pool;
use dml_kernels::{Clamp, Pooling};

/// Values in (−0.5, 0.5), different per seed; any spread of signs and magnitudes does for timing.
fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len).map(|i| 0.5 * ((i as f32 * 0.618_034 + seed as f32 * 1.3).sin())).collect()
}

fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

/// For a convolution that runs by Winograd's algorithm, the im2col kernel's forward and backward
/// times on the same data; empty for the others.
fn im2col_times(reps: usize, g: &ConvGeometry, x: &[f32], w: &[f32], b: Option<&[f32]>, gy: &[f32], want_input: bool) -> String {
    if !winograd::applies(g) {
        return String::new();
    }
    let fwd = median_ms(reps, || drop(conv2d::im2col_forward(g, x, w, b)));
    let bwd = median_ms(reps, || drop(conv2d::im2col_backward(g, x, w, gy, want_input)));
    format!(" [Winograd; im2col: fwd {fwd:.2} ms, bwd {bwd:.2} ms]")
}

/// ResNet-18's convolutions at 224 × 224: (count, in, out, input size, kernel, stride, padding).
const RESNET18: [(usize, usize, usize, usize, usize, usize, usize); 11] = [
    (1, 3, 64, 224, 7, 2, 3),
    (4, 64, 64, 56, 3, 1, 1),
    (1, 64, 128, 56, 3, 2, 1),
    (1, 64, 128, 56, 1, 2, 0),
    (3, 128, 128, 28, 3, 1, 1),
    (1, 128, 256, 28, 3, 2, 1),
    (1, 128, 256, 28, 1, 2, 0),
    (3, 256, 256, 14, 3, 1, 1),
    (1, 256, 512, 14, 3, 2, 1),
    (1, 256, 512, 14, 1, 2, 0),
    (3, 512, 512, 7, 3, 1, 1),
];

fn resnet18_convolutions(reps: usize) {
    let batch = 32;
    let mut total = 0.0;
    for (l, &(count, ci, co, size, k, stride, pad)) in RESNET18.iter().enumerate() {
        let g = ConvGeometry::square(batch, ci, size, co, k, stride, pad);
        let x = values(batch * ci * size * size, l as u64);
        let w = values(co * ci * k * k, 10 + l as u64);
        let gy = values(batch * co * g.out_height() * g.out_width(), 30 + l as u64);
        let want_input = l > 0;
        let fwd = median_ms(reps, || drop(conv2d::forward(&g, &x, &w, None)));
        let bwd = median_ms(reps, || drop(conv2d::backward(&g, &x, &w, &gy, want_input)));
        let flops = 2.0 * (batch * co * g.out_height() * g.out_width() * ci * k * k) as f64;
        total += count as f64 * (fwd + bwd);
        println!(
            "{count} × {ci}→{co} {size}² {k}×{k}/{stride}: fwd {fwd:.1} ms ({:.0} GFLOP/s), bwd {bwd:.1} ms ({:.0} GFLOP/s); × {count}: {:.0} ms{}",
            flops / fwd / 1e6,
            flops * if want_input { 2.0 } else { 1.0 } / bwd / 1e6,
            count as f64 * (fwd + bwd),
            im2col_times(reps, &g, &x, &w, None, &gy, want_input)
        );
    }
    println!("all convolutions of a step: {total:.0} ms");
    // The stem's max pool: 3 × 3 / 2 with padding 1, overlapping windows.
    let p = Pooling { window: [3, 3], stride: [2, 2], padding: [1, 1], ceil_mode: false }.over(batch * 64, 112, 112);
    let x = values(p.planes * 112 * 112, 70);
    let (_, arg) = max_pool::forward(&p, &x);
    let gy = values(p.planes * p.out_height() * p.out_width(), 71);
    let fwd = median_ms(reps, || drop(max_pool::forward(&p, &x)));
    let bwd = median_ms(reps, || drop(max_pool::backward(&p, &arg, &gy)));
    println!("max pool 3×3/2 of 64 × 112²: fwd {fwd:.1} ms, bwd {bwd:.1} ms");
}

fn main() {
    dml_engine::memory::keep_freed_memory();
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    if std::env::args().nth(2).as_deref() == Some("resnet18") {
        return resnet18_convolutions(reps);
    }
    let batch = 80;
    let layers = [(1, 32, 28), (32, 32, 28), (32, 64, 14), (64, 64, 14), (64, 128, 7)];
    let mut total = 0.0;
    for (l, &(ci, co, size)) in layers.iter().enumerate() {
        let g = ConvGeometry::square(batch, ci, size, co, 3, 1, 1);
        let x = values(batch * ci * size * size, l as u64);
        let w = values(co * ci * 9, 10 + l as u64);
        let b = values(co, 20 + l as u64);
        let gy = values(batch * co * size * size, 30 + l as u64);
        let fwd = median_ms(reps, || drop(conv2d::forward(&g, &x, &w, Some(&b))));
        let bwd = median_ms(reps, || drop(conv2d::backward(&g, &x, &w, &gy, l > 0)));
        let s = BnShape { batch, channels: co, plane: size * size };
        let gamma = values(co, 40);
        let beta = values(co, 41);
        let stats = batch_norm::stats(&s, &gy);
        let bn_stats = median_ms(reps, || drop(batch_norm::stats(&s, &gy)));
        let bn_fwd = median_ms(reps, || drop(batch_norm::forward(&s, &gy, &gamma, &beta, &stats, 1e-5, Clamp::RELU)));
        let gz = values(gy.len(), 60 + l as u64);
        let bn_bwd = median_ms(reps, || drop(batch_norm::backward(&s, &gy, &gamma, &beta, &stats, 1e-5, Clamp::RELU, false, &gz)));
        let mut pool = (0.0, 0.0);
        if l == 1 || l == 3 {
            let p = Pooling::tiled([2, 2]).over(batch * co, size, size);
            let (_, arg) = max_pool::forward(&p, &gy);
            let gp = values(batch * co * size * size / 4, 50);
            pool = (median_ms(reps, || drop(max_pool::forward(&p, &gy))), median_ms(reps, || drop(max_pool::backward(&p, &arg, &gp))));
        }
        let flops = 2.0 * (batch * co * size * size * ci * 9) as f64;
        let sum = fwd + bwd + bn_stats + bn_fwd + bn_bwd + pool.0 + pool.1;
        total += sum;
        println!(
            "conv{} {ci}→{co} {size}²: conv fwd {fwd:.2} ms ({:.0} GFLOP/s), bwd {bwd:.2} ms ({:.0} GFLOP/s){}; bn stats {bn_stats:.2}, fwd {bn_fwd:.2}, bwd {bn_bwd:.2}; pool {:.2} / {:.2}; sum {sum:.2} ms",
            l + 1,
            flops / fwd / 1e6,
            flops * if l > 0 { 2.0 } else { 1.0 } / bwd / 1e6,
            im2col_times(reps, &g, &x, &w, Some(&b), &gy, l > 0),
            pool.0,
            pool.1
        );
    }
    println!("all kernels: {total:.1} ms");
}
