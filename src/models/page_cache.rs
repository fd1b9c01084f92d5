//! Letting go of checkpoint bytes once a tensor lives on the GPU.
//!
//! The loaders read weights with positioned reads (no mmap), so no host copy outlives a tensor's
//! upload in the process itself; the kernel's page cache still keeps the file's pages. On a
//! Jetson the GPU and the CPU share one DRAM, and those cached pages would hold a second copy of
//! every weight in the memory the CUDA allocations come from. For a tensor read onto a GPU the
//! range is dropped from the cache as soon as it is uploaded; CPU loads keep the cache (a second
//! load of the same model is then fast, and nothing is duplicated there that a process holds).

use std::fs::File;
use std::os::fd::AsRawFd;

use candle_core::Device;

/// Drops `len` bytes at `start` of `file` from the page cache when `device` is not the CPU.
pub fn release_after_upload(file: &File, start: u64, len: u64, device: &Device) {
    if device.is_cpu() || len == 0 {
        return;
    }
    let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is open for the
    // lifetime of `file`. The call is advice: when it fails, the pages merely stay cached.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED);
    }
}
