//! Lifted structured loss (Song et al. CVPR 2016): for each positive pair, a smooth hinge against
//! all negatives of both of its ends.

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, distance, masked_logsumexp, similarity};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiftedConfig {
    pub margin: f64,
}

impl Default for LiftedConfig {
    fn default() -> Self {
        Self { margin: 1.0 }
    }
}

impl LiftedConfig {
    pub fn init(&self) -> LiftedLoss {
        LiftedLoss { margin: self.margin }
    }
}

#[derive(Module, Debug)]
pub struct LiftedLoss {
    pub margin: f64,
}

impl LiftedLoss {
    /// `J_ij = D_ij + log(Σ_{N_i} e^{m − D_ik} + Σ_{N_j} e^{m − D_jl})` over unordered positive
    /// pairs, `L = Σ max(0, J_ij)² / (2 · #pairs)`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let n = embeddings.dims()[0];
        let device = embeddings.device();
        let sim = similarity(embeddings.clone());
        let dist = distance(embeddings, sim);
        let masks = LabelMasks::new(labels);

        // a_i = log Σ_{k∈N_i} e^{m − D_ik}; the pair term is log(e^{a_i} + e^{a_j}).
        let a = masked_logsumexp(dist.clone().neg().add_scalar(self.margin), masks.neg, false);
        let a_row = a.clone().unsqueeze_dim::<2>(1);
        let a_col = a.unsqueeze_dim::<2>(0);
        let high = a_row.clone().max_pair(a_col.clone());
        let log_pair = high + (a_row - a_col).abs().neg().exp().add_scalar(1.0).log();

        let upper = Tensor::<2, Bool>::triu_mask([n, n], 1, &device).bool_not();
        let pairs = masks.pos.bool_and(upper);
        let count = pairs.clone().float().sum();
        let hinge = (dist + log_pair).clamp_min(0.0);
        let total = hinge.powi_scalar(2).mask_fill(pairs.bool_not(), 0.0).sum();
        total / count.clamp_min(1.0).mul_scalar(2.0)
    }
}
