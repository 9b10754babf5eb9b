//! Hand-written kernels where Burn's generic operations are too slow.

pub mod conv2d;
mod host_conv;

pub use host_conv::{HostConv, conv2d as host_conv2d};
