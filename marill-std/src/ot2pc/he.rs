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

use marill_core::channel::{Channel, PartyId, recv_words, send_words};
use marill_core::error::{Error, Result, ensure_shape};
use marill_core::prg::{Prg, Stream};
use marill_core::ring::MatDims;

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

fn put80(v: u128, out: &mut [u8]) {
    out.copy_from_slice(&v.to_le_bytes()[..SWITCH_BYTES]);
}

fn get80(b: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    w[..SWITCH_BYTES].copy_from_slice(b);
    u128::from_le_bytes(w)
}

fn mul_mod(a: u64, b: u64, p: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(p)) as u64
}

fn pow_mod(mut a: u64, mut e: u64, p: u64) -> u64 {
    let mut r = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            r = mul_mod(r, a, p);
        }
        a = mul_mod(a, a, p);
        e >>= 1;
    }
    r
}

/// Shoup's precomputation `⌊w·2^64/p⌋` for multiplying by the constant `w`.
fn shoup(w: u64, p: u64) -> u64 {
    ((u128::from(w) << 64) / u128::from(p)) as u64
}

/// `a·w mod p` with `ws = shoup(w, p)`; `a < 2^64`, `p < 2^62`.
#[inline(always)]
fn mul_shoup(a: u64, w: u64, ws: u64, p: u64) -> u64 {
    let q = ((u128::from(a) * u128::from(ws)) >> 64) as u64;
    let r = a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(p));
    // Branch-free: `r − p` wraps to a huge value when `r < p`. (Data-dependent branches
    // here cost 5× in mispredictions.)
    r.min(r.wrapping_sub(p))
}

/// `x mod p` for `x < 2p`, branch-free.
#[inline(always)]
fn sub_if(x: u64, p: u64) -> u64 {
    x.min(x.wrapping_sub(p))
}

/// The negacyclic number-theoretic transform modulo one prime.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct Ntt {
    p: u64,
    n: usize,
    psi: Vec<(u64, u64)>,
    ipsi: Vec<(u64, u64)>,
    n_inv: (u64, u64),
}

impl Ntt {
    /// Tables for degree `n` (a power of two with `2n | p − 1`).
    pub fn new(p: u64, n: usize) -> Result<Self> {
        if !n.is_power_of_two() || !(p - 1).is_multiple_of(2 * n as u64) {
            return Err(Error::InvalidArgument);
        }
        // A primitive 2n-th root: g^((p−1)/2n) with ψ^n = −1.
        let psi = (2..)
            .map(|g| pow_mod(g, (p - 1) / (2 * n as u64), p))
            .find(|w| pow_mod(*w, n as u64, p) == p - 1)
            .ok_or(Error::InvalidArgument)?;
        let ipsi_root = pow_mod(psi, p - 2, p);
        let bits = n.trailing_zeros();
        let rev = |i: usize| if bits == 0 { 0 } else { i.reverse_bits() >> (usize::BITS - bits) };
        let table = |root: u64| {
            (0..n)
                .map(|i| {
                    let w = pow_mod(root, rev(i) as u64, p);
                    (w, shoup(w, p))
                })
                .collect::<Vec<_>>()
        };
        let ni = pow_mod(n as u64, p - 2, p);
        Ok(Self { p, n, psi: table(psi), ipsi: table(ipsi_root), n_inv: (ni, shoup(ni, p)) })
    }

    /// In place, coefficients (`< p`) to evaluations, bit-reversed order.
    pub fn forward(&self, a: &mut [u64]) {
        let p = self.p;
        let mut t = self.n;
        let mut m = 1;
        while m < self.n {
            t >>= 1;
            for i in 0..m {
                let (w, ws) = self.psi[m + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let u = *x;
                    let v = mul_shoup(*y, w, ws, p);
                    *x = sub_if(u + v, p);
                    *y = sub_if(u + p - v, p);
                }
            }
            m <<= 1;
        }
    }

    /// In place, evaluations back to coefficients.
    pub fn inverse(&self, a: &mut [u64]) {
        let p = self.p;
        let mut t = 1;
        let mut m = self.n;
        while m > 1 {
            let h = m >> 1;
            for i in 0..h {
                let (w, ws) = self.ipsi[h + i];
                let (lo, hi) = a[2 * i * t..2 * i * t + 2 * t].split_at_mut(t);
                for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                    let (u, v) = (*x, *y);
                    *x = sub_if(u + v, p);
                    *y = mul_shoup(u + p - v, w, ws, p);
                }
            }
            t <<= 1;
            m = h;
        }
        for x in a.iter_mut() {
            *x = mul_shoup(*x, self.n_inv.0, self.n_inv.1, p);
        }
    }
}

