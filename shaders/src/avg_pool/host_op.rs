//! The average pooling of [`super::kernel`] as a Burn operation on the CPU (flex) backend, with
//! its own backward pass under autodiff.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

use super::kernel as avg_pool;
use crate::common::flex::{contiguous_f32, slice, tensor};
use crate::common::pooling::Pooling;

#[backend_extension(Flex, Autodiff)]
pub trait HostAvgPool: Backend {
    /// Average pooling of `[n, c, h, w]` over `pooling`'s windows, the padding counted in the
    /// divisor or not.
    fn host_avg_pool2d(x: FloatTensor<Self>, pooling: Pooling, count_include_pad: bool) -> FloatTensor<Self>;
}

fn pooled(x: &FlexTensor, pooling: Pooling, count_include_pad: bool) -> FlexTensor {
    let shape = x.shape();
    let s = pooling.over_tensor(&shape);
    let x = contiguous_f32(x);
    let y = avg_pool::forward(&s, count_include_pad, slice(&x));
    tensor(y, Shape::new([shape[0], shape[1], s.out_height(), s.out_width()]))
}

impl HostAvgPool for Flex {
    fn host_avg_pool2d(x: FlexTensor, pooling: Pooling, count_include_pad: bool) -> FlexTensor {
        pooled(&x, pooling, count_include_pad)
    }
}

#[derive(Debug)]
struct AvgPoolBackward;

impl Backward<Flex, 1> for AvgPoolBackward {
    /// Input shape, pooling and `count_include_pad`: the backward pass needs no values of the
    /// forward pass.
    type State = (Shape, Pooling, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (shape, pooling, count_include_pad) = ops.state;
        if let Some(node) = node_x {
            let gy = contiguous_f32(&gy);
            let gx = avg_pool::backward(&pooling.over_tensor(&shape), count_include_pad, slice(&gy));
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
    }
}

impl<C: CheckpointStrategy> HostAvgPool for Autodiff<Flex, C> {
    fn host_avg_pool2d(x: FloatTensor<Self>, pooling: Pooling, count_include_pad: bool) -> FloatTensor<Self> {
        match AvgPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let shape = x.primitive().shape();
                let y = pooled(x.primitive(), pooling, count_include_pad);
                prep.finish((shape, pooling, count_include_pad), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(pooled(x.primitive(), pooling, count_include_pad)),
        }
    }
}

/// Average pooling on the host kernel; `x` must live on the CPU (flex) backend.
pub fn avg_pool2d(x: Tensor<4>, pooling: Pooling, count_include_pad: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostAvgPool>::host_avg_pool2d(x.into_dispatch(), pooling, count_include_pad))
}
