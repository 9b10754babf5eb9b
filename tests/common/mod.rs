//! What every end-to-end test of the `dml` binary needs.

#![allow(dead_code)] // each test binary uses its own subset

pub mod assets;
pub mod mat;
mod scratch;

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

pub use scratch::scratch;

/// `dml ARGS`, run to completion.
pub fn dml(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dml")).args(args).output().expect("dml runs")
}

/// Exit code 2, no panic, and an `error: ` line naming `path_part` and saying `message_part`.
pub fn assert_error(out: &Output, path_part: &str, message_part: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(line.contains(path_part) && line.contains(message_part), "unexpected error line: {line}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An IDX file of unsigned bytes (the MNIST format): magic, big-endian sizes, the data.
pub fn idx_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// The bundled Fashion-MNIST test files.
pub fn bundled_fashion_mnist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("engine/data/fashion-mnist")
}

/// A full Fashion-MNIST folder: a small generated training set (`n` images, label `i % 10`,
/// every pixel of image `i` equal to `i`) beside copies of the real bundled test files.
pub fn fashion_mnist_full_tree(root: &std::path::Path, n: u32) {
    fs::create_dir_all(root).unwrap();
    let pixels: Vec<u8> = (0..n).flat_map(|i| std::iter::repeat_n(i as u8, 28 * 28)).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    fs::write(root.join("train-images-idx3-ubyte"), idx_u8(&[n, 28, 28], &pixels)).unwrap();
    fs::write(root.join("train-labels-idx1-ubyte"), idx_u8(&[n], &labels)).unwrap();
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        fs::copy(bundled_fashion_mnist().join(name), root.join(name)).unwrap();
    }
}
