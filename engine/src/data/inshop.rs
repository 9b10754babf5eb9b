//! In-Shop Clothes Retrieval: `list_eval_partition.txt` — a count line, a header line, then
//! `<image_name> <item_id> <train|query|gallery>`; items are `id_00000001`-style ids. The
//! published tree keeps the list in `Eval/` and the images (`img/...` in the list) in `Img/`;
//! a root with the list and `img/` side by side works too.

use std::path::Path;

use super::image_list::{ImageDataset, ImageList, ListError, TestSet, listed_path_on_line, read_first_list};

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    let (path, text) = read_first_list(root, &["list_eval_partition.txt", "Eval/list_eval_partition.txt"], "In-Shop")?;
    let images_root = if !root.join("img").is_dir() && root.join("Img/img").is_dir() { root.join("Img") } else { root.to_path_buf() };
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let declared: usize = lines
        .next()
        .and_then(|(_, l)| l.trim().parse().ok())
        .ok_or_else(|| ListError::new(&path, "line 1: expected the number of images"))?;
    match lines.next() {
        Some((_, header)) if header.split_whitespace().next() == Some("image_name") => {}
        _ => return Err(ListError::new(&path, "line 2: expected the header `image_name item_id evaluation_status`")),
    }
    let (mut train, mut query, mut gallery) = Default::default();
    let mut count = 0;
    for (n, line) in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [file, item, status] = fields[..] else {
            return Err(ListError::new(&path, format!("line {}: expected 3 fields, found {}", n + 1, fields.len())));
        };
        let label: i64 = item
            .strip_prefix("id_")
            .and_then(|digits| digits.parse().ok())
            .ok_or_else(|| ListError::new(&path, format!("line {}: item id `{item}` is not of the form id_<digits>", n + 1)))?;
        let list: &mut ImageList = match status {
            "train" => &mut train,
            "query" => &mut query,
            "gallery" => &mut gallery,
            other => return Err(ListError::new(&path, format!("line {}: unknown evaluation status `{other}`", n + 1))),
        };
        list.push(listed_path_on_line(file, &path, n + 1)?, label);
        count += 1;
    }
    if count != declared {
        return Err(ListError::new(&path, format!("declares {declared} images but lists {count}")));
    }
    Ok(ImageDataset { root: images_root, train, test: TestSet::QueryGallery { query, gallery } })
}
