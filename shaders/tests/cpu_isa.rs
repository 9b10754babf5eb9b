//! Every vector code the CPU has (AVX-512, AVX2 + FMA, the portable baseline; on ARM64 only the
//! last), under each `DML_CPU_ISA` cap in turn, for a layer of each kind, forward and backward:
//! the element-wise kernels (batch norm, pooling, Winograd's transforms) give bitwise the same
//! values; the matrix products round differently from one microkernel width to another, so layers
//! built on them agree to float rounding. One test only: the cap is process-wide.
//!
//! Each code's results are printed as `digest <code> <layer> <hash>` lines (`--nocapture`):
//! scripts/test-cpu-paths compares them with the same test run on emulated CPUs without AVX-512
//! and without AVX, to show that a cap computes bit for bit what a CPU of that kind computes.

use burn::tensor::{Device, Tensor, TensorData};
use dml_kernels::host::{batch_norm_clamp, batch_stats, conv2d as host_conv2d, max_pool2d as host_max_pool2d};
use dml_kernels::{Clamp, CpuIsa, Pooling, set_cpu_isa};

/// Deterministic values in [−1, 1) (SplitMix64), so that every run sees the same tensors.
fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| {
            let mut z = (i + seed * 0x1_0000_0000).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    let len = shape.iter().product();
    Tensor::from_data(TensorData::new(values(len, seed), shape), device).require_grad()
}

fn bits<const D: usize>(t: Tensor<D>) -> Vec<u32> {
    t.into_data().iter::<f32>().map(f32::to_bits).collect()
}

/// One convolution layer of [`layers`]: its input and weight shapes, and the seed of its first tensor.
struct Convolution {
    layer: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 2],
    seed: u64,
}

/// Outputs and gradients of: a 3 × 3 convolution that keeps the image size (Winograd), a 7 × 7
/// stride-2 one (im2col), training batch norm + ReLU, 2 × 2 and 3 × 3 max pooling; each
/// backpropagating a fixed upstream gradient. Sizes leave remainders after 8- and 16-lane loops.
/// `(name, built on matrix products, bits)` of each result.
fn layers() -> Vec<(&'static str, bool, Vec<u32>)> {
    let device = Device::flex().autodiff();
    let mut out = Vec::new();
    let mut record = |name: &'static str, t: Tensor<4>| {
        let products = name.contains("winograd") || name.contains("im2col");
        out.push((name, products, bits(t)))
    };

    let convolutions = [
        Convolution { layer: "winograd", x: [3, 16, 19, 21], w: [12, 16, 3, 3], stride: [1, 1], padding: [1, 1], seed: 1 },
        Convolution { layer: "im2col", x: [2, 3, 37, 29], w: [8, 3, 7, 7], stride: [2, 2], padding: [3, 3], seed: 5 },
        // 64 input channels: an inner dimension of 576, past the point where panel widths round apart.
        Convolution { layer: "im2col 576-deep", x: [2, 64, 15, 13], w: [8, 64, 3, 3], stride: [2, 2], padding: [1, 1], seed: 15 },
    ];
    for c in convolutions {
        let x = tensor(c.x, c.seed, &device);
        let w = tensor(c.w, c.seed + 1, &device);
        let y = host_conv2d(x.clone(), w.clone(), tensor([c.w[0]], c.seed + 2, &device), c.stride, c.padding);
        let g = (y.clone() * tensor(y.dims(), c.seed + 3, &device).detach()).sum().backward();
        let names = match c.layer {
            "winograd" => ["winograd output", "winograd input gradient", "winograd weight gradient"],
            "im2col" => ["im2col output", "im2col input gradient", "im2col weight gradient"],
            _ => ["im2col 576-deep output", "im2col 576-deep input gradient", "im2col 576-deep weight gradient"],
        };
        for (name, result) in names.into_iter().zip([y.inner(), x.grad(&g).unwrap(), w.grad(&g).unwrap()]) {
            record(name, result);
        }
    }

    let x = tensor([5, 6, 13, 11], 9, &device);
    let (gamma, beta) = (tensor([6], 10, &device), tensor([6], 11, &device));
    let stats = batch_stats(x.clone().detach());
    let y = batch_norm_clamp(x.clone(), gamma.clone(), beta.clone(), stats, 1e-5, Clamp::RELU);
    let g = (y.clone() * tensor(y.dims(), 12, &device).detach()).sum().backward();
    record("batch norm output", y.inner());
    record("batch norm input gradient", x.grad(&g).unwrap());
    record("batch norm γ gradient", gamma.grad(&g).unwrap().reshape([1, 1, 1, 6]));

    for (name, pooling) in [
        ("2 × 2 max pool", Pooling::tiled([2, 2])),
        ("3 × 3 stride-2 max pool", Pooling { window: [3, 3], stride: [2, 2], padding: [1, 1], ceil_mode: false }),
    ] {
        let x = tensor([3, 5, 34, 38], 13, &device);
        let y = host_max_pool2d(x.clone(), pooling);
        let g = (y.clone() * tensor(y.dims(), 14, &device).detach()).sum().backward();
        record(name, y.inner());
        record(name, x.grad(&g).unwrap());
    }
    out
}

/// FNV-1a of the bits.
fn digest(bits: &[u32]) -> u64 {
    bits.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

fn print_digests(isa: CpuIsa, results: &[(&str, bool, Vec<u32>)]) {
    for (i, (name, _, bits)) in results.iter().enumerate() {
        println!("digest {isa} {i:02} {} {:016x}", name.replace(' ', "_"), digest(bits));
    }
}

#[test]
fn every_vector_code_gives_the_same_results() {
    let widest = CpuIsa::detected();
    eprintln!("this CPU runs up to {widest}");
    assert_eq!(set_cpu_isa(CpuIsa::Portable), CpuIsa::Portable);
    let reference = layers();
    assert_eq!(reference, layers(), "the same code twice gives the same bits");
    print_digests(CpuIsa::Portable, &reference);
    for isa in [CpuIsa::Avx2, CpuIsa::Avx512].into_iter().filter(|&isa| isa <= widest) {
        assert_eq!(set_cpu_isa(isa), isa);
        let results = layers();
        print_digests(isa, &results);
        for ((name, products, got), (_, _, want)) in results.iter().zip(&reference) {
            let differing = got.iter().zip(want).filter(|(a, b)| a != b).count();
            if !products {
                assert_eq!(differing, 0, "{name}: {differing} of {} values differ between {isa} and portable code", want.len());
                continue;
            }
            let scale = want.iter().map(|&b| f32::from_bits(b).abs()).fold(1e-3f32, f32::max);
            let worst = got.iter().zip(want).map(|(&a, &b)| (f32::from_bits(a) - f32::from_bits(b)).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 2e-6 * scale, "{name}: {isa} differs from portable code by {worst} (scale {scale})");
            eprintln!("{isa}: {name}: {differing} of {} values round differently, by at most {worst:e} (scale {scale})", want.len());
        }
    }
    // A cap above what the CPU has is held to the CPU.
    assert_eq!(set_cpu_isa(CpuIsa::Avx512), widest);
}
