//! 2-D convolution (NCHW, f32, one group) on the host as im2col + GEMM, forward and backward,
//! for every geometry (3 × 3 convolutions that keep the image size usually take
//! [`super::winograd`] instead: [`super::forward`] chooses).
//!
//! Burn's CPU backend differentiates convolutions with generic fallbacks (a transposed
//! convolution for the input gradient, a convolution over the batch axis for the weight
//! gradient) that cost several times the forward pass. Here all three passes are the same three
//! GEMMs per image over one im2col buffer, images spread over threads in fixed chunks so the
//! summed weight gradient is the same in every run.

use std::mem::MaybeUninit;
use std::ops::Range;

use super::geometry::ConvGeometry;
use super::gradients::{chunk_len, chunked_gradients};
use crate::common::gemm::{lane_sum, matmul, matmul_uninit};
use crate::common::parallel::{par_written, with_scratch, zeroed};

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

/// [`super::forward`] by im2col + GEMM, whatever the geometry.
pub fn im2col_forward(g: &ConvGeometry, x: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    forward_in_blocks(g, g.rows_per_block(), x, weight, bias)
}

/// [`im2col_forward`] with the im2col matrix built `rows_per_block` output rows at a time (1 to all).
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

/// [`super::backward`] by im2col + GEMM, whatever the geometry.
pub fn im2col_backward(
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    gy: &[f32],
    want_input: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    backward_in_blocks(g, g.rows_per_block(), x, weight, gy, want_input)
}

/// [`im2col_backward`] with the im2col matrices built `rows_per_block` output rows at a time.
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
mod tests {
    use super::super::geometry::COL_BLOCK_VALUES;
    use super::super::reference::reference;
    use super::*;
    use crate::common::test_values as values;

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
