//! ArcFace (Deng et al. CVPR 2019): cosine softmax whose target logit is the cosine of the angle
//! plus an additive angular margin.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use super::proxy::{ProxyInit, check_labels, cosines, cross_entropy, initial_proxies, label_mask};

/// `{"name": "arcface", "num_classes": .., "dim": .., ..}`: additive angular margin (degrees) and scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcfaceConfig {
    /// Classes of the training labels, `0..num_classes`; 0 (absent) in a run config: `dml train`
    /// takes it from the training split.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub num_classes: usize,
    /// Embedding dimension; 0 (absent) in a run config: the model's `dim`.
    #[serde(default, skip_serializing_if = "super::proxy::unset")]
    pub dim: usize,
    /// Angular margin in degrees.
    #[serde(default = "default_arcface_margin")]
    pub margin: f64,
    /// Multiplies every logit.
    #[serde(default = "default_arcface_scale")]
    pub scale: f64,
}

fn default_arcface_margin() -> f64 {
    28.6
}

fn default_arcface_scale() -> f64 {
    64.0
}

impl ArcfaceConfig {
    /// A config with the published defaults.
    pub fn new(num_classes: usize, dim: usize) -> Self {
        Self { num_classes, dim, margin: default_arcface_margin(), scale: default_arcface_scale() }
    }

    /// The loss with initial proxies drawn from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> ArcfaceLoss {
        ArcfaceLoss {
            proxies: initial_proxies(self.num_classes, self.dim, ProxyInit::Normal { variance: 1.0 }, seed, device),
            num_classes: self.num_classes,
            margin: self.margin,
            scale: self.scale,
        }
    }
}

#[derive(Module, Debug)]
pub struct ArcfaceLoss {
    /// W: one proxy per row.
    pub proxies: Param<Tensor<2>>,
    pub num_classes: usize,
    pub margin: f64,
    pub scale: f64,
}

impl ArcfaceLoss {
    /// `z_ic = scale·C_ic` (c ≠ y_i); `z_{i,y_i} = scale·cos(θ_i + m)` where `θ_i ≤ π − m`, else
    /// `scale·(C_{i,y_i} − m·sin m)`; the branch chosen on the value, without gradient.
    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        check_labels(&labels, self.num_classes, "arcface");
        let cos = cosines(embeddings, self.proxies.val());
        let [n, classes] = cos.dims();
        let target = label_mask(labels, self.num_classes);
        let m = self.margin.to_radians();
        let (cos_m, sin_m) = (m.cos(), m.sin());
        let own = cos.clone().mask_fill(target.clone().bool_not(), 0.0).sum_dim(1); // [n, 1]
        let clamped = own.clone().clamp(-1.0, 1.0);
        // cos(θ + m) = cos θ cos m − sin θ sin m; sin θ kept off 0 so its derivative stays finite.
        let sin_theta = clamped.clone().powi_scalar(2).neg().add_scalar(1.0).clamp_min(1.0e-12).sqrt();
        let shifted = clamped.clone().mul_scalar(cos_m) - sin_theta.mul_scalar(sin_m);
        let fallback = own.sub_scalar(m * sin_m);
        // θ ≤ π − m ⟺ cos θ ≥ −cos m.
        let in_range = clamped.detach().greater_equal_elem(-cos_m);
        let target_logit = fallback.mask_where(in_range, shifted).expand([n, classes]);
        let logits = cos.mask_where(target.clone(), target_logit).mul_scalar(self.scale);
        cross_entropy(logits, target)
    }
}
