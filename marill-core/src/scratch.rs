//! Temporary memory for protocol operations, provided by the caller.
//!
//! The core never allocates. An operation asks its [`Scratch`] for the words it needs
//! (the amount is documented and given by a `const fn` next to each op) *before* it sends
//! anything, so a scratch that is too small is an error on this party alone and never
//! leaves the parties out of step.

use crate::error::{Error, Result};

/// A source of temporary `u64` words.
pub trait Scratch {
    /// A zero-initialised or stale region of exactly `words` words (contents unspecified),
    /// or [`Error::BufferTooSmall`] if this scratch cannot provide it.
    fn words(&mut self, words: usize) -> Result<&mut [u64]>;
}

/// A fixed caller slice: enough for ops up to its size, `BufferTooSmall` beyond.
impl Scratch for &mut [u64] {
    fn words(&mut self, words: usize) -> Result<&mut [u64]> {
        let len = self.len();
        self.get_mut(..words).ok_or(Error::BufferTooSmall { required: words.max(len) })
    }
}

/// Split `buf` into consecutive slices of the given lengths (an allocation-free
/// `split_at_mut` chain). Callers size `buf` with the op's `*_scratch` function; a short
/// buffer yields short trailing slices (and fails a debug assertion in tests).
pub(crate) fn carve<'a, const K: usize>(mut buf: &'a mut [u64], lens: [usize; K]) -> [&'a mut [u64]; K] {
    debug_assert!(lens.iter().sum::<usize>() <= buf.len(), "scratch carved beyond its size");
    let mut out: [&'a mut [u64]; K] = core::array::from_fn(|_| <&mut [u64]>::default());
    for (slot, len) in out.iter_mut().zip(lens) {
        let take = len.min(buf.len());
        let (head, tail) = core::mem::take(&mut buf).split_at_mut(take);
        *slot = head;
        buf = tail;
    }
    out
}
