//! Multi-Similarity loss (Wang et al. CVPR 2019), the "weight" loss of the Deep_Metric code:
//! mine informative pairs against the hardest pair of the other kind, then weight them softly.

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, against, any_in_row, masked_logsumexp, mean_over_anchors, similarity, similarity_between};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MultiSimilarityConfig {
    pub alpha: f64,
    pub beta: f64,
    pub base: f64,
    pub epsilon: f64,
}

impl Default for MultiSimilarityConfig {
    fn default() -> Self {
        Self { alpha: 2.0, beta: 40.0, base: 0.5, epsilon: 0.1 }
    }
}

impl MultiSimilarityConfig {
    pub fn init(&self) -> MultiSimilarityLoss {
        MultiSimilarityLoss { alpha: self.alpha, beta: self.beta, base: self.base, epsilon: self.epsilon }
    }
}

#[derive(Module, Debug)]
pub struct MultiSimilarityLoss {
    pub alpha: f64,
    pub beta: f64,
    pub base: f64,
    pub epsilon: f64,
}

impl MultiSimilarityLoss {
    /// Mining `P̃_i = {S_ij − ε < max_{N_i} S}`, `Ñ_i = {S_ik + ε > min_{P_i} S}`; then
    /// `ℓ_i = (1/α) log(1 + Σ_{P̃_i} e^{−α(S − base)}) + (1/β) log(1 + Σ_{Ñ_i} e^{β(S − base)})`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        self.over_similarities(similarity(embeddings), LabelMasks::new(labels))
    }

    /// The batch's anchors against a reference set (cross-batch memory), which carries no
    /// gradient; the mining runs over the reference.
    pub fn forward_against(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        reference: Tensor<2>,
        reference_labels: Tensor<1, Int>,
    ) -> Tensor<1> {
        against(embeddings, labels, reference, reference_labels, |x, r, masks| self.over_similarities(similarity_between(x, r), masks))
    }

    fn over_similarities(&self, sim: Tensor<2>, masks: LabelMasks) -> Tensor<1> {
        let frozen = sim.clone().detach();
        let hardest_neg = frozen.clone().mask_fill(masks.neg.clone().bool_not(), f32::MIN).max_dim(1);
        let hardest_pos = frozen.clone().mask_fill(masks.pos.clone().bool_not(), f32::MAX).min_dim(1);
        let mined_pos = masks.pos.bool_and(frozen.clone().sub_scalar(self.epsilon).lower(hardest_neg));
        let mined_neg = masks.neg.bool_and(frozen.add_scalar(self.epsilon).greater(hardest_pos));
        let valid = any_in_row(mined_pos.clone()).bool_and(any_in_row(mined_neg.clone()));

        let shifted = sim.sub_scalar(self.base);
        let pull = masked_logsumexp(shifted.clone().mul_scalar(-self.alpha), mined_pos, true);
        let push = masked_logsumexp(shifted.mul_scalar(self.beta), mined_neg, true);
        let per_anchor = pull.div_scalar(self.alpha) + push.div_scalar(self.beta);
        mean_over_anchors(per_anchor, valid)
    }
}