/// Residue of a signed integer.
fn residue(v: i128, p: u64) -> u64 {
    v.rem_euclid(i128::from(p)) as u64
}

/// RNS arithmetic of `Z_q[X]/(X^N + 1)`; a polynomial is `3·N` words, residue-major.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct Rns {
    ntt: Vec<Ntt>,
    /// `⌊q / 2^64⌋ mod p_i` and `q mod 2^64`, for the scale `round(q·m/2^64)`.
    q_hi_mod: [u64; 3],
    q_lo: u64,
    /// `(q/p_i)^{-1} mod p_i` and its Shoup constant, for decryption.
    qhat_inv: [(u64, u64); 3],
    /// `log2(q / 2^65)` rounded down: the noise must stay below `2^half_delta_bits`.
    half_delta_bits: u32,
    /// `q/p_i mod 2^128` and `q mod 2^128`, to lift a product from its residues.
    qhat_low: [u128; 3],
    q_low: u128,
}

impl Rns {
    /// The tables of [`N`] and [`PRIMES`].
    pub fn new() -> Result<Self> {
        let ntt = PRIMES.iter().map(|p| Ntt::new(*p, N)).collect::<Result<Vec<_>>>()?;
        // q = p0·p1·p2 as three 64-bit limbs.
        let p01 = u128::from(PRIMES[0]) * u128::from(PRIMES[1]);
        let lo = (p01 as u64 as u128) * u128::from(PRIMES[2]);
        let hi = (p01 >> 64) * u128::from(PRIMES[2]) + (lo >> 64);
        let q_lo = lo as u64;
        // q_hi = q >> 64 = hi (fits in 128 bits: q < 2^184).
        let q_hi_mod = PRIMES.map(|p| (hi % u128::from(p)) as u64);
        let qhat_inv = core::array::from_fn(|i| {
            let p = PRIMES[i];
            let qhat =
                PRIMES.iter().enumerate().filter(|(j, _)| *j != i).fold(1u64, |acc, (_, pj)| mul_mod(acc, pj % p, p));
            let inv = pow_mod(qhat, p - 2, p);
            (inv, shoup(inv, p))
        });
        let q_bits = 128 - hi.leading_zeros() + 64; // q ≥ 2^(q_bits − 1)
        let qhat_low = core::array::from_fn(|i| {
            PRIMES
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .fold(1u128, |acc, (_, pj)| acc.wrapping_mul(u128::from(*pj)))
        });
        let q_low = PRIMES.iter().fold(1u128, |acc, p| acc.wrapping_mul(u128::from(*p)));
        Ok(Self { ntt, q_hi_mod, q_lo, qhat_inv, half_delta_bits: q_bits - 1 - 65, qhat_low, q_low })
    }

    fn forward(&self, a: &mut [u64]) {
        for (i, t) in self.ntt.iter().enumerate() {
            t.forward(&mut a[i * N..(i + 1) * N]);
        }
    }

    fn inverse(&self, a: &mut [u64]) {
        for (i, t) in self.ntt.iter().enumerate() {
            t.inverse(&mut a[i * N..(i + 1) * N]);
        }
    }

    /// `round(q·m/2^64) mod p_i`.
    fn scale(&self, m: u64, i: usize) -> u64 {
        let p = PRIMES[i];
        let frac = ((u128::from(self.q_lo) * u128::from(m) + (1u128 << 63)) >> 64) as u64;
        barrett(u128::from(self.q_hi_mod[i]) * u128::from(m % p) + u128::from(frac), i)
    }

    /// `round(2^SWITCH·v/q) mod 2^SWITCH` from the residues of `v`: switching a ciphertext
    /// coefficient from `q` to `2^SWITCH`.
    fn switch(&self, r: [u64; 3]) -> u128 {
        let mut int = 0u128;
        let mut frac = 0f64;
        for i in 0..3 {
            let p = u128::from(PRIMES[i]);
            let y = u128::from(mul_shoup(r[i], self.qhat_inv[i].0, self.qhat_inv[i].1, PRIMES[i]));
            // y·2^80/p = a1·2^16 + a2 + r2/p, in two steps that fit 128 bits.
            let n1 = y << 64;
            let (a1, r1) = (n1 / p, n1 % p);
            let n2 = r1 << (SWITCH - 64);
            let (a2, r2) = (n2 / p, n2 % p);
            int = int.wrapping_add(a1 << (SWITCH - 64)).wrapping_add(a2);
            frac += r2 as f64 / p as f64;
        }
        int.wrapping_add(frac.round() as u128) & SWITCH_MASK
    }

