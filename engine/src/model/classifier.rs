//! A backbone with the classification layer it was pretrained with (global average pooling, then
//! a linear layer): what `dml weights classify` runs to show that a weight file loaded right.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::{Backbone, BackboneKind};

#[derive(Module, Debug)]
pub struct Classifier {
    pub backbone: Backbone,
    pub fc: Linear,
}

impl Classifier {
    /// `None` for the small CNN, which has no pretrained form.
    pub fn new(kind: BackboneKind, classes: usize, device: &Device) -> Option<Self> {
        let features = Backbone::features(kind)?;
        Some(Self { backbone: Backbone::new(kind, 3, false, device)?, fc: LinearConfig::new(features, classes).init(device) })
    }

    /// `[batch, 3, h, w]` → logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.backbone.forward(images);
        let [batch, channels, h, w] = features.dims();
        let pooled = features.reshape([batch, channels, h * w]).mean_dim(2);
        self.fc.forward(pooled.reshape([batch, channels]))
    }
}
