//! Any folder of images with one sub-folder per class; classes in sorted order, the first half
//! (rounded down) train, the rest test.

use std::path::{Path, PathBuf};

use super::image_list::{ImageDataset, ImageList, ListError, TestSet};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "gif", "webp"];

pub fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// A name starting with a dot: tools' leftovers such as `.ipynb_checkpoints/` or macOS's `._x.jpg`
/// (metadata with an image's extension), never a class or an image of the dataset.
fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// The entries of `dir` in sorted order, without hidden ones.
pub fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>, ListError> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| ListError::new(dir, e))? {
        let path = entry.map_err(|e| ListError::new(dir, e))?.path();
        if !is_hidden(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    if !root.is_dir() {
        return Err(ListError::new(root, "no such folder"));
    }
    let classes: Vec<PathBuf> = visible_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.len() < 2 {
        return Err(ListError::new(
            root,
            format!(
                "{} class folder{}; an image folder dataset needs at least 2 (one sub-folder per class)",
                classes.len(),
                if classes.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let half = classes.len() / 2;
    let (mut train, mut test) = (ImageList::default(), ImageList::default());
    for (label, class) in classes.iter().enumerate() {
        let images: Vec<PathBuf> = visible_entries(class)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect();
        if images.is_empty() {
            return Err(ListError::new(class, "class folder without images"));
        }
        let list = if label < half { &mut train } else { &mut test };
        for image in images {
            let relative = image.strip_prefix(root).expect("listed under root").to_path_buf();
            list.push(relative, label as i64);
        }
    }
    Ok(ImageDataset { root: root.to_path_buf(), train, test: TestSet::LeaveOneOut(test) })
}