    /// `P mod 2^128` for an integer `|P| < q/4` given by its residues (CRT with the
    /// quotient rounded, so a negative `P` comes out as its two's complement).
    fn lift(&self, r: [u64; 3]) -> u128 {
        let mut acc = 0u128;
        let mut frac = 0f64;
        for i in 0..3 {
            let y = mul_shoup(r[i], self.qhat_inv[i].0, self.qhat_inv[i].1, PRIMES[i]);
            acc = acc.wrapping_add(u128::from(y).wrapping_mul(self.qhat_low[i]));
            frac += y as f64 / PRIMES[i] as f64;
        }
        acc.wrapping_sub((frac.round() as u128).wrapping_mul(self.q_low))
    }

    /// `round(2^64·v/q) mod 2^64` from the residues of `v`.
    #[cfg(test)]
    fn descale(&self, r: [u64; 3]) -> u64 {
        let mut int = 0u64;
        let mut frac = 0f64;
        for i in 0..3 {
            let p = PRIMES[i];
            let y = mul_shoup(r[i], self.qhat_inv[i].0, self.qhat_inv[i].1, p);
            let num = u128::from(y) << 64;
            int = int.wrapping_add((num / u128::from(p)) as u64);
            frac += (num % u128::from(p)) as f64 / p as f64;
        }
        int.wrapping_add(frac.round() as u64)
    }
}

/// Uniform residues (rejection sampling on 61-bit draws) for all three primes.
fn uniform_poly(prg: &mut Prg, out: &mut [u64]) {
    let mut buf = [0u64; 64];
    for (i, p) in PRIMES.iter().enumerate() {
        let dst = &mut out[i * N..(i + 1) * N];
        let mut k = 0;
        while k < N {
            prg.fill(&mut buf);
            for w in buf {
                let v = w >> 3;
                if v < *p && k < N {
                    dst[k] = v;
                    k += 1;
                }
            }
        }
    }
}

/// Small signed coefficients (`|x| < 2^60`, below every prime) into residues.
fn small_poly(v: &[i64], out: &mut [u64]) {
    for (i, p) in PRIMES.iter().enumerate() {
        for (o, x) in out[i * N..(i + 1) * N].iter_mut().zip(v) {
            debug_assert!(x.unsigned_abs() < 1 << 60);
            *o = if *x >= 0 { *x as u64 } else { p - x.unsigned_abs() };
        }
    }
}

fn ternary(prg: &mut Prg) -> Vec<i64> {
    let mut w = vec![0u64; N];
    prg.fill(&mut w);
    // Uniform over {−1, 0, 1} by rejection on 2-bit draws (value 3 is redrawn from the high bits).
    w.iter()
        .map(|x| {
            let mut v = *x;
            loop {
                let d = v & 3;
                if d < 3 {
                    return d as i64 - 1;
                }
                v >>= 2;
                if v == 0 {
                    return 0; // probability 2^−64
                }
            }
        })
        .collect()
}

fn cbd(prg: &mut Prg) -> Vec<i64> {
    let mut w = vec![0u64; N];
    prg.fill(&mut w);
    let mask = (1u64 << ETA) - 1;
    w.iter().map(|x| i64::from((x & mask).count_ones()) - i64::from(((x >> 32) & mask).count_ones())).collect()
}

/// Barrett constants `⌊2^122 / p⌋` of the primes (all in `(2^60, 2^61)`).
const BARRETT: [u64; 3] = {
    let mut mu = [0u64; 3];
    let mut i = 0;
    while i < 3 {
        mu[i] = ((1u128 << 122) / PRIMES[i] as u128) as u64;
        i += 1;
    }
    mu
};

/// `x mod p` for `x < 2^123` (Barrett: the quotient estimate is at most 2 short).
#[inline(always)]
fn barrett(x: u128, i: usize) -> u64 {
    let p = PRIMES[i];
    let q = ((x >> 60) * u128::from(BARRETT[i])) >> 62;
    let r = (x - q * u128::from(p)) as u64;
    // The estimate is at most 2 short: two branch-free subtractions.
    sub_if(sub_if(r, p), p)
}

