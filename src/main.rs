//! `dml`: deep metric learning from the command line.

// The doc comments of the argument structs are clap's help text, printed as written: `<name>`
// there is a placeholder for the user, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

mod commands;
mod error;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

#[derive(Parser)]
#[command(name = "dml", version, about = "Deep metric learning: train embeddings, evaluate retrieval and clustering")]
struct Cli {
    /// Without a command: `dml train` with its defaults (the bundled Fashion-MNIST split).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train an embedding network and report Recall@K on the unseen test classes.
    Train(Box<commands::train::TrainArgs>),
    /// Dataset tools.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Recompute Recall@K / MAP@R of a trained run on its test split.
    Eval(commands::eval::EvalArgs),
    /// Embed image files with a trained run's model into a NumPy .npy matrix.
    Embed(commands::embed::EmbedArgs),
    /// Write a run's test embeddings as TensorFlow Embedding Projector files.
    Export(commands::export::ExportArgs),
    /// The desktop app: runs, training curves, embedding map, retrieval examples.
    Gui(commands::gui::GuiArgs),
    /// A 2-D map (t-SNE or PCA) of a run's test embeddings as a NumPy file.
    Project(commands::project::ProjectArgs),
    /// Recall@K, MAP@R, R-Precision (and NMI) of embeddings stored as NumPy .npy files.
    Metrics(commands::metrics::MetricsArgs),
    /// The published experiments `dml train --preset NAME` reproduces, with sources and expected Recall@K.
    Presets,
    /// Pretrained weight files: inspect, classify photos, fetch.
    #[command(subcommand)]
    Weights(commands::weights::WeightsCommand),
}

fn main() -> ExitCode {
    dml_engine::memory::keep_freed_memory();
    // Burn's optimiser-state loader (used by `--resume`) puts the state on Burn's default device,
    // the GPU runtime in a build with wgpu: on a machine without any GPU driver that panics, and
    // elsewhere it starts a GPU runtime only for the state to move to the training device at the
    // next step. dml names its devices everywhere else, so the default is the CPU unless the user
    // sets BURN_DEVICE.
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: first thing in `main`, before any thread that could read the environment.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
    // Output piped into `head` or a pager that quits ends dml quietly, as it does other command
    // line tools, instead of a panic on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // A misspelt pin would otherwise be ignored, and the run not be what the user reproduces.
    if let Err(e) = dml_engine::kernels::cpu_isa_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result: Result<(), CliError> = match cli.command {
        None => commands::train::run(Default::default()),
        Some(Command::Train(args)) => commands::train::run(*args),
        Some(Command::Metrics(args)) => commands::metrics::run(args),
        Some(Command::Presets) => commands::presets::run(),
        Some(Command::Eval(args)) => commands::eval::run(args),
        Some(Command::Data(command)) => commands::data::run(command),
        Some(Command::Embed(args)) => commands::embed::run(args),
        Some(Command::Export(args)) => commands::export::run(args),
        Some(Command::Project(args)) => commands::project::run(args),
        Some(Command::Gui(args)) => commands::gui::run(args),
        Some(Command::Weights(command)) => commands::weights::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument of every command, nested ones included, says what it is in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn undocumented(command: &clap::Command, path: &str, out: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name());
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    out.push(format!("{path}: {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                undocumented(sub, &path, out);
            }
        }
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
