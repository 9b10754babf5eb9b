//! 2-D max pooling, NCHW f32 on the host: any window, stride and symmetric padding (padded
//! positions never win), floor or ceil output size as in PyTorch; the backward pass routes each
//! gradient to its window's first maximum.

use rayon::prelude::*;

use crate::common::parallel::par_filled;
use crate::common::pooling::PoolShape;

/// 2 × 2 windows at stride 2 over whole windows only: the vectorised path.
fn is_tiled_2x2(s: &PoolShape) -> bool {
    s.pooling.window == [2, 2]
        && s.pooling.stride == [2, 2]
        && s.pooling.padding == [0, 0]
        && s.out_height() == s.height / 2
        && s.out_width() == s.width / 2
}

/// Whether `v` replaces `best` as the window's maximum: larger, or the first NaN (a max that
/// propagates NaN). Ties keep the earlier position.
#[inline(always)]
fn replaces(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

/// The pooled planes and, for each output, the flat index of its maximum within its input plane.
pub fn forward(s: &PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (plane, out_plane) = (s.height * s.width, s.out_plane());
    let mut y = vec![0.0f32; s.planes * out_plane];
    let mut arg = vec![0u32; s.planes * out_plane];
    if out_plane == 0 {
        return (y, arg);
    }
    let (oh, ow) = (s.out_height(), s.out_width());
    let column_spans: Vec<_> = (0..ow).map(|ox| s.span(1, ox)).collect();
    let columns = s.window_columns();
    y.par_chunks_mut(out_plane).zip(arg.par_chunks_mut(out_plane)).enumerate().for_each(|(p, (yp, ap))| {
        let xp = &x[p * plane..][..plane];
        if is_tiled_2x2(s) {
            pool_plane_2x2(xp, s.width, oh, ow, yp, ap);
            return;
        }
        for (oy, (yr, ar)) in yp.chunks_exact_mut(ow).zip(ap.chunks_exact_mut(ow)).enumerate() {
            let rows = s.span(0, oy);
            yr.fill(f32::NEG_INFINITY);
            for (a, columns) in ar.iter_mut().zip(&column_spans) {
                *a = (rows.start * s.width + columns.start) as u32;
            }
            s.for_window_taps(oy, &columns, |start, first, last| {
                max_tap(xp, start, s.pooling.stride[1], &mut yr[first..last], &mut ar[first..last])
            });
        }
    });
    (y, arg)
}

/// Folds inputs `start`, `start + stride`, … of a plane into the running maxima `best` of as
/// many outputs and their positions `at`: eight outputs at a time with AVX2 at stride 1 or 2,
/// the rest (and other strides and CPUs) one by one, with the same outcome.
fn max_tap(xp: &[f32], start: usize, stride: usize, best: &mut [f32], at: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    let done = if (stride == 1 || stride == 2) && crate::common::simd::avx2_allowed() {
        // SAFETY: the CPU has AVX2, the only feature the function needs.
        unsafe { max_tap_avx2(xp, start, stride, best, at) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for k in done..best.len() {
        let q = start + k * stride;
        if replaces(xp[q], best[k]) {
            best[k] = xp[q];
            at[k] = q as u32;
        }
    }
}

/// [x0, x2, x4 … x14] and [x1, x3 … x15] of sixteen consecutive values `lo`, `hi`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn even_odd(lo: std::arch::x86_64::__m256, hi: std::arch::x86_64::__m256) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi))));
    let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi))));
    (even, odd)
}

/// Which lanes of `v` replace `best`: larger, or NaN where `best` is not (see `replaces`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn replacing(v: std::arch::x86_64::__m256, best: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
    let nan_first = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(best, best), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
    _mm256_or_ps(greater, nan_first)
}

/// [`max_tap`] at stride 1 or 2, eight outputs at a time while their inputs lie inside the
/// plane; returns how many outputs it folded.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn max_tap_avx2(xp: &[f32], start: usize, stride: usize, best: &mut [f32], at: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let lanes = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride as i32));
    let mut k = 0;
    while k + 8 <= best.len() && start + (k + 8) * stride <= xp.len() {
        let q = start + k * stride;
        // SAFETY: 8 · stride values from `q` lie inside `xp` (the loop's condition), eight
        // outputs from `k` inside `best` and `at`; unaligned loads and stores.
        unsafe {
            let v = if stride == 1 {
                _mm256_loadu_ps(xp.as_ptr().add(q))
            } else {
                even_odd(_mm256_loadu_ps(xp.as_ptr().add(q)), _mm256_loadu_ps(xp.as_ptr().add(q + 8))).0
            };
            let b = _mm256_loadu_ps(best.as_ptr().add(k));
            let a = _mm256_loadu_si256(at.as_ptr().add(k).cast());
            let take = replacing(v, b);
            let positions = _mm256_add_epi32(_mm256_set1_epi32(q as i32), lanes);
            _mm256_storeu_ps(best.as_mut_ptr().add(k), _mm256_blendv_ps(b, v, take));
            let a = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(positions), take));
            _mm256_storeu_si256(at.as_mut_ptr().add(k).cast(), a);
        }
        k += 8;
    }
    k
}

