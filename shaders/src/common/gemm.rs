//! The kernels' matrix products, on the microkernels of the vector code in force.
//!
//! `gemm::gemm` chooses its microkernels itself, from what the CPU has: with AVX-512 it
//! accumulates in 16-wide panels, with AVX2 in 8-wide ones, and for inner dimensions past about
//! 512 the two round differently (bench/RESULTS.md, "AVX-512"). To let `DML_CPU_ISA=avx2`
//! reproduce on an AVX-512 machine what an AVX2 machine computes, the kernels call gemm's
//! generic driver here with the microkernel table of the code in force. The tables, the driver
//! and the argument normalisation below are those `gemm::gemm` itself uses (gemm 0.19.0, pinned).

use std::mem::MaybeUninit;

use super::simd::{CpuIsa, cpu_isa};

/// `dst ← alpha·dst + beta·lhs·rhs` for the m×n `dst`, m×k `lhs` and k×n `rhs` at the given
/// column and row strides, as `gemm::gemm` with no conjugation; single-threaded.
///
/// # Safety
/// As `gemm::gemm`: every element the strides reach must be valid (for writes in `dst`, and for
/// reads there too when `read_dst`).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
) {
    let isa = cpu_isa();
    // gemm's own choice: AVX-512 where the CPU has it, else AVX2 + FMA, else scalar; on ARM64
    // NEON, which every ARM64 CPU has.
    if isa == CpuIsa::Avx512 || !cfg!(target_arch = "x86_64") {
        // SAFETY: the caller's guarantees are gemm's.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst,
                dst_cs,
                dst_rs,
                read_dst,
                lhs,
                lhs_cs,
                lhs_rs,
                rhs,
                rhs_cs,
                rhs_rs,
                alpha,
                beta,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; `capped` runs only microkernels of a code the CPU has.
    unsafe {
        capped(isa, m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta)
    };
}

/// `gemm::gemm`'s normalisation (a column-oriented `dst` is computed transposed; negative strides
/// are flipped), then its f32 driver with the microkernels of `isa`: AVX2 + FMA, or scalar.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn capped(
    isa: CpuIsa,
    m: usize,
    n: usize,
    k: usize,
    mut dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
) {
    use gemm_common::gemm::gemm_basic_generic;
    use gemm_common::simd::MixedSimd;

    let transpose = dst_cs.abs() < dst_rs.abs();
    let (m, n, mut dst_cs, mut dst_rs, mut lhs, mut lhs_cs, mut lhs_rs, mut rhs, mut rhs_cs, mut rhs_rs) = if transpose {
        (n, m, dst_rs, dst_cs, rhs, rhs_rs, rhs_cs, lhs, lhs_rs, lhs_cs)
    } else {
        (m, n, dst_cs, dst_rs, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs)
    };
    if dst_rs < 0 && m > 0 {
        dst = dst.wrapping_offset((m - 1) as isize * dst_rs);
        dst_rs = -dst_rs;
        lhs = lhs.wrapping_offset((m - 1) as isize * lhs_rs);
        lhs_rs = -lhs_rs;
    }
    if dst_cs < 0 && n > 0 {
        dst = dst.wrapping_offset((n - 1) as isize * dst_cs);
        dst_cs = -dst_cs;
        rhs = rhs.wrapping_offset((n - 1) as isize * rhs_cs);
        rhs_cs = -rhs_cs;
    }
    if lhs_cs < 0 && k > 0 {
        lhs = lhs.wrapping_offset((k - 1) as isize * lhs_cs);
        lhs_cs = -lhs_cs;
        rhs = rhs.wrapping_offset((k - 1) as isize * rhs_rs);
        rhs_rs = -rhs_rs;
    }
    // gemm's f32 driver with one microkernel family: `$family` of gemm-f32's microkernels, `$n`
    // lanes, on the SIMD token `$simd` (the arguments of gemm's own per-family `gemm_basic`).
    macro_rules! drive {
        ($family:ident, $n:literal, $simd:expr) => {{
            use gemm_f32::microkernel::$family::f32::{H_M, H_N, H_UKR, MR_DIV_N, NR, UKR};
            // SAFETY: the caller's guarantees, with the strides normalised as gemm does; the
            // family is one the CPU has.
            unsafe {
                gemm_basic_generic::<_, f32, $n, { MR_DIV_N * $n }, NR, MR_DIV_N, H_M, H_N>(
                    $simd,
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    alpha,
                    beta,
                    false,
                    false,
                    false,
                    |a: f32, b: f32, c: f32| a * b + c,
                    &UKR,
                    &H_UKR,
                    false,
                    gemm::Parallelism::None,
                )
            }
        }};
    }
    match isa {
        CpuIsa::Avx2 => {
            drive!(fma, 8, <gemm_common::simd::V3 as MixedSimd<f32, f32, f32, f32>>::try_new().expect("AVX2 and FMA, as detected"))
        }
        _ => drive!(scalar, 1, gemm_common::simd::Scalar),
    }
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, row-major with `dst`'s rows `dst_rs` apart, and
/// explicit strides for transposes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: `dst` holds the m rows of n values, initialised.
    unsafe { gemm_into(m, n, k, dst.as_mut_ptr(), dst_rs, accumulate, lhs, lhs_strides, rhs, rhs_strides) }
}

/// [`matmul`] without accumulation into memory not yet written, whose rows lie `dst_rs` apart:
/// afterwards the m×n values `dst[r·dst_rs + c]` are written (the others untouched).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_uninit(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [MaybeUninit<f32>],
    dst_rs: usize,
    lhs: &[f32],
    lhs_strides: (usize, usize),
    rhs: &[f32],
    rhs_strides: (usize, usize),
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: the assert keeps the m rows of n values inside `dst`; without accumulation gemm only
    // writes them (its `alpha` is zero: the old values are never read).
    unsafe { gemm_into(m, n, k, dst.as_mut_ptr().cast(), dst_rs, false, lhs, lhs_strides, rhs, rhs_strides) }
}

/// # Safety
/// `dst` must be valid for writes of the m×n values `dst[r·dst_rs + c]`, and for reads of them if
/// `accumulate`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the asserts above keep every index the strides reach inside the slices; the caller
    // vouches for `dst`.
    unsafe {
        gemm_f32(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
        );
    }
}

/// Σ values in eight interleaved f32 lanes, then across: a dependent chain of adds would wait
/// on each add's latency.
pub(crate) fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + rest
}
