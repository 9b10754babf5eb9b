//! ProxyNCA (Movshovitz-Attias et al. 2017): softmax over the negative squared distances of the
//! normalised embedding to every class's normalised proxy.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::proxy::{ProxyInit, check_labels, cosines, cross_entropy, initial_proxies, label_mask};

/// `{"name": "proxy_nca", "num_classes": .., "dim": .., ..}`: one proxy per class, softmax over distances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyNcaConfig {
    /// Classes of the training labels, `0..num_classes`; 0 (absent) in a run config: `dml train`
    /// takes it from the training split.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub num_classes: usize,
    /// Embedding dimension; 0 (absent) in a run config: the model's `dim`.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub dim: usize,
    /// Multiplies the squared distances.
    #[serde(default = "default_proxynca_softmax_scale")]
    pub softmax_scale: f64,
}

fn default_proxynca_softmax_scale() -> f64 {
    1.0
}

impl ProxyNcaConfig {
    /// A config with the published defaults.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self { num_classes, dim, softmax_scale: default_proxynca_softmax_scale() }
    }

    /// The loss with initial proxies drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> ProxyNcaLoss {
        ProxyNcaLoss {
            proxies: initial_proxies(self.num_classes, self.dim, ProxyInit::Normal { variance: 1.0 }, seed, device),
            num_classes: self.num_classes,
            softmax_scale: self.softmax_scale,
        }
    }
}

#[derive(Module, Debug)]
pub struct ProxyNcaLoss {
    /// W: one proxy per row.
    pub proxies: Param<Tensor<2>>,
    pub num_classes: usize,
    pub softmax_scale: f64,
}

impl ProxyNcaLoss {
    /// `ℓ_i = CE_i(−s‖x̂_i − ŵ_c‖²)`, computed as `CE_i(2s·C_ic)` (the constant −2s cancels).
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        check_labels(&labels, self.num_classes, "proxy_nca");
        let logits = cosines(embeddings, self.proxies.val()).mul_scalar(2.0 * self.softmax_scale);
        cross_entropy(logits, label_mask(labels, self.num_classes))
    }
}
