//! Matrix products for plain 2PC with RLWE homomorphic encryption, in the style of
//! Cheetah (coefficient encoding, no rotations), written here rather than taken from a
//! crate: the plaintext modulus must be the share ring itself, t = 2^64, which neither
//! `fhe` (t < 2^62, NTT-friendly for its batching) nor the SEAL bindings (a C++ build)
//! offer in a way this no-network, 2-core CI can build.
//!
//! **Parameters.** Ring `Z_q[X]/(X^N + 1)` with `N = 8192` and `q` the product of three
//! 61-bit primes `≡ 1 mod 2N` (`log2 q ≈ 183`). The homomorphicencryption.org standard
//! (Albrecht et al., 2018, Table 1, ternary secret, classical) allows `log2 q ≤ 218` at
//! `N = 8192` for 128-bit security, so these parameters are within it. Secrets are uniform
//! ternary, errors centred binomial with η = 21 (σ ≈ 3.24, `|e| ≤ 21`).
//!
//! **Encoding** (BFV with t = 2^64). A message `m ∈ Z_t^N` is encrypted as
//! `c0 + c1·s = round(q·m/t) + e`; with the rounded scale (not `⌊q/t⌋·m`) a product with a
//! plaintext polynomial `w` of small integer coefficients gives `round(q·(m·w mod t)/t)`
//! plus noise `e·w + ε·w` (|ε| ≤ 1/2), because the multiples of `t` wrap to multiples of
//! `q`. Decryption is `round(t·(c0 + c1·s)/q) mod t`, computed from the residues with the
//! CRT and 128-bit integer division.
//!
//! **Products.** For `X (m×n)` at the encrypting party E and `Y (n×k)` at the multiplying
//! party M, E packs blocks of `bm × bn` into `x̂ = Σ X[i][j]·z^(i·bn + j)` and M packs
//! `bn × bk` into `ŷ = Σ Y[j][l]·z^(l·bm·bn + bn − 1 − j)`; coefficient
//! `l·bm·bn + i·bn + bn − 1` of `x̂·ŷ` is then `Σ_j X[i][j]·Y[j][l]` and no other pair of
//! terms lands there (`bm·bn·bk + bn − 1 ≤ N` keeps every term below `X^N`). The block
//! shape is chosen per call to send the fewest ciphertexts. M's plaintext coefficients
//! must be small, so a uniform share is split into two signed 32-bit digits (E encrypts
//! `X` and `2^32·X`); a weight must have `|w| < 2^31` (fixed-point weights are far smaller).
//!
//! **Circuit privacy** (M's weights must not leak through noise or randomness). M adds an
//! encryption of zero under E's public key (fresh `u`, `e1`, `e2`), a uniform mask `R`
//! (its share is `−R`), and flooding noise uniform in `[−2^f, 2^f)` with
//! `2^f ≥ 2^40·B`, where `B` bounds the noise from public shapes alone
//! (`22·Σ‖ŷ‖₁ + 43·N`): statistical distance `≤ 2^−40`. A call whose bound does not leave
//! `2^f + B < q/(2t)` is refused before anything is sent.
//!
//! **What travels.** E sends a 32-byte seed and each input ciphertext's `c0` (the `c1` are
//! expanded from the seed): `3·8·N` bytes each. M switches each output ciphertext from `q`
//! to `2^80` after flooding (the scaled noise is below 2^−18 and the rounding adds at most
//! `‖s‖₁/2 + 1/2 ≤ 2^12`, under the `2^15` that decryption at `2^80` tolerates) and returns
//! its `c1` in full and its `c0` only at the `bm·bk` positions E reads, 10 bytes per
//! coefficient. One round trip per product.

mod engine;
mod ntt;
mod plan;

pub use engine::Engine;
pub use ntt::{Ntt, Rns};
pub use plan::Plan;

/// The ring degree.
#[cfg(not(fuzzing))]
pub const N: usize = 8192;
/// The ring degree in fuzz builds (`cfg(fuzzing)`, set by cargo-fuzz): 256, so that an
/// execution that reaches the HE products costs a fraction of one at 8192 (the products
/// were 45 % of the fuzzer's time). Every formula here is generic in `N` (the primes are
/// `≡ 1 mod 2·8192`, hence `mod 2·256`), and every op's tests pass at both sizes
/// (`RUSTFLAGS="--cfg fuzzing" cargo test -p marill-tests --test protocol`). Not secure:
/// never a deployed party's size.
#[cfg(fuzzing)]
pub const N: usize = 256;
/// The RNS primes: the three largest below 2^61 that are `≡ 1 mod 2N`.
pub const PRIMES: [u64; 3] = [0x1fff_ffff_fffa_4001, 0x1fff_ffff_fff7_4001, 0x1fff_ffff_fff0_c001];
/// Statistical security of the noise flooding, in bits.
pub const SIGMA: u32 = 40;
/// Bound of the centred binomial errors.
const ETA: i64 = 21;
/// Returned ciphertexts are switched to the modulus `2^SWITCH` (see the module docs).
pub const SWITCH: u32 = 80;
const SWITCH_MASK: u128 = (1u128 << SWITCH) - 1;
/// Bytes of one switched coefficient on the wire.
pub const SWITCH_BYTES: usize = (SWITCH as usize).div_ceil(8);

