//! 2-D convolution (NCHW, f32, one group) on the host as im2col + GEMM, forward and backward;
//! 3 × 3 convolutions that keep the image size go to [`super::winograd`].
//!
//! Burn's CPU backend differentiates convolutions with generic fallbacks (a transposed
//! convolution for the input gradient, a convolution over the batch axis for the weight
//! gradient) that cost several times the forward pass. Here all three passes are the same three
//! GEMMs per image over one im2col buffer, images spread over threads in fixed chunks so the
//! summed weight gradient is the same in every run.

use rayon::prelude::*;

use std::mem::MaybeUninit;
use std::ops::Range;

use super::{par_written, winograd, with_scratch, zeroed};

/// The largest im2col matrix built whole (4 MB); larger ones are built in blocks of output rows
/// (see [`ConvGeometry::rows_per_block`]).
const WHOLE_COL_VALUES: usize = 1 << 20;

/// The size an im2col block aims at: 512 KB, a core's L2 cache on the test machine.
const COL_BLOCK_VALUES: usize = 1 << 17;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvGeometry {
    /// A square image and kernel, the same stride and padding along both axes.
    pub fn square(
        batch: usize,
        channels_in: usize,
        size: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        ConvGeometry {
            batch,
            channels_in,
            height: size,
            width: size,
            channels_out,
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
        }
    }

    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn patch(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }

    fn image_len(&self) -> usize {
        self.channels_in * self.height * self.width
    }

    /// A 1×1, stride-1, unpadded convolution reads the image itself as its im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Stride 1 and an output as wide as the input (2·padding = kernel − 1 across): then an
    /// im2col row, over its valid output rows, is one contiguous run of the input plane shifted
    /// by a constant, apart from the padded columns at the row ends.
    fn keeps_width(&self) -> bool {
        self.stride == [1, 1] && self.out_width() == self.width
    }

    /// Output rows per im2col block. The whole image's im2col matrix of ResNet's first layers
    /// (7 MB for the 64-channel 3 × 3 convolutions at 56 × 56, 7 MB for the 7 × 7 stem) outgrows
    /// the cache between being written and being packed by the GEMM; in blocks of about 512 KB
    /// those layers ran 15–40 % faster on the test machine. Smaller matrices stay whole: at
    /// 28 × 28 (3.6 MB) blocks of a few rows made the weight gradient's GEMM, whose inner
    /// dimension is the block, slower than the cache misses they saved. A pointwise convolution
    /// reads the image itself, whole.
    fn rows_per_block(&self) -> usize {
        let oh = self.out_height();
        if self.is_pointwise() || self.patch() * self.positions() <= WHOLE_COL_VALUES {
            return oh.max(1);
        }
        (COL_BLOCK_VALUES / (self.patch() * self.out_width()).max(1)).clamp(1, oh.max(1))
    }

    /// The output rows whose kernel row `i` reads inside the image, at stride 1.
    fn valid_rows(&self, i: usize) -> (usize, usize) {
        columns_inside(self.height, 1, self.padding[0], self.out_height(), i)
    }

    /// For each output row `oy` and kernel row `i`, the input row (if inside the image).
    fn source_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.stride[0] + i).checked_sub(self.padding[0]).filter(|&y| y < self.height)
    }

    /// The range of output columns whose kernel column `j` lands inside the image.
    fn valid_columns(&self, j: usize) -> (usize, usize) {
        columns_inside(self.width, self.stride[1], self.padding[1], self.out_width(), j)
    }
}

/// Of `out_width` output columns at stride `stride` with `padding` zeros left of the image, the
/// range whose kernel column `j` reads inside an image `width` wide.
pub(super) fn columns_inside(width: usize, stride: usize, padding: usize, out_width: usize, j: usize) -> (usize, usize) {
    // ox * stride + j - padding ∈ [0, width)
    let first = if j >= padding { 0 } else { (padding - j).div_ceil(stride) };
    let last = if width + padding > j { ((width + padding - j - 1) / stride + 1).min(out_width) } else { 0 };
    (first.min(last), last)
}

