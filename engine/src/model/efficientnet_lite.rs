//! EfficientNet-Lite0 (Tan & Le 2019; the Lite variant: ReLU6, no squeeze-and-excitation, stem
//! and head not rescaled) in the layout of its PyTorch port's weights, with TensorFlow's SAME
//! padding and batch-norm epsilon 1e-3 that those weights were trained with.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use dml_kernels::{Clamp, batch_norm, conv2d_padded};

/// One stage of MBConv blocks: `(repeats, kernel, stride of the first block, expansion, output
/// channels)`.
const STAGES: [(usize, usize, usize, usize, usize); 7] =
    [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)];

const STEM: usize = 32;

/// Per block of EfficientNet-Lite0, whether it has a 1×1 expansion (all but the first).
pub fn lite0_expands() -> Vec<bool> {
    STAGES.iter().flat_map(|&(repeats, _, _, expansion, _)| std::iter::repeat_n(expansion != 1, repeats)).collect()
}

/// Channels of the final feature map.
pub const FEATURES: usize = 1280;

const BATCH_NORM_EPSILON: f64 = 1e-3;

/// Padding `(before, after)` of one axis under TensorFlow's SAME rule: the output has
/// `⌈size / stride⌉` positions, and an odd total puts the extra row or column after.
pub fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// Convolution with SAME padding (computed for each input size), then batch norm.
#[derive(Module, Debug)]
pub struct SameConvBn {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl SameConvBn {
    /// `groups == channels_in` makes it depthwise.
    fn new(channels_in: usize, channels_out: usize, kernel: usize, stride: usize, groups: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_groups(groups)
                .with_padding(PaddingConfig2d::Valid)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels_out).with_epsilon(BATCH_NORM_EPSILON).init(device),
        }
    }

    fn frozen(mut self, frozen: bool) -> Self {
        if frozen {
            self.norm.training = Param::from_bool(false);
        }
        self
    }

    /// conv → batch norm → ReLU6 (`activate`) or conv → batch norm.
    fn forward(&self, x: Tensor<4>, activate: bool) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        let [kh, kw] = self.conv.kernel_size;
        let [sh, sw] = self.conv.stride;
        let padding = [same_padding(h, kh, sh), same_padding(w, kw, sw)];
        let y = conv2d_padded(&self.conv, x, padding);
        batch_norm(&self.norm, y, if activate { Clamp::RELU6 } else { Clamp::NONE })
    }
}

/// Inverted residual block: 1×1 expansion (absent at expansion 1), depthwise k×k, 1×1
/// projection without activation, and the identity shortcut where shapes allow.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand: Option<SameConvBn>,
    pub depthwise: SameConvBn,
    pub project: SameConvBn,
    residual: bool,
}

impl MbConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = match &self.expand {
            Some(expand) => expand.forward(x.clone(), true),
            None => x.clone(),
        };
        let y = self.project.forward(self.depthwise.forward(y, true), false);
        if self.residual { y + x } else { y }
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite {
    pub stem: SameConvBn,
    pub blocks: Vec<MbConv>,
    pub head: SameConvBn,
}

impl EfficientNetLite {
    /// EfficientNet-Lite0. `freeze_bn`: batch norm keeps its running statistics (see
    /// [`super::ConvBn::frozen`]).
    pub fn lite0(in_channels: usize, freeze_bn: bool, device: &Device) -> Self {
        let unit = |cin, cout, k, s, groups| SameConvBn::new(cin, cout, k, s, groups, device).frozen(freeze_bn);
        let mut blocks = Vec::new();
        let mut channels = STEM;
        for (repeats, kernel, stride, expansion, out) in STAGES {
            for r in 0..repeats {
                let stride = if r == 0 { stride } else { 1 };
                let wide = channels * expansion;
                blocks.push(MbConv {
                    expand: (expansion != 1).then(|| unit(channels, wide, 1, 1, 1)),
                    depthwise: unit(wide, wide, kernel, stride, wide),
                    project: unit(wide, out, 1, 1, 1),
                    residual: stride == 1 && channels == out,
                });
                channels = out;
            }
        }
        Self { stem: unit(in_channels, STEM, 3, 2, 1), blocks, head: unit(channels, FEATURES, 1, 1, 1) }
    }

    /// `[batch, channels, h, w]` → the last feature map `[batch, 1280, ⌈h / 32⌉, ⌈w / 32⌉]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = self.stem.forward(images, true);
        let x = self.blocks.iter().fold(x, |x, block| block.forward(x));
        self.head.forward(x, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // 224 → 112 with a 3×3 kernel at stride 2 pads one column, after.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(112, 5, 2), (1, 2));
        assert_eq!(same_padding(7, 3, 1), (1, 1));
        assert_eq!(same_padding(7, 5, 2), (2, 2));
        assert_eq!(same_padding(14, 1, 1), (0, 0));
    }

    #[test]
    fn lite0_has_the_published_size_and_shape() {
        let device = Device::flex();
        let net = EfficientNetLite::lite0(3, false, &device);
        assert_eq!(net.blocks.len(), 16);
        // The PyTorch port's file: 3,371,008 learned parameters besides the 1000-class layer, and
        // 42,016 running means and variances (Burn counts those as parameters too).
        assert_eq!(net.num_params(), 3_371_008 + 42_016);
        let out = net.forward(Tensor::zeros([1, 3, 224, 224], &device));
        assert_eq!(out.dims(), [1, 1280, 7, 7]);
        let out = net.forward(Tensor::zeros([1, 3, 64, 64], &device));
        assert_eq!(out.dims(), [1, 1280, 2, 2]);
    }
}
