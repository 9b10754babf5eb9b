//! The metric losses defined in the repository's `docs/losses.md`, each vectorised over the whole
//! batch.
//!
//! A loss is configured by a [`LossConfig`] (serde, internally tagged by `name`, every parameter
//! optional with its published default) and evaluated by the [`MetricLoss`] it initialises.

mod arcface;
mod binomial;
mod contrastive;
mod lifted;
mod lifted_modified;
mod margin;
mod multi_similarity;
mod nca;
mod norm_softmax;
pub(crate) mod pairwise;
mod proxy;
mod proxy_anchor;
mod proxy_nca;
mod soft_triple;
mod triplet_semihard;

pub use arcface::{ArcfaceConfig, ArcfaceLoss};
pub use binomial::{BinomialConfig, BinomialLoss};
pub use contrastive::{ContrastiveConfig, ContrastiveLoss};
pub use lifted::{LiftedConfig, LiftedLoss};
pub use lifted_modified::{LiftedModifiedConfig, LiftedModifiedLoss};
pub use margin::{MarginConfig, MarginLoss, NegativeSampler};
pub use multi_similarity::{MultiSimilarityConfig, MultiSimilarityLoss};
pub use nca::{NcaConfig, NcaLoss};
pub use norm_softmax::{NormSoftmaxConfig, NormSoftmaxLoss};
pub use proxy_anchor::{ProxyAnchorConfig, ProxyAnchorLoss};
pub use proxy_nca::{ProxyNcaConfig, ProxyNcaLoss};
pub use soft_triple::{SoftTripleConfig, SoftTripleLoss};
pub use triplet_semihard::{TripletSemihardConfig, TripletSemihardLoss};

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// Which loss, with its parameters. `{"name":"ms","beta":50.0}`, `{"name":"weight"}`, ...
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum LossConfig {
    Contrastive(ContrastiveConfig),
    Binomial(BinomialConfig),
    Lifted(LiftedConfig),
    LiftedModified(LiftedModifiedConfig),
    #[serde(alias = "weight")]
    Ms(MultiSimilarityConfig),
    Nca(NcaConfig),
    TripletSemihard(TripletSemihardConfig),
    Margin(MarginConfig),
    ProxyNca(ProxyNcaConfig),
    ProxyAnchor(ProxyAnchorConfig),
    NormSoftmax(NormSoftmaxConfig),
    SoftTriple(SoftTripleConfig),
    Arcface(ArcfaceConfig),
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::Ms(MultiSimilarityConfig::default())
    }
}

