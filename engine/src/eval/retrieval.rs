//! Recall@K, R-Precision and MAP@R (Musgrave et al. 2020), computed blockwise: one block of
//! queries against the whole gallery at a time, so memory stays O(block × gallery).

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Bool, Int, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use dml_kernels::runs_on_host;

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

/// Where each query's nearest gallery items are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// On the host for the CPU backend (the similarities are in host memory already); on a GPU
    /// backend dml's retrieval shader where wgpu can open the same GPU, else Burn's top-k there.
    #[default]
    Auto,
    /// Blocks of similarities computed on the device, each row's top-k selected on the host.
    Host,
    /// Blocks of similarities and Burn's top-k on the device.
    Device,
    /// dml's retrieval shader on the device's GPU (`dml_kernels::retrieval`): similarities and
    /// running top-k fused, no similarity matrix. Builds with the `wgpu` feature; panics where the
    /// device is not a GPU that wgpu can open.
    Shader,
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
    pub fn evaluate_split(&self, queries: Tensor<2>, query_labels: &[i64], gallery: Tensor<2>, gallery_labels: &[i64]) -> RetrievalMetrics {
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
        let relevant: Vec<usize> =
            query_labels.iter().map(|label| per_label.get(label).copied().unwrap_or(0).saturating_sub(leave_one_out as usize)).collect();

        let candidates = gallery_size - leave_one_out as usize;
        let max_k = self.ks.iter().copied().max().unwrap_or(1);
        let depth = relevant.iter().copied().max().unwrap_or(0).max(max_k).min(candidates);
        if depth == 0 {
            return RetrievalMetrics { skipped: relevant.len(), ..summarise(&self.ks, std::iter::empty()) };
        }

        let num_queries = query_labels.len();
        let on_host = match self.selection {
            Selection::Auto => runs_on_host(&gallery.device()),
            Selection::Host => true,
            Selection::Device | Selection::Shader => false,
        };
        let score = |neighbours: &[u32], q: usize| QueryResult::new(query_labels[q], relevant[q], neighbours, gallery_labels);
        if let Some(ranked) = self.rank_with_shader(on_host, &queries, &gallery, depth, leave_one_out) {
            let results: Vec<QueryResult> = ranked.iter().enumerate().map(|(q, n)| score(n, q)).collect();
            return summarise(&self.ks, results.iter());
        }
        if on_host && leave_one_out {
            let block = self.block_rows.unwrap_or(512);
            let ranked = rank_symmetric_on_host(&gallery, depth, block);
            let results: Vec<QueryResult> = ranked.iter().enumerate().map(|(q, n)| score(n, q)).collect();
            return summarise(&self.ks, results.iter());
        }
        // Host selection runs two blocks at a time (one per core on small machines), so blocks are
        // half the size there.
        let budget = if on_host { 1usize << 25 } else { 1usize << 26 };
        let block = self.block_rows.unwrap_or_else(|| (budget / gallery_size.max(1)).clamp(1, 4096));
        let blocks: Vec<std::ops::Range<usize>> =
            (0..num_queries).step_by(block).map(|start| start..(start + block).min(num_queries)).collect();
        let dim = queries.dims()[1];
        let gallery_t = gallery.transpose();
        let score_block = |rows: &std::ops::Range<usize>| -> Vec<QueryResult> {
            let mut sim = queries.clone().slice([rows.clone(), 0..dim]).matmul(gallery_t.clone());
            if leave_one_out {
                let own = self_mask(rows.start, rows.end, gallery_size, &sim.device());
                sim = sim.mask_fill(own, f32::NEG_INFINITY);
            }
            let ranked = if on_host { rank_on_host(sim, depth) } else { rank_on_device(sim, depth) };
            ranked.iter().zip(rows.clone()).map(|(neighbours, q)| score(neighbours, q)).collect()
        };
        let results: Vec<Vec<QueryResult>> =
            if on_host { blocks.par_iter().map(score_block).collect() } else { blocks.iter().map(score_block).collect() };
        summarise(&self.ks, results.iter().flatten())
    }
}

