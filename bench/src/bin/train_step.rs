//! Time of one training step of the default job's small CNN (batch 80, 28×28, `ms` loss, Adam),
//! median over steps after a warm-up, on the CPU backend.

use std::time::Instant;

use dml_engine::burn::optim::{AdamConfig, GradientsParams, decay::WeightDecayConfig};
use dml_engine::burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use dml_engine::loss::LossConfig;
use dml_engine::model::SmallCnnConfig;

fn main() {
    let steps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let device = Device::flex().autodiff();
    let mut model = SmallCnnConfig::default().init(&device);
    let mut optim = AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(5e-4))).init();
    let loss = LossConfig::default().init(&device);
    let labels: Vec<i64> = (0..80).map(|i| i / 16).collect();
    let mut times = Vec::new();
    for step in 0..steps + 3 {
        let images = Tensor::<4>::random([80, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [80]), &device);
        let start = Instant::now();
        let value = loss.forward(model.forward(images), y);
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optim.step(1e-3, model, grads);
        let _ = value.into_scalar::<f32>();
        if step >= 3 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    println!("small_cnn step: median {:.1} ms, min {:.1} ms", times[times.len() / 2], times[0]);
}
