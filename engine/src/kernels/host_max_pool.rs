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
use super::pooling::PoolShape;
use crate::backend::selects_on_host;

#[backend_extension(Flex, Autodiff)]
pub trait HostMaxPool: Backend {
    /// Max pooling of `[n, c, h, w]`: `window` at `stride` with symmetric `padding` (rows,
    /// columns), floor or ceil output size.
    #[allow(clippy::too_many_arguments)]
    fn host_max_pool2d(
        x: FloatTensor<Self>,
        window_h: usize,
        window_w: usize,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        ceil_mode: bool,
    ) -> FloatTensor<Self>;
}

/// A pooling's parameters, apart from the input's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPooling {
    pub window: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ceil_mode: bool,
}

impl MaxPooling {
    /// Non-overlapping windows, no padding, floor mode.
    pub fn tiled(window: [usize; 2]) -> Self {
        MaxPooling { window, stride: window, padding: [0, 0], ceil_mode: false }
    }

    /// The pooling of Burn's module, where the host kernel covers it: no dilation, and no
    /// padding or the same on both sides.
    pub fn of(pool: &MaxPool2d) -> Option<Self> {
        let padding = symmetric_padding(&pool.padding, pool.kernel_size)?;
        (pool.dilation == [1, 1]).then_some(MaxPooling { window: pool.kernel_size, stride: pool.stride, padding, ceil_mode: pool.ceil_mode })
    }

    fn shape(&self, x: &Shape) -> PoolShape {
        PoolShape { planes: x[0] * x[1], height: x[2], width: x[3], window: self.window, stride: self.stride, padding: self.padding, ceil_mode: self.ceil_mode }
    }
}

/// A pooling module's padding as (rows, columns) on each side, where the host kernels cover it:
/// none, or the same on both sides and at most half the window (as PyTorch requires).
pub(super) fn symmetric_padding(padding: &PaddingConfig2d, window: [usize; 2]) -> Option<[usize; 2]> {
    let padding = match *padding {
        PaddingConfig2d::Valid => [0, 0],
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => [top, left],
        _ => return None,
    };
    (padding[0] * 2 <= window[0] && padding[1] * 2 <= window[1]).then_some(padding)
}

fn pooled(x: &FlexTensor, pooling: MaxPooling) -> (FlexTensor, Vec<u32>) {
    let shape = x.shape();
    let s = pooling.shape(&shape);
    let x = contiguous_f32(x);
    let (y, arg) = max_pool::forward(&s, slice(&x));
    (tensor(y, Shape::new([shape[0], shape[1], s.out_height(), s.out_width()])), arg)
}

impl HostMaxPool for Flex {
    fn host_max_pool2d(x: FlexTensor, window_h: usize, window_w: usize, stride_h: usize, stride_w: usize, pad_h: usize, pad_w: usize, ceil_mode: bool) -> FlexTensor {
        let pooling = MaxPooling { window: [window_h, window_w], stride: [stride_h, stride_w], padding: [pad_h, pad_w], ceil_mode };
        pooled(&x, pooling).0
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Input shape, pooling, and the argmax of every output.
    type State = (Shape, MaxPooling, Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (shape, pooling, arg) = ops.state;
        if let Some(node) = node_x {
            let gy = contiguous_f32(&gy);
            let gx = max_pool::backward(&pooling.shape(&shape), &arg, slice(&gy));
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
    }
}

impl<C: CheckpointStrategy> HostMaxPool for Autodiff<Flex, C> {
    fn host_max_pool2d(x: FloatTensor<Self>, window_h: usize, window_w: usize, stride_h: usize, stride_w: usize, pad_h: usize, pad_w: usize, ceil_mode: bool) -> FloatTensor<Self> {
        let pooling = MaxPooling { window: [window_h, window_w], stride: [stride_h, stride_w], padding: [pad_h, pad_w], ceil_mode };
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
pub fn max_pool2d(x: Tensor<4>, pooling: MaxPooling) -> Tensor<4> {
    let MaxPooling { window, stride, padding, ceil_mode } = pooling;
    Tensor::from_dispatch(<Dispatch as HostMaxPool>::host_max_pool2d(x.into_dispatch(), window[0], window[1], stride[0], stride[1], padding[0], padding[1], ceil_mode))
}

/// `pool.forward(x)`, on the host kernel where `x` lives on the CPU backend and the kernel covers
/// the pooling, else Burn's. (Burn's generic pooling and its backward took about twice as long
/// for ResNet-18's stem pool, 4 % of a training step.)
pub fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match MaxPooling::of(pool) {
        Some(pooling) if selects_on_host(&x.device()) => max_pool2d(x, pooling),
        _ => pool.forward(x),
    }
}
