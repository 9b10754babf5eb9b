//! The small CNN of the default job: five 3×3 convolutions with batch norm and ReLU, two 2×2
//! max pools, global max pooling and a linear embedding, L2-normalised.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::selects_on_host;
use crate::eval::l2_normalize;
use crate::kernels::{batch_norm_relu, batch_stats, host_conv2d, host_max_pool2d};

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

/// conv3×3 → batch norm → ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            norm: BatchNormConfig::new(channels_out).init(device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        if !selects_on_host(&device) {
            return relu(self.norm.forward(self.conv.forward(x)));
        }
        let weight = self.conv.weight.val();
        let bias = match &self.conv.bias {
            Some(bias) => bias.val(),
            None => Tensor::zeros([weight.dims()[0]], &device),
        };
        let y = host_conv2d(x, weight, bias, [1, 1], [1, 1]);
        let norm = &self.norm;
        if !(device.is_autodiff() && norm.training.is_enabled()) {
            return relu(norm.forward(y));
        }
        // Training mode on the CPU backend: the fused host batch norm + ReLU, with the running
        // statistics updated exactly as Burn's BatchNorm does.
        let stats = batch_stats(y.clone().detach());
        let channels = stats.dims()[1];
        let mean = stats.clone().slice([0..1, 0..channels]).reshape([channels]);
        let variance = stats.clone().slice([1..2, 0..channels]).reshape([channels]);
        let m = norm.momentum;
        let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Tensor<1>| {
            let running = state.value_sync().to_device(&device);
            state.update(running.mul_scalar(1.0 - m).add(batch.mul_scalar(m)).detach());
        };
        update(&norm.running_mean, mean);
        update(&norm.running_var, variance);
        batch_norm_relu(y, norm.gamma.val(), norm.beta.val(), stats, norm.epsilon)
    }
}

#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBlock>,
    pool: MaxPool2d,
    embed: Linear,
}

impl SmallCnnConfig {
    pub fn init(&self, device: &Device) -> SmallCnn {
        let widths = [(self.in_channels, 32), (32, 32), (32, 64), (64, 64), (64, 128)];
        SmallCnn {
            blocks: widths.iter().map(|&(i, o)| ConvBlock::new(i, o, device)).collect(),
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
                x = if selects_on_host(&x.device()) { host_max_pool2d(x, [2, 2]) } else { self.pool.forward(x) };
            }
        }
        let [batch, channels, _, _] = x.dims();
        let pooled = x.max_dim(3).max_dim(2).reshape([batch, channels]);
        l2_normalize(self.embed.forward(pooled))
    }
}
