//! Embedding networks.

mod bn_inception;
mod classifier;
mod conv_bn;
mod efficientnet_lite;
mod resnet;
mod small_cnn;

pub use bn_inception::{BnInception, reduces as bn_inception_reduces};
pub use classifier::Classifier;
pub use conv_bn::{ConvBn, ConvSpec};
pub use efficientnet_lite::{EfficientNetLite, lite0_expands as efficientnet_lite0_expands, same_padding};
pub use resnet::{ResNet, ResNetDepth};
pub use small_cnn::{SmallCnn, SmallCnnConfig};

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::eval::l2_normalize;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    #[default]
    SmallCnn,
    Resnet18,
    Resnet50,
    BnInception,
    EfficientnetLite0,
}

impl BackboneKind {
    pub const NAMES: [&'static str; 5] = ["small-cnn", "resnet18", "resnet50", "bn-inception", "efficientnet-lite0"];

    /// How photos are normalised for this backbone's published weights.
    pub fn normalization(self) -> crate::data::Normalization {
        use crate::data::Normalization;
        match self {
            BackboneKind::BnInception => Normalization::BGR_255,
            BackboneKind::EfficientnetLite0 => Normalization::CENTRED_127,
            _ => Normalization::IMAGENET,
        }
    }

    /// The name in config files and on the command line.
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl std::str::FromStr for BackboneKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown backbone `{s}`, expected one of: {}", Self::NAMES.join(", ")))
    }
}

/// How the backbone's last feature map becomes one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GlobalPool {
    #[default]
    Max,
    Average,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub backbone: BackboneKind,
    /// Embedding dimension.
    pub dim: usize,
    /// Global pooling before the embedding layer (ResNet and BN-Inception; the small CNN always
    /// max-pools).
    pub pool: GlobalPool,
    /// Batch norm normalises with its running statistics during training too and never updates
    /// them (fine-tuning from pretrained weights with small batches).
    pub freeze_bn: bool,
    /// A PyTorch (`.pth`, `.pt`) or `.safetensors` file of the backbone's pretrained weights in
    /// its published naming (torchvision, Cadene's BN-Inception, the EfficientNet-Lite port),
    /// loaded at the start of a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<std::path::PathBuf>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { backbone: BackboneKind::SmallCnn, dim: 64, pool: GlobalPool::Max, freeze_bn: false, pretrained: None }
    }
}

/// An ImageNet-style backbone.
// A model exists once per run, so the variants' differing sizes cost nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Backbone {
    ResNet(ResNet),
    BnInception(BnInception),
    EfficientNetLite(EfficientNetLite),
}

impl Backbone {
    /// `None` for the small CNN, which is not an ImageNet backbone.
    pub fn new(kind: BackboneKind, in_channels: usize, freeze_bn: bool, device: &Device) -> Option<Self> {
        Some(match kind {
            BackboneKind::SmallCnn => return None,
            BackboneKind::Resnet18 => Backbone::ResNet(ResNet::new(ResNetDepth::D18, in_channels, freeze_bn, device)),
            BackboneKind::Resnet50 => Backbone::ResNet(ResNet::new(ResNetDepth::D50, in_channels, freeze_bn, device)),
            BackboneKind::BnInception => Backbone::BnInception(BnInception::new(in_channels, freeze_bn, device)),
            BackboneKind::EfficientnetLite0 => Backbone::EfficientNetLite(EfficientNetLite::lite0(in_channels, freeze_bn, device)),
        })
    }

    /// Channels of the final feature map of `kind` (`None`: the small CNN).
    pub fn features(kind: BackboneKind) -> Option<usize> {
        match kind {
            BackboneKind::SmallCnn => None,
            BackboneKind::Resnet18 => Some(ResNetDepth::D18.features()),
            BackboneKind::Resnet50 => Some(ResNetDepth::D50.features()),
            BackboneKind::BnInception => Some(bn_inception::FEATURES),
            BackboneKind::EfficientnetLite0 => Some(efficientnet_lite::FEATURES),
        }
    }

