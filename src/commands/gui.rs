//! `dml gui`: the desktop app over a folder of runs.

use std::path::{Path, PathBuf};

use clap::Args;
use dml_engine::train::RunDir;

use crate::error::CliError;

#[derive(Args)]
pub struct GuiArgs {
    /// A run folder to open at start.
    #[arg(value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// The folder whose sub-folders are runs [default: RUN_DIR's parent, else runs/].
    #[arg(long, value_name = "DIR")]
    runs: Option<PathBuf>,
}

pub fn run(args: GuiArgs) -> Result<(), CliError> {
    if let Some(run) = &args.run {
        RunDir::open(run).map_err(|e| CliError::at(&e.path, e.message))?;
    }
    let root = match (&args.runs, &args.run) {
        (Some(root), _) => root.clone(),
        (None, Some(run)) => run.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
        (None, None) => PathBuf::from("runs"),
    };
    #[cfg(target_os = "linux")]
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        return Err(CliError::plain(
            "dml gui needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set (on a headless machine, run it under Xvfb)",
        ));
    }
    dml_app::run_native(&root, args.run.as_deref()).map_err(|e| CliError::plain(format!("gui: {e}")))
}
