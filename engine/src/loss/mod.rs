//! The metric losses defined in the repository's `docs/losses.md`, each vectorised over the whole
//! batch.
//!
//! A loss is configured by a [`LossConfig`] (serde, internally tagged by `name`, every parameter
//! optional with its published default) and evaluated by the [`MetricLoss`] it initialises.

mod binomial;
mod contrastive;
mod lifted;
mod lifted_modified;
mod margin;
mod multi_similarity;
mod nca;
pub(crate) mod pairwise;
mod triplet_semihard;

pub use binomial::{BinomialConfig, BinomialLoss};
pub use contrastive::{ContrastiveConfig, ContrastiveLoss};
pub use lifted::{LiftedConfig, LiftedLoss};
pub use lifted_modified::{LiftedModifiedConfig, LiftedModifiedLoss};
pub use margin::{MarginConfig, MarginLoss, NegativeSampler};
pub use multi_similarity::{MultiSimilarityConfig, MultiSimilarityLoss};
pub use nca::{NcaConfig, NcaLoss};
pub use triplet_semihard::{TripletSemihardConfig, TripletSemihardLoss};

use burn::module::Module;
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
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig::Ms(MultiSimilarityConfig::default())
    }
}

impl LossConfig {
    /// Every accepted `name` (aliases after the names they stand for).
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
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
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
        }
    }

    pub fn init(&self, _device: &Device) -> MetricLoss {
        match self {
            LossConfig::Contrastive(c) => MetricLoss::Contrastive(c.init()),
            LossConfig::Binomial(c) => MetricLoss::Binomial(c.init()),
            LossConfig::Lifted(c) => MetricLoss::Lifted(c.init()),
            LossConfig::LiftedModified(c) => MetricLoss::LiftedModified(c.init()),
            LossConfig::Ms(c) => MetricLoss::Ms(c.init()),
            LossConfig::Nca(c) => MetricLoss::Nca(c.init()),
            LossConfig::TripletSemihard(c) => MetricLoss::TripletSemihard(c.init()),
            LossConfig::Margin(c) => MetricLoss::Margin(c.init()),
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
}

impl MetricLoss {
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
        }
    }
}
