//! A run resumed from a checkpoint continues bit for bit as if it had never stopped.

use dml_engine::burn::module::Module;
use dml_engine::burn::tensor::Device;
use dml_engine::train::{Checkpoint, StepReport, TrainConfig, Trainer};

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

/// A proxy loss's W, bit for bit (empty for a pair loss).
fn proxies(trainer: &Trainer) -> Vec<f32> {
    trainer.loss().proxies().map(|w| w.try_into_vec_as::<f32>().unwrap()).unwrap_or_default()
}

/// The cross-batch memory's rows and labels as a checkpoint stores them (empty without one).
fn memory(trainer: &Trainer) -> Vec<u8> {
    trainer.memory().map(|m| m.to_bytes()).unwrap_or_default()
}

fn check(loss: &str, optimizer: &str, backbone_lr_mult: f64, extra: &[&str]) -> Vec<StepReport> {
    let mut overrides = vec![format!("optimizer.name=\"{optimizer}\""), format!("optimizer.backbone_lr_mult={backbone_lr_mult:?}")];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    let config = config(loss).with_overrides(&overrides).unwrap();
    let device = Device::flex();
    let mut straight = Trainer::new(&config, &device).unwrap();
    let mut interrupted = Trainer::new(&config, &device).unwrap();
    let mut reports = Vec::new();
    for _ in 0..3 {
        reports.push(straight.step().unwrap());
        assert_eq!(interrupted.step().unwrap(), *reports.last().unwrap());
    }
    let bytes = interrupted.checkpoint().unwrap().to_bytes();
    drop(interrupted);
    let mut resumed = Trainer::resume(&config, &device, &Checkpoint::from_bytes(&bytes).unwrap()).unwrap();
    assert_eq!(resumed.iteration(), 3);
    assert_same(&probe(&resumed), &probe(&straight), &format!("{loss}/{optimizer}: weights after loading the checkpoint"));
    assert_same(&proxies(&resumed), &proxies(&straight), &format!("{loss}/{optimizer}: proxies after loading the checkpoint"));
    assert_eq!(memory(&resumed), memory(&straight), "{loss}/{optimizer}: the memory after loading the checkpoint");
    for i in 3..6 {
        let a = straight.step().unwrap();
        let b = resumed.step().unwrap();
        assert_eq!(a, b, "{loss}/{optimizer}: step {}", i + 1);
        reports.push(a);
    }
    assert_same(&probe(&resumed), &probe(&straight), &format!("{loss}/{optimizer}: weights at the end"));
    assert_same(&proxies(&resumed), &proxies(&straight), &format!("{loss}/{optimizer}: proxies at the end"));
    assert_eq!(memory(&resumed), memory(&straight), "{loss}/{optimizer}: the memory at the end");
    reports
}

#[test]
fn resumed_adam_run_equals_uninterrupted_run() {
    check("ms", "adam", 1.0, &[]);
}

#[test]
fn resumed_sgd_margin_run_with_backbone_multiplier_equals_uninterrupted_run() {
    check("margin", "sgd", 0.1, &[]);
}

#[test]
fn resumed_proxy_anchor_run_with_its_trained_proxies_equals_uninterrupted_run() {
    check("proxy_anchor", "adam", 1.0, &[]);
    check("soft_triple", "sgd", 0.5, &["optimizer.loss_lr_mult=3.0"]);
}

#[test]
fn resumed_run_with_cross_batch_memory_equals_uninterrupted_run() {
    // Batches of 80 into a memory of 200 from the second step on: the checkpoint after step 3
    // holds two batches, and from step 4 on the oldest rows are dropped.
    let reports = check("ms", "adam", 1.0, &["xbm.memory_size=200", "xbm.start_iteration=1", "xbm.weight=0.5"]);
    let terms: Vec<bool> = reports.iter().map(|r| r.xbm_loss.is_some()).collect();
    assert_eq!(terms, [false, false, true, true, true, true], "the memory is used from the third step, once it holds a batch");
    for r in &reports[2..] {
        assert!(r.xbm_loss.unwrap() > 0.0 && r.loss > r.xbm_loss.unwrap() * 0.5, "{r:?}");
    }
    check("triplet_semihard", "sgd", 1.0, &["xbm.memory_size=100"]);
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
