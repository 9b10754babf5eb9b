//! What every end-to-end test of the `dml` binary needs.

#![allow(dead_code)] // each test binary uses its own subset

pub mod mat;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

/// `dml ARGS`, run to completion.
pub fn dml(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dml")).args(args).output().expect("dml runs")
}

/// A fresh, empty folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dml-test-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Exit code 2, no panic, and an `error: ` line naming `path_part` and saying `message_part`.
pub fn assert_error(out: &Output, path_part: &str, message_part: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(path_part) && line.contains(message_part), "unexpected error line: {line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
