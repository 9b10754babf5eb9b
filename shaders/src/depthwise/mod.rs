//! Depthwise convolution (one group per channel, no bias) on the host: the slice-level kernel and
//! its Burn operation with a backward pass. [`crate::conv2d_padded`] chooses it on the CPU backend.

pub(crate) mod host_op;
pub mod kernel;
