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

#[test]
fn a_checkpoint_of_another_training_set_or_with_a_bad_cursor_is_refused() {
    let config = config("ms");
    let device = Device::flex();
    let mut trainer = Trainer::new(&config, &device).unwrap();
    trainer.step().unwrap();
    let checkpoint = trainer.checkpoint().unwrap();
    let summary = checkpoint.state.train_set.clone().expect("recorded");
    assert_eq!((summary.images, summary.classes), (trainer.inputs().train_labels().len(), 5));
    Trainer::resume(&config, &device, &checkpoint).unwrap();

    let mut moved = Checkpoint::from_bytes(&checkpoint.to_bytes()).unwrap();
    moved.state.sampler.cursor = 10_000;
    let error = Trainer::resume(&config, &device, &moved).err().expect("refused").to_string();
    assert!(error.contains("at class 10000 of an epoch of 5 classes"), "{error}");

    let mut other = Checkpoint::from_bytes(&checkpoint.to_bytes()).unwrap();
    other.state.train_set = Some(dml_engine::train::TrainSetSummary { images: 7, classes: 3, digest: "0".into() });
    let error = Trainer::resume(&config, &device, &other).err().expect("refused").to_string();
    assert!(error.contains("the training set changed since the run started (7 images of 3 classes then"), "{error}");

    // Checkpoints written before the summary was recorded still resume.
    let mut old = Checkpoint::from_bytes(&checkpoint.to_bytes()).unwrap();
    old.state.train_set = None;
    Trainer::resume(&config, &device, &old).unwrap();
}

#[test]
fn the_checkpoint_is_written_before_the_model() {
    // A model file that cannot be replaced (a non-empty folder in its place) stands for a crash
    // between the two writes: the checkpoint must already be there, so that the run folder never
    // holds a model newer than every checkpoint.
    let dir = std::env::temp_dir().join(format!("dml-save-order-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = config("ms");
    config.run.iterations = 1;
    config.run.eval_interval = 0;
    let run = dml_engine::train::RunDir::create(&dir, &config).unwrap();
    std::fs::create_dir_all(run.model_path().join("blocker")).unwrap();
    let mut trainer = Trainer::new(&config, &Device::flex()).unwrap();
    struct Quiet;
    impl dml_engine::train::TrainObserver for Quiet {}
    let stop = std::sync::atomic::AtomicBool::new(false);
    assert!(dml_engine::train::run(&run, &mut trainer, &mut Quiet, &stop).is_err());
    let saved = Checkpoint::load(&run.checkpoint_path()).expect("the checkpoint was written first");
    assert_eq!(saved.state.iteration, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
