//! Triplet loss with semi-hard negative mining (Schroff et al. 2015), the rule of TensorFlow's
//! `triplet_semihard_loss`: the closest negative farther than the positive, else the farthest.

use burn::module::Module;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::{LabelMasks, against, count_at_most, distance, distance_between, similarity, similarity_between};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripletSemihardConfig {
    pub margin: f64,
}

impl Default for TripletSemihardConfig {
    fn default() -> Self {
        Self { margin: 0.2 }
    }
}

impl TripletSemihardConfig {
    pub fn init(&self) -> TripletSemihardLoss {
        TripletSemihardLoss { margin: self.margin }
    }
}

#[derive(Module, Debug)]
pub struct TripletSemihardLoss {
    pub margin: f64,
}

impl TripletSemihardLoss {
    /// Mean over ordered positive pairs of `max(0, D_ap − D_an* + margin)`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        let sim = similarity(embeddings.clone());
        self.over_distances(distance(embeddings, sim), LabelMasks::new(labels))
    }

    /// Every batch anchor with every reference positive, the semi-hard negative chosen among the
    /// reference's negatives; the reference carries no gradient. The mean over those pairs.
    pub fn forward_against(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        reference: Tensor<2>,
        reference_labels: Tensor<1, Int>,
    ) -> Tensor<1> {
        against(embeddings, labels, reference, reference_labels, |x, r, masks| {
            let sim = similarity_between(x.clone(), r.clone());
            self.over_distances(distance_between(x, r, sim), masks)
        })
    }

    /// The loss from `[n, m]` anchor-to-candidate distances and masks.
    fn over_distances(&self, dist: Tensor<2>, masks: LabelMasks) -> Tensor<1> {
        let dims = dist.dims();
        let negative = semihard_negatives(dist.clone().detach(), &masks);

        let hardest = dist.clone().gather(1, negative);
        let term = (dist - hardest).add_scalar(self.margin).clamp_min(0.0);
        let has_neg = masks.neg.clone().any_dim(1).expand(dims);
        let pairs = masks.pos.clone();
        let count = pairs.clone().float().sum().clamp_min(1.0);
        term.mask_fill(pairs.bool_and(has_neg).bool_not(), 0.0).sum() / count
    }
}

/// `[n, m]`: for anchor `a` and each candidate positive `p`, the index of the chosen negative.
/// Sorting each anchor's negative distances turns "closest negative farther than `D_ap`" into a
/// search for the first sorted entry above `D_ap`: O(n² log n) rather than TensorFlow's O(n³).
fn semihard_negatives(dist: Tensor<2>, masks: &LabelMasks) -> Tensor<2, Int> {
    let dims = dist.dims();
    let negatives_only = dist.clone().mask_fill(masks.neg.clone().bool_not(), f32::MAX);
    let (sorted, order) = negatives_only.sort_with_indices(1);
    let num_neg = masks.neg.clone().int().sum_dim(1); // [n, 1]
    let farthest = num_neg.sub_scalar(1).clamp_min(0).expand(dims);
    let beyond = count_at_most(sorted, dist);
    order.gather(1, beyond.min_pair(farthest))
}
