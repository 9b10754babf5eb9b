//! Hand-written kernels where Burn's generic operations are too slow.

pub mod avg_pool;
pub mod batch_norm;
pub mod conv2d;
pub mod depthwise;
mod gemm;
mod host_avg_pool;
mod host_batch_norm;
mod host_conv;
mod host_depthwise;
mod host_max_pool;
pub mod max_pool;
pub mod pooling;
mod simd;
pub mod winograd;

use std::mem::MaybeUninit;

pub use batch_norm::Clamp;
pub use host_avg_pool::{HostAvgPool, avg_pool, avg_pool2d as host_avg_pool2d};
pub use host_batch_norm::{HostBatchNorm, batch_norm_clamp, batch_stats, frozen_batch_norm_clamp};
pub use host_conv::{HostConv, conv2d as host_conv2d};
pub use host_depthwise::{HostDepthwise, depthwise_conv2d as host_depthwise_conv2d};
pub use host_max_pool::{HostMaxPool, max_pool, max_pool2d as host_max_pool2d};
pub use simd::{CPU_ISA_VARIABLE, CpuIsa, cpu_isa, cpu_isa_from_env, set_cpu_isa};

/// A `len`-long vector written in parallel, `chunk` values at a time, by `fill(index, chunk)`,
/// with no zeroing pass first: a multi-megabyte `vec![0.0; len]` costs a pass over memory on
/// the allocating thread alone, or, fresh from the kernel, page faults that a read-before-write
/// doubles with copy-on-write of the shared zero page. `fill` gets each chunk once, and
/// `chunk` values at a time ([`zeroed`] makes a part of it a zero-filled `&mut [f32]`).
/// Also returns `fill`'s results in chunk order.
///
/// # Safety
/// `fill` must write every element of each chunk it is given.
pub(crate) unsafe fn par_written<R: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) -> R + Sync + Send,
) -> (Vec<f32>, Vec<R>) {
    use rayon::prelude::*;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let results = out.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().map(|(i, piece)| fill(i, piece)).collect();
    // SAFETY: the chunks cover `0..len`, and the caller's `fill` wrote each of them.
    unsafe { out.set_len(len) };
    (out, results)
}

/// `piece` zero-filled, as plain floats.
pub(crate) fn zeroed(piece: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in piece.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was just written.
    unsafe { &mut *(piece as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A `len`-long vector filled in parallel, `chunk` values at a time, by `fill(index, chunk)`;
/// each chunk is zeroed just before `fill` sees it, while it is in cache.
pub(crate) fn par_filled(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync + Send) -> Vec<f32> {
    // SAFETY: `zeroed` writes the whole chunk.
    unsafe { par_written(len, chunk, |i, piece| fill(i, zeroed(piece))) }.0
}

/// Runs `f` on this thread's two scratch buffers, grown to at least `lens` values (contents
/// unspecified). The im2col matrices are rebuilt for every image; allocating and zeroing fresh
/// ones per call costs about as much as filling them.
pub(crate) fn with_scratch<R>(lens: [usize; 2], f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    use std::cell::RefCell;
    thread_local! {
        static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with(|cell| {
        let mut buffers = cell.borrow_mut();
        let (a, b) = &mut *buffers;
        for (buffer, &len) in [&mut *a, &mut *b].into_iter().zip(&lens) {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
        }
        f(&mut a[..lens[0]], &mut b[..lens[1]])
    })
}

/// Deterministic pseudo-random values in [−0.5, 0.5) for the kernels' unit tests (xorshift).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
