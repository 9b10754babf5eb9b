//! Cars-196: `cars_annos.mat` (MATLAB v5, a struct array `annotations` with fields
//! `relative_im_path` and `class`) and the images under `car_ims/`. Classes 1–98 train, 99–196
//! test.

use std::path::Path;

use super::image_list::{ImageDataset, ImageList, ListError, TestSet, listed_path, read_file};
use super::mat5::{self, MatValue};

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    let path = root.join("cars_annos.mat");
    let bytes = read_file(root, "cars_annos.mat", "Cars-196")?;
    let variables = mat5::read(&bytes).map_err(|e| ListError::new(&path, e))?;
    let annotations = variables
        .iter()
        .find(|(name, _)| name == "annotations")
        .map(|(_, v)| v)
        .ok_or_else(|| ListError::new(&path, "no variable `annotations`"))?;
    let MatValue::Struct { elements, .. } = annotations else {
        return Err(ListError::new(&path, "`annotations` is not a struct array"));
    };
    let (mut train, mut test) = (ImageList::default(), ImageList::default());
    for i in 0..elements.len() {
        let bad = |what: &str| ListError::new(&path, format!("annotations({}): {what}", i + 1));
        let file = annotations.field(i, "relative_im_path").and_then(MatValue::text).ok_or_else(|| bad("no relative_im_path text"))?;
        let class = annotations.field(i, "class").and_then(MatValue::scalar).ok_or_else(|| bad("no numeric class"))?;
        if class.fract() != 0.0 {
            return Err(bad(&format!("class {class} is not an integer")));
        }
        let class = class as i64;
        let file = listed_path(file).map_err(|e| bad(&e))?;
        match class {
            1..=98 => train.push(file, class),
            99..=196 => test.push(file, class),
            _ => return Err(bad(&format!("class {class} outside 1–196"))),
        }
    }
    Ok(ImageDataset { root: root.to_path_buf(), train, test: TestSet::LeaveOneOut(test) })
}
