//! The host kernels agree with Burn's own operations on the CPU backend: convolution and
//! depthwise convolution, training-mode batch norm + ReLU / ReLU6 / nothing, max and average
//! pooling, values and the gradients of every input; conv + batch norm in inference.

use burn::nn::BatchNormConfig;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::tensor::activation::{relu, relu6};
use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Distribution, Tensor};
use dml_kernels::host::{
    batch_norm_clamp, batch_stats, conv2d as host_conv2d, depthwise_conv2d as host_depthwise_conv2d, frozen_batch_norm_clamp,
};
use dml_kernels::{Clamp, Pooling, avg_pool, max_pool};

fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
    close_vec(a.into_data().iter().collect(), b.into_data().iter().collect(), what);
}

fn close_vec(a: Vec<f32>, b: Vec<f32>, what: &str) {
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

/// Depthwise convolution with zeros `rows` / `cols` (before, after) around the image, against
/// Burn's grouped convolution of the padded image.
fn check_depthwise(shape: [usize; 4], kernel: usize, stride: usize, rows: (usize, usize), cols: (usize, usize)) {
    let device = Device::flex().autodiff();
    let what = format!("depthwise x {shape:?}, kernel {kernel}, stride {stride}, rows {rows:?}, cols {cols:?}");
    let channels = shape[1];
    let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<4>::random([channels, 1, kernel, kernel], Distribution::Normal(0.0, 0.3), &device);
    let out = [(shape[2] + rows.0 + rows.1 - kernel) / stride + 1, (shape[3] + cols.0 + cols.1 - kernel) / stride + 1];
    let run = |host: bool| {
        let (x, w) = (x.clone().require_grad(), w.clone().require_grad());
        let y = if host {
            host_depthwise_conv2d(x.clone(), w.clone(), [stride, stride], [rows.0, cols.0], out)
        } else {
            let padded = x.clone().pad([rows, cols], PadMode::Constant(0.0));
            burn_conv2d(padded, w.clone(), None, ConvOptions::new([stride, stride], [0, 0], [1, 1], channels))
        };
        let loss = (y.clone() * y.clone().detach()).sum();
        let grads = loss.backward();
        (y.inner(), x.grad(&grads).unwrap(), w.grad(&grads).unwrap())
    };
    let (y, gx, gw) = run(true);
    let (y_ref, gx_ref, gw_ref) = run(false);
    assert_eq!(y.dims(), y_ref.dims(), "{what}: output shape");
    close(y, y_ref, &format!("{what}: output"));
    close(gx, gx_ref, &format!("{what}: input gradient"));
    close(gw, gw_ref, &format!("{what}: weight gradient"));
}

#[test]
fn depthwise_convolution_matches_burn_grouped_convolution() {
    // EfficientNet-Lite0's depthwise layers at 64 × 64 input, TensorFlow SAME padding.
    check_depthwise([4, 32, 32, 32], 3, 1, (1, 1), (1, 1));
    check_depthwise([4, 96, 32, 32], 3, 2, (0, 1), (0, 1));
    check_depthwise([4, 144, 16, 16], 5, 2, (1, 2), (1, 2));
    check_depthwise([4, 480, 4, 4], 5, 1, (2, 2), (2, 2));
    // Odd sizes, unequal sides and no padding.
    check_depthwise([3, 5, 9, 7], 3, 2, (1, 1), (1, 1));
    check_depthwise([2, 3, 6, 11], 3, 1, (0, 0), (0, 0));
}

type Activation = fn(Tensor<4>) -> Tensor<4>;

/// Host batch norm + `clamp` against Burn's `BatchNorm` followed by `activation`: output and the
/// gradients of x, γ and β under a random upstream gradient. Returns the host output.
/// `frozen`: the batch norm normalises with (random) running statistics, as a frozen one in
/// training does; otherwise with the batch statistics.
fn check_batch_norm(
    what: &str,
    x: &Tensor<4>,
    gamma_mean: f64,
    epsilon: f64,
    clamp: Clamp,
    activation: Activation,
    frozen: bool,
) -> Tensor<4> {
    let device = x.device();
    let [_, channels, _, _] = x.dims();
    let gamma = Tensor::<1>::random([channels], Distribution::Normal(gamma_mean, 0.5), &device);
    let beta = Tensor::<1>::random([channels], Distribution::Normal(0.0, 0.5), &device);
    let running_mean = Tensor::<1>::random([channels], Distribution::Normal(0.5, 1.0), &device).detach();
    let running_var = Tensor::<1>::random([channels], Distribution::Uniform(0.5, 9.0), &device).detach();
    let upstream = Tensor::<4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device).detach();
    let run = |host: bool| {
        let mut norm = BatchNormConfig::new(channels).with_epsilon(epsilon).init(&device);
        norm.gamma = burn::module::Param::from_tensor(gamma.clone());
        norm.beta = burn::module::Param::from_tensor(beta.clone());
        if frozen {
            norm.running_mean = burn::module::RunningState::new(running_mean.clone());
            norm.running_var = burn::module::RunningState::new(running_var.clone());
            norm.training = burn::module::Param::from_bool(false);
        }
        let x = x.clone().require_grad();
        let y = if host && frozen {
            let running = Tensor::stack::<2>(vec![running_mean.clone(), running_var.clone()], 0);
            frozen_batch_norm_clamp(x.clone(), norm.gamma.val(), norm.beta.val(), running, norm.epsilon, clamp)
        } else if host {
            let stats = batch_stats(x.clone().detach());
            batch_norm_clamp(x.clone(), norm.gamma.val(), norm.beta.val(), stats, norm.epsilon, clamp)
        } else {
            activation(norm.forward(x.clone()))
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let flat = |t: Tensor<1>| t.into_data().iter::<f32>().collect::<Vec<f32>>();
        (y.inner(), x.grad(&grads).unwrap(), flat(norm.gamma.val().grad(&grads).unwrap()), flat(norm.beta.val().grad(&grads).unwrap()))
    };
    let (y, gx, gg, gb) = run(true);
    let (y_ref, gx_ref, gg_ref, gb_ref) = run(false);
    close(y.clone(), y_ref, &format!("{what}: output"));
    close(gx, gx_ref, &format!("{what}: input gradient"));
    close_vec(gg, gg_ref, &format!("{what}: gamma gradient"));
    close_vec(gb, gb_ref, &format!("{what}: beta gradient"));
    y
}

#[test]
fn batch_norm_clamp_matches_burn_batch_norm_then_relu6_or_nothing() {
    let cases: [(Clamp, Activation); 2] = [(Clamp::RELU6, relu6), (Clamp::NONE, |x| x)];
    let device = Device::flex().autodiff();
    for ((clamp, activation), frozen) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
        // Spread 4 and γ around 3 so that some outputs pass 6.
        let x = Tensor::<4>::random([8, 5, 6, 7], Distribution::Normal(1.0, 4.0), &device);
        let what = format!("{clamp:?}, frozen {frozen}");
        let y = check_batch_norm(&what, &x, 3.0, 1e-3, clamp, activation, frozen);
        if clamp == Clamp::RELU6 {
            let top = y.into_data().iter::<f32>().filter(|&v| v == 6.0).count();
            assert!(top > 0, "{what}: no output reached 6, the test does not reach the upper clamp");
        }
    }
}

