//! `dml eval`: recompute the retrieval table of a trained run, on its dataset or another.

use std::path::PathBuf;

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::burn::tensor::{Tensor, TensorData};
use dml_engine::data::DatasetKind;
use dml_engine::eval::nmi_of_embeddings;
use dml_engine::train::score;

use crate::error::CliError;

#[derive(Args)]
pub struct EvalArgs {
    /// The run folder (config.toml + model.bpk).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Evaluate on this dataset's test split instead of the run's.
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// The dataset's folder.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The K of Recall@K, comma-separated [default: the run's].
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..))]
    k: Option<Vec<u32>>,
    /// Also cluster with k-means and report NMI.
    #[arg(long)]
    nmi: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Leave out test images that cannot be read (each is reported) instead of stopping.
    #[arg(long)]
    skip_bad_images: bool,
    #[arg(long, help = super::BACKEND_HELP, default_value = "auto")]
    backend: BackendChoice,
}

pub fn run(args: EvalArgs) -> Result<(), CliError> {
    let super::TestEmbeddings { config, test, query, device, .. } = super::embed_test_split(&args.run, args.backend, |config| {
        config.data.skip_bad_images |= args.skip_bad_images;
        if let Some(dataset) = args.dataset {
            config.data.dataset = dataset;
            config.data.root = Default::default();
        }
        if let Some(root) = &args.root {
            config.data.root = root.clone();
        }
    })?;
    let ks: Vec<usize> = match &args.k {
        Some(k) => k.iter().map(|&k| k as usize).collect(),
        None => config.eval.ks.clone(),
    };
    let metrics = score(&ks, &test, query.as_ref(), config.model.dim, &device);
    let labels = &test.labels;
    let nmi = args.nmi.then(|| {
        let tensor = Tensor::<2>::from_data(TensorData::new(test.embeddings.clone(), [labels.len(), config.model.dim]), &device);
        nmi_of_embeddings(tensor, labels, 0)
    });
    if args.json {
        println!("{}", super::metrics::to_json(&metrics, nmi));
    } else {
        super::metrics::print_table(&metrics, nmi, labels.len(), config.model.dim);
    }
    Ok(())
}