    /// `[batch, channels, h, w]` → the last feature map.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Backbone::ResNet(m) => m.forward(images),
            Backbone::BnInception(m) => m.forward(images),
            Backbone::EfficientNetLite(m) => m.forward(images),
        }
    }
}

/// A backbone, global pooling and a linear embedding layer.
#[derive(Module, Debug)]
pub struct PooledEmbedder {
    backbone: Backbone,
    embed: Linear,
    average: bool,
}

impl PooledEmbedder {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.backbone.forward(images);
        let [batch, channels, h, w] = features.dims();
        let flat = features.reshape([batch, channels, h * w]);
        let pooled = if self.average { flat.mean_dim(2) } else { flat.max_dim(2) };
        l2_normalize(self.embed.forward(pooled.reshape([batch, channels])))
    }
}

/// The network being trained: a backbone with an embedding head, L2-normalised output.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Embedder {
    SmallCnn(SmallCnn),
    Pooled(PooledEmbedder),
}

impl ModelConfig {
    /// A model with weights drawn from `seed`, reproducibly: Burn draws initial weights lazily
    /// (on first use) from the device's shared generator, so the draws happen here, under a lock.
    /// They are drawn on the CPU backend and then moved to `device`: each backend has its own
    /// generator, and a seed should give the same initial model on every one.
    pub fn init_seeded(&self, in_channels: usize, seed: u64, device: &Device) -> Embedder {
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let host = if device.is_autodiff() { Device::flex().autodiff() } else { Device::flex() };
        host.seed(seed);
        let (freeze, average) = (self.freeze_bn, self.pool == GlobalPool::Average);
        let model = match Backbone::new(self.backbone, in_channels, freeze, &host) {
            None => Embedder::SmallCnn(SmallCnnConfig { in_channels, dim: self.dim }.init(&host)),
            Some(backbone) => {
                let features = Backbone::features(self.backbone).expect("an ImageNet backbone");
                Embedder::Pooled(PooledEmbedder { backbone, embed: LinearConfig::new(features, self.dim).init(&host), average })
            }
        };
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        model.visit(&mut Touch);
        if host == *device {
            model
        } else {
            // `fork` makes each parameter a leaf on `device` that still requires its gradient.
            model.fork(device)
        }
    }
}

impl Embedder {
    /// The ImageNet backbone, for loading pretrained weights (`None`: the small CNN).
    pub fn backbone_mut(&mut self) -> Option<&mut Backbone> {
        match self {
            Embedder::SmallCnn(_) => None,
            Embedder::Pooled(m) => Some(&mut m.backbone),
        }
    }

    /// Embeds a batch of network input with the model as it is (call on `valid()` for
    /// inference mode), on `device`.
    pub fn embed_batch(&self, batch: &crate::data::Batch, device: &Device) -> Vec<f32> {
        if batch.labels.is_empty() {
            return Vec::new();
        }
        let x = Tensor::<4>::from_data(TensorData::new(batch.pixels.clone(), batch.shape), device);
        self.forward(x).into_data().iter::<f32>().collect()
    }

    /// [`Embedder::embed_batch`] for devices that cannot block on a read-back (WebGPU in a
    /// browser).
    pub async fn embed_batch_async(&self, batch: &crate::data::Batch, device: &Device) -> Result<Vec<f32>, String> {
        if batch.labels.is_empty() {
            return Ok(Vec::new());
        }
        let x = Tensor::<4>::from_data(TensorData::new(batch.pixels.clone(), batch.shape), device);
        let data = self.forward(x).into_data_async().await.map_err(|e| format!("{e:?}"))?;
        Ok(data.iter::<f32>().collect())
    }

