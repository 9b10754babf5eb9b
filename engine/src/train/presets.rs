//! Presets: the published experiments as run configs, each with where its settings come from and
//! the Recall@K its authors report, so that a table can be reproduced with one command
//! (`dml train --preset NAME --root DIR --pretrained FILE`).
//!
//! A preset is a partial TOML run config over the defaults. Where dml cannot do exactly what the
//! authors' code does, the preset says so in `differences`: a reproduction is only as good as its
//! list of departures.

use super::config::{ConfigError, TrainConfig};

/// One published experiment.
#[derive(Clone, Copy, Debug)]
pub struct Preset {
    pub name: &'static str,
    /// What it reproduces, in a line.
    pub reproduces: &'static str,
    /// The paper and the authors' code or config the settings are taken from.
    pub source: &'static str,
    /// The Recall@K the source reports for this setting, (K, percent).
    pub expected: &'static [(usize, f64)],
    /// The ImageNet weights the backbone starts from, and how to get them; `None` for a preset
    /// trained from scratch.
    pub weights: Option<&'static str>,
    /// Where the run departs from the authors' code.
    pub differences: &'static str,
    /// The settings: TOML run configs laid over the defaults in order, a later one's fields
    /// replacing an earlier one's.
    pub layers: &'static [&'static str],
}

/// BN-Inception's ImageNet weights as the Deep_Metric, MS and Proxy-Anchor code load them.
const BN_INCEPTION_WEIGHTS: &str = "bn_inception-52deb4733.pth, the Caffe-converted BN-Inception that those authors' code \
     loads: `pip install pretrainedmodels==0.7.4` and `python -c \"import pretrainedmodels; \
     pretrainedmodels.bninception(pretrained='imagenet')\"` save it in PyTorch's cache (~/.cache/torch/hub/checkpoints); \
     check it with `dml weights inspect FILE`";
/// torchvision's ImageNet ResNet-50.
const RESNET50_WEIGHTS: &str = "torchvision's ImageNet ResNet-50 (IMAGENET1K_V1): \
     `python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\"` saves resnet50-0676ba61.pth \
     in PyTorch's cache (~/.cache/torch/hub/checkpoints); check it with `dml weights inspect FILE`";

/// BN-Inception with a 512-d embedding on average pooling, batch norm frozen: the network of the
/// MS and Proxy-Anchor presets, laid under their recipes.
const BN_INCEPTION_512: &str = r#"
[model]
backbone = "bn-inception"
dim = 512
pool = "average"
freeze_bn = true
"#;

/// The seed experiment (`run_train_00.sh`): MS "Weight" loss, BN-Inception 512-d, batches of 16
/// classes × 5, lr 1e-5, random crops of 227 from 256 with scale ≥ 0.16, frozen batch norm.
const SEED_MS: &str = r#"
[loss]
name = "ms"
alpha = 2.0
beta = 40.0
base = 0.5
epsilon = 0.1

[sampler]
p = 16
k = 5

[augment]
resize = 256
crop = 227
crop_scale = [0.16, 1.0]

[optimizer]
name = "adam"
lr = 1e-5
weight_decay = 5e-4
backbone_lr_mult = 0.1

[run]
iterations = 3000
eval_interval = 500
checkpoint_interval = 250

[eval]
ks = [1, 2, 4, 8, 16, 32]
"#;

/// MS on the large sets: batches of 1,000 (200 classes × 5), the MS code's Adam and step schedule.
const MS_LARGE: &str = r#"
[loss]
name = "ms"

[sampler]
p = 200
k = 5

[augment]
resize = 256
crop = 227
crop_scale = [0.16, 1.0]

[optimizer]
name = "adam"
lr = 3e-5
weight_decay = 5e-4
lr_steps = [6000, 9000]
lr_gamma = 0.1

[run]
iterations = 12000
eval_interval = 2000
checkpoint_interval = 500
"#;

