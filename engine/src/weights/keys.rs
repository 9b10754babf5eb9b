//! Which tensor of a published weight file goes into which module of a dml backbone: pairs of
//! (unit in the file, unit in dml), a unit being one convolution, batch norm or linear layer.

use crate::model::{BackboneKind, ResNetDepth};

/// `(file unit, module unit)` for every convolution and batch norm of `kind`'s backbone, in the
/// naming of the file its weights are published in: torchvision's ResNets, Cadene's
/// BN-Inception (the Deep_Metric code's `bn_inception-52deb4733.pth`), lukemelas'
/// EfficientNet port. Module units are paths inside [`crate::model::Backbone`].
pub fn backbone_units(kind: BackboneKind) -> Vec<(String, String)> {
    let mut units = Vec::new();
    let mut push = |file: String, module: String| units.push((file, module));
    match kind {
        BackboneKind::SmallCnn => {}
        BackboneKind::Resnet18 | BackboneKind::Resnet50 => {
            let depth = if kind == BackboneKind::Resnet18 { ResNetDepth::D18 } else { ResNetDepth::D50 };
            push("conv1".into(), "stem.conv".into());
            push("bn1".into(), "stem.norm".into());
            let convs = if depth == ResNetDepth::D18 { 2 } else { 3 };
            for (layer, &blocks) in depth.blocks().iter().enumerate() {
                for block in 0..blocks {
                    let file = format!("layer{}.{block}", layer + 1);
                    let module = format!("layers.{layer}.blocks.{block}");
                    for c in 0..convs {
                        push(format!("{file}.conv{}", c + 1), format!("{module}.units.{c}.conv"));
                        push(format!("{file}.bn{}", c + 1), format!("{module}.units.{c}.norm"));
                    }
                    if block == 0 && (layer > 0 || depth.expansion() > 1) {
                        push(format!("{file}.downsample.0"), format!("{module}.downsample.conv"));
                        push(format!("{file}.downsample.1"), format!("{module}.downsample.norm"));
                    }
                }
            }
        }
        BackboneKind::BnInception => {
            for (file, module) in [("conv1_7x7_s2", "conv1"), ("conv2_3x3_reduce", "conv2_reduce"), ("conv2_3x3", "conv2")] {
                push(file.into(), format!("{module}.conv"));
                push(format!("{file}_bn"), format!("{module}.norm"));
            }
            let names = ["3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a", "5b"];
            for (i, name) in names.iter().enumerate() {
                let reduction = crate::model::bn_inception_reduces(i);
                for (file, module) in [
                    ("1x1", "one"),
                    ("3x3_reduce", "three_reduce"),
                    ("3x3", "three"),
                    ("double_3x3_reduce", "double_reduce"),
                    ("double_3x3_1", "double_a"),
                    ("double_3x3_2", "double_b"),
                    ("pool_proj", "pool_proj"),
                ] {
                    if reduction && matches!(module, "one" | "pool_proj") {
                        continue;
                    }
                    let file = format!("inception_{name}_{file}");
                    push(file.clone(), format!("modules.{i}.{module}.conv"));
                    push(format!("{file}_bn"), format!("modules.{i}.{module}.norm"));
                }
            }
        }
        BackboneKind::EfficientnetLite0 => {
            push("_conv_stem".into(), "stem.conv".into());
            push("_bn0".into(), "stem.norm".into());
            for (i, expands) in crate::model::efficientnet_lite0_expands().into_iter().enumerate() {
                let file = format!("_blocks.{i}");
                let module = format!("blocks.{i}");
                if expands {
                    push(format!("{file}._expand_conv"), format!("{module}.expand.conv"));
                    push(format!("{file}._bn0"), format!("{module}.expand.norm"));
                }
                push(format!("{file}._depthwise_conv"), format!("{module}.depthwise.conv"));
                push(format!("{file}._bn1"), format!("{module}.depthwise.norm"));
                push(format!("{file}._project_conv"), format!("{module}.project.conv"));
                push(format!("{file}._bn2"), format!("{module}.project.norm"));
            }
            push("_conv_head".into(), "head.conv".into());
            push("_bn1".into(), "head.norm".into());
        }
    }
    units
}

/// The 1000-class ImageNet layer of `kind`'s published file.
pub fn classifier_unit(kind: BackboneKind) -> Option<&'static str> {
    match kind {
        BackboneKind::SmallCnn => None,
        BackboneKind::Resnet18 | BackboneKind::Resnet50 => Some("fc"),
        BackboneKind::BnInception => Some("last_linear"),
        BackboneKind::EfficientnetLite0 => Some("_fc"),
    }
}

/// The parameter of a Burn module that a PyTorch tensor name's last part becomes: batch norm's
/// `weight` and `bias` are Burn's `gamma` and `beta`.
pub fn module_parameter(unit_is_norm: bool, file_parameter: &str) -> Option<&'static str> {
    Some(match (unit_is_norm, file_parameter) {
        (true, "weight") => "gamma",
        (true, "bias") => "beta",
        (true, "running_mean") => "running_mean",
        (true, "running_var") => "running_var",
        (false, "weight") => "weight",
        (false, "bias") => "bias",
        _ => return None,
    })
}

/// [`module_parameter`] backwards.
pub fn file_parameter(module_parameter: &str) -> &str {
    match module_parameter {
        "gamma" => "weight",
        "beta" => "bias",
        other => other,
    }
}
