//! Datasets in their on-disk formats, the P×K sampler and the input transforms.

pub mod augment;
pub mod cars;
pub mod cub;
pub mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod image_list;
pub mod inshop;
pub mod mat5;
pub mod sampler;
pub mod sop;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use augment::GreyTransform;
pub use fashion_mnist::{DatasetError, GreyImages};
pub use image_list::{ImageDataset, ImageList, ListError, TestSet};
pub use sampler::{PkSampler, SamplerError, SamplerState};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// The bundled zero-shot split of the Fashion-MNIST test set.
    #[default]
    FashionMnist,
}

impl DatasetKind {
    pub const NAMES: [&'static str; 1] = ["fashion-mnist"];
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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    pub dataset: DatasetKind,
    /// The dataset's folder; empty for the bundled Fashion-MNIST files.
    pub root: PathBuf,
}


/// The training classes and the unseen test classes of a dataset.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: GreyImages,
    pub test: GreyImages,
}

impl DataConfig {
    /// The dataset's folder, with the bundled default filled in.
    pub fn resolved_root(&self) -> PathBuf {
        if self.root.as_os_str().is_empty() {
            match self.dataset {
                DatasetKind::FashionMnist => fashion_mnist::bundled_root(),
            }
        } else {
            self.root.clone()
        }
    }

    /// A readable name for a class label.
    pub fn class_name(&self, label: i64) -> String {
        match self.dataset {
            DatasetKind::FashionMnist => usize::try_from(label)
                .ok()
                .and_then(|l| fashion_mnist::CLASS_NAMES.get(l))
                .map_or_else(|| label.to_string(), |name| name.to_string()),
        }
    }

    pub fn load(&self) -> Result<Split, DatasetError> {
        let root = self.resolved_root();
        match self.dataset {
            DatasetKind::FashionMnist => {
                let (train, test) = fashion_mnist::zero_shot_split(&fashion_mnist::load(&root, "t10k")?);
                Ok(Split { train, test })
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
}

impl FileDataset {
    pub const NAMES: [&'static str; 5] = ["cub", "cars", "sop", "inshop", "folder"];

    pub fn load(self, root: &std::path::Path) -> Result<ImageDataset, ListError> {
        match self {
            FileDataset::Cub => cub::load(root),
            FileDataset::Cars => cars::load(root),
            FileDataset::Sop => sop::load(root),
            FileDataset::Inshop => inshop::load(root),
            FileDataset::Folder => folder::load(root),
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
        }
    }
}

impl std::str::FromStr for FileDataset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        dataset_from_name(s, &Self::NAMES)
    }
}
