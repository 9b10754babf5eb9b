//! The max pooling of [`super::kernel`] as a Burn operation on the CPU (flex) backend, with its
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

use super::kernel as max_pool;
use crate::common::flex::{contiguous_f32, slice, tensor};
use crate::common::pooling::Pooling;

#[backend_extension(Flex, Autodiff)]
pub trait HostMaxPool: Backend {
    /// Max pooling of `[n, c, h, w]` over `pooling`'s windows.
    fn host_max_pool2d(x: FloatTensor<Self>, pooling: Pooling) -> FloatTensor<Self>;
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
