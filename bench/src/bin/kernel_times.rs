//! Time of each host kernel of the default job's small CNN at batch 80 (28×28 grey input):
//! convolution forward / backward, batch norm statistics / forward / backward, max pooling
//! forward / backward, median of repeated calls. Their sum against `train_step`'s step time says
//! how much of a step lies outside the kernels (autodiff, loss, optimiser, allocation).

use std::time::Instant;

use dml_engine::kernels::batch_norm::{self, BnShape, Clamp};
use dml_engine::kernels::conv2d::{self, ConvGeometry};
use dml_engine::kernels::max_pool::{self, PoolShape};

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

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let batch = 80;
    let layers = [(1, 32, 28), (32, 32, 28), (32, 64, 14), (64, 64, 14), (64, 128, 7)];
    let mut total = 0.0;
    for (l, &(ci, co, size)) in layers.iter().enumerate() {
        let g = ConvGeometry {
            batch,
            channels_in: ci,
            height: size,
            width: size,
            channels_out: co,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
        };
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
            let p = PoolShape { planes: batch * co, height: size, width: size, window: [2, 2] };
            let (_, arg) = max_pool::forward(&p, &gy);
            let gp = values(batch * co * size * size / 4, 50);
            pool = (median_ms(reps, || drop(max_pool::forward(&p, &gy))), median_ms(reps, || drop(max_pool::backward(&p, &arg, &gp))));
        }
        let flops = 2.0 * (batch * co * size * size * ci * 9) as f64;
        let sum = fwd + bwd + bn_stats + bn_fwd + bn_bwd + pool.0 + pool.1;
        total += sum;
        println!(
            "conv{} {ci}→{co} {size}²: conv fwd {fwd:.2} ms ({:.0} GFLOP/s), bwd {bwd:.2} ms ({:.0} GFLOP/s); bn stats {bn_stats:.2}, fwd {bn_fwd:.2}, bwd {bn_bwd:.2}; pool {:.2} / {:.2}; sum {sum:.2} ms",
            l + 1,
            flops / fwd / 1e6,
            flops * if l > 0 { 2.0 } else { 1.0 } / bwd / 1e6,
            pool.0,
            pool.1
        );
    }
    println!("all kernels: {total:.1} ms");
}