/// `2^64 mod p_i`.
const TWO64: [u64; 3] = {
    let mut r = [0u64; 3];
    let mut i = 0;
    while i < 3 {
        r[i] = ((1u128 << 64) % PRIMES[i] as u128) as u64;
        i += 1;
    }
    r
};

/// `x mod p_i` for any 128-bit `x`: fold the high word with `2^64 mod p_i`, then Barrett.
#[inline(always)]
fn reduce128(x: u128, i: usize) -> u64 {
    let hi = ((x >> 64) as u64) % PRIMES[i];
    barrett(u128::from(hi) * u128::from(TWO64[i]) + u128::from(x as u64), i)
}

/// Products of residues summed without reduction (each is below 2^122, so 32 of them and
/// a reduced value fit in 128 bits); [`lazy_fold`] reduces.
fn lazy_mac(acc: &mut [u128], a: &[u64], b: &[u64]) {
    for ((o, x), y) in acc.iter_mut().zip(a).zip(b) {
        *o += u128::from(*x) * u128::from(*y);
    }
}

/// Reduce lazily summed residues (`3·N`-word blocks, residue-major) in place.
fn lazy_fold(acc: &mut [u128]) {
    for (z, v) in acc.iter_mut().enumerate() {
        *v = u128::from(reduce128(*v, (z / N) % 3));
    }
}

/// Products that may be summed before a [`lazy_fold`].
const LAZY: usize = 32;

fn pointwise_acc(acc: &mut [u64], a: &[u64], b: &[u64]) {
    for i in 0..PRIMES.len() {
        let r = i * N..(i + 1) * N;
        for ((o, x), y) in acc[r.clone()].iter_mut().zip(&a[r.clone()]).zip(&b[r]) {
            *o = barrett(u128::from(*x) * u128::from(*y) + u128::from(*o), i);
        }
    }
}

/// Block shape of a product: `bm × bn` of `X` per input ciphertext, `bk` columns of `Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rows of `X` per block.
    pub bm: usize,
    /// Inner dimension per block.
    pub bn: usize,
    /// Columns of `Y` per block.
    pub bk: usize,
    /// Digits of `Y` (1 for a weight, 2 for a uniform share).
    pub digits: usize,
    /// Flooding noise is uniform in `[−2^flood_bits, 2^flood_bits)`.
    pub flood_bits: u32,
}

impl Plan {
    /// The block shape for `X (m×n)·Y (n×k)` with the least estimated time: bytes at
    /// 1 Gbit/s plus transforms and products of residues at this machine's measured rates.
    /// Both parties compute it from the public shapes alone. Fails if the noise bound would
    /// not leave room for flooding (not reachable for `n, k ≤ 2^20`).
    pub fn new(d: MatDims, digits: usize, rns: &Rns) -> Result<Self> {
        let (m, n, k) = (d.m, d.n, d.k);
        ensure_shape(m > 0 && n > 0 && k > 0 && (1..=2).contains(&digits))?;
        let cands = |x: usize| {
            let mut v: Vec<usize> = (1..=x.min(N)).map(|c| x.div_ceil(c)).filter(|b| *b <= N).collect();
            v.push(x.min(N));
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut best: Option<(f64, Plan)> = None;
        for bm in cands(m) {
            for bn in cands(n) {
                let room = (N + 1).saturating_sub(bn);
                let bk = (room / (bm * bn)).min(k);
                if bk == 0 {
                    continue;
                }
                let (im, in_, ik) = (m.div_ceil(bm) as f64, n.div_ceil(bn) as f64, k.div_ceil(bk) as f64);
                let dg = digits as f64;
                // Estimated seconds: bytes at 1 Gbit/s, transforms (one prime) at 50 µs,
                // products of residues at 1.5 ns.
                let bytes = im * in_ * dg * 24.0 * N as f64 + im * ik * (N + bm * bk) as f64 * SWITCH_BYTES as f64;
                let ntts = 3.0 * (in_ * ik * dg + im * in_ * dg + 5.0 * im * ik);
                let products = 2.0 * im * in_ * ik * dg * 3.0 * N as f64;
                let cost = bytes * 8e-9 + ntts * 50e-6 + products * 1.5e-9;
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, Plan { bm, bn, bk, digits, flood_bits: 0 }));
                }
            }
        }
        let (_, mut plan) = best.ok_or(Error::ShapeMismatch)?;
        // Noise bound from public shapes: Σ‖ŷ‖₁ ≤ digits · n_padded · bk · 2^31.
        let n_pad = (n.div_ceil(plan.bn) * plan.bn) as f64;
        let l1 = digits as f64 * n_pad * plan.bk as f64 * 2f64.powi(31);
        let bound = 22.0 * l1 + 43.0 * N as f64;
        plan.flood_bits = SIGMA + bound.log2().ceil() as u32;
        if plan.flood_bits + 1 >= rns.half_delta_bits {
            return Err(Error::InvalidArgument);
        }
        Ok(plan)
    }

    fn out_pos(&self, i: usize, l: usize) -> usize {
        l * self.bm * self.bn + i * self.bn + self.bn - 1
    }
}