/// XBM's released config: contrastive loss on ResNet-50 128-d, batches of 16 classes × 4, Adam
/// 1e-4, memory from iteration 1,000.
const XBM: &str = r#"
[model]
backbone = "resnet50"
dim = 128
pool = "average"
freeze_bn = true

[loss]
name = "contrastive"
margin = 0.5

[sampler]
p = 16
k = 4

[augment]
resize = 256
crop = 224
crop_scale = [0.16, 1.0]

[optimizer]
name = "adam"
lr = 1e-4
weight_decay = 5e-4

[xbm]
start_iteration = 1000
weight = 1.0

[run]
iterations = 35000
eval_interval = 5000
checkpoint_interval = 1000
"#;

/// Proxy-Anchor's BN-Inception runs: AdamW 1e-4 (weight decay 1e-4), batches of 180, proxies at
/// 100× (the loss's default), α 32, δ 0.1, frozen batch norm, lr halved every few epochs.
const PROXY_ANCHOR: &str = r#"
[loss]
name = "proxy_anchor"
margin = 0.1
alpha = 32.0

[sampler]
p = 36
k = 5

[augment]
resize = 256
crop = 224
crop_scale = [0.16, 1.0]

[optimizer]
name = "adamw"
lr = 1e-4
weight_decay = 1e-4
lr_gamma = 0.5

[run]
eval_interval = 500
checkpoint_interval = 250

[eval]
ks = [1, 2, 4, 8, 16, 32]
"#;

const CUB: &str = "[data]\ndataset = \"cub\"";
const CARS: &str = "[data]\ndataset = \"cars\"";
/// SOP and In-Shop report other K.
const SOP: &str = "[data]\ndataset = \"sop\"\n[eval]\nks = [1, 10, 100, 1000]";
const INSHOP: &str = "[data]\ndataset = \"inshop\"\n[eval]\nks = [1, 10, 20, 30, 40, 50]";

const SEED_DIFFERENCES: &str = "Deep_Metric counts 600 \"epochs\" of its identity sampler and keeps the checkpoint that tests \
     best; here 3,000 iterations (the MS authors' own CUB config) and the last model. The backbone learns at a tenth of the \
     head's rate, as the seed's comment says (its code sets the multiplier under a key the optimiser ignores).";
const MS_LARGE_DIFFERENCES: &str = "The MS paper gives the batch (1,000) but not the schedule for SOP and In-Shop; the \
     iterations and steps here are ours, sized to about 200 passes over the training classes.";
const XBM_DIFFERENCES: &str = "The XBM code enqueues each batch before its loss and drops self-pairs by similarity; dml's \
     memory holds earlier batches only (docs/losses.md). dml's ResNet-50 takes torchvision's weights; whether the XBM \
     authors started from the same ImageNet file is not stated in their config.";
const PROXY_ANCHOR_DIFFERENCES: &str = "The authors draw batches of 180 at random and train only the embedding layer and \
     the proxies for the first epoch (--warm 1); dml draws P × K = 36 × 5 and trains everything from the start. Epochs are \
     converted to iterations at 180 images each; BN-Inception pools by average (theirs adds max and average pooling).";

