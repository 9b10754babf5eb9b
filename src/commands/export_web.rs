//! `dml export --web DIR`: what the browser demo (web/) loads — the run's model and config, a
//! gallery of test images with their embeddings, labels and 2-D map, and a manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dml_engine::data::{Inputs, image_file};
use dml_engine::io::write_atomically;
use dml_engine::npy;
use dml_engine::project::{TsneConfig, pca};
use dml_engine::train::{Embedded, RunDir, TrainConfig};
use rayon::prelude::*;

use super::progress::ImageCountBar;
use crate::error::CliError;

/// Below this many gallery images the map is PCA's: t-SNE's default perplexity (30) needs more.
const TSNE_MIN_POINTS: usize = 100;

/// JPEG quality of photo gallery images.
const JPEG_QUALITY: u8 = 90;

#[derive(serde::Serialize)]
struct Manifest {
    format: &'static str,
    run: String,
    dataset: String,
    loss: String,
    backbone: String,
    dim: usize,
    /// The gallery's image files, relative to the manifest, in the rows' order.
    images: Vec<String>,
    /// Which test item each gallery image is (its row in the run's embeddings.npy).
    test_rows: Vec<usize>,
    classes: BTreeMap<i64, String>,
    map: &'static str,
}

/// The export writes `labels.npy`, `config.toml` and `model.bpk`, names a run folder holds too:
/// pointed at a run folder (this one or any other) it would replace that run's files.
fn refuse_run_folder(out: &Path, run_dir: &Path) -> Result<(), CliError> {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    let marker = ["checkpoint.dml", "metrics.jsonl", "embeddings.npy"].into_iter().find(|name| out.join(name).exists());
    if same(out, run_dir) || marker.is_some() {
        let why = marker.map_or_else(|| "it is the run folder".to_string(), |m| format!("it holds {m}"));
        return Err(CliError::at(out, format!("is a run folder ({why}); export the web demo to a folder of its own")));
    }
    Ok(())
}

/// `count` indices spread evenly over `0..n` (all of them when `count ≥ n`).
fn evenly_spaced(n: usize, count: usize) -> Vec<usize> {
    let m = count.min(n);
    (0..m).map(|i| i * n / m).collect()
}