#[cfg(test)]
mod tests {
    use super::ntt::*;
    use super::*;
    use marill_core::prg::{Prg, Stream};
    use marill_core::ring::MatDims;

    fn negacyclic(a: &[u64], b: &[u64], p: u64) -> Vec<u64> {
        let n = a.len();
        let mut c = vec![0u64; n];
        for i in 0..n {
            for j in 0..n {
                let v = mul_mod(a[i], b[j], p);
                let k = i + j;
                if k < n {
                    c[k] = (c[k] + v) % p;
                } else {
                    c[k - n] = (c[k - n] + p - v) % p;
                }
            }
        }
        c
    }

    #[test]
    fn ntt_multiplies_negacyclically() {
        for n in [8usize, 64, 1024] {
            for p in PRIMES {
                let t = Ntt::new(p, n).unwrap();
                let mut prg = Prg::new([n as u8; 32], Stream::Local);
                let a: Vec<u64> = (0..n).map(|_| prg.next_u64() % p).collect();
                let b: Vec<u64> = (0..n).map(|_| prg.next_u64() % p).collect();
                let want = negacyclic(&a, &b, p);
                let (mut fa, mut fb) = (a.clone(), b.clone());
                t.forward(&mut fa);
                t.forward(&mut fb);
                let mut fc: Vec<u64> = fa.iter().zip(&fb).map(|(x, y)| mul_mod(*x, *y, p)).collect();
                t.inverse(&mut fc);
                assert_eq!(fc, want, "n = {n}");
                t.inverse(&mut fa);
                assert_eq!(fa, a);
            }
        }
    }

    #[test]
    fn barrett_reduces_like_the_remainder() {
        let mut prg = Prg::new([6; 32], Stream::Local);
        for (i, p) in PRIMES.iter().enumerate() {
            let edge = [0u128, 1, u128::from(*p), u128::from(*p - 1) * u128::from(*p - 1) + u128::from(*p - 1)];
            for x in edge.into_iter().chain((0..10_000).map(|_| {
                let (a, b) = (prg.next_u64() % p, prg.next_u64() % p);
                u128::from(a) * u128::from(b) + u128::from(prg.next_u64() % p)
            })) {
                assert_eq!(u128::from(barrett(x, i)), x % u128::from(*p));
            }
        }
    }

    #[test]
    fn lazy_sums_reduce_like_eager_ones() {
        let mut prg = Prg::new([8; 32], Stream::Local);
        let mut a = vec![0u64; 3 * N];
        let mut b = vec![0u64; 3 * N];
        let mut eager = vec![0u64; 3 * N];
        let mut lazy = vec![0u128; 3 * N];
        for round in 0..3 * LAZY {
            uniform_poly(&mut prg, &mut a);
            // The largest residues too.
            if round == 0 {
                for (i, p) in PRIMES.iter().enumerate() {
                    a[i * N..(i + 1) * N].fill(p - 1);
                    b[i * N..(i + 1) * N].fill(p - 1);
                }
            } else {
                uniform_poly(&mut prg, &mut b);
            }
            pointwise_acc(&mut eager, &a, &b);
            if round % LAZY == 0 && round > 0 {
                lazy_fold(&mut lazy);
            }
            lazy_mac(&mut lazy, &a, &b);
        }
        lazy_fold(&mut lazy);
        assert!(lazy.iter().zip(&eager).all(|(l, e)| *l == u128::from(*e)));
    }

    #[test]
    fn scale_and_descale_invert_each_other() {
        let rns = Rns::new().unwrap();
        assert!(rns.half_delta_bits >= 117);
        let mut prg = Prg::new([5; 32], Stream::Local);
        for _ in 0..1000 {
            let m = prg.next_u64();
            let r = core::array::from_fn(|i| rns.scale(m, i));
            assert_eq!(rns.descale(r), m);
        }
        for m in [0u64, 1, u64::MAX, 1 << 63] {
            let r = core::array::from_fn(|i| rns.scale(m, i));
            assert_eq!(rns.descale(r), m);
        }
    }

    #[test]
    fn plans_respect_the_packing_and_noise_limits() {
        let rns = Rns::new().unwrap();
        for (m, n, k) in [(1, 3200, 3200), (128, 768, 768), (20, 128, 384), (7, 5, 3), (64, 64, 64)] {
            for digits in [1, 2] {
                let p = Plan::new(MatDims { m, n, k }, digits, &rns).unwrap();
                assert!(p.bm * p.bn * p.bk + p.bn <= N + 1, "{p:?}");
                assert!(p.flood_bits + 1 < rns.half_delta_bits);
            }
        }
    }
}
