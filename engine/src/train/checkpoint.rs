//! A resumable snapshot of a run in one file, written atomically: the training state (iteration,
//! sampler, loss random stream), the model record, the optimiser record, the loss's own
//! parameters (a proxy loss's W) and the cross-batch memory.
//!
//! Layout: `DMLCKPT2`, the number of parts (5) and each part's length as little-endian u64, then
//! the parts: the state as JSON; the model, the optimiser and the loss as burnpack bytes (the
//! loss empty for a pair loss); the memory (empty without one, else `CrossBatchMemory::to_bytes`).
//! `DMLCKPT1` files (three lengths, no count: state, model, optimiser) are still read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::SamplerState;

const MAGIC: &[u8; 8] = b"DMLCKPT2";
/// The first layout: state, model and optimiser only.
const MAGIC_V1: &[u8; 8] = b"DMLCKPT1";
const PARTS: [&str; 5] = ["the training state", "the model", "the optimiser", "the loss", "the cross-batch memory"];

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
    /// The loss's record (a proxy loss's W, as burnpack); empty for a pair loss.
    pub loss: Vec<u8>,
    /// The cross-batch memory's rows and labels; empty without one.
    pub memory: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a dml checkpoint (bad header)")]
    Magic,
    #[error("a checkpoint of {0} parts; this dml reads 5 (written by a newer dml?)")]
    Parts(u64),
    #[error("truncated: {needed} bytes of {part} expected, {available} present")]
    Truncated { part: &'static str, needed: u64, available: u64 },
    #[error("training state: {0}")]
    State(#[from] serde_json::Error),
}

impl Checkpoint {
    pub fn to_bytes(&self) -> Vec<u8> {
        let state = serde_json::to_vec(&self.state).expect("training state serialises");
        let parts = [&state, &self.model, &self.optimizer, &self.loss, &self.memory];
        let mut out = Vec::with_capacity(16 + 8 * parts.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(parts.len() as u64).to_le_bytes());
        for part in parts {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
        }
        for part in parts {
            out.extend_from_slice(part);
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let word = |i: usize| bytes.get(8 + 8 * i..16 + 8 * i).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let (lengths, mut rest): (Vec<u64>, &[u8]) = match bytes.get(..8) {
            Some(magic) if magic == MAGIC => {
                let count = word(0).ok_or(CheckpointError::Magic)?;
                if count != PARTS.len() as u64 {
                    return Err(CheckpointError::Parts(count));
                }
                let lengths: Option<Vec<u64>> = (1..=PARTS.len()).map(word).collect();
                (lengths.ok_or(CheckpointError::Magic)?, &bytes[16 + 8 * PARTS.len()..])
            }
            Some(magic) if magic == MAGIC_V1 && bytes.len() >= 32 => {
                ((0..3).map(|i| word(i).expect("header present")).collect(), &bytes[32..])
            }
            _ => return Err(CheckpointError::Magic),
        };
        let mut parts = Vec::with_capacity(PARTS.len());
        for (part, &needed) in PARTS.iter().zip(&lengths) {
            if needed > rest.len() as u64 {
                return Err(CheckpointError::Truncated { part, needed, available: rest.len() as u64 });
            }
            let (head, tail) = rest.split_at(needed as usize);
            rest = tail;
            parts.push(head.to_vec());
        }
        // A first-layout file has neither a loss record nor a memory.
        parts.resize(PARTS.len(), Vec::new());
        let [state, model, optimizer, loss, memory] = <[Vec<u8>; 5]>::try_from(parts).expect("five parts");
        Ok(Self { state: serde_json::from_slice(&state)?, model, optimizer, loss, memory })
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
            loss: vec![6],
            memory: vec![7, 8, 9, 10],
        };
        let bytes = checkpoint.to_bytes();
        let back = Checkpoint::from_bytes(&bytes).unwrap();
        assert_eq!(back.state, checkpoint.state);
        assert_eq!((back.model, back.optimizer, back.loss, back.memory), (vec![1, 2, 3], vec![4, 5], vec![6], vec![7, 8, 9, 10]));
        let cut = Checkpoint::from_bytes(&bytes[..bytes.len() - 1]).err().expect("refused");
        assert!(matches!(cut, CheckpointError::Truncated { part: "the cross-batch memory", needed: 4, available: 3 }), "{cut}");
        for short in [&bytes[..8], &bytes[..20], &b"not a checkpoint at all, no no no"[..]] {
            assert!(matches!(Checkpoint::from_bytes(short), Err(CheckpointError::Magic)));
        }
        let mut more = bytes.clone();
        more[8] = 6;
        assert!(matches!(Checkpoint::from_bytes(&more), Err(CheckpointError::Parts(6))));
    }

    #[test]
    fn first_layout_files_are_read() {
        let state = serde_json::to_vec(&TrainState {
            iteration: 3,
            sampler: SamplerState { epoch: 0, cursor: 1, batches: 3 },
            loss_calls: 0,
            train_set: None,
        })
        .unwrap();
        let mut v1 = b"DMLCKPT1".to_vec();
        for len in [state.len(), 2, 1] {
            v1.extend_from_slice(&(len as u64).to_le_bytes());
        }
        v1.extend_from_slice(&state);
        v1.extend_from_slice(&[1, 2, 3]);
        let back = Checkpoint::from_bytes(&v1).unwrap();
        assert_eq!((back.state.iteration, back.model, back.optimizer), (3, vec![1, 2], vec![3]));
        assert!(back.loss.is_empty() && back.memory.is_empty());
    }
}
