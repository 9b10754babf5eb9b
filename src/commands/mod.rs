pub mod data;
pub mod eval;
pub mod export;
pub mod metrics;
mod progress;
pub mod train;

use dml_engine::backend::{self, BackendChoice, SelectedBackend};

use crate::error::CliError;

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
