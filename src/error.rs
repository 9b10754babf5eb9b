//! The one error shape of the command line: `error: <path>: <what is wrong>`, exit code 2.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct CliError {
    pub path: Option<PathBuf>,
    pub message: String,
}

impl CliError {
    pub fn at(path: &Path, message: impl fmt::Display) -> Self {
        Self { path: Some(path.to_path_buf()), message: message.to_string() }
    }

    pub fn plain(message: impl fmt::Display) -> Self {
        Self { path: None, message: message.to_string() }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "error: {}: {}", path.display(), self.message),
            None => write!(f, "error: {}", self.message),
        }
    }
}
