//! Datasets in their on-disk formats, the P×K sampler and the input transforms.

pub mod augment;
pub mod augment_config;
pub mod cars;
pub mod cub;
pub mod emoji;
pub mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod image_file;
pub mod image_list;
pub mod inputs;
pub mod inshop;
pub mod mat5;
pub mod sampler;
pub mod sop;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use augment::GreyTransform;
pub use augment_config::{AugmentConfig, FASHION_MNIST_MEAN, FASHION_MNIST_STD, NormalizeKind};
pub use fashion_mnist::{DatasetError, GreyImages};
pub use image_file::{ImageTransform, Normalization};
pub use image_list::{ImageDataset, ImageList, ListError, TestSet, class_count};
pub use inputs::{BadImage, Batch, InputFormat, Inputs, Pending, TestPart, panic_message};
pub use sampler::{PkSampler, SamplerConfig, SamplerError, SamplerState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The bundled zero-shot split of the Fashion-MNIST test set.
    #[default]
    FashionMnist,
    Cub,
    Cars,
    Sop,
    Inshop,
    Folder,
    /// Emoji in Google's and Twitter's styles (`dml data fetch emoji`).
    Emoji,
    /// All 70,000 Fashion-MNIST images (`dml data fetch fashion-mnist-full`): the training
    /// classes from the training set, the test classes from the test set.
    FashionMnistFull,
}

impl DatasetKind {
    pub const NAMES: [&'static str; 8] = ["fashion-mnist", "cub", "cars", "sop", "inshop", "folder", "emoji", "fashion-mnist-full"];

    /// The name in config files and on the command line.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The on-disk format of a photo dataset; `None` for the bundled grey images.
    pub fn files(self) -> Option<FileDataset> {
        match self {
            DatasetKind::FashionMnist | DatasetKind::FashionMnistFull => None,
            DatasetKind::Cub => Some(FileDataset::Cub),
            DatasetKind::Cars => Some(FileDataset::Cars),
            DatasetKind::Sop => Some(FileDataset::Sop),
            DatasetKind::Inshop => Some(FileDataset::Inshop),
            DatasetKind::Folder => Some(FileDataset::Folder),
            DatasetKind::Emoji => Some(FileDataset::Emoji),
        }
    }
}

/// A dataset enum from its serde (kebab-case) name, for command-line parsing.
fn dataset_from_name<T: serde::de::DeserializeOwned>(name: &str, names: &[&str]) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| format!("unknown dataset `{name}`, expected one of: {}", names.join(", ")))
}

impl std::str::FromStr for DatasetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        dataset_from_name(s, &Self::NAMES)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// The dataset's folder; empty for the bundled Fashion-MNIST files (and for the full set in
    /// dml's cache, where `dml data fetch fashion-mnist-full` puts it).
    pub root: PathBuf,
    /// Threads decoding photos (0: one per core).
    pub workers: usize,
    /// Batches decoded ahead of the one training uses.
    pub prefetch: usize,
    /// Leave out photos that cannot be read (reported with their paths) instead of stopping.
    pub skip_bad_images: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self { dataset: DatasetKind::FashionMnist, root: PathBuf::new(), workers: 0, prefetch: 2, skip_bad_images: false }
    }
}

/// The training classes and the unseen test classes of a dataset.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: GreyImages,
    pub test: GreyImages,
}

impl DataConfig {
    /// The dataset's folder, with the full Fashion-MNIST's default filled in; empty for the
    /// bundled Fashion-MNIST test set, which is compiled into the library.
    pub fn resolved_root(&self) -> PathBuf {
        match self.dataset {
            _ if !self.root.as_os_str().is_empty() => self.root.clone(),
            // Where `dml data fetch fashion-mnist-full` puts it.
            DatasetKind::FashionMnistFull => cache_dir().join(self.dataset.name()),
            _ => self.root.clone(),
        }
    }

    /// A readable name for a class label.
    pub fn class_name(&self, label: i64) -> String {
        match self.dataset {
            DatasetKind::FashionMnist | DatasetKind::FashionMnistFull => usize::try_from(label)
                .ok()
                .and_then(|l| fashion_mnist::CLASS_NAMES.get(l))
                .map_or_else(|| label.to_string(), |name| name.to_string()),
            _ => label.to_string(),
        }
    }

    /// The input a model trained on this dataset takes, for embedding other files.
    pub fn input_format(&self, augment: &AugmentConfig, auto: Normalization) -> InputFormat {
        match self.dataset.files() {
            None => InputFormat::Grey {
                height: fashion_mnist::SIDE,
                width: fashion_mnist::SIDE,
                transform: GreyTransform::from_config(augment),
            },
            Some(_) => InputFormat::Photo(augment.image_transform(auto)),
        }
    }

