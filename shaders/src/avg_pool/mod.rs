//! Average pooling (NCHW): the public operation, which runs dml's host kernel on the CPU backend
//! and Burn's pooling elsewhere, and the host kernel with its backward pass.

pub(crate) mod host_op;
pub mod kernel;

use burn::nn::pool::AvgPool2d;
use burn::tensor::Tensor;

use crate::common::pooling::Pooling;
use crate::placement::on_host_f32;

/// `pool.forward(x)`, on the host kernel where `x` is f32 on the CPU backend and the kernel covers
/// the pooling, else Burn's. (Burn's generic average pooling and its backward took 17 % of a
/// BN-Inception training step, whose inception modules pool 3 × 3 at stride 1.)
pub fn avg_pool(pool: &AvgPool2d, x: Tensor<4>) -> Tensor<4> {
    match Pooling::of_avg_pool(pool) {
        Some(pooling) if on_host_f32(&x) => host_op::avg_pool2d(x, pooling, pool.count_include_pad),
        _ => pool.forward(x),
    }
}
