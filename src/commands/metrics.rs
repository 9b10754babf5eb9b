//! `dml metrics`: evaluate stored embeddings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use dml_engine::backend::BackendChoice;
use dml_engine::burn::tensor::{Device, Tensor, TensorData};
use dml_engine::eval::{RetrievalConfig, RetrievalMetrics, nmi_of_embeddings};
use dml_engine::npy;
use serde::Serialize;

use crate::error::CliError;

#[derive(Args)]
pub struct MetricsArgs {
    /// Gallery embeddings, float32/float64 [n, d] (the queries too unless --query-embeddings is given).
    #[arg(long, value_name = "E.npy")]
    embeddings: PathBuf,
    /// Gallery labels, int32/int64, shape (n,).
    #[arg(long, value_name = "L.npy")]
    labels: PathBuf,
    /// Separate query embeddings (In-Shop style query/gallery evaluation).
    #[arg(long, value_name = "Q.npy", requires = "query_labels")]
    query_embeddings: Option<PathBuf>,
    /// Labels of the separate queries.
    #[arg(long, value_name = "QL.npy", requires = "query_embeddings")]
    query_labels: Option<PathBuf>,
    /// The K of Recall@K, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8", value_parser = clap::value_parser!(u32).range(1..))]
    k: Vec<u32>,
    /// Also cluster with k-means (k = number of classes) and report NMI.
    #[arg(long)]
    nmi: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[arg(long, help = super::BACKEND_HELP, default_value = "auto")]
    backend: BackendChoice,
}

pub fn run(args: MetricsArgs) -> Result<(), CliError> {
    let gallery = read_embeddings(&args.embeddings)?;
    let gallery_labels = read_labels(&args.labels, gallery.rows, &args.embeddings)?;
    let queries = match (&args.query_embeddings, &args.query_labels) {
        (Some(e), Some(l)) => {
            let q = read_embeddings(e)?;
            if q.cols != gallery.cols {
                return Err(CliError::at(
                    e,
                    format!("{} columns, but the gallery {} has {}", q.cols, args.embeddings.display(), gallery.cols),
                ));
            }
            let ql = read_labels(l, q.rows, e)?;
            Some((q, ql))
        }
        _ => None,
    };

    let selected = super::select_backend(args.backend)?;
    let device = selected.device;
    let ks: Vec<usize> = args.k.iter().map(|&k| k as usize).collect();
    let config = RetrievalConfig::new(&ks);
    let gallery_tensor = to_tensor(&gallery, &device);
    let metrics = match &queries {
        Some((q, ql)) => config.evaluate_split(to_tensor(q, &device), ql, gallery_tensor.clone(), &gallery_labels),
        None => config.evaluate(gallery_tensor.clone(), &gallery_labels),
    };
    let nmi = args.nmi.then(|| match &queries {
        // Clustering quality is a property of one set: the queries when they are separate.
        Some((q, ql)) => nmi_of_embeddings(to_tensor(q, &device), ql, 0),
        None => nmi_of_embeddings(gallery_tensor, &gallery_labels, 0),
    });

    if args.json {
        println!("{}", to_json(&metrics, nmi));
    } else {
        print_table(&metrics, nmi, gallery.rows, gallery.cols);
    }
    Ok(())
}

fn read_embeddings(path: &Path) -> Result<npy::Matrix, CliError> {
    let matrix = npy::read_matrix(path).map_err(|e| CliError::at(path, e))?;
    if matrix.rows == 0 || matrix.cols == 0 {
        return Err(CliError::at(path, format!("empty array of shape ({}, {})", matrix.rows, matrix.cols)));
    }
    Ok(matrix)
}

fn read_labels(path: &Path, expected: usize, embeddings: &Path) -> Result<Vec<i64>, CliError> {
    let labels = npy::read_labels(path).map_err(|e| CliError::at(path, e))?;
    if labels.len() != expected {
        return Err(CliError::at(path, format!("{} labels, but {} has {} rows", labels.len(), embeddings.display(), expected)));
    }
    Ok(labels)
}

fn to_tensor(matrix: &npy::Matrix, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = matrix.data.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [matrix.rows, matrix.cols]), device)
}

/// The `--json` line; field order as documented.
#[derive(Serialize)]
struct MetricsJson<'a> {
    /// Integer keys come out as JSON strings, in numeric order.
    recall_at_k: &'a BTreeMap<usize, f64>,
    map_at_r: f64,
    r_precision: f64,
    nmi: Option<f64>,
    queries: usize,
    skipped: usize,
}

pub(crate) fn to_json(metrics: &RetrievalMetrics, nmi: Option<f64>) -> String {
    let line = MetricsJson {
        recall_at_k: &metrics.recall_at_k,
        map_at_r: metrics.map_at_r,
        r_precision: metrics.r_precision,
        nmi,
        queries: metrics.queries,
        skipped: metrics.skipped,
    };
    serde_json::to_string(&line).expect("metrics serialise")
}

pub(crate) fn print_table(metrics: &RetrievalMetrics, nmi: Option<f64>, rows: usize, cols: usize) {
    println!("gallery {rows} × {cols}, {} queries, {} skipped (no other item of their class)", metrics.queries, metrics.skipped);
    for (k, recall) in &metrics.recall_at_k {
        println!("  {:<12} {recall:.4}", format!("Recall@{k}"));
    }
    println!("  {:<12} {:.4}", "MAP@R", metrics.map_at_r);
    println!("  {:<12} {:.4}", "R-Precision", metrics.r_precision);
    if let Some(nmi) = nmi {
        println!("  {:<12} {nmi:.4}", "NMI");
    }
}
