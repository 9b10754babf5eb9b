//! Training: the run configuration, the trainer, checkpoints and the run folder, and the loop that
//! ties them together.

mod checkpoint;
mod config;
mod cross_batch_memory;
mod evaluation;
mod optimizer;
mod presets;
mod run_dir;
mod trainer;

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::Module;

pub use checkpoint::{Checkpoint, CheckpointError, TrainSetSummary, TrainState};
pub use config::{ConfigError, EvalConfig, OptimizerConfig, OptimizerKind, RunConfig, TrainConfig};
pub use cross_batch_memory::{CrossBatchMemory, MemoryFormatError, XbmConfig};
// The sections that configure the data live beside it; a run's config composes them.
pub use crate::data::{AugmentConfig, NormalizeKind, SamplerConfig};
pub use evaluation::{EmbedError, EmbedProgress, Embedded, Evaluation, embed_part, embed_test, evaluate, score};
pub use presets::{PRESETS, Preset};
pub use run_dir::{MetricsLine, RunDir, RunDirError};
pub use trainer::{StepReport, TrainError, Trainer};

use crate::model::Embedder;
use crate::npy;

/// The trained model of a run folder (`model.bpk`), on `device`.
pub fn load_model(run: &RunDir, config: &TrainConfig, device: &burn::tensor::Device) -> Result<Embedder, RunDirError> {
    let path = run.model_path();
    if !path.exists() {
        return Err(RunDirError { path, message: "no model saved yet".into() });
    }
    let bytes = std::fs::read(&path).map_err(|e| RunDirError { path: path.clone(), message: e.to_string() })?;
    model_from_bytes(config, bytes, device).map_err(|message| RunDirError { path, message })
}

/// A model of `config` with the weights of a `model.bpk` file's bytes (Burn's burnpack record).
pub fn model_from_bytes(config: &TrainConfig, bytes: Vec<u8>, device: &burn::tensor::Device) -> Result<Embedder, String> {
    let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes)).map_err(|e| e.to_string())?;
    config.model.init_seeded(config.in_channels(), config.run.seed, device).try_load_record(record).map_err(|e| e.to_string())
}

