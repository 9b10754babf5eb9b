//! Depthwise 2-D convolution (NCHW, f32, one filter per channel) on the host, forward and
//! backward.
//!
//! Burn's CPU backend runs a grouped convolution as one small convolution per group and
//! differentiates it through a transposed 3-D convolution; for EfficientNet's depthwise layers
//! that is most of a training step. Here each (image, channel) plane is one task: the forward
//! pass and the input gradient add `kernel_h × kernel_w` shifted rows, the weight gradient sums
//! per plane and then over the batch in a fixed order, so results do not depend on the thread
//! count. Padding may differ on the two sides (TensorFlow's SAME): it is given as the zeros before
//! the first row and column, and the output size, which fixes the zeros after.

use rayon::prelude::*;

use crate::common::geometry::columns_inside;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseGeometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zeros above the first row and left of the first column.
    pub padding: [usize; 2],
    pub out_height: usize,
    pub out_width: usize,
}

impl DepthwiseGeometry {
    fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    fn in_plane(&self) -> usize {
        self.height * self.width
    }

    fn out_plane(&self) -> usize {
        self.out_height * self.out_width
    }

    /// The input row that output row `oy` reads through kernel row `i`, if inside the image.
    fn source_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.stride[0] + i).checked_sub(self.padding[0]).filter(|&y| y < self.height)
    }

    /// The output columns whose kernel column `j` reads inside the image, and the input column
    /// the first of them reads.
    fn columns(&self, j: usize) -> (usize, usize, usize) {
        let (sw, pw) = (self.stride[1], self.padding[1]);
        let (first, last) = columns_inside(self.width, sw, pw, self.out_width, j);
        (first, last, (first * sw + j).saturating_sub(pw))
    }

    /// Calls `f(oy, input row, ox range, first input column, tap index)` for every kernel tap
    /// that reads inside the image.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
        for oy in 0..self.out_height {
            for i in 0..self.kernel[0] {
                let Some(y) = self.source_row(oy, i) else { continue };
                for j in 0..self.kernel[1] {
                    let (first, last, x0) = self.columns(j);
                    if first < last {
                        f(oy, y, first, last, x0, i * self.kernel[1] + j);
                    }
                }
            }
        }
    }
}

/// `y[n, c] = Σ_taps w[c, tap] · shifted x[n, c]`; `weight` is `[channels, 1, kh, kw]`.
pub fn forward(g: &DepthwiseGeometry, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; g.batch * g.channels * g.out_plane()];
    let sw = g.stride[1];
    y.par_chunks_mut(g.out_plane()).enumerate().for_each(|(p, out)| {
        let c = p % g.channels;
        let image = &x[p * g.in_plane()..][..g.in_plane()];
        let w = &weight[c * g.taps()..][..g.taps()];
        g.for_each_tap(|oy, y, first, last, x0, tap| {
            let row = &mut out[oy * g.out_width + first..oy * g.out_width + last];
            let src = &image[y * g.width + x0..(y + 1) * g.width];
            let wt = w[tap];
            if sw == 1 {
                for (o, s) in row.iter_mut().zip(src) {
                    *o += wt * s;
                }
            } else {
                for (o, s) in row.iter_mut().zip(src.iter().step_by(sw)) {
                    *o += wt * s;
                }
            }
        });
    });
    y
}

