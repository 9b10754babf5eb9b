//! Max pooling (NCHW): the public operation, which runs dml's host kernel on the CPU backend
//! and Burn's pooling elsewhere, and the host kernel with its backward pass.

pub(crate) mod host_op;
pub mod kernel;

use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;

use crate::common::pooling::Pooling;
use crate::placement::on_host_f32;

/// `pool.forward(x)`, on the host kernel where `x` is f32 on the CPU backend and the kernel covers
/// the pooling, else Burn's. (Burn's generic pooling and its backward took about twice as long
/// for ResNet-18's stem pool, 4 % of a training step.)
pub fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match Pooling::of_max_pool(pool) {
        Some(pooling) if on_host_f32(&x) => host_op::max_pool2d(x, pooling),
        _ => pool.forward(x),
    }
}
