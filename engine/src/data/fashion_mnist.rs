//! Fashion-MNIST, the bundled default dataset, in its IDX files. The zero-shot protocol trains on
//! classes 0–4 and tests retrieval on the unseen classes 5–9.

use std::path::{Path, PathBuf};

use super::idx::{self, IdxArray, IdxError};

/// Grey images of one size with their labels, in memory.
#[derive(Clone, Debug)]
pub struct GreyImages {
    pub height: usize,
    pub width: usize,
    /// `n × height × width` bytes.
    pub pixels: Vec<u8>,
    pub labels: Vec<i64>,
}

impl GreyImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.height * self.width;
        &self.pixels[i * size..(i + 1) * size]
    }

    /// The items whose label satisfies `keep`.
    pub fn filter(&self, keep: impl Fn(i64) -> bool) -> GreyImages {
        let size = self.height * self.width;
        let mut out = GreyImages { height: self.height, width: self.width, pixels: Vec::new(), labels: Vec::new() };
        for (i, &label) in self.labels.iter().enumerate() {
            if keep(label) {
                out.pixels.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
                out.labels.push(label);
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DatasetError {
    pub path: PathBuf,
    #[source]
    pub source: IdxError,
}

/// The bundled test set's files, compiled in so that an installed or copied `dml` binary runs its
/// default job without the source tree.
const BUNDLED_IMAGES: &[u8] = include_bytes!("../../data/fashion-mnist/t10k-images-idx3-ubyte.gz");
const BUNDLED_LABELS: &[u8] = include_bytes!("../../data/fashion-mnist/t10k-labels-idx1-ubyte.gz");
/// The bundled files' copyright and licence (Expat), which must travel with them.
pub const BUNDLED_LICENSE: &str = include_str!("../../data/fashion-mnist/LICENSE");

/// The folder of the bundled files in the source tree (`engine/data/fashion-mnist`), for tests and
/// tools that want them on disk; [`bundled`] reads the copy compiled into the library.
pub fn bundled_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist")
}

/// The bundled test set: Fashion-MNIST's 10,000 `t10k` images with their labels.
pub fn bundled() -> GreyImages {
    let images = idx::parse_gz(BUNDLED_IMAGES).expect("the bundled images are an IDX file");
    let labels = idx::parse_gz(BUNDLED_LABELS).expect("the bundled labels are an IDX file");
    assemble(images, labels).expect("the bundled images and labels agree")
}

/// Which file of an images/labels pair is at fault.
#[derive(Debug)]
enum Part {
    Images,
    Labels,
}

/// Reads `<root>/<prefix>-images-idx3-ubyte[.gz]` and the matching labels (`prefix` is `t10k`
/// or `train`).
pub fn load(root: &Path, prefix: &str) -> Result<GreyImages, DatasetError> {
    let find = |name: &str| {
        let plain = root.join(name);
        let gz = root.join(format!("{name}.gz"));
        if gz.exists() || !plain.exists() { gz } else { plain }
    };
    let images_path = find(&format!("{prefix}-images-idx3-ubyte"));
    let labels_path = find(&format!("{prefix}-labels-idx1-ubyte"));
    fn err(path: &Path) -> impl FnOnce(IdxError) -> DatasetError + '_ {
        move |source| DatasetError { path: path.to_path_buf(), source }
    }
    let images = idx::read(&images_path).map_err(err(&images_path))?;
    let labels = idx::read(&labels_path).map_err(err(&labels_path))?;
    assemble(images, labels).map_err(|(part, source)| match part {
        Part::Images => err(&images_path)(source),
        Part::Labels => err(&labels_path)(source),
    })
}

/// Images (`n × height × width`) and their `n` labels as one set.
fn assemble(images: IdxArray, labels: IdxArray) -> Result<GreyImages, (Part, IdxError)> {
    let [n, height, width] = images.dims[..] else {
        return Err((Part::Images, IdxError::Format(format!("expected 3 dimensions, found {:?}", images.dims))));
    };
    if labels.dims != [n] {
        return Err((Part::Labels, IdxError::Format(format!("{:?} labels for {n} images", labels.dims))));
    }
    Ok(GreyImages { height, width, pixels: images.data, labels: labels.data.iter().map(|&l| l as i64).collect() })
}

/// The zero-shot split of a Fashion-MNIST file pair: classes 0–4 train, 5–9 test.
pub fn zero_shot_split(images: &GreyImages) -> (GreyImages, GreyImages) {
    (images.filter(|l| l < 5), images.filter(|l| l >= 5))
}

/// The zero-shot split of the whole dataset (`dml data fetch fashion-mnist-full`): classes 0–4
/// of the 60,000 training images train; classes 5–9 of the 10,000 test images test, the same
/// test set as the bundled default, so that the two runs' numbers compare.
pub fn full_split(root: &Path) -> Result<(GreyImages, GreyImages), DatasetError> {
    let train = load(root, "train")?;
    let test = load(root, "t10k")?;
    Ok((train.filter(|l| l < 5), test.filter(|l| l >= 5)))
}

/// Height and width of Fashion-MNIST images.
pub const SIDE: usize = 28;

/// Fashion-MNIST's class names, by label.
pub const CLASS_NAMES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_test_set_is_the_bundled_files() {
        let compiled = bundled();
        let on_disk = load(&bundled_root(), "t10k").unwrap();
        assert_eq!((compiled.len(), compiled.height, compiled.width), (10_000, SIDE, SIDE));
        assert_eq!(compiled.pixels, on_disk.pixels);
        assert_eq!(compiled.labels, on_disk.labels);
        for class in 0..10 {
            assert_eq!(compiled.labels.iter().filter(|&&l| l == class).count(), 1_000);
        }
    }
}
