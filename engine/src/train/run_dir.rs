//! The folder of one run: `config.toml`, `metrics.jsonl`, `checkpoint.dml`, `model.bpk`, and the
//! test split's `embeddings.npy` + `labels.npy`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::eval::RetrievalMetrics;
use crate::io::write_atomically;

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    Eval {
        iteration: u64,
        split: String,
        /// Keys are the K of Recall@K, as strings (JSON object keys).
        recall_at_k: BTreeMap<String, f64>,
        map_at_r: f64,
        r_precision: f64,
    },
    Train {
        iteration: u64,
        /// The loss minimised: with cross-batch memory, the batch's term plus `xbm.weight` times
        /// the memory's.
        loss: f64,
        lr: f64,
        /// The memory term (`forward_against`, before `xbm.weight`) on steps that used the memory;
        /// absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        xbm_loss: Option<f64>,
    },
}

impl MetricsLine {
    pub fn eval(iteration: u64, split: &str, metrics: &RetrievalMetrics) -> Self {
        MetricsLine::Eval {
            iteration,
            split: split.to_string(),
            recall_at_k: metrics.recall_at_k.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            map_at_r: metrics.map_at_r,
            r_precision: metrics.r_precision,
        }
    }

    pub fn iteration(&self) -> u64 {
        match self {
            MetricsLine::Eval { iteration, .. } | MetricsLine::Train { iteration, .. } => *iteration,
        }
    }

    /// An evaluation line's metrics, Recall@K keyed by K again (a key that is not a number, which
    /// dml never writes, is left out); `None` for a training line.
    pub fn metrics(&self) -> Option<RetrievalMetrics> {
        match self {
            MetricsLine::Eval { recall_at_k, map_at_r, r_precision, .. } => Some(RetrievalMetrics {
                recall_at_k: recall_at_k.iter().filter_map(|(k, v)| Some((k.parse().ok()?, *v))).collect(),
                map_at_r: *map_at_r,
                r_precision: *r_precision,
                queries: 0,
                skipped: 0,
            }),
            MetricsLine::Train { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RunDirError {
    pub path: PathBuf,
    pub message: String,
}

impl RunDirError {
    fn new(path: &Path, message: impl ToString) -> Self {
        Self { path: path.to_path_buf(), message: message.to_string() }
    }
}

#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A new, empty folder under `root` for a new run, named by the local time
    /// (`2026-11-27_21-35-12`, with `-2`, `-3`, … when that exists already). The folder is
    /// created here, by a call that fails when it exists: two runs started in the same second
    /// (two terminals, the app and a terminal) get different folders.
    pub fn claim_fresh(root: &Path) -> Result<PathBuf, RunDirError> {
        fs::create_dir_all(root).map_err(|e| RunDirError::new(root, e))?;
        let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
        for n in 1u32.. {
            let candidate = if n == 1 { root.join(&stamp) } else { root.join(format!("{stamp}-{n}")) };
            match fs::create_dir(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(RunDirError::new(&candidate, e)),
            }
        }
        unreachable!("some suffix is free")
    }

    /// Creates the folder for a new run (or uses the empty one [`claim_fresh`](Self::claim_fresh)
    /// made) and writes its `config.toml`; refuses a folder that already holds a run.
    pub fn create(path: &Path, config: &TrainConfig) -> Result<Self, RunDirError> {
        let run = Self { path: path.to_path_buf() };
        if run.config_path().exists() {
            return Err(RunDirError::new(path, "already holds a run (config.toml exists); continue it with --resume"));
        }
        fs::create_dir_all(path).map_err(|e| RunDirError::new(path, e))?;
        write_atomically(&run.config_path(), config.to_toml().as_bytes()).map_err(|e| RunDirError::new(&run.config_path(), e))?;
        Ok(run)
    }

    /// Replaces `config.toml` (atomically), as when a resumed run is given more iterations.
    pub fn rewrite_config(&self, config: &TrainConfig) -> Result<(), RunDirError> {
        write_atomically(&self.config_path(), config.to_toml().as_bytes()).map_err(|e| RunDirError::new(&self.config_path(), e))
    }

    /// An existing run.
    pub fn open(path: &Path) -> Result<Self, RunDirError> {
        if !path.is_dir() {
            return Err(RunDirError::new(path, "no such run folder"));
        }
        let run = Self { path: path.to_path_buf() };
        if !run.config_path().exists() {
            return Err(RunDirError::new(path, "not a dml run folder (no config.toml)"));
        }
        // The leftovers of a run killed mid-write (each up to a checkpoint's size) go now.
        crate::io::sweep_temporaries(path, crate::io::STALE_TEMPORARY);
        Ok(run)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.path.join("checkpoint.dml")
    }

    pub fn model_path(&self) -> PathBuf {
        self.path.join("model.bpk")
    }

    pub fn embeddings_path(&self) -> PathBuf {
        self.path.join("embeddings.npy")
    }

    pub fn labels_path(&self) -> PathBuf {
        self.path.join("labels.npy")
    }

    /// Query/gallery datasets: `embeddings.npy` holds the gallery, these the queries.
    pub fn query_embeddings_path(&self) -> PathBuf {
        self.path.join("query_embeddings.npy")
    }

    pub fn query_labels_path(&self) -> PathBuf {
        self.path.join("query_labels.npy")
    }

    /// Photo datasets: the image file of each row of `embeddings.npy`, one a line, relative to
    /// the dataset's image root, as its list names it (`dml embed` writes the same beside its
    /// output). With `skip_bad_images` rows and list entries no longer line up; this says which
    /// is which.
    pub fn embeddings_files_path(&self) -> PathBuf {
        self.path.join("embeddings.txt")
    }

    /// The same for `query_embeddings.npy`.
    pub fn query_embeddings_files_path(&self) -> PathBuf {
        self.path.join("query_embeddings.txt")
    }

    /// The file names of `rows` of test part `part` (see
    /// [`embeddings_files_path`](Self::embeddings_files_path)), as the text of that file; `None`
    /// for datasets without files. A name that is not UTF-8 is written lossily.
    pub fn row_files_text(inputs: &crate::data::Inputs, part: usize, rows: &[usize]) -> Option<String> {
        inputs.dataset_root()?;
        let mut text = String::new();
        for &row in rows {
            text.push_str(&crate::io::slash_path(inputs.test_path(part, row)?));
            text.push('\n');
        }
        Some(text)
    }

    /// Reads a row-files list; `None` when there is none (grey datasets, or a run finished
    /// before dml wrote them).
    pub fn read_row_files(path: &Path) -> Option<Vec<PathBuf>> {
        let text = fs::read_to_string(path).ok()?;
        Some(text.lines().map(PathBuf::from).collect())
    }

    pub fn config(&self) -> Result<TrainConfig, RunDirError> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).map_err(|e| RunDirError::new(&path, e))?;
        TrainConfig::from_toml(&text).map_err(|e| RunDirError::new(&path, e))
    }

    /// Appends one line and flushes it, so that a crash loses nothing already reported.
    pub fn append(&self, line: &MetricsLine) -> Result<(), RunDirError> {
        let path = self.metrics_path();
        let mut file = fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| RunDirError::new(&path, e))?;
        let mut text = serde_json::to_string(line).expect("metrics line serialises");
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(|e| RunDirError::new(&path, e))
    }

