//! `dml train`: train an embedding on a dataset's training classes, report retrieval on its unseen
//! test classes, and keep everything in a run folder that `--resume` can continue.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::eval::RetrievalMetrics;
use dml_engine::loss::LossConfig;
use dml_engine::model::BackboneKind;
use dml_engine::train::{self, Checkpoint, Evaluation, Outcome, PRESETS, Preset, RunDir, StepReport, TrainConfig, TrainObserver, Trainer};

use super::progress::{ImageCountBar, Progress};
use crate::error::CliError;

#[derive(Args, Default)]
pub struct TrainArgs {
    /// Start from this TOML config (every field optional; see --print-config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Start from a published experiment's settings (`dml presets` lists them); flags and --set
    /// override them.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["config", "resume"])]
    preset: Option<String>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Continue the run in this folder from its last checkpoint (with --iterations: to that many
    /// iterations, also past the run's planned end).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "run_dir"])]
    resume: Option<PathBuf>,
    /// Where the run's files go [default: runs/<date>_<time>].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Dataset: fashion-mnist (bundled), fashion-mnist-full (after `dml data fetch
    /// fashion-mnist-full`), cub, cars, sop, inshop, folder or emoji.
    #[arg(long)]
    dataset: Option<String>,
    /// The dataset's folder (fashion-mnist: the bundled test set unless given; fashion-mnist-full:
    /// where `dml data fetch` puts it).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Leave out images that cannot be read (each is reported) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Loss, with its published parameters (change them with --set loss.<param>=<value>).
    #[arg(long)]
    loss: Option<String>,
    /// Backbone: small-cnn, resnet18, resnet50, bn-inception or efficientnet-lite0.
    #[arg(long)]
    backbone: Option<String>,
    /// Start the backbone from this PyTorch (.pth/.pt) or .safetensors file of pretrained weights
    /// (see `dml weights inspect`).
    #[arg(long, value_name = "FILE")]
    pretrained: Option<PathBuf>,
    /// Batch norm keeps its running statistics during training.
    #[arg(long)]
    freeze_bn: bool,
    /// Embedding dimension.
    #[arg(long)]
    dim: Option<usize>,
    /// Classes per batch.
    #[arg(long)]
    p: Option<usize>,
    /// Images per class in a batch.
    #[arg(long)]
    k: Option<usize>,
    /// adam, adamw or sgd.
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning rate (the embedding head's; the backbone's is this × --backbone-lr-mult).
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Weight decay: an L2 penalty added to the gradient (adam, sgd) or decoupled (adamw).
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f64>,
    /// The backbone's learning rate is lr × this.
    #[arg(long, allow_negative_numbers = true)]
    backbone_lr_mult: Option<f64>,
    /// Iterations at which the learning rate is multiplied by --lr-gamma, comma-separated.
    #[arg(long, value_delimiter = ',')]
    lr_steps: Option<Vec<u64>>,
    /// The factor applied to the learning rate at each of --lr-steps.
    #[arg(long, allow_negative_numbers = true)]
    lr_gamma: Option<f64>,
    /// Training iterations, one batch of P × K images each.
    #[arg(long)]
    iterations: Option<u64>,
    /// Evaluate on the test split every N iterations (0: only before and after).
    #[arg(long, value_name = "N")]
    eval_interval: Option<u64>,
    /// Write a resumable checkpoint every N iterations.
    #[arg(long, value_name = "N")]
    checkpoint_interval: Option<u64>,
    /// Seed of the initial weights, the sampler, the augmentation and the loss's sampling.
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, help = super::BACKEND_HELP)]
    backend: Option<BackendChoice>,
    /// Any config field: --set section.field=value (repeatable, applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl TrainArgs {
    fn overrides(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push(format!("{key}={v}"));
            }
        };
        let quoted = |s: &str| toml_string(s);
        push("data.dataset", self.dataset.as_deref().map(quoted));
        push("data.root", self.root.as_deref().map(|p| quoted(&p.to_string_lossy())));
        push("data.skip_bad_images", self.skip_bad_images.then(|| "true".to_string()));
        push("model.backbone", self.backbone.as_deref().map(quoted));
        push("model.pretrained", self.pretrained.as_deref().map(|p| quoted(&p.to_string_lossy())));
        push("model.freeze_bn", self.freeze_bn.then(|| "true".to_string()));
        push("model.dim", self.dim.map(|v| v.to_string()));
        push("sampler.p", self.p.map(|v| v.to_string()));
        push("sampler.k", self.k.map(|v| v.to_string()));
        push("optimizer.name", self.optimizer.as_deref().map(quoted));
        push("optimizer.lr", self.lr.map(toml_float));
        push("optimizer.weight_decay", self.weight_decay.map(toml_float));
        push("optimizer.backbone_lr_mult", self.backbone_lr_mult.map(toml_float));
        push(
            "optimizer.lr_steps",
            self.lr_steps.as_ref().map(|s| format!("[{}]", s.iter().map(u64::to_string).collect::<Vec<_>>().join(","))),
        );
        push("optimizer.lr_gamma", self.lr_gamma.map(toml_float));
        push("run.iterations", self.iterations.map(|v| v.to_string()));
        push("run.eval_interval", self.eval_interval.map(|v| v.to_string()));
        push("run.checkpoint_interval", self.checkpoint_interval.map(|v| v.to_string()));
        push("run.seed", self.seed.map(|v| v.to_string()));
        push("run.backend", self.backend.map(|b| quoted(&b.to_string())));
        out.extend(self.set.iter().cloned());
        out
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

