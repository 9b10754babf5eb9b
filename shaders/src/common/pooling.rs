//! The geometry of a 2-D pooling over NCHW planes, shared by max and average pooling: window,
//! stride, symmetric padding, and PyTorch's output sizes in floor and ceil mode.

use burn::nn::PaddingConfig2d;
use burn::nn::pool::{AvgPool2d, MaxPool2d};
use burn::tensor::Shape;

use super::geometry::{columns_inside, symmetric_padding};

/// A pooling's windows, apart from the input's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pooling {
    pub window: [usize; 2],
    pub stride: [usize; 2],
    /// Rows above and below, columns left and right.
    pub padding: [usize; 2],
    /// Output size rounded up (PyTorch's `ceil_mode`): a last, partial window is kept when it
    /// starts inside the image or its leading padding.
    pub ceil_mode: bool,
}

impl Pooling {
    /// Non-overlapping windows (stride = window), no padding, floor mode.
    pub fn tiled(window: [usize; 2]) -> Self {
        Pooling { window, stride: window, padding: [0, 0], ceil_mode: false }
    }

    /// These windows over `planes` planes of `height × width`.
    pub fn over(self, planes: usize, height: usize, width: usize) -> PoolShape {
        PoolShape { planes, height, width, pooling: self }
    }
}

/// A pooling applied to `planes` input planes of `height × width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// `batch × channels` planes.
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub pooling: Pooling,
}

impl PoolShape {
    pub fn out_height(&self) -> usize {
        let p = &self.pooling;
        out_size(self.height, p.window[0], p.stride[0], p.padding[0], p.ceil_mode)
    }

    pub fn out_width(&self) -> usize {
        let p = &self.pooling;
        out_size(self.width, p.window[1], p.stride[1], p.padding[1], p.ceil_mode)
    }

    pub(crate) fn out_plane(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// The input rows (or columns, `axis` 1) of output row (column) `o`'s window.
    pub(crate) fn span(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let size = [self.height, self.width][axis];
        let start = (o * self.pooling.stride[axis]).saturating_sub(self.pooling.padding[axis]);
        let end = (o * self.pooling.stride[axis] + self.pooling.window[axis]).saturating_sub(self.pooling.padding[axis]).min(size);
        start..end.max(start)
    }

    /// Of output row `o`'s window along `axis` (0 rows, 1 columns), how many positions lie in
    /// the image or its padding: PyTorch's average-pool divisor with `count_include_pad`, where
    /// a ceil-mode window hanging past the trailing padding counts only up to it.
    pub(crate) fn padded_len(&self, axis: usize, o: usize) -> usize {
        let size = [self.height, self.width][axis];
        (size + 2 * self.pooling.padding[axis] - o * self.pooling.stride[axis]).min(self.pooling.window[axis])
    }

    /// For each window column `j`, the output columns whose window column `j` lands inside the
    /// image.
    pub(crate) fn window_columns(&self) -> Vec<(usize, usize)> {
        (0..self.pooling.window[1])
            .map(|j| columns_inside(self.width, self.pooling.stride[1], self.pooling.padding[1], self.out_width(), j))
            .collect()
    }

    /// For output row `oy` of a plane: calls `visit(start, first, last)` for every window row and
    /// column, in the window's row-major order, where outputs `first..last` of the row (those whose
    /// window column lies inside the image) read inputs `start`, `start + stride`, … of the plane.
    /// `columns` is [`Self::window_columns`]. The outputs of a row advance together, one tap at a
    /// time, instead of each running through its window alone.
    pub(crate) fn for_window_taps(&self, oy: usize, columns: &[(usize, usize)], mut visit: impl FnMut(usize, usize, usize)) {
        for row in self.span(0, oy) {
            for (j, &(first, last)) in columns.iter().enumerate() {
                if first < last {
                    visit(row * self.width + first * self.pooling.stride[1] + j - self.pooling.padding[1], first, last);
                }
            }
        }
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

impl Pooling {
    /// The windows of a pooling module, where the host kernels cover them: no padding, or the same
    /// on both sides and at most half the window (as PyTorch requires).
    pub(crate) fn of_module(window: [usize; 2], stride: [usize; 2], padding: &PaddingConfig2d, ceil_mode: bool) -> Option<Self> {
        let padding = symmetric_padding(padding)?;
        (padding[0] * 2 <= window[0] && padding[1] * 2 <= window[1]).then_some(Pooling { window, stride, padding, ceil_mode })
    }

    /// The windows of Burn's max-pooling module, where the host kernel covers them (no dilation).
    pub fn of_max_pool(pool: &MaxPool2d) -> Option<Self> {
        Self::of_module(pool.kernel_size, pool.stride, &pool.padding, pool.ceil_mode).filter(|_| pool.dilation == [1, 1])
    }

    /// The windows over an `[n, c, h, w]` tensor.
    pub(crate) fn over_tensor(&self, x: &Shape) -> PoolShape {
        self.over(x[0] * x[1], x[2], x[3])
    }

    /// The windows of Burn's average-pooling module, where the host kernel covers them.
    pub fn of_avg_pool(pool: &AvgPool2d) -> Option<Self> {
        Self::of_module(pool.kernel_size, pool.stride, &pool.padding, pool.ceil_mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output sizes as PyTorch computes them, on the networks' own layers.
    #[test]
    fn output_sizes_follow_pytorch() {
        let size = |h, window, stride, padding, ceil_mode| {
            Pooling { window: [window; 2], stride: [stride; 2], padding: [padding; 2], ceil_mode }.over(1, h, h).out_height()
        };
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
