//! 2-D max pooling, NCHW f32 on the host: any window, stride and symmetric padding (padded
//! positions never win), floor or ceil output size as in PyTorch; the backward pass routes each
//! gradient to its window's first maximum.

use rayon::prelude::*;

use super::conv2d::columns_inside;
use super::par_filled;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// `batch × channels` planes.
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub window: [usize; 2],
    pub stride: [usize; 2],
    /// Rows above and below, columns left and right.
    pub padding: [usize; 2],
    /// Output size rounded up (PyTorch's `ceil_mode`): a last, partial window is kept when it
    /// starts inside the image or its leading padding.
    pub ceil_mode: bool,
}

impl PoolShape {
    /// Non-overlapping windows (stride = window), no padding, floor mode.
    pub fn tiled(planes: usize, height: usize, width: usize, window: [usize; 2]) -> Self {
        PoolShape { planes, height, width, window, stride: window, padding: [0, 0], ceil_mode: false }
    }

    pub fn out_height(&self) -> usize {
        out_size(self.height, self.window[0], self.stride[0], self.padding[0], self.ceil_mode)
    }

    pub fn out_width(&self) -> usize {
        out_size(self.width, self.window[1], self.stride[1], self.padding[1], self.ceil_mode)
    }

    fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// The input rows (or columns, `axis` 1) of output row (column) `o`'s window.
    fn span(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let size = [self.height, self.width][axis];
        let start = (o * self.stride[axis]).saturating_sub(self.padding[axis]);
        let end = (o * self.stride[axis] + self.window[axis]).saturating_sub(self.padding[axis]).min(size);
        start..end.max(start)
    }

    /// 2 × 2 windows at stride 2 over whole windows only: the vectorised path.
    fn is_tiled_2x2(&self) -> bool {
        self.window == [2, 2] && self.stride == [2, 2] && self.padding == [0, 0] && self.out_height() == self.height / 2 && self.out_width() == self.width / 2
    }
}

/// PyTorch's pooled size: windows of `window` at `stride` over `size` values padded by `padding`
/// on both sides; in ceil mode a last window that would start in the trailing padding is dropped.
fn out_size(size: usize, window: usize, stride: usize, padding: usize, ceil_mode: bool) -> usize {
    let padded = size + 2 * padding;
    if padded < window {
        return 0;
    }
    if !ceil_mode {
        return (padded - window) / stride + 1;
    }
    let out = (padded - window).div_ceil(stride) + 1;
    if (out - 1) * stride >= size + padding { out - 1 } else { out }
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
    y.par_chunks_mut(out_plane).zip(arg.par_chunks_mut(out_plane)).enumerate().for_each(|(p, (yp, ap))| {
        let xp = &x[p * plane..][..plane];
        if s.is_tiled_2x2() {
            pool_plane_2x2(xp, s.width, oh, ow, yp, ap);
            return;
        }
        // Window rows, then window columns, then the row's outputs: within each window the scan
        // order is row by row, left to right, and the outputs of a row advance together instead
        // of each running a chain of dependent compares through its window.
        for (oy, (yr, ar)) in yp.chunks_exact_mut(ow).zip(ap.chunks_exact_mut(ow)).enumerate() {
            let rows = s.span(0, oy);
            yr.fill(f32::NEG_INFINITY);
            for (a, columns) in ar.iter_mut().zip(&column_spans) {
                *a = (rows.start * s.width + columns.start) as u32;
            }
            for row in rows {
                for j in 0..s.window[1] {
                    let (first, last) = columns_inside(s.width, s.stride[1], s.padding[1], ow, j);
                    for ox in first..last {
                        let q = row * s.width + ox * s.stride[1] + j - s.padding[1];
                        let v = xp[q];
                        if replaces(v, yr[ox]) {
                            yr[ox] = v;
                            ar[ox] = q as u32;
                        }
                    }
                }
            }
        }
    });
    (y, arg)
}

