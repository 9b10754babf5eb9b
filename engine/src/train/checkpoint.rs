//! A resumable snapshot of a run in one file, written atomically: the training state (iteration,
//! sampler, loss random stream), the model record and the optimiser record.
//!
//! Layout: `DMLCKPT1`, three little-endian u64 lengths, then the state as JSON, the model and the
//! optimiser as burnpack bytes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::SamplerState;

const MAGIC: &[u8; 8] = b"DMLCKPT1";

/// Everything besides the weights and optimiser moments that a resumed run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Iterations completed.
    pub iteration: u64,
    pub sampler: SamplerState,
    /// Forward calls of a loss with its own random stream (margin's negative sampling).
    pub loss_calls: u64,
    /// What the run trained on; absent in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_set: Option<TrainSetSummary>,
}

/// The training split a run started on: a resumed run must see the same one, or its sampler
/// cursor and the label of every class would mean something else (an image folder whose class
/// folders changed, say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainSetSummary {
    pub images: usize,
    pub classes: usize,
    /// FNV-1a of every image's path (photo datasets) and label, in list order, in hex.
    pub digest: String,
}

impl TrainSetSummary {
    /// The summary of a training split: its labels and, for photo datasets, its file paths.
    pub fn of(labels: &[i64], paths: Option<&[std::path::PathBuf]>) -> Self {
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                hash = (hash ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        };
        for (i, label) in labels.iter().enumerate() {
            if let Some(path) = paths.and_then(|p| p.get(i)) {
                // `/`-joined components: the same digest on every system.
                eat(crate::io::slash_path(path).as_bytes());
                eat(&[0]);
            }
            eat(&label.to_le_bytes());
        }
        Self { images: labels.len(), classes: crate::data::class_count(labels), digest: format!("{hash:016x}") }
    }
}

pub struct Checkpoint {
    pub state: TrainState,
    pub model: Vec<u8>,
    pub optimizer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a dml checkpoint (bad header)")]
    Magic,
    #[error("truncated: {needed} bytes of {part} expected, {available} present")]
    Truncated { part: &'static str, needed: u64, available: u64 },
    #[error("training state: {0}")]
    State(#[from] serde_json::Error),
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let state = serde_json::to_vec(&self.state).expect("training state serialises");
        let mut out = Vec::with_capacity(32 + state.len() + self.model.len() + self.optimizer.len());
        out.extend_from_slice(MAGIC);
        for part in [&state, &self.model, &self.optimizer] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        }
        out.extend_from_slice(&state);
        out.extend_from_slice(&self.model);
        out.extend_from_slice(&self.optimizer);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        if bytes.len() < 32 || &bytes[..8] != MAGIC {
            return Err(CheckpointError::Magic);
        }
        let len = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
        let mut rest = &bytes[32..];
        let mut take = |part: &'static str, needed: u64| -> Result<&[u8], CheckpointError> {
            if needed > rest.len() as u64 {
                return Err(CheckpointError::Truncated { part, needed, available: rest.len() as u64 });
            }
            let (head, tail) = rest.split_at(needed as usize);
            rest = tail;
            Ok(head)
        };
        let state = take("the training state", len(0))?;
        let model = take("the model", len(1))?.to_vec();
        let optimizer = take("the optimiser", len(2))?.to_vec();
        Ok(Self { state: serde_json::from_slice(state)?, model, optimizer })
    }

    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        Self::from_bytes(&std::fs::read(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let checkpoint = Checkpoint {
            state: TrainState { iteration: 7, sampler: SamplerState { epoch: 1, cursor: 2, batches: 7 }, loss_calls: 7, train_set: None },
            model: vec![1, 2, 3],
            optimizer: vec![4, 5],
        };
        let bytes = checkpoint.to_bytes();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back.state, checkpoint.state);
        assert_eq!((back.model, back.optimizer), (vec![1, 2, 3], vec![4, 5]));
        assert!(matches!(Checkpoint::from_bytes(&bytes[..bytes.len() - 1]), Err(CheckpointError::Truncated { .. })));
        assert!(matches!(Checkpoint::from_bytes(b"not a checkpoint at all, no no no"), Err(CheckpointError::Magic)));
    }
}
