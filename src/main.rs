//! `dml`: deep metric learning from the command line.

mod commands;
mod error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

#[derive(Parser)]
#[command(name = "dml", version, about = "Deep metric learning: train embeddings, evaluate retrieval and clustering")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recall@K, MAP@R, R-Precision (and NMI) of embeddings stored as NumPy .npy files.
    Metrics(commands::metrics::MetricsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), CliError> = match cli.command {
        Command::Metrics(args) => commands::metrics::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}