/// The public shapes of one product call.
#[derive(Clone, Copy)]
struct Job {
    m: usize,
    n: usize,
    k: usize,
    count: usize,
    digits: usize,
    plan: Plan,
    /// Blocks along `m`, `n` and `k`.
    im: usize,
    in_: usize,
    ik: usize,
}

/// One party's HE state: its secret key and the peer's public key.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct Engine {
    rns: Rns,
    /// Secret key, NTT form.
    sk: Vec<u64>,
    /// The peer's public key `(b, a)`, NTT form.
    peer_pk: (Vec<u64>, Vec<u64>),
}

/// Digit `d` of `y` as a small signed integer: one digit (`|y| < 2^31` as a signed value)
/// or two signed 32-bit digits with `y ≡ d0 + 2^32·d1`.
fn digit(y: u64, d: usize, digits: usize) -> Result<i64> {
    if digits == 1 {
        let v = y as i64;
        if !(-(1i64 << 31)..(1i64 << 31)).contains(&v) {
            return Err(Error::InvalidArgument);
        }
        return Ok(v);
    }
    let d0 = i64::from(y as u32 as i32);
    if d == 0 {
        return Ok(d0);
    }
    Ok(i64::from((y.wrapping_sub(d0 as u64) >> 32) as u32 as i32))
}

impl Engine {
    /// Keys for this party; each sends the other its public key (`3·8·N` bytes + a seed).
    pub fn setup<C: Channel>(ch: &mut C, party: PartyId, rng: &mut Prg) -> Result<Self> {
        let rns = Rns::new()?;
        let peer = 1 - party;
        let mut sk = vec![0u64; 3 * N];
        small_poly(&ternary(rng), &mut sk);
        rns.forward(&mut sk);
        let seed = rng.seed();
        let mut a = vec![0u64; 3 * N];
        uniform_poly(&mut Prg::new(seed, Stream::Local), &mut a);
        let mut b = vec![0u64; 3 * N];
        small_poly(&cbd(rng), &mut b);
        rns.forward(&mut b);
        // b = e − a·s
        let mut as_ = vec![0u64; 3 * N];
        pointwise_acc(&mut as_, &a, &sk);
        for (i, p) in PRIMES.iter().enumerate() {
            for (x, y) in b[i * N..(i + 1) * N].iter_mut().zip(&as_[i * N..(i + 1) * N]) {
                *x = if *x >= *y { *x - *y } else { *x + p - *y };
            }
        }
        ch.send(peer, &seed)?;
        send_words(ch, peer, &b)?;
        ch.flush()?;
        let mut peer_seed = [0u8; 32];
        ch.recv(peer, &mut peer_seed)?;
        let mut pb = vec![0u64; 3 * N];
        recv_words(ch, peer, &mut pb)?;
        check_residues(&pb)?;
        let mut pa = vec![0u64; 3 * N];
        uniform_poly(&mut Prg::new(peer_seed, Stream::Local), &mut pa);
        Ok(Self { rns, sk, peer_pk: (pb, pa) })
    }

    /// Shares of `X_0·Y_1 + X_1·Y_0` for `count` products of shared `X (m×n)`, `Y (n×k)`
    /// (blocks concatenated): both directions at once, two digits for the uniform `Y`.
    pub fn matmul_cross<C: Channel>(
        &mut self,
        ch: &mut C,
        rng: &mut Prg,
        x: &[u64],
        y: &[u64],
        d: MatDims,
        count: usize,
    ) -> Result<Vec<u64>> {
        self.product(ch, rng, Some(x), Some(y), d, count, 2)
    }

