//! Embedding a dataset's test classes and scoring retrieval on them.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use super::config::TrainConfig;
use crate::data::{BadImage, Batch, Inputs, Pending};
use crate::eval::{RetrievalConfig, RetrievalMetrics};
use crate::model::Embedder;

/// Embeddings of one set of images, row-major `labels.len() × dim`.
#[derive(Clone, Debug, Default)]
pub struct Embedded {
    pub embeddings: Vec<f32>,
    pub labels: Vec<i64>,
    pub skipped: Vec<BadImage>,
    /// For each row, the index of its image in the test part (its list): `0..n` unless images
    /// were skipped. Rows are traced back to files through this, never by recounting.
    pub rows: Vec<usize>,
}

/// Embeddings of the test classes with their retrieval metrics.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub metrics: RetrievalMetrics,
    /// The test split (the gallery, for query/gallery datasets), `labels.len() × dim`.
    pub embeddings: Vec<f32>,
    pub dim: usize,
    pub labels: Vec<i64>,
    /// Each row's index in the test split's (gallery's) list; see [`Embedded::rows`].
    pub rows: Vec<usize>,
    /// The queries of a query/gallery dataset (In-Shop).
    pub query: Option<Embedded>,
    /// Test images left out (only with `skip_bad_images`).
    pub skipped: Vec<BadImage>,
}

/// Told after each embedded batch how many images are done and how many there are in all;
/// `Break` stops the embedding there.
pub type EmbedProgress<'a> = &'a mut dyn FnMut(usize, usize) -> ControlFlow<()>;

/// Why the test images were not all embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("{0}")]
    BadImage(#[from] BadImage),
    /// The progress callback asked to stop.
    #[error("stopped before all test images were embedded")]
    Stopped,
}

/// Embeds test part `part` in batches of `batch_size`, decoding `prefetch` batches ahead.
/// `model` should be in inference mode (`valid()`).
pub fn embed_part(
    model: &Embedder,
    inputs: &Arc<Inputs>,
    part: usize,
    batch_size: usize,
    prefetch: usize,
    device: &Device,
    progress: EmbedProgress,
) -> Result<Embedded, EmbedError> {
    let total = inputs.test_parts()[part].labels.len();
    let mut starts = (0..total).step_by(batch_size.max(1));
    // Each batch being decoded, with the index of its first item.
    let mut queue: VecDeque<(usize, Pending<Result<Batch, BadImage>>)> = VecDeque::new();
    let mut out = Embedded::default();
    let mut done = 0;
    loop {
        while queue.len() < prefetch.max(1) {
            let Some(start) = starts.next() else { break };
            let items = start..(start + batch_size).min(total);
            queue.push_back((start, inputs.prefetch(move |inputs| inputs.test_batch(part, items))));
        }
        let Some((start, pending)) = queue.pop_front() else {
            break;
        };
        let batch = pending.wait()?;
        out.rows.extend(batch.sources.iter().map(|s| start + s));
        out.embeddings.extend(model.embed_batch(&batch, device));
        out.labels.extend_from_slice(&batch.labels);
        done += batch.labels.len() + batch.skipped.len();
        out.skipped.extend(batch.skipped);
        if progress(done, total).is_break() {
            return Err(EmbedError::Stopped);
        }
    }
    Ok(out)
}

/// The test classes embedded: `(test, None)` for leave-one-out datasets, `(gallery, Some(query))`
/// for query/gallery ones.
pub fn embed_test(
    model: &Embedder,
    inputs: &Arc<Inputs>,
    batch_size: usize,
    prefetch: usize,
    device: &Device,
    progress: EmbedProgress,
) -> Result<(Embedded, Option<Embedded>), EmbedError> {
    let parts: Vec<usize> = inputs.test_parts().iter().map(|p| p.labels.len()).collect();
    let total: usize = parts.iter().sum();
    let mut embed = |part: usize| {
        let before: usize = parts[..part].iter().sum();
        embed_part(model, inputs, part, batch_size, prefetch, device, &mut |done, _| progress(before + done, total))
    };
    if parts.len() == 1 {
        Ok((embed(0)?, None))
    } else {
        let query = embed(0)?;
        let gallery = embed(1)?;
        Ok((gallery, Some(query)))
    }
}

/// Recall@K, MAP@R and R-Precision: leave-one-out over `test`, or `query` ranked against `test`
/// as the gallery.
pub fn score(ks: &[usize], test: &Embedded, query: Option<&Embedded>, dim: usize, device: &Device) -> RetrievalMetrics {
    let tensor = |e: &Embedded| Tensor::<2>::from_data(TensorData::new(e.embeddings.clone(), [e.labels.len(), dim]), device);
    let retrieval = RetrievalConfig::new(ks);
    match query {
        None => retrieval.evaluate(tensor(test), &test.labels),
        Some(query) => retrieval.evaluate_split(tensor(query), &query.labels, tensor(test), &test.labels),
    }
}

/// Recall@K, MAP@R and R-Precision of `model` on the test classes of `inputs`: leave-one-out
/// over the test split, or queries against the gallery. `model` should be in inference mode.
pub fn evaluate(
    model: &Embedder,
    inputs: &Arc<Inputs>,
    config: &TrainConfig,
    device: &Device,
    progress: EmbedProgress,
) -> Result<Evaluation, EmbedError> {
    let dim = config.model.dim;
    let (test, query) = embed_test(model, inputs, config.eval.batch_size, config.data.prefetch, device, progress)?;
    let metrics = score(&config.eval.ks, &test, query.as_ref(), dim, device);
    let skipped = query.iter().flat_map(|q| &q.skipped).chain(&test.skipped).cloned().collect();
    Ok(Evaluation { metrics, embeddings: test.embeddings, dim, labels: test.labels, rows: test.rows, query, skipped })
}
