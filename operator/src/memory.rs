//! The operator's own heap, kept within the pod's budget (docs/security.md, "Memory budget"):
//! glibc's allocator keeps one arena per thread that ever allocated, raises its mmap threshold
//! after big blocks are freed (so later big blocks come from the heap and stay there) and hands
//! freed memory back to the system only when asked: a burst (a big chart's output, a large bundle,
//! an operator restart on a busy hub) would stay resident for good. Two arenas, blocks of 256 KiB
//! and more always mapped on their own (and unmapped when freed), and the heap trimmed every few
//! seconds keep the resident set close to what is in use.

use std::time::Duration;

/// How often freed heap goes back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// Blocks at least this large are mapped on their own, and returned to the system when freed.
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// At most two malloc arenas, a fixed mmap threshold; call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread has started yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Returns freed heap to the system, now and every [`TRIM_EVERY`], until the runtime stops.
pub async fn trim_forever() {
    loop {
        trim();
        tokio::time::sleep(TRIM_EVERY).await;
    }
}

/// Returns freed heap to the system.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
