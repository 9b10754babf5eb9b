//! `dml gui`: the runs under a folder, a run's training curves, a 2-D map of its test embeddings
//! and retrieval examples, on the engine that trained it.

pub mod dashboard;
pub mod palette;
pub mod projection;
pub mod retrieval;
pub mod run_data;
pub mod thumbnails;
pub mod training;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eframe::egui::{self, RichText};

use projection::{Method, Projection};
use retrieval::{Retrieval, Thumb};
use run_data::{Embeddings, RunData, RunSummary, list_runs};
use thumbnails::Thumbnails;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Dashboard,
    Projection,
    Retrieval,
}

pub struct DmlApp {
    runs_root: PathBuf,
    runs: Vec<RunSummary>,
    scanned: Option<Instant>,
    run: Option<RunData>,
    embeddings: Option<Arc<Embeddings>>,
    error: Option<String>,
    pub tab: Tab,
    pub projection: Projection,
    pub retrieval: Retrieval,
    thumbnails: Thumbnails,
    refreshed: Option<Instant>,
    pub form: training::TrainForm,
    pub training: Option<training::BackgroundRun>,
    training_error: Option<String>,
    /// A run being read on another thread (its dataset list and embeddings can take seconds).
    opening: Option<Opening>,
}

/// A run folder being opened in the background. Opening another before it is done replaces
/// it: the thread still finishes reading, into a slot nobody looks at any more.
struct Opening {
    path: PathBuf,
    result: Arc<Mutex<Option<Result<RunData, String>>>>,
}

impl DmlApp {
    /// The app over the runs in `runs_root`, with `run` open if given.
    pub fn new(runs_root: &Path, run: Option<&Path>) -> Self {
        let mut app = DmlApp {
            runs_root: runs_root.to_path_buf(),
            runs: Vec::new(),
            scanned: None,
            run: None,
            embeddings: None,
            error: None,
            tab: Tab::Dashboard,
            projection: Projection::default(),
            retrieval: Retrieval::default(),
            thumbnails: Thumbnails::default(),
            refreshed: None,
            form: training::TrainForm::default(),
            training: None,
            training_error: None,
            opening: None,
        };
        app.rescan();
        // Before the window exists: read here, so that it opens showing the run.
        if let Some(run) = run {
            app.show_opened(RunData::open(run));
        }
        app
    }

    fn rescan(&mut self) {
        self.runs = list_runs(&self.runs_root);
        self.scanned = Some(Instant::now());
    }

    /// Opens the run folder at `path` on another thread; the window shows it when it is read.
    /// An opening still under way is superseded.
    pub fn open(&mut self, path: &Path, ctx: &egui::Context) {
        let result = Arc::new(Mutex::new(None));
        let (slot, ctx, folder) = (result.clone(), ctx.clone(), path.to_path_buf());
        std::thread::spawn(move || {
            let opened = std::panic::catch_unwind(|| RunData::open(&folder)).unwrap_or_else(|panic| {
                Err(format!("{}: reading the run failed ({})", folder.display(), dml_engine::data::panic_message(panic.as_ref())))
            });
            *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(opened);
            ctx.request_repaint();
        });
        self.opening = Some(Opening { path: path.to_path_buf(), result });
    }

    /// Whether a run is being opened.
    pub fn opening(&self) -> bool {
        self.opening.is_some()
    }

    /// Takes the run opened in the background, if it is ready.
    fn poll_opening(&mut self) {
        let Some(opening) = &self.opening else { return };
        let Some(opened) = opening.result.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() else { return };
        self.opening = None;
        self.show_opened(opened);
    }

