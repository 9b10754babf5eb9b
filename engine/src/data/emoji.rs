//! Emoji in two drawing styles (the npm packages `emoji-datasource-google` and
//! `emoji-datasource-twitter`, as `dml data fetch emoji` lays them out): one class per emoji, one
//! 64 × 64 image per style; classes sorted by code point, the first half train, the rest test.
//! Retrieval on the test classes finds an emoji's other style: many classes, two images each,
//! like Stanford Online Products.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::image_list::{ImageDataset, ImageList, ListError, TestSet};

/// The drawing styles, each a folder `img/<style>/64/` of `<code points>.png`.
pub const STYLES: [&str; 2] = ["google", "twitter"];

#[derive(Deserialize)]
struct Entry {
    unified: String,
    image: String,
    #[serde(default)]
    has_img_google: bool,
    #[serde(default)]
    has_img_twitter: bool,
}

/// `1F469-200D-1F52C` → its code points, the sort key of the split.
fn code_points(unified: &str) -> Option<Vec<u32>> {
    unified.split('-').map(|h| u32::from_str_radix(h, 16).ok()).collect()
}

pub fn image_path(style: &str, image: &str) -> PathBuf {
    Path::new("img").join(style).join("64").join(image)
}

pub fn load(root: &Path) -> Result<ImageDataset, ListError> {
    let list = root.join("emoji.json");
    let text = std::fs::read_to_string(&list)
        .map_err(|e| ListError::new(&list, format!("{e} (an emoji root holds emoji.json and img/: `dml data fetch emoji` writes one)")))?;
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|e| ListError::new(&list, format!("not an emoji list: {e}")))?;
    let mut classes = Vec::with_capacity(entries.len());
    for e in entries.into_iter().filter(|e| e.has_img_google && e.has_img_twitter) {
        let key = code_points(&e.unified).ok_or_else(|| ListError::new(&list, format!("`{}`: not hexadecimal code points", e.unified)))?;
        if crate::io::plain_name(&e.image).is_none() {
            return Err(ListError::new(&list, format!("`{}`: image `{}` is not a plain file name", e.unified, e.image)));
        }
        classes.push((key, e.image));
    }
    classes.sort();
    if classes.len() < 2 {
        return Err(ListError::new(&list, format!("{} emoji drawn in both styles; at least 2 are needed", classes.len())));
    }
    let half = classes.len() / 2;
    let (mut train, mut test) = (ImageList::default(), ImageList::default());
    for (label, (_, image)) in classes.iter().enumerate() {
        let split = if label < half { &mut train } else { &mut test };
        for style in STYLES {
            split.push(image_path(style, image), label as i64);
        }
    }
    Ok(ImageDataset { root: root.to_path_buf(), train, test: TestSet::LeaveOneOut(test) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_sort_by_code_points_and_split_in_half() {
        let root = std::env::temp_dir().join(format!("dml-emoji-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        // Out of order, one drawn in one style only, a sequence sorting after its first code point.
        let json = r#"[
            {"unified": "1F600", "image": "1f600.png", "has_img_google": true, "has_img_twitter": true},
            {"unified": "0023-FE0F-20E3", "image": "0023-fe0f-20e3.png", "has_img_google": true, "has_img_twitter": true},
            {"unified": "1F4A9", "image": "1f4a9.png", "has_img_google": true, "has_img_twitter": false},
            {"unified": "1F600-200D-1F525", "image": "1f600-200d-1f525.png", "has_img_google": true, "has_img_twitter": true},
            {"unified": "00A9-FE0F", "image": "00a9-fe0f.png", "has_img_google": true, "has_img_twitter": true}
        ]"#;
        std::fs::write(root.join("emoji.json"), json).unwrap();
        let d = load(&root).unwrap();
        // `/`-joined names whatever the system's separator.
        let slashed = |p: &std::path::PathBuf| p.iter().map(|n| n.to_string_lossy()).collect::<Vec<_>>().join("/");
        let paths = |l: &ImageList| l.paths.iter().map(slashed).collect::<Vec<_>>();
        assert_eq!(
            paths(&d.train),
            [
                "img/google/64/0023-fe0f-20e3.png",
                "img/twitter/64/0023-fe0f-20e3.png",
                "img/google/64/00a9-fe0f.png",
                "img/twitter/64/00a9-fe0f.png"
            ]
        );
        assert_eq!(d.train.labels, [0, 0, 1, 1]);
        let TestSet::LeaveOneOut(test) = &d.test else { panic!() };
        assert_eq!(test.labels, [2, 2, 3, 3]);
        assert_eq!(paths(test)[2], "img/google/64/1f600-200d-1f525.png");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