impl RetrievalConfig {
    /// Each query's `depth` nearest gallery rows from dml's retrieval shader, where the selection
    /// asks for it (or leaves the choice and the device is a GPU that wgpu can open); `None` where
    /// another path ranks. The unit vectors travel to the shader's own wgpu device once.
    #[cfg(all(feature = "wgpu", not(target_family = "wasm")))]
    fn rank_with_shader(
        &self,
        on_host: bool,
        queries: &Tensor<2>,
        gallery: &Tensor<2>,
        depth: usize,
        leave_one_out: bool,
    ) -> Option<Vec<Vec<u32>>> {
        use dml_kernels::retrieval::GpuRanker;
        let ranker = match self.selection {
            Selection::Host | Selection::Device => return None,
            Selection::Auto if on_host => return None,
            Selection::Auto => GpuRanker::for_device(&gallery.device())?.ok()?,
            Selection::Shader => match GpuRanker::for_device(&gallery.device()) {
                Some(Ok(ranker)) => ranker,
                Some(Err(e)) => panic!("the retrieval shader cannot run: {e}"),
                None => panic!("the retrieval shader needs a GPU device, not {:?}", gallery.device()),
            },
        };
        let dim = gallery.dims()[1];
        let values = |t: &Tensor<2>| t.clone().try_into_vec_as::<f32>().expect("f32 embeddings");
        let gallery_values = values(gallery);
        let query_values = if leave_one_out { None } else { Some(values(queries)) };
        let ranked = ranker.top_k_blocking(query_values.as_deref().unwrap_or(&gallery_values), &gallery_values, dim, depth, leave_one_out);
        match ranked {
            Ok(ranked) => Some(ranked),
            Err(e) if self.selection == Selection::Shader => panic!("the retrieval shader failed: {e}"),
            Err(e) => {
                eprintln!("warning: the retrieval shader failed ({e}); ranking with Burn's top-k instead");
                None
            }
        }
    }

