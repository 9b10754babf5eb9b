//! Starting a training run from the app: a form for the main choices, the run on a background
//! thread with its progress, and a stop button that checkpoints like Ctrl-C does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dml_engine::backend::{self, BackendChoice};
use dml_engine::data::DatasetKind;
use dml_engine::loss::LossConfig;
use dml_engine::model::BackboneKind;
use dml_engine::train::{self, Evaluation, Outcome, RunDir, StepReport, TrainConfig, TrainObserver, Trainer};
use eframe::egui;

/// The form's fields.
#[derive(Clone, Debug)]
pub struct TrainForm {
    pub dataset: String,
    pub root: String,
    pub loss: String,
    pub backbone: String,
    pub iterations: u64,
    pub eval_interval: u64,
    pub backend: BackendChoice,
    /// Cross-batch memory: rows remembered (0: off), iterations before it starts, its weight.
    pub xbm_memory: usize,
    pub xbm_start: u64,
    pub xbm_weight: f64,
    /// More settings, one `section.field=value` per line (loss parameters: `loss.beta=50`).
    pub extra: String,
}

impl Default for TrainForm {
    fn default() -> Self {
        Self {
            dataset: "fashion-mnist".into(),
            root: String::new(),
            loss: "ms".into(),
            backbone: "small-cnn".into(),
            iterations: 200,
            eval_interval: 100,
            backend: BackendChoice::Cpu,
            xbm_memory: 0,
            xbm_start: 0,
            xbm_weight: 1.0,
            extra: String::new(),
        }
    }
}

impl TrainForm {
    pub fn config(&self) -> Result<TrainConfig, String> {
        let quote = |s: &str| serde_json::to_string(s).expect("a string serialises");
        let mut overrides = vec![
            format!("data.dataset={}", quote(&self.dataset)),
            format!("loss.name={}", quote(&self.loss)),
            format!("model.backbone={}", quote(&self.backbone)),
            format!("run.iterations={}", self.iterations),
            format!("run.eval_interval={}", self.eval_interval),
            format!("run.backend={}", quote(&self.backend.to_string())),
            format!("xbm.memory_size={}", self.xbm_memory),
            format!("xbm.start_iteration={}", self.xbm_start),
            format!("xbm.weight={:?}", self.xbm_weight),
        ];
        if !self.root.trim().is_empty() {
            overrides.push(format!("data.root={}", quote(self.root.trim())));
        }
        overrides.extend(self.extra.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string));
        TrainConfig::default().with_overrides(&overrides).map_err(|e| e.to_string())
    }
}

/// What the background run reports.
#[derive(Clone, Debug, Default)]
pub struct TrainStatus {
    pub run_dir: PathBuf,
    pub iteration: u64,
    pub total: u64,
    pub loss: Option<f64>,
    pub last_recall_at_1: Option<f64>,
    /// While an evaluation embeds the test images: how many are done, of how many.
    pub evaluating: Option<(usize, usize)>,
    /// Set when the run has ended: how.
    pub ended: Option<String>,
}

