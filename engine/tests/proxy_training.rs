//! A proxy loss in a training run: its sizes come from the data and the model, its proxies W
//! learn with the model at `lr × optimizer.loss_lr_mult` (the loss's published multiple unless
//! set), and a config that disagrees with the data is refused naming both.

use dml_engine::burn::tensor::Device;
use dml_engine::train::{TrainConfig, Trainer};

fn config(overrides: &[&str]) -> TrainConfig {
    let mut all = vec!["run.seed=3".to_string()];
    all.extend(overrides.iter().map(|s| s.to_string()));
    TrainConfig::default().with_overrides(&all).unwrap()
}

fn proxies(trainer: &Trainer) -> Vec<f32> {
    trainer.loss().proxies().expect("a proxy loss").try_into_vec_as::<f32>().unwrap()
}

/// W after one step minus W before it.
fn first_step_change(overrides: &[&str]) -> Vec<f32> {
    let mut trainer = Trainer::new(&config(overrides), &Device::flex()).unwrap();
    let before = proxies(&trainer);
    trainer.step().unwrap();
    proxies(&trainer).iter().zip(&before).map(|(a, b)| a - b).collect()
}

#[test]
fn sizes_come_from_the_training_split_and_the_model() {
    let trainer = Trainer::new(&config(&["loss.name=proxy_anchor", "model.dim=24"]), &Device::flex()).unwrap();
    // The bundled Fashion-MNIST trains on classes 0–4.
    assert_eq!(trainer.loss().proxies().unwrap().dims(), [5, 24]);
    let trainer = Trainer::new(&config(&["loss.name=soft_triple", "loss.centers_per_class=3"]), &Device::flex()).unwrap();
    assert_eq!(trainer.loss().proxies().unwrap().dims(), [15, 64], "num_classes × K rows of the model's 64");
    // Given and equal to the data: accepted.
    Trainer::new(&config(&["loss.name=arcface", "loss.num_classes=5", "loss.dim=64"]), &Device::flex()).unwrap();
}

#[test]
fn sizes_that_disagree_with_the_data_are_refused_naming_both() {
    let error = Trainer::new(&config(&["loss.name=norm_softmax", "loss.num_classes=100"]), &Device::flex()).err().expect("refused");
    let message = error.to_string();
    assert!(message.contains("loss.num_classes = 100 but the training split has 5"), "{message}");
    let message = TrainConfig::default().with_overrides(&["loss.name=norm_softmax".into(), "loss.dim=32".into()]).unwrap_err().to_string();
    assert!(message.contains("loss.dim = 32 but model.dim = 64"), "{message}");
}

#[test]
fn proxies_learn_at_their_own_multiple_of_the_learning_rate() {
    // Plain SGD (no momentum, no decay): the first step moves W by −lr × mult × ∇W, and ∇W is the
    // same in both runs (same seed, same batch, same model). W is N(0, 1), so each difference
    // carries the rounding of values up to about 4 (a few 1e-7).
    let sgd = ["loss.name=proxy_nca", "optimizer.name=sgd", "optimizer.momentum=0.0", "optimizer.weight_decay=0.0", "optimizer.lr=1.0"];
    let once = first_step_change(&[&sgd[..], &["optimizer.loss_lr_mult=1.0"]].concat());
    let thrice = first_step_change(&[&sgd[..], &["optimizer.loss_lr_mult=3.0"]].concat());
    let scale = once.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-6, "W moved: {scale}");
    for (a, b) in once.iter().zip(&thrice) {
        assert!((b - 3.0 * a).abs() <= 1e-4 * scale + 2e-6, "3× the multiple, 3× the step: {a} vs {b}");
    }
    // Multiple 0: W stays where it started, exactly, while the model learns.
    assert!(first_step_change(&["loss.name=proxy_anchor", "optimizer.loss_lr_mult=0.0"]).iter().all(|&d| d == 0.0));
    // Unset: the loss's published multiple (100 for Proxy-Anchor).
    assert_eq!(
        first_step_change(&["loss.name=proxy_anchor"]),
        first_step_change(&["loss.name=proxy_anchor", "optimizer.loss_lr_mult=100.0"])
    );
}

#[test]
fn cross_batch_memory_is_refused_for_losses_without_a_reference_form() {
    for loss in ["lifted", "nca", "margin", "proxy_anchor"] {
        let message =
            TrainConfig::default().with_overrides(&[format!("loss.name={loss}"), "xbm.memory_size=100".into()]).unwrap_err().to_string();
        assert!(message.contains(&format!("not with the loss {loss}")), "{message}");
    }
    let message = TrainConfig::default().with_overrides(&["xbm.memory_size=100000000".into()]).unwrap_err().to_string();
    assert!(message.contains("xbm.memory_size = 100000000"), "{message}");
}