    /// The file's lines, in order. A last line without its newline that does not parse is being
    /// written (a reader racing the trainer) or was torn by a crash in mid-write: it is left
    /// out, and a resumed run's [`truncate_metrics_after`](Self::truncate_metrics_after) drops it.
    pub fn metrics(&self) -> Result<Vec<MetricsLine>, RunDirError> {
        let path = self.metrics_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RunDirError::new(&path, e)),
        };
        let segments: Vec<&str> = text.split('\n').collect();
        let unterminated = segments.len() - 1;
        let mut lines = Vec::new();
        for (number, line) in segments.into_iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(parsed) => lines.push(parsed),
                Err(_) if number == unterminated => {}
                Err(e) => {
                    return Err(RunDirError::new(&path, format!("line {}: {e}", number + 1)));
                }
            }
        }
        Ok(lines)
    }

    /// Drops the lines a crashed run wrote after its last checkpoint, before resuming from it.
    pub fn truncate_metrics_after(&self, iteration: u64) -> Result<(), RunDirError> {
        let kept: Vec<MetricsLine> = self.metrics()?.into_iter().filter(|l| l.iteration() <= iteration).collect();
        let mut text = String::new();
        for line in &kept {
            text.push_str(&serde_json::to_string(line).expect("metrics line serialises"));
            text.push('\n');
        }
        write_atomically(&self.metrics_path(), text.as_bytes()).map_err(|e| RunDirError::new(&self.metrics_path(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_in_the_same_second_get_their_own_folders() {
        let root = std::env::temp_dir().join(format!("dml-claim-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let claims: Vec<PathBuf> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8).map(|_| scope.spawn(|| RunDir::claim_fresh(&root).unwrap())).collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<&PathBuf> = claims.iter().collect();
        assert_eq!(distinct.len(), 8, "{claims:?}");
        for path in &claims {
            assert!(path.is_dir());
            RunDir::create(path, &TrainConfig::default()).unwrap();
        }
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn opening_a_run_sweeps_the_temporary_files_of_a_killed_one() {
        let root = std::env::temp_dir().join(format!("dml-sweep-run-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let run = RunDir::create(&root, &TrainConfig::default()).unwrap();
        let left = root.join(".checkpoint.dml.tmp12345");
        fs::File::create(&left).unwrap().set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600)).unwrap();
        RunDir::open(run.path()).unwrap();
        assert!(!left.exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn metrics_lines_have_the_documented_shape() {
        let train = MetricsLine::Train { iteration: 3, loss: 0.5, lr: 0.001, xbm_loss: None };
        assert_eq!(serde_json::to_string(&train).unwrap(), r#"{"iteration":3,"loss":0.5,"lr":0.001}"#);
        let eval = MetricsLine::Eval {
            iteration: 3,
            split: "test".into(),
            recall_at_k: [("1".to_string(), 0.5), ("2".to_string(), 0.75)].into(),
            map_at_r: 0.25,
            r_precision: 0.375,
        };
        let text = serde_json::to_string(&eval).unwrap();
        assert_eq!(text, r#"{"iteration":3,"split":"test","recall_at_k":{"1":0.5,"2":0.75},"map_at_r":0.25,"r_precision":0.375}"#);
        assert_eq!(serde_json::from_str::<MetricsLine>(&text).unwrap(), eval);
        assert_eq!(serde_json::from_str::<MetricsLine>(r#"{"iteration":3,"loss":0.5,"lr":0.001}"#).unwrap(), train);
        // A step that used the cross-batch memory adds its term; readers of the older shape
        // still parse it (unknown keys are ignored by serde's untagged enums and by Python's).
        let with_memory = MetricsLine::Train { iteration: 4, loss: 0.75, lr: 0.001, xbm_loss: Some(0.5) };
        let text = serde_json::to_string(&with_memory).unwrap();
        assert_eq!(text, r#"{"iteration":4,"loss":0.75,"lr":0.001,"xbm_loss":0.5}"#);
        assert_eq!(serde_json::from_str::<MetricsLine>(&text).unwrap(), with_memory);
    }

    #[test]
    fn create_refuses_an_existing_run_and_truncation_keeps_earlier_lines() {
        let dir = std::env::temp_dir().join(format!("dml-rundir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let run = RunDir::create(&dir, &TrainConfig::default()).unwrap();
        assert!(RunDir::create(&dir, &TrainConfig::default()).is_err());
        for i in 1..=4 {
            run.append(&MetricsLine::Train { iteration: i, loss: 1.0 / i as f64, lr: 1e-3, xbm_loss: None }).unwrap();
        }
        run.truncate_metrics_after(2).unwrap();
        let lines = RunDir::open(&dir).unwrap().metrics().unwrap();
        assert_eq!(lines.iter().map(MetricsLine::iteration).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(run.config().unwrap(), TrainConfig::default());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_torn_in_mid_write_is_left_out_and_dropped_on_resume() {
        let dir = std::env::temp_dir().join(format!("dml-rundir-torn-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let run = RunDir::create(&dir, &TrainConfig::default()).unwrap();
        for i in 1..=3 {
            run.append(&MetricsLine::Train { iteration: i, loss: 0.5, lr: 1e-3, xbm_loss: None }).unwrap();
        }
        let mut file = fs::OpenOptions::new().append(true).open(run.metrics_path()).unwrap();
        file.write_all(br#"{"iteration":4,"lo"#).unwrap();
        let iterations = |run: &RunDir| run.metrics().unwrap().iter().map(MetricsLine::iteration).collect::<Vec<_>>();
        assert_eq!(iterations(&run), vec![1, 2, 3]);
        run.truncate_metrics_after(3).unwrap();
        run.append(&MetricsLine::Train { iteration: 4, loss: 0.25, lr: 1e-3, xbm_loss: None }).unwrap();
        assert_eq!(iterations(&run), vec![1, 2, 3, 4]);

        // A bad line with lines after it is not a torn write: the file is damaged.
        let text = fs::read_to_string(run.metrics_path()).unwrap();
        fs::write(run.metrics_path(), text.replacen(r#""loss""#, r#""lo"#, 2)).unwrap();
        let err = run.metrics().unwrap_err();
        assert!(err.message.starts_with("line 1: "), "{}", err.message);
        fs::remove_dir_all(&dir).unwrap();
    }
}
