//! Contrastive loss (Hadsell et al. 2006), in the form of the Deep_Metric reference code:
//! pull every positive towards similarity 1, push negatives whose similarity exceeds the margin.

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, against, mean_over_anchors, similarity, similarity_between};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContrastiveConfig {
    pub margin: f64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        Self { margin: 0.5 }
    }
}

impl ContrastiveConfig {
    pub fn init(&self) -> ContrastiveLoss {
        ContrastiveLoss { margin: self.margin }
    }
}

#[derive(Module, Debug)]
pub struct ContrastiveLoss {
    pub margin: f64,
}

impl ContrastiveLoss {
    /// `ℓ_i = Σ_{P_i} (1 − S_ij) + Σ_{N_i, S_ik > margin} S_ik`, mean over anchors.
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
        let pull = sim.clone().neg().add_scalar(1.0).mask_fill(masks.pos.bool_not(), 0.0);
        let hard = masks.neg.bool_and(sim.clone().greater_elem(self.margin));
        let push = sim.mask_fill(hard.bool_not(), 0.0);
        let per_anchor = (pull + push).sum_dim(1).squeeze_dim(1);
        mean_over_anchors(per_anchor, masks.valid)
    }
}
