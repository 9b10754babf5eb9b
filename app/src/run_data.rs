//! One run folder as the app sees it: config, metrics (re-read while the run is training),
//! test embeddings with their labels, and the test images for thumbnails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use dml_engine::data::Inputs;
use dml_engine::npy;
use dml_engine::train::{MetricsLine, RunDir, TrainConfig};

/// The test embeddings of a finished run, unit length, with their labels.
#[derive(Clone, Debug)]
pub struct Embeddings {
    pub n: usize,
    pub dim: usize,
    /// `n × dim`, row-major, L2-normalised.
    pub vectors: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Embeddings {
    pub fn load(vectors: &Path, labels: &Path) -> Result<Self, String> {
        // A run that finishes while this reads replaces the two files one after the other.
        let (matrix, labels) = npy::read_matrix_with_labels(vectors, labels).map_err(|e| format!("{}: {e}", vectors.display()))?;
        let mut vectors: Vec<f32> = matrix.data.iter().map(|&v| v as f32).collect();
        for row in vectors.chunks_exact_mut(matrix.cols.max(1)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        Ok(Self { n: matrix.rows, dim: matrix.cols, vectors, labels })
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine similarity of item `i` to every item.
    pub fn similarities(&self, i: usize) -> Vec<f32> {
        let q = self.row(i);
        self.vectors.chunks_exact(self.dim).map(|r| r.iter().zip(q).map(|(a, b)| a * b).sum()).collect()
    }

    /// The `k` most similar other items of `i`, most similar first (ties: lower index first).
    pub fn neighbours(&self, i: usize, k: usize) -> Vec<(usize, f32)> {
        let sims = self.similarities(i);
        let mut order: Vec<usize> = (0..self.n).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
        order.truncate(k);
        order.into_iter().map(|j| (j, sims[j])).collect()
    }

    /// Each item's average precision at R (R = the other items of its class), as in MAP@R.
    pub fn average_precisions(&self) -> Vec<f64> {
        use rayon::prelude::*;
        let mut per_class = std::collections::HashMap::new();
        for &l in &self.labels {
            *per_class.entry(l).or_insert(0usize) += 1;
        }
        (0..self.n)
            .into_par_iter()
            .map(|i| {
                let r = per_class[&self.labels[i]] - 1;
                if r == 0 {
                    return 1.0;
                }
                let ranked = self.neighbours(i, r);
                let mut hits = 0;
                let mut sum = 0.0;
                for (rank, (j, _)) in ranked.iter().enumerate() {
                    if self.labels[*j] == self.labels[i] {
                        hits += 1;
                        sum += hits as f64 / (rank + 1) as f64;
                    }
                }
                sum / r as f64
            })
            .collect()
    }
}

/// One evaluation line of a run's metrics.
pub struct Evaluation {
    pub iteration: u64,
    /// (K, Recall@K), by increasing K.
    pub recalls: Vec<(usize, f64)>,
    pub map_at_r: f64,
    pub r_precision: f64,
}

pub struct RunData {
    pub path: PathBuf,
    pub config: TrainConfig,
    pub metrics: Vec<MetricsLine>,
    metrics_stamp: Option<SystemTime>,
    pub embeddings: Option<Embeddings>,
    /// Why there are no embeddings (still training, or unreadable).
    pub embeddings_note: String,
    /// When `embeddings.npy` was written, as last read.
    embeddings_stamp: Option<SystemTime>,
    /// The dataset, for thumbnails; `None` where it cannot be opened here.
    pub inputs: Option<Arc<Inputs>>,
    /// Photo datasets: the image file of each row of the embeddings, from the run's
    /// `embeddings.txt` (absolute, under the dataset's root).
    row_files: Option<Vec<PathBuf>>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl RunData {
    pub fn open(path: &Path) -> Result<Self, String> {
        let run = RunDir::open(path).map_err(|e| format!("{}: {}", e.path.display(), e.message))?;
        let config = run.config().map_err(|e| format!("{}: {}", e.path.display(), e.message))?;
        let embeddings_stamp = modified(&run.embeddings_path());
        let (embeddings, embeddings_note) = if run.embeddings_path().exists() {
            match Embeddings::load(&run.embeddings_path(), &run.labels_path()) {
                Ok(e) => (Some(e), String::new()),
                Err(e) => (None, e),
            }
        } else {
            (None, "no test embeddings yet: they are written when the run finishes".into())
        };
        let inputs = config.inputs().ok().map(Arc::new);
        let row_files = match (inputs.as_deref().and_then(Inputs::dataset_root), RunDir::read_row_files(&run.embeddings_files_path())) {
            (Some(root), Some(files)) if embeddings.as_ref().is_some_and(|e| e.n == files.len()) => {
                Some(files.iter().map(|f| root.join(f)).collect())
            }
            _ => None,
        };
        let mut data = RunData {
            path: path.to_path_buf(),
            config,
            metrics: Vec::new(),
            metrics_stamp: None,
            embeddings,
            embeddings_note,
            embeddings_stamp,
            inputs,
            row_files,
        };
        data.refresh();
        Ok(data)
    }

    /// The image file of row `i` of the embeddings (photo datasets). From the run's list of
    /// rows; a run finished before dml wrote that list falls back to the `i`-th image of the
    /// test split (or gallery), which is right unless images were skipped.
    pub fn row_file(&self, i: usize) -> Option<PathBuf> {
        match &self.row_files {
            Some(files) => files.get(i).cloned(),
            None => {
                let inputs = self.inputs.as_deref()?;
                inputs.test_file(inputs.gallery_part(), i)
            }
        }
    }

    /// Whether the test embeddings should be read (again): there are none, and a file has been
    /// written since the last try (the run finished, or an unreadable file was replaced).
    pub fn embeddings_due(&self) -> bool {
        // A run that had none when it was opened has no stamp: any file now differs from it.
        let path = self.path.join("embeddings.npy");
        self.embeddings.is_none() && path.exists() && modified(&path) != self.embeddings_stamp
    }

    /// Re-reads `metrics.jsonl` when it changed; true when it did.
    pub fn refresh(&mut self) -> bool {
        let path = self.path.join("metrics.jsonl");
        let stamp = modified(&path);
        if stamp == self.metrics_stamp && stamp.is_some() {
            return false;
        }
        self.metrics_stamp = stamp;
        if let Ok(metrics) = RunDir::open(&self.path).and_then(|run| run.metrics()) {
            self.metrics = metrics;
        }
        true
    }

    /// (iteration, loss) of every training step.
    pub fn losses(&self) -> Vec<[f64; 2]> {
        self.metrics
            .iter()
            .filter_map(|m| match m {
                MetricsLine::Train { iteration, loss, .. } => Some([*iteration as f64, *loss]),
                _ => None,
            })
            .collect()
    }

    /// (iteration, memory term) of every step that used the cross-batch memory.
    pub fn memory_losses(&self) -> Vec<[f64; 2]> {
        self.metrics
            .iter()
            .filter_map(|m| match m {
                MetricsLine::Train { iteration, xbm_loss: Some(term), .. } => Some([*iteration as f64, *term]),
                _ => None,
            })
            .collect()
    }

    /// Every evaluation, in the order of the metrics file.
    pub fn evaluations(&self) -> Vec<Evaluation> {
        self.metrics
            .iter()
            .filter_map(|m| {
                let metrics = m.metrics()?;
                // A BTreeMap: by increasing K.
                let recalls = metrics.recall_at_k.into_iter().collect();
                Some(Evaluation { iteration: m.iteration(), recalls, map_at_r: metrics.map_at_r, r_precision: metrics.r_precision })
            })
            .collect()
    }

    pub fn last_iteration(&self) -> u64 {
        self.metrics
            .iter()
            .map(|m| match m {
                MetricsLine::Train { iteration, .. } | MetricsLine::Eval { iteration, .. } => *iteration,
            })
            .max()
            .unwrap_or(0)
    }

    pub fn class_name(&self, label: i64) -> String {
        self.config.data.class_name(label)
    }
}

/// A run folder in the runs list.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub path: PathBuf,
    pub name: String,
    pub dataset: String,
    pub loss: String,
    pub iterations: u64,
    pub done: u64,
    pub best_recall_at_1: Option<f64>,
}

/// The run folders directly under `root`, newest name first.
pub fn list_runs(root: &Path) -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut runs: Vec<RunSummary> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.toml").is_file())
        .filter_map(|path| {
            let run = RunDir::open(&path).ok()?;
            let config = run.config().ok()?;
            let metrics = run.metrics().unwrap_or_default();
            let best = metrics
                .iter()
                .filter_map(|m| match m {
                    MetricsLine::Eval { recall_at_k, .. } => recall_at_k.get("1").copied(),
                    _ => None,
                })
                .fold(None, |best: Option<f64>, r| Some(best.map_or(r, |b| b.max(r))));
            let done = metrics
                .iter()
                .filter_map(|m| match m {
                    MetricsLine::Train { iteration, .. } => Some(*iteration),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            Some(RunSummary {
                name: path.file_name()?.to_string_lossy().into_owned(),
                dataset: serde_name(&config.data.dataset),
                loss: config.loss.name().to_string(),
                iterations: config.run.iterations,
                done,
                best_recall_at_1: best,
                path,
            })
        })
        .collect();
    runs.sort_by(|a, b| b.name.cmp(&a.name));
    runs
}

fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