#[test]
fn batch_norm_relu_matches_burn_batch_norm_then_relu() {
    let device = Device::flex().autodiff();
    for (shape, offset) in [([8, 5, 6, 7], 0.0), ([3, 4, 2, 2], 3.0), ([16, 3, 1, 1], -1.0)] {
        let what = format!("{shape:?}");
        let x = Tensor::<4>::random(shape, Distribution::Normal(offset, 2.0), &device);
        check_batch_norm(&what, &x, 1.0, 1e-5, Clamp::RELU, relu, false);
        check_batch_norm(&format!("{what}, frozen"), &x, 1.0, 1e-5, Clamp::RELU, relu, true);
        // The statistics are the biased batch moments Burn's batch norm uses.
        let stats: Vec<f32> = batch_stats(x.clone()).into_data().iter().collect();
        let xs = x.clone().inner().swap_dims(0, 1).reshape([shape[1] as i64, -1]);
        let mean = xs.clone().mean_dim(1);
        let var = (xs - mean.clone()).powi_scalar(2).mean_dim(1);
        let expected: Vec<f32> = mean.into_data().iter().chain(var.into_data().iter()).collect();
        close_vec(stats, expected, &format!("{what}: batch statistics"));
    }
}

/// A pooling on the host kernel (`host`) against Burn's (`burn`) on a few shapes, odd sizes
/// included: output sizes, values, and the input gradients of Σ y · y (overlapping windows share
/// inputs, so their gradients must add up where they meet).
fn compare_pooling(name: &str, host: impl Fn(Tensor<4>) -> Tensor<4>, burn: impl Fn(Tensor<4>) -> Tensor<4>) {
    let device = Device::flex().autodiff();
    for shape in [[4, 3, 28, 28], [2, 5, 7, 9], [2, 3, 12, 11]] {
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |pool: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            let x = x.clone().require_grad();
            let y = pool(x.clone());
            let grads = (y.clone() * y.clone().detach()).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let (y, gx) = run(&host);
        let (y_ref, gx_ref) = run(&burn);
        assert_eq!(y.dims(), y_ref.dims(), "{name} on {shape:?}: output size");
        close(y, y_ref, &format!("{name} on {shape:?}: output"));
        close(gx, gx_ref, &format!("{name} on {shape:?}: input gradient"));
    }
}

