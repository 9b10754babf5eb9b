pub mod data;
pub mod embed;
pub mod eval;
pub mod export;
pub mod export_web;
pub mod fetch;
pub mod fetch_data;
pub mod gui;
pub mod metrics;
pub mod presets;
mod progress;
pub mod project;
pub mod train;
pub mod weights;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use dml_engine::backend::{self, BackendChoice, SelectedBackend};
use dml_engine::burn::module::Module;
use dml_engine::burn::tensor::Device;
use dml_engine::data::{BadImage, Inputs};
use dml_engine::model::Embedder;
use dml_engine::train::{EmbedError, Embedded, RunDir, TrainConfig, embed_test, load_model};

use crate::error::CliError;
use progress::ImageCountBar;

/// The `--backend` flag's help, the same for every command that computes.
const BACKEND_HELP: &str = "auto (wgpu on a hardware GPU, else cpu), cpu, wgpu or cuda (builds with the `cuda` feature)";

/// A trained run's model (in inference mode) with its config.
pub struct LoadedRun {
    pub config: TrainConfig,
    pub model: Embedder,
    pub device: Device,
}

/// Opens the run folder, lets `adjust` change its config (another dataset) and loads
/// `model.bpk`.
pub fn load_run(run_dir: &Path, backend: BackendChoice, adjust: impl FnOnce(&mut TrainConfig)) -> Result<LoadedRun, CliError> {
    let run = RunDir::open(run_dir).map_err(|e| CliError::at(&e.path, e.message))?;
    let mut config = run.config().map_err(|e| CliError::at(&e.path, e.message))?;
    adjust(&mut config);
    let device = select_backend(backend)?.device;
    let model = load_model(&run, &config, &device).map_err(|e| CliError::at(&e.path, e.message))?.valid();
    Ok(LoadedRun { config, model, device })
}

/// A trained run's model applied to the test classes of its (or another) dataset.
pub struct TestEmbeddings {
    pub config: TrainConfig,
    pub inputs: Arc<Inputs>,
    /// The test split, or the gallery of a query/gallery dataset.
    pub test: Embedded,
    pub query: Option<Embedded>,
    pub device: Device,
}

/// [`load_run`], then embeds the test classes, telling the user of images left out.
pub fn embed_test_split(run_dir: &Path, backend: BackendChoice, adjust: impl FnOnce(&mut TrainConfig)) -> Result<TestEmbeddings, CliError> {
    let LoadedRun { config, model, device } = load_run(run_dir, backend, adjust)?;
    let inputs = Arc::new(config.inputs().map_err(|e| CliError::at(&e.path, &e.message))?);
    let mut bar = ImageCountBar::new("embed");
    let (test, query) = embed_test(&model, &inputs, config.eval.batch_size, config.data.prefetch, &device, &mut |done, total| {
        bar.update(done, total);
        ControlFlow::Continue(())
    })
    .map_err(|e| match e {
        EmbedError::BadImage(bad) => bad_image(bad),
        EmbedError::Stopped => CliError::plain(e.to_string()),
    })?;
    for bad in query.iter().flat_map(|q| &q.skipped).chain(&test.skipped) {
        eprintln!("warning: skipped {bad}");
    }
    Ok(TestEmbeddings { config, inputs, test, query, device })
}

/// The error for an image that cannot be read, with the way around it.
pub fn bad_image(bad: BadImage) -> CliError {
    CliError::at(&bad.path, format!("{} (--skip-bad-images leaves such images out)", bad.message))
}

/// Resolves `--backend` and tells the user (on stderr) what was chosen.
pub fn select_backend(choice: BackendChoice) -> Result<SelectedBackend, CliError> {
    quiet_wayland_probe();
    let selected = backend::select(choice).map_err(|e| CliError::plain(format!("--backend {choice}: {e}")))?;
    eprintln!("backend: {}", selected.description);
    Ok(selected)
}

/// Vulkan drivers probe for a Wayland display when wgpu starts; without `XDG_RUNTIME_DIR`
/// (headless servers, CI) libwayland prints `error: XDG_RUNTIME_DIR is invalid ...` lines that
/// look like dml's own errors. A private, empty runtime dir makes the probe fail quietly.
fn quiet_wayland_probe() {
    // Only where Wayland exists: Linux and the BSDs.
    if cfg!(any(windows, target_os = "macos")) || std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join("dml-xdg-runtime");
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    // SAFETY: called on the main thread before any backend, thread pool or other thread that
    // could read the environment has started.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
}
