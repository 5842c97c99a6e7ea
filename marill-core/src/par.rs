//! Data parallelism without threads of our own.
//!
//! The core is `no_std` and never spawns a thread. A host that has threads registers an
//! [`Executor`] once ([`set_executor`]); the heavy kernels (the ring's matrix products and
//! the PRG's expansion) then split their output into disjoint pieces and let the executor
//! run the pieces side by side. Without an executor, or with one thread, every kernel runs
//! on the caller's thread exactly as before. The pieces partition the output and each
//! piece's arithmetic is the same as the serial loop's, so results are identical for every
//! thread count (tests check it).
//!
//! `marill-std` provides one on scoped OS threads (`marill_std::threads`), set by the
//! `--threads N` flag of every party and of `marill cost`.

use core::sync::atomic::{AtomicPtr, Ordering};

/// Runs pieces of a data-parallel kernel, possibly concurrently.
pub trait Executor: Sync {
    /// How many pieces are worth making (≥ 1): the threads this executor runs on.
    fn threads(&self) -> usize;

    /// Calls `f(i, piece)` for each consecutive `chunk`-word piece of `out` (the last may be
    /// shorter; `i` counts pieces from 0), and returns when every call has returned. `chunk`
    /// is at least 1.
    fn for_each_chunk(&self, out: &mut [u64], chunk: usize, f: &(dyn Fn(usize, &mut [u64]) + Sync));
}

static EXECUTOR: AtomicPtr<&'static dyn Executor> = AtomicPtr::new(core::ptr::null_mut());

/// Registers `executor` for every later kernel call in this process (`None`: back to the
/// caller's thread). A reference to a reference, because a `&dyn` is two words and an
/// atomic holds one (with `std`: `Box::leak(Box::new(&*Box::leak(Box::new(pool))))`, or
/// statics).
pub fn set_executor(executor: Option<&'static &'static dyn Executor>) {
    let p = executor.map_or(core::ptr::null_mut(), |e| e as *const &'static dyn Executor as *mut _);
    EXECUTOR.store(p, Ordering::Release);
}

/// The registered executor, if any.
pub fn executor() -> Option<&'static dyn Executor> {
    let p = EXECUTOR.load(Ordering::Acquire);
    // `as_ref` on a pointer is unsafe; the pointer only ever comes from a `&'static` in
    // `set_executor`, so read it through a safe helper instead.
    as_static(p)
}

#[allow(unsafe_code)]
fn as_static(p: *mut &'static dyn Executor) -> Option<&'static dyn Executor> {
    // SAFETY: `p` is null or was made in `set_executor` from a `&'static &'static dyn
    // Executor`, which is valid, aligned and immutable for the rest of the program.
    unsafe { p.as_ref() }.copied()
}

/// Threads the registered executor runs on (1 without one).
pub fn threads() -> usize {
    executor().map_or(1, |e| e.threads().max(1))
}

/// Splits `out` into about `exec.threads()` pieces of whole `unit`-word blocks and runs
/// `f(first_unit, piece)` on each, in parallel when there is an executor, `out` has at least
/// `min_words` words and there is more than one block; otherwise `f(0, out)` on this
/// thread. `first_unit` is the index of the piece's first block.
pub(crate) fn split(
    exec: Option<&dyn Executor>,
    out: &mut [u64],
    unit: usize,
    min_words: usize,
    f: &(dyn Fn(usize, &mut [u64]) + Sync),
) {
    let unit = unit.max(1);
    let units = out.len().div_ceil(unit);
    match exec {
        Some(e) if e.threads() > 1 && out.len() >= min_words && units > 1 => {
            let per = units.div_ceil(e.threads().min(units));
            e.for_each_chunk(out, per * unit, &|i, piece| f(i * per, piece));
        }
        _ => f(0, out),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An executor on the caller's thread that runs pieces in reverse order: enough to
    /// check that kernels depend only on their piece, not on the order or thread.
    pub(crate) struct Reversed(pub usize);

    impl Executor for Reversed {
        fn threads(&self) -> usize {
            self.0
        }
        fn for_each_chunk(&self, out: &mut [u64], chunk: usize, f: &(dyn Fn(usize, &mut [u64]) + Sync)) {
            let n = out.len().div_ceil(chunk);
            for i in (0..n).rev() {
                let end = ((i + 1) * chunk).min(out.len());
                f(i, &mut out[i * chunk..end]);
            }
        }
    }

    #[test]
    fn split_covers_every_word_once() {
        static R: Reversed = Reversed(3);
        static E: &dyn Executor = &R;
        let mut buf = [0u64; 100];
        // Without an executor: one call with the whole buffer.
        let calls = core::sync::atomic::AtomicUsize::new(0);
        split(executor(), &mut buf, 7, 0, &|first, piece| {
            calls.fetch_add(1, Ordering::Relaxed);
            assert_eq!(first, 0);
            assert_eq!(piece.len(), 100);
        });
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // Only this test registers an executor in the core's unit tests. A PRG fill big
        // enough to split gives the same stream as on one thread, across odd-length calls.
        let fill = |words: &mut [u64]| {
            let mut g = crate::prg::Prg::new([4; 32], crate::prg::Stream::Deal);
            let (x, y) = words.split_at_mut(3);
            g.fill(x);
            g.fill(y);
        };
        let mut serial = std::vec![0u64; (1 << 17) + 9];
        let mut split_buf = serial.clone();
        fill(&mut serial);
        set_executor(Some(&E));
        assert_eq!(threads(), 3);
        fill(&mut split_buf);
        assert!(serial == split_buf, "the split fill changed the stream");
        split(executor(), &mut buf, 7, 0, &|first, piece| {
            for (j, w) in piece.iter_mut().enumerate() {
                *w += (first * 7 + j) as u64 + 1;
            }
        });
        set_executor(None);
        assert!(buf.iter().enumerate().all(|(i, w)| *w == i as u64 + 1));
        assert_eq!(threads(), 1);
        // Below `min_words`, or one block only: the caller's thread, one call.
        for (min, unit) in [(101, 7), (0, 100)] {
            let calls = core::sync::atomic::AtomicUsize::new(0);
            split(Some(&R), &mut buf, unit, min, &|_, piece| {
                calls.fetch_add(1, Ordering::Relaxed);
                assert_eq!(piece.len(), 100);
            });
            assert_eq!(calls.load(Ordering::Relaxed), 1);
        }
    }
}