    /// Shares of `X_c·W` where the owner of `W` passes it and the other party (`X_c`'s
    /// holder, the client) passes `None`.
    pub fn weight_cross<C: Channel>(
        &mut self,
        ch: &mut C,
        rng: &mut Prg,
        x: &[u64],
        w: Option<&[u64]>,
        d: MatDims,
    ) -> Result<Vec<u64>> {
        match w {
            Some(w) => self.product(ch, rng, None, Some(w), d, 1, 1),
            None => self.product(ch, rng, Some(x), None, d, 1, 1),
        }
    }

    /// This party encrypts `x` if given (and the peer multiplies it), and multiplies the
    /// peer's encryption by `y` if given. Returns this party's shares (`count·m·k`).
    fn product<C: Channel>(
        &mut self,
        ch: &mut C,
        rng: &mut Prg,
        x: Option<&[u64]>,
        y: Option<&[u64]>,
        d: MatDims,
        count: usize,
        digits: usize,
    ) -> Result<Vec<u64>> {
        let (m, n, k) = (d.m, d.n, d.k);
        ensure_shape(x.is_none_or(|x| x.len() == m * n * count) && y.is_none_or(|y| y.len() == n * k * count))?;
        let plan = Plan::new(d, digits, &self.rns)?;
        if let (Some(y), 1) = (y, digits) {
            // A weight must fit one digit: checked before anything is sent (two digits
            // take any word).
            for v in y {
                digit(*v, 0, digits)?;
            }
        }
        let job = Job {
            m,
            n,
            k,
            count,
            digits,
            plan,
            im: m.div_ceil(plan.bm),
            in_: n.div_ceil(plan.bn),
            ik: k.div_ceil(plan.bk),
        };
        if let Some(x) = x {
            self.encrypt(ch, rng, x, &job)?;
        }
        let mut out = vec![0u64; count * m * k];
        if let Some(y) = y {
            self.multiply(ch, rng, y, &job, &mut out)?;
        }
        if x.is_some() {
            self.decrypt(ch, &job, &mut out)?;
        }
        Ok(out)
    }

    /// E: encrypt every block of `x` (each digit's scale) and send the seed and the `c0`s.
    fn encrypt<C: Channel>(&self, ch: &mut C, rng: &mut Prg, x: &[u64], job: &Job) -> Result<()> {
        let Job { m, n, count, digits, plan, im, in_, .. } = *job;
        let peer = ch.id() ^ 1;
        // 1. As E: encrypt and send.
        let seed = rng.seed();
        ch.send(peer, &seed)?;
        let mut a_prg = Prg::new(seed, Stream::Local);
        let mut a = vec![0u64; 3 * N];
        let mut msg = vec![0u64; 3 * N];
        let mut e_buf = vec![0u64; 3 * N];
        for c in 0..count {
            let xb = &x[c * m * n..(c + 1) * m * n];
            for bi in 0..im {
                for bj in 0..in_ {
                    for dg in 0..digits {
                        uniform_poly(&mut a_prg, &mut a);
                        small_poly(&cbd(rng), &mut e_buf);
                        // e + round(q·x̂/t) in coefficients, then NTT, minus a·s.
                        for i in 0..plan.bm.min(m - bi * plan.bm) {
                            for j in 0..plan.bn.min(n - bj * plan.bn) {
                                let v = xb[(bi * plan.bm + i) * n + bj * plan.bn + j] << (32 * dg);
                                let pos = i * plan.bn + j;
                                for (r, p) in PRIMES.iter().enumerate() {
                                    let o = &mut e_buf[r * N + pos];
                                    *o = sub_if(*o + self.rns.scale(v, r), *p);
                                }
                            }
                        }
                        self.rns.forward(&mut e_buf);
                        msg.fill(0);
                        pointwise_acc(&mut msg, &a, &self.sk);
                        for (r, p) in PRIMES.iter().enumerate() {
                            for (o, e) in msg[r * N..(r + 1) * N].iter_mut().zip(&e_buf[r * N..(r + 1) * N]) {
                                *o = if *e >= *o { *e - *o } else { *e + p - *o };
                            }
                        }
                        send_words(ch, peer, &msg)?;
                    }
                }
            }
        }
        ch.flush()?;
        Ok(())
    }