    fn show_opened(&mut self, opened: Result<RunData, String>) {
        match opened {
            Ok(run) => {
                self.embeddings = run.embeddings.clone().map(Arc::new);
                self.run = Some(run);
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
        self.projection.reset();
        self.retrieval.reset();
        self.thumbnails.clear();
    }

    pub fn run(&self) -> Option<&RunData> {
        self.run.as_ref()
    }

    /// A run that is still training is followed: its metrics re-read every second.
    fn follow(&mut self, ctx: &egui::Context) {
        let due = self.refreshed.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        let background = self.training.as_ref().is_some_and(|t| !t.finished());
        if background {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
        if let Some(run) = &mut self.run {
            let training = background || run.last_iteration() < run.config.run.iterations;
            if due {
                run.refresh();
                self.refreshed = Some(Instant::now());
                // A run that finished since it was opened, or whose embeddings were rewritten after
                // a failed read: load its test embeddings.
                if run.embeddings_due() && self.opening.is_none() {
                    let path = run.path.clone();
                    self.open(&path, ctx);
                }
            }
            if training {
                ctx.request_repaint_after(Duration::from_secs(1));
            }
        }
        if self.scanned.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            self.rescan();
        }
    }

    fn runs_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Runs");
        let folder = self.runs_root.file_name().map_or_else(|| self.runs_root.display().to_string(), |n| n.to_string_lossy().into_owned());
        ui.label(RichText::new(format!("in {folder}/")).small()).on_hover_text(self.runs_root.display().to_string());
        ui.separator();
        let mut open = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            if self.runs.is_empty() {
                ui.label("no runs here yet: dml train writes them under runs/");
            }
            for summary in &self.runs {
                let selected = self.run.as_ref().is_some_and(|r| r.path == summary.path);
                let best = summary.best_recall_at_1.map_or("-".into(), |r| format!("{r:.3}"));
                let text = format!(
                    "{}\n{} · {} · {}/{} it · R@1 {best}",
                    summary.name, summary.dataset, summary.loss, summary.done, summary.iterations
                );
                if ui.selectable_label(selected, text).clicked() {
                    open = Some(summary.path.clone());
                }
            }
        });
        ui.separator();
        egui::CollapsingHeader::new("New training").default_open(self.training.is_some()).show(ui, |ui| {
            if let Some(config) = training::form_ui(ui, &mut self.form, self.training.as_ref()) {
                match training::start(config, &self.runs_root, ui.ctx()) {
                    Ok(run) => {
                        open = Some(training::lock(&run.status).run_dir.clone());
                        self.training = Some(run);
                        self.training_error = None;
                        self.scanned = None;
                    }
                    Err(e) => self.training_error = Some(e),
                }
            }
            if let Some(e) = &self.training_error {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        });
        if let Some(path) = open {
            self.open(&path, ui.ctx());
        }
    }