pub struct BackgroundRun {
    pub status: Arc<Mutex<TrainStatus>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl BackgroundRun {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn finished(&self) -> bool {
        lock(&self.status).ended.is_some()
    }
}

impl Drop for BackgroundRun {
    fn drop(&mut self) {
        // Closing the app stops the run at a checkpoint; `dml train --resume` continues it. Only
        // the app's own drop at close drops a run that is still going, so only closing waits.
        self.stop();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

struct Observer {
    status: Arc<Mutex<TrainStatus>>,
    ctx: egui::Context,
}

impl TrainObserver for Observer {
    fn step(&mut self, report: &StepReport, total: u64) {
        let mut s = lock(&self.status);
        s.iteration = report.iteration;
        s.total = total;
        s.loss = Some(report.loss);
        self.ctx.request_repaint();
    }

    fn embedding(&mut self, done: usize, total: usize) {
        lock(&self.status).evaluating = Some((done, total));
        self.ctx.request_repaint();
    }

    fn evaluated(&mut self, _iteration: u64, evaluation: &Evaluation) {
        let mut s = lock(&self.status);
        s.last_recall_at_1 = evaluation.metrics.recall_at_k.get(&1).copied();
        s.evaluating = None;
        self.ctx.request_repaint();
    }
}

/// Creates the run folder and starts training in it on a background thread.
pub fn start(config: TrainConfig, runs_root: &Path, ctx: &egui::Context) -> Result<BackgroundRun, String> {
    let path = RunDir::claim_fresh(runs_root).map_err(|e| format!("{}: {}", e.path.display(), e.message))?;
    let run = RunDir::create(&path, &config).map_err(|e| format!("{}: {}", e.path.display(), e.message))?;
    let status = Arc::new(Mutex::new(TrainStatus { run_dir: path, total: config.run.iterations, ..Default::default() }));
    let stop = Arc::new(AtomicBool::new(false));
    let (report, halt) = (status.clone(), stop.clone());
    let observer_ctx = ctx.clone();
    let handle = in_background(status.clone(), ctx.clone(), move || {
        let selected = backend::select(config.run.backend).map_err(|e| e.to_string())?;
        let mut trainer = Trainer::new(&config, &selected.device).map_err(|e| e.to_string())?;
        let mut observer = Observer { status: report, ctx: observer_ctx };
        match train::run(&run, &mut trainer, &mut observer, &halt).map_err(|e| e.to_string())? {
            Outcome::Finished(e) => Ok(format!(
                "finished: Recall@1 {:.4}, MAP@R {:.4}",
                e.metrics.recall_at_k.get(&1).copied().unwrap_or(0.0),
                e.metrics.map_at_r
            )),
            Outcome::Stopped(i) => Ok(format!("stopped at iteration {i}; checkpoint saved (dml train --resume continues it)")),
        }
    });
    Ok(BackgroundRun { status, stop, handle: Some(handle) })
}

/// Runs `work` on a new thread and records how it ended in `status`: its message, its error as
/// "failed: …", or a panic as "failed: … (a bug)", so that the form comes back in every case.
fn in_background(
    status: Arc<Mutex<TrainStatus>>,
    ctx: egui::Context,
    work: impl FnOnce() -> Result<String, String> + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let ended = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => format!("failed: {e}"),
            Err(panic) => format!("failed: the training thread stopped on a bug ({})", dml_engine::data::panic_message(panic.as_ref())),
        };
        let mut status = lock(&status);
        status.ended = Some(ended);
        // A run that failed or was stopped while evaluating leaves no evaluation in progress.
        status.evaluating = None;
        drop(status);
        ctx.request_repaint();
    })
}

/// The status, also after a panic on the training thread poisoned its lock (the panic is
/// reported through `ended`; the values are plain numbers, valid whatever it interrupted).
pub fn lock(status: &Mutex<TrainStatus>) -> std::sync::MutexGuard<'_, TrainStatus> {
    status.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn combo(ui: &mut egui::Ui, label: &str, value: &mut String, names: &[&str]) {
    egui::ComboBox::from_label(label).selected_text(value.as_str()).show_ui(ui, |ui| {
        for name in names {
            ui.selectable_value(value, name.to_string(), *name);
        }
    });
}

