//! The `[augment]` section of a run's config: how images become network input (flips, crops,
//! resizing and normalisation), beside the transforms it configures.

use serde::{Deserialize, Serialize};

use super::image_file::{ImageTransform, Normalization};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random horizontal flips of training images.
    pub hflip: bool,
    pub normalize: NormalizeKind,
    /// Per-channel `(x − mean) / std` of pixels scaled to [0, 1], for `normalize = "custom"`.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Photos at test time: shorter side resized to this, then the centred `crop` square.
    pub resize: u32,
    /// Side of the square network input cut from photos.
    pub crop: u32,
    /// Training crops of photos: this range of fractions of the image area...
    pub crop_scale: [f32; 2],
    /// ...with a width/height ratio in this range.
    pub crop_ratio: [f32; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip: true,
            normalize: NormalizeKind::Auto,
            mean: Vec::new(),
            std: Vec::new(),
            resize: 256,
            crop: 224,
            crop_scale: [0.16, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
        }
    }
}

/// How pixels are normalised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NormalizeKind {
    /// Fashion-MNIST's own statistics (mean 0.2860, std 0.3530) for Fashion-MNIST; for photos,
    /// `bgr-255` with BN-Inception, `centred-127` with EfficientNet-Lite0 and `imagenet` with
    /// other backbones.
    #[default]
    Auto,
    /// ImageNet's RGB mean and std on [0, 1] pixels (torchvision-trained weights).
    Imagenet,
    /// BGR channels on [0, 255] minus the mean (104, 117, 128) (Caffe-trained weights).
    Bgr255,
    /// (x − 127) / 128 on [0, 255] RGB pixels (TensorFlow-trained EfficientNet-Lite weights).
    #[serde(rename = "centred-127")]
    Centred127,
    /// `mean` and `std` of this section.
    Custom,
}

/// Fashion-MNIST's pixel statistics.
pub const FASHION_MNIST_MEAN: f32 = 0.2860;
pub const FASHION_MNIST_STD: f32 = 0.3530;

impl AugmentConfig {
    /// The photo transform; `auto` is what `normalize = "auto"` means for the chosen backbone.
    pub fn image_transform(&self, auto: Normalization) -> ImageTransform {
        let normalization = match self.normalize {
            NormalizeKind::Auto => auto,
            NormalizeKind::Imagenet => Normalization::IMAGENET,
            NormalizeKind::Bgr255 => Normalization::BGR_255,
            NormalizeKind::Centred127 => Normalization::CENTRED_127,
            NormalizeKind::Custom => {
                let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
                Normalization {
                    bgr: false,
                    range: 1.0,
                    mean: std::array::from_fn(|c| pick(&self.mean, c)),
                    std: std::array::from_fn(|c| pick(&self.std, c)),
                }
            }
        };
        ImageTransform {
            resize: self.resize,
            crop: self.crop,
            scale: self.crop_scale,
            ratio: self.crop_ratio,
            hflip: self.hflip,
            normalization,
        }
    }

    /// Mean and std of grey images.
    pub fn grey_statistics(&self) -> (f32, f32) {
        match self.normalize {
            NormalizeKind::Custom => (self.mean[0], self.std[0]),
            _ => (FASHION_MNIST_MEAN, FASHION_MNIST_STD),
        }
    }
}
