//! Max pooling with non-overlapping windows (stride = window, no padding, floor mode), NCHW f32 on
//! the host; the backward pass routes each gradient to the window's first maximum.

use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// `batch × channels` planes.
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub window: [usize; 2],
}

impl PoolShape {
    pub fn out_height(&self) -> usize {
        self.height / self.window[0]
    }

    pub fn out_width(&self) -> usize {
        self.width / self.window[1]
    }

    fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }
}

/// The pooled planes and, for each output, the flat index of its maximum within its input plane.
pub fn forward(s: &PoolShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (plane, out_plane) = (s.height * s.width, s.out_plane());
    let mut y = vec![0.0f32; s.planes * out_plane];
    let mut arg = vec![0u32; s.planes * out_plane];
    y.par_chunks_mut(out_plane).zip(arg.par_chunks_mut(out_plane)).enumerate().for_each(|(p, (yp, ap))| {
        let xp = &x[p * plane..][..plane];
        for oy in 0..s.out_height() {
            for ox in 0..s.out_width() {
                let (mut best, mut at) = (f32::NEG_INFINITY, oy * s.window[0] * s.width + ox * s.window[1]);
                for i in 0..s.window[0] {
                    let row = (oy * s.window[0] + i) * s.width + ox * s.window[1];
                    for (j, &v) in xp[row..row + s.window[1]].iter().enumerate() {
                        // NaN wins, as in a max that propagates NaN.
                        if v > best || (v.is_nan() && !best.is_nan()) {
                            best = v;
                            at = row + j;
                        }
                    }
                }
                yp[oy * s.out_width() + ox] = best;
                ap[oy * s.out_width() + ox] = at as u32;
            }
        }
    });
    (y, arg)
}

/// The input gradient: each output gradient added at its maximum's position.
pub fn backward(s: &PoolShape, arg: &[u32], gy: &[f32]) -> Vec<f32> {
    let (plane, out_plane) = (s.height * s.width, s.out_plane());
    let mut gx = vec![0.0f32; s.planes * plane];
    gx.par_chunks_mut(plane).enumerate().for_each(|(p, gp)| {
        for (&a, &g) in arg[p * out_plane..][..out_plane].iter().zip(&gy[p * out_plane..][..out_plane]) {
            gp[a as usize] += g;
        }
    });
    gx
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
        let s = PoolShape { planes: 1, height: 4, width: 5, window: [2, 2] };
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
}
