//! Embedding networks.

mod small_cnn;

pub use small_cnn::{ConvBlock, SmallCnn, SmallCnnConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{GreyImages, GreyTransform};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    #[default]
    SmallCnn,
}

impl BackboneKind {
    pub const NAMES: [&'static str; 1] = ["small-cnn"];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub backbone: BackboneKind,
    /// Embedding dimension.
    pub dim: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { backbone: BackboneKind::SmallCnn, dim: 64 }
    }
}

/// The network being trained: a backbone with an embedding head, L2-normalised output.
#[derive(Module, Debug)]
pub enum Embedder {
    SmallCnn(SmallCnn),
}

impl ModelConfig {
    /// A model with weights drawn from `seed`, reproducibly: Burn draws initial weights lazily
    /// (on first use) from the device's shared generator, so the draws happen here, under a lock.
    pub fn init_seeded(&self, in_channels: usize, seed: u64, device: &Device) -> Embedder {
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        device.seed(seed);
        let model = match self.backbone {
            BackboneKind::SmallCnn => Embedder::SmallCnn(SmallCnnConfig { in_channels, dim: self.dim }.init(device)),
        };
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        model.visit(&mut Touch);
        model
    }
}

impl Embedder {
    /// Embeds `images` in batches of `batch_size` with the model in inference mode (batch-norm
    /// running statistics), on `device` (a device without autodiff).
    pub fn embed_grey(&self, images: &GreyImages, transform: &GreyTransform, batch_size: usize, device: &Device) -> Vec<f32> {
        let model = self.valid();
        let mut out = Vec::new();
        let all: Vec<usize> = (0..images.len()).collect();
        for chunk in all.chunks(batch_size.max(1)) {
            let pixels = transform.batch(images, chunk, None);
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), 1, images.height, images.width]), device);
            out.extend(model.forward(x).into_data().iter::<f32>());
        }
        out
    }

    /// `[batch, channels, height, width]` → unit-length embeddings `[batch, dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Embedder::SmallCnn(m) => m.forward(images),
        }
    }

    /// Splits the gradients of one backward pass into (backbone, head), so that the two can
    /// learn at different rates.
    pub fn split_gradients(&self, mut grads: burn::tensor::Gradients) -> (GradientsParams, GradientsParams) {
        let head = match self {
            Embedder::SmallCnn(m) => GradientsParams::from_module(&mut grads, m.head()),
        };
        let backbone = GradientsParams::from_grads(grads, self);
        (backbone, head)
    }
}