/// Gradients of [`forward`]: the input's (when `want_input`) and the weight's.
pub fn backward(g: &DepthwiseGeometry, x: &[f32], weight: &[f32], gy: &[f32], want_input: bool) -> (Option<Vec<f32>>, Vec<f32>) {
    let sw = g.stride[1];
    let planes = g.batch * g.channels;
    // Per plane, the weight gradient of its channel's taps; summed over images below.
    let mut partial = vec![0.0f32; planes * g.taps()];
    partial.par_chunks_mut(g.taps()).enumerate().for_each(|(p, gw)| {
        let image = &x[p * g.in_plane()..][..g.in_plane()];
        let grad = &gy[p * g.out_plane()..][..g.out_plane()];
        g.for_each_tap(|oy, y, first, last, x0, tap| {
            let row = &grad[oy * g.out_width + first..oy * g.out_width + last];
            let src = &image[y * g.width + x0..(y + 1) * g.width];
            let mut lanes = [0.0f32; 8];
            if sw == 1 {
                let (rc, sc) = (row.chunks_exact(8), src[..row.len()].chunks_exact(8));
                let tail: f32 = rc.remainder().iter().zip(sc.remainder()).map(|(a, b)| a * b).sum();
                for (r8, s8) in rc.zip(sc) {
                    for l in 0..8 {
                        lanes[l] += r8[l] * s8[l];
                    }
                }
                gw[tap] += lanes.iter().sum::<f32>() + tail;
            } else {
                gw[tap] += row.iter().zip(src.iter().step_by(sw)).map(|(a, b)| a * b).sum::<f32>();
            }
        });
    });
    let mut gw = vec![0.0f32; g.channels * g.taps()];
    for (c, out) in gw.chunks_mut(g.taps()).enumerate() {
        for n in 0..g.batch {
            for (o, v) in out.iter_mut().zip(&partial[(n * g.channels + c) * g.taps()..][..g.taps()]) {
                *o += v;
            }
        }
    }
    let gx = want_input.then(|| {
        let mut gx = vec![0.0f32; planes * g.in_plane()];
        gx.par_chunks_mut(g.in_plane()).enumerate().for_each(|(p, image)| {
            let c = p % g.channels;
            let grad = &gy[p * g.out_plane()..][..g.out_plane()];
            let w = &weight[c * g.taps()..][..g.taps()];
            g.for_each_tap(|oy, y, first, last, x0, tap| {
                let row = &grad[oy * g.out_width + first..oy * g.out_width + last];
                let dst = &mut image[y * g.width + x0..(y + 1) * g.width];
                let wt = w[tap];
                if sw == 1 {
                    for (d, r) in dst.iter_mut().zip(row) {
                        *d += wt * r;
                    }
                } else {
                    for (d, r) in dst.iter_mut().step_by(sw).zip(row) {
                        *d += wt * r;
                    }
                }
            });
        });
        gx
    });
    (gx, gw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::test_values as values;

    /// The convolution from its definition in f64, zero outside the image.
    fn reference(g: &DepthwiseGeometry, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; g.batch * g.channels * g.out_plane()];
        for n in 0..g.batch {
            for c in 0..g.channels {
                for oy in 0..g.out_height {
                    for ox in 0..g.out_width {
                        let mut s = 0.0;
                        for i in 0..g.kernel[0] {
                            for j in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + i) as isize - g.padding[0] as isize;
                                let ix = (ox * g.stride[1] + j) as isize - g.padding[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.height && (ix as usize) < g.width {
                                    s += w[(c * g.kernel[0] + i) * g.kernel[1] + j]
                                        * x[((n * g.channels + c) * g.height + iy as usize) * g.width + ix as usize];
                                }
                            }
                        }
                        y[((n * g.channels + c) * g.out_height + oy) * g.out_width + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn check(g: DepthwiseGeometry) {
        let x = values(g.batch * g.channels * g.in_plane(), 3);
        let w = values(g.channels * g.taps(), 4);
        let u = values(g.batch * g.channels * g.out_plane(), 5);
        let to64 = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        let (x64, w64) = (to64(&x), to64(&w));
        let y = forward(&g, &x, &w);
        for (a, b) in y.iter().zip(reference(&g, &x64, &w64)) {
            assert!((*a as f64 - b).abs() < 1e-5, "{g:?}: {a} vs {b}");
        }
        // The convolution is linear, so ⟨u, y⟩'s gradients are exact adjoints: compare them
        // with the reference's change along each unit vector.
        let loss = |x: &[f64], w: &[f64]| reference(&g, x, w).iter().zip(&u).map(|(a, b)| a * *b as f64).sum::<f64>();
        let (gx, gw) = backward(&g, &x, &w, &u, true);
        let gx = gx.unwrap();
        let base = loss(&x64, &w64);
        for i in 0..x.len() {
            let mut e = x64.clone();
            e[i] += 1.0;
            assert!((gx[i] as f64 - (loss(&e, &w64) - base)).abs() < 1e-4, "{g:?}: x[{i}]");
        }
        for i in 0..w.len() {
            let mut e = w64.clone();
            e[i] += 1.0;
            assert!((gw[i] as f64 - (loss(&x64, &e) - base)).abs() < 1e-4, "{g:?}: w[{i}]");
        }
        assert!(backward(&g, &x, &w, &u, false).0.is_none());
    }

    #[test]
    fn matches_the_definition_with_same_and_asymmetric_padding() {
        let base = DepthwiseGeometry {
            batch: 2,
            channels: 3,
            height: 7,
            width: 6,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            out_height: 7,
            out_width: 6,
        };
        check(base);
        // TensorFlow SAME at stride 2: one zero above and below (7 → 4), none left and one right
        // (6 → 3).
        check(DepthwiseGeometry { stride: [2, 2], padding: [1, 0], out_height: 4, out_width: 3, ..base });
        check(DepthwiseGeometry { kernel: [5, 5], padding: [2, 2], ..base });
        check(DepthwiseGeometry { kernel: [5, 5], stride: [2, 2], padding: [2, 1], out_height: 4, out_width: 3, ..base });
        check(DepthwiseGeometry { kernel: [3, 3], stride: [1, 1], padding: [0, 0], out_height: 5, out_width: 4, ..base });
    }
}
