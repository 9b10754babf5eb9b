//! Stanford Online Products: `Ebay_train.txt` and `Ebay_test.txt`, each a header line then
//! `<image_id> <class_id> <super_class_id> <path>`.

use std::path::Path;

use super::image_list::{ImageDataset, ImageList, ListError, TestSet, int_field, listed_path_on_line, read_list};

fn list(root: &Path, name: &str) -> Result<ImageList, ListError> {
    let text = read_list(root, name, "Stanford Online Products")?;
    let path = root.join(name);
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.split_whitespace().next() == Some("image_id") => {}
        _ => return Err(ListError::new(&path, "expected the header `image_id class_id super_class_id path`")),
    }
    let mut out = ImageList::default();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let class = int_field(&fields, 1, &path, n + 1, "class_id")?;
        let file = fields.get(3).ok_or_else(|| ListError::new(&path, format!("line {}: missing path", n + 1)))?;
        out.push(listed_path_on_line(file, &path, n + 1)?, class);
    }
    Ok(out)
}

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    Ok(ImageDataset {
        root: root.to_path_buf(),
        train: list(root, "Ebay_train.txt")?,
        test: TestSet::LeaveOneOut(list(root, "Ebay_test.txt")?),
    })
}
