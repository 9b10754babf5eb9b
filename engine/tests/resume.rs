//! A run resumed from a checkpoint continues bit for bit as if it had never stopped.

use dml_engine::burn::module::Module;
use dml_engine::burn::tensor::Device;
use dml_engine::train::{Checkpoint, TrainConfig, Trainer};

fn config(loss: &str) -> TrainConfig {
    let mut config = TrainConfig::default().with_overrides(&[format!("loss.name=\"{loss}\""), "run.seed=7".into()]).unwrap();
    config.run.iterations = 6;
    config
}

/// The model's embeddings of the first test images, in inference mode.
fn probe(trainer: &Trainer) -> Vec<f32> {
    let batch = trainer.inputs().test_batch(0, 0..40).unwrap();
    trainer.model().valid().embed_batch(&batch, &Device::flex())
}

fn assert_same(a: &[f32], b: &[f32], what: &str) {
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: max |difference| {worst:e}");
}

fn check(loss: &str, optimizer: &str, backbone_lr_mult: f64) {
    let config = config(loss)
        .with_overrides(&[format!("optimizer.name=\"{optimizer}\""), format!("optimizer.backbone_lr_mult={backbone_lr_mult:?}")])
        .unwrap();
    let device = Device::flex();
    let mut straight = Trainer::new(&config, &device).unwrap();
    let mut interrupted = Trainer::new(&config, &device).unwrap();
    let mut losses = Vec::new();
    for _ in 0..3 {
        losses.push(straight.step().unwrap().loss);
        assert_eq!(interrupted.step().unwrap().loss, *losses.last().unwrap());
    }
    let bytes = interrupted.checkpoint().unwrap().to_bytes();
    drop(interrupted);
    let mut resumed = Trainer::resume(&config, &device, &Checkpoint::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(resumed.iteration(), 3);
    assert_same(&probe(&resumed), &probe(&straight), &format!("{loss}/{optimizer}: weights after loading the checkpoint"));
    for i in 3..6 {
        let a = straight.step().unwrap();
        let b = resumed.step().unwrap();
        assert_eq!(a, b, "{loss}/{optimizer}: step {}", i + 1);
    }
    assert_same(&probe(&resumed), &probe(&straight), &format!("{loss}/{optimizer}: weights at the end"));
}

#[test]
fn resumed_adam_run_equals_uninterrupted_run() {
    check("ms", "adam", 1.0);
}

#[test]
fn resumed_sgd_margin_run_with_backbone_multiplier_equals_uninterrupted_run() {
    check("margin", "sgd", 0.1);
}
