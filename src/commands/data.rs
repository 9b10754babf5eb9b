//! `dml data check`: validate a dataset tree in its published on-disk format and print its counts.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use dml_engine::data::{DataConfig, DatasetKind, GreyImages, ImageList, TestSet};

use super::progress::thousands;
use crate::error::CliError;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Check that a dataset's list files parse and every listed image exists; print the counts.
    Check(CheckArgs),
    /// Download a dataset that a package registry carries: `emoji` (npm) or `fashion-mnist-full`
    /// (Debian's package, all 70,000 images).
    Fetch(FetchArgs),
}

#[derive(Args)]
pub struct FetchArgs {
    /// emoji or fashion-mnist-full.
    name: String,
    /// Where to put it [default: ~/.cache/dml/<name>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct CheckArgs {
    /// cub, cars, sop, inshop, folder, emoji, fashion-mnist or fashion-mnist-full.
    #[arg(long)]
    dataset: DatasetKind,
    /// The dataset's root folder (Fashion-MNIST: the bundled test set compiled into dml, or dml's
    /// cache for the full set, unless given).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

pub fn run(command: DataCommand) -> Result<(), CliError> {
    match command {
        DataCommand::Check(args) => check(args),
        DataCommand::Fetch(args) => super::fetch_data::run(&args.name, args.dir),
    }
}

fn describe(name: &str, list: &ImageList) -> String {
    format!("{name} {} images in {} classes", thousands(list.len()), thousands(list.classes()))
}

fn describe_grey(name: &str, images: &GreyImages) -> String {
    let mut classes: Vec<i64> = images.labels.clone();
    classes.sort_unstable();
    classes.dedup();
    format!("{name} {} images in {} classes", thousands(images.len()), classes.len())
}

fn check(args: CheckArgs) -> Result<(), CliError> {
    let Some(format) = args.dataset.files() else {
        return check_grey(args);
    };
    let Some(root) = args.root else {
        return Err(CliError::plain(format!("the {} dataset needs its folder (--root)", format.name())));
    };
    let dataset = format.load(&root).map_err(|e| CliError::at(&e.path, e.message))?;
    let mut lists: Vec<(&str, &ImageList)> = vec![("train", &dataset.train)];
    match &dataset.test {
        TestSet::LeaveOneOut(test) => lists.push(("test", test)),
        TestSet::QueryGallery { query, gallery } => {
            lists.push(("query", query));
            lists.push(("gallery", gallery));
        }
    }
    for (name, list) in &lists {
        if list.is_empty() {
            return Err(CliError::at(&root, format!("the {name} split is empty")));
        }
        if let Some(missing) = list.first_missing(&dataset.root) {
            return Err(CliError::at(&missing, format!("listed in the {name} split but missing")));
        }
    }
    let counts: Vec<usize> = lists.iter().map(|(_, l)| l.len()).collect();
    println!("{}: {}", root.display(), lists.iter().map(|(n, l)| describe(n, l)).collect::<Vec<_>>().join("; "));
    let total: usize = counts.iter().sum();
    println!("all {} listed image files exist", thousands(total));
    if let Some(published) = format.published() {
        let matches = published == counts.as_slice();
        let published: Vec<String> = published.iter().map(|&n| thousands(n)).collect();
        println!(
            "published split: {} — {}",
            published.join(" / "),
            if matches { "this tree matches it" } else { "this tree differs (a subset or another version)" }
        );
    }
    Ok(())
}

/// The Fashion-MNIST kinds: IDX files read whole, split into training and test classes.
fn check_grey(args: CheckArgs) -> Result<(), CliError> {
    let config = DataConfig { dataset: args.dataset, root: args.root.unwrap_or_default(), ..DataConfig::default() };
    let root = config.resolved_root();
    let inputs =
        config.inputs(&Default::default(), dml_engine::data::Normalization::IMAGENET).map_err(|e| CliError::at(&e.path, e.message))?;
    let dml_engine::data::Inputs::Grey { split, .. } = inputs else {
        unreachable!("Fashion-MNIST is read as grey images");
    };
    let bundled = root.as_os_str().is_empty();
    let source = if bundled { "the bundled Fashion-MNIST test set (compiled into dml)".to_string() } else { root.display().to_string() };
    println!("{source}: {}; {}", describe_grey("train", &split.train), describe_grey("test", &split.test));
    let expected: &[usize] = match args.dataset {
        DatasetKind::FashionMnistFull => &[30_000, 5_000],
        _ => &[5_000, 5_000],
    };
    let matches = expected == [split.train.len(), split.test.len()];
    println!(
        "expected split (classes 0–4 / 5–9): {} / {} — {}",
        thousands(expected[0]),
        thousands(expected[1]),
        if matches { "these files match it" } else { "these files differ (a subset or another version)" }
    );
    if bundled {
        println!("\nlicence of the bundled files:\n{}", dml_engine::data::fashion_mnist::BUNDLED_LICENSE.trim_end());
    }
    Ok(())
}
