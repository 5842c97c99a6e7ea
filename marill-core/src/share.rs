//! Share layouts, and splitting and reconstruction for inputs and tests.
//!
//! * **Additive (2-of-2)** over Z_2^64: one plane, `x = x0 + x1`. Used by 2PC-Dealer.
//! * **Replicated (2-of-3)**, ABY3: `x = t0 + t1 + t2`; party `i` holds `(t_i, t_{i+1})`,
//!   stored planar: a vector of `n` elements is `2n` words `[t_i (n) | t_{i+1} (n)]`.
//! * **Boolean (XOR, 2-of-2)**: bits packed 64 to a word, element `e` at bit `e % 64` of
//!   word `e / 64` ([`bit_words`]). In every setting boolean shares live between parties 0
//!   and 1; in 3PC party 2 deals their correlations.

use crate::error::{Error, Result, ensure_shape};
use crate::ring;

/// Words that hold `n` packed bits.
pub const fn bit_words(n: usize) -> usize {
    n.div_ceil(64)
}

/// Bit `e` of a packed bit vector.
#[inline]
pub fn get_bit(bits: &[u64], e: usize) -> u64 {
    (bits[e / 64] >> (e % 64)) & 1
}

/// Zero the bits past `n` in the last word of a packed vector (so no stale bit is sent).
pub fn mask_tail(bits: &mut [u64], n: usize) {
    if let (false, Some(last)) = (n.is_multiple_of(64), bits.last_mut()) {
        *last &= (1u64 << (n % 64)) - 1;
    }
}

/// Set bit `e` of a packed bit vector to the low bit of `v`.
#[inline]
pub fn set_bit(bits: &mut [u64], e: usize, v: u64) {
    let w = &mut bits[e / 64];
    *w = (*w & !(1u64 << (e % 64))) | ((v & 1) << (e % 64));
}

/// Split `x` additively with mask `r`: `s0 = x - r`, `s1 = r`.
pub fn split_additive(x: &[u64], r: &[u64], s0: &mut [u64], s1: &mut [u64]) -> Result<()> {
    ensure_shape(x.len() == r.len() && x.len() == s0.len() && x.len() == s1.len())?;
    ring::sub(x, r, s0)?;
    s1.copy_from_slice(r);
    Ok(())
}

/// `out = s0 + s1`.
pub fn reconstruct_additive(s0: &[u64], s1: &[u64], out: &mut [u64]) -> Result<()> {
    ring::add(s0, s1, out)
}

/// Split `x` into replicated shares with masks `r0 = t0`, `r1 = t1`; `t2 = x - t0 - t1`.
/// `out[i]` receives party `i`'s `2n` planar words.
pub fn split_replicated(x: &[u64], r0: &[u64], r1: &[u64], out: [&mut [u64]; 3]) -> Result<()> {
    let n = x.len();
    ensure_shape(r0.len() == n && r1.len() == n && out.iter().all(|o| o.len() == 2 * n))?;
    let [p0, p1, p2] = out;
    // t2 goes to p1 plane 1 and p2 plane 0.
    for e in 0..n {
        let t0 = r0[e];
        let t1 = r1[e];
        let t2 = x[e].wrapping_sub(t0).wrapping_sub(t1);
        p0[e] = t0;
        p0[n + e] = t1;
        p1[e] = t1;
        p1[n + e] = t2;
        p2[e] = t2;
        p2[n + e] = t0;
    }
    Ok(())
}

/// Reconstruct from all three parties' replicated shares, checking that the copies each
/// component has at two parties agree ([`Error::Malformed`] if not).
pub fn reconstruct_replicated(shares: [&[u64]; 3], out: &mut [u64]) -> Result<()> {
    let n = out.len();
    ensure_shape(shares.iter().all(|s| s.len() == 2 * n))?;
    for i in 0..3 {
        let next = (i + 1) % 3;
        if shares[i][n..] != shares[next][..n] {
            return Err(Error::Malformed);
        }
    }
    for e in 0..n {
        out[e] = shares[0][e].wrapping_add(shares[1][e]).wrapping_add(shares[2][e]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn additive_round_trip(x in proptest::collection::vec(any::<u64>(), 0..40), seed in any::<u64>()) {
            let r: heapless_free::V = x.iter().enumerate().map(|(i, v)| v.rotate_left(7) ^ seed ^ i as u64).collect();
            let (mut s0, mut s1, mut out) = (x.clone(), x.clone(), x.clone());
            split_additive(&x, &r, &mut s0, &mut s1).unwrap();
            reconstruct_additive(&s0, &s1, &mut out).unwrap();
            prop_assert_eq!(out, x);
        }

        #[test]
        fn replicated_round_trip(x in proptest::collection::vec(any::<u64>(), 0..40), a in any::<u64>(), b in any::<u64>()) {
            let n = x.len();
            let r0: heapless_free::V = (0..n).map(|i| a.wrapping_mul(i as u64 + 3)).collect();
            let r1: heapless_free::V = (0..n).map(|i| b.wrapping_mul(i as u64 + 5)).collect();
            let (mut p0, mut p1, mut p2) = (vec![0; 2 * n], vec![0; 2 * n], vec![0; 2 * n]);
            split_replicated(&x, &r0, &r1, [&mut p0, &mut p1, &mut p2]).unwrap();
            let mut out = vec![0; n];
            reconstruct_replicated([&p0, &p1, &p2], &mut out).unwrap();
            prop_assert_eq!(&out, &x);
            if n > 0 {
                p1[0] ^= 1;
                prop_assert_eq!(reconstruct_replicated([&p0, &p1, &p2], &mut out), Err(Error::Malformed));
            }
        }
    }

    /// Tests may allocate: proptest needs `Vec`.
    mod heapless_free {
        extern crate std;
        pub type V = std::vec::Vec<u64>;
    }
    extern crate std;
    use std::vec;

    #[test]
    fn bits() {
        let mut b = [0u64; 2];
        set_bit(&mut b, 70, 1);
        set_bit(&mut b, 3, 1);
        set_bit(&mut b, 3, 0);
        assert_eq!(get_bit(&b, 70), 1);
        assert_eq!(b, [0, 1 << 6]);
        assert_eq!(bit_words(65), 2);
    }
}