impl LossConfig {
    /// The proxy losses' names: they need `num_classes` and `dim` besides the name.
    pub const PROXY_NAMES: [&'static str; 5] = ["proxy_nca", "proxy_anchor", "norm_softmax", "soft_triple", "arcface"];

    /// Whether this is a proxy loss (it owns trainable proxies).
    pub fn is_proxy(&self) -> bool {
        Self::PROXY_NAMES.contains(&self.name())
    }

    /// Every accepted `name` of the pair losses, which need nothing else (aliases after the names
    /// they stand for); the proxy losses are in [`Self::PROXY_NAMES`].
    pub const NAMES: [&'static str; 9] =
        ["contrastive", "binomial", "lifted", "lifted_modified", "ms", "weight", "nca", "triplet_semihard", "margin"];

    /// The loss with its default parameters, by name or alias.
    pub fn from_name(name: &str) -> Result<Self, serde_json::Error> {
        // From a value, not text: the error then has no line and column of a JSON text the user
        // never wrote.
        serde_json::from_value(serde_json::json!({ "name": name }))
    }

    /// Parses `{"name": .., <parameter>: ..}`; unknown names and fields are errors that list the
    /// valid ones.
    /// A proxy loss must give `num_classes` and `dim` here (a run config may leave them to
    /// `dml train`, see [`Self::sized_for`]).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let config: Self = serde_json::from_str(json)?;
        if let Some((classes, dim)) = config.proxy_sizes()
            && (classes == 0 || dim == 0)
        {
            return Err(serde::de::Error::custom(format!("{} needs num_classes and dim (both at least 1)", config.name())));
        }
        Ok(config)
    }

    /// `(num_classes, dim)` of a proxy loss (0 where a run config left them to the trainer);
    /// `None` for the pair losses.
    pub fn proxy_sizes(&self) -> Option<(usize, usize)> {
        match self {
            LossConfig::ProxyNca(c) => Some((c.num_classes, c.dim)),
            LossConfig::ProxyAnchor(c) => Some((c.num_classes, c.dim)),
            LossConfig::NormSoftmax(c) => Some((c.num_classes, c.dim)),
            LossConfig::SoftTriple(c) => Some((c.num_classes, c.dim)),
            LossConfig::Arcface(c) => Some((c.num_classes, c.dim)),
            _ => None,
        }
    }

    fn proxy_sizes_mut(&mut self) -> Option<(&mut usize, &mut usize)> {
        match self {
            LossConfig::ProxyNca(c) => Some((&mut c.num_classes, &mut c.dim)),
            LossConfig::ProxyAnchor(c) => Some((&mut c.num_classes, &mut c.dim)),
            LossConfig::NormSoftmax(c) => Some((&mut c.num_classes, &mut c.dim)),
            LossConfig::SoftTriple(c) => Some((&mut c.num_classes, &mut c.dim)),
            LossConfig::Arcface(c) => Some((&mut c.num_classes, &mut c.dim)),
            _ => None,
        }
    }

    /// The loss for a training split of `classes` classes and a model of `dim`-d embeddings: a
    /// proxy loss's unset `num_classes` and `dim` take these values, and set ones must agree (the
    /// error names both). The pair losses need neither.
    pub fn sized_for(mut self, classes: usize, dim: usize) -> Result<Self, String> {
        let name = self.name();
        if let Some((own_classes, own_dim)) = self.proxy_sizes_mut() {
            for (field, own, data, what) in
                [("num_classes", own_classes, classes, "the training split has"), ("dim", own_dim, dim, "the model's model.dim is")]
            {
                if *own == 0 {
                    *own = data;
                } else if *own != data {
                    return Err(format!("loss.{field} = {own} but {what} {data} ({name}: leave loss.{field} out to take it from there)"));
                }
            }
        }
        Ok(self)
    }

    /// The losses that can also be evaluated against a reference set (cross-batch memory,
    /// [`MetricLoss::forward_against`]).
    pub const REFERENCE_NAMES: [&'static str; 4] = ["contrastive", "binomial", "ms", "triplet_semihard"];

    /// Whether [`MetricLoss::forward_against`] exists for this loss.
    pub fn has_reference_form(&self) -> bool {
        Self::REFERENCE_NAMES.contains(&self.name())
    }

    /// How many times the head's learning rate a proxy loss's W is trained at when the run config
    /// does not say (`optimizer.loss_lr_mult`), as each loss's authors trained it: 100 for
    /// Proxy-Anchor (Kim et al. 2020, proxies at 100× the network's rate; their code does the same
    /// for its Proxy-NCA baseline) and SoftTriple (Qian et al. 2019: centres at 1e-2, network at
    /// 1e-4); 1 for the normalised softmax (Zhai & Wu 2019, trained as one classifier with the
    /// network) and ArcFace (Deng et al. 2019, likewise). `None` for the pair losses.
    pub fn default_proxy_lr_mult(&self) -> Option<f64> {
        match self {
            LossConfig::ProxyNca(_) | LossConfig::ProxyAnchor(_) | LossConfig::SoftTriple(_) => Some(100.0),
            LossConfig::NormSoftmax(_) | LossConfig::Arcface(_) => Some(1.0),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            LossConfig::Contrastive(_) => "contrastive",
            LossConfig::Binomial(_) => "binomial",
            LossConfig::Lifted(_) => "lifted",
            LossConfig::LiftedModified(_) => "lifted_modified",
            LossConfig::Ms(_) => "ms",
            LossConfig::Nca(_) => "nca",
            LossConfig::TripletSemihard(_) => "triplet_semihard",
            LossConfig::Margin(_) => "margin",
            LossConfig::ProxyNca(_) => "proxy_nca",
            LossConfig::ProxyAnchor(_) => "proxy_anchor",
            LossConfig::NormSoftmax(_) => "norm_softmax",
            LossConfig::SoftTriple(_) => "soft_triple",
            LossConfig::Arcface(_) => "arcface",
        }
    }

    /// The loss; a proxy loss draws its initial proxies from seed 0 (see [`Self::init_seeded`]).
    pub fn init(&self, device: &Device) -> MetricLoss {
        self.init_seeded(0, device)
    }

    /// The loss; a proxy loss draws its initial proxies from `seed`.
    ///
    /// # Panics
    /// For a proxy loss whose `num_classes` or `dim` is unset (0): see [`Self::sized_for`].
    pub fn init_seeded(&self, seed: u64, device: &Device) -> MetricLoss {
        if let Some((classes, dim)) = self.proxy_sizes() {
            assert!(classes > 0 && dim > 0, "{}: num_classes and dim must be set (LossConfig::sized_for)", self.name());
        }
        match self {
            LossConfig::Contrastive(c) => MetricLoss::Contrastive(c.init()),
            LossConfig::Binomial(c) => MetricLoss::Binomial(c.init()),
            LossConfig::Lifted(c) => MetricLoss::Lifted(c.init()),
            LossConfig::LiftedModified(c) => MetricLoss::LiftedModified(c.init()),
            LossConfig::Ms(c) => MetricLoss::Ms(c.init()),
            LossConfig::Nca(c) => MetricLoss::Nca(c.init()),
            LossConfig::TripletSemihard(c) => MetricLoss::TripletSemihard(c.init()),
            LossConfig::Margin(c) => MetricLoss::Margin(c.init()),
            LossConfig::ProxyNca(c) => MetricLoss::ProxyNca(c.init(seed, device)),
            LossConfig::ProxyAnchor(c) => MetricLoss::ProxyAnchor(c.init(seed, device)),
            LossConfig::NormSoftmax(c) => MetricLoss::NormSoftmax(c.init(seed, device)),
            LossConfig::SoftTriple(c) => MetricLoss::SoftTriple(c.init(seed, device)),
            LossConfig::Arcface(c) => MetricLoss::Arcface(c.init(seed, device)),
        }
    }
}

/// A metric loss ready to evaluate: `forward(embeddings [n, d], labels [n]) -> [1]`.
#[derive(Module, Debug)]
pub enum MetricLoss {
    Contrastive(ContrastiveLoss),
    Binomial(BinomialLoss),
    Lifted(LiftedLoss),
    LiftedModified(LiftedModifiedLoss),
    Ms(MultiSimilarityLoss),
    Nca(NcaLoss),
    TripletSemihard(TripletSemihardLoss),
    Margin(MarginLoss),
    ProxyNca(ProxyNcaLoss),
    ProxyAnchor(ProxyAnchorLoss),
    NormSoftmax(NormSoftmaxLoss),
    SoftTriple(SoftTripleLoss),
    Arcface(ArcfaceLoss),
}

impl MetricLoss {
    /// The canonical name of the loss (as [`LossConfig::name`]).
    pub fn name(&self) -> &'static str {
        match self {
            MetricLoss::Contrastive(_) => "contrastive",
            MetricLoss::Binomial(_) => "binomial",
            MetricLoss::Lifted(_) => "lifted",
            MetricLoss::LiftedModified(_) => "lifted_modified",
            MetricLoss::Ms(_) => "ms",
            MetricLoss::Nca(_) => "nca",
            MetricLoss::TripletSemihard(_) => "triplet_semihard",
            MetricLoss::Margin(_) => "margin",
            MetricLoss::ProxyNca(_) => "proxy_nca",
            MetricLoss::ProxyAnchor(_) => "proxy_anchor",
            MetricLoss::NormSoftmax(_) => "norm_softmax",
            MetricLoss::SoftTriple(_) => "soft_triple",
            MetricLoss::Arcface(_) => "arcface",
        }
    }

    /// How many forward calls have drawn from the loss's own random stream (margin's negative
    /// sampling; 0 for the deterministic losses): saved in checkpoints so a resumed run draws on.
    pub fn random_calls(&self) -> u64 {
        match self {
            MetricLoss::Margin(loss) => loss.sampler.calls(),
            _ => 0,
        }
    }

    pub fn set_random_calls(&self, calls: u64) {
        if let MetricLoss::Margin(loss) = self {
            loss.sampler.set_calls(calls);
        }
    }

    /// W, one proxy per row, for a proxy loss; `None` for the pair losses.
    pub fn proxies(&self) -> Option<Tensor<2>> {
        self.proxy_param().map(|param| param.val())
    }

    /// The loss with W's values replaced by `proxies` (of W's shape), still a trainable parameter.
    pub fn with_proxies(mut self, proxies: Tensor<2>) -> MetricLoss {
        if let Some(param) = self.proxy_param_mut() {
            assert_eq!(param.dims(), proxies.dims(), "with_proxies: W's shape");
            *param = Param::from_tensor(proxies.detach());
        }
        self
    }

    fn proxy_param(&self) -> Option<&Param<Tensor<2>>> {
        match self {
            MetricLoss::ProxyNca(loss) => Some(&loss.proxies),
            MetricLoss::ProxyAnchor(loss) => Some(&loss.proxies),
            MetricLoss::NormSoftmax(loss) => Some(&loss.proxies),
            MetricLoss::SoftTriple(loss) => Some(&loss.proxies),
            MetricLoss::Arcface(loss) => Some(&loss.proxies),
            _ => None,
        }
    }

    fn proxy_param_mut(&mut self) -> Option<&mut Param<Tensor<2>>> {
        match self {
            MetricLoss::ProxyNca(loss) => Some(&mut loss.proxies),
            MetricLoss::ProxyAnchor(loss) => Some(&mut loss.proxies),
            MetricLoss::NormSoftmax(loss) => Some(&mut loss.proxies),
            MetricLoss::SoftTriple(loss) => Some(&mut loss.proxies),
            MetricLoss::Arcface(loss) => Some(&mut loss.proxies),
            _ => None,
        }
    }

    /// The batch as anchors against a reference set that never contains the batch itself (the
    /// cross-batch memory): `S = X Rᵀ`, positives and negatives by label over the reference, no
    /// self-exclusion, no gradient into `reference`. Exactly 0 where no term exists (an empty
    /// reference included).
    ///
    /// # Panics
    /// For a loss without this form: only contrastive, binomial, ms and triplet_semihard have one
    /// ([`LossConfig::REFERENCE_NAMES`]; a run config naming another with `[xbm]` is refused).
    pub fn forward_against(
        &self,
        embeddings: Tensor<2>,
        labels: Tensor<1, Int>,
        reference: Tensor<2>,
        reference_labels: Tensor<1, Int>,
    ) -> Tensor<1> {
        match self {
            MetricLoss::Contrastive(loss) => loss.forward_against(embeddings, labels, reference, reference_labels),
            MetricLoss::Binomial(loss) => loss.forward_against(embeddings, labels, reference, reference_labels),
            MetricLoss::Ms(loss) => loss.forward_against(embeddings, labels, reference, reference_labels),
            MetricLoss::TripletSemihard(loss) => loss.forward_against(embeddings, labels, reference, reference_labels),
            other => panic!(
                "forward_against: only {} can be evaluated against a reference set, not {}",
                LossConfig::REFERENCE_NAMES.join(", "),
                other.name()
            ),
        }
    }

    pub fn forward(&self, embeddings: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
        match self {
            MetricLoss::Contrastive(loss) => loss.forward(embeddings, labels),
            MetricLoss::Binomial(loss) => loss.forward(embeddings, labels),
            MetricLoss::Lifted(loss) => loss.forward(embeddings, labels),
            MetricLoss::LiftedModified(loss) => loss.forward(embeddings, labels),
            MetricLoss::Ms(loss) => loss.forward(embeddings, labels),
            MetricLoss::Nca(loss) => loss.forward(embeddings, labels),
            MetricLoss::TripletSemihard(loss) => loss.forward(embeddings, labels),
            MetricLoss::Margin(loss) => loss.forward(embeddings, labels),
            MetricLoss::ProxyNca(loss) => loss.forward(embeddings, labels),
            MetricLoss::ProxyAnchor(loss) => loss.forward(embeddings, labels),
            MetricLoss::NormSoftmax(loss) => loss.forward(embeddings, labels),
            MetricLoss::SoftTriple(loss) => loss.forward(embeddings, labels),
            MetricLoss::Arcface(loss) => loss.forward(embeddings, labels),
        }
    }
}
