//! `dml export --projector`: the test split's embeddings as TensorFlow Embedding Projector files.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::data::GreyImages;
use dml_engine::npy::write_atomically;

use crate::error::CliError;

#[derive(Args)]
pub struct ExportArgs {
    /// The run folder (config.toml + model.bpk).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Write vectors.tsv, metadata.tsv, sprite.png and projector_config.pbtxt into this folder.
    #[arg(long, value_name = "DIR")]
    projector: PathBuf,
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
}

/// The projector shows at most 8192 × 8192 sprite pixels.
const SPRITE_LIMIT: usize = 8192;

pub fn run(args: ExportArgs) -> Result<(), CliError> {
    let super::TestEmbeddings { config, test, embeddings, .. } = super::embed_test_split(&args.run, args.backend, |_| {})?;
    let test = &test;
    let dim = config.model.dim;

    let out = &args.projector;
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

    let sprite = sprite_sheet(test);
    let sprite_path = out.join("sprite.png");
    dml_engine::png::write_grey(&sprite_path, sprite.side, sprite.side, &sprite.pixels)
        .map_err(|e| CliError::at(&sprite_path, e))?;
    let config_text = format!(
        "embeddings {{\n  tensor_name: \"dml test split\"\n  tensor_path: \"vectors.tsv\"\n  metadata_path: \"metadata.tsv\"\n  sprite {{\n    image_path: \"sprite.png\"\n    single_image_dim: {}\n    single_image_dim: {}\n  }}\n}}\n",
        sprite.cell, sprite.cell
    );
    write("projector_config.pbtxt", config_text.as_bytes())?;
    println!(
        "wrote {} embeddings ({dim}-d), metadata, a {}×{} sprite and projector_config.pbtxt to {}",
        test.len(),
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
