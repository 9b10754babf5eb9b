//! Convolution followed by batch norm (and usually ReLU): the unit every backbone is built from.
//! The convolution and batch norm are `dml_kernels`' operations, which choose between dml's host
//! kernels (CPU backend) and Burn's own.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use dml_kernels::{Clamp, batch_norm, conv2d};

/// The shape of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub channels_in: usize,
    pub channels_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A square `kernel × kernel` convolution with "same" padding at stride 1.
    pub fn new(channels_in: usize, channels_out: usize, kernel: usize) -> Self {
        Self { channels_in, channels_out, kernel, stride: 1, padding: kernel / 2, bias: false }
    }

    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    pub fn bias(self, bias: bool) -> Self {
        Self { bias, ..self }
    }
}

#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub norm: BatchNorm,
}

impl ConvBn {
    pub fn new(spec: ConvSpec, device: &Device) -> Self {
        let p = spec.padding;
        Self {
            conv: Conv2dConfig::new([spec.channels_in, spec.channels_out], [spec.kernel, spec.kernel])
                .with_stride([spec.stride, spec.stride])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(spec.bias)
                .init(device),
            norm: BatchNormConfig::new(spec.channels_out).init(device),
        }
    }

    /// With `frozen`, batch norm normalises with its running statistics also in training and
    /// leaves them as they are (its scale and shift still learn).
    pub fn frozen(mut self, frozen: bool) -> Self {
        if frozen {
            self.norm.training = Param::from_bool(false);
        }
        self
    }

    /// conv → batch norm → ReLU.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, true)
    }

    /// conv → batch norm, no activation (before a residual sum).
    pub fn forward_linear(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, false)
    }

    fn run(&self, x: Tensor<4>, activate: bool) -> Tensor<4> {
        batch_norm(&self.norm, conv2d(&self.conv, x), if activate { Clamp::RELU } else { Clamp::NONE })
    }
}
