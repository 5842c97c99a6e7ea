//! Threads for the core's data-parallel kernels ([`marill_core::par`]).
//!
//! [`set_threads`]`(n)` registers an executor that runs the pieces of a matrix product or
//! a PRG expansion on `n` scoped OS threads (the caller's thread included), spawned per
//! call: the kernels split only work of at least about a tenth of a millisecond, so the
//! spawn (tens of µs) is small beside it, and no pool outlives a call. With `n = 1` the
//! kernels run on the caller's thread as before. Results are the same for every `n`.
//!
//! The setting is process-wide: three parties in one process (`marill cost`) each split
//! their own products over `n` threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use marill_core::par::{self, Executor};

struct Scoped {
    threads: AtomicUsize,
}

impl Executor for Scoped {
    fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed).max(1)
    }

    fn for_each_chunk(&self, out: &mut [u64], chunk: usize, f: &(dyn Fn(usize, &mut [u64]) + Sync)) {
        let pieces: Vec<(usize, &mut [u64])> = out.chunks_mut(chunk.max(1)).enumerate().collect();
        let helpers = self.threads().min(pieces.len()).saturating_sub(1);
        // A shared queue: every thread, the caller's included, takes the next piece until
        // none is left, so a thread that could not be spawned (a ulimit) loses no work.
        let queue = std::sync::Mutex::new(pieces.into_iter());
        let work = || {
            loop {
                let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
                let Some((i, piece)) = next else { break };
                f(i, piece);
            }
        };
        std::thread::scope(|s| {
            for _ in 0..helpers {
                if std::thread::Builder::new().name("marill-par".into()).spawn_scoped(s, work).is_err() {
                    break;
                }
            }
            work();
        });
    }
}

static SCOPED: Scoped = Scoped { threads: AtomicUsize::new(1) };
static EXECUTOR: &dyn Executor = &SCOPED;

/// Split the core's heavy kernels across `n` threads (`n ≤ 1`: the caller's thread only).
pub fn set_threads(n: usize) {
    SCOPED.threads.store(n.max(1), Ordering::Relaxed);
    par::set_executor((n > 1).then_some(&EXECUTOR));
}

/// The threads the kernels use now.
pub fn threads() -> usize {
    par::threads()
}

/// The default for a party's `--threads`: the cores this process may use (1 if unknown).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The default for `--threads` where all three parties run in this process (`marill cost`,
/// the `cost` harness): a third of the cores each, at least 1, so the parties do not
/// outnumber the cores.
pub fn shared_default_threads() -> usize {
    (default_threads() / 3).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use marill_core::ring::{self, MatDims};

    #[test]
    fn products_and_streams_are_the_same_on_any_number_of_threads() {
        let (m, n, k) = (67, 130, 97);
        let words = |len: usize, seed: u64| -> Vec<u64> {
            (0..len as u64).map(|i| (i + seed).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)).collect()
        };
        let (a, b, v) = (words(m * n, 1), words(n * k, 2), words(4000, 3));
        let w = words(4000 * 1100, 4);
        let stream = |len: usize| {
            let mut g = marill_core::prg::Prg::new([7; 32], marill_core::prg::Stream::Deal);
            let mut out = vec![0u64; len];
            g.fill(&mut out[..1]);
            g.fill(&mut out[1..]);
            out
        };
        let run = || {
            let mut c = vec![0u64; m * k];
            ring::matmul(&a, &b, &mut c, MatDims::new(m, n, k)).unwrap();
            let mut y = vec![0u64; 1100];
            ring::matmul(&v, &w, &mut y, MatDims::new(1, 4000, 1100)).unwrap();
            let n = (1 << 17) + 3;
            let (x, mut z) = (&w[..n], w[n..2 * n].to_vec());
            let mut e = vec![0u64; n];
            ring::mul(x, &z, &mut e).unwrap();
            ring::axpy(0x1234_5678_9abc, x, &mut z).unwrap();
            (c, y, stream((1 << 17) + 5), e, z)
        };
        let serial = run();
        for t in [2, 3, 8] {
            set_threads(t);
            assert_eq!(threads(), t);
            assert!(run() == serial, "{t} threads changed a result");
        }
        set_threads(1);
        assert_eq!(threads(), 1);
    }
}
