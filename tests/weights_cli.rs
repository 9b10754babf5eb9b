//! `dml weights` and `dml train --pretrained` on the real EfficientNet-Lite0 ImageNet file, and
//! the emoji dataset layout through `dml data check`. The weights and photos come from
//! `scripts/fetch-test-assets` (run by `scripts/test`).

mod common;

use std::fs;
use std::path::Path;

use common::assets::asset;
use common::{assert_error, dml, scratch};
use dml_engine::image::{Rgba, RgbaImage};

fn lite0() -> String {
    asset("efficientnet-lite0-57934424.pth").to_string_lossy().into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "dml failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn inspect_lists_the_tensors_and_how_they_fit_a_backbone() {
    let file = lite0();
    let text = stdout(&dml(&["weights", "inspect", &file, "--backbone", "efficientnet-lite0"]));
    assert!(text.contains("legacy format") && text.contains("296 tensors"), "{text}");
    assert!(text.contains("_blocks.15._depthwise_conv.weight") && text.contains("[1152, 1, 3, 3]"), "{text}");
    assert!(text.contains("efficientnet-lite0 with its ImageNet layer: 247 of 247 tensors match"), "{text}");
    assert!(text.contains("ignored: 49 batch-norm num_batches_tracked counters"), "{text}");
    assert!(text.trim_end().ends_with("loads into efficientnet-lite0: yes"), "{text}");

    let out = dml(&["weights", "inspect", &file, "--backbone", "resnet50"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("missing from the file") && text.contains("layer4.2.bn3.running_var"), "{text}");
    assert!(text.contains("in the file, not in the backbone") && text.contains("_fc.weight"), "{text}");
    assert_error(&out, &file, "does not load into resnet50");
}

#[test]
fn classify_names_the_imagenet_class_of_a_photo() {
    let text = stdout(&dml(&[
        "weights",
        "classify",
        &lite0(),
        "--backbone",
        "efficientnet-lite0",
        "--top",
        "3",
        asset("coffee.png").to_str().unwrap(),
    ]));
    assert!(text.contains("coffee.png: 967 ("), "{text}");
}

/// Two class folders of 64 × 64 RGBA PNGs per split.
fn tree(root: &Path) {
    for class in 0..4u8 {
        for item in 0..3u8 {
            let path = root.join(format!("c{class}")).join(format!("{item}.png"));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbaImage::from_fn(40, 40, |x, y| {
                let on = (x / (2 + class as u32) + y).is_multiple_of(2);
                Rgba([60 * class, if on { 200 } else { 20 }, 10 * item, if x < 4 { 0 } else { 255 }])
            })
            .save(path)
            .unwrap();
        }
    }
}

#[test]
fn training_starts_from_pretrained_weights_and_refuses_a_mismatched_file() {
    let dir = scratch("pretrained-train");
    let root = dir.join("images");
    tree(&root);
    let root = root.to_string_lossy().into_owned();
    let file = lite0();
    let run = |backbone: &str, run_dir: &str| {
        dml(&[
            "train",
            "--dataset",
            "folder",
            "--root",
            &root,
            "--backbone",
            backbone,
            "--pretrained",
            &file,
            "--run-dir",
            &dir.join(run_dir).to_string_lossy(),
            "--p",
            "2",
            "--k",
            "3",
            "--iterations",
            "2",
            "--eval-interval",
            "0",
            "--dim",
            "8",
            "--set",
            "augment.resize=36",
            "--set",
            "augment.crop=32",
        ])
    };
    let out = run("efficientnet-lite0", "ok");
    stdout(&out);
    let config = fs::read_to_string(dir.join("ok/config.toml")).unwrap();
    assert!(config.contains("pretrained = ") && config.contains("efficientnet-lite0-57934424.pth"), "{config}");
    assert!(config.contains("backbone = \"efficientnet-lite0\""), "{config}");

    let out = run("resnet18", "mismatch");
    assert_error(&out, &file, "conv1.weight: missing from the file");

    let out = dml(&["train", "--dataset", "folder", "--root", &root, "--pretrained", &file]);
    assert_error(&out, "", "the small CNN has no pretrained weights");
}

#[test]
fn an_emoji_tree_checks_with_its_split() {
    let root = scratch("emoji");
    let mut entries = Vec::new();
    for (i, code) in ["1F600", "1F601", "0023-FE0F-20E3", "2764-FE0F"].iter().enumerate() {
        let image = format!("{}.png", code.to_lowercase());
        entries.push(serde_json::json!({"unified": code, "image": image, "has_img_google": true, "has_img_twitter": true}));
        for style in ["google", "twitter"] {
            let path = root.join("img").join(style).join("64").join(&image);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbaImage::from_pixel(64, 64, Rgba([i as u8 * 50, 0, 0, 128])).save(path).unwrap();
        }
    }
    fs::write(root.join("emoji.json"), serde_json::to_string(&entries).unwrap()).unwrap();
    let text = stdout(&dml(&["data", "check", "--dataset", "emoji", "--root", root.to_str().unwrap()]));
    assert!(text.contains("train 4 images in 2 classes; test 4 images in 2 classes"), "{text}");
    assert!(text.contains("published split: 1,910 / 1,912"), "{text}");

    fs::remove_file(root.join("img/twitter/64/2764-fe0f.png")).unwrap();
    let out = dml(&["data", "check", "--dataset", "emoji", "--root", root.to_str().unwrap()]);
    assert_error(&out, "2764-fe0f.png", "listed in the");
}
