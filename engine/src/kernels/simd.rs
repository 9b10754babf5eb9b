//! Runtime selection of AVX2 + FMA code for the element-wise kernel loops.
//!
//! The release build targets baseline x86-64 (SSE2) so that the binary runs on any x86-64 CPU;
//! at that level LLVM leaves the batch-norm and pooling loops' compare-and-select scalar. A
//! function declared with [`avx2_dispatch!`] is compiled twice, once with AVX2 and FMA enabled,
//! and the CPU picks at run time. Both copies run the same operations in the same order (Rust
//! never contracts a multiply and an add into an FMA), so results are bitwise the same on every
//! CPU.

/// `avx2_dispatch! { pub(super) fn name(args) -> Ret { body } }`: `name` runs `body` compiled for
/// AVX2 + FMA where the CPU has both, else compiled for the baseline target.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn portable($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) -> $ret {
                    portable($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: `avx2` needs only the two CPU features just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub(super) use avx2_dispatch;
