//! What more than one operation uses: parallel output buffers, the matrix product, the vector
//! instruction set in force, pooling windows, the CPU backend's tensor storage.

pub(crate) mod flex;
pub(crate) mod gemm;
pub(crate) mod geometry;
pub(crate) mod parallel;
pub mod pooling;
pub mod simd;

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
