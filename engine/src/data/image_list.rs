//! Datasets stored as image files: which file belongs to which class and split.

use std::path::{Path, PathBuf};

/// The number of distinct labels.
pub fn class_count(labels: &[i64]) -> usize {
    labels.iter().collect::<std::collections::BTreeSet<_>>().len()
}

/// Image files (relative to the dataset root) with their class labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageList {
    pub paths: Vec<PathBuf>,
    pub labels: Vec<i64>,
}

impl ImageList {
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn push(&mut self, path: PathBuf, label: i64) {
        self.paths.push(path);
        self.labels.push(label);
    }

    pub fn classes(&self) -> usize {
        class_count(&self.labels)
    }

    /// The first listed file that does not exist under `root`, if any.
    pub fn first_missing(&self, root: &Path) -> Option<PathBuf> {
        self.paths.iter().map(|p| root.join(p)).find(|p| !p.is_file())
    }
}

/// How a dataset's test classes are evaluated.
#[derive(Clone, Debug, PartialEq)]
pub enum TestSet {
    /// Every test image is a query against all the others (CUB, Cars, SOP, folders).
    LeaveOneOut(ImageList),
    /// Separate queries ranked against a gallery (In-Shop).
    QueryGallery { query: ImageList, gallery: ImageList },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    pub root: PathBuf,
    pub train: ImageList,
    pub test: TestSet,
}

/// A problem with a dataset's files, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ListError {
    pub path: PathBuf,
    pub message: String,
}

impl ListError {
    pub fn new(path: &Path, message: impl ToString) -> Self {
        Self { path: path.to_path_buf(), message: message.to_string() }
    }
}

/// A path as a dataset list writes it (`/`-separated, relative to the dataset root), as a path of
/// this system: its names joined by the system's separator. Every name must be plain
/// ([`crate::io::plain_name`]): an absolute path, a drive, `..`, `\\` or an empty name is refused on
/// every system alike, as on Windows each would leave the root or name something else.
pub(crate) fn listed_path(text: &str) -> Result<PathBuf, String> {
    let mut path = PathBuf::new();
    for name in text.split('/') {
        match crate::io::plain_name(name) {
            Some(name) => path.push(name),
            None => return Err(format!("`{text}` is not a relative path of plain names joined by `/`")),
        }
    }
    Ok(path)
}

/// [`listed_path`] of the path on line `line` of the list file `list`, the error naming both.
pub(crate) fn listed_path_on_line(text: &str, list: &Path, line: usize) -> Result<PathBuf, ListError> {
    listed_path(text).map_err(|e| ListError::new(list, format!("line {line}: {e}")))
}

/// Reads a dataset file that must exist, with an error that says which dataset expected it.
pub(crate) fn read_file(root: &Path, name: &str, dataset: &str) -> Result<Vec<u8>, ListError> {
    read_first(root, &[name], dataset).map(|(_, bytes)| bytes)
}

/// [`read_file`] for a text list.
pub(crate) fn read_list(root: &Path, name: &str, dataset: &str) -> Result<String, ListError> {
    read_first_list(root, &[name], dataset).map(|(_, text)| text)
}

/// Reads the first of `names` (paths under `root`) that exists, and says which one it was. When
/// none does, the error names the dataset that expected them and, where a folder directly inside
/// `root` holds one, that folder: the usual slip is passing the folder above the dataset's root.
pub(crate) fn read_first(root: &Path, names: &[&str], dataset: &str) -> Result<(PathBuf, Vec<u8>), ListError> {
    if !root.is_dir() {
        return Err(ListError::new(root, "no such folder"));
    }
    let Some(path) = names.iter().map(|n| root.join(n)).find(|p| p.exists()) else {
        let article = if dataset.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
        let mut message = format!("missing: {article} {dataset} root holds {}", names.join(" or "));
        if let Some(inner) = inner_root(root, names) {
            message.push_str(&format!("; {} does: pass that folder as the root", inner.display()));
        }
        return Err(ListError::new(&root.join(names[0]), message));
    };
    let bytes = std::fs::read(&path).map_err(|e| ListError::new(&path, e))?;
    Ok((path, bytes))
}

/// [`read_first`] for a text list.
pub(crate) fn read_first_list(root: &Path, names: &[&str], dataset: &str) -> Result<(PathBuf, String), ListError> {
    let (path, bytes) = read_first(root, names, dataset)?;
    let text = String::from_utf8(bytes).map_err(|_| ListError::new(&path, "not UTF-8 text"))?;
    Ok((path, text))
}

/// The first folder (in sorted order) directly inside `root` that holds one of `names`.
fn inner_root(root: &Path, names: &[&str]) -> Option<PathBuf> {
    let mut folders: Vec<PathBuf> =
        std::fs::read_dir(root).ok()?.filter_map(|entry| entry.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    folders.sort();
    folders.into_iter().find(|f| names.iter().any(|n| f.join(n).is_file()))
}

/// Parses field `index` of a whitespace-separated line as an integer.
pub(crate) fn int_field(fields: &[&str], index: usize, path: &Path, line: usize, what: &str) -> Result<i64, ListError> {
    let raw = fields.get(index).ok_or_else(|| ListError::new(path, format!("line {line}: missing {what}")))?;
    raw.parse().map_err(|_| ListError::new(path, format!("line {line}: {what} `{raw}` is not an integer")))
}
