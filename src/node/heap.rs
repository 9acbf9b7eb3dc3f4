//! The node's heap, counted: a [`GlobalAlloc`] wrapper that keeps the bytes the program holds (allocated and
//! not yet freed) and their peak, and the process's resident memory from `/proc/self/status`.
//!
//! Why: RSS alone cannot tell a leak from an allocator keeping freed pages. The live bytes can: a leak grows
//! them, an allocator's retention does not. `/diagnostics` reports both (`heap_live_mib`, `heap_peak_mib`,
//! `rss_mib`); the overload test and the soak read them. Not here: which allocator (the binary chooses) or
//! memory allocated outside Rust's allocator (ONNX Runtime's own, DDS's C++ buffers): those show in RSS only.
//! Cost: two relaxed atomic additions per allocation and a compare for the peak.
//!
//! Also here: [`settle_c_malloc`], the one setting of the C allocator (glibc's malloc, which serves ONNX Runtime,
//! DDS and rcl) that keeps the node's resident memory from creeping up (see its doc).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Wraps an allocator and counts the bytes it holds for the program (see the module doc).
pub struct CountingAllocator<A>(pub A);

impl<A> CountingAllocator<A> {
    fn added(size: usize) {
        let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
        if live > PEAK_BYTES.load(Ordering::Relaxed) {
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
    }

    fn removed(size: usize) {
        LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the wrapped allocator unchanged; the counters only observe sizes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            Self::added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        Self::removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            Self::removed(layout.size());
            Self::added(new_size);
        }
        p
    }
}

/// The heap as counted so far (zero when the binary does not install [`CountingAllocator`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeapUse {
    /// Bytes allocated through Rust's allocator and not freed.
    pub live_bytes: usize,
    /// The most `live_bytes` has been.
    pub peak_bytes: usize,
}

/// The counters now.
pub fn heap_use() -> HeapUse {
    HeapUse {
        live_bytes: LIVE_BYTES.load(Ordering::Relaxed),
        peak_bytes: PEAK_BYTES.load(Ordering::Relaxed),
    }
}

/// The process's resident set in bytes (`VmRSS` of `/proc/self/status`, Linux); `None` where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Large C allocations (ONNX Runtime's tensors of a frame, a few hundred kB to several MB) from `mmap` from this
/// size up, so that their pages go back to the system when freed.
pub const C_MMAP_THRESHOLD_BYTES: usize = 512 * 1024;

/// Fixes glibc's `mmap` threshold at [`C_MMAP_THRESHOLD_BYTES`] (and the trim threshold at four times it), unless
/// the environment sets `MALLOC_MMAP_THRESHOLD_` (glibc's own tunable: then that value holds). Returns the
/// threshold set, `None` when left alone (set by the environment, or not glibc).
///
/// Why: glibc raises its threshold each time an `mmap`ed block is freed (up to 32 MiB), so after the first frames
/// every tensor of ONNX Runtime's worker threads comes from their malloc arenas, which fragment and are never
/// given back: the node's RSS climbed for minutes (196 → 218 MiB in a 10-minute stereo soak). With the threshold
/// fixed it stays near 120 MiB (docs/reliability.md). Call it before DDS's and ONNX Runtime's threads start.
pub fn settle_c_malloc() -> Option<usize> {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return None;
    }
    set_c_mmap_threshold(C_MMAP_THRESHOLD_BYTES)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_c_mmap_threshold(bytes: usize) -> Option<usize> {
    let mmap = libc::c_int::try_from(bytes).ok()?;
    let trim = libc::c_int::try_from(4 * bytes).ok()?;
    // SAFETY: mallopt takes plain integers and has no other precondition; it returns 0 on a refused value.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
    };
    ok.then_some(bytes)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_c_mmap_threshold(_bytes: usize) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_held_and_not_what_was_freed() {
        let counting = CountingAllocator(std::alloc::System);
        let before = heap_use().live_bytes;
        let layout = Layout::from_size_align(1 << 20, 8).unwrap();
        // SAFETY: the layout is non-zero; the pointer is freed with the same layout.
        unsafe {
            let p = counting.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(heap_use().live_bytes - before, 1 << 20);
            assert!(heap_use().peak_bytes >= before + (1 << 20));
            let q = counting.realloc(p, layout, 3 << 20);
            assert!(!q.is_null());
            assert_eq!(heap_use().live_bytes - before, 3 << 20);
            counting.dealloc(q, Layout::from_size_align(3 << 20, 8).unwrap());
        }
        assert_eq!(heap_use().live_bytes, before);
    }

    /// Whether a fresh C buffer of `bytes` is `mmap`ed (glibc's count of mapped bytes grows by it).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn mapped_when_allocated(bytes: usize) -> bool {
        // SAFETY: malloc/free of a plain buffer; mallinfo2 only reads glibc's statistics.
        unsafe {
            let before = libc::mallinfo2().hblkhd;
            // black_box: an unused malloc/free pair is otherwise removed by the compiler
            let p = std::hint::black_box(libc::malloc(bytes));
            assert!(!p.is_null());
            let during = libc::mallinfo2().hblkhd;
            libc::free(std::hint::black_box(p));
            during >= before + bytes
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_buffer_freed_once_is_still_mapped_the_next_time() {
        assert_eq!(
            set_c_mmap_threshold(C_MMAP_THRESHOLD_BYTES),
            Some(C_MMAP_THRESHOLD_BYTES)
        );
        // with glibc's dynamic threshold, freeing a mapped 4 MiB block raises the threshold to 4 MiB and the next
        // such block is cut from the heap; fixed, every one is mapped (and unmapped when freed). Other test
        // threads map and unmap their own blocks meanwhile: one of three tries must show it.
        let bytes = 4 << 20;
        let mapped = (0..3).any(|_| mapped_when_allocated(bytes) && mapped_when_allocated(bytes));
        assert!(
            mapped,
            "a {bytes}-byte buffer was not mapped after the first was freed"
        );
    }

    #[test]
    fn reads_the_resident_set() {
        let rss = resident_bytes().expect("Linux /proc/self/status");
        assert!(rss > 1 << 20, "{rss}");
    }
}