pub fn write(
    out: &Path,
    run_dir: &Path,
    config: &TrainConfig,
    inputs: &Inputs,
    test: &Embedded,
    files: Option<&[PathBuf]>,
    gallery_size: usize,
) -> Result<(), CliError> {
    if gallery_size == 0 {
        return Err(CliError::plain("--gallery 0: the web demo needs at least one gallery image"));
    }
    refuse_run_folder(out, run_dir)?;
    let run = RunDir::open(run_dir).map_err(|e| CliError::at(&e.path, e.message))?;
    let dim = config.model.dim;
    let rows = evenly_spaced(test.labels.len(), gallery_size);
    let images_dir = out.join("gallery");
    std::fs::create_dir_all(&images_dir).map_err(|e| CliError::at(&images_dir, e))?;

    // Gallery images as the page embeds them again: grey images as they are (lossless PNG), photos
    // as the centred square of the test resize, whose centre crop is the test view.
    let names: Vec<String> = rows.iter().map(|&r| format!("gallery/{r:06}.{}", if files.is_some() { "jpg" } else { "png" })).collect();
    let started = Instant::now();
    let mut bar = ImageCountBar::new("gallery");
    for (c, chunk) in rows.chunks(64).enumerate() {
        chunk
            .par_iter()
            .zip(&names[c * 64..c * 64 + chunk.len()])
            .try_for_each(|(&r, name)| write_image(&out.join(name), inputs, files, r))?;
        bar.update(c * 64 + chunk.len(), rows.len());
    }

    let embeddings: Vec<f32> = rows.iter().flat_map(|&r| test.embeddings[r * dim..(r + 1) * dim].iter().copied()).collect();
    let labels: Vec<i64> = rows.iter().map(|&r| test.labels[r]).collect();
    let (map, method) = gallery_map(&embeddings, rows.len(), dim);
    let path = out.join("gallery.npy");
    npy::write_matrix_f32(&path, rows.len(), dim, &embeddings).map_err(|e| CliError::at(&path, e))?;
    let path = out.join("labels.npy");
    npy::write_labels(&path, &labels).map_err(|e| CliError::at(&path, e))?;
    let path = out.join("map.npy");
    npy::write_matrix_f32(&path, rows.len(), 2, &map).map_err(|e| CliError::at(&path, e))?;
    for (from, name) in [(run.model_path(), "model.bpk"), (run.config_path(), "config.toml")] {
        let bytes = std::fs::read(&from).map_err(|e| CliError::at(&from, e))?;
        let to = out.join(name);
        write_atomically(&to, &bytes).map_err(|e| CliError::at(&to, e))?;
    }

    let mut classes = BTreeMap::new();
    for &label in &labels {
        classes.entry(label).or_insert_with(|| config.data.class_name(label));
    }
    let manifest = Manifest {
        format: "dml-web 1",
        run: run_dir.file_name().map_or_else(|| run_dir.display().to_string(), |n| n.to_string_lossy().into_owned()),
        dataset: config.data.dataset.name().to_string(),
        loss: config.loss.name().to_string(),
        backbone: config.model.backbone.name().to_string(),
        dim,
        images: names,
        test_rows: rows,
        classes,
        map: method,
    };
    let path = out.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest serialises");
    write_atomically(&path, text.as_bytes()).map_err(|e| CliError::at(&path, e))?;
    println!(
        "wrote the web demo's data to {}: {} gallery images, their {dim}-d embeddings and {method} map, the model ({:.1} s)",
        out.display(),
        manifest.images.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn write_image(path: &Path, inputs: &Inputs, files: Option<&[PathBuf]>, row: usize) -> Result<(), CliError> {
    match (inputs, files) {
        (Inputs::Grey { split, .. }, _) => {
            let images = &split.test;
            dml_engine::png::write_grey(path, images.width, images.height, images.image(row)).map_err(|e| CliError::at(path, e))
        }
        (Inputs::Files { transform, .. }, Some(files)) => {
            let source = &files[row];
            let image = image_file::decode(source).map_err(|e| CliError::at(source, e))?;
            let mut square = transform.clone();
            square.crop = square.resize;
            let view = square.test_view(&image);
            let mut bytes = Vec::new();
            let encoder = dml_engine::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
            view.write_with_encoder(encoder).map_err(|e| CliError::at(path, e))?;
            write_atomically(path, &bytes).map_err(|e| CliError::at(path, e))
        }
        (Inputs::Files { .. }, None) => unreachable!("photo datasets list their files"),
    }
}

/// The gallery's 2-D map: t-SNE with dml's defaults, or PCA for small galleries.
fn gallery_map(embeddings: &[f32], n: usize, dim: usize) -> (Vec<f32>, &'static str) {
    let (map, method): (Vec<f64>, _) = if n >= TSNE_MIN_POINTS {
        (super::project::run_tsne(embeddings, n, dim, &TsneConfig::default()).embedding().to_vec(), "t-SNE")
    } else {
        (pca(embeddings, n, dim, 2.min(dim)).plane().concat(), "PCA")
    };
    (map.iter().map(|&v| v as f32).collect(), method)
}

#[cfg(test)]
mod tests {
    use super::evenly_spaced;

    #[test]
    fn gallery_rows_spread_over_the_split() {
        assert_eq!(evenly_spaced(10, 4), [0, 2, 5, 7]);
        assert_eq!(evenly_spaced(3, 10), [0, 1, 2]);
        assert_eq!(evenly_spaced(5000, 1000).len(), 1000);
        assert_eq!(evenly_spaced(5000, 1000)[999], 4995);
    }
}