fn toml_float(v: f64) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'E']) || !v.is_finite() { s } else { format!("{s}.0") }
}

/// Raised by Ctrl-C: the loop checkpoints and stops between two iterations.
static STOP: AtomicBool = AtomicBool::new(false);

/// Ctrl-C raises [`STOP`]; a second one exits at once with status 130, for a user who does not
/// want to wait for the checkpoint. On Unix SIGINT and SIGTERM; on Windows the console's Ctrl-C
/// and Ctrl-Break. Both handlers only touch the atomic, or exit.
#[cfg(unix)]
fn stop_on_ctrl_c() {
    extern "C" fn on_signal(_: libc::c_int) {
        if STOP.swap(true, Ordering::SeqCst) {
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls the async-signal-safe `_exit`.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

#[cfg(windows)]
fn stop_on_ctrl_c() {
    use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_C_EVENT, SetConsoleCtrlHandler};
    use windows_sys::core::BOOL;
    const TRUE: BOOL = 1;
    const FALSE: BOOL = 0;

    // Windows runs the handler on a thread of its own, so it may exit the process directly. Other
    // events (the console closing, logoff) go on to the default handler, which ends the process:
    // Windows would not wait for a checkpoint there.
    unsafe extern "system" fn on_event(event: u32) -> BOOL {
        if !matches!(event, CTRL_C_EVENT | CTRL_BREAK_EVENT) {
            return FALSE;
        }
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        TRUE
    }
    // SAFETY: registers a handler that only touches an atomic or exits.
    if unsafe { SetConsoleCtrlHandler(Some(on_event), TRUE) } == FALSE {
        eprintln!("warning: Ctrl-C cannot be caught ({}); it will stop training without a checkpoint", std::io::Error::last_os_error());
    }
}

#[cfg(not(any(unix, windows)))]
fn stop_on_ctrl_c() {}

fn build_config(args: &TrainArgs) -> Result<TrainConfig, CliError> {
    let mut config = match (&args.config, preset(args)?) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| CliError::at(path, e))?;
            TrainConfig::from_toml(&text).map_err(|e| CliError::at(path, e))?
        }
        (None, Some(preset)) => preset.config().map_err(CliError::plain)?,
        (None, None) => TrainConfig::default(),
    };
    if let Some(name) = &args.loss {
        config.loss = LossConfig::from_name(name).map_err(|e| CliError::plain(format!("--loss {name}: {e}")))?;
    }
    config.with_overrides(&args.overrides()).map_err(CliError::plain)
}

/// The preset `--preset` names.
fn preset(args: &TrainArgs) -> Result<Option<&'static Preset>, CliError> {
    let Some(name) = &args.preset else { return Ok(None) };
    let known = || PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ");
    Preset::find(name)
        .map(Some)
        .ok_or_else(|| CliError::plain(format!("--preset {name}: no such preset (known: {}; see `dml presets`)", known())))
}

/// A preset that starts from ImageNet weights does not start silently from random ones: its
/// backbone (unless overridden by the small CNN, which has none) needs `--pretrained`.
fn check_preset_weights(preset: Option<&Preset>, config: &TrainConfig) -> Result<(), CliError> {
    match preset.and_then(|p| Some((p, p.weights?))) {
        Some((preset, weights)) if config.model.pretrained.is_none() && config.model.backbone != BackboneKind::SmallCnn => {
            Err(CliError::plain(format!(
                "--preset {}: {} starts from ImageNet weights; give --pretrained FILE ({weights})",
                preset.name,
                config.model.backbone.name()
            )))
        }
        _ => Ok(()),
    }
}

