//! 2-D average pooling, NCHW f32 on the host: any window, stride and symmetric padding, floor or
//! ceil output size, and either of PyTorch's divisors (`count_include_pad`: the window's positions
//! in the image and its padding, or only those in the image); the backward pass spreads each
//! output's gradient evenly over its window.

use crate::common::parallel::par_filled;
use crate::common::pooling::PoolShape;

/// Each output's divisor, as the product of a row and a column factor.
fn divisors(s: &PoolShape, count_include_pad: bool) -> (Vec<usize>, Vec<usize>) {
    let factor = |axis: usize, o: usize| if count_include_pad { s.padded_len(axis, o) } else { s.span(axis, o).len() };
    let rows = (0..s.out_height()).map(|o| factor(0, o)).collect();
    let columns = (0..s.out_width()).map(|o| factor(1, o)).collect();
    (rows, columns)
}

/// The pooled planes.
pub fn forward(s: &PoolShape, count_include_pad: bool, x: &[f32]) -> Vec<f32> {
    let (plane, out_plane, ow) = (s.height * s.width, s.out_plane(), s.out_width());
    let (row_div, column_div) = divisors(s, count_include_pad);
    let columns = s.window_columns();
    par_filled(s.planes * out_plane, out_plane.max(1), |p, yp| {
        let xp = &x[p * plane..][..plane];
        for (oy, yr) in yp.chunks_exact_mut(ow.max(1)).enumerate() {
            s.for_window_taps(oy, &columns, |start, first, last| {
                let outputs = &mut yr[first..last];
                if s.pooling.stride[1] == 1 {
                    for (y, &v) in outputs.iter_mut().zip(&xp[start..]) {
                        *y += v;
                    }
                } else {
                    for (y, &v) in outputs.iter_mut().zip(xp[start..].iter().step_by(s.pooling.stride[1])) {
                        *y += v;
                    }
                }
            });
            for (y, &d) in yr.iter_mut().zip(&column_div) {
                *y /= (row_div[oy] * d).max(1) as f32;
            }
        }
    })
}

/// The input gradient: each output's gradient divided by its divisor, added over its window.
pub fn backward(s: &PoolShape, count_include_pad: bool, gy: &[f32]) -> Vec<f32> {
    let (plane, out_plane, ow) = (s.height * s.width, s.out_plane(), s.out_width());
    let (row_div, column_div) = divisors(s, count_include_pad);
    let columns = s.window_columns();
    par_filled(s.planes * plane, plane.max(1), |p, gp| {
        let mut share = vec![0.0f32; ow];
        for (oy, gr) in gy[p * out_plane..][..out_plane].chunks_exact(ow.max(1)).enumerate() {
            for ((v, &g), &d) in share.iter_mut().zip(gr).zip(&column_div) {
                *v = g / (row_div[oy] * d).max(1) as f32;
            }
            s.for_window_taps(oy, &columns, |start, first, last| {
                let shares = &share[first..last];
                if s.pooling.stride[1] == 1 {
                    for (x, &v) in gp[start..].iter_mut().zip(shares) {
                        *x += v;
                    }
                } else {
                    for (x, &v) in gp[start..].iter_mut().step_by(s.pooling.stride[1]).zip(shares) {
                        *x += v;
                    }
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::pooling::Pooling;

    /// PyTorch's average pooling written from its definition in float64: the sum over the
    /// window's positions inside the image, divided by the count of positions in the padded
    /// image (up to the end of the trailing padding) or inside the image.
    fn reference(s: &PoolShape, count_include_pad: bool, x: &[f32]) -> Vec<f64> {
        let (h, w) = (s.height as isize, s.width as isize);
        let [ph, pw] = s.pooling.padding.map(|p| p as isize);
        let mut y = Vec::new();
        for p in 0..s.planes {
            for oy in 0..s.out_height() as isize {
                for ox in 0..s.out_width() as isize {
                    let (y0, x0) = (oy * s.pooling.stride[0] as isize - ph, ox * s.pooling.stride[1] as isize - pw);
                    let (y1, x1) = ((y0 + s.pooling.window[0] as isize).min(h + ph), (x0 + s.pooling.window[1] as isize).min(w + pw));
                    let (mut sum, mut inside) = (0.0f64, 0usize);
                    for r in y0.max(0)..y1.min(h) {
                        for c in x0.max(0)..x1.min(w) {
                            sum += x[p * s.height * s.width + (r * w + c) as usize] as f64;
                            inside += 1;
                        }
                    }
                    let divisor = if count_include_pad { ((y1 - y0) * (x1 - x0)) as usize } else { inside };
                    y.push(sum / divisor.max(1) as f64);
                }
            }
        }
        y
    }

    fn shapes() -> Vec<PoolShape> {
        let pool = |h, w, window, stride, padding, ceil_mode| Pooling { window, stride, padding, ceil_mode }.over(3, h, w);
        vec![
            // BN-Inception's pool branch: 3 × 3 / 1, padding 1.
            pool(7, 7, [3, 3], [1, 1], [1, 1], false),
            pool(6, 9, [3, 3], [1, 1], [1, 1], true),
            pool(8, 8, [2, 2], [2, 2], [0, 0], false),
            pool(9, 7, [3, 3], [2, 2], [1, 1], true),
            pool(10, 11, [3, 3], [2, 2], [0, 0], true),
            pool(5, 6, [3, 2], [1, 2], [1, 1], false),
            pool(5, 5, [2, 2], [2, 2], [1, 1], true),
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        for (t, s) in shapes().into_iter().enumerate() {
            let x = crate::common::test_values(s.planes * s.height * s.width, 3 + t as u64);
            for count_include_pad in [true, false] {
                let y = forward(&s, count_include_pad, &x);
                let want = reference(&s, count_include_pad, &x);
                assert_eq!(y.len(), want.len(), "{s:?}");
                for (i, (&a, &b)) in y.iter().zip(&want).enumerate() {
                    assert!((a as f64 - b).abs() < 1e-6, "{s:?} count_include_pad {count_include_pad}: output {i} is {a}, want {b}");
                }
            }
        }
    }

    /// ⟨forward(x), g⟩ = ⟨x, backward(g)⟩ for every pooling: the backward pass is the forward
    /// pass's transpose (both are linear in their input).
    #[test]
    fn backward_is_the_adjoint_of_forward() {
        for (t, s) in shapes().into_iter().enumerate() {
            let x = crate::common::test_values(s.planes * s.height * s.width, 20 + t as u64);
            let g = crate::common::test_values(s.planes * s.out_plane(), 40 + t as u64);
            for count_include_pad in [true, false] {
                let y = forward(&s, count_include_pad, &x);
                let gx = backward(&s, count_include_pad, &g);
                assert_eq!(gx.len(), x.len());
                let lhs: f64 = y.iter().zip(&g).map(|(&a, &b)| a as f64 * b as f64).sum();
                let rhs: f64 = x.iter().zip(&gx).map(|(&a, &b)| a as f64 * b as f64).sum();
                assert!((lhs - rhs).abs() < 1e-5 * (1.0 + lhs.abs()), "{s:?} count_include_pad {count_include_pad}: {lhs} vs {rhs}");
            }
        }
    }
}
