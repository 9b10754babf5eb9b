//! BN-Inception (Ioffe & Szegedy 2015), the backbone of the Deep_Metric and Multi-Similarity
//! reference results, in the layout of its Caffe-converted weights: convolutions with bias, each
//! followed by batch norm and ReLU; max pools with ceil rounding.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::tensor::{Device, Tensor};

use super::conv_bn::{ConvBn, ConvSpec};
use dml_kernels as kernels;

/// The widths of one inception module.
struct Widths {
    input: usize,
    /// The 1×1 branch (absent in the reduction modules).
    one: Option<usize>,
    /// 1×1 reduce → 3×3.
    three: (usize, usize),
    /// 1×1 reduce → 3×3 → 3×3.
    double: (usize, usize),
    pool: PoolBranch,
}

#[derive(Clone, Copy)]
enum PoolBranch {
    /// 3×3 average pool, stride 1, then a 1×1 projection to this width.
    Average(usize),
    /// 3×3 max pool, stride 1, then a 1×1 projection.
    Max(usize),
    /// 3×3 max pool at stride 2, no projection: the module halves the resolution.
    Reduce,
}

/// The modules 3a … 5b.
const MODULES: [Widths; 10] = [
    Widths { input: 192, one: Some(64), three: (64, 64), double: (64, 96), pool: PoolBranch::Average(32) },
    Widths { input: 256, one: Some(64), three: (64, 96), double: (64, 96), pool: PoolBranch::Average(64) },
    Widths { input: 320, one: None, three: (128, 160), double: (64, 96), pool: PoolBranch::Reduce },
    Widths { input: 576, one: Some(224), three: (64, 96), double: (96, 128), pool: PoolBranch::Average(128) },
    Widths { input: 576, one: Some(192), three: (96, 128), double: (96, 128), pool: PoolBranch::Average(128) },
    Widths { input: 576, one: Some(160), three: (128, 160), double: (128, 160), pool: PoolBranch::Average(128) },
    Widths { input: 608, one: Some(96), three: (128, 192), double: (160, 192), pool: PoolBranch::Average(128) },
    Widths { input: 608, one: None, three: (128, 192), double: (192, 256), pool: PoolBranch::Reduce },
    Widths { input: 1056, one: Some(352), three: (192, 320), double: (160, 224), pool: PoolBranch::Average(128) },
    Widths { input: 1024, one: Some(352), three: (192, 320), double: (192, 224), pool: PoolBranch::Max(128) },
];

/// Whether inception module `i` (0 = 3a … 9 = 5b) halves the resolution (and so has no 1×1 branch
/// and no pool projection).
pub fn reduces(i: usize) -> bool {
    matches!(MODULES[i].pool, PoolBranch::Reduce)
}

/// Channels of the final feature map.
pub const FEATURES: usize = 1024;

#[derive(Module, Debug)]
pub struct Inception {
    one: Option<ConvBn>,
    three_reduce: ConvBn,
    three: ConvBn,
    double_reduce: ConvBn,
    double_a: ConvBn,
    double_b: ConvBn,
    average: Option<AvgPool2d>,
    max: Option<MaxPool2d>,
    pool_proj: Option<ConvBn>,
}

fn max_pool(stride: usize, padding: usize) -> MaxPool2d {
    MaxPool2dConfig::new([3, 3])
        .with_strides([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .with_ceil_mode(true)
        .init()
}

impl Inception {
    fn new(w: &Widths, unit: &impl Fn(ConvSpec) -> ConvBn) -> Self {
        let stride = if matches!(w.pool, PoolBranch::Reduce) { 2 } else { 1 };
        let (average, max, pool_proj) = match w.pool {
            PoolBranch::Average(proj) => (
                Some(AvgPool2dConfig::new([3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).with_strides([1, 1]).init()),
                None,
                Some(proj),
            ),
            PoolBranch::Max(proj) => (None, Some(max_pool(1, 1)), Some(proj)),
            PoolBranch::Reduce => (None, Some(max_pool(2, 0)), None),
        };
        Inception {
            one: w.one.map(|c| unit(ConvSpec::new(w.input, c, 1).bias(true))),
            three_reduce: unit(ConvSpec::new(w.input, w.three.0, 1).bias(true)),
            three: unit(ConvSpec::new(w.three.0, w.three.1, 3).stride(stride).bias(true)),
            double_reduce: unit(ConvSpec::new(w.input, w.double.0, 1).bias(true)),
            double_a: unit(ConvSpec::new(w.double.0, w.double.1, 3).bias(true)),
            double_b: unit(ConvSpec::new(w.double.1, w.double.1, 3).stride(stride).bias(true)),
            average,
            max,
            pool_proj: pool_proj.map(|c| unit(ConvSpec::new(w.input, c, 1).bias(true))),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut branches = Vec::with_capacity(4);
        if let Some(one) = &self.one {
            branches.push(one.forward(x.clone()));
        }
        branches.push(self.three.forward(self.three_reduce.forward(x.clone())));
        branches.push(self.double_b.forward(self.double_a.forward(self.double_reduce.forward(x.clone()))));
        let pooled = match (&self.average, &self.max) {
            (Some(avg), _) => kernels::avg_pool(avg, x),
            (None, Some(max)) => kernels::max_pool(max, x),
            (None, None) => unreachable!("every inception module has a pool branch"),
        };
        branches.push(match &self.pool_proj {
            Some(proj) => proj.forward(pooled),
            None => pooled,
        });
        Tensor::cat(branches, 1)
    }
}

#[derive(Module, Debug)]
pub struct BnInception {
    conv1: ConvBn,
    pool1: MaxPool2d,
    conv2_reduce: ConvBn,
    conv2: ConvBn,
    pool2: MaxPool2d,
    modules: Vec<Inception>,
}

impl BnInception {
    /// `freeze_bn`: batch norm keeps its running statistics (see [`ConvBn::frozen`]).
    pub fn new(in_channels: usize, freeze_bn: bool, device: &Device) -> Self {
        let unit = |spec: ConvSpec| ConvBn::new(spec, device).frozen(freeze_bn);
        BnInception {
            conv1: unit(ConvSpec::new(in_channels, 64, 7).stride(2).bias(true)),
            pool1: max_pool(2, 0),
            conv2_reduce: unit(ConvSpec::new(64, 64, 1).bias(true)),
            conv2: unit(ConvSpec::new(64, 192, 3).bias(true)),
            pool2: max_pool(2, 0),
            modules: MODULES.iter().map(|w| Inception::new(w, &unit)).collect(),
        }
    }

    /// `[batch, channels, h, w]` → the last feature map `[batch, 1024, ⌈h / 32⌉, ⌈w / 32⌉]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        let x = kernels::max_pool(&self.pool1, self.conv1.forward(images));
        let x = kernels::max_pool(&self.pool2, self.conv2.forward(self.conv2_reduce.forward(x)));
        self.modules.iter().fold(x, |x, module| module.forward(x))
    }
}
