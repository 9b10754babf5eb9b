pub mod data;
pub mod eval;
pub mod export;
pub mod metrics;
mod progress;
pub mod train;

use std::path::Path;

use dml_engine::backend::{self, BackendChoice, SelectedBackend};
use dml_engine::burn::tensor::Device;
use dml_engine::data::{GreyImages, GreyTransform};
use dml_engine::train::{RunDir, TrainConfig, load_model};

use crate::error::CliError;

/// A trained run's model applied to the test split of its (or another) dataset.
pub struct TestEmbeddings {
    pub config: TrainConfig,
    pub test: GreyImages,
    /// `test.len() × config.model.dim`, row-major.
    pub embeddings: Vec<f32>,
    pub device: Device,
}

/// Opens the run folder, lets `adjust` change its config (another dataset), loads `model.bpk`
/// and embeds the test split.
pub fn embed_test_split(
    run_dir: &Path,
    backend: BackendChoice,
    adjust: impl FnOnce(&mut TrainConfig),
) -> Result<TestEmbeddings, CliError> {
    let run = RunDir::open(run_dir).map_err(|e| CliError::at(&e.path, e.message))?;
    let mut config = run.config().map_err(|e| CliError::at(&e.path, e.message))?;
    adjust(&mut config);
    let device = select_backend(backend)?.device;
    let model = load_model(&run, &config, &device).map_err(|e| CliError::at(&e.path, e.message))?;
    let test = config.data.load().map_err(|e| CliError::at(&e.path, e.source))?.test;
    let transform = GreyTransform::from_config(&config.augment);
    let embeddings = model.embed_grey(&test, &transform, config.eval.batch_size, &device);
    Ok(TestEmbeddings { config, test, embeddings, device })
}

/// Resolves `--backend` and tells the user (on stderr) what was chosen.
pub fn select_backend(choice: BackendChoice) -> Result<SelectedBackend, CliError> {
    // Even on the CPU backend: resuming a run loads optimiser state onto Burn's default device,
    // which probes wgpu.
    quiet_wayland_probe();
    let selected = backend::select(choice).map_err(|e| CliError::plain(format!("--backend {choice}: {e}")))?;
    eprintln!("backend: {}", selected.description);
    Ok(selected)
}

/// Vulkan drivers probe for a Wayland display when wgpu starts; without `XDG_RUNTIME_DIR`
/// (headless servers, CI) libwayland prints `error: XDG_RUNTIME_DIR is invalid ...` lines that
/// look like dml's own errors. A private, empty runtime dir makes the probe fail quietly.
fn quiet_wayland_probe() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
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
