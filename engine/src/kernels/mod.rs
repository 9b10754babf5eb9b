//! Hand-written kernels where Burn's generic operations are too slow.

pub mod batch_norm;
pub mod conv2d;
pub mod depthwise;
mod host_batch_norm;
mod host_conv;
mod host_depthwise;
mod host_max_pool;
pub mod max_pool;

pub use batch_norm::Clamp;
pub use host_batch_norm::{HostBatchNorm, batch_norm_clamp, batch_stats, frozen_batch_norm_clamp};
pub use host_conv::{HostConv, conv2d as host_conv2d};
pub use host_depthwise::{HostDepthwise, depthwise_conv2d as host_depthwise_conv2d};
pub use host_max_pool::{HostMaxPool, max_pool2d as host_max_pool2d};

/// Deterministic pseudo-random values in [−0.5, 0.5) for the kernels' unit tests (xorshift).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}
