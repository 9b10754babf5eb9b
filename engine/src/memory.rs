//! Process-wide allocator settings for training on the host.

/// Keeps freed memory in the process for reuse instead of handing it back to the kernel.
///
/// Every training step allocates and frees the same activation and gradient buffers, many of
/// them tens of megabytes. glibc's malloc serves blocks that large with a fresh `mmap` and
/// returns them with `munmap` on free, so each step faults in and the kernel zeroes every page
/// of them again: on the 2-vCPU test machine that was a fifth of a ResNet-18 step (batch 32 of
/// 224 × 224) and of the default job's step. With `mmap` off for allocations and the heap never
/// trimmed, the second step reuses the first step's pages. The resident size stays at the
/// step's peak between steps rather than falling back, which is what a trainer holds anyway.
///
/// Call it first thing in `main`, before threads start; elsewhere than Linux with glibc it does
/// nothing (other allocators make their own choices).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's parameters; both values are documented (mallopt(3)):
    // M_MMAP_MAX 0 disables mmap for allocations, M_TRIM_THRESHOLD −1 disables trimming.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
