//! Index arithmetic shared by the convolution, depthwise and pooling kernels.

/// Of `out_width` output columns at stride `stride` with `padding` zeros left of the image, the
/// range whose kernel column `j` reads inside an image `width` wide.
pub(crate) fn columns_inside(width: usize, stride: usize, padding: usize, out_width: usize, j: usize) -> (usize, usize) {
    // ox * stride + j - padding ∈ [0, width)
    let first = if j >= padding { 0 } else { (padding - j).div_ceil(stride) };
    let last = if width + padding > j { ((width + padding - j - 1) / stride + 1).min(out_width) } else { 0 };
    (first.min(last), last)
}