/// `col[(c, i, j), (oy, ox)] = image[c, oy·s + i − p, ox·s + j − p]`, zero outside, for the
/// output rows `oy` in `rows`.
fn im2col(g: &ConvGeometry, image: &[f32], rows: Range<usize>, col: &mut [f32]) {
    if g.keeps_width() {
        return im2col_keeping_width(g, image, rows, col);
    }
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let ow = g.out_width();
    let block = rows.len() * ow;
    let plane = g.height * g.width;
    for c in 0..g.channels_in {
        for i in 0..kh {
            for j in 0..kw {
                let row = ((c * kh + i) * kw + j) * block;
                let (first, last) = g.valid_columns(j);
                for (r, oy) in rows.clone().enumerate() {
                    let out = &mut col[row + r * ow..row + (r + 1) * ow];
                    match g.source_row(oy, i) {
                        None => out.fill(0.0),
                        Some(y) => {
                            out[..first].fill(0.0);
                            out[last..].fill(0.0);
                            let src = &image[c * plane + y * g.width..c * plane + (y + 1) * g.width];
                            let x0 = first * g.stride[1] + j - g.padding[1];
                            if g.stride[1] == 1 {
                                out[first..last].copy_from_slice(&src[x0..x0 + (last - first)]);
                            } else {
                                for (k, o) in out[first..last].iter_mut().enumerate() {
                                    *o = src[x0 + k * g.stride[1]];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// For a width-keeping convolution, kernel offset `(i, j)` and a block of output rows: the part of
/// the block's im2col row over its valid output rows (`run`), the part of that run which reads
/// inside the plane (`inside`, relative to `run`; the few values outside it are padded columns),
/// and where in the plane `inside` starts.
struct ContiguousRun {
    run: std::ops::Range<usize>,
    inside: std::ops::Range<usize>,
    from: usize,
}

fn contiguous_run(g: &ConvGeometry, i: usize, j: usize, rows: &Range<usize>) -> ContiguousRun {
    let (valid0, valid1) = g.valid_rows(i);
    let oy0 = valid0.max(rows.start);
    let oy1 = valid1.min(rows.end).max(oy0);
    if oy0 == oy1 {
        return ContiguousRun { run: 0..0, inside: 0..0, from: 0 };
    }
    let w = g.width as isize;
    // run[k] = plane[k + shift]
    let shift = (oy0 as isize + i as isize - g.padding[0] as isize) * w + j as isize - g.padding[1] as isize;
    let len = (oy1 - oy0) * g.width;
    let plane = (g.height * g.width) as isize;
    let lo = (-shift).clamp(0, len as isize) as usize;
    let hi = (plane - shift).clamp(lo as isize, len as isize) as usize;
    let start = (oy0 - rows.start) * g.width;
    ContiguousRun { run: start..start + len, inside: lo..hi, from: (lo as isize + shift) as usize }
}

/// Zeroes the columns outside `first..last` of the `w`-wide rows of `run`, column by column: one
/// or two values per row, which row-wise `fill`s would each send through a `memset` call.
fn zero_columns(run: &mut [f32], w: usize, first: usize, last: usize) {
    for q in (0..first).chain(last..w) {
        for v in run.iter_mut().skip(q).step_by(w) {
            *v = 0.0;
        }
    }
}

/// [`im2col`] for a width-keeping convolution: one copy per im2col row instead of one per
/// output row, then the padded columns zeroed.
fn im2col_keeping_width(g: &ConvGeometry, image: &[f32], rows: Range<usize>, col: &mut [f32]) {
    let (kh, kw, w) = (g.kernel[0], g.kernel[1], g.width);
    let block = rows.len() * w;
    let plane = g.height * w;
    for c in 0..g.channels_in {
        let src = &image[c * plane..(c + 1) * plane];
        for i in 0..kh {
            for j in 0..kw {
                let out = &mut col[((c * kh + i) * kw + j) * block..][..block];
                let ContiguousRun { run, inside, from } = contiguous_run(g, i, j, &rows);
                let (first, last) = g.valid_columns(j);
                out[..run.start].fill(0.0);
                out[run.end..].fill(0.0);
                let run = &mut out[run];
                run[..inside.start].fill(0.0);
                run[inside.end..].fill(0.0);
                run[inside.clone()].copy_from_slice(&src[from..from + inside.len()]);
                zero_columns(run, w, first, last);
            }
        }
    }
}

/// The adjoint of [`im2col`] over the output rows `rows`: adds each column entry onto the pixel
/// it was read from, in `image` as it comes (zeros for the plain adjoint). `col` is scratch: the
/// width-keeping path zeroes its padded-column entries on the way.
fn col2im(g: &ConvGeometry, col: &mut [f32], rows: Range<usize>, image: &mut [f32]) {
    if g.keeps_width() {
        return col2im_keeping_width(g, col, rows, image);
    }
    let (kh, kw) = (g.kernel[0], g.kernel[1]);
    let ow = g.out_width();
    let block = rows.len() * ow;
    let plane = g.height * g.width;
    for c in 0..g.channels_in {
        for i in 0..kh {
            for j in 0..kw {
                let row = ((c * kh + i) * kw + j) * block;
                let (first, last) = g.valid_columns(j);
                for (r, oy) in rows.clone().enumerate() {
                    let Some(y) = g.source_row(oy, i) else { continue };
                    let src = &col[row + r * ow + first..row + r * ow + last];
                    let dst = &mut image[c * plane + y * g.width..c * plane + (y + 1) * g.width];
                    let x0 = first * g.stride[1] + j - g.padding[1];
                    if g.stride[1] == 1 {
                        for (d, s) in dst[x0..x0 + src.len()].iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        for (k, s) in src.iter().enumerate() {
                            dst[x0 + k * g.stride[1]] += s;
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im`] for a width-keeping convolution: the padded columns' entries zeroed, then each
/// im2col row added onto its plane as one shifted run. Every pixel receives its terms in the
/// same order as in the general path, plus zeros.
fn col2im_keeping_width(g: &ConvGeometry, col: &mut [f32], rows: Range<usize>, image: &mut [f32]) {
    let (kh, kw, w) = (g.kernel[0], g.kernel[1], g.width);
    let block = rows.len() * w;
    let plane = g.height * w;
    for c in 0..g.channels_in {
        let dst = &mut image[c * plane..(c + 1) * plane];
        for i in 0..kh {
            for j in 0..kw {
                let row = &mut col[((c * kh + i) * kw + j) * block..][..block];
                let ContiguousRun { run, inside, from } = contiguous_run(g, i, j, &rows);
                let (first, last) = g.valid_columns(j);
                let run = &mut row[run];
                zero_columns(run, w, first, last);
                for (d, s) in dst[from..from + inside.len()].iter_mut().zip(&run[inside]) {
                    *d += s;
                }
            }
        }
    }
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, row-major with `dst`'s rows `dst_rs` apart, and
/// explicit strides for transposes.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: `dst` holds the m rows of n values, initialised.
    unsafe { gemm_into(m, n, k, dst.as_mut_ptr(), dst_rs, accumulate, lhs, lhs_strides, rhs, rhs_strides) }
}

/// [`matmul`] without accumulation into memory not yet written, whose rows lie `dst_rs` apart:
/// afterwards the m×n values `dst[r·dst_rs + c]` are written (the others untouched).
#[allow(clippy::too_many_arguments)]
fn matmul_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: the assert keeps the m rows of n values inside `dst`; without accumulation gemm only
    // writes them (its `alpha` is zero: the old values are never read).
    unsafe { gemm_into(m, n, k, dst.as_mut_ptr().cast(), dst_rs, false, lhs, lhs_strides, rhs, rhs_strides) }
}

/// # Safety
/// `dst` must be valid for writes of the m×n values `dst[r·dst_rs + c]`, and for reads of them if
/// `accumulate`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index the strides reach inside the slices; the caller
    // vouches for `dst`.
    unsafe {
        super::gemm::gemm_f32(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
        );
    }
}

/// Σ values in eight interleaved f32 lanes, then across: a dependent chain of adds would wait
/// on each add's latency.
pub(super) fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Images per task: the batch split into as many contiguous chunks as there are threads.
fn chunk_len(batch: usize) -> usize {
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
pub(super) unsafe fn chunked_gradients(
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

/// The output rows `0..out_height` in blocks of `rows` (the last one shorter), in order.
fn row_blocks(out_height: usize, rows: usize) -> impl Iterator<Item = Range<usize>> {
    (0..out_height.div_ceil(rows)).map(move |b| b * rows..((b + 1) * rows).min(out_height))
}

/// The im2col matrix of the output rows `rows` of `image` and the distance between its rows: a
/// pointwise convolution's is the image itself, its rows `positions` apart; others are built in
/// `col`.
fn block_columns<'a>(g: &ConvGeometry, image: &'a [f32], rows: Range<usize>, col: &'a mut [f32]) -> (&'a [f32], usize) {
    let ow = g.out_width();
    if g.is_pointwise() {
        return (&image[rows.start * ow..], g.positions());
    }
    let block = rows.len() * ow;
    im2col(g, image, rows, &mut col[..g.patch() * block]);
    (&col[..g.patch() * block], block)
}

/// `y = conv(x, weight) + bias`; `x` is `[n, ci, h, w]`, `weight` `[co, ci, kh, kw]`. The
/// convolutions that [`winograd::applies`] to run by Winograd's algorithm, the others by im2col.
pub fn forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    if winograd::applies(g) {
        return winograd::forward(g, x, weight, bias);
    }
    im2col_forward(g, x, weight, bias)
}

/// [`forward`] by im2col + GEMM, whatever the geometry.
pub fn im2col_forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    forward_in_blocks(g, g.rows_per_block(), x, weight, bias)
}

/// [`forward`] with the im2col matrix built `rows_per_block` output rows at a time (1 to all).
fn forward_in_blocks(g: &ConvGeometry, rows_per_block: usize, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (patch, positions, ow) = (g.patch(), g.positions(), g.out_width());
    let out_len = g.channels_out * positions;
    let col_len = if g.is_pointwise() { 0 } else { patch * rows_per_block * ow };
    let fill = |n: usize, y_img: &mut [MaybeUninit<f32>]| {
        let image = &x[n * g.image_len()..][..g.image_len()];
        with_scratch([col_len, 0], |col, _| {
            for rows in row_blocks(g.out_height(), rows_per_block) {
                let (start, block) = (rows.start * ow, rows.len() * ow);
                let (col, col_rs) = block_columns(g, image, rows, col);
                // y[:, block] (co × block) = W (co × patch) · col (patch × block)
                matmul_uninit(g.channels_out, block, patch, &mut y_img[start..], positions, weight, (patch, 1), col, (col_rs, 1));
            }
        });
        // SAFETY: the row blocks cover every output position of every channel.
        let y_img = unsafe { &mut *(y_img as *mut [MaybeUninit<f32>] as *mut [f32]) };
        if let Some(bias) = bias {
            for (row, b) in y_img.chunks_mut(positions).zip(bias) {
                row.iter_mut().for_each(|v| *v += b);
            }
        }
    };
    // SAFETY: `fill` writes each image's whole output.
    unsafe { par_written(g.batch * out_len, out_len, fill) }.0
}

/// Gradients of [`forward`] from the output gradient `gy` (`[n, co, oh, ow]`):
/// `(input gradient if wanted, weight gradient, bias gradient)`.
pub fn backward(g: &ConvGeometry, x: &[f32], weight: &[f32], gy: &[f32], want_input: bool) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    if winograd::applies(g) {
        return winograd::backward(g, x, weight, gy, want_input, chunk_len(g.batch));
    }
    im2col_backward(g, x, weight, gy, want_input)
}

/// [`backward`] by im2col + GEMM, whatever the geometry.
pub fn im2col_backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    gy: &[f32],
    want_input: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    backward_in_blocks(g, g.rows_per_block(), x, weight, gy, want_input)
}

/// [`backward`] with the im2col matrices built `rows_per_block` output rows at a time.
fn backward_in_blocks(
    g: &ConvGeometry,
    rows_per_block: usize,
    x: &[f32],
    weight: &[f32],
    gy: &[f32],
    want_input: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (patch, positions, ow) = (g.patch(), g.positions(), g.out_width());
    let out_len = g.channels_out * positions;
    let chunk = chunk_len(g.batch);
    let col_len = if g.is_pointwise() { 0 } else { patch * rows_per_block * ow };
    let gcol_len = if want_input { col_len } else { 0 };
    // Fixed chunks of images, each with its own partial weight and bias gradients, summed in
    // chunk order: the same result in every run.
    let chunk_grads = |c: usize, gx_chunk: Option<&mut [MaybeUninit<f32>]>| {
        let mut gw = vec![0.0f32; g.channels_out * patch];
        let mut gb = vec![0.0f32; g.channels_out];
        let images = (g.batch - c * chunk).min(chunk);
        with_scratch([col_len, gcol_len], |col, gcol| {
            let mut gx_chunk = gx_chunk;
            for k in 0..images {
                let n = c * chunk + k;
                let image = &x[n * g.image_len()..][..g.image_len()];
                let gy_img = &gy[n * out_len..][..out_len];
                let mut gx_img = gx_chunk.as_deref_mut().map(|gx_chunk| zeroed(&mut gx_chunk[k * g.image_len()..][..g.image_len()]));
                for rows in row_blocks(g.out_height(), rows_per_block) {
                    let (start, block) = (rows.start * ow, rows.len() * ow);
                    let (col, col_rs) = block_columns(g, image, rows.clone(), col);
                    // gW (co × patch) += gy[:, block] (co × block) · colᵀ (block × patch)
                    matmul(
                        g.channels_out,
                        patch,
                        block,
                        &mut gw,
                        patch,
                        k > 0 || start > 0,
                        &gy_img[start..],
                        (positions, 1),
                        col,
                        (1, col_rs),
                    );
                    let Some(gx_img) = gx_img.as_deref_mut() else { continue };
                    // gcol (patch × block) = Wᵀ (patch × co) · gy[:, block] (co × block)
                    if g.is_pointwise() {
                        matmul(
                            patch,
                            block,
                            g.channels_out,
                            &mut gx_img[start..],
                            positions,
                            false,
                            weight,
                            (1, patch),
                            &gy_img[start..],
                            (positions, 1),
                        );
                    } else {
                        let gcol = &mut gcol[..patch * block];
                        matmul(patch, block, g.channels_out, gcol, block, false, weight, (1, patch), &gy_img[start..], (positions, 1));
                        col2im(g, gcol, rows, gx_img);
                    }
                }
                for (b, row) in gb.iter_mut().zip(gy_img.chunks(positions)) {
                    *b += lane_sum(row);
                }
            }
        });
        (gw, gb)
    };
    // SAFETY: `chunk_grads` zeroes (then adds onto) every image of its chunk.
    unsafe { chunked_gradients(g, chunk, want_input, (g.channels_out * patch, g.channels_out), chunk_grads) }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// Direct convolution in f64, the definition itself.
    pub(in crate::kernels) fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let (oh, ow) = (g.out_height(), g.out_width());
        let mut y = vec![0.0f64; g.batch * g.channels_out * oh * ow];
        for n in 0..g.batch {
            for o in 0..g.channels_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = b[o] as f64;
                        for c in 0..g.channels_in {
                            for i in 0..g.kernel[0] {
                                for j in 0..g.kernel[1] {
                                    let y_in = (oy * g.stride[0] + i) as isize - g.padding[0] as isize;
                                    let x_in = (ox * g.stride[1] + j) as isize - g.padding[1] as isize;
                                    if y_in < 0 || x_in < 0 || y_in >= g.height as isize || x_in >= g.width as isize {
                                        continue;
                                    }
                                    let xv = x[((n * g.channels_in + c) * g.height + y_in as usize) * g.width + x_in as usize];
                                    let wv = w[((o * g.channels_in + c) * g.kernel[0] + i) * g.kernel[1] + j];
                                    s += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * g.channels_out + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |batch, ci, h, w, co, k: [usize; 2], s: [usize; 2], p: [usize; 2]| ConvGeometry {
            batch,
            channels_in: ci,
            height: h,
            width: w,
            channels_out: co,
            kernel: k,
            stride: s,
            padding: p,
        };
        vec![
            g(3, 2, 7, 6, 4, [3, 3], [1, 1], [1, 1]),
            g(2, 3, 9, 8, 5, [3, 3], [2, 2], [1, 1]),
            g(2, 3, 11, 10, 2, [7, 7], [2, 2], [3, 3]),
            g(5, 4, 5, 5, 3, [1, 1], [1, 1], [0, 0]),
            g(2, 4, 6, 7, 3, [1, 1], [2, 2], [0, 0]),
            g(1, 2, 5, 9, 2, [3, 2], [1, 2], [0, 1]),
            g(2, 1, 4, 4, 2, [5, 5], [1, 1], [2, 2]),
            // Width-keeping shapes (the contiguous-run path): a column kernel, rows that shrink,
            // a one-row image, a one-column image.
            g(2, 3, 6, 5, 2, [3, 1], [1, 1], [1, 0]),
            g(2, 2, 5, 6, 3, [3, 3], [1, 1], [0, 1]),
            g(1, 2, 1, 7, 2, [1, 3], [1, 1], [0, 1]),
            g(2, 2, 3, 1, 2, [3, 3], [1, 1], [1, 1]),
        ]
    }

    /// Every geometry with its im2col matrix built whole and in blocks of every height.
    #[test]
    fn forward_matches_the_definition() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.image_len(), 1 + t as u64);
            let w = values(g.channels_out * g.patch(), 100 + t as u64);
            let b = values(g.channels_out, 200 + t as u64);
            let r = reference(&g, &x, &w, &b);
            for rows in 1..=g.out_height() {
                let y = forward_in_blocks(&g, rows, &x, &w, Some(&b));
                assert_eq!(y.len(), r.len(), "{g:?}");
                for (a, e) in y.iter().zip(&r) {
                    assert!((*a as f64 - e).abs() < 1e-5, "{g:?} in blocks of {rows} rows: {a} vs {e}");
                }
            }
            assert_eq!(
                im2col_forward(&g, &x, &w, Some(&b)),
                forward_in_blocks(&g, g.out_height(), &x, &w, Some(&b)),
                "small images are built whole"
            );
        }
    }

    /// Gradients as the adjoint identity: for random u, ⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩ in each argument, with
    /// J·v from the (linear) reference convolution.
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (t, g) in geometries().into_iter().enumerate() {
            let x = values(g.batch * g.image_len(), 1 + t as u64);
            let w = values(g.channels_out * g.patch(), 100 + t as u64);
            let u = values(g.batch * g.channels_out * g.positions(), 300 + t as u64);
            let zeros = vec![0.0f32; g.channels_out];
            let dot = |a: &[f64], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * *q as f64).sum::<f64>();
            let vx = values(x.len(), 400 + t as u64);
            let vw = values(w.len(), 500 + t as u64);
            // ⟨u, conv(vx, w)⟩ and ⟨u, conv(x, vw)⟩: conv is linear in x and in w.
            let input_lhs = dot(&reference(&g, &vx, &w, &zeros), &u);
            let weight_lhs = dot(&reference(&g, &x, &vw, &zeros), &u);
            for rows in 1..=g.out_height() {
                let (gx, gw, gb) = backward_in_blocks(&g, rows, &x, &w, &u, true);
                let gx = gx.unwrap();
                let rhs: f64 = gx.iter().zip(&vx).map(|(a, b)| *a as f64 * *b as f64).sum();
                assert!(
                    (input_lhs - rhs).abs() < 1e-4 * (1.0 + input_lhs.abs()),
                    "{g:?}, blocks of {rows} rows, input: {input_lhs} vs {rhs}"
                );
                let rhs: f64 = gw.iter().zip(&vw).map(|(a, b)| *a as f64 * *b as f64).sum();
                assert!(
                    (weight_lhs - rhs).abs() < 1e-4 * (1.0 + weight_lhs.abs()),
                    "{g:?}, blocks of {rows} rows, weight: {weight_lhs} vs {rhs}"
                );
                // Bias: the sum of the output gradient over batch and positions.
                for (o, got) in gb.iter().enumerate() {
                    let expected: f64 = (0..g.batch)
                        .flat_map(|n| {
                            let start = (n * g.channels_out + o) * g.positions();
                            u[start..start + g.positions()].iter().map(|v| *v as f64)
                        })
                        .sum();
                    assert!((*got as f64 - expected).abs() < 1e-4, "{g:?} bias");
                }
                let (none, gw2, _) = backward_in_blocks(&g, rows, &x, &w, &u, false);
                assert!(none.is_none());
                assert_eq!(gw, gw2, "the weight gradient does not depend on whether the input gradient is wanted");
            }
        }
    }

    /// The one policy choice: ResNet's 56 × 56 and 112 × 112 layers are built in blocks that fit
    /// a core's cache, its smaller layers and every layer of the default job's small CNN whole.
    #[test]
    fn only_large_im2col_matrices_are_built_in_blocks() {
        let g = |ci, size, co, k, stride, pad| ConvGeometry::square(1, ci, size, co, k, stride, pad);
        let resnet_56 = g(64, 56, 64, 3, 1, 1);
        assert_eq!(resnet_56.rows_per_block(), 4);
        assert!(resnet_56.patch() * resnet_56.rows_per_block() * resnet_56.out_width() <= COL_BLOCK_VALUES);
        assert_eq!(g(3, 224, 64, 7, 2, 3).rows_per_block(), 7);
        for whole in [
            g(128, 28, 128, 3, 1, 1),
            g(512, 7, 512, 3, 1, 1),
            g(64, 56, 64, 1, 1, 0),
            g(1, 28, 32, 3, 1, 1),
            g(32, 28, 32, 3, 1, 1),
            g(64, 14, 64, 3, 1, 1),
        ] {
            assert_eq!(whole.rows_per_block(), whole.out_height(), "{whole:?}");
        }
    }
}
