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
        // Wheels only: a source distribution would run its setup code on this machine.
        &["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--dest", ".", package],
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

/// Copies one member of a zip archive (a wheel) to `target`, refusing a member that inflates to
/// more than `max_bytes` (whatever size its header claims).
pub fn extract_zip_member(archive: &Path, member: &str, target: &Path, max_bytes: u64) -> Result<(), CliError> {
    let file = std::fs::File::open(archive).map_err(|e| CliError::at(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| CliError::at(archive, e))?;
    let entry = zip.by_name(member).map_err(|e| CliError::at(archive, format!("{member}: {e}")))?;
    let bytes = read_member(entry, max_bytes, member).map_err(|e| CliError::at(archive, e))?;
    write_atomically(target, &bytes)
}

/// An archive member's bytes, at most `max_bytes` of them: a member larger than that (or than
/// its header said) is an error naming it, not an allocation of whatever it claims.
pub fn read_member(member: impl Read, max_bytes: u64, name: &str) -> Result<Vec<u8>, String> {
    dml_engine::io::read_to_end_at_most(member, max_bytes, name).map_err(|e| {
        // The bound's own error ("<name> is larger than N bytes") names the member already.
        let text = e.to_string();
        if text.starts_with(name) { text } else { format!("{name}: {text}") }
    })
}

/// The SHA-256 of `bytes` in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that the file at `path` is the published one (its SHA-256); a file that is not is
/// removed, so that neither this run nor a later one uses it, and the error says both digests.
pub fn verify_published(path: &Path, sha256: &str) -> Result<(), CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::at(path, e))?;
    let found = sha256_hex(&bytes);
    if found == sha256 {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(CliError::at(path, format!("SHA-256 {found} is not the published file's {sha256}; the file was removed")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_standard_vectors() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_file_that_is_not_the_published_one_is_removed() {
        let dir = std::env::temp_dir().join(format!("dml-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("weights.pth");
        std::fs::write(&file, b"abc").unwrap();
        verify_published(&file, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap();
        assert!(file.exists());
        std::fs::write(&file, b"abd").unwrap();
        let error = verify_published(&file, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad").unwrap_err();
        assert!(error.to_string().contains("is not the published file's"), "{error}");
        assert!(!file.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_zip_member_larger_than_allowed_is_refused() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("dml-zip-bound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("w.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        zip.start_file("big.bin", zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(&vec![7u8; 1 << 20]).unwrap();
        zip.finish().unwrap();
        let target = dir.join("big.bin");
        let error = extract_zip_member(&archive, "big.bin", &target, 1000).unwrap_err();
        assert!(error.to_string().contains("big.bin is larger than 1000 bytes"), "{error}");
        assert!(!target.exists());
        extract_zip_member(&archive, "big.bin", &target, 1 << 20).unwrap();
        assert_eq!(std::fs::read(&target).unwrap().len(), 1 << 20);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
