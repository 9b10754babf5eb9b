//! CUB-200-2011: `images.txt` (`<id> <path>`), `image_class_labels.txt` (`<id> <class>`), images
//! under `images/`. Classes 1–100 train, 101–200 test.

use std::collections::BTreeMap;
use std::path::Path;

use super::image_list::{ImageDataset, ImageList, ListError, TestSet, int_field, listed_path_on_line, read_list};

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    let images_txt = read_list(root, "images.txt", "CUB-200-2011")?;
    let labels_txt = read_list(root, "image_class_labels.txt", "CUB-200-2011")?;
    let images_path = root.join("images.txt");
    let labels_path = root.join("image_class_labels.txt");
    let mut paths = BTreeMap::new();
    for (n, line) in images_txt.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = int_field(&fields, 0, &images_path, n + 1, "image id")?;
        let path = fields.get(1).ok_or_else(|| ListError::new(&images_path, format!("line {}: missing path", n + 1)))?;
        let path = listed_path_on_line(path, &images_path, n + 1)?;
        if paths.insert(id, Path::new("images").join(path)).is_some() {
            return Err(ListError::new(&images_path, format!("line {}: image id {id} listed twice", n + 1)));
        }
    }
    let mut train = ImageList::default();
    let mut test = ImageList::default();
    let mut labelled = 0;
    for (n, line) in labels_txt.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = int_field(&fields, 0, &labels_path, n + 1, "image id")?;
        let class = int_field(&fields, 1, &labels_path, n + 1, "class")?;
        let path =
            paths.get(&id).ok_or_else(|| ListError::new(&labels_path, format!("line {}: image id {id} is not in images.txt", n + 1)))?;
        match class {
            1..=100 => train.push(path.clone(), class),
            101..=200 => test.push(path.clone(), class),
            _ => return Err(ListError::new(&labels_path, format!("line {}: class {class} outside 1–200", n + 1))),
        }
        labelled += 1;
    }
    if labelled != paths.len() {
        return Err(ListError::new(&labels_path, format!("{labelled} labels for {} images in images.txt", paths.len())));
    }
    Ok(ImageDataset { root: root.to_path_buf(), train, test: TestSet::LeaveOneOut(test) })
}
