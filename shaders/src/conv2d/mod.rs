//! 2-D convolution: the public operation, which runs dml's host kernels on the CPU backend and
//! Burn's convolution elsewhere, and the host kernels themselves: im2col + GEMM for any geometry,
//! Winograd F(2×2, 3×3) for the 3 × 3 convolutions that keep the image size.

pub mod geometry;
mod gradients;
pub(crate) mod host_op;
pub mod im2col;
#[cfg(test)]
mod reference;
pub mod winograd;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

pub use geometry::ConvGeometry;
use gradients::chunk_len;
pub use im2col::{im2col_backward, im2col_forward};

use crate::common::geometry::symmetric_padding;
use crate::depthwise;
use crate::placement::on_host_f32;

/// Zeros added around an image: `[(top, bottom), (left, right)]`.
pub type Padding = [(usize, usize); 2];

/// `conv.forward(x)`. On the CPU backend, for the convolutions the host kernels cover (f32, one
/// group, no dilation, the same padding on both sides of each axis), dml's kernels with their own
/// backward pass; Burn's generic convolution otherwise and on every other backend.
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    match symmetric_padding(&conv.padding) {
        Some(padding) if conv.groups == 1 && on_host(conv, &x) => host_op::conv2d(x, conv.weight.val(), bias(conv), conv.stride, padding),
        _ => conv.forward(x),
    }
}

/// The convolution `conv` (built without padding of its own) of `x` with `padding` zeros around it,
/// which may differ between the two sides of an axis (TensorFlow's "same" padding at stride 2).
/// On the CPU backend a depthwise convolution (one group per channel) reads the zeros without a
/// padded copy of `x`, and a one-group convolution runs on the host kernels; Burn's operations
/// otherwise.
pub fn conv2d_padded(conv: &Conv2d, x: Tensor<4>, padding: Padding) -> Tensor<4> {
    assert!(
        matches!(conv.padding, PaddingConfig2d::Valid),
        "conv2d_padded adds the padding itself; the convolution has its own ({:?})",
        conv.padding
    );
    let [_, channels, height, width] = x.dims();
    let [kh, kw] = conv.kernel_size;
    let [sh, sw] = conv.stride;
    let [rows, cols] = padding;
    let host = on_host(conv, &x);
    if host && conv.groups == channels && channels > 1 {
        let out = [(height + rows.0 + rows.1 - kh) / sh + 1, (width + cols.0 + cols.1 - kw) / sw + 1];
        let y = depthwise::host_op::depthwise_conv2d(x, conv.weight.val(), conv.stride, [rows.0, cols.0], out);
        return match &conv.bias {
            Some(bias) => y + bias.val().reshape([1, channels, 1, 1]),
            None => y,
        };
    }
    let x = if padding == [(0, 0); 2] { x } else { x.pad([rows, cols], PadMode::Constant(0.0)) };
    if host && conv.groups == 1 {
        return host_op::conv2d(x, conv.weight.val(), bias(conv), conv.stride, [0, 0]);
    }
    conv.forward(x)
}

/// Whether `conv` of `x` can take a host kernel: on the CPU backend, f32, no dilation.
fn on_host(conv: &Conv2d, x: &Tensor<4>) -> bool {
    on_host_f32(x) && conv.dilation == [1, 1]
}

/// The bias of `conv`, zeros where it has none (the host kernel always adds one).
fn bias(conv: &Conv2d) -> Tensor<1> {
    match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([conv.weight.dims()[0]], &conv.weight.device()),
    }
}

/// `y = conv(x, weight) + bias`; `x` is `[n, ci, h, w]`, `weight` `[co, ci, kh, kw]`. The
/// convolutions that [`winograd::applies`] to run by Winograd's algorithm, the others by im2col.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(g, x, weight, bias);
    }
    im2col_forward(g, x, weight, bias)
}

/// Gradients of [`forward`] from the output gradient `gy` (`[n, co, oh, ow]`):
/// `(input gradient if wanted, weight gradient, bias gradient)`.
pub fn backward(g: &ConvGeometry, x: &[f32], weight: &[f32], gy: &[f32], want_input: bool) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    if winograd::applies(g) {
        return winograd::backward(g, x, weight, gy, want_input, chunk_len(g.batch));
    }
    im2col_backward(g, x, weight, gy, want_input)
}
