//! The backward pass of both convolution kernels over the batch in fixed chunks, so that the
//! summed weight gradient is the same in every run.

use rayon::prelude::*;

use std::mem::MaybeUninit;

use super::geometry::ConvGeometry;
use crate::common::parallel::par_written;

/// Images per task: the batch split into as many contiguous chunks as there are threads.
pub(crate) fn chunk_len(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// The backward pass over the batch in fixed chunks of `chunk` images, in parallel:
/// `chunk_grads(c, gx)` returns chunk `c`'s partial weight-side and bias gradients and, given the
/// chunk's part of the input gradient, writes it. The partials are summed in chunk order, so the
/// result is the same in every run; `sizes` are their lengths (the sums of an empty batch).
/// Returns `(input gradient if wanted, weight-side sum, bias sum)`.
///
/// # Safety
/// `chunk_grads` must write every value of the input-gradient chunk it is given.
pub(crate) unsafe fn chunked_gradients(
    g: &ConvGeometry,
    chunk: usize,
    want_input: bool,
    sizes: (usize, usize),
    chunk_grads: impl Fn(usize, Option<&mut [MaybeUninit<f32>]>) -> (Vec<f32>, Vec<f32>) + Sync + Send,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (gx, partials) = if want_input {
        // SAFETY: the caller vouches that `chunk_grads` writes its whole chunk.
        let (gx, partials) =
            unsafe { par_written(g.batch * g.image_len(), chunk * g.image_len(), |c, gx_chunk| chunk_grads(c, Some(gx_chunk))) };
        (Some(gx), partials)
    } else {
        (None, (0..g.batch.div_ceil(chunk)).into_par_iter().map(|c| chunk_grads(c, None)).collect())
    };
    let mut parts = partials.into_iter();
    let (mut gw, mut gb) = parts.next().unwrap_or_else(|| (vec![0.0; sizes.0], vec![0.0; sizes.1]));
    for (w, b) in parts {
        gw.iter_mut().zip(&w).for_each(|(a, v)| *a += v);
        gb.iter_mut().zip(&b).for_each(|(a, v)| *a += v);
    }
    (gx, gw, gb)
}
