//! The optimiser and learning-rate schedule an [`OptimizerConfig`] describes: Burn's Adam, AdamW
//! and SGD set up to follow `torch.optim`'s update rules, and `MultiStepLR`'s step schedule.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

use super::config::{OptimizerConfig, OptimizerKind};

impl OptimizerConfig {
    /// A fresh optimiser (no moments yet). Adam and SGD add `weight_decay × θ` to the gradient;
    /// AdamW shrinks the weights by `lr × weight_decay` apart from the moments; SGD's momentum has
    /// no dampening and starts from the first gradient. ε = 1e-8 as in PyTorch, not Burn's 1e-5.
    pub fn init(&self) -> ModuleOptimizer {
        let decay = (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32));
        match self.name {
            OptimizerKind::Adam => AdamConfig::new().with_epsilon(1e-8).with_weight_decay(decay).init(),
            OptimizerKind::Adamw => AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(self.weight_decay as f32).init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum((self.momentum > 0.0).then(|| MomentumConfig::new().with_momentum(self.momentum).with_dampening(0.0)))
                .init(),
        }
    }

    /// The learning rate of the head after `iteration` completed iterations: `lr` times
    /// `lr_gamma` for each of `lr_steps` reached, as `MultiStepLR` stepped once per iteration.
    pub fn lr_at(&self, iteration: u64) -> f64 {
        let decays = self.lr_steps.iter().filter(|&&step| iteration >= step).count();
        self.lr * self.lr_gamma.powi(decays as i32)
    }
}
