//! Proxy-Anchor (Kim et al. CVPR 2020): each proxy is an anchor pulling the batch's embeddings of
//! its class and pushing the others, with log-sum-exp weighting.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::pairwise::masked_logsumexp;
use super::proxy::{ProxyInit, check_labels, cosines, initial_proxies, label_mask};

/// `{"name": "proxy_anchor", "num_classes": .., "dim": .., ..}`: proxies as anchors over the whole batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAnchorConfig {
    /// Classes of the training labels, `0..num_classes`; 0 (absent) in a run config: `dml train`
    /// takes it from the training split.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub num_classes: usize,
    /// Embedding dimension; 0 (absent) in a run config: the model's `dim`.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub dim: usize,
    /// The margin on the cosines (delta).
    #[serde(default = "default_proxyanchor_margin")]
    pub margin: f64,
    /// The scale (alpha).
    #[serde(default = "default_proxyanchor_alpha")]
    pub alpha: f64,
}

fn default_proxyanchor_margin() -> f64 {
    0.1
}

fn default_proxyanchor_alpha() -> f64 {
    32.0
}

impl ProxyAnchorConfig {
    /// A config with the published defaults.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self { num_classes, dim, margin: default_proxyanchor_margin(), alpha: default_proxyanchor_alpha() }
    }

    /// The loss with initial proxies drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> ProxyAnchorLoss {
        ProxyAnchorLoss {
            proxies: initial_proxies(
                self.num_classes,
                self.dim,
                ProxyInit::Normal { variance: 2.0 / self.num_classes as f64 },
                seed,
                device,
            ),
            num_classes: self.num_classes,
            margin: self.margin,
            alpha: self.alpha,
        }
    }
}

#[derive(Module, Debug)]
pub struct ProxyAnchorLoss {
    /// W: one proxy per row.
    pub proxies: Param<Tensor<2>>,
    pub num_classes: usize,
    pub margin: f64,
    pub alpha: f64,
}

impl ProxyAnchorLoss {
    /// `(1/|C⁺|) Σ_{c∈C⁺} log(1 + Σ_{y_i=c} e^{−α(C_ic − δ)}) + (1/num_classes) Σ_c log(1 + Σ_{y_i≠c} e^{α(C_ic + δ)})`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        check_labels(&labels, self.num_classes, "proxy_anchor");
        // Per proxy (rows) over the batch (columns).
        let cos = cosines(embeddings, self.proxies.val()).transpose();
        let positive = label_mask(labels, self.num_classes).transpose();
        let pull = masked_logsumexp(cos.clone().sub_scalar(self.margin).mul_scalar(-self.alpha), positive.clone(), true);
        let push = masked_logsumexp(cos.add_scalar(self.margin).mul_scalar(self.alpha), positive.clone().bool_not(), true);
        // Proxies with a positive in the batch: a proxy without one has pull = log 1 = 0.
        let present = positive.int().sum_dim(1).squeeze_dim::<1>(1).greater_elem(0).float();
        let pull = pull.sum() / present.sum().clamp_min(1.0);
        pull + push.sum().div_scalar(self.num_classes as f64)
    }
}