/// Every preset, in the order `dml presets` lists them.
pub const PRESETS: [Preset; 8] = [
    Preset {
        name: "ms-cub",
        reproduces: "Multi-Similarity loss, BN-Inception 512-d on CUB-200-2011 (the seed's run_train_00.sh)",
        source: "Wang et al., Multi-Similarity Loss with General Pair Weighting, CVPR 2019, Table 3; settings from the \
                 Deep_Metric code's run_train_00.sh (loss Weight, lr 1e-5, batch 80 = 16 × 5, width 227, ratio 0.16, \
                 frozen BN) and the MS authors' configs/example.yaml (3,000 iterations)",
        expected: &[(1, 65.7), (2, 77.0), (4, 86.3), (8, 91.2)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: SEED_DIFFERENCES,
        layers: &[BN_INCEPTION_512, SEED_MS, CUB],
    },
    Preset {
        name: "ms-cars",
        reproduces: "Multi-Similarity loss, BN-Inception 512-d on Cars-196 (run_train_00.sh with DATA=car)",
        source: "Wang et al., CVPR 2019, Table 3; settings as ms-cub (Deep_Metric's run_train_00.sh)",
        expected: &[(1, 84.1), (2, 90.4), (4, 94.0), (8, 96.5)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: SEED_DIFFERENCES,
        layers: &[BN_INCEPTION_512, SEED_MS, CARS],
    },
    Preset {
        name: "ms-sop",
        reproduces: "Multi-Similarity loss, BN-Inception 512-d on Stanford Online Products",
        source: "Wang et al., CVPR 2019, Table 4 (batches of 1,000, 5 images per class); α 2, β 40, base 0.5, ε 0.1 and \
                 Adam 3e-5 as in the MS authors' code and config",
        expected: &[(1, 78.2), (10, 90.5), (100, 96.0), (1000, 98.7)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: MS_LARGE_DIFFERENCES,
        layers: &[BN_INCEPTION_512, MS_LARGE, SOP],
    },
    Preset {
        name: "ms-inshop",
        reproduces: "Multi-Similarity loss, BN-Inception 512-d on In-Shop Clothes (query against gallery)",
        source: "Wang et al., CVPR 2019, Table 5 (settings as ms-sop)",
        expected: &[(1, 89.7), (10, 97.9), (20, 98.5), (30, 98.8), (40, 99.1), (50, 99.2)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: MS_LARGE_DIFFERENCES,
        layers: &[BN_INCEPTION_512, MS_LARGE, INSHOP],
    },
    Preset {
        name: "xbm-sop",
        reproduces: "Contrastive loss with cross-batch memory, ResNet-50 128-d on Stanford Online Products",
        source: "Wang, Zhang, Huang and Scott, Cross-Batch Memory for Embedding Learning, CVPR 2020 (R@1 80.6); settings \
                 from the authors' configs/sample_config.yaml (memory 55,000 from iteration 1,000, weight 1, Adam 1e-4, \
                 batch 64 = 16 × 4, 35,000 iterations)",
        expected: &[(1, 80.6)],
        weights: Some(RESNET50_WEIGHTS),
        differences: XBM_DIFFERENCES,
        layers: &[XBM, SOP, "[xbm]\nmemory_size = 55000"],
    },
    Preset {
        name: "xbm-inshop",
        reproduces: "Contrastive loss with cross-batch memory, ResNet-50 128-d on In-Shop Clothes",
        source: "Wang et al., CVPR 2020 (R@1 91.3); settings as xbm-sop, the memory sized to In-Shop's 25,882 training \
                 images",
        expected: &[(1, 91.3)],
        weights: Some(RESNET50_WEIGHTS),
        differences: "The released config is SOP's; its 55,000-row memory is larger than In-Shop's whole training split, \
                      so here 25,000 rows (our choice). The XBM code enqueues each batch before its loss; dml's memory \
                      holds earlier batches only.",
        layers: &[XBM, INSHOP, "[xbm]\nmemory_size = 25000"],
    },
    Preset {
        name: "proxy-anchor-cub",
        reproduces: "Proxy-Anchor loss, BN-Inception 512-d on CUB-200-2011",
        source: "Kim, Kim, Cho and Kwak, Proxy Anchor Loss for Deep Metric Learning, CVPR 2020 (R@1 68.4); settings and the \
                 69.1 below from the authors' README (batch 180, lr 1e-4, --lr-decay-step 10, --bn-freeze 1) and their \
                 train.py defaults (AdamW, weight decay 1e-4, 60 epochs, decay 0.5, proxies at 100× the rate)",
        expected: &[(1, 69.1), (2, 78.9), (4, 86.1), (8, 91.2)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: PROXY_ANCHOR_DIFFERENCES,
        // 5,864 training images: 33 iterations an epoch, 60 epochs, halved every 10.
        layers: &[BN_INCEPTION_512, PROXY_ANCHOR, CUB, "[run]\niterations = 1980\n[optimizer]\nlr_steps = [330, 660, 990, 1320, 1650]"],
    },
    Preset {
        name: "proxy-anchor-cars",
        reproduces: "Proxy-Anchor loss, BN-Inception 512-d on Cars-196",
        source: "Kim et al., CVPR 2020 (R@1 86.1); settings and the 86.4 below from the authors' README (batch 180, lr 1e-4, \
                 --lr-decay-step 20, --bn-freeze 1) and their train.py defaults",
        expected: &[(1, 86.4), (2, 91.9), (4, 95.0), (8, 97.0)],
        weights: Some(BN_INCEPTION_WEIGHTS),
        differences: PROXY_ANCHOR_DIFFERENCES,
        // 8,054 training images: 45 iterations an epoch, 60 epochs, halved every 20.
        layers: &[BN_INCEPTION_512, PROXY_ANCHOR, CARS, "[run]\niterations = 2700\n[optimizer]\nlr_steps = [900, 1800]"],
    },
];

impl Preset {
    pub fn find(name: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name)
    }

    /// The preset's run config: its layers over the defaults, validated.
    pub fn config(&self) -> Result<TrainConfig, ConfigError> {
        let mut doc: toml::Table = toml::from_str(&TrainConfig::default().to_toml()).expect("own TOML parses");
        for layer in self.layers {
            let layer: toml::Table = toml::from_str(layer).map_err(|e| ConfigError::Parse(format!("preset {}: {e}", self.name)))?;
            merge(&mut doc, layer);
        }
        let config: TrainConfig =
            toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| ConfigError::Parse(format!("preset {}: {e}", self.name)))?;
        config.validate()?;
        Ok(config)
    }

    /// Recall@K as the source reports it: "R@1 65.7, R@2 77.0, …".
    pub fn expected_text(&self) -> String {
        self.expected.iter().map(|(k, r)| format!("R@{k} {r:.1}")).collect::<Vec<_>>().join(", ")
    }
}

/// `layer`'s fields into `doc`, tables merged field by field, except a `[loss]` that names its
/// loss: it replaces the loss wholesale (another loss's parameters would not fit it).
fn merge(doc: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        let names_a_loss = key == "loss" && value.get("name").is_some();
        match (doc.get_mut(&key), value) {
            (_, value) if names_a_loss => {
                doc.insert(key, value);
            }
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge(inner, value),
            (_, value) => {
                doc.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_a_valid_config_of_its_dataset() {
        let mut names = std::collections::BTreeSet::new();
        for preset in &PRESETS {
            assert!(names.insert(preset.name), "{} twice", preset.name);
            let config = preset.config().unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            let dataset = config.data.dataset.name();
            assert!(preset.name.ends_with(dataset), "{} trains on {dataset}", preset.name);
            let ks: Vec<usize> = preset.expected.iter().map(|(k, _)| *k).collect();
            assert!(ks.iter().all(|k| config.eval.ks.contains(k)), "{}: reports {ks:?}, evaluates {:?}", preset.name, config.eval.ks);
            assert!(preset.weights.is_some() && config.model.backbone != crate::model::BackboneKind::SmallCnn, "{}", preset.name);
        }
        let seed = Preset::find("ms-cub").unwrap().config().unwrap();
        assert_eq!((seed.sampler.p * seed.sampler.k, seed.model.dim, seed.augment.crop), (80, 512, 227));
        assert_eq!((seed.optimizer.lr, seed.augment.crop_scale, seed.model.freeze_bn), (1e-5, [0.16, 1.0], true));
        let xbm = Preset::find("xbm-sop").unwrap().config().unwrap();
        assert_eq!((xbm.xbm.memory_size, xbm.xbm.start_iteration, xbm.loss.name()), (55_000, 1_000, "contrastive"));
    }
}
