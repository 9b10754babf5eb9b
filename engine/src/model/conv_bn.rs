//! Convolution followed by batch norm (and usually ReLU): the unit every backbone is built from.
//! On the CPU backend it runs dml's host kernels; elsewhere Burn's own operations.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::backend::selects_on_host;
use crate::kernels::{Clamp, batch_norm_clamp, batch_stats, frozen_batch_norm_clamp, host_conv2d};

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
        let device = x.device();
        let norm = &self.norm;
        if !selects_on_host(&device) {
            let y = norm.forward(self.conv.forward(x));
            return if activate { relu(y) } else { y };
        }
        let weight = self.conv.weight.val();
        let bias = match &self.conv.bias {
            Some(bias) => bias.val(),
            None => Tensor::zeros([weight.dims()[0]], &device),
        };
        let y = host_conv2d(x, weight, bias, self.conv.stride, padding(&self.conv.padding));
        host_batch_norm(norm, y, if activate { Clamp::RELU } else { Clamp::NONE })
    }
}

/// Batch norm followed by `clamp` as one host kernel (on the CPU backend, where Burn's generic
/// batch norm costs several passes and copies per layer), in the mode Burn's `BatchNorm` would take:
/// in training, the batch statistics, and the running ones updated as Burn does; frozen
/// ([`ConvBn::frozen`]) or in inference (no autodiff), the running statistics, left as they are.
pub(super) fn host_batch_norm(norm: &BatchNorm, y: Tensor<4>, clamp: Clamp) -> Tensor<4> {
    let device = y.device();
    if !(device.is_autodiff() && norm.training.is_enabled()) {
        let running =
            Tensor::stack::<2>(vec![norm.running_mean.value().to_device(&device), norm.running_var.value().to_device(&device)], 0);
        return frozen_batch_norm_clamp(y, norm.gamma.val(), norm.beta.val(), running, norm.epsilon, clamp);
    }
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
    batch_norm_clamp(y, norm.gamma.val(), norm.beta.val(), stats, norm.epsilon, clamp)
}

fn padding(config: &PaddingConfig2d) -> [usize; 2] {
    match *config {
        PaddingConfig2d::Explicit(top, left, _, _) => [top, left],
        PaddingConfig2d::Valid => [0, 0],
        ref other => panic!("ConvBn is built with explicit padding, found {other:?}"),
    }
}
