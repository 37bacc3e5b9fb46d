//! How LoC-rs's binaries and benchmarks run on the CPU: mimalloc keeping freed pages, and the
//! work on a thread of rayon's pool.
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
//! burn's CPU ops split their loops over rayon's pool. Called from a thread outside the pool, each
//! op hands its work over and sleeps until a worker wakes it: the tiny world's step makes
//! thousands of small ops, and these hand-offs cost it 2.1 s of system time in 6 s of CPU time.
//! [`run`] makes the calling code a worker itself, which keeps one of the chunks and steals
//! back what nobody took: the tiny step went from 0.52-0.58 s to 0.42-0.47 s (system time 0.4 s).
//!
//! A binary opts in with [`global_allocator!`](crate::global_allocator) at its root and wraps its
//! `main` in [`run`].

pub use mimalloc::MiMalloc as Allocator;

/// Makes mimalloc the global allocator of the binary that invokes it.
#[macro_export]
macro_rules! global_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::runtime::Allocator = $crate::runtime::Allocator;
    };
}

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the Rust bindings do not name it).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The stack of rayon's threads, one of which runs [`run`]'s work: a main thread's 8 MiB, not a
/// spawned thread's 2 MiB.
const STACK_BYTES: usize = 8 << 20;

/// Runs `work` as a binary's main code: freed pages kept ([`keep_freed_pages`]) and `work` on a
/// thread of rayon's global pool, so that burn's parallel ops start on the calling thread.
///
/// With a single thread in the pool (`RAYON_NUM_THREADS=1`) `work` stays on the calling thread: a
/// lone worker that blocked in `work` (waiting for a data loader, say) would leave nobody to run
/// what the loader's ops hand to the pool.
pub fn run<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    keep_freed_pages();
    // Fails only when the pool already runs (a caller built it first); its settings then stand.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(STACK_BYTES).build_global();
    if rayon::current_num_threads() < 2 {
        return work();
    }
    rayon::scope(|_| work())
}

/// Never purge freed memory (`mi_option_purge_delay = -1`): a later allocation reuses its pages
/// without faulting them in again.
fn keep_freed_pages() {
    // SAFETY: setting a documented option to a documented value; mimalloc reads options
    // atomically, so this is sound at any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    /// One test: [`super::run`] sets the process-wide option that it reads first.
    #[test]
    fn run_keeps_freed_pages_and_works_on_a_pool_thread() {
        // SAFETY: reading an option.
        let delay = || unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        assert_eq!(delay(), 1000, "mimalloc's default purge delay, in ms");
        let on_pool_thread = super::run(|| rayon::current_thread_index().is_some());
        assert_eq!(delay(), -1);
        assert_eq!(on_pool_thread, rayon::current_num_threads() > 1);
    }
}
