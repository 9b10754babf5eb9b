//! `dml embed`: a trained run's model applied to any image files.

use std::path::{Path, PathBuf};

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::data::folder::{is_image, visible_entries};
use dml_engine::npy;

use super::progress::Progress;
use crate::error::CliError;

#[derive(Args)]
pub struct EmbedArgs {
    /// The run folder (config.toml + model.bpk).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Image files, or folders searched (recursively, in sorted order) for images.
    #[arg(long, value_name = "FILES_OR_DIR", num_args = 1.., required = true)]
    images: Vec<PathBuf>,
    /// The float32 [images, dim] matrix to write; the embedded files, one per row, go to the
    /// same name with `.txt` for `.npy`.
    #[arg(long, value_name = "E.npy")]
    out: PathBuf,
    /// Leave out images that cannot be read (each is reported) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    /// Images per forward pass [default: the run's eval batch size].
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long, help = super::BACKEND_HELP, default_value = "auto")]
    backend: BackendChoice,
}

/// The image files under `path`, sorted; `path` itself if it is a file.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let meta = std::fs::metadata(path).map_err(|e| CliError::at(path, e))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = visible_entries(path).map_err(|e| CliError::at(&e.path, e.message))?;
    for entry in entries {
        if entry.is_dir() {
            collect(&entry, out)?;
        } else if is_image(&entry) {
            out.push(entry);
        }
    }
    Ok(())
}

pub fn run(args: EmbedArgs) -> Result<(), CliError> {
    let mut files = Vec::new();
    for path in &args.images {
        let before = files.len();
        collect(path, &mut files)?;
        if files.len() == before {
            return Err(CliError::at(path, "no image files here"));
        }
    }
    // The row list is UTF-8 text: a name that is not (possible on Linux) would be listed as
    // another name, and the rows could not be traced back to it.
    if let Some(bad) = files.iter().find(|f| f.to_str().is_none()) {
        return Err(CliError::at(bad, "the file name is not valid UTF-8, and the list of embedded files is text; rename the file"));
    }
    if args.out.extension().is_none_or(|e| e != "npy") {
        return Err(CliError::at(&args.out, "--out must name a .npy file"));
    }
    let run = super::load_run(&args.run, args.backend, |_| {})?;
    let format = run.config.input_format();
    let dim = run.config.model.dim;
    let batch_size = args.batch_size.unwrap_or(run.config.eval.batch_size).max(1);

    let mut progress = Progress::new("embed", 0, files.len() as u64).with_unit("img");
    let (mut embeddings, mut kept) = (Vec::with_capacity(files.len() * dim), Vec::with_capacity(files.len()));
    for (c, chunk) in files.chunks(batch_size).enumerate() {
        let started = std::time::Instant::now();
        let (batch, rows) = format.read_files(chunk, args.skip_bad_images).map_err(super::bad_image)?;
        if !batch.skipped.is_empty() {
            progress.interrupt();
        }
        for bad in &batch.skipped {
            eprintln!("warning: skipped {bad}");
        }
        embeddings.extend(run.model.embed_batch(&batch, &run.device));
        kept.extend(rows.into_iter().map(|r| &chunk[r]));
        progress.update((c * batch_size + chunk.len()) as u64, None, chunk.len() as u64, Some(started.elapsed()));
    }
    progress.interrupt();
    if kept.is_empty() {
        return Err(CliError::plain("no image could be read"));
    }
    npy::write_matrix_f32(&args.out, kept.len(), dim, &embeddings).map_err(|e| CliError::at(&args.out, e))?;
    let list_path = args.out.with_extension("txt");
    let list: String = kept.iter().map(|p| format!("{}\n", p.display())).collect();
    dml_engine::io::write_atomically(&list_path, list.as_bytes()).map_err(|e| CliError::at(&list_path, e))?;
    println!("wrote {} × {dim} embeddings to {} (files in row order: {})", kept.len(), args.out.display(), list_path.display());
    Ok(())
}
