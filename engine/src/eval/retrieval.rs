//! Recall@K, R-Precision and MAP@R (Musgrave et al. 2020), computed blockwise: one block of
//! queries against the whole gallery at a time, so memory stays O(block × gallery).

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Bool, Int, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::selects_on_host;

/// The scores of one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Fraction of evaluated queries with a same-label item among their K nearest, per K.
    pub recall_at_k: BTreeMap<usize, f64>,
    pub map_at_r: f64,
    pub r_precision: f64,
    /// Queries evaluated.
    pub queries: usize,
    /// Queries whose label has no other item in the gallery.
    pub skipped: usize,
}

/// How to run an evaluation.
#[derive(Clone, Debug)]
pub struct RetrievalConfig {
    /// The K of Recall@K.
    pub ks: Vec<usize>,
    /// Queries per block; `None` sizes blocks to about 64 M similarities.
    pub block_rows: Option<usize>,
    /// Where the top-k of each block is selected.
    pub selection: Selection,
}

/// Where the top-k neighbours of a block of similarities are selected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// On the host for CPU backends (the similarities are in host memory already), else on the device.
    #[default]
    Auto,
    Host,
    Device,
}

impl RetrievalConfig {
    pub fn new(ks: &[usize]) -> Self {
        Self { ks: ks.to_vec(), block_rows: None, selection: Selection::Auto }
    }

    /// Leave-one-out retrieval: every item is a query against all the others.
    pub fn evaluate(&self, embeddings: Tensor<2>, labels: &[i64]) -> RetrievalMetrics {
        self.run(None, embeddings, labels)
    }

    /// Separate query and gallery sets (In-Shop).
    pub fn evaluate_split(
        &self,
        queries: Tensor<2>,
        query_labels: &[i64],
        gallery: Tensor<2>,
        gallery_labels: &[i64],
    ) -> RetrievalMetrics {
        self.run(Some((queries, query_labels)), gallery, gallery_labels)
    }

    fn run(&self, queries: Option<(Tensor<2>, &[i64])>, gallery: Tensor<2>, gallery_labels: &[i64]) -> RetrievalMetrics {
        let [gallery_size, _] = gallery.dims();
        assert_eq!(gallery_size, gallery_labels.len(), "gallery embeddings and labels differ in length");
        let gallery = l2_normalize(gallery);
        let leave_one_out = queries.is_none();
        let (queries, query_labels) = match queries {
            Some((q, l)) => {
                assert_eq!(q.dims()[0], l.len(), "query embeddings and labels differ in length");
                (l2_normalize(q), l)
            }
            None => (gallery.clone(), gallery_labels),
        };

        let mut per_label: HashMap<i64, usize> = HashMap::new();
        for &label in gallery_labels {
            *per_label.entry(label).or_default() += 1;
        }
        let relevant: Vec<usize> = query_labels
            .iter()
            .map(|label| per_label.get(label).copied().unwrap_or(0).saturating_sub(leave_one_out as usize))
            .collect();

        let candidates = gallery_size - leave_one_out as usize;
        let max_k = self.ks.iter().copied().max().unwrap_or(1);
        let depth = relevant.iter().copied().max().unwrap_or(0).max(max_k).min(candidates);
        let mut scores = QueryScores::new(&self.ks);
        if depth == 0 {
            scores.skipped = relevant.len();
            return scores.finish();
        }

        let num_queries = query_labels.len();
        let block = self.block_rows.unwrap_or_else(|| ((1usize << 26) / gallery_size.max(1)).clamp(1, 4096));
        let on_host = match self.selection {
            Selection::Auto => selects_on_host(&gallery.device()),
            Selection::Host => true,
            Selection::Device => false,
        };
        let gallery_t = gallery.transpose();
        let mut start = 0;
        while start < num_queries {
            let end = (start + block).min(num_queries);
            let mut sim = queries.clone().slice([start..end, 0..queries.dims()[1]]).matmul(gallery_t.clone());
            if leave_one_out {
                let own = self_mask(start, end, gallery_size, &sim.device());
                sim = sim.mask_fill(own, f32::NEG_INFINITY);
            }
            let ranked = if on_host { rank_on_host(sim, depth) } else { rank_on_device(sim, depth) };
            for (row, neighbours) in ranked.iter().enumerate() {
                let query = start + row;
                scores.add(query_labels[query], relevant[query], neighbours, gallery_labels);
            }
            start = end;
        }
        scores.finish()
    }
}

