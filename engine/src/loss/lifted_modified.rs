//! The modified lifted structure loss of the Deep_Metric code: separate soft-max pulls on
//! positives and soft-max pushes on negatives, per anchor.

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, masked_logsumexp, mean_over_anchors, similarity};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiftedModifiedConfig {
    pub alpha: f64,
    pub beta: f64,
}

impl Default for LiftedModifiedConfig {
    fn default() -> Self {
        Self { alpha: 40.0, beta: 2.0 }
    }
}

impl LiftedModifiedConfig {
    pub fn init(&self) -> LiftedModifiedLoss {
        LiftedModifiedLoss { alpha: self.alpha, beta: self.beta }
    }
}

#[derive(Module, Debug)]
pub struct LiftedModifiedLoss {
    pub alpha: f64,
    pub beta: f64,
}

impl LiftedModifiedLoss {
    /// `ℓ_i = (2/β) log Σ_{P_i} e^{−β S_ij} + (2/α) log Σ_{N_i} e^{α S_ik}`, mean over anchors.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let sim = similarity(embeddings);
        let masks = LabelMasks::new(labels);
        let pull = masked_logsumexp(sim.clone().mul_scalar(-self.beta), masks.pos, false);
        let push = masked_logsumexp(sim.mul_scalar(self.alpha), masks.neg, false);
        let per_anchor = pull.mul_scalar(2.0 / self.beta) + push.mul_scalar(2.0 / self.alpha);
        mean_over_anchors(per_anchor, masks.valid)
    }
}