    /// M: multiply the peer's ciphertexts by `y`, re-randomise, flood, mask, switch and
    /// return them; this party's shares (`−R`) go into `out`.
    fn multiply<C: Channel>(&self, ch: &mut C, rng: &mut Prg, y: &[u64], job: &Job, out: &mut [u64]) -> Result<()> {
        let Job { m, n, k, count, digits, plan, im, in_, ik } = *job;
        let peer = ch.id() ^ 1;
        let n_in = count * im * in_ * digits;
        let per_out = plan.bm * plan.bk;
        // 2. As M: multiply the peer's ciphertexts, re-randomise, flood, mask, return.
        let mut seed = [0u8; 32];
        ch.recv(peer, &mut seed)?;
        let mut a_prg = Prg::new(seed, Stream::Local);
        let mut c0 = vec![0u64; n_in * 3 * N];
        let mut c1 = vec![0u64; n_in * 3 * N];
        for t in 0..n_in {
            recv_words(ch, peer, &mut c0[t * 3 * N..(t + 1) * 3 * N])?;
            uniform_poly(&mut a_prg, &mut c1[t * 3 * N..(t + 1) * 3 * N]);
        }
        check_residues(&c0)?;
        let mut yhat = vec![0u64; 3 * N];
        let mut coeffs = vec![0i64; N];
        let mut acc0 = vec![0u64; im * 3 * N];
        let mut acc1 = vec![0u64; im * 3 * N];
        let mut lz0 = vec![0u128; im * 3 * N];
        let mut lz1 = vec![0u128; im * 3 * N];
        let mut msg = vec![0u8; (per_out + N) * SWITCH_BYTES];
        let mut small = vec![0u64; 3 * N];
        for c in 0..count {
            let yb = &y[c * n * k..(c + 1) * n * k];
            for bl in 0..ik {
                lz0.fill(0);
                lz1.fill(0);
                let mut pending = 0;
                for bj in 0..in_ {
                    for dg in 0..digits {
                        coeffs.fill(0);
                        for j in 0..plan.bn.min(n - bj * plan.bn) {
                            for l in 0..plan.bk.min(k - bl * plan.bk) {
                                let v = yb[(bj * plan.bn + j) * k + bl * plan.bk + l];
                                coeffs[l * plan.bm * plan.bn + plan.bn - 1 - j] = digit(v, dg, digits)?;
                            }
                        }
                        small_poly(&coeffs, &mut yhat);
                        self.rns.forward(&mut yhat);
                        if pending == LAZY {
                            lazy_fold(&mut lz0);
                            lazy_fold(&mut lz1);
                            pending = 0;
                        }
                        for bi in 0..im {
                            let t = ((c * im + bi) * in_ + bj) * digits + dg;
                            let r = t * 3 * N..(t + 1) * 3 * N;
                            lazy_mac(&mut lz0[bi * 3 * N..(bi + 1) * 3 * N], &c0[r.clone()], &yhat);
                            lazy_mac(&mut lz1[bi * 3 * N..(bi + 1) * 3 * N], &c1[r], &yhat);
                        }
                        pending += 1;
                    }
                }
                for (z, (o0, o1)) in acc0.iter_mut().zip(acc1.iter_mut()).enumerate() {
                    let i = (z / N) % 3;
                    *o0 = reduce128(lz0[z], i);
                    *o1 = reduce128(lz1[z], i);
                }
                for bi in 0..im {
                    let (r0, r1) = (&mut acc0[bi * 3 * N..(bi + 1) * 3 * N], &mut acc1[bi * 3 * N..(bi + 1) * 3 * N]);
                    self.rerandomise(rng, r0, r1, &mut small);
                    // c0 at the read positions: + flood + round(q·R/t); our share −R.
                    // Then both parts switch to 2^SWITCH and travel packed (every byte of
                    // `msg` is written below).
                    for i in 0..plan.bm {
                        for l in 0..plan.bk {
                            let pos = plan.out_pos(i, l);
                            let mask = rng.next_u64();
                            let flood = flood_sample(rng, plan.flood_bits);
                            let v = core::array::from_fn(|r| {
                                let p = PRIMES[r];
                                let v = u128::from(r0[r * N + pos])
                                    + u128::from(residue(flood, p))
                                    + u128::from(self.rns.scale(mask, r));
                                (v % u128::from(p)) as u64
                            });
                            let at = (i * plan.bk + l) * SWITCH_BYTES;
                            put80(self.rns.switch(v), &mut msg[at..at + SWITCH_BYTES]);
                            let (row, col) = (bi * plan.bm + i, bl * plan.bk + l);
                            if row < m && col < k {
                                let o = &mut out[c * m * k + row * k + col];
                                *o = o.wrapping_sub(mask);
                            }
                        }
                    }
                    for z in 0..N {
                        let v = core::array::from_fn(|r| r1[r * N + z]);
                        let at = (per_out + z) * SWITCH_BYTES;
                        put80(self.rns.switch(v), &mut msg[at..at + SWITCH_BYTES]);
                    }
                    ch.send(peer, &msg)?;
                }
            }
        }
        ch.flush()?;
        Ok(())
    }

