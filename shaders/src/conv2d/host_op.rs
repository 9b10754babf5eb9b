//! The host convolution of [`super::forward`] as a Burn operation on the CPU (flex) backend, with
//! its own backward pass under autodiff.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, Tensor};

use super::geometry::ConvGeometry;
use crate::common::flex::{contiguous_f32, slice, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait HostConv: Backend {
    /// `conv2d(x, weight) + bias` with the given stride and symmetric zero padding.
    fn host_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self>;
}

fn geometry(x: &Shape, weight: &Shape, stride: [usize; 2], padding: [usize; 2]) -> ConvGeometry {
    ConvGeometry {
        batch: x[0],
        channels_in: x[1],
        height: x[2],
        width: x[3],
        channels_out: weight[0],
        kernel: [weight[2], weight[3]],
        stride,
        padding,
    }
}

impl HostConv for Flex {
    fn host_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FlexTensor {
        if [x.dtype(), weight.dtype(), bias.dtype()] != [DType::F32; 3] {
            let options = ConvOptions::new([stride_h, stride_w], [pad_h, pad_w], [1, 1], 1);
            return Flex::conv2d(x, weight, Some(bias), options);
        }
        let g = geometry(&x.shape(), &weight.shape(), [stride_h, stride_w], [pad_h, pad_w]);
        let (x, weight, bias) = (contiguous_f32(&x), contiguous_f32(&weight), contiguous_f32(&bias));
        let y = super::forward(&g, slice(&x), slice(&weight), Some(slice(&bias)));
        tensor(y, Shape::new([g.batch, g.channels_out, g.out_height(), g.out_width()]))
    }
}

#[derive(Debug)]
struct HostConvBackward {
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Backward<Flex, 3> for HostConvBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (x, weight) = ops.state;
        let g = geometry(&x.shape(), &weight.shape(), self.stride, self.padding);
        let (x, weight, gy) = (contiguous_f32(&x), contiguous_f32(&weight), contiguous_f32(&gy));
        let (gx, gw, gb) = super::backward(&g, slice(&x), slice(&weight), slice(&gy), node_x.is_some());
        if let (Some(node), Some(gx)) = (node_x, gx) {
            grads.register::<Flex>(node.id, tensor(gx, x.shape()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, tensor(gw, weight.shape()));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, tensor(gb, Shape::new([g.channels_out])));
        }
    }
}

impl<C: CheckpointStrategy> HostConv for Autodiff<Flex, C> {
    fn host_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_h: usize,
        stride_w: usize,
        pad_h: usize,
        pad_w: usize,
    ) -> FloatTensor<Self> {
        let backward = HostConvBackward { stride: [stride_h, stride_w], padding: [pad_h, pad_w] };
        match backward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
                let output = Flex::host_conv2d(x.clone(), weight.clone(), bias.into_primitive(), stride_h, stride_w, pad_h, pad_w);
                prep.finish((x, weight), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::host_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride_h,
                stride_w,
                pad_h,
                pad_w,
            )),
        }
    }
}

/// `conv2d(x, weight) + bias` through the host kernels; `x` must live on the CPU (flex) backend.
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>, stride: [usize; 2], padding: [usize; 2]) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostConv>::host_conv2d(
        x.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        stride[0],
        stride[1],
        padding[0],
        padding[1],
    ))
}
