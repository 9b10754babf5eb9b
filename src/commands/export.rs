//! `dml export`: the test split's embeddings as TensorFlow Embedding Projector files
//! (`--projector`), and the browser demo's data (`--web`, in export_web.rs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::data::{GreyImages, Inputs, image_file};
use dml_engine::image::{RgbImage, imageops};
use dml_engine::io::write_atomically;
use dml_engine::train::{Embedded, TrainConfig};
use rayon::prelude::*;

use super::progress::ImageCountBar;
use crate::error::CliError;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["projector", "web"])))]
pub struct ExportArgs {
    /// The run folder (config.toml + model.bpk).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Write vectors.tsv, metadata.tsv, sprite.png and projector_config.pbtxt into this folder.
    #[arg(long, value_name = "DIR")]
    projector: Option<PathBuf>,
    /// Write the browser demo's data into this folder (serve it as `data/` beside the page built
    /// by web/build.sh, e.g. `--web web/dist/data`): the model, gallery images, their
    /// embeddings, labels and 2-D map.
    #[arg(long, value_name = "DIR")]
    web: Option<PathBuf>,
    /// Gallery images in the web export: evenly spaced over the test split.
    #[arg(long, default_value_t = 1000)]
    gallery: usize,
    /// Leave out test images that cannot be read (each is reported) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    #[arg(long, help = super::BACKEND_HELP, default_value = "auto")]
    backend: BackendChoice,
}

/// The projector shows at most 8192 × 8192 sprite pixels.
const SPRITE_LIMIT: usize = 8192;

pub fn run(args: ExportArgs) -> Result<(), CliError> {
    let super::TestEmbeddings { config, inputs, test, .. } =
        super::embed_test_split(&args.run, args.backend, |c| c.data.skip_bad_images |= args.skip_bad_images)?;
    // The file of each row of the embeddings, for photo datasets: `test` is the test split, or
    // the gallery of a query/gallery dataset, and its rows say which of its images were read.
    let gallery = inputs.gallery_part();
    let files: Option<Vec<PathBuf>> = match inputs.as_ref() {
        Inputs::Grey { .. } => None,
        Inputs::Files { .. } => Some(test.rows.iter().map(|&r| inputs.test_file(gallery, r).expect("a photo dataset's file")).collect()),
    };
    if let Some(out) = &args.projector {
        projector(out, &config, inputs.as_ref(), &test, files.as_deref())?;
    }
    if let Some(out) = &args.web {
        super::export_web::write(out, &args.run, &config, inputs.as_ref(), &test, files.as_deref(), args.gallery)?;
    }
    Ok(())
}

fn projector(out: &Path, config: &TrainConfig, inputs: &Inputs, test: &Embedded, files: Option<&[PathBuf]>) -> Result<(), CliError> {
    let (embeddings, dim) = (&test.embeddings, config.model.dim);
    std::fs::create_dir_all(out).map_err(|e| CliError::at(out, e))?;
    let write = |name: &str, bytes: &[u8]| -> Result<(), CliError> {
        let path = out.join(name);
        write_atomically(&path, bytes).map_err(|e| CliError::at(&path, e))
    };

    let mut vectors = String::with_capacity(embeddings.len() * 12);
    for row in embeddings.chunks_exact(dim) {
        for (j, v) in row.iter().enumerate() {
            let _ = write!(vectors, "{}{v}", if j == 0 { "" } else { "\t" });
        }
        vectors.push('\n');
    }
    write("vectors.tsv", vectors.as_bytes())?;

    let mut metadata = String::from("label\tclass\n");
    for &label in &test.labels {
        let _ = writeln!(metadata, "{label}\t{}", config.data.class_name(label));
    }
    write("metadata.tsv", metadata.as_bytes())?;

    let sprite_path = out.join("sprite.png");
    let sprite = match (inputs, files) {
        (Inputs::Grey { split, .. }, _) => {
            let sprite = sprite_sheet(&split.test);
            dml_engine::png::write_grey(&sprite_path, sprite.side, sprite.side, &sprite.pixels)
                .map_err(|e| CliError::at(&sprite_path, e))?;
            sprite
        }
        (Inputs::Files { .. }, files) => {
            let (sprite, image) = photo_sprite(files.expect("photo datasets list their files"));
            image.save(&sprite_path).map_err(|e| CliError::at(&sprite_path, e))?;
            sprite
        }
    };
    let config_text = format!(
        "embeddings {{\n  tensor_name: \"dml test split\"\n  tensor_path: \"vectors.tsv\"\n  metadata_path: \"metadata.tsv\"\n  sprite {{\n    image_path: \"sprite.png\"\n    single_image_dim: {}\n    single_image_dim: {}\n  }}\n}}\n",
        sprite.cell, sprite.cell
    );
    write("projector_config.pbtxt", config_text.as_bytes())?;
    println!(
        "wrote {} embeddings ({dim}-d), metadata, a {}×{} sprite and projector_config.pbtxt to {}",
        test.labels.len(),
        sprite.side,
        sprite.side,
        out.display()
    );
    Ok(())
}

