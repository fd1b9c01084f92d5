//! Handing the allocator's freed pages back to the system once a model is built.
//!
//! Loading frees as much as it keeps: every float weight read for quantization, every GGML block
//! moved into a decoding layout. glibc's malloc raises its mmap threshold after the first large
//! free, so later weights come from the heap, and their freed neighbours stay resident as holes
//! the process no longer uses (measured: ~125 MiB of BLIP-2 q4_0's 2.6 GiB). `malloc_trim`
//! returns those pages; on a Jetson that is memory the GPU shares.
//!
//! While serving, the opposite: every layer's output is a fresh tensor of a few MiB (BERT's
//! 1024 × 3072 intermediate at batch 16 is 12 MiB), freed a moment later. With glibc's
//! defaults the top of the heap is handed back once 2 × the (moving) mmap threshold is free and
//! faulted in again, zeroed by the kernel, on the next layer: 6% of the classifier's time at
//! batch 16 in page faults. [`keep_tensor_memory`] fixes both thresholds instead.

/// Allocations from this size on are mapped on their own (glibc's own ceiling for its moving
/// threshold): weights and the largest activations.
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Free memory at the top of the heap kept for the next tensors rather than handed back.
const TRIM_THRESHOLD: i32 = 64 << 20;
/// The environment variables by which a user sets these thresholds (glibc's own tunables).
const USER_SETTINGS: [&str; 2] = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];

/// Sets glibc's mmap and trim thresholds for a process that allocates and frees tensors of a
/// few MiB per layer ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]); call it first thing in `main`.
/// Measured (`bench classify`, bert-base-chinese shape, fp32, 2 threads): batch 16 from 19.2–
/// 19.9 to 21.7–22.6 texts/s, batch 1 unchanged, peak RSS +2 MiB; BLIP-2 q4_0 at the 2.7B shape
/// peaks 20 MiB higher (2.79 GiB). Where the user set either threshold in the environment
/// (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`), theirs stands. Returns whether the
/// thresholds were set (not on other C libraries, nor when the environment sets them).
pub fn keep_tensor_memory() -> bool {
    if user_set_thresholds() {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only changes the allocator's parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

fn user_set_thresholds() -> bool {
    USER_SETTINGS
        .iter()
        .any(|name| std::env::var_os(name).is_some())
}

/// Returns freed heap pages to the system (glibc); elsewhere nothing to do.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_takes_the_thresholds_unless_the_environment_sets_them() {
        let user_set = super::user_set_thresholds();
        assert_eq!(super::keep_tensor_memory(), !user_set);
    }
}
