//! SoftTriple (Qian et al. ICCV 2019): K centres per class; a class's similarity is the
//! softmax-weighted mean of its centres' cosines; cross-entropy with a margin on the true class.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::proxy::{ProxyInit, check_labels, cosines, cross_entropy, initial_proxies, label_mask};

/// `{"name": "soft_triple", "num_classes": .., "dim": .., ..}`: K centres per class, relaxed similarity, margin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftTripleConfig {
    /// Classes of the training labels, `0..num_classes`; 0 (absent) in a run config: `dml train`
    /// takes it from the training split.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub num_classes: usize,
    /// Embedding dimension; 0 (absent) in a run config: the model's `dim`.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub dim: usize,
    /// K, the centres per class.
    #[serde(default = "default_softtriple_centers_per_class")]
    pub centers_per_class: usize,
    /// Scale of the logits (lambda).
    #[serde(default = "default_softtriple_la")]
    pub la: f64,
    /// Temperature of the softmax over each class's centres.
    #[serde(default = "default_softtriple_gamma")]
    pub gamma: f64,
    /// Subtracted from the true class's similarity.
    #[serde(default = "default_softtriple_margin")]
    pub margin: f64,
}

fn default_softtriple_centers_per_class() -> usize {
    10
}

fn default_softtriple_la() -> f64 {
    20.0
}

fn default_softtriple_gamma() -> f64 {
    0.1
}

fn default_softtriple_margin() -> f64 {
    0.01
}

impl SoftTripleConfig {
    /// A config with the published defaults.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self {
            num_classes,
            dim,
            centers_per_class: default_softtriple_centers_per_class(),
            la: default_softtriple_la(),
            gamma: default_softtriple_gamma(),
            margin: default_softtriple_margin(),
        }
    }

    /// The loss with initial proxies drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> SoftTripleLoss {
        SoftTripleLoss {
            proxies: initial_proxies(
                self.num_classes * self.centers(),
                self.dim,
                ProxyInit::Uniform { bound: 1.0 / ((self.num_classes * self.centers()) as f64).sqrt() },
                seed,
                device,
            ),
            num_classes: self.num_classes,
            centers_per_class: self.centers(),
            la: self.la,
            gamma: self.gamma,
            margin: self.margin,
        }
    }
}

#[derive(Module, Debug)]
pub struct SoftTripleLoss {
    /// W: row `c·K + k` is centre k of class c.
    pub proxies: Param<Tensor<2>>,
    pub num_classes: usize,
    pub centers_per_class: usize,
    pub la: f64,
    pub gamma: f64,
    pub margin: f64,
}

impl SoftTripleConfig {
    /// K, at least 1.
    pub fn centers(&self) -> usize {
        self.centers_per_class.max(1)
    }
}

impl SoftTripleLoss {
    /// `s_ic = Σ_k softmax_k(C_{i,cK+k}/γ) C_{i,cK+k}`, `ℓ_i = CE_i(λ(s_ic − margin·[c = y_i]))`.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        check_labels(&labels, self.num_classes, "soft_triple");
        let k = self.centers_per_class.max(1);
        let cos = cosines(embeddings, self.proxies.val());
        let n = cos.dims()[0];
        let cos: Tensor<3> = cos.reshape([n, self.num_classes, k]);
        let weights = burn::tensor::activation::softmax(cos.clone().div_scalar(self.gamma), 2);
        let relaxed: Tensor<2> = (weights * cos).sum_dim(2).reshape([n, self.num_classes]);
        let target = label_mask(labels, self.num_classes);
        let margins = Tensor::<2>::zeros([n, self.num_classes], &relaxed.device()).mask_fill(target.clone(), self.margin);
        cross_entropy((relaxed - margins).mul_scalar(self.la), target)
    }
}
