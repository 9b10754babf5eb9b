//! Batch norm followed by a clamp (ReLU, ReLU6 or none): the public operation, which runs dml's
//! host kernels on the CPU backend and Burn's batch norm and activation elsewhere, and the host
//! kernels with their backward pass.

pub(crate) mod host_op;
pub mod kernel;

use burn::module::RunningState;
use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, relu6};

pub use kernel::Clamp;

use crate::placement::on_host_f32;

/// `clamp(norm.forward(x))`, in the mode Burn's `BatchNorm` takes: in training (autodiff, the
/// module's `training` flag on) the batch statistics, the running ones updated as Burn does;
/// otherwise (inference, or a norm frozen by turning the flag off) the running statistics, left as
/// they are, while gradients still reach `x`, γ and β. On the CPU backend one host kernel pass
/// (Burn's generic batch norm costs several passes and copies per layer); elsewhere Burn's.
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>, clamp: Clamp) -> Tensor<4> {
    if !on_host_f32(&x) {
        let y = norm.forward(x);
        return if clamp == Clamp::NONE {
            y
        } else if clamp == Clamp::RELU {
            relu(y)
        } else if clamp == Clamp::RELU6 {
            relu6(y)
        } else {
            y.clamp(clamp.low, clamp.high)
        };
    }
    let device = x.device();
    if !(device.is_autodiff() && norm.training.is_enabled()) {
        let running =
            Tensor::stack::<2>(vec![norm.running_mean.value().to_device(&device), norm.running_var.value().to_device(&device)], 0);
        return host_op::frozen_batch_norm_clamp(x, norm.gamma.val(), norm.beta.val(), running, norm.epsilon, clamp);
    }
    let stats = host_op::batch_stats(x.clone().detach());
    let channels = stats.dims()[1];
    let mean = stats.clone().slice([0..1, 0..channels]).reshape([channels]);
    let variance = stats.clone().slice([1..2, 0..channels]).reshape([channels]);
    let m = norm.momentum;
    let update = |state: &RunningState<Tensor<1>>, batch: Tensor<1>| {
        let running = state.value_sync().to_device(&device);
        state.update(running.mul_scalar(1.0 - m).add(batch.mul_scalar(m)).detach());
    };
    update(&norm.running_mean, mean);
    update(&norm.running_var, variance);
    host_op::batch_norm_clamp(x, norm.gamma.val(), norm.beta.val(), stats, norm.epsilon, clamp)
}
