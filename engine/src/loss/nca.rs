//! Neighbourhood components analysis (Goldberger et al. 2004) as a batch loss: the negative log
//! probability that an anchor's stochastic nearest neighbour is one of its positives.

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, masked_logsumexp, mean_over_anchors, similarity, squared_distance};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NcaConfig {
    pub scale: f64,
}

impl Default for NcaConfig {
    fn default() -> Self {
        Self { scale: 16.0 }
    }
}

impl NcaConfig {
    pub fn init(&self) -> NcaLoss {
        NcaLoss { scale: self.scale }
    }
}

#[derive(Module, Debug)]
pub struct NcaLoss {
    pub scale: f64,
}

impl NcaLoss {
    /// `ℓ_i = −log(Σ_{P_i} e^{−s D²} / Σ_{k≠i} e^{−s D²})`, mean over anchors.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let sim = similarity(embeddings.clone());
        let logits = squared_distance(embeddings, sim).mul_scalar(-self.scale);
        let masks = LabelMasks::new(labels);
        let others = masks.pos.clone().bool_or(masks.neg.clone());
        let all = masked_logsumexp(logits.clone(), others, false);
        let positives = masked_logsumexp(logits, masks.pos, false);
        mean_over_anchors(all - positives, masks.valid)
    }
}
