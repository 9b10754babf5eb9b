//! Time of one training step (forward, `ms` loss, backward, Adam), median over steps after a
//! warm-up, on the CPU backend or another (`--backend wgpu`; a GPU's first steps compile and tune
//! its kernels, hence `--warmup`).
//!
//! `train_step [--backend cpu|wgpu|cuda] [--warmup N] [STEPS] [BACKBONE SIZE BATCH]`: by default
//! the default job's small CNN (batch 80 of 28×28 grey images) on the CPU; e.g.
//! `train_step 5 resnet18 224 32` for ResNet-18 on 224×224 photos.

use std::time::Instant;

use dml_engine::backend::{self, BackendChoice};
use dml_engine::burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use dml_engine::burn::tensor::{Distribution, Int, Tensor, TensorData};
use dml_engine::loss::LossConfig;
use dml_engine::model::ModelConfig;

fn main() {
    dml_engine::memory::keep_freed_memory();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut option = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        let value = args.get(at + 1).unwrap_or_else(|| panic!("{name} needs a value")).clone();
        args.drain(at..at + 2);
        Some(value)
    };
    let backend: BackendChoice = option("--backend").map_or(BackendChoice::Cpu, |b| b.parse().unwrap_or_else(|e| panic!("{e}")));
    let warmup: usize = option("--warmup").map_or(2, |w| w.parse().expect("--warmup N"));
    let selected = backend::select(backend).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("backend: {}", selected.description);
    let steps: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let backbone = args.get(1).map_or("small-cnn", String::as_str);
    let size: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(28);
    let batch: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(80);
    let channels = if backbone == "small-cnn" { 1 } else { 3 };
    let config = ModelConfig {
        backbone: backbone.parse().unwrap_or_else(|e| panic!("{e}")),
        dim: if backbone == "small-cnn" { 64 } else { 512 },
        ..Default::default()
    };
    let device = selected.device.autodiff();
    let mut model = config.init_seeded(channels, 0, &device);
    let mut optim = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(5e-4))).init();
    let loss = LossConfig::default().init(&device);
    let per_class = if backbone == "small-cnn" { 16 } else { 8 };
    let labels: Vec<i64> = (0..batch).map(|i| (i / per_class) as i64).collect();
    let mut times = Vec::new();
    for step in 0..steps + warmup {
        let images = Tensor::<4>::random([batch, channels, size, size], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [batch]), &device);
        let start = Instant::now();
        let value = loss.forward(model.forward(images), y);
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let _ = value.into_scalar::<f32>();
        // The optimiser's updates may still be queued on a GPU.
        device.sync().expect("device sync");
        if step >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{backbone} {size}x{size} batch {batch} step: median {median:.1} ms, min {:.1} ms, {:.1} images/s",
        times[0],
        batch as f64 * 1e3 / median
    );
}