    /// E: decrypt what came back into `out` (added).
    fn decrypt<C: Channel>(&self, ch: &mut C, job: &Job, out: &mut [u64]) -> Result<()> {
        let Job { m, k, count, plan, im, ik, .. } = *job;
        let peer = ch.id() ^ 1;
        let n_out = count * im * ik;
        let per_out = plan.bm * plan.bk;
        // 3. As E: decrypt what came back: c0' + c1'·s mod 2^SWITCH, rounded to 64 bits.
        let mut msg = vec![0u8; (per_out + N) * SWITCH_BYTES];
        let mut c1 = vec![0u64; 3 * N];
        let mut prod = vec![0u64; 3 * N];
        for t in 0..n_out {
            let (c, rest) = (t / (im * ik), t % (im * ik));
            let (bl, bi) = (rest / im, rest % im);
            ch.recv(peer, &mut msg)?;
            for z in 0..N {
                let at = (per_out + z) * SWITCH_BYTES;
                let v = get80(&msg[at..at + SWITCH_BYTES]);
                for r in 0..PRIMES.len() {
                    c1[r * N + z] = barrett(v, r);
                }
            }
            self.rns.forward(&mut c1);
            prod.fill(0);
            pointwise_acc(&mut prod, &c1, &self.sk);
            self.rns.inverse(&mut prod);
            for i in 0..plan.bm {
                for l in 0..plan.bk {
                    let (row, col) = (bi * plan.bm + i, bl * plan.bk + l);
                    if row >= m || col >= k {
                        continue;
                    }
                    let pos = plan.out_pos(i, l);
                    let at = (i * plan.bk + l) * SWITCH_BYTES;
                    let c0 = get80(&msg[at..at + SWITCH_BYTES]);
                    let cs = self.rns.lift(core::array::from_fn(|r| prod[r * N + pos]));
                    let v = c0.wrapping_add(cs) & SWITCH_MASK;
                    let m64 = ((v + (1u128 << (SWITCH - 65))) >> (SWITCH - 64)) as u64;
                    let o = &mut out[c * m * k + row * k + col];
                    *o = o.wrapping_add(m64);
                }
            }
        }
        Ok(())
    }

    /// Add an encryption of zero under the peer's key to `(acc0, acc1)` (NTT form) and
    /// return both in coefficient form (in place). `small` is `3·N` words of scratch.
    fn rerandomise(&self, rng: &mut Prg, acc0: &mut [u64], acc1: &mut [u64], small: &mut [u64]) {
        let mut u = vec![0u64; 3 * N];
        small_poly(&ternary(rng), &mut u);
        self.rns.forward(&mut u);
        pointwise_acc(acc0, &self.peer_pk.0, &u);
        pointwise_acc(acc1, &self.peer_pk.1, &u);
        self.rns.inverse(acc0);
        self.rns.inverse(acc1);
        for acc in [acc0, acc1] {
            small_poly(&cbd(rng), small);
            for (z, (a, e)) in acc.iter_mut().zip(small.iter()).enumerate() {
                *a = sub_if(*a + e, PRIMES[z / N]);
            }
        }
    }
}

/// Uniform in `[−2^bits, 2^bits)`.
fn flood_sample(rng: &mut Prg, bits: u32) -> i128 {
    let mut w = [0u64; 2];
    rng.fill(&mut w);
    let v = (u128::from(w[0]) | (u128::from(w[1]) << 64)) & ((1u128 << (bits + 1)) - 1);
    v as i128 - (1i128 << bits)
}

/// Every word of a received polynomial must be a residue (`< p_i`).
fn check_residues(v: &[u64]) -> Result<()> {
    let per = v.len() / 3;
    for (i, p) in PRIMES.iter().enumerate() {
        if v[i * per..(i + 1) * per].iter().any(|x| x >= p) {
            return Err(Error::Malformed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