    /// `[batch, channels, height, width]` → unit-length embeddings `[batch, dim]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Embedder::SmallCnn(m) => m.forward(images),
            Embedder::Pooled(m) => m.forward(images),
        }
    }

    /// Splits the gradients of one backward pass into (backbone, head), so that the two can
    /// learn at different rates.
    pub fn split_gradients(&self, mut grads: burn::tensor::Gradients) -> (GradientsParams, GradientsParams) {
        let head = match self {
            Embedder::SmallCnn(m) => GradientsParams::from_module(&mut grads, m.head()),
            Embedder::Pooled(m) => GradientsParams::from_module(&mut grads, &m.embed),
        };
        let backbone = GradientsParams::from_grads(grads, self);
        (backbone, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backbone: BackboneKind, dim: usize) -> ModelConfig {
        ModelConfig { backbone, dim, ..Default::default() }
    }

    #[test]
    fn resnets_have_torchvisions_parameter_counts() {
        let device = Device::flex();
        // torchvision's resnet18 / resnet50 (11,689,512 / 25,557,032) less their 1000-class layer,
        // plus our embedding layer. Burn also counts the running mean and variance of each
        // batch-norm channel: ResNet-18 has 64 + 4·64 + (4·128 + 128) + (4·256 + 256) +
        // (4·512 + 512) = 4,800 channels; ResNet-50 64 + Σ (blocks · 6w + 4w) over
        // (3, 64), (4, 128), (6, 256), (3, 512) = 26,560.
        for (backbone, trunk, features, channels) in
            [(BackboneKind::Resnet18, 11_176_512, 512, 4_800), (BackboneKind::Resnet50, 23_508_032, 2048, 26_560)]
        {
            let model = config(backbone, 128).init_seeded(3, 0, &device);
            assert_eq!(model.num_params(), trunk + features * 128 + 128 + 2 * channels, "{backbone:?}");
        }
    }

    #[test]
    fn backbones_embed_to_unit_vectors_at_their_native_resolution() {
        let device = Device::flex();
        for backbone in [BackboneKind::Resnet18, BackboneKind::BnInception] {
            let model = config(backbone, 32).init_seeded(3, 1, &device).valid();
            let images = Tensor::<4>::random([2, 3, 224, 224], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
            let out = model.forward(images);
            assert_eq!(out.dims(), [2, 32]);
            for norm in out.powi_scalar(2).sum_dim(1).into_data().iter::<f32>() {
                assert!((norm - 1.0).abs() < 1e-4, "{backbone:?}: squared norm {norm}");
            }
        }
        // BN-Inception's last feature map at 224 × 224 is 1024 × 7 × 7.
        let trunk = BnInception::new(3, false, &device);
        assert_eq!(trunk.forward(Tensor::zeros([1, 3, 224, 224], &device)).dims(), [1, 1024, 7, 7]);
        let trunk = ResNet::new(ResNetDepth::D50, 3, false, &device);
        assert_eq!(trunk.forward(Tensor::zeros([1, 3, 224, 224], &device)).dims(), [1, 2048, 7, 7]);
    }

    #[test]
    fn frozen_batch_norm_trains_with_running_statistics_and_keeps_them() {
        let device = Device::flex().autodiff();
        let images = Tensor::<4>::random([4, 3, 64, 64], burn::tensor::Distribution::Normal(0.5, 2.0), &device);
        let frozen = ModelConfig { freeze_bn: true, ..config(BackboneKind::Resnet18, 16) }.init_seeded(3, 2, &device);
        let stats = |m: &Embedder| {
            let Embedder::Pooled(p) = m else { unreachable!() };
            let Backbone::ResNet(r) = &p.backbone else { unreachable!() };
            r.stem_statistics()
        };
        let before = stats(&frozen);
        let trained = frozen.forward(images.clone());
        assert_eq!(stats(&frozen), before, "frozen statistics moved");
        // Training mode and inference mode now compute the same function...
        let inference = frozen.valid().forward(images.clone().inner());
        let diff = (trained.inner() - inference).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "frozen train/eval outputs differ by {diff}");
        // ...and the scale and shift still receive gradients.
        let grads = frozen.forward(images.clone()).sum().backward();
        let Embedder::Pooled(p) = &frozen else { unreachable!() };
        let Backbone::ResNet(r) = &p.backbone else { unreachable!() };
        assert!(r.stem_gamma().grad(&grads).is_some());
        // Without freezing, a training forward pass updates the running statistics.
        let live = config(BackboneKind::Resnet18, 16).init_seeded(3, 2, &device);
        let _ = live.forward(images);
        assert_ne!(stats(&live), before);
    }
}
