//! The max pooling of [`super::max_pool`] as a Burn operation on the CPU (flex) backend, with its
//! own backward pass under autodiff.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::{Shape, Tensor};

use super::host_conv::{contiguous_f32, slice, tensor};
use super::max_pool::{self};
use super::pooling::{PoolShape, Pooling};
use crate::backend::selects_on_host;

#[backend_extension(Flex, Autodiff)]
pub trait HostMaxPool: Backend {
    /// Max pooling of `[n, c, h, w]` over `pooling`'s windows.
    fn host_max_pool2d(x: FloatTensor<Self>, pooling: Pooling) -> FloatTensor<Self>;
}

impl Pooling {
    /// The windows of a pooling module, where the host kernels cover them: no padding, or the same
    /// on both sides and at most half the window (as PyTorch requires).
    pub(super) fn of_module(window: [usize; 2], stride: [usize; 2], padding: &PaddingConfig2d, ceil_mode: bool) -> Option<Self> {
        let padding = match *padding {
            PaddingConfig2d::Valid => [0, 0],
            PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [top, left],
            _ => return None,
        };
        (padding[0] * 2 <= window[0] && padding[1] * 2 <= window[1]).then_some(Pooling { window, stride, padding, ceil_mode })
    }

    /// The windows of Burn's max-pooling module, where the host kernel covers them (no dilation).
    pub fn of_max_pool(pool: &MaxPool2d) -> Option<Self> {
        Self::of_module(pool.kernel_size, pool.stride, &pool.padding, pool.ceil_mode).filter(|_| pool.dilation == [1, 1])
    }

    /// The windows over an `[n, c, h, w]` tensor.
    pub(super) fn over_tensor(&self, x: &Shape) -> PoolShape {
        self.over(x[0] * x[1], x[2], x[3])
    }
}

fn pooled(x: &FlexTensor, pooling: Pooling) -> (FlexTensor, Vec<u32>) {
    let shape = x.shape();
    let s = pooling.over_tensor(&shape);
    let x = contiguous_f32(x);
    let (y, arg) = max_pool::forward(&s, slice(&x));
    (tensor(y, Shape::new([shape[0], shape[1], s.out_height(), s.out_width()])), arg)
}

impl HostMaxPool for Flex {
    fn host_max_pool2d(x: FlexTensor, pooling: Pooling) -> FlexTensor {
        pooled(&x, pooling).0
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Input shape, pooling, and the argmax of every output.
    type State = (Shape, Pooling, Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (shape, pooling, arg) = ops.state;
        if let Some(node) = node_x {
            let gy = contiguous_f32(&gy);
            let gx = max_pool::backward(&pooling.over_tensor(&shape), &arg, slice(&gy));
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
    }
}

impl<C: CheckpointStrategy> HostMaxPool for Autodiff<Flex, C> {
    fn host_max_pool2d(x: FloatTensor<Self>, pooling: Pooling) -> FloatTensor<Self> {
        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                let (y, arg) = pooled(x.primitive(), pooling);
                prep.finish((shape, pooling, Arc::new(arg)), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(pooled(x.primitive(), pooling).0),
        }
    }
}

/// Max pooling on the host kernel; `x` must live on the CPU (flex) backend.
pub fn max_pool2d(x: Tensor<4>, pooling: Pooling) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostMaxPool>::host_max_pool2d(x.into_dispatch(), pooling))
}

/// `pool.forward(x)`, on the host kernel where `x` lives on the CPU backend and the kernel covers
/// the pooling, else Burn's. (Burn's generic pooling and its backward took about twice as long
/// for ResNet-18's stem pool, 4 % of a training step.)
pub fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match Pooling::of_max_pool(pool) {
        Some(pooling) if selects_on_host(&x.device()) => max_pool2d(x, pooling),
        _ => pool.forward(x),
    }
}
