//! `dml project`: a 2-D map (PCA or t-SNE) of a run's test embeddings, as a NumPy file.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use dml_engine::npy;
use dml_engine::project::{Tsne, TsneConfig, pca};
use dml_engine::train::RunDir;

use super::progress::Progress;
use crate::error::CliError;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Method {
    Tsne,
    Pca,
}

#[derive(Args)]
pub struct ProjectArgs {
    /// The run folder whose test embeddings (embeddings.npy) to map.
    #[arg(long, value_name = "RUN_DIR", required_unless_present = "embeddings")]
    run: Option<PathBuf>,
    /// Map this float32/float64 [n, d] .npy file instead.
    #[arg(long, value_name = "E.npy", conflicts_with = "run")]
    embeddings: Option<PathBuf>,
    /// t-SNE (neighbourhoods kept, distances between clusters not) or PCA (the two directions of
    /// largest variance, a linear map).
    #[arg(long, value_enum, default_value = "tsne")]
    method: Method,
    /// The float32 [n, 2] map to write.
    #[arg(long, value_name = "MAP.npy")]
    out: PathBuf,
    /// t-SNE: effective number of neighbours.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f64,
    /// t-SNE: all iterations, the early-exaggeration ones included.
    #[arg(long, default_value_t = 750)]
    iterations: usize,
    /// t-SNE: iterations with exaggerated attraction at the start.
    #[arg(long, default_value_t = 250)]
    exaggeration_iterations: usize,
    /// t-SNE: the factor on attraction during the exaggeration iterations.
    #[arg(long, default_value_t = 12.0)]
    early_exaggeration: f64,
    /// t-SNE: 0 picks max(n / early exaggeration, 50).
    #[arg(long, default_value_t = 0.0)]
    learning_rate: f64,
    /// t-SNE: Barnes-Hut accuracy (0: exact, O(n²)).
    #[arg(long, default_value_t = 0.5)]
    theta: f64,
}

pub fn run(args: ProjectArgs) -> Result<(), CliError> {
    let path = match (&args.embeddings, &args.run) {
        (Some(path), _) => path.clone(),
        (None, Some(run)) => RunDir::open(run).map_err(|e| CliError::at(&e.path, e.message))?.embeddings_path(),
        (None, None) => unreachable!("clap requires one"),
    };
    let matrix = npy::read_matrix(&path).map_err(|e| CliError::at(&path, e))?;
    let (n, d) = (matrix.rows, matrix.cols);
    if n < 2 || d == 0 {
        return Err(CliError::at(&path, format!("{n} × {d} embeddings: a map needs at least 2 points")));
    }
    let data: Vec<f32> = matrix.data.iter().map(|&v| v as f32).collect();
    let started = Instant::now();
    let map: Vec<f64> = match args.method {
        Method::Pca => {
            let result = pca(&data, n, d, 2.min(d));
            println!(
                "PCA: {n} points, {d} dimensions; the two axes explain {:.1} % and {:.1} % of the variance",
                100.0 * result.explained[0],
                100.0 * result.explained.get(1).copied().unwrap_or(0.0)
            );
            result.plane().concat()
        }
        Method::Tsne => {
            let config = TsneConfig {
                perplexity: args.perplexity,
                iterations: args.iterations,
                exaggeration_iterations: args.exaggeration_iterations,
                early_exaggeration: args.early_exaggeration,
                learning_rate: args.learning_rate,
                theta: args.theta,
                seed: 0,
            };
            if !(config.perplexity > 0.0 && (config.perplexity * 3.0) < n as f64) {
                return Err(CliError::plain(format!(
                    "--perplexity {}: must be positive and below n / 3 = {:.1}",
                    args.perplexity,
                    n as f64 / 3.0
                )));
            }
            if !(config.theta >= 0.0 && config.theta <= 0.7) {
                return Err(CliError::plain(format!("--theta {}: must be within 0 (exact) … 0.7", args.theta)));
            }
            let tsne = run_tsne(&data, n, d, &config);
            println!(
                "t-SNE: {n} points, perplexity {}, {} iterations, KL divergence {:.4}",
                config.perplexity,
                config.iterations,
                tsne.kl_divergence()
            );
            tsne.embedding().to_vec()
        }
    };
    let map32: Vec<f32> = map.iter().map(|&v| v as f32).collect();
    npy::write_matrix_f32(&args.out, n, 2, &map32).map_err(|e| CliError::at(&args.out, e))?;
    println!("wrote {} ({n} × 2) in {:.1} s", args.out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// t-SNE of the `n × d` row-major `data`, with a progress bar.
pub fn run_tsne(data: &[f32], n: usize, d: usize, config: &TsneConfig) -> Tsne {
    let mut tsne = Tsne::new(data, n, d, config);
    let mut progress = Progress::new("t-SNE", 0, config.iterations as u64);
    let mut last = Instant::now();
    tsne.run(|iteration, _| {
        let now = Instant::now();
        progress.update(iteration as u64, None, 1, Some(now - last));
        last = now;
    });
    progress.interrupt();
    tsne
}
