//! ResNet-18 and ResNet-50 (He et al. 2016, torchvision's layout: stride on the 3×3 convolution
//! of a bottleneck) as embedding backbones.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use super::conv_bn::{ConvBn, ConvSpec};
use dml_kernels as kernels;

/// A residual block: its units (the last without activation) plus the shortcut.
#[derive(Module, Debug)]
pub struct Residual {
    units: Vec<ConvBn>,
    /// A strided 1×1 convolution where the block changes resolution or width.
    downsample: Option<ConvBn>,
}

impl Residual {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(unit) => unit.forward_linear(x.clone()),
            None => x.clone(),
        };
        let (last, first) = self.units.split_last().expect("a block has units");
        let y = first.iter().fold(x, |y, unit| unit.forward(y));
        relu(last.forward_linear(y) + shortcut)
    }
}

#[derive(Module, Debug)]
pub struct ResLayer {
    blocks: Vec<Residual>,
}

#[derive(Module, Debug)]
pub struct ResNet {
    stem: ConvBn,
    pool: MaxPool2d,
    layers: Vec<ResLayer>,
}

/// Depth of a ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetDepth {
    D18,
    D50,
}

impl ResNetDepth {
    /// Residual blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::D18 => [2, 2, 2, 2],
            ResNetDepth::D50 => [3, 4, 6, 3],
        }
    }

    /// Output width of a block over its inner width (4 for bottlenecks).
    pub fn expansion(self) -> usize {
        match self {
            ResNetDepth::D18 => 1,
            ResNetDepth::D50 => 4,
        }
    }

    /// Channels of the final feature map.
    pub fn features(self) -> usize {
        512 * self.expansion()
    }
}

impl ResNet {
    /// `freeze_bn`: batch norm keeps its running statistics (see [`ConvBn::frozen`]).
    pub fn new(depth: ResNetDepth, in_channels: usize, freeze_bn: bool, device: &Device) -> Self {
        let unit = |spec: ConvSpec| ConvBn::new(spec, device).frozen(freeze_bn);
        let mut channels = 64;
        let mut layers = Vec::new();
        for (stage, &count) in depth.blocks().iter().enumerate() {
            let width = 64 << stage;
            let out = width * depth.expansion();
            let mut blocks = Vec::new();
            for b in 0..count {
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let units = match depth {
                    ResNetDepth::D18 => vec![unit(ConvSpec::new(channels, width, 3).stride(stride)), unit(ConvSpec::new(width, width, 3))],
                    ResNetDepth::D50 => vec![
                        unit(ConvSpec::new(channels, width, 1)),
                        unit(ConvSpec::new(width, width, 3).stride(stride)),
                        unit(ConvSpec::new(width, out, 1)),
                    ],
                };
                let downsample = (stride != 1 || channels != out).then(|| unit(ConvSpec::new(channels, out, 1).stride(stride)));
                blocks.push(Residual { units, downsample });
                channels = out;
            }
            layers.push(ResLayer { blocks });
        }
        ResNet {
            stem: unit(ConvSpec::new(in_channels, 64, 7).stride(2)),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(),
            layers,
        }
    }

    /// `[batch, channels, h, w]` → the last feature map `[batch, features, h / 32, w / 32]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = kernels::max_pool(&self.pool, self.stem.forward(images));
        self.layers.iter().flat_map(|layer| &layer.blocks).fold(x, |x, block| block.forward(x))
    }
}

#[cfg(test)]
impl ResNet {
    pub(super) fn stem_statistics(&self) -> Vec<f32> {
        let norm = &self.stem.norm;
        let mut out: Vec<f32> = norm.running_mean.value_sync().into_data().iter::<f32>().collect();
        out.extend(norm.running_var.value_sync().into_data().iter::<f32>());
        out
    }

    pub(super) fn stem_gamma(&self) -> Tensor<1> {
        self.stem.norm.gamma.val()
    }
}
