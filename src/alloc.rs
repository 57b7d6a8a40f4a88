//! Allocator tuning for tensor-sized buffers, and heap accounting. Binaries, benches and
//! examples install mimalloc (the binary inside [`Counting`]) as the global allocator and call
//! [`keep_freed_memory`] first thing.

/// mimalloc's `mi_option_purge_delay` (its index in `mi_option_e`, mimalloc v3's
/// `include/mimalloc.h`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the OS.
///
/// A training step frees and re-allocates tens of megabytes of activations; by default
/// mimalloc purges them after 10 ms and every reuse then page-faults and zeroes them again
/// (measured with `perf stat -e page-faults target/release/examples/unet_timing train 64 3 64`:
/// 93k page faults and 4.8 s for 3 steps at batch 64, against 1.3k and 4.2 s
/// with this set).
pub fn keep_freed_memory() {
    // SAFETY: setting an option is a plain store in mimalloc's option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Tells mimalloc to hand freed memory back to the OS at once: for a command whose buffers
/// are few and large (`diffuse noise` of a 4096-px picture: 48 MB a frame, 200 MB a tensor)
/// rather than many and reused, where keeping them only adds each thread's peak to the RSS
/// (measured with `/usr/bin/time -v diffuse noise --max-side 4096 --frames 50`: see
/// `docs/limits.md`).
pub fn return_freed_memory() {
    // SAFETY: as in `keep_freed_memory`.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// A global allocator that wraps another and counts the live heap bytes and their peak, so
/// `diffuse bench` can report each part's peak memory: `static A: Counting<MiMalloc> =
/// Counting(MiMalloc);`. Two relaxed atomic adds per allocation.
pub struct Counting<A>(pub A);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Relaxed) + n;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator; only counters change.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.0.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.0.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.0.realloc(ptr, layout, new_size);
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

/// Starts a new peak window; returns the live heap bytes now, or None when the program's
/// global allocator is not [`Counting`].
pub fn reset_peak() -> Option<usize> {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    (live > 0).then_some(live)
}

/// The most live heap bytes since the last [`reset_peak`], or None without [`Counting`].
pub fn peak_bytes() -> Option<usize> {
    let peak = PEAK.load(Relaxed);
    (peak > 0).then_some(peak)
}