    #[cfg(not(all(feature = "wgpu", not(target_family = "wasm"))))]
    fn rank_with_shader(&self, _: bool, _: &Tensor<2>, gallery: &Tensor<2>, _: usize, _: bool) -> Option<Vec<Vec<u32>>> {
        assert!(self.selection != Selection::Shader, "this build has no retrieval shader (the `wgpu` feature), {:?}", gallery.device());
        None
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
/// similarities already live in host memory, and a linear scan beats a full sort.
fn rank_on_host(sim: Tensor<2>, depth: usize) -> Vec<Vec<u32>> {
    let [_, cols] = sim.dims();
    let values: Vec<f32> = sim.try_into_vec_as::<f32>().expect("f32 similarities");
    values
        .par_chunks(cols)
        .map(|row| {
            let mut top = RowTop::new();
            top.offer(row, 0, None, depth);
            top.finish(depth)
        })
        .collect()
}

/// The best `depth` entries seen so far of one row, fed columns in any order. An entry enters
/// only if it ranks before the worst one kept at the last compaction, so one pass over a row
/// costs little more than a comparison per column.
struct RowTop {
    entries: Vec<(f32, u32)>,
    /// The worst entry kept at the last compaction: anything not ranked before it is dropped.
    worst: Option<(f32, u32)>,
}

impl RowTop {
    fn new() -> Self {
        Self { entries: Vec::new(), worst: None }
    }

    /// Offers `values[c]` as column `offset + c`, skipping column `skip`.
    fn offer(&mut self, values: &[f32], offset: u32, skip: Option<u32>, depth: usize) {
        let capacity = depth + depth / 2 + 16;
        let (mut worst_value, mut worst_index) = self.worst.unwrap_or((f32::NEG_INFINITY, u32::MAX));
        for (c, &v) in values.iter().enumerate() {
            let i = offset + c as u32;
            if v < worst_value || (v == worst_value && i >= worst_index) || Some(i) == skip {
                continue;
            }
            self.entries.push((v, i));
            if self.entries.len() >= capacity {
                self.entries.select_nth_unstable_by(depth - 1, by_rank);
                self.entries.truncate(depth);
                (worst_value, worst_index) = self.entries[depth - 1];
                self.worst = Some((worst_value, worst_index));
            }
        }
    }

    fn finish(mut self, depth: usize) -> Vec<u32> {
        if self.entries.len() > depth {
            self.entries.select_nth_unstable_by(depth - 1, by_rank);
            self.entries.truncate(depth);
        }
        self.entries.sort_unstable_by(by_rank);
        self.entries.into_iter().map(|(_, i)| i).collect()
    }
}

/// Leave-one-out ranking on the host using the symmetry of `S = X Xᵀ`: each block pair `(I, J)`
/// with `I ≤ J` is multiplied once and feeds the rows of `I` and, transposed, the rows of `J` —
/// half the multiply-adds of scoring every row against the whole gallery.
fn rank_symmetric_on_host(x: &Tensor<2>, depth: usize, block: usize) -> Vec<Vec<u32>> {
    let [n, dim] = x.dims();
    let block = block.clamp(1, n.max(1));
    let starts: Vec<usize> = (0..n).step_by(block).collect();
    let pairs: Vec<(usize, usize)> = (0..starts.len()).flat_map(|a| (a..starts.len()).map(move |b| (a, b))).collect();
    let range = |b: usize| starts[b]..(starts[b] + block).min(n);
    let rows: Vec<std::sync::Mutex<Vec<RowTop>>> =
        (0..starts.len()).map(|b| std::sync::Mutex::new(range(b).map(|_| RowTop::new()).collect())).collect();
    pairs.par_iter().for_each(|&(a, b)| {
        let (ra, rb) = (range(a), range(b));
        let (ha, hb) = (ra.len(), rb.len());
        let left = x.clone().slice([ra.clone(), 0..dim]);
        let right = x.clone().slice([rb.clone(), 0..dim]);
        let sim: Vec<f32> = left.matmul(right.transpose()).try_into_vec_as::<f32>().expect("f32 similarities");
        {
            let mut tops = rows[a].lock().expect("row block lock");
            for (r, top) in tops.iter_mut().enumerate() {
                let own = (a == b).then_some((ra.start + r) as u32);
                top.offer(&sim[r * hb..(r + 1) * hb], rb.start as u32, own, depth);
            }
        }
        if a != b {
            let mut column = vec![0.0f32; ha];
            let mut tops = rows[b].lock().expect("row block lock");
            for (r, top) in tops.iter_mut().enumerate() {
                for (k, v) in column.iter_mut().enumerate() {
                    *v = sim[k * hb + r];
                }
                top.offer(&column, ra.start as u32, None, depth);
            }
        }
    });
    rows.into_iter()
        .flat_map(|m| m.into_inner().expect("row block lock"))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|top| top.finish(depth))
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

/// The scores of one query; `None` for a query without a relevant gallery item.
struct QueryResult(Option<QueryScore>);

struct QueryScore {
    /// Rank (from 0) of the first relevant neighbour, if among those retrieved.
    first_hit: Option<usize>,
    average_precision: f64,
    r_precision: f64,
}

impl QueryResult {
    /// One query: its label, its number of relevant gallery items `r`, its ranked neighbours.
    fn new(label: i64, r: usize, neighbours: &[u32], gallery_labels: &[i64]) -> Self {
        if r == 0 {
            return QueryResult(None);
        }
        let relevant = |i: usize| gallery_labels[neighbours[i] as usize] == label;
        let first_hit = (0..neighbours.len()).find(|&i| relevant(i));
        let mut found = 0usize;
        let mut precision_sum = 0.0;
        for i in 0..r.min(neighbours.len()) {
            if relevant(i) {
                found += 1;
                precision_sum += found as f64 / (i + 1) as f64;
            }
        }
        QueryResult(Some(QueryScore { first_hit, average_precision: precision_sum / r as f64, r_precision: found as f64 / r as f64 }))
    }
}

/// Means over the evaluated queries, summed in query order (reproducible to the last bit).
fn summarise<'a>(ks: &[usize], results: impl Iterator<Item = &'a QueryResult>) -> RetrievalMetrics {
    let mut hits = vec![0usize; ks.len()];
    let (mut ap, mut rp, mut queries, mut skipped) = (0.0, 0.0, 0usize, 0usize);
    for result in results {
        let Some(score) = &result.0 else {
            skipped += 1;
            continue;
        };
        queries += 1;
        ap += score.average_precision;
        rp += score.r_precision;
        for (k, h) in ks.iter().zip(hits.iter_mut()) {
            if score.first_hit.is_some_and(|i| i < *k) {
                *h += 1;
            }
        }
    }
    let n = queries.max(1) as f64;
    RetrievalMetrics {
        recall_at_k: ks.iter().zip(&hits).map(|(&k, &h)| (k, h as f64 / n)).collect(),
        map_at_r: ap / n,
        r_precision: rp / n,
        queries,
        skipped,
    }
}
