//! Element-wise loops split across rayon's threads (LoC-rs patch).
//!
//! Every element is computed by the same closure as on one thread, so the results are
//! bit-identical; only which thread computes which stretch changes. Below
//! [`MIN_PARALLEL_LEN`] elements the loop stays on the calling thread, where waking the
//! pool costs more than it saves.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Fewest elements worth splitting: ~32k f32 (128 KiB) takes a few microseconds per
/// core, about what handing work to the pool costs.
#[cfg(any(feature = "rayon", test))]
pub(crate) const MIN_PARALLEL_LEN: usize = 1 << 15;

/// Calls `f(start, chunk)` over `dst` cut into one chunk per thread, `start` being the
/// chunk's first index in `dst`.
pub(crate) fn for_each_chunk<D, F>(dst: &mut [D], f: F)
where
    D: Send,
    F: Fn(usize, &mut [D]) + Sync,
{
    #[cfg(feature = "rayon")]
    if dst.len() >= MIN_PARALLEL_LEN && rayon::current_num_threads() > 1 {
        let chunk = chunk_len(dst.len());
        dst.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i * chunk, c));
        return;
    }
    f(0, dst)
}

/// Calls `f(index, row)` for each `row_len`-long row of `dst`, rows spread over the threads.
pub(crate) fn for_each_row<D, F>(dst: &mut [D], row_len: usize, f: F)
where
    D: Send,
    F: Fn(usize, &mut [D]) + Sync + Send,
{
    #[cfg(feature = "rayon")]
    if dst.len() >= MIN_PARALLEL_LEN && rayon::current_num_threads() > 1 {
        dst.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, row)| f(i, row));
        return;
    }
    for (i, row) in dst.chunks_mut(row_len).enumerate() {
        f(i, row)
    }
}

/// A vector of `len` elements, each chunk filled by `f(start, chunk)` (possibly on
/// several threads). `f` must write every element of the chunk it is given.
pub(crate) fn collect_chunks<T, F>(len: usize, f: F) -> Vec<T>
where
    T: Copy + Send,
    F: Fn(usize, &mut [MaybeUninit<T>]) + Sync,
{
    let mut out: Vec<T> = Vec::with_capacity(len);
    for_each_chunk(&mut out.spare_capacity_mut()[..len], f);
    // SAFETY: `f` wrote each of the first `len` elements, and `T: Copy` needs no drop.
    unsafe { out.set_len(len) };
    out
}

/// One chunk per thread, a multiple of 64 elements so chunks start on cache lines.
#[cfg(feature = "rayon")]
fn chunk_len(len: usize) -> usize {
    len.div_ceil(rayon::current_num_threads())
        .next_multiple_of(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_index_once() {
        let n = 3 * MIN_PARALLEL_LEN + 17;
        let mut v = alloc::vec![0u32; n];
        for_each_chunk(&mut v, |start, c| {
            for (i, x) in c.iter_mut().enumerate() {
                *x += (start + i) as u32 + 1;
            }
        });
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32 + 1));

        let collected = collect_chunks(n, |start, c| {
            for (i, x) in c.iter_mut().enumerate() {
                x.write(2 * (start + i) as u32);
            }
        });
        assert!(
            collected
                .iter()
                .enumerate()
                .all(|(i, &x)| x == 2 * i as u32)
        );
    }
}