/// Rows scaled to unit length (zero rows stay zero).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1.0e-12);
    x / norm
}

/// `[rows, cols]` mask of the entries `(i, start + i)`: each query's own gallery entry.
fn self_mask(start: usize, end: usize, cols: usize, device: &burn::tensor::Device) -> Tensor<2, Bool> {
    let rows = Tensor::<1, Int>::arange(start as i64..end as i64, device).unsqueeze_dim::<2>(1);
    let columns = Tensor::<1, Int>::arange(0..cols as i64, device).unsqueeze_dim::<2>(0);
    rows.expand([end - start, cols]).equal(columns.expand([end - start, cols]))
}

/// Orders by similarity, ties by the lower gallery index.
fn by_rank(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// The `depth` best gallery indices of each row, selected on the host: on a CPU backend the
/// similarities already live in host memory, and a linear-time selection beats a full sort.
fn rank_on_host(sim: Tensor<2>, depth: usize) -> Vec<Vec<u32>> {
    let [rows, cols] = sim.dims();
    let values: Vec<f32> = sim.try_into_vec_as::<f32>().expect("f32 similarities");
    (0..rows)
        .into_par_iter()
        .map(|r| {
            let mut row: Vec<(f32, u32)> = values[r * cols..(r + 1) * cols]
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i as u32))
                .collect();
            if depth < cols {
                row.select_nth_unstable_by(depth, by_rank);
                row.truncate(depth);
            }
            row.sort_unstable_by(by_rank);
            row.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// The `depth` best gallery indices of each row, selected on the device (only `depth + 1` values
/// per row come back). A tie across the cut-off is resolved from the full row.
fn rank_on_device(sim: Tensor<2>, depth: usize) -> Vec<Vec<u32>> {
    let [rows, cols] = sim.dims();
    let fetch = (depth + 1).min(cols);
    let (values, indices) = sim.clone().topk_with_indices(fetch, 1);
    let values: Vec<f32> = values.try_into_vec_as::<f32>().expect("f32 similarities");
    let indices: Vec<i64> = indices.try_into_vec_as::<i64>().expect("indices");
    (0..rows)
        .map(|r| {
            let v = &values[r * fetch..(r + 1) * fetch];
            let idx = &indices[r * fetch..(r + 1) * fetch];
            if fetch > depth && v[depth] == v[depth - 1] {
                return rank_on_host(sim.clone().slice([r..r + 1, 0..cols]), depth).remove(0);
            }
            let mut row: Vec<(f32, u32)> = v[..depth].iter().zip(&idx[..depth]).map(|(&s, &i)| (s, i as u32)).collect();
            row.sort_unstable_by(by_rank);
            row.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// Running sums of the per-query scores.
struct QueryScores {
    ks: Vec<usize>,
    hits: Vec<usize>,
    average_precision: f64,
    r_precision: f64,
    queries: usize,
    skipped: usize,
}

impl QueryScores {
    fn new(ks: &[usize]) -> Self {
        Self { ks: ks.to_vec(), hits: vec![0; ks.len()], average_precision: 0.0, r_precision: 0.0, queries: 0, skipped: 0 }
    }

    /// One query: its label, its number of relevant gallery items `r`, and its ranked neighbours.
    fn add(&mut self, label: i64, r: usize, neighbours: &[u32], gallery_labels: &[i64]) {
        if r == 0 {
            self.skipped += 1;
            return;
        }
        self.queries += 1;
        let relevant = |i: usize| gallery_labels[neighbours[i] as usize] == label;
        let first_hit = (0..neighbours.len()).find(|&i| relevant(i));
        for (k, hits) in self.ks.iter().zip(self.hits.iter_mut()) {
            if first_hit.is_some_and(|i| i < *k) {
                *hits += 1;
            }
        }
        let mut found = 0usize;
        let mut precision_sum = 0.0;
        for i in 0..r.min(neighbours.len()) {
            if relevant(i) {
                found += 1;
                precision_sum += found as f64 / (i + 1) as f64;
            }
        }
        self.average_precision += precision_sum / r as f64;
        self.r_precision += found as f64 / r as f64;
    }

    fn finish(self) -> RetrievalMetrics {
        let n = self.queries.max(1) as f64;
        RetrievalMetrics {
            recall_at_k: self.ks.iter().zip(&self.hits).map(|(&k, &h)| (k, h as f64 / n)).collect(),
            map_at_r: self.average_precision / n,
            r_precision: self.r_precision / n,
            queries: self.queries,
            skipped: self.skipped,
        }
    }
}
