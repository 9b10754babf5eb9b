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
use burn::tensor::{Shape, Tensor};

use super::host_conv::{contiguous_f32, slice, tensor};
use super::max_pool::{self, PoolShape};

#[backend_extension(Flex, Autodiff)]
pub trait HostMaxPool: Backend {
    /// Max pooling of `[n, c, h, w]` over non-overlapping `window_h × window_w` windows.
    fn host_max_pool2d(x: FloatTensor<Self>, window_h: usize, window_w: usize) -> FloatTensor<Self>;
}

fn pool_shape(x: &Shape, window: [usize; 2]) -> PoolShape {
    PoolShape { planes: x[0] * x[1], height: x[2], width: x[3], window }
}

fn pooled(x: &FlexTensor, window: [usize; 2]) -> (FlexTensor, Vec<u32>) {
    let shape = x.shape();
    let s = pool_shape(&shape, window);
    let x = contiguous_f32(x);
    let (y, arg) = max_pool::forward(&s, slice(&x));
    (tensor(y, Shape::new([shape[0], shape[1], s.out_height(), s.out_width()])), arg)
}

impl HostMaxPool for Flex {
    fn host_max_pool2d(x: FlexTensor, window_h: usize, window_w: usize) -> FlexTensor {
        pooled(&x, [window_h, window_w]).0
    }
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// Input shape, window, and the argmax of every output.
    type State = (Shape, [usize; 2], Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (shape, window, arg) = ops.state;
        if let Some(node) = node_x {
            let gy = contiguous_f32(&gy);
            let gx = max_pool::backward(&pool_shape(&shape, window), &arg, slice(&gy));
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
    }
}

impl<C: CheckpointStrategy> HostMaxPool for Autodiff<Flex, C> {
    fn host_max_pool2d(x: FloatTensor<Self>, window_h: usize, window_w: usize) -> FloatTensor<Self> {
        let window = [window_h, window_w];
        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                let (y, arg) = pooled(x.primitive(), window);
                prep.finish((shape, window, Arc::new(arg)), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(pooled(x.primitive(), window).0),
        }
    }
}

/// Max pooling over non-overlapping windows; `x` must live on the CPU (flex) backend.
pub fn max_pool2d(x: Tensor<4>, window: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostMaxPool>::host_max_pool2d(x.into_dispatch(), window[0], window[1]))
}