    /// The dataset's lists (or images, for Fashion-MNIST) with the transforms of `augment`.
    pub fn inputs(&self, augment: &AugmentConfig, auto: Normalization) -> Result<Inputs, ListError> {
        let root = self.resolved_root();
        match self.dataset.files() {
            None => {
                let grey_error = |e: DatasetError| ListError::new(&e.path, e.source);
                let (train, test) = if self.dataset == DatasetKind::FashionMnistFull {
                    if !root.join("train-images-idx3-ubyte.gz").exists() && !root.join("train-images-idx3-ubyte").exists() {
                        return Err(ListError::new(
                            &root,
                            "no train-images-idx3-ubyte[.gz] here; `dml data fetch fashion-mnist-full` puts the full set in this folder (or pass --root)",
                        ));
                    }
                    fashion_mnist::full_split(&root).map_err(grey_error)?
                } else if root.as_os_str().is_empty() {
                    fashion_mnist::zero_shot_split(&fashion_mnist::bundled())
                } else {
                    let images = fashion_mnist::load(&root, "t10k").map_err(grey_error)?;
                    fashion_mnist::zero_shot_split(&images)
                };
                Ok(Inputs::Grey { split: Split { train, test }, transform: GreyTransform::from_config(augment) })
            }
            Some(format) => {
                if root.as_os_str().is_empty() {
                    return Err(ListError::new(&root, format!("data.root: the {} dataset needs its folder (--root)", format.name())));
                }
                let dataset = format.load(&root)?;
                if dataset.train.is_empty() {
                    return Err(ListError::new(&root, "no training images"));
                }
                let test_empty = match &dataset.test {
                    TestSet::LeaveOneOut(list) => list.is_empty(),
                    TestSet::QueryGallery { query, gallery } => query.is_empty() || gallery.is_empty(),
                };
                if test_empty {
                    return Err(ListError::new(&root, "no test images"));
                }
                let transform = augment.image_transform(auto);
                Ok(Inputs::files(dataset, transform, self.skip_bad_images, self.workers))
            }
        }
    }
}

/// Datasets stored as image files with their list files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileDataset {
    /// CUB-200-2011.
    Cub,
    /// Cars-196.
    Cars,
    /// Stanford Online Products.
    Sop,
    /// In-Shop Clothes Retrieval.
    Inshop,
    /// One sub-folder per class.
    Folder,
    /// Emoji in two styles.
    Emoji,
}

impl FileDataset {
    pub const NAMES: [&'static str; 6] = ["cub", "cars", "sop", "inshop", "folder", "emoji"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn load(self, root: &std::path::Path) -> Result<ImageDataset, ListError> {
        match self {
            FileDataset::Cub => cub::load(root),
            FileDataset::Cars => cars::load(root),
            FileDataset::Sop => sop::load(root),
            FileDataset::Inshop => inshop::load(root),
            FileDataset::Folder => folder::load(root),
            FileDataset::Emoji => emoji::load(root),
        }
    }

    /// Image counts of the published splits: (train, test) or (train, query, gallery).
    pub fn published(self) -> Option<&'static [usize]> {
        match self {
            FileDataset::Cub => Some(&[5_864, 5_924]),
            FileDataset::Cars => Some(&[8_054, 8_131]),
            FileDataset::Sop => Some(&[59_551, 60_502]),
            FileDataset::Inshop => Some(&[25_882, 14_218, 12_612]),
            FileDataset::Folder => None,
            FileDataset::Emoji => Some(&[1_910, 1_912]),
        }
    }
}

impl std::str::FromStr for FileDataset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        dataset_from_name(s, &Self::NAMES)
    }
}

/// Where fetched datasets and weights are kept: `$DML_CACHE` if set, else the system's cache
/// folder: `$XDG_CACHE_HOME/dml` or `~/.cache/dml` on Linux and other Unix systems,
/// `~/Library/Caches/dml` on macOS, `%LOCALAPPDATA%\dml` on Windows.
pub fn cache_dir() -> PathBuf {
    cache_dir_on(std::env::consts::OS, |name| std::env::var_os(name))
}

/// [`cache_dir`] for the operating system `os`, reading environment variables through `var`.
fn cache_dir_on(os: &str, var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    if let Some(dir) = var("DML_CACHE") {
        return PathBuf::from(dir);
    }
    let home = || var("HOME").map(PathBuf::from);
    let base = match os {
        "windows" => {
            var("LOCALAPPDATA").map(PathBuf::from).or_else(|| var("USERPROFILE").map(|p| PathBuf::from(p).join("AppData").join("Local")))
        }
        "macos" => home().map(|h| h.join("Library").join("Caches")),
        _ => var("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| home().map(|h| h.join(".cache"))),
    };
    // Without any of them (a stripped-down service account), the current folder.
    base.unwrap_or_else(|| PathBuf::from(".")).join("dml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_cache_is_in_each_system_s_cache_folder() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| std::ffi::OsString::from(v))
        };
        let home = &[("HOME", "/home/ada"), ("LOCALAPPDATA", "C:\\Users\\ada\\AppData\\Local")];
        assert_eq!(cache_dir_on("linux", env(home)), Path::new("/home/ada").join(".cache").join("dml"));
        assert_eq!(cache_dir_on("linux", env(&[("HOME", "/home/ada"), ("XDG_CACHE_HOME", "/tmp/c")])), Path::new("/tmp/c").join("dml"));
        assert_eq!(cache_dir_on("macos", env(home)), Path::new("/home/ada").join("Library").join("Caches").join("dml"));
        assert_eq!(cache_dir_on("windows", env(home)), Path::new("C:\\Users\\ada\\AppData\\Local").join("dml"));
        assert_eq!(
            cache_dir_on("windows", env(&[("USERPROFILE", "C:\\Users\\ada")])),
            Path::new("C:\\Users\\ada").join("AppData").join("Local").join("dml")
        );
        assert_eq!(cache_dir_on("windows", env(&[("DML_CACHE", "D:\\cache"), ("LOCALAPPDATA", "C:\\x")])), Path::new("D:\\cache"));
        assert_eq!(cache_dir_on("freebsd", env(&[])), Path::new(".").join("dml"));
    }
}
