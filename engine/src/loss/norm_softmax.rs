//! Normalised softmax (Zhai & Wu 2019, "Classification is a Strong Baseline for Deep Metric
//! Learning"): softmax cross-entropy over cosines to the class proxies at a temperature.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::proxy::{ProxyInit, check_labels, cosines, cross_entropy, initial_proxies, label_mask};

/// `{"name": "norm_softmax", "num_classes": .., "dim": .., ..}`: cosine softmax with a temperature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormSoftmaxConfig {
    /// Classes of the training labels, `0..num_classes`; 0 (absent) in a run config: `dml train`
    /// takes it from the training split.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub num_classes: usize,
    /// Embedding dimension; 0 (absent) in a run config: the model's `dim`.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub dim: usize,
    /// Divides the cosines.
    #[serde(default = "default_normsoftmax_temperature")]
    pub temperature: f64,
}

fn default_normsoftmax_temperature() -> f64 {
    0.05
}

impl NormSoftmaxConfig {
    /// A config with the published defaults.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self { num_classes, dim, temperature: default_normsoftmax_temperature() }
    }

    /// The loss with initial proxies drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> NormSoftmaxLoss {
        NormSoftmaxLoss {
            proxies: initial_proxies(self.num_classes, self.dim, ProxyInit::Normal { variance: 1.0 }, seed, device),
            num_classes: self.num_classes,
            temperature: self.temperature,
        }
    }
}

#[derive(Module, Debug)]
pub struct NormSoftmaxLoss {
    /// W: one proxy per row.
    pub proxies: Param<Tensor<2>>,
    pub num_classes: usize,
    pub temperature: f64,
}

impl NormSoftmaxLoss {
    /// `ℓ_i = CE_i(C_ic / temperature)`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        check_labels(&labels, self.num_classes, "norm_softmax");
        let logits = cosines(embeddings, self.proxies.val()).div_scalar(self.temperature);
        cross_entropy(logits, label_mask(labels, self.num_classes))
    }
}
