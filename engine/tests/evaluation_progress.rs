//! An evaluation reports its progress through the test images batch by batch: over queries then
//! gallery for In-Shop, and to a training run's observer before each evaluation's result.

#[path = "../../tests/common/scratch.rs"]
mod scratch;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use dml_engine::burn::tensor::Device;
use dml_engine::image::RgbImage;
use dml_engine::train::{self, Evaluation, Outcome, RunDir, TrainConfig, TrainObserver, Trainer};
use scratch::scratch;

/// An In-Shop tree: items 1 and 2 train; item 7 has 2 queries and 3 gallery images, item 9 has 2
/// and 2.
fn in_shop(root: &Path) {
    let mut lines = Vec::new();
    for (item, status, n) in [(1u32, "train", 4), (2, "train", 4), (7, "query", 2), (7, "gallery", 3), (9, "query", 2), (9, "gallery", 2)] {
        for k in 0..n {
            let rel = format!("img/MEN/Denim/id_{item:08}/{k:02}_{status}.png");
            let path = root.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbImage::from_fn(20, 20, |x, y| dml_engine::image::Rgb([(x * 12) as u8, (y * 12) as u8, (item * 20 + k) as u8])).save(&path).unwrap();
            lines.push(format!("{rel} id_{item:08} {status}"));
        }
    }
    let list = format!("{}\nimage_name item_id evaluation_status\n{}\n", lines.len(), lines.join("\n"));
    std::fs::write(root.join("list_eval_partition.txt"), list).unwrap();
}

#[test]
fn in_shop_progress_counts_queries_then_gallery_in_batches() {
    let dir = scratch("eval-progress-inshop");
    in_shop(&dir);
    let config = TrainConfig::default()
        .with_overrides(&[
            "data.dataset=\"inshop\"".into(),
            format!("data.root={:?}", dir.to_str().unwrap()),
            "augment.resize=20".into(),
            "augment.crop=16".into(),
            "eval.batch_size=3".into(),
            "sampler.p=2".into(),
        ])
        .unwrap();
    let mut trainer = Trainer::new(&config, &Device::flex().autodiff()).unwrap();
    let mut counts = Vec::new();
    let evaluation = trainer.evaluate(&mut |done, total| counts.push((done, total))).unwrap();
    // Four queries in batches of three, then five gallery images, counted on from the queries.
    assert_eq!(counts, vec![(3, 9), (4, 9), (7, 9), (9, 9)]);
    assert_eq!(evaluation.labels.len(), 5);
    assert_eq!(evaluation.query.as_ref().map(|q| q.labels.len()), Some(4));
}

#[derive(Debug, PartialEq)]
enum Event {
    Embedding(usize, usize),
    Evaluated(u64),
}

#[derive(Default)]
struct Recorder(Vec<Event>);

impl TrainObserver for Recorder {
    fn embedding(&mut self, done: usize, total: usize) {
        self.0.push(Event::Embedding(done, total));
    }

    fn evaluated(&mut self, iteration: u64, _evaluation: &Evaluation) {
        self.0.push(Event::Evaluated(iteration));
    }
}

#[test]
fn a_training_run_reports_each_evaluations_progress_before_its_result() {
    let dir = scratch("eval-progress-run");
    let config = TrainConfig::default()
        .with_overrides(&["run.iterations=2".into(), "run.eval_interval=1".into(), "eval.batch_size=2000".into()])
        .unwrap();
    let run = RunDir::create(&dir.join("run"), &config).unwrap();
    let mut trainer = Trainer::new(&config, &Device::flex().autodiff()).unwrap();
    let mut recorder = Recorder::default();
    let outcome = train::run(&run, &mut trainer, &mut recorder, &AtomicBool::new(false)).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    let one_evaluation = |iteration| {
        [Event::Embedding(2000, 5000), Event::Embedding(4000, 5000), Event::Embedding(5000, 5000), Event::Evaluated(iteration)]
    };
    let expected: Vec<Event> = [0, 1, 2].into_iter().flat_map(one_evaluation).collect();
    assert_eq!(recorder.0, expected);
}
