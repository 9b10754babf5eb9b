//! Index arithmetic shared by the convolution, depthwise and pooling kernels.

use burn::nn::PaddingConfig2d;

/// `[rows, columns]` of zeros on each side, where a Burn module's padding is the same on both
/// sides of each axis (what the host kernels take); `None` otherwise.
pub(crate) fn symmetric_padding(padding: &PaddingConfig2d) -> Option<[usize; 2]> {
    match *padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) if top == bottom && left == right => Some([top, left]),
        _ => None,
    }
}

/// Of `out_width` output columns at stride `stride` with `padding` zeros left of the image, the
/// range whose kernel column `j` reads inside an image `width` wide.
pub(crate) fn columns_inside(width: usize, stride: usize, padding: usize, out_width: usize, j: usize) -> (usize, usize) {
    // ox * stride + j - padding ∈ [0, width)
    let first = if j >= padding { 0 } else { (padding - j).div_ceil(stride) };
    let last = if width + padding > j { ((width + padding - j - 1) / stride + 1).min(out_width) } else { 0 };
    (first.min(last), last)
}
