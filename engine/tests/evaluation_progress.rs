//! An evaluation reports its progress through the test images batch by batch: over queries then
//! gallery for In-Shop, and to a training run's observer before each evaluation's result. A stop
//! raised during an evaluation abandons it at a checkpoint, and the resumed run makes it up.

#[path = "../../tests/common/scratch.rs"]
mod scratch;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use dml_engine::burn::tensor::Device;
use dml_engine::image::RgbImage;
use dml_engine::train::{self, Checkpoint, Evaluation, MetricsLine, Outcome, RunDir, StepReport, TrainConfig, TrainObserver, Trainer};
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
            RgbImage::from_fn(20, 20, |x, y| dml_engine::image::Rgb([(x * 12) as u8, (y * 12) as u8, (item * 20 + k) as u8]))
                .save(&path)
                .unwrap();
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
    let evaluation = trainer
        .evaluate(&mut |done, total| {
            counts.push((done, total));
            ControlFlow::Continue(())
        })
        .unwrap();
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
    let one_evaluation =
        |iteration| [Event::Embedding(2000, 5000), Event::Embedding(4000, 5000), Event::Embedding(5000, 5000), Event::Evaluated(iteration)];
    let expected: Vec<Event> = [0, 1, 2].into_iter().flat_map(one_evaluation).collect();
    assert_eq!(recorder.0, expected);
}

/// Raises `stop` after the first batch of the evaluation at iteration `at`.
struct StopDuringEvaluation<'a> {
    at: u64,
    iteration: u64,
    stop: &'a AtomicBool,
    stopped_after: Option<usize>,
}

impl TrainObserver for StopDuringEvaluation<'_> {
    fn step(&mut self, report: &StepReport, _total: u64) {
        self.iteration = report.iteration;
    }

    fn embedding(&mut self, done: usize, _total: usize) {
        if self.iteration == self.at && self.stopped_after.is_none() {
            self.stop.store(true, Ordering::SeqCst);
            self.stopped_after = Some(done);
        }
    }
}

#[test]
fn a_stop_during_an_evaluation_checkpoints_at_once_and_the_resumed_run_makes_the_evaluation_up() {
    let dir = scratch("eval-stop");
    let root = dir.join("images");
    // Classes 0 and 1 train, 2 and 3 (twelve images, three batches of four) test.
    for class in 0..4u8 {
        std::fs::create_dir_all(root.join(format!("class{class}"))).unwrap();
        for k in 0..6u8 {
            let image = RgbImage::from_fn(20, 20, |x, y| dml_engine::image::Rgb([x as u8 * 12, y as u8 * 12, class * 60 + k * 9]));
            image.save(root.join(format!("class{class}/{k}.png"))).unwrap();
        }
    }
    let config = TrainConfig::default()
        .with_overrides(&[
            "data.dataset=\"folder\"".into(),
            format!("data.root={:?}", root.to_str().unwrap()),
            "augment.resize=20".into(),
            "augment.crop=16".into(),
            "sampler.p=2".into(),
            "eval.batch_size=4".into(),
            "run.iterations=4".into(),
            "run.eval_interval=2".into(),
        ])
        .unwrap();
    let device = Device::flex().autodiff();
    let straight = RunDir::create(&dir.join("straight"), &config).unwrap();
    let mut trainer = Trainer::new(&config, &device).unwrap();
    let outcome = train::run(&straight, &mut trainer, &mut Recorder::default(), &AtomicBool::new(false)).unwrap();
    assert!(matches!(outcome, Outcome::Finished(_)));
    let reference = straight.metrics().unwrap();
    let evaluated: Vec<u64> = reference
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Eval { iteration, .. } => Some(*iteration),
            MetricsLine::Train { .. } => None,
        })
        .collect();
    assert_eq!(evaluated, [0, 2, 4]);

    // Before training, halfway and the final evaluation.
    for at in [0, 2, 4] {
        let run = RunDir::create(&dir.join(format!("stopped-at-{at}")), &config).unwrap();
        let stop = AtomicBool::new(false);
        let mut observer = StopDuringEvaluation { at, iteration: 0, stop: &stop, stopped_after: None };
        let mut trainer = Trainer::new(&config, &device).unwrap();
        let outcome = train::run(&run, &mut trainer, &mut observer, &stop).unwrap();
        assert!(matches!(outcome, Outcome::Stopped(i) if i == at), "stop at {at}: {outcome:?}");
        assert_eq!(observer.stopped_after, Some(4), "stop at {at}: stopped after the first batch");
        let lines = run.metrics().unwrap();
        let logged_before_the_stop = |l: &&MetricsLine| match l {
            MetricsLine::Eval { iteration, .. } => *iteration < at,
            MetricsLine::Train { iteration, .. } => *iteration <= at,
        };
        let before_stop: Vec<MetricsLine> = reference.iter().filter(logged_before_the_stop).cloned().collect();
        assert_eq!(lines, before_stop, "stop at {at}: no line for the abandoned evaluation");
        assert!(!run.embeddings_path().exists());

        let checkpoint = Checkpoint::load(&run.checkpoint_path()).unwrap();
        assert_eq!(checkpoint.state.iteration, at);
        let mut resumed = Trainer::resume(&config, &device, &checkpoint).unwrap();
        let mut recorder = Recorder::default();
        let outcome = train::run(&run, &mut resumed, &mut recorder, &AtomicBool::new(false)).unwrap();
        assert!(matches!(outcome, Outcome::Finished(_)));
        assert_eq!(recorder.0.iter().find(|e| matches!(e, Event::Evaluated(_))), Some(&Event::Evaluated(at)));
        assert_eq!(run.metrics().unwrap(), reference, "stop at {at}: the resumed run's metrics");
        assert_eq!(
            std::fs::read(run.embeddings_path()).unwrap(),
            std::fs::read(straight.embeddings_path()).unwrap(),
            "stop at {at}: the resumed run's test embeddings"
        );
    }
}
