//! The shape of one convolution and the index arithmetic both convolution kernels share.

use crate::common::geometry::columns_inside;

/// The largest im2col matrix built whole (4 MB); larger ones are built in blocks of output rows
/// (see [`ConvGeometry::rows_per_block`]).
pub(crate) const WHOLE_COL_VALUES: usize = 1 << 20;

/// The size an im2col block aims at: 512 KB, a core's L2 cache on the test machine.
pub(crate) const COL_BLOCK_VALUES: usize = 1 << 17;

/// The shape of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub channels_in: usize,
    pub height: usize,
    pub width: usize,
    pub channels_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl ConvGeometry {
    /// A square image and kernel, the same stride and padding along both axes.
    pub fn square(
        batch: usize,
        channels_in: usize,
        size: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        ConvGeometry {
            batch,
            channels_in,
            height: size,
            width: size,
            channels_out,
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
        }
    }

    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding[0] - self.kernel[0]) / self.stride[0] + 1
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding[1] - self.kernel[1]) / self.stride[1] + 1
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub(crate) fn patch(&self) -> usize {
        self.channels_in * self.kernel[0] * self.kernel[1]
    }

    pub(crate) fn positions(&self) -> usize {
        self.out_height() * self.out_width()
    }

    pub(crate) fn image_len(&self) -> usize {
        self.channels_in * self.height * self.width
    }

    /// A 1×1, stride-1, unpadded convolution reads the image itself as its im2col matrix.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Stride 1 and an output as wide as the input (2·padding = kernel − 1 across): then an
    /// im2col row, over its valid output rows, is one contiguous run of the input plane shifted
    /// by a constant, apart from the padded columns at the row ends.
    pub(crate) fn keeps_width(&self) -> bool {
        self.stride == [1, 1] && self.out_width() == self.width
    }

    /// Output rows per im2col block. The whole image's im2col matrix of ResNet's first layers
    /// (7 MB for the 64-channel 3 × 3 convolutions at 56 × 56, 7 MB for the 7 × 7 stem) outgrows
    /// the cache between being written and being packed by the GEMM; in blocks of about 512 KB
    /// those layers ran 15–40 % faster on the test machine. Smaller matrices stay whole: at
    /// 28 × 28 (3.6 MB) blocks of a few rows made the weight gradient's GEMM, whose inner
    /// dimension is the block, slower than the cache misses they saved. A pointwise convolution
    /// reads the image itself, whole.
    pub(crate) fn rows_per_block(&self) -> usize {
        let oh = self.out_height();
        if self.is_pointwise() || self.patch() * self.positions() <= WHOLE_COL_VALUES {
            return oh.max(1);
        }
        (COL_BLOCK_VALUES / (self.patch() * self.out_width()).max(1)).clamp(1, oh.max(1))
    }

    /// The output rows whose kernel row `i` reads inside the image, at stride 1.
    pub(crate) fn valid_rows(&self, i: usize) -> (usize, usize) {
        columns_inside(self.height, 1, self.padding[0], self.out_height(), i)
    }

    /// For each output row `oy` and kernel row `i`, the input row (if inside the image).
    pub(crate) fn source_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.stride[0] + i).checked_sub(self.padding[0]).filter(|&y| y < self.height)
    }

    /// The range of output columns whose kernel column `j` lands inside the image.
    pub(crate) fn valid_columns(&self, j: usize) -> (usize, usize) {
        columns_inside(self.width, self.stride[1], self.padding[1], self.out_width(), j)
    }
}
