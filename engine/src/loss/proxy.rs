//! What the proxy losses share: their trainable proxies `W` (one row per proxy), the
//! normalisations they apply themselves, the cosines of anchors to proxies, and the softmax
//! cross-entropy over all classes (`docs/losses.md`, "Proxy losses").

use burn::module::Param;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// How a loss draws its initial proxies (the distributions pytorch-metric-learning uses).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ProxyInit {
    /// N(0, variance).
    Normal { variance: f64 },
    /// U(−bound, bound).
    Uniform { bound: f64 },
}

/// `[rows, dim]` initial proxies from `seed`, drawn on the host so that a seed means the same
/// proxies on every backend; a trainable parameter on `device`.
pub(crate) fn initial_proxies(rows: usize, dim: usize, init: ProxyInit, seed: u64, device: &Device) -> Param<Tensor<2>> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let values: Vec<f32> = (0..rows * dim)
        .map(|_| match init {
            ProxyInit::Normal { variance } => {
                // Box–Muller; 1 − u keeps the logarithm finite.
                let (u, v): (f64, f64) = (rng.random(), rng.random());
                ((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos() * variance.sqrt()) as f32
            }
            ProxyInit::Uniform { bound } => ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32,
        })
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, [rows, dim]), device))
}

/// Rows scaled to unit length, `x / max(‖x‖, 1e-12)`, differentiable through the norm.
pub(crate) fn unit_rows(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1.0e-12);
    x / norm
}

/// `C_ic = x̂_i · ŵ_c`: `[n, rows of W]`.
pub(crate) fn cosines(embeddings: Tensor<2>, proxies: Tensor<2>) -> Tensor<2> {
    unit_rows(embeddings).matmul(unit_rows(proxies).transpose())
}

/// `[n, classes]`: true where `c = y_i`.
pub(crate) fn label_mask(labels: Tensor<1, Int>, classes: usize) -> Tensor<2, Bool> {
    let n = labels.dims()[0];
    let device = labels.device();
    let columns = Tensor::<1, Int>::arange(0..classes as i64, &device).unsqueeze_dim::<2>(0).expand([n, classes]);
    labels.unsqueeze_dim::<2>(1).expand([n, classes]).equal(columns)
}

/// `(1/n) Σ_i [log Σ_c e^{z_ic} − z_{i,y_i}]`, the log-sum-exp shifted by each row's maximum.
pub(crate) fn cross_entropy(logits: Tensor<2>, target: Tensor<2, Bool>) -> Tensor<1> {
    let shift = logits.clone().detach().max_dim(1); // [n, 1]
    let log_total = (logits.clone() - shift.clone()).exp().sum_dim(1).log() + shift;
    let chosen = logits.mask_fill(target.bool_not(), 0.0).sum_dim(1);
    (log_total - chosen).mean()
}

/// Panics with a clear message when a label lies outside `0..classes`.
pub(crate) fn check_labels(labels: &Tensor<1, Int>, classes: usize, loss: &str) {
    if labels.dims()[0] == 0 {
        return;
    }
    // Both ends in one read-back: this runs on every training step.
    let range = Tensor::cat(vec![labels.clone().min(), labels.clone().max()], 0).try_into_vec_as::<i64>().expect("labels read back");
    let (low, high) = (range[0], range[1]);
    assert!(
        low >= 0 && (high as usize) < classes,
        "{loss}: labels must lie in 0..{} (num_classes = {classes}); found {low}..={high}",
        classes.saturating_sub(1)
    );
}

/// Whether a size of a proxy loss's config was left for the trainer to fill (serde's skip test).
pub(crate) fn unset(size: &usize) -> bool {
    *size == 0
}