/// What the loop reports while it runs (a progress bar, a GUI, a test).
pub trait TrainObserver {
    fn step(&mut self, _report: &StepReport, _total: u64) {}
    /// During an evaluation, after each batch: test images embedded so far, and in all.
    fn embedding(&mut self, _done: usize, _total: usize) {}
    fn evaluated(&mut self, _iteration: u64, _evaluation: &Evaluation) {}
    fn checkpointed(&mut self, _iteration: u64) {}
    /// An image that could not be read was left out (with `skip_bad_images`).
    fn skipped(&mut self, _bad: &crate::data::BadImage) {}
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// All iterations done; the final evaluation.
    Finished(Box<Evaluation>),
    /// Stopped on request after saving a checkpoint at this iteration.
    Stopped(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("{path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
}

fn save_checkpoint(run: &RunDir, trainer: &Trainer) -> Result<(), RunError> {
    let checkpoint = trainer.checkpoint()?;
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        crate::io::write_atomically(&path, bytes).map_err(|source| RunError::Write { path, source })
    };
    // The checkpoint first: a crash between the two writes then leaves a model one save older
    // than its checkpoint (re-written by the next save, or the end of the run), never a model
    // newer than any checkpoint, which a resumed run would silently train over.
    write(run.checkpoint_path(), &checkpoint.to_bytes())?;
    write(run.model_path(), &checkpoint.model)
}

fn report_skipped(trainer: &mut Trainer, observer: &mut dyn TrainObserver) {
    for bad in trainer.take_skipped() {
        observer.skipped(&bad);
    }
}

/// The test split evaluated and logged; `None` when `stop` was raised before it was done.
fn log_evaluation(
    run: &RunDir,
    trainer: &mut Trainer,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<Option<Evaluation>, RunError> {
    let Some(evaluation) = evaluate_unless_stopped(trainer, observer, stop)? else {
        return Ok(None);
    };
    run.append(&MetricsLine::eval(trainer.iteration(), "test", &evaluation.metrics))?;
    observer.evaluated(trainer.iteration(), &evaluation);
    Ok(Some(evaluation))
}

/// An evaluation that gives way to `stop` between two batches of test images: embedding a large
/// test split on a CPU can take many minutes, longer than anyone waits for Ctrl-C.
fn evaluate_unless_stopped(
    trainer: &mut Trainer,
    observer: &mut dyn TrainObserver,
    stop: &AtomicBool,
) -> Result<Option<Evaluation>, RunError> {
    let result = trainer.evaluate(&mut |done, total| {
        observer.embedding(done, total);
        if stop.load(Ordering::SeqCst) { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    });
    report_skipped(trainer, observer);
    match result {
        Ok(evaluation) => Ok(Some(evaluation)),
        Err(TrainError::EvaluationStopped) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether the metrics file already holds the evaluation at `iteration` (its last line).
fn evaluated_at(run: &RunDir, iteration: u64) -> Result<bool, RunError> {
    Ok(matches!(run.metrics()?.last(), Some(MetricsLine::Eval { iteration: i, .. }) if *i == iteration))
}

fn stopped(run: &RunDir, trainer: &Trainer, observer: &mut dyn TrainObserver) -> Result<Outcome, RunError> {
    save_checkpoint(run, trainer)?;
    observer.checkpointed(trainer.iteration());
    Ok(Outcome::Stopped(trainer.iteration()))
}

/// Trains until the configured number of iterations, evaluating and checkpointing on schedule,
/// or until `stop` is raised (then it checkpoints and returns [`Outcome::Stopped`]; raised during
/// an evaluation, that evaluation is abandoned and made up when the run resumes). A NaN loss
/// returns the error and leaves the last checkpoint as it was.
pub fn run(run: &RunDir, trainer: &mut Trainer, observer: &mut dyn TrainObserver, stop: &AtomicBool) -> Result<Outcome, RunError> {
    let schedule = trainer.config().run.clone();
    let due = |interval: u64, iteration: u64| interval > 0 && iteration.is_multiple_of(interval);
    let start = trainer.iteration();
    // Lines logged after the checkpoint by a run that was killed are logged again.
    run.truncate_metrics_after(start)?;
    // The evaluation before training, or one that a stop cut short at a checkpoint's iteration.
    let owed = start == 0 || (start < schedule.iterations && due(schedule.eval_interval, start));
    if owed && !evaluated_at(run, start)? && log_evaluation(run, trainer, observer, stop)?.is_none() {
        return stopped(run, trainer, observer);
    }
    if start == 0 {
        save_checkpoint(run, trainer)?;
        observer.checkpointed(0);
    }
    while trainer.iteration() < schedule.iterations {
        if stop.load(Ordering::SeqCst) {
            return stopped(run, trainer, observer);
        }
        let report = trainer.step()?;
        report_skipped(trainer, observer);
        run.append(&MetricsLine::Train { iteration: report.iteration, loss: report.loss, lr: report.lr, xbm_loss: report.xbm_loss })?;
        observer.step(&report, schedule.iterations);
        let last = report.iteration == schedule.iterations;
        if !last && due(schedule.eval_interval, report.iteration) && log_evaluation(run, trainer, observer, stop)?.is_none() {
            return stopped(run, trainer, observer);
        }
        if !last && due(schedule.checkpoint_interval, report.iteration) {
            save_checkpoint(run, trainer)?;
            observer.checkpointed(report.iteration);
        }
    }
    let evaluation = if evaluated_at(run, trainer.iteration())? {
        // A resumed run that had already finished: nothing new to evaluate, but the files below
        // are rewritten from the same model.
        evaluate_unless_stopped(trainer, observer, stop)?
    } else {
        log_evaluation(run, trainer, observer, stop)?
    };
    let Some(evaluation) = evaluation else {
        return stopped(run, trainer, observer);
    };
    let write_err = |path: std::path::PathBuf| move |source| RunError::Write { path, source };
    // Which file each row came from, before the rows themselves: a reader that finds the
    // embeddings finds their list.
    let gallery = trainer.inputs().gallery_part();
    let lists = [
        (run.embeddings_files_path(), RunDir::row_files_text(trainer.inputs(), gallery, &evaluation.rows)),
        (run.query_embeddings_files_path(), evaluation.query.as_ref().and_then(|q| RunDir::row_files_text(trainer.inputs(), 0, &q.rows))),
    ];
    for (path, text) in lists {
        if let Some(text) = text {
            crate::io::write_atomically(&path, text.as_bytes()).map_err(write_err(path.clone()))?;
        }
    }
    npy::write_matrix_f32(&run.embeddings_path(), evaluation.labels.len(), evaluation.dim, &evaluation.embeddings)
        .map_err(write_err(run.embeddings_path()))?;
    npy::write_labels(&run.labels_path(), &evaluation.labels).map_err(write_err(run.labels_path()))?;
    if let Some(query) = &evaluation.query {
        let (vectors, labels) = (run.query_embeddings_path(), run.query_labels_path());
        npy::write_matrix_f32(&vectors, query.labels.len(), evaluation.dim, &query.embeddings).map_err(write_err(vectors.clone()))?;
        npy::write_labels(&labels, &query.labels).map_err(write_err(labels.clone()))?;
    }
    save_checkpoint(run, trainer)?;
    observer.checkpointed(trainer.iteration());
    Ok(Outcome::Finished(Box::new(evaluation)))
}
