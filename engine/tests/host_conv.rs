//! The host convolution agrees with Burn's own conv2d on the CPU backend: values and the
//! gradients of all three inputs.

use dml_engine::burn::tensor::module::conv2d as burn_conv2d;
use dml_engine::burn::tensor::ops::ConvOptions;
use dml_engine::burn::tensor::{Device, Distribution, Tensor};
use dml_engine::kernels::host_conv2d;

fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
    let (a, b): (Vec<f32>, Vec<f32>) = (a.into_data().iter().collect(), b.into_data().iter().collect());
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-4 * scale, "{what}: max |difference| {worst} (scale {scale})");
}

fn check(shape: [usize; 4], out_channels: usize, kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) {
    let device = Device::flex().autodiff();
    let what = format!("x {shape:?}, {out_channels} out, kernel {kernel:?}, stride {stride:?}, padding {padding:?}");
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<4>::random([out_channels, shape[1], kernel[0], kernel[1]], Distribution::Normal(0.0, 0.3), &device);
    let b = Tensor::<1>::random([out_channels], Distribution::Normal(0.0, 1.0), &device);
    let run = |host: bool| {
        let (x, w, b) = (x.clone().require_grad(), w.clone().require_grad(), b.clone().require_grad());
        let y = if host {
            host_conv2d(x.clone(), w.clone(), b.clone(), stride, padding)
        } else {
            burn_conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new(stride, padding, [1, 1], 1))
        };
        // A non-uniform upstream gradient: weight every output by its own value.
        let loss = (y.clone() * y.clone().detach()).sum();
        let grads = loss.backward();
        let gb = b.grad(&grads).unwrap();
        (y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap(), gb.reshape([1, 1, 1, out_channels]))
    };
    let (y, gx, gw, gb) = run(true);
    let (y_ref, gx_ref, gw_ref, gb_ref) = run(false);
    close(y, y_ref, &format!("{what}: output"));
    close(gx, gx_ref, &format!("{what}: input gradient"));
    close(gw, gw_ref, &format!("{what}: weight gradient"));
    close(gb, gb_ref, &format!("{what}: bias gradient"));
}

#[test]
fn small_cnn_layers() {
    check([4, 1, 28, 28], 8, [3, 3], [1, 1], [1, 1]);
    check([4, 16, 14, 14], 8, [3, 3], [1, 1], [1, 1]);
}

#[test]
fn strides_paddings_and_kernel_sizes() {
    check([3, 3, 17, 15], 5, [7, 7], [2, 2], [3, 3]);
    check([2, 6, 9, 9], 4, [1, 1], [1, 1], [0, 0]);
    check([2, 6, 9, 8], 4, [1, 1], [2, 2], [0, 0]);
    check([2, 4, 10, 7], 3, [3, 3], [2, 1], [0, 2]);
}
