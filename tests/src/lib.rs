//! Helpers shared by the integration tests: deterministic test data and a few programs.
#![allow(missing_docs)]

use marill_core::prg::{Prg, Stream};

/// Deterministic test words from a small seed.
pub fn words(n: usize, seed: u8) -> Vec<u64> {
    let mut s = [0u8; 32];
    s[0] = seed;
    let mut v = vec![0u64; n];
    Prg::new(s, Stream::Local).fill(&mut v);
    v
}

/// Signed values uniform in `[-2^bits, 2^bits)`.
pub fn signed(n: usize, bits: u32, seed: u8) -> Vec<u64> {
    words(n, seed).into_iter().map(|w| (((w >> (63 - bits)) as i64) - (1i64 << bits)) as u64).collect()
}

/// Plaintext `a·b` for row-major matrices.
pub fn matmul_plain(a: &[u64], b: &[u64], m: usize, n: usize, k: usize) -> Vec<u64> {
    let mut c = vec![0u64; m * k];
    for i in 0..m {
        for p in 0..n {
            for j in 0..k {
                c[i * k + j] = c[i * k + j].wrapping_add(a[i * n + p].wrapping_mul(b[p * k + j]));
            }
        }
    }
    c
}
