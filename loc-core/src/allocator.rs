//! The allocator of LoC-rs's binaries and benchmarks: mimalloc, keeping freed pages mapped.
//!
//! burn's CPU backend allocates a fresh buffer for every op's result. With glibc, buffers above
//! its mmap threshold go back to the kernel when freed and come back as new pages, which the
//! kernel zeroes one page fault at a time: 29% of an SD-1.5 hypernet step's samples were
//! `clear_page` (perf, 2 cores). mimalloc reuses freed memory, and [`keep_freed_pages`] stops it
//! from purging what stays free (by default after a second). Measured with
//! `hypernet_step --sd15`, seconds per step: glibc 20.2, mimalloc's defaults 31.5, purging by
//! `MADV_FREE` 14.6 (62k page faults), never purging 13.7 (4k page faults). The price: the
//! process keeps its peak footprint until it exits, which is what a training run needs anyway.
//!
//! A binary opts in with [`global_allocator!`](crate::global_allocator) at its root and
//! [`keep_freed_pages`] first thing in `main`.

pub use mimalloc::MiMalloc as Allocator;

/// Makes mimalloc the global allocator of the binary that invokes it.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Allocator = $crate::allocator::Allocator;
    };
}

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the Rust bindings do not name it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never purge freed memory (`mi_option_purge_delay = -1`): a later allocation reuses its pages
/// without faulting them in again.
pub fn keep_freed_pages() {
    // SAFETY: setting a documented option to a documented value; mimalloc reads options
    // atomically, so this is sound at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_option_set_is_the_purge_delay() {
        // SAFETY: reading an option.
        let delay = || unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(delay(), 1000, "mimalloc's default purge delay, in ms");
        super::keep_freed_pages();
        assert_eq!(delay(), -1);
    }
}
