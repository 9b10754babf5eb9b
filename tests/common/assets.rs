//! The pretrained-weight test files that scripts/fetch-test-assets downloads (not committed).
//! Shared with the engine's tests, which include this file by path.

use std::path::PathBuf;

/// `$DML_ASSETS/NAME` (default `~/.cache/dml/test-assets/NAME`); panics with what to run when it
/// is missing.
pub fn asset(name: &str) -> PathBuf {
    let dir = std::env::var_os("DML_ASSETS").map(PathBuf::from).unwrap_or_else(|| dml_engine::data::cache_dir().join("test-assets"));
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run scripts/fetch-test-assets (it downloads the test weights and photos)", path.display());
    path
}
