//! Cross-batch memory (XBM, Wang et al. CVPR 2020): the embeddings and labels of recent batches,
//! kept on the training device so that each batch's anchors also meet far more pairs than the
//! batch holds (`MetricLoss::forward_against`).

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// The `[xbm]` section of a run config. Off (`memory_size = 0`) unless set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XbmConfig {
    /// Embeddings remembered (rows, first in first out); 0 turns the memory off. The memory costs
    /// `memory_size × (4 × dim + 8)` bytes on the training device.
    pub memory_size: usize,
    /// Completed iterations before the memory is used and filled (the model's first embeddings
    /// move fast and would be stale at once).
    pub start_iteration: u64,
    /// Factor of the memory term in the loss.
    pub weight: f64,
}

impl Default for XbmConfig {
    fn default() -> Self {
        Self { memory_size: 0, start_iteration: 0, weight: 1.0 }
    }
}

impl XbmConfig {
    pub fn enabled(&self) -> bool {
        self.memory_size > 0
    }

    /// Whether the step after `iteration` completed iterations uses (and then fills) the memory.
    pub fn active_after(&self, iteration: u64) -> bool {
        self.enabled() && iteration >= self.start_iteration
    }

    /// An empty memory of `dim`-wide rows on `device`.
    pub fn init(&self, dim: usize, device: &Device) -> CrossBatchMemory {
        CrossBatchMemory { rows: Tensor::empty([0, dim], device), labels: Tensor::empty([0], device), capacity: self.memory_size }
    }
}

/// The remembered rows, oldest first, with their labels; detached (a constant to the loss).
#[derive(Clone, Debug)]
pub struct CrossBatchMemory {
    rows: Tensor<2>,
    labels: Tensor<1, Int>,
    capacity: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("the checkpoint's cross-batch memory: {0}")]
pub struct MemoryFormatError(String);

impl CrossBatchMemory {
    pub fn len(&self) -> usize {
        self.rows.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rows(&self) -> Tensor<2> {
        self.rows.clone()
    }

    pub fn labels(&self) -> Tensor<1, Int> {
        self.labels.clone()
    }

    /// Appends a batch (detached here), dropping the oldest rows beyond the capacity; a batch
    /// larger than the whole memory keeps its last rows.
    pub fn push(&mut self, rows: Tensor<2>, labels: Tensor<1, Int>) {
        let rows = Tensor::cat(vec![self.rows.clone(), rows.detach()], 0);
        let labels = Tensor::cat(vec![self.labels.clone(), labels], 0);
        let total = rows.dims()[0];
        let drop = total.saturating_sub(self.capacity);
        self.rows = if drop > 0 { rows.slice(drop..total) } else { rows };
        self.labels = if drop > 0 { labels.slice(drop..total) } else { labels };
    }

    /// Little-endian: rows and width as u64, the rows' f32 values row by row, then the labels as
    /// i64 (what a checkpoint stores).
    pub fn to_bytes(&self) -> Vec<u8> {
        let [rows, dim] = self.rows.dims();
        let values = self.rows.clone().try_into_vec_as::<f32>().expect("memory rows read back as f32");
        let labels = self.labels.clone().try_into_vec_as::<i64>().expect("memory labels read back as i64");
        let mut out = Vec::with_capacity(16 + 4 * values.len() + 8 * labels.len());
        out.extend_from_slice(&(rows as u64).to_le_bytes());
        out.extend_from_slice(&(dim as u64).to_le_bytes());
        out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        out.extend(labels.iter().flat_map(|v| v.to_le_bytes()));
        out
    }

    /// The memory a checkpoint saved, into an empty one of this capacity and width.
    pub fn load(&mut self, bytes: &[u8]) -> Result<(), MemoryFormatError> {
        let word = |i: usize| bytes.get(8 * i..8 * i + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let (Some(rows), Some(dim)) = (word(0), word(1)) else {
            return Err(MemoryFormatError(format!("{} bytes, not even its header", bytes.len())));
        };
        let want_dim = self.rows.dims()[1] as u64;
        if dim != want_dim || rows > self.capacity as u64 {
            return Err(MemoryFormatError(format!(
                "{rows} rows of {dim} values, for a memory of at most {} rows of {want_dim}",
                self.capacity
            )));
        }
        let (rows, dim) = (rows as usize, dim as usize);
        let expected = 16 + rows * dim * 4 + rows * 8;
        if bytes.len() != expected {
            return Err(MemoryFormatError(format!("{} bytes where {rows} rows of {dim} take {expected}", bytes.len())));
        }
        let (values, labels) = bytes[16..].split_at(rows * dim * 4);
        let values: Vec<f32> = values.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect();
        let labels: Vec<i64> = labels.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let device = self.rows.device();
        self.rows = Tensor::from_data(TensorData::new(values, [rows, dim]), &device);
        self.labels = Tensor::from_data(TensorData::new(labels, [rows]), &device);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: i64, n: usize, device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let values: Vec<f32> = (0..n * 2).map(|i| (first * 2) as f32 + i as f32).collect();
        let labels: Vec<i64> = (0..n as i64).map(|i| first + i).collect();
        (Tensor::from_data(TensorData::new(values, [n, 2]), device), Tensor::from_data(TensorData::new(labels, [n]), device))
    }

    fn labels_of(memory: &CrossBatchMemory) -> Vec<i64> {
        memory.labels().try_into_vec_as::<i64>().unwrap()
    }

    #[test]
    fn keeps_the_newest_rows_oldest_first_and_round_trips() {
        let device = Device::flex();
        let config = XbmConfig { memory_size: 5, ..Default::default() };
        let mut memory = config.init(2, &device);
        assert!(memory.is_empty());
        let (x, y) = batch(0, 3, &device);
        memory.push(x, y);
        assert_eq!(labels_of(&memory), [0, 1, 2]);
        let (x, y) = batch(3, 3, &device);
        memory.push(x, y);
        assert_eq!(labels_of(&memory), [1, 2, 3, 4, 5], "the oldest row dropped");
        assert_eq!(memory.rows().try_into_vec_as::<f32>().unwrap(), (2..12).map(|v| v as f32).collect::<Vec<_>>());
        let (x, y) = batch(10, 7, &device);
        memory.push(x, y);
        assert_eq!(labels_of(&memory), [12, 13, 14, 15, 16], "a batch larger than the memory keeps its last rows");

        let bytes = memory.to_bytes();
        let mut back = config.init(2, &device);
        back.load(&bytes).unwrap();
        assert_eq!(back.to_bytes(), bytes);
        let mut narrow = config.init(3, &device);
        assert!(narrow.load(&bytes).unwrap_err().to_string().contains("5 rows of 2 values, for a memory of at most 5 rows of 3"));
        let mut small = XbmConfig { memory_size: 4, ..Default::default() }.init(2, &device);
        assert!(small.load(&bytes).is_err());
        assert!(back.load(&bytes[..bytes.len() - 1]).unwrap_err().to_string().contains("bytes where 5 rows of 2 take"));
    }
}
