//! The average pooling of [`super::avg_pool`] as a Burn operation on the CPU (flex) backend, with
//! its own backward pass under autodiff.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::nn::pool::AvgPool2d;
use burn::tensor::{Shape, Tensor};

use super::avg_pool::{self};
use super::host_conv::{contiguous_f32, slice, tensor};
use super::host_max_pool::symmetric_padding;
use super::pooling::PoolShape;
use crate::backend::selects_on_host;

#[backend_extension(Flex, Autodiff)]
pub trait HostAvgPool: Backend {
    /// Average pooling of `[n, c, h, w]`: `window` at `stride` with symmetric `padding` (rows,
    /// columns), floor or ceil output size, the padding counted in the divisor or not.
    #[allow(clippy::too_many_arguments)]
    fn host_avg_pool2d(
        x: FloatTensor<Self>,
        window_h: usize,
        window_w: usize,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> FloatTensor<Self>;
}

/// An average pooling's parameters, apart from the input's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPooling {
    pub window: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

impl AvgPooling {
    /// The pooling of Burn's module, where the host kernel covers it: no padding or the same on
    /// both sides.
    pub fn of(pool: &AvgPool2d) -> Option<Self> {
        let padding = symmetric_padding(&pool.padding, pool.kernel_size)?;
        Some(AvgPooling { window: pool.kernel_size, stride: pool.stride, padding, ceil_mode: pool.ceil_mode, count_include_pad: pool.count_include_pad })
    }

    fn shape(&self, x: &Shape) -> PoolShape {
        PoolShape { planes: x[0] * x[1], height: x[2], width: x[3], window: self.window, stride: self.stride, padding: self.padding, ceil_mode: self.ceil_mode }
    }

    fn from_args(window: [usize; 2], stride: [usize; 2], padding: [usize; 2], ceil_mode: bool, count_include_pad: bool) -> Self {
        AvgPooling { window, stride, padding, ceil_mode, count_include_pad }
    }
}

fn pooled(x: &FlexTensor, pooling: AvgPooling) -> FlexTensor {
    let shape = x.shape();
    let s = pooling.shape(&shape);
    let x = contiguous_f32(x);
    let y = avg_pool::forward(&s, pooling.count_include_pad, slice(&x));
    tensor(y, Shape::new([shape[0], shape[1], s.out_height(), s.out_width()]))
}

impl HostAvgPool for Flex {
    fn host_avg_pool2d(x: FlexTensor, window_h: usize, window_w: usize, stride_h: usize, stride_w: usize, pad_h: usize, pad_w: usize, ceil_mode: bool, count_include_pad: bool) -> FlexTensor {
        pooled(&x, AvgPooling::from_args([window_h, window_w], [stride_h, stride_w], [pad_h, pad_w], ceil_mode, count_include_pad))
    }
}

#[derive(Debug)]
struct AvgPoolBackward;

impl Backward<Flex, 1> for AvgPoolBackward {
    /// Input shape and pooling: the backward pass needs no values of the forward pass.
    type State = (Shape, AvgPooling);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (shape, pooling) = ops.state;
        if let Some(node) = node_x {
            let gy = contiguous_f32(&gy);
            let gx = avg_pool::backward(&pooling.shape(&shape), pooling.count_include_pad, slice(&gy));
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
    }
}

impl<C: CheckpointStrategy> HostAvgPool for Autodiff<Flex, C> {
    fn host_avg_pool2d(x: FloatTensor<Self>, window_h: usize, window_w: usize, stride_h: usize, stride_w: usize, pad_h: usize, pad_w: usize, ceil_mode: bool, count_include_pad: bool) -> FloatTensor<Self> {
        let pooling = AvgPooling::from_args([window_h, window_w], [stride_h, stride_w], [pad_h, pad_w], ceil_mode, count_include_pad);
        match AvgPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                let y = pooled(x.primitive(), pooling);
                prep.finish((shape, pooling), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(pooled(x.primitive(), pooling)),
        }
    }
}

/// Average pooling on the host kernel; `x` must live on the CPU (flex) backend.
pub fn avg_pool2d(x: Tensor<4>, pooling: AvgPooling) -> Tensor<4> {
    let AvgPooling { window, stride, padding, ceil_mode, count_include_pad } = pooling;
    Tensor::from_dispatch(<Dispatch as HostAvgPool>::host_avg_pool2d(
        x.into_dispatch(),
        window[0],
        window[1],
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        ceil_mode,
        count_include_pad,
    ))
}

/// `pool.forward(x)`, on the host kernel where `x` lives on the CPU backend and the kernel covers
/// the pooling, else Burn's. (Burn's generic average pooling and its backward took 17 % of a
/// BN-Inception training step, whose inception modules pool 3 × 3 at stride 1.)
pub fn avg_pool(pool: &AvgPool2d, x: Tensor<4>) -> Tensor<4> {
    match AvgPooling::of(pool) {
        Some(pooling) if selects_on_host(&x.device()) => avg_pool2d(x, pooling),
        _ => pool.forward(x),
    }
}
