//! Run-time choice of the vector code of the kernel loops, and the switch that pins it.
//!
//! The release build targets each architecture's baseline (SSE2 on x86-64, NEON on ARM64) so that
//! one binary runs on every CPU of it; at SSE2 LLVM leaves the batch-norm and pooling loops'
//! compare-and-select scalar. A function declared with [`isa_dispatch!`] is compiled three times
//! on x86-64 (AVX-512, AVX2 + FMA, baseline) and the widest the CPU has, within the pin, runs.
//! All copies run the same operations in the same order (Rust never contracts a multiply and an
//! add into an FMA, and the reductions keep fixed lanes), so these loops give bitwise the same
//! results whichever runs.
//!
//! The kernels' matrix products do not: `gemm`'s microkernels (AVX-512 ones too, with the
//! `avx512` feature) use fused multiply-adds on AVX2 and AVX-512 but not on the baseline, and
//! block long inner dimensions differently by width. [`cpu_isa`] caps them too (see
//! `gemm.rs`), so `DML_CPU_ISA=avx2` on an AVX-512 machine makes the kernels compute bit for bit
//! what they compute on an AVX2 one, as PyTorch's `ATEN_CPU_CAPABILITY` does for ATen's kernels;
//! scripts/test-cpu-paths checks that against emulated CPUs. Burn's own CPU operations (matmul,
//! element-wise and reductions) choose their vector code themselves and have no such switch.

use std::sync::atomic::{AtomicU8, Ordering};

/// The vector code of the kernel loops, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuIsa {
    /// The architecture's baseline: SSE2 on x86-64, NEON on ARM64, SIMD128 in browsers.
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512 F, BW, CD, DQ and VL (the x86-64-v4 level).
    Avx512,
}

impl CpuIsa {
    pub const NAMES: [&'static str; 3] = ["avx512", "avx2", "portable"];

    pub fn name(self) -> &'static str {
        match self {
            CpuIsa::Portable => "portable",
            CpuIsa::Avx2 => "avx2",
            CpuIsa::Avx512 => "avx512",
        }
    }

    /// The widest this CPU runs.
    pub fn detected() -> CpuIsa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512cd") && has!("avx512dq") && has!("avx512vl") {
                return CpuIsa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return CpuIsa::Avx2;
            }
        }
        CpuIsa::Portable
    }
}

impl std::str::FromStr for CpuIsa {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx512" => Ok(CpuIsa::Avx512),
            "avx2" => Ok(CpuIsa::Avx2),
            "portable" => Ok(CpuIsa::Portable),
            other => Err(format!("`{other}` is not a vector code; expected one of {}", CpuIsa::NAMES.join(", "))),
        }
    }
}

impl std::fmt::Display for CpuIsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The environment variable that caps the vector code, like PyTorch's `ATEN_CPU_CAPABILITY`.
pub const CPU_ISA_VARIABLE: &str = "DML_CPU_ISA";

/// The code in force; 0 until first asked, then `CpuIsa as u8 + 1`.
static IN_FORCE: AtomicU8 = AtomicU8::new(0);

/// The vector code the kernels run: the CPU's widest, capped by `DML_CPU_ISA` where that is set
/// (an unknown value is ignored here; [`cpu_isa_from_env`] reports it), or by [`set_cpu_isa`].
pub fn cpu_isa() -> CpuIsa {
    match IN_FORCE.load(Ordering::Relaxed) {
        0 => {
            let capped = cpu_isa_from_env().ok().flatten().map_or(CpuIsa::detected(), |cap| cap.min(CpuIsa::detected()));
            IN_FORCE.store(capped as u8 + 1, Ordering::Relaxed);
            capped
        }
        n => [CpuIsa::Portable, CpuIsa::Avx2, CpuIsa::Avx512][n as usize - 1],
    }
}

/// `DML_CPU_ISA`, parsed: `None` when unset or empty.
pub fn cpu_isa_from_env() -> Result<Option<CpuIsa>, String> {
    match std::env::var(CPU_ISA_VARIABLE) {
        Ok(v) if !v.trim().is_empty() => v.parse().map(Some).map_err(|e| format!("{CPU_ISA_VARIABLE}: {e}")),
        _ => Ok(None),
    }
}

/// Caps the vector code for the whole process from now on (at most what the CPU has); returns
/// the code then in force.
pub fn set_cpu_isa(cap: CpuIsa) -> CpuIsa {
    let isa = cap.min(CpuIsa::detected());
    IN_FORCE.store(isa as u8 + 1, Ordering::Relaxed);
    isa
}

/// `isa_dispatch! { pub(crate) fn name(args) -> Ret { body } }`: `name` runs `body` compiled for
/// the [`cpu_isa`] in force: AVX-512 (x86-64-v4), AVX2 + FMA, or the baseline target.
macro_rules! isa_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn portable($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) -> $ret {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) -> $ret {
                    portable($($arg),*)
                }
                match $crate::common::simd::cpu_isa() {
                    // SAFETY: `cpu_isa` never exceeds what the CPU was detected to have.
                    $crate::common::simd::CpuIsa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::common::simd::CpuIsa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::common::simd::CpuIsa::Portable => {}
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use isa_dispatch;

/// Whether the hand-written AVX2 loops may run (the CPU has AVX2 and the pin allows it).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_allowed() -> bool {
    cpu_isa() >= CpuIsa::Avx2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_others_are_refused() {
        for isa in [CpuIsa::Portable, CpuIsa::Avx2, CpuIsa::Avx512] {
            assert_eq!(isa.name().parse::<CpuIsa>(), Ok(isa));
        }
        assert_eq!(" AVX2 ".parse::<CpuIsa>(), Ok(CpuIsa::Avx2));
        assert!("sse4".parse::<CpuIsa>().unwrap_err().contains("expected one of avx512, avx2, portable"));
        assert!(CpuIsa::Portable < CpuIsa::Avx2 && CpuIsa::Avx2 < CpuIsa::Avx512);
    }
}
