//! Output buffers filled in parallel without a zeroing pass, and per-thread scratch space.

use std::mem::MaybeUninit;

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