/// The form and, while a run is going, its progress. Returns a config to start.
pub fn form_ui(ui: &mut egui::Ui, form: &mut TrainForm, running: Option<&BackgroundRun>) -> Option<TrainConfig> {
    let mut start = None;
    if let Some(run) = running {
        let status = lock(&run.status).clone();
        ui.label(status.run_dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        let fraction = if status.total > 0 { status.iteration as f32 / status.total as f32 } else { 0.0 };
        ui.add(egui::ProgressBar::new(fraction).text(format!("{}/{}", status.iteration, status.total)));
        if let Some(loss) = status.loss {
            ui.label(format!("loss {loss:.4}"));
        }
        if let Some((done, total)) = status.evaluating {
            let fraction = done as f32 / total.max(1) as f32;
            ui.add(egui::ProgressBar::new(fraction).text(format!("evaluating: {done}/{total} test images")));
        }
        if let Some(r1) = status.last_recall_at_1 {
            ui.label(format!("last Recall@1 {r1:.4}"));
        }
        match &status.ended {
            Some(how) => {
                ui.label(how);
            }
            None => {
                if ui.button("Stop").clicked() {
                    run.stop();
                }
                return None;
            }
        }
        ui.separator();
    }
    combo(ui, "dataset", &mut form.dataset, &DatasetKind::NAMES);
    ui.horizontal(|ui| {
        let label = ui.label("root");
        ui.text_edit_singleline(&mut form.root).labelled_by(label.id);
    });
    let losses: Vec<&str> = LossConfig::NAMES.iter().chain(&LossConfig::PROXY_NAMES).copied().collect();
    combo(ui, "loss", &mut form.loss, &losses);
    combo(ui, "backbone", &mut form.backbone, &BackboneKind::NAMES);
    ui.add(egui::DragValue::new(&mut form.iterations).range(1..=1_000_000).prefix("iterations "));
    ui.add(egui::DragValue::new(&mut form.eval_interval).range(0..=1_000_000).prefix("eval every "));
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(&mut form.xbm_memory).range(0..=1_000_000).prefix("cross-batch memory ")).on_hover_text(format!(
            "embeddings of earlier batches that each batch is also compared with (0: off; for {})",
            LossConfig::REFERENCE_NAMES.join(", ")
        ));
        ui.add_enabled(form.xbm_memory > 0, egui::DragValue::new(&mut form.xbm_start).range(0..=1_000_000).prefix("from iteration "));
        ui.add_enabled(form.xbm_memory > 0, egui::DragValue::new(&mut form.xbm_weight).range(0.0..=100.0).speed(0.05).prefix("weight "));
    });
    let label = ui.label("more settings (section.field=value per line)");
    ui.add(egui::TextEdit::multiline(&mut form.extra).desired_rows(2).hint_text("loss.beta=50")).labelled_by(label.id);
    egui::ComboBox::from_label("backend").selected_text(form.backend.to_string()).show_ui(ui, |ui| {
        for choice in [BackendChoice::Cpu, BackendChoice::Auto, BackendChoice::Wgpu] {
            ui.selectable_value(&mut form.backend, choice, choice.to_string());
        }
    });
    match form.config() {
        Ok(config) => {
            if ui.button("Start").clicked() {
                start = Some(config);
            }
        }
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(work: impl FnOnce() -> Result<String, String> + Send + 'static) -> TrainStatus {
        let status = Arc::new(Mutex::new(TrainStatus::default()));
        in_background(status.clone(), egui::Context::default(), work).join().expect("the thread itself does not panic");
        lock(&status).clone()
    }

    #[test]
    fn the_form_sets_the_cross_batch_memory_and_offers_the_proxy_losses() {
        let form = TrainForm { xbm_memory: 400, xbm_start: 20, xbm_weight: 0.5, ..Default::default() };
        let config = form.config().unwrap();
        assert_eq!((config.xbm.memory_size, config.xbm.start_iteration, config.xbm.weight), (400, 20, 0.5));
        let lifted = TrainForm { loss: "lifted".into(), ..form.clone() }.config().unwrap_err();
        assert!(
            lifted.contains("cross-batch memory works with contrastive, binomial, ms, triplet_semihard, not with the loss lifted"),
            "{lifted}"
        );
        let proxy = TrainForm { loss: "proxy_anchor".into(), ..Default::default() }.config().unwrap();
        assert_eq!(proxy.loss.name(), "proxy_anchor");
    }

    #[test]
    fn a_run_that_panics_ends_as_failed_with_its_message() {
        assert_eq!(ended(|| Ok("finished".into())).ended.as_deref(), Some("finished"));
        assert_eq!(ended(|| Err("no such dataset".into())).ended.as_deref(), Some("failed: no such dataset"));
        let status = Arc::new(Mutex::new(TrainStatus { evaluating: Some((3, 10)), ..Default::default() }));
        let held = status.clone();
        // The panic happens while the status lock is held: the lock is poisoned, and still read.
        let handle = in_background(status.clone(), egui::Context::default(), move || {
            let _guard = held.lock().unwrap();
            panic!("index out of bounds: the len is 3 but the index is 7")
        });
        handle.join().unwrap();
        let after = lock(&status).clone();
        assert_eq!(
            after.ended.as_deref(),
            Some("failed: the training thread stopped on a bug (index out of bounds: the len is 3 but the index is 7)")
        );
        assert_eq!(after.evaluating, None);
        // The form comes back: a run with `ended` set is finished.
        let run = BackgroundRun { status, stop: Arc::new(AtomicBool::new(false)), handle: None };
        assert!(run.finished());
    }
}