/// `--root` and `--pretrained` are kept in the run's `config.toml`, which is text: a path that is
/// not valid Unicode (possible on Linux) would be stored as another path.
fn check_paths_are_text(args: &TrainArgs) -> Result<(), CliError> {
    for (flag, path) in [("--root", &args.root), ("--pretrained", &args.pretrained)] {
        if let Some(path) = path.as_deref().filter(|p| p.to_str().is_none()) {
            return Err(CliError::at(
                path,
                format!("{flag} is not valid UTF-8, and a run's config.toml stores it as text; rename it or link it under a UTF-8 name"),
            ));
        }
    }
    Ok(())
}

pub fn run(args: TrainArgs) -> Result<(), CliError> {
    check_paths_are_text(&args)?;
    let (run_dir, config, checkpoint) = match &args.resume {
        Some(dir) => {
            let given = args.overrides();
            let may_change = |o: &String| o.starts_with("run.backend=") || o.starts_with("run.iterations=");
            if !given.iter().all(may_change) || args.loss.is_some() {
                return Err(CliError::at(dir, "--resume continues the run's own config.toml; only --backend and --iterations may change"));
            }
            let run = RunDir::open(dir).map_err(|e| CliError::at(&e.path, e.message))?;
            let mut config = run.config().map_err(|e| CliError::at(&e.path, e.message))?;
            if let Some(backend) = args.backend {
                config.run.backend = backend;
            }
            let path = run.checkpoint_path();
            // A run killed before its first checkpoint (during start-up or the first evaluation)
            // has trained nothing: it starts again, in its folder, from its config.
            let checkpoint = if path.exists() {
                Some(Checkpoint::load(&path).map_err(|e| CliError::at(&path, e))?)
            } else {
                eprintln!("{}: no checkpoint yet (the run stopped before its first one); starting it from iteration 0", dir.display());
                None
            };
            if let Some(iterations) = args.iterations.filter(|&n| n != config.run.iterations) {
                let done = checkpoint.as_ref().map_or(0, |c| c.state.iteration);
                if iterations < done {
                    return Err(CliError::at(dir, format!("--iterations {iterations}: the run has already trained {done} iterations")));
                }
                // A longer (or shorter, not yet reached) run: the same steps as a run configured
                // that way from the start, since nothing else depends on the total.
                config.run.iterations = iterations;
                if !args.print_config {
                    run.rewrite_config(&config).map_err(|e| CliError::at(&e.path, e.message))?;
                }
            }
            (run, config, checkpoint)
        }
        None => {
            let config = build_config(&args)?;
            if args.print_config {
                print!("{}", config.to_toml());
                return Ok(());
            }
            check_preset_weights(preset(&args)?, &config)?;
            let dir = match args.run_dir.clone() {
                Some(dir) => dir,
                None => RunDir::claim_fresh(Path::new("runs")).map_err(|e| CliError::at(&e.path, e.message))?,
            };
            let run = RunDir::create(&dir, &config).map_err(|e| CliError::at(&e.path, e.message))?;
            (run, config, None)
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }

    let selected = super::select_backend(config.run.backend)?;
    let root = config.data.resolved_root();
    let mut trainer = match &checkpoint {
        Some(c) => Trainer::resume(&config, &selected.device, c),
        None => Trainer::new(&config, &selected.device),
    }
    .map_err(|e| match e {
        train::TrainError::Data(d) => CliError::at(&d.path, d.message),
        train::TrainError::Record(r) => CliError::at(&run_dir.checkpoint_path(), r),
        train::TrainError::Pretrained(w) => CliError::at(&w.path, w.message),
        other if root.as_os_str().is_empty() => CliError::plain(other),
        other => CliError::at(&root, other),
    })?;
    let inputs = trainer.inputs();
    let test: Vec<String> = inputs.test_parts().iter().map(|p| format!("{} {} images", p.labels.len(), p.name)).collect();
    eprintln!(
        "run: {}  ({} train images in {} classes, {}; {} loss, {} iterations)",
        run_dir.path().display(),
        inputs.train_labels().len(),
        dml_engine::data::class_count(inputs.train_labels()),
        test.join(", "),
        config.loss.name(),
        config.run.iterations
    );
    if let Some(preset) = preset(&args)? {
        eprintln!("preset {}: {}; its source reports {}", preset.name, preset.reproduces, preset.expected_text());
    }
    stop_on_ctrl_c();
    let mut observer = CliObserver {
        progress: Progress::new("train", trainer.iteration(), config.run.iterations),
        since: None,
        evaluation: ImageCountBar::new("evaluate"),
    };
    let outcome = train::run(&run_dir, &mut trainer, &mut observer, &STOP);
    observer.progress.interrupt();
    match outcome {
        Ok(Outcome::Finished(evaluation)) => {
            // The evaluation before training is the file's first one, for resumed runs too.
            let before = first_evaluation(&run_dir);
            print_summary(before.as_ref(), &evaluation.metrics);
            println!("saved: {}", run_dir.path().display());
            Ok(())
        }
        Ok(Outcome::Stopped(iteration)) => {
            eprintln!("stopped at iteration {iteration}; checkpoint saved. Continue with: dml train --resume {}", run_dir.path().display());
            Ok(())
        }
        Err(train::RunError::Train(e @ train::TrainError::NonFinite { .. })) => {
            let kept = Checkpoint::load(&run_dir.checkpoint_path()).map(|c| c.state.iteration).unwrap_or(0);
            Err(CliError::at(run_dir.path(), format!("{e}; the last good checkpoint (iteration {kept}) is kept")))
        }
        Err(train::RunError::Train(train::TrainError::BadImage(bad))) => {
            let kept = Checkpoint::load(&run_dir.checkpoint_path()).map(|c| c.state.iteration).unwrap_or(0);
            let mut err = super::bad_image(bad);
            err.message += &format!(
                "; the last checkpoint (iteration {kept}) is kept: fix or remove the file, then dml train --resume {}",
                run_dir.path().display()
            );
            Err(err)
        }
        Err(train::RunError::Write { path, source }) => Err(CliError::at(&path, source)),
        Err(train::RunError::RunDir(e)) => Err(CliError::at(&e.path, e.message)),
        Err(e) => Err(CliError::at(run_dir.path(), e)),
    }
}

fn first_evaluation(run: &RunDir) -> Option<RetrievalMetrics> {
    run.metrics().ok()?.iter().find_map(train::MetricsLine::metrics)
}

struct CliObserver {
    progress: Progress,
    /// When the current step began: the end of the previous callback.
    since: Option<Instant>,
    /// Embedding the test images, during an evaluation.
    evaluation: ImageCountBar,
}

impl TrainObserver for CliObserver {
    fn step(&mut self, report: &StepReport, _total: u64) {
        let now = Instant::now();
        self.progress.update(report.iteration, Some(report.loss), 1, self.since.map(|t| now - t));
        self.since = Some(now);
    }

    fn checkpointed(&mut self, _iteration: u64) {
        self.since = Some(Instant::now());
    }

    fn embedding(&mut self, done: usize, total: usize) {
        self.progress.interrupt();
        self.evaluation.update(done, total);
    }

    fn skipped(&mut self, bad: &dml_engine::data::BadImage) {
        self.progress.interrupt();
        eprintln!("warning: skipped {bad}");
    }

    fn evaluated(&mut self, iteration: u64, evaluation: &Evaluation) {
        self.since = Some(Instant::now());
        self.progress.interrupt();
        let m = &evaluation.metrics;
        let recalls: Vec<String> = m.recall_at_k.iter().map(|(k, v)| format!("R@{k} {v:.4}")).collect();
        println!("eval  iteration {iteration:>6}  {}  MAP@R {:.4}  R-Prec {:.4}", recalls.join("  "), m.map_at_r, m.r_precision);
    }
}

fn print_summary(before: Option<&RetrievalMetrics>, after: &RetrievalMetrics) {
    println!("test classes: {} queries", after.queries);
    println!("  {:<12} {:>8} {:>8}", "", "before", "after");
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    for (k, v) in &after.recall_at_k {
        let b = before.and_then(|b| b.recall_at_k.get(k).copied());
        println!("  {:<12} {:>8} {:>8.4}", format!("Recall@{k}"), cell(b), v);
    }
    println!("  {:<12} {:>8} {:>8.4}", "MAP@R", cell(before.map(|b| b.map_at_r)), after.map_at_r);
    println!("  {:<12} {:>8} {:>8.4}", "R-Precision", cell(before.map(|b| b.r_precision)), after.r_precision);
}