    fn projection_tab(&mut self, ui: &mut egui::Ui) {
        let Some(embeddings) = self.embeddings.clone() else {
            ui.label(self.run.as_ref().map_or(String::new(), |r| r.embeddings_note.clone()));
            return;
        };
        self.projection.poll();
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.projection.method, Method::Pca, "PCA");
            ui.radio_value(&mut self.projection.method, Method::Tsne, "t-SNE");
            if self.projection.method == Method::Tsne {
                let t = &mut self.projection.tsne;
                ui.add(egui::DragValue::new(&mut t.perplexity).range(2.0..=100.0).prefix("perplexity "));
                ui.add(egui::DragValue::new(&mut t.iterations).range(50..=5000).prefix("iterations "));
                ui.add(egui::DragValue::new(&mut t.learning_rate).range(0.0..=10000.0).prefix("learning rate (0 auto) "));
                ui.add(egui::DragValue::new(&mut t.early_exaggeration).range(1.0..=50.0).prefix("exaggeration "));
            }
            let label = if self.projection.running() { "Restart" } else { "Compute" };
            if ui.button(label).clicked() {
                self.projection.compute(&embeddings, ui.ctx());
            }
        });
        ui.label(&self.projection.status);
        if self.projection.points.is_empty() && !self.projection.running() {
            self.projection.compute(&embeddings, ui.ctx());
        }
        let run = self.run.as_ref().expect("embeddings come with a run");
        let query = Some(self.retrieval.query.min(embeddings.n - 1));
        let highlight: Vec<usize> = self.retrieval.neighbours(&embeddings).into_iter().map(|(j, _)| j).collect();
        let mut clicked = None;
        ui.horizontal_top(|ui| {
            let legend_width = 170.0;
            let map_size = egui::vec2((ui.available_width() - legend_width).max(100.0), ui.available_height());
            ui.allocate_ui(map_size, |ui| {
                let thumbnails = &mut self.thumbnails;
                let labels = &embeddings.labels;
                let mut hover = |ui: &mut egui::Ui, i: usize| {
                    if let Some(texture) = thumbnails.get(ui.ctx(), run, i) {
                        ui.add(egui::Image::new(&texture).fit_to_exact_size(egui::vec2(96.0, 96.0)));
                    }
                    ui.label(format!("#{i}  {}", run.class_name(labels[i])));
                };
                clicked = self.projection.map_ui(ui, labels, query, &highlight, &mut hover);
            });
            ui.vertical(|ui| {
                ui.label(RichText::new("Classes").strong());
                let mut classes: Vec<i64> = embeddings.labels.clone();
                classes.sort_unstable();
                classes.dedup();
                for &c in classes.iter().take(30) {
                    ui.horizontal(|ui| {
                        let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                        ui.painter().rect_filled(rect, 2.0, palette::class_color(c));
                        ui.label(run.class_name(c));
                    });
                }
                if classes.len() > 30 {
                    ui.label(format!("and more: {} classes in all", classes.len()));
                }
            });
        });
        if let Some(i) = clicked {
            self.retrieval.set_query(i);
            self.tab = Tab::Retrieval;
        }
    }

    fn retrieval_tab(&mut self, ui: &mut egui::Ui) {
        let Some(embeddings) = self.embeddings.clone() else {
            ui.label(self.run.as_ref().map_or(String::new(), |r| r.embeddings_note.clone()));
            return;
        };
        let run = self.run.as_ref().expect("embeddings come with a run");
        let thumbnails = &mut self.thumbnails;
        let mut show = |ui: &mut egui::Ui, i: usize, side: f32| match thumbnails.get(ui.ctx(), run, i) {
            Some(texture) => {
                ui.add(egui::Image::new(&texture).fit_to_exact_size(egui::vec2(side, side)));
            }
            None => {
                ui.allocate_exact_size(egui::vec2(side, side), egui::Sense::hover());
            }
        };
        let name = |label: i64| run.class_name(label);
        self.retrieval.ui(ui, &embeddings, Thumb { show: &mut show, name: &name });
    }

    /// The whole window.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_opening();
        self.follow(&ctx);
        // 1, 2, 3 switch panels unless a text field has the keyboard.
        if !ctx.egui_wants_keyboard_input() {
            for (key, tab) in [(egui::Key::Num1, Tab::Dashboard), (egui::Key::Num2, Tab::Projection), (egui::Key::Num3, Tab::Retrieval)] {
                if ctx.input(|i| i.key_pressed(key)) {
                    self.tab = tab;
                }
            }
        }
        egui::Panel::left("runs").resizable(true).default_size(240.0).show(ui, |ui| self.runs_panel(ui));
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Dashboard, "Dashboard").on_hover_text("key 1");
                ui.selectable_value(&mut self.tab, Tab::Projection, "Projection").on_hover_text("key 2");
                ui.selectable_value(&mut self.tab, Tab::Retrieval, "Retrieval").on_hover_text("key 3");
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    let dark = ui.visuals().dark_mode;
                    if ui.selectable_label(dark, "Dark").clicked() {
                        ui.ctx().set_theme(egui::Theme::Dark);
                    }
                    if ui.selectable_label(!dark, "Light").clicked() {
                        ui.ctx().set_theme(egui::Theme::Light);
                    }
                });
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            if let Some(error) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            if let Some(opening) = &self.opening {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!(
                        "opening {}...",
                        opening.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                    ));
                });
            }
            if self.run.is_none() {
                ui.label("Open a run on the left.");
                return;
            }
            match self.tab {
                Tab::Dashboard => dashboard::ui(ui, self.run.as_ref().expect("checked above")),
                Tab::Projection => self.projection_tab(ui),
                Tab::Retrieval => self.retrieval_tab(ui),
            }
        });
    }
}

impl eframe::App for DmlApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}

/// Opens the window (glow renderer: it needs only an X or Wayland display with OpenGL).
pub fn run_native(runs_root: &Path, run: Option<&Path>) -> Result<(), String> {
    let app = DmlApp::new(runs_root, run);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1280.0, 800.0]).with_title("dml"),
        renderer: eframe::Renderer::Glow,
        ..Default::default()
    };
    eframe::run_native("dml", options, Box::new(|_cc| Ok(Box::new(app)))).map_err(|e| e.to_string())
}