/// 2×2 windows of one plane, the same scan order as the general loop (row by row, left to
/// right): eight outputs at a time with AVX2, the rest (and other CPUs) one by one.
fn pool_plane_2x2(xp: &[f32], width: usize, out_height: usize, out_width: usize, yp: &mut [f32], ap: &mut [u32]) {
    for oy in 0..out_height {
        let top = 2 * oy * width;
        let (r0, r1) = (&xp[top..top + 2 * out_width], &xp[top + width..top + width + 2 * out_width]);
        let (yr, ar) = (&mut yp[oy * out_width..][..out_width], &mut ap[oy * out_width..][..out_width]);
        #[cfg(target_arch = "x86_64")]
        let done = if crate::common::simd::avx2_allowed() {
            // SAFETY: the CPU has AVX2, the only feature the function needs.
            unsafe { pool_row_2x2_avx2(r0, r1, top as u32, width as u32, yr, ar) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for ox in done..out_width {
            let (mut best, mut at) = (r0[2 * ox], top + 2 * ox);
            for (v, pos) in
                [(r0[2 * ox + 1], top + 2 * ox + 1), (r1[2 * ox], top + width + 2 * ox), (r1[2 * ox + 1], top + width + 2 * ox + 1)]
            {
                if replaces(v, best) {
                    best = v;
                    at = pos;
                }
            }
            yr[ox] = best;
            ar[ox] = at as u32;
        }
    }
}

/// One row of 2×2 windows over input rows `r0` and `r1` (which start at flat index `top` of a
/// plane `width` wide), eight outputs at a time; returns how many outputs it wrote.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pool_row_2x2_avx2(r0: &[f32], r1: &[f32], top: u32, width: u32, yr: &mut [f32], ar: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let eights = yr.len() / 8;
    let split = |p: &[f32]| {
        // SAFETY: `p` holds sixteen f32; unaligned loads.
        let (lo, hi) = unsafe { (_mm256_loadu_ps(p.as_ptr()), _mm256_loadu_ps(p.as_ptr().add(8))) };
        even_odd(lo, hi)
    };
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for e in 0..eights {
        let (a, b) = split(&r0[16 * e..16 * e + 16]);
        let (c, d) = split(&r1[16 * e..16 * e + 16]);
        let first = _mm256_add_epi32(_mm256_set1_epi32((top + 16 * e as u32) as i32), lanes);
        let (mut best, mut at) = (a, first);
        for (v, offset) in [(b, 1), (c, width as i32), (d, width as i32 + 1)] {
            let take = replacing(v, best);
            best = _mm256_blendv_ps(best, v, take);
            at = _mm256_castps_si256(_mm256_blendv_ps(
                _mm256_castsi256_ps(at),
                _mm256_castsi256_ps(_mm256_add_epi32(first, _mm256_set1_epi32(offset))),
                take,
            ));
        }
        // SAFETY: eight outputs from `8·e` are inside `yr` and `ar` (e < len / 8).
        unsafe {
            _mm256_storeu_ps(yr.as_mut_ptr().add(8 * e), best);
            _mm256_storeu_si256(ar.as_mut_ptr().add(8 * e).cast(), at);
        }
    }
    8 * eights
}

/// The input gradient: each output gradient added at its maximum's position.
pub fn backward(s: &PoolShape, arg: &[u32], gy: &[f32]) -> Vec<f32> {
    let (plane, out_plane) = (s.height * s.width, s.out_plane());
    par_filled(s.planes * plane, plane, |p, gp| {
        for (&a, &g) in arg[p * out_plane..][..out_plane].iter().zip(&gy[p * out_plane..][..out_plane]) {
            gp[a as usize] += g;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pooling::Pooling;

    #[test]
    fn pools_windows_and_routes_gradients_to_the_maxima() {
        // One 4×5 plane, 2×2 windows: the last column and nothing else is dropped (floor mode).
        #[rustfmt::skip]
        let x = [
            1.0, 5.0, 2.0, 2.0, 9.0,
            3.0, 4.0, 7.0, 1.0, 9.0,
            0.0, -1.0, 6.0, 6.0, 9.0,
            -2.0, -3.0, 6.0, 0.5, 9.0,
        ];
        let s = Pooling::tiled([2, 2]).over(1, 4, 5);
        let (y, arg) = forward(&s, &x);
        assert_eq!(y, vec![5.0, 7.0, 0.0, 6.0]);
        assert_eq!(arg, vec![1, 7, 10, 12]); // ties go to the first maximum
        let gx = backward(&s, &arg, &[1.0, 2.0, 3.0, 4.0]);
        let mut expected = vec![0.0; 20];
        expected[1] = 1.0;
        expected[7] = 2.0;
        expected[10] = 3.0;
        expected[12] = 4.0;
        assert_eq!(gx, expected);
    }

    /// Every pooling against a plain scan of the definition, on planes of coarse values (many
    /// ties) with NaNs and infinities: non-overlapping windows on odd sizes and rows of more than
    /// eight windows (the vector path), and overlapping, padded and ceil-mode windows (ResNet's
    /// 3 × 3 / 2 with padding 1, BN-Inception's 3 × 3 / 2 in ceil mode and 3 × 3 / 1 with
    /// padding 1), rows long enough for the vector path included: the maxima, their first
    /// positions, and gradients summed where they land.
    #[test]
    fn agrees_with_the_definition_on_ties_nans_and_odd_sizes() {
        let special = [f32::NAN, f32::NEG_INFINITY, f32::INFINITY];
        let tiled = |h, w, window| Pooling::tiled(window).over(3, h, w);
        let pool = |h, w, window, stride, padding, ceil_mode| Pooling { window, stride, padding, ceil_mode }.over(3, h, w);
        let shapes = [
            tiled(6, 8, [2, 2]),
            tiled(7, 9, [2, 2]),
            tiled(5, 5, [2, 2]),
            tiled(4, 34, [2, 2]),
            tiled(5, 33, [2, 2]),
            tiled(7, 8, [3, 3]),
            tiled(6, 7, [2, 3]),
            pool(9, 8, [3, 3], [2, 2], [1, 1], false),
            pool(9, 8, [3, 3], [2, 2], [0, 0], true),
            pool(10, 7, [3, 3], [2, 2], [1, 1], true),
            pool(6, 5, [3, 3], [1, 1], [1, 1], false),
            pool(5, 36, [2, 2], [2, 2], [0, 0], true),
            pool(7, 6, [3, 2], [1, 2], [1, 1], false),
            // Rows of eight outputs or more at stride 1 and 2 (the vector path of the taps).
            pool(6, 21, [3, 3], [1, 1], [1, 1], false),
            pool(9, 40, [3, 3], [2, 2], [1, 1], false),
            pool(8, 37, [3, 3], [2, 2], [0, 0], true),
        ];
        for (t, s) in shapes.into_iter().enumerate() {
            let (planes, height, width) = (s.planes, s.height, s.width);
            let x: Vec<f32> = crate::common::test_values(planes * height * width, 7 + t as u64)
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 11 == 3 { special[i % 3] } else { (v * 6.0).round() })
                .collect();
            let (y, arg) = forward(&s, &x);
            let (oh, ow) = (s.out_height(), s.out_width());
            for p in 0..planes {
                for oy in 0..oh {
                    for ox in 0..ow {
                        // Window offsets (i, j) in scan order, at padded coordinates, kept where inside the plane.
                        let window_positions =
                            (0..s.pooling.window[0]).flat_map(|i| (0..s.pooling.window[1]).map(move |j| (i, j))).filter_map(|(i, j)| {
                                let row = (oy * s.pooling.stride[0] + i).checked_sub(s.pooling.padding[0]).filter(|&r| r < height)?;
                                let column = (ox * s.pooling.stride[1] + j).checked_sub(s.pooling.padding[1]).filter(|&c| c < width)?;
                                Some(row * width + column)
                            });
                        let values: Vec<(usize, f32)> = window_positions.map(|q| (q, x[p * height * width + q])).collect();
                        assert!(!values.is_empty(), "{s:?}: window ({oy}, {ox}) lies in the padding");
                        let expected = values.iter().find(|v| v.1.is_nan()).copied().unwrap_or_else(|| {
                            let top = values.iter().map(|v| v.1).fold(f32::NEG_INFINITY, f32::max);
                            *values.iter().find(|v| v.1 == top).unwrap()
                        });
                        let o = (p * oh + oy) * ow + ox;
                        assert_eq!(arg[o] as usize, expected.0, "{s:?} plane {p} window ({oy}, {ox})");
                        assert!(y[o] == expected.1 || (y[o].is_nan() && expected.1.is_nan()), "{s:?}: {} vs {}", y[o], expected.1);
                    }
                }
            }
            let gy: Vec<f32> = (0..y.len()).map(|i| i as f32 + 1.0).collect();
            let gx = backward(&s, &arg, &gy);
            let mut expected = vec![0.0f32; x.len()];
            for (o, &a) in arg.iter().enumerate() {
                expected[o / (oh * ow) * height * width + a as usize] += gy[o];
            }
            assert_eq!(gx, expected, "{s:?}");
        }
    }
}