/// 2×2 windows of one plane, the same scan order as the general loop (row by row, left to
/// right): eight outputs at a time with AVX2, the rest (and other CPUs) one by one.
fn pool_plane_2x2(xp: &[f32], width: usize, out_height: usize, out_width: usize, yp: &mut [f32], ap: &mut [u32]) {
    for oy in 0..out_height {
        let top = 2 * oy * width;
        let (r0, r1) = (&xp[top..top + 2 * out_width], &xp[top + width..top + width + 2 * out_width]);
        let (yr, ar) = (&mut yp[oy * out_width..][..out_width], &mut ap[oy * out_width..][..out_width]);
        #[cfg(target_arch = "x86_64")]
        let done = if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the only feature the function needs.
            unsafe { pool_row_2x2_avx2(r0, r1, top as u32, width as u32, yr, ar) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let done = 0;
        for ox in done..out_width {
            let (mut best, mut at) = (r0[2 * ox], top + 2 * ox);
            for (v, pos) in [(r0[2 * ox + 1], top + 2 * ox + 1), (r1[2 * ox], top + width + 2 * ox), (r1[2 * ox + 1], top + width + 2 * ox + 1)] {
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
    // [x0, x2, x4 … x14] and [x1, x3 … x15] from sixteen consecutive values.
    let split = |p: &[f32]| {
        // SAFETY: `p` holds sixteen f32; unaligned loads.
        let (lo, hi) = unsafe { (_mm256_loadu_ps(p.as_ptr()), _mm256_loadu_ps(p.as_ptr().add(8))) };
        let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi))));
        let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi))));
        (even, odd)
    };
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    for e in 0..eights {
        let (a, b) = split(&r0[16 * e..16 * e + 16]);
        let (c, d) = split(&r1[16 * e..16 * e + 16]);
        let first = _mm256_add_epi32(_mm256_set1_epi32((top + 16 * e as u32) as i32), lanes);
        let (mut best, mut at) = (a, first);
        for (v, offset) in [(b, 1), (c, width as i32), (d, width as i32 + 1)] {
            // v > best, or v is NaN and best is not (see `replaces`).
            let greater = _mm256_cmp_ps::<_CMP_GT_OQ>(v, best);
            let nan_first = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(best, best), _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            let take = _mm256_or_ps(greater, nan_first);
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
        let s = PoolShape::tiled(1, 4, 5, [2, 2]);
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
    /// padding 1): the maxima, their first positions, and gradients summed where they land.
    #[test]
    fn agrees_with_the_definition_on_ties_nans_and_odd_sizes() {
        let special = [f32::NAN, f32::NEG_INFINITY, f32::INFINITY];
        let tiled = |h, w, window| PoolShape::tiled(3, h, w, window);
        let pool = |h, w, window, stride, padding, ceil_mode| PoolShape { planes: 3, height: h, width: w, window, stride, padding, ceil_mode };
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
        ];
        for (t, s) in shapes.into_iter().enumerate() {
            let (planes, height, width) = (s.planes, s.height, s.width);
            let x: Vec<f32> = crate::kernels::test_values(planes * height * width, 7 + t as u64)
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
                        let window_positions = (0..s.window[0]).flat_map(|i| (0..s.window[1]).map(move |j| (i, j))).filter_map(|(i, j)| {
                            let row = (oy * s.stride[0] + i).checked_sub(s.padding[0]).filter(|&r| r < height)?;
                            let column = (ox * s.stride[1] + j).checked_sub(s.padding[1]).filter(|&c| c < width)?;
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

    /// Output sizes as PyTorch computes them, on the networks' own layers.
    #[test]
    fn output_sizes_follow_pytorch() {
        let size = |h, window, stride, padding, ceil_mode| PoolShape { planes: 1, height: h, width: h, window: [window; 2], stride: [stride; 2], padding: [padding; 2], ceil_mode }.out_height();
        // ResNet's stem pool: 3 × 3 / 2, padding 1.
        assert_eq!(size(112, 3, 2, 1, false), 56);
        assert_eq!(size(7, 3, 2, 1, false), 4);
        // BN-Inception's 3 × 3 / 2 in ceil mode: 112 → 56 → 28 → 14 → 7.
        assert_eq!([112, 56, 28, 14].map(|h| size(h, 3, 2, 0, true)), [56, 28, 14, 7]);
        assert_eq!(size(8, 3, 2, 0, false), 3);
        assert_eq!(size(8, 3, 2, 0, true), 4);
        // A last window that would start in the trailing padding is dropped: 5 + 2·1 padded, 2 / 2.
        assert_eq!(size(5, 2, 2, 1, true), 3);
        assert_eq!(size(5, 2, 2, 1, false), 3);
        assert_eq!(size(6, 2, 2, 1, true), 4);
        assert_eq!(size(1, 2, 2, 0, false), 0);
    }
}
