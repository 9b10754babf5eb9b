//! Binomial deviance loss (Yi et al. 2014): a soft, scaled hinge on similarities around a margin.

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, against, count_in_row, mean_over_anchors, similarity, similarity_between};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinomialConfig {
    pub pos_scale: f64,
    pub neg_scale: f64,
    pub margin: f64,
}

impl Default for BinomialConfig {
    fn default() -> Self {
        Self { pos_scale: 2.0, neg_scale: 40.0, margin: 0.5 }
    }
}

impl BinomialConfig {
    pub fn init(&self) -> BinomialLoss {
        BinomialLoss { pos_scale: self.pos_scale, neg_scale: self.neg_scale, margin: self.margin }
    }
}

#[derive(Module, Debug)]
pub struct BinomialLoss {
    pub pos_scale: f64,
    pub neg_scale: f64,
    pub margin: f64,
}

impl BinomialLoss {
    /// `ℓ_i = mean_{P_i} softplus(−pos_scale (S − margin)) + mean_{N_i} softplus(neg_scale (S − margin))`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        self.over_similarities(similarity(embeddings), LabelMasks::new(labels))
    }

    /// The batch's anchors against a reference set (cross-batch memory), which carries no gradient.
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
        let shifted = sim.sub_scalar(self.margin);
        let pos = masked_row_mean(softplus(shifted.clone().mul_scalar(-self.pos_scale)), masks.pos);
        let neg = masked_row_mean(softplus(shifted.mul_scalar(self.neg_scale)), masks.neg);
        mean_over_anchors(pos + neg, masks.valid)
    }
}

/// `log(1 + e^x)` without overflow: `max(x, 0) + log(1 + e^{−|x|})`.
pub(crate) fn softplus(x: Tensor<2>) -> Tensor<2> {
    x.clone().clamp_min(0.0) + x.abs().neg().exp().add_scalar(1.0).log()
}

fn masked_row_mean(values: Tensor<2>, mask: Tensor<2, Bool>) -> Tensor<1> {
    let count = count_in_row(mask.clone()).clamp_min(1.0);
    values.mask_fill(mask.bool_not(), 0.0).sum_dim(1).squeeze_dim(1) / count
}
