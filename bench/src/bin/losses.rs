//! Loss forward + backward time on the CPU backend, the dml side of `bench/run.sh`.
//!
//! `losses [reps] [name...]` prints one line per case: `name n d median_ms` (every loss below when
//! no name is given). Inputs match `pytorch_losses.py`: unit-length random embeddings, P×K labels
//! (K = 5 for n = 80, K = 10 for n = 1000); a proxy loss has one proxy per class of the batch (16
//! and 100), and its time includes the gradient of its proxies.

use std::time::Instant;

use dml_engine::burn::tensor::{Device, Int, Tensor, TensorData};
use dml_engine::loss::LossConfig;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

fn main() {
    dml_engine::memory::keep_freed_memory();
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let chosen: Vec<String> = std::env::args().skip(2).collect();
    let device = Device::flex().autodiff();
    let d = 512;
    let all = ["ms", "lifted", "triplet_semihard", "proxy_nca", "proxy_anchor", "norm_softmax", "soft_triple", "arcface"];
    for name in all.into_iter().filter(|n| chosen.is_empty() || chosen.iter().any(|c| c == n)) {
        for n in [80usize, 1000] {
            let per_class = if n == 80 { 5 } else { 10 };
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(n as u64);
            let mut x: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
            for row in x.chunks_mut(d) {
                let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                row.iter_mut().for_each(|v| *v /= norm);
            }
            let labels: Vec<i64> = (0..n).map(|i| (i / per_class) as i64).collect();
            let config = LossConfig::from_name(name).expect("known loss").sized_for(n / per_class, d).expect("sizes fit");
            let loss = config.init(&device);
            let mut times = Vec::with_capacity(reps);
            for rep in 0..reps + 3 {
                let emb = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, d]), &device).require_grad();
                let lab = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &device);
                let start = Instant::now();
                let value = loss.forward(emb.clone(), lab);
                let grads = value.backward();
                let grad = emb.grad(&grads).expect("gradient");
                let _: Vec<f32> = grad.try_into_vec_as().expect("read back");
                if rep >= 3 {
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
            }
            times.sort_by(f64::total_cmp);
            println!("{name} {n} {d} {:.3}", times[times.len() / 2]);
        }
    }
}
