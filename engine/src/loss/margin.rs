//! Margin loss with distance-weighted sampling (Wu et al. ICCV 2017): negatives are drawn with
//! weights inverse to the density of distances on the unit sphere, so that all distances are
//! represented rather than only the easy ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, MASKED, any_in_row, count_at_most, distance, similarity};

/// Uniforms are kept below this so that `u · total` stays strictly below the total weight even
/// after f32 rounding, and the search always lands on an entry of positive weight.
const UNIFORM_MAX: f32 = 1.0 - 1.0 / (1u32 << 20) as f32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarginConfig {
    pub margin: f64,
    pub beta: f64,
    pub cutoff: f64,
    pub nonzero_loss_cutoff: f64,
    pub seed: u64,
}

impl Default for MarginConfig {
    fn default() -> Self {
        Self { margin: 0.2, beta: 1.2, cutoff: 0.5, nonzero_loss_cutoff: 1.4, seed: 0 }
    }
}

impl MarginConfig {
    pub fn init(&self) -> MarginLoss {
        MarginLoss {
            margin: self.margin,
            beta: self.beta,
            cutoff: self.cutoff,
            nonzero_loss_cutoff: self.nonzero_loss_cutoff,
            sampler: NegativeSampler::new(self.seed),
        }
    }
}

/// The random stream of the sampler: one seeded generator per forward call, so that a run can be
/// replayed (or resumed) from the seed and the number of calls made so far.
#[derive(Clone, Debug)]
pub struct NegativeSampler {
    seed: u64,
    calls: Arc<AtomicU64>,
}

impl NegativeSampler {
    pub fn new(seed: u64) -> Self {
        Self { seed, calls: Arc::new(AtomicU64::new(0)) }
    }

    /// Number of forward calls that have drawn from this sampler.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn set_calls(&self, calls: u64) {
        self.calls.store(calls, Ordering::SeqCst);
    }

    /// `[rows, cols]` uniforms in `[0, 1)` for the next call.
    fn draw(&self, rows: usize, cols: usize) -> Vec<f32> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (0..rows * cols).map(|_| rng.random::<f32>()).collect()
    }
}

#[derive(Module, Debug)]
pub struct MarginLoss {
    pub margin: f64,
    pub beta: f64,
    pub cutoff: f64,
    pub nonzero_loss_cutoff: f64,
    #[module(skip)]
    pub sampler: NegativeSampler,
}

impl MarginLoss {
    /// Draws one negative per ordered positive pair from the sampler's stream, then evaluates.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let n = embeddings.dims()[0];
        let device = embeddings.device();
        let per_row = max_positives(&labels).max(1);
        let uniforms = self.sampler.draw(n, per_row);
        let uniforms = Tensor::<2>::from_data(TensorData::new(uniforms, [n, per_row]), &device);
        self.forward_with_uniforms(embeddings, labels, uniforms)
    }

    /// The loss with given uniforms `[n, m]`: entry `(a, j)` draws the negative paired with the
    /// `j`-th positive of anchor `a`; entries at `j ≥ |P_a|` are unused.
    pub fn forward_with_uniforms(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>, uniforms: Tensor<2>) -> Tensor<1> {
        let [n, dim] = embeddings.dims();
        let m = uniforms.dims()[1];
        let device = embeddings.device();
        let sim = similarity(embeddings.clone());
        let dist = distance(embeddings, sim);
        let masks = LabelMasks::new(labels);

        let sampled = self.sample(dist.clone().detach(), &masks, dim, uniforms);
        let num_pos = masks.pos.clone().int().sum_dim(1); // [n, 1]
        let has_neg = masks.neg.clone().any_dim(1);
        let slot = Tensor::<1, Int>::arange(0..m as i64, &device).unsqueeze_dim::<2>(0).expand([n, m]);
        let drawn = slot.lower(num_pos.expand([n, m])).bool_and(has_neg.clone().expand([n, m]));
        let pairs = masks.pos.bool_and(has_neg.expand([n, n]));

        let pull = dist.clone().add_scalar(self.margin - self.beta).clamp_min(0.0);
        let push = dist.gather(1, sampled).neg().add_scalar(self.margin + self.beta).clamp_min(0.0);
        let pull_active = pairs.clone().bool_and(pull.clone().detach().greater_elem(0.0));
        let push_active = drawn.clone().bool_and(push.clone().detach().greater_elem(0.0));
        let active = pull_active.float().sum() + push_active.float().sum();
        let total = pull.mask_fill(pairs.bool_not(), 0.0).sum() + push.mask_fill(drawn.bool_not(), 0.0).sum();
        total / active.clamp_min(1.0)
    }

    /// Distance-weighted choice of negatives: `[n, m]` indices, one per uniform, each drawn by
    /// inverse CDF from the anchor's weights `w_ak ∝ 1 / q(D_ak)`, where `q` is the density of
    /// pairwise distances of uniform points on the unit sphere in `dim` dimensions.
    pub fn sample_negatives(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>, uniforms: Tensor<2>) -> Tensor<2, Int> {
        let dim = embeddings.dims()[1];
        let sim = similarity(embeddings.clone());
        let dist = distance(embeddings, sim).detach();
        self.sample(dist, &LabelMasks::new(labels), dim, uniforms)
    }

    fn sample(&self, dist: Tensor<2>, masks: &LabelMasks, dim: usize, uniforms: Tensor<2>) -> Tensor<2, Int> {
        let n = dist.dims()[0];
        let dim = dim as f64;
        let clamped = dist.clone().clamp_min(self.cutoff);
        // 1 − D²/4 reaches 0 only where D ≥ 2, far beyond the non-zero cut-off; the floor keeps
        // the log finite there for embeddings that are not unit length.
        let room = clamped.clone().powi_scalar(2).mul_scalar(-0.25).add_scalar(1.0).clamp_min(1.0e-12);
        let log_weight = clamped.log().mul_scalar(-(dim - 2.0)) - room.log().mul_scalar((dim - 3.0) / 2.0);
        let eligible = masks.neg.clone().bool_and(dist.lower_elem(self.nonzero_loss_cutoff));
        let log_weight = log_weight.mask_fill(eligible.clone().bool_not(), MASKED);
        let shift = log_weight.clone().max_dim(1);
        let weight = (log_weight - shift).exp().mask_fill(eligible.clone().bool_not(), 0.0);
        // An anchor whose negatives are all beyond the cut-off draws uniformly among them.
        let fallback = any_in_row(eligible).bool_not().unsqueeze_dim::<2>(1).expand([n, n]);
        let weight = weight.mask_where(fallback, masks.neg.clone().float());

        let cumulative = weight.cumsum(1);
        let total = cumulative.clone().slice([0..n, n - 1..n]); // [n, 1]
        let target = uniforms.clamp(0.0, UNIFORM_MAX) * total;
        count_at_most(cumulative, target).clamp(0, n as i64 - 1)
    }
}

/// Largest number of positives of any anchor in the batch.
fn max_positives(labels: &Tensor<1, Int>) -> usize {
    let labels: Vec<i64> = labels.try_to_vec_as::<i64>().expect("labels readable");
    let mut counts = std::collections::HashMap::new();
    for label in labels {
        *counts.entry(label).or_insert(0usize) += 1;
    }
    counts.values().max().map_or(0, |c| c - 1)
}
