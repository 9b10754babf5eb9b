//! Hand-written kernels where Burn's generic operations are too slow.

pub mod batch_norm;
pub mod conv2d;
mod host_batch_norm;
mod host_conv;
mod host_max_pool;
pub mod max_pool;

pub use host_batch_norm::{HostBatchNorm, batch_norm_relu, batch_stats};
pub use host_conv::{HostConv, conv2d as host_conv2d};
pub use host_max_pool::{HostMaxPool, max_pool2d as host_max_pool2d};
