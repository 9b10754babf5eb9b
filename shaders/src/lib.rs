//! Hand-written kernels for Burn where its generic operations are too slow.
//!
//! The public operations ([`conv2d()`], [`conv2d_padded`], [`batch_norm()`], [`max_pool()`],
//! [`avg_pool()`]) take Burn modules and tensors and choose their implementation themselves: on
//! Burn's CPU backend (flex) dml's host kernels, which read and write the tensors' memory in place
//! and bring their own backward passes; on every other backend Burn's operations. Callers never
//! ask which backend they are on.
//!
//! Each operation has a folder: its public operation (`mod.rs`), the slice-level kernel
//! (`kernel.rs`, or `im2col.rs` and `winograd.rs` for the convolution), and the Burn operation
//! with its backward pass (`host_op.rs`); unit tests sit beside the code they test. What several
//! operations share (parallel output buffers, the matrix product, the vector instruction set in
//! force, pooling windows, flex tensor access) is in `common/`.
//!
//! The vector code (AVX-512, AVX2, or portable code that compilers vectorise for NEON) is chosen
//! at run time; [`set_cpu_isa`] caps it, so that one machine can reproduce another's results bit
//! for bit.

pub mod avg_pool;
pub mod batch_norm;
mod common;
pub mod conv2d;
pub mod depthwise;
pub mod max_pool;
mod placement;
#[cfg(feature = "gpu")]
pub mod retrieval;

pub use avg_pool::avg_pool;
pub use batch_norm::{Clamp, batch_norm};
pub use common::pooling::{PoolShape, Pooling};
pub use common::simd::{CPU_ISA_VARIABLE, CpuIsa, cpu_isa, cpu_isa_from_env, set_cpu_isa};
pub use conv2d::{Padding, conv2d, conv2d_padded};
pub use max_pool::max_pool;
pub use placement::runs_on_host;

/// The host kernels as Burn operations whatever the backend asks: for tests and benchmarks that
/// compare them with Burn's own operations. Their inputs must be f32 tensors of the CPU backend.
pub mod host {
    pub use crate::avg_pool::host_op::avg_pool2d;
    pub use crate::batch_norm::host_op::{batch_norm_clamp, batch_stats, frozen_batch_norm_clamp};
    pub use crate::conv2d::host_op::conv2d;
    pub use crate::depthwise::host_op::depthwise_conv2d;
    pub use crate::max_pool::host_op::max_pool2d;
}
