//! The definition of a convolution, in f64, that the unit tests of both kernels compare with.

use super::geometry::ConvGeometry;

/// Direct convolution in f64, the definition itself.
pub(crate) fn reference(g: &ConvGeometry, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
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
