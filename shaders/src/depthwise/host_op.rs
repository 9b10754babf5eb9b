//! The depthwise convolution of [`super::kernel`] as a Burn operation on the CPU (flex)
//! backend, with its own backward pass under autodiff.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Shape, Tensor};

use super::kernel::{self as depthwise, DepthwiseGeometry};
use crate::common::flex::{contiguous_f32, slice, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait HostDepthwise: Backend {
    /// Depthwise convolution of `[n, c, h, w]` with `[c, 1, kh, kw]`, no bias: `pad_*` zeros
    /// before the first row / column, as many after as the output size `out_*` needs.
    #[allow(clippy::too_many_arguments)]
    fn host_depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_top: usize,
        pad_left: usize,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self>;
}

#[derive(Clone, Copy, Debug)]
struct Placement {
    stride: [usize; 2],
    padding: [usize; 2],
    out: [usize; 2],
}

fn geometry(x: &Shape, weight: &Shape, p: Placement) -> DepthwiseGeometry {
    DepthwiseGeometry {
        batch: x[0],
        channels: x[1],
        height: x[2],
        width: x[3],
        kernel: [weight[2], weight[3]],
        stride: p.stride,
        padding: p.padding,
        out_height: p.out[0],
        out_width: p.out[1],
    }
}

impl HostDepthwise for Flex {
    fn host_depthwise_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride_h: usize,
        stride_w: usize,
        pad_top: usize,
        pad_left: usize,
        out_height: usize,
        out_width: usize,
    ) -> FlexTensor {
        assert_eq!([x.dtype(), weight.dtype()], [DType::F32; 2], "the host depthwise convolution is f32 only");
        let p = Placement { stride: [stride_h, stride_w], padding: [pad_top, pad_left], out: [out_height, out_width] };
        let g = geometry(&x.shape(), &weight.shape(), p);
        let (x, weight) = (contiguous_f32(&x), contiguous_f32(&weight));
        let y = depthwise::forward(&g, slice(&x), slice(&weight));
        tensor(y, Shape::new([g.batch, g.channels, out_height, out_width]))
    }
}

#[derive(Debug)]
struct DepthwiseBackward {
    placement: Placement,
}

impl Backward<Flex, 2> for DepthwiseBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let g = geometry(&x.shape(), &weight.shape(), self.placement);
        let (x, weight, gy) = (contiguous_f32(&x), contiguous_f32(&weight), contiguous_f32(&gy));
        let (gx, gw) = depthwise::backward(&g, slice(&x), slice(&weight), slice(&gy), node_x.is_some());
        if let (Some(node), Some(gx)) = (node_x, gx) {
            grads.register::<Flex>(node.id, tensor(gx, x.shape()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, tensor(gw, weight.shape()));
        }
    }
}

impl<C: CheckpointStrategy> HostDepthwise for Autodiff<Flex, C> {
    fn host_depthwise_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_top: usize,
        pad_left: usize,
        out_height: usize,
        out_width: usize,
    ) -> FloatTensor<Self> {
        let placement = Placement { stride: [stride_h, stride_w], padding: [pad_top, pad_left], out: [out_height, out_width] };
        let backward = DepthwiseBackward { placement };
        let run = |x, weight| Flex::host_depthwise_conv2d(x, weight, stride_h, stride_w, pad_top, pad_left, out_height, out_width);
        match backward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let output = run(x.clone(), weight.clone());
                prep.finish((x, weight), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(run(x.into_primitive(), weight.into_primitive())),
        }
    }
}

/// Depthwise convolution through the host kernel; `x` must live on the CPU (flex) backend.
/// `padding` is the zeros before the first row and column, `out` the output's height and width.
pub fn depthwise_conv2d(x: Tensor<4>, weight: Tensor<4>, stride: [usize; 2], padding: [usize; 2], out: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostDepthwise>::host_depthwise_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
        out[0],
        out[1],
    ))
}
