//! The small CNN of the default job: five 3×3 convolutions with batch norm and ReLU, two 2×2
//! max pools, global max pooling and a linear embedding, L2-normalised.

use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::conv_bn::{ConvBn, ConvSpec};
use crate::eval::l2_normalize;
use dml_kernels as kernels;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmallCnnConfig {
    pub in_channels: usize,
    pub dim: usize,
}

impl Default for SmallCnnConfig {
    fn default() -> Self {
        Self { in_channels: 1, dim: 64 }
    }
}

#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBn>,
    pool: MaxPool2d,
    embed: Linear,
}

impl SmallCnnConfig {
    pub fn init(&self, device: &Device) -> SmallCnn {
        let widths = [(self.in_channels, 32), (32, 32), (32, 64), (64, 64), (64, 128)];
        SmallCnn {
            blocks: widths.iter().map(|&(i, o)| ConvBn::new(ConvSpec::new(i, o, 3).bias(true), device)).collect(),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            embed: LinearConfig::new(128, self.dim).init(device),
        }
    }
}

impl SmallCnn {
    /// The embedding layer: everything else is the backbone.
    pub fn head(&self) -> &Linear {
        &self.embed
    }

    /// `[batch, channels, height, width]` → unit-length embeddings `[batch, dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i == 1 || i == 3 {
                x = kernels::max_pool(&self.pool, x);
            }
        }
        let [batch, channels, _, _] = x.dims();
        let pooled = x.max_dim(3).max_dim(2).reshape([batch, channels]);
        l2_normalize(self.embed.forward(pooled))
    }
}