struct Sprite {
    side: usize,
    cell: usize,
    pixels: Vec<u8>,
}

/// All images on one square grid, row-major in dataset order, scaled down (box filter) when the
/// grid would exceed the projector's limit.
fn sprite_sheet(images: &GreyImages) -> Sprite {
    let n = images.len().max(1);
    let per_row = (n as f64).sqrt().ceil() as usize;
    let native = images.height.max(images.width);
    let cell = native.min(SPRITE_LIMIT / per_row).max(1);
    let side = per_row * cell;
    let mut pixels = vec![0u8; side * side];
    for i in 0..images.len() {
        let image = images.image(i);
        let (top, left) = ((i / per_row) * cell, (i % per_row) * cell);
        for y in 0..cell {
            for x in 0..cell {
                // Box filter over the source pixels that map into this cell pixel.
                let (y0, y1) = (y * images.height / cell, ((y + 1) * images.height / cell).max(y * images.height / cell + 1));
                let (x0, x1) = (x * images.width / cell, ((x + 1) * images.width / cell).max(x * images.width / cell + 1));
                let mut sum = 0u32;
                for sy in y0..y1 {
                    for sx in x0..x1 {
                        sum += image[sy * images.width + sx] as u32;
                    }
                }
                pixels[(top + y) * side + left + x] = (sum / ((y1 - y0) * (x1 - x0)) as u32) as u8;
            }
        }
    }
    Sprite { side, cell, pixels }
}

/// Photo thumbnails (their centred squares) on one grid, at most 64 pixels a side.
fn photo_sprite(files: &[PathBuf]) -> (Sprite, RgbImage) {
    let per_row = ((files.len().max(1)) as f64).sqrt().ceil() as usize;
    let cell = (SPRITE_LIMIT / per_row).clamp(1, 64);
    let side = per_row * cell;
    let thumbnail = |path: &PathBuf| {
        let image = image_file::decode(path).ok()?;
        let short = image.width().min(image.height());
        let square = imageops::crop_imm(&image, (image.width() - short) / 2, (image.height() - short) / 2, short, short);
        Some(imageops::resize(&square.to_image(), cell as u32, cell as u32, imageops::FilterType::Triangle))
    };
    let mut sheet = RgbImage::new(side as u32, side as u32);
    // Decoding every test photo again takes minutes at Stanford Online Products' size.
    let mut progress = ImageCountBar::new("sprite");
    const CHUNK: usize = 256;
    for (c, chunk) in files.chunks(CHUNK).enumerate() {
        let thumbs: Vec<Option<RgbImage>> = chunk.par_iter().map(thumbnail).collect();
        for (i, thumb) in thumbs.iter().enumerate() {
            if let Some(thumb) = thumb {
                let at = c * CHUNK + i;
                let (top, left) = ((at / per_row) * cell, (at % per_row) * cell);
                imageops::replace(&mut sheet, thumb, left as i64, top as i64);
            }
        }
        progress.update(c * CHUNK + chunk.len(), files.len());
    }
    (Sprite { side, cell, pixels: Vec::new() }, sheet)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each photo lands in its own cell, row-major, across the decoding chunks; an unreadable
    /// one leaves its cell black.
    #[test]
    fn photo_sprite_places_each_thumbnail_in_its_cell() {
        let dir = std::env::temp_dir().join(format!("dml-sprite-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let colour = |i: usize| dml_engine::image::Rgb([(i % 251) as u8 + 1, (i / 251) as u8 + 1, 200]);
        let files: Vec<PathBuf> = (0..300)
            .map(|i| {
                let path = dir.join(format!("{i:03}.png"));
                // Wider than tall: the thumbnail is the centred square.
                RgbImage::from_fn(12, 8, |x, _| if (2..10).contains(&x) { colour(i) } else { dml_engine::image::Rgb([0, 0, 0]) })
                    .save(&path)
                    .unwrap();
                path
            })
            .collect();
        std::fs::write(&files[257], b"not a png").unwrap();
        let (sprite, sheet) = photo_sprite(&files);
        std::fs::remove_dir_all(&dir).unwrap();
        let per_row = 18; // ⌈√300⌉
        assert_eq!((sprite.cell, sprite.side), (64, per_row * 64));
        for i in 0..300 {
            let (x, y) = ((i % per_row * 64 + 32) as u32, (i / per_row * 64 + 32) as u32);
            let want = if i == 257 { dml_engine::image::Rgb([0, 0, 0]) } else { colour(i) };
            assert_eq!(*sheet.get_pixel(x, y), want, "cell {i}");
        }
    }
}
