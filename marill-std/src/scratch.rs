//! A heap scratch that grows to the largest op it has served, up to a cap.

use marill_core::{Error, Scratch};

/// Growable scratch memory for the protocols. Its size depends only on the shapes this
/// party asks for, never on peer input; `max_words` bounds it anyway.
pub struct HeapScratch {
    buf: Vec<u64>,
    max_words: usize,
}

impl HeapScratch {
    /// Default cap: 2^31 words (16 GiB), above any op marill issues.
    pub const DEFAULT_MAX_WORDS: usize = 1 << 31;

    /// An empty scratch with the default cap.
    pub fn new() -> Self {
        Self::with_max(Self::DEFAULT_MAX_WORDS)
    }

    /// An empty scratch that refuses requests above `max_words`.
    pub fn with_max(max_words: usize) -> Self {
        Self { buf: Vec::new(), max_words }
    }

    /// Words currently held.
    pub fn capacity_words(&self) -> usize {
        self.buf.len()
    }
}

impl Default for HeapScratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch for HeapScratch {
    fn words(&mut self, words: usize) -> Result<&mut [u64], Error> {
        if words > self.max_words {
            return Err(Error::BufferTooSmall { required: words });
        }
        if self.buf.len() < words {
            // A fresh zeroed block rather than `resize`: nothing in the old one is needed, so
            // there is nothing to copy, and the allocator can hand out untouched zero pages.
            self.buf = Vec::new();
            self.buf = vec![0; words];
        }
        Ok(&mut self.buf[..words])
    }
}
