//! Batch norm + clamp (ReLU, ReLU6 or none) of [`super::kernel`] as Burn operations on the CPU (flex) backend, with
//! their own backward pass under autodiff.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

use super::kernel::{self as batch_norm, BnShape, Clamp};
use crate::common::flex::{contiguous_f32, slice, tensor};

#[backend_extension(Flex, Autodiff)]
pub trait HostBatchNorm: Backend {
    /// Per-channel batch mean and biased variance of `[n, c, h, w]`, as `[2, c]`; no gradient.
    fn host_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `clamp(batch_norm(x), low, high)` with `stats` (`[2, c]`: means, variances): either
    /// `host_bn_stats(x)` (training mode), or with `fixed` statistics that do not depend on `x`.
    #[allow(clippy::too_many_arguments)]
    fn host_bn_clamp(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        low: f64,
        high: f64,
        fixed: bool,
    ) -> FloatTensor<Self>;
}

fn bn_shape(x: &Shape) -> BnShape {
    BnShape { batch: x[0], channels: x[1], plane: x.num_elements() / (x[0] * x[1]).max(1) }
}

impl HostBatchNorm for Flex {
    fn host_bn_stats(x: FlexTensor) -> FlexTensor {
        let s = bn_shape(&x.shape());
        let x = contiguous_f32(&x);
        tensor(batch_norm::stats(&s, slice(&x)), Shape::new([2, s.channels]))
    }

    fn host_bn_clamp(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stats: FlexTensor,
        epsilon: f64,
        low: f64,
        high: f64,
        _fixed: bool,
    ) -> FlexTensor {
        let clamp = Clamp { low: low as f32, high: high as f32 };
        let shape = x.shape();
        let s = bn_shape(&shape);
        let (x, gamma, beta, stats) = (contiguous_f32(&x), contiguous_f32(&gamma), contiguous_f32(&beta), contiguous_f32(&stats));
        tensor(batch_norm::forward(&s, slice(&x), slice(&gamma), slice(&beta), slice(&stats), epsilon, clamp), shape)
    }
}

#[derive(Debug)]
struct BnClampBackward {
    epsilon: f64,
    clamp: Clamp,
    fixed: bool,
}

impl Backward<Flex, 4> for BnClampBackward {
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta, _stats] = ops.parents;
        let gy = grads.consume::<Flex>(&ops.node);
        let (x, gamma, beta, stats) = ops.state;
        let shape = x.shape();
        let s = bn_shape(&shape);
        let (x, gamma, beta, stats, gy) =
            (contiguous_f32(&x), contiguous_f32(&gamma), contiguous_f32(&beta), contiguous_f32(&stats), contiguous_f32(&gy));
        let (gx, ggamma, gbeta) = batch_norm::backward(
            &s,
            slice(&x),
            slice(&gamma),
            slice(&beta),
            slice(&stats),
            self.epsilon,
            self.clamp,
            self.fixed,
            slice(&gy),
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, tensor(gx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, tensor(ggamma, Shape::new([s.channels])));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, tensor(gbeta, Shape::new([s.channels])));
        }
    }
}

impl<C: CheckpointStrategy> HostBatchNorm for Autodiff<Flex, C> {
    fn host_bn_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        FloatTensor::<Self>::new(Flex::host_bn_stats(x.primitive().clone()))
    }

    fn host_bn_clamp(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        epsilon: f64,
        low: f64,
        high: f64,
        fixed: bool,
    ) -> FloatTensor<Self> {
        let backward = BnClampBackward { epsilon, clamp: Clamp { low: low as f32, high: high as f32 }, fixed };
        let run = |x, gamma, beta, stats| Flex::host_bn_clamp(x, gamma, beta, stats, epsilon, low, high, fixed);
        match backward.prepare::<C>([x.node(), gamma.node(), beta.node(), stats.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = (x.primitive().clone(), gamma.primitive().clone(), beta.primitive().clone(), stats.primitive().clone());
                let output = run(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), stats.into_primitive());
                prep.finish(state, output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(run(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), stats.into_primitive()))
            }
        }
    }
}

/// `[2, c]`: the batch mean and biased variance per channel of `x` (host tensors), no gradient.
pub fn batch_stats(x: Tensor<4>) -> Tensor<2> {
    Tensor::from_dispatch(<Dispatch as HostBatchNorm>::host_bn_stats(x.into_dispatch()))
}

/// `clamp(batch_norm(x))` with the batch statistics `stats = batch_stats(x)`.
pub fn batch_norm_clamp(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, stats: Tensor<2>, epsilon: f64, clamp: Clamp) -> Tensor<4> {
    bn_clamp(x, gamma, beta, stats, epsilon, clamp, false)
}

/// `clamp(batch_norm(x))` with fixed statistics `running` (`[2, c]`: means, variances), as a
/// frozen batch norm computes in training: gradients reach `x`, γ and β through the affine map.
pub fn frozen_batch_norm_clamp(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    running: Tensor<2>,
    epsilon: f64,
    clamp: Clamp,
) -> Tensor<4> {
    bn_clamp(x, gamma, beta, running.detach(), epsilon, clamp, true)
}

fn bn_clamp(x: Tensor<4>, gamma: Tensor<1>, beta: Tensor<1>, stats: Tensor<2>, epsilon: f64, clamp: Clamp, fixed: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HostBatchNorm>::host_bn_clamp(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        stats.into_dispatch(),
        epsilon,
        clamp.low as f64,
        clamp.high as f64,
        fixed,
    ))
}