#[test]
fn max_pool_matches_burn_max_pool() {
    let pools = [
        ("small CNN 2 × 2", MaxPool2dConfig::new([2, 2])),
        (
            "ResNet 3 × 3 / 2, padding 1",
            MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
        ),
        ("BN-Inception 3 × 3 / 2, ceil", MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_ceil_mode(true)),
        (
            "BN-Inception 3 × 3 / 1, padding 1, ceil",
            MaxPool2dConfig::new([3, 3]).with_strides([1, 1]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).with_ceil_mode(true),
        ),
    ];
    for (name, config) in pools {
        let pool = config.init();
        assert!(Pooling::of_max_pool(&pool).is_some(), "{name}: the host kernel covers it");
        compare_pooling(name, |x| max_pool(&pool, x), |x| pool.forward(x));
    }
    let same = MaxPool2dConfig::new([2, 2]).with_strides([1, 1]).with_padding(PaddingConfig2d::Same).init();
    assert!(Pooling::of_max_pool(&same).is_none(), "asymmetric padding stays with Burn's pooling");
}

#[test]
fn avg_pool_matches_burn_avg_pool() {
    let padded = |k: usize, s: usize| AvgPool2dConfig::new([k, k]).with_strides([s, s]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
    let pools = [
        ("BN-Inception 3 × 3 / 1, padding 1", padded(3, 1)),
        ("3 × 3 / 1, padding 1, padding not counted", padded(3, 1).with_count_include_pad(false)),
        ("2 × 2", AvgPool2dConfig::new([2, 2])),
        ("3 × 3 / 2, padding 1, ceil", padded(3, 2).with_ceil_mode(true)),
        ("3 × 3 / 2, padding 1, ceil, padding not counted", padded(3, 2).with_ceil_mode(true).with_count_include_pad(false)),
        ("3 × 3 / 2, ceil", AvgPool2dConfig::new([3, 3]).with_strides([2, 2]).with_ceil_mode(true)),
    ];
    for (name, config) in pools {
        let pool = config.init();
        assert!(Pooling::of_avg_pool(&pool).is_some(), "{name}: the host kernel covers it");
        compare_pooling(name, |x| avg_pool(&pool, x), |x| pool.forward(x));
    }
}

/// In inference (no autodiff) the public convolution and batch norm on the CPU backend run the
/// host kernels and normalise with the running statistics, as Burn's modules do there: a norm
/// still flagged for training, one from `valid()`, with ReLU and without.
#[test]
fn conv_and_batch_norm_in_inference_match_burn_modules_with_running_statistics() {
    use burn::module::{Module, Param, RunningState};
    use burn::nn::BatchNorm;
    use burn::nn::conv::{Conv2d, Conv2dConfig};

    let device = Device::flex();
    let trained = |device: &Device| -> (Conv2d, BatchNorm) {
        let conv = Conv2dConfig::new([6, 5], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).with_bias(false).init(device);
        let mut norm = BatchNormConfig::new(5).init(device);
        let random = |mean, spread| Tensor::<1>::random([5], Distribution::Normal(mean, spread), device);
        norm.gamma = Param::from_tensor(random(1.0, 0.5));
        norm.beta = Param::from_tensor(random(0.0, 0.5));
        norm.running_mean = RunningState::new(random(0.3, 1.0));
        norm.running_var = RunningState::new(Tensor::random([5], Distribution::Uniform(0.5, 4.0), device));
        (conv, norm)
    };
    let x = Tensor::<4>::random([4, 6, 9, 7], Distribution::Normal(0.0, 1.5), &device);
    let (conv, norm) = trained(&device.clone().autodiff());
    let units = [("flagged for training", trained(&device)), ("valid()", (conv.valid(), norm.valid()))];
    for (what, (conv, norm)) in units {
        let burn = norm.forward(conv.forward(x.clone()));
        let ours = |clamp| dml_kernels::batch_norm(&norm, dml_kernels::conv2d(&conv, x.clone()), clamp);
        close(ours(Clamp::RELU), relu(burn.clone()), &format!("{what}: conv + batch norm + ReLU"));
        close(ours(Clamp::NONE), burn.clone(), &format!("{what}: conv + batch norm"));
        // Normalised with the batch's own statistics, the output would be far from this one.
        let y = conv.forward(x.clone());
        let with_batch_statistics =
            batch_norm_clamp(y.clone(), norm.gamma.val(), norm.beta.val(), batch_stats(y), norm.epsilon, Clamp::RELU);
        let gap = (ours(Clamp::RELU) - with_batch_statistics).abs().max().into_scalar::<f32>();
        assert!(gap > 0.1, "{what}: the output is that of batch statistics (max |difference| {gap})");
    }
}

/// The public convolutions take the host kernels where they cover the module and Burn's
/// convolution otherwise, with the same values either way: symmetric explicit padding, no
/// padding, Burn's "same" padding and a dilated convolution (the last two Burn's); with padding
/// that differs between sides, a depthwise convolution with and without bias and a one-group one.
#[test]
fn public_convolutions_match_burn_modules_whichever_kernel_they_take() {
    use burn::nn::conv::Conv2dConfig;

    let device = Device::flex();
    let x = Tensor::<4>::random([2, 6, 11, 9], Distribution::Normal(0.0, 1.0), &device);
    let modules = [
        ("explicit 1", Conv2dConfig::new([6, 4], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))),
        ("valid, stride 2", Conv2dConfig::new([6, 4], [3, 3]).with_stride([2, 2])),
        ("same", Conv2dConfig::new([6, 4], [3, 3]).with_padding(PaddingConfig2d::Same)),
        ("dilated", Conv2dConfig::new([6, 4], [3, 3]).with_dilation([2, 2]).with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))),
    ];
    for (what, config) in modules {
        let conv = config.init(&device);
        close(dml_kernels::conv2d(&conv, x.clone()), conv.forward(x.clone()), what);
    }
    let padded = [
        ("depthwise", Conv2dConfig::new([6, 6], [5, 5]).with_groups(6).with_stride([2, 2]).with_bias(false)),
        ("depthwise with bias", Conv2dConfig::new([6, 6], [3, 3]).with_groups(6).with_stride([2, 2])),
        ("one group", Conv2dConfig::new([6, 3], [3, 3]).with_stride([2, 2])),
        ("two groups", Conv2dConfig::new([6, 4], [3, 3]).with_groups(2)),
    ];
    for (what, config) in padded {
        let conv = config.init(&device);
        let padding = [(1, 2), (0, 1)];
        let burn = conv.forward(x.clone().pad(padding, PadMode::Constant(0.0)));
        close(dml_kernels::conv2d_padded(&conv, x.clone(), padding), burn, what);
    }
}
