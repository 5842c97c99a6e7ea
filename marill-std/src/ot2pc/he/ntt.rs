//! Arithmetic modulo the RNS primes: Shoup and Barrett products, lazy sums, the negacyclic
//! NTT per prime, [`Rns`] (the three residues of `Z_q[X]/(X^N + 1)`, scaling and descaling
//! by `q/2^64`), and the secret, error and uniform polynomials' samplers.

use marill_core::error::{Error, Result};
use marill_core::prg::Prg;

use super::{ETA, N, PRIMES, SWITCH, SWITCH_MASK};

pub(super) fn mul_mod(a: u64, b: u64, p: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(p)) as u64
}

pub(super) fn pow_mod(mut a: u64, mut e: u64, p: u64) -> u64 {
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
pub(super) fn shoup(w: u64, p: u64) -> u64 {
    ((u128::from(w) << 64) / u128::from(p)) as u64
}

/// `a·w mod p` with `ws = shoup(w, p)`; `a < 2^64`, `p < 2^62`.
#[inline(always)]
pub(super) fn mul_shoup(a: u64, w: u64, ws: u64, p: u64) -> u64 {
    let q = ((u128::from(a) * u128::from(ws)) >> 64) as u64;
    let r = a.wrapping_mul(w).wrapping_sub(q.wrapping_mul(p));
    // Branch-free: `r − p` wraps to a huge value when `r < p`. (Data-dependent branches
    // here cost 5× in mispredictions.)
    r.min(r.wrapping_sub(p))
}

/// `x mod p` for `x < 2p`, branch-free.
#[inline(always)]
pub(super) fn sub_if(x: u64, p: u64) -> u64 {
    x.min(x.wrapping_sub(p))
}

/// The negacyclic number-theoretic transform modulo one prime.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct Ntt {
    pub(super) p: u64,
    pub(super) n: usize,
    pub(super) psi: Vec<(u64, u64)>,
    pub(super) ipsi: Vec<(u64, u64)>,
    pub(super) n_inv: (u64, u64),
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
pub(super) fn residue(v: i128, p: u64) -> u64 {
    v.rem_euclid(i128::from(p)) as u64
}

/// RNS arithmetic of `Z_q[X]/(X^N + 1)`; a polynomial is `3·N` words, residue-major.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct Rns {
    pub(super) ntt: Vec<Ntt>,
    /// `⌊q / 2^64⌋ mod p_i` and `q mod 2^64`, for the scale `round(q·m/2^64)`.
    pub(super) q_hi_mod: [u64; 3],
    pub(super) q_lo: u64,
    /// `(q/p_i)^{-1} mod p_i` and its Shoup constant, for decryption.
    pub(super) qhat_inv: [(u64, u64); 3],
    /// `log2(q / 2^65)` rounded down: the noise must stay below `2^half_delta_bits`.
    pub(super) half_delta_bits: u32,
    /// `q/p_i mod 2^128` and `q mod 2^128`, to lift a product from its residues.
    pub(super) qhat_low: [u128; 3],
    pub(super) q_low: u128,
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

    pub(super) fn forward(&self, a: &mut [u64]) {
        for (i, t) in self.ntt.iter().enumerate() {
            t.forward(&mut a[i * N..(i + 1) * N]);
        }
    }

    pub(super) fn inverse(&self, a: &mut [u64]) {
        for (i, t) in self.ntt.iter().enumerate() {
            t.inverse(&mut a[i * N..(i + 1) * N]);
        }
    }

    /// `round(q·m/2^64) mod p_i`.
    pub(super) fn scale(&self, m: u64, i: usize) -> u64 {
        let p = PRIMES[i];
        let frac = ((u128::from(self.q_lo) * u128::from(m) + (1u128 << 63)) >> 64) as u64;
        barrett(u128::from(self.q_hi_mod[i]) * u128::from(m % p) + u128::from(frac), i)
    }

    /// `round(2^SWITCH·v/q) mod 2^SWITCH` from the residues of `v`: switching a ciphertext
    /// coefficient from `q` to `2^SWITCH`.
    pub(super) fn switch(&self, r: [u64; 3]) -> u128 {
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
    pub(super) fn lift(&self, r: [u64; 3]) -> u128 {
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
    pub(super) fn descale(&self, r: [u64; 3]) -> u64 {
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
pub(super) fn uniform_poly(prg: &mut Prg, out: &mut [u64]) {
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
pub(super) fn small_poly(v: &[i64], out: &mut [u64]) {
    for (i, p) in PRIMES.iter().enumerate() {
        for (o, x) in out[i * N..(i + 1) * N].iter_mut().zip(v) {
            debug_assert!(x.unsigned_abs() < 1 << 60);
            *o = if *x >= 0 { *x as u64 } else { p - x.unsigned_abs() };
        }
    }
}

pub(super) fn ternary(prg: &mut Prg) -> Vec<i64> {
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

pub(super) fn cbd(prg: &mut Prg) -> Vec<i64> {
    let mut w = vec![0u64; N];
    prg.fill(&mut w);
    let mask = (1u64 << ETA) - 1;
    w.iter().map(|x| i64::from((x & mask).count_ones()) - i64::from(((x >> 32) & mask).count_ones())).collect()
}

/// Barrett constants `⌊2^122 / p⌋` of the primes (all in `(2^60, 2^61)`).
pub(super) const BARRETT: [u64; 3] = {
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
pub(super) fn barrett(x: u128, i: usize) -> u64 {
    let p = PRIMES[i];
    let q = ((x >> 60) * u128::from(BARRETT[i])) >> 62;
    let r = (x - q * u128::from(p)) as u64;
    // The estimate is at most 2 short: two branch-free subtractions.
    sub_if(sub_if(r, p), p)
}

/// `2^64 mod p_i`.
pub(super) const TWO64: [u64; 3] = {
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
pub(super) fn reduce128(x: u128, i: usize) -> u64 {
    let hi = ((x >> 64) as u64) % PRIMES[i];
    barrett(u128::from(hi) * u128::from(TWO64[i]) + u128::from(x as u64), i)
}

/// Products of residues summed without reduction (each is below 2^122, so 32 of them and
/// a reduced value fit in 128 bits); [`lazy_fold`] reduces.
pub(super) fn lazy_mac(acc: &mut [u128], a: &[u64], b: &[u64]) {
    for ((o, x), y) in acc.iter_mut().zip(a).zip(b) {
        *o += u128::from(*x) * u128::from(*y);
    }
}

/// Reduce lazily summed residues (`3·N`-word blocks, residue-major) in place.
pub(super) fn lazy_fold(acc: &mut [u128]) {
    for (z, v) in acc.iter_mut().enumerate() {
        *v = u128::from(reduce128(*v, (z / N) % 3));
    }
}

/// Products that may be summed before a [`lazy_fold`].
pub(super) const LAZY: usize = 32;

pub(super) fn pointwise_acc(acc: &mut [u64], a: &[u64], b: &[u64]) {
    for i in 0..PRIMES.len() {
        let r = i * N..(i + 1) * N;
        for ((o, x), y) in acc[r.clone()].iter_mut().zip(&a[r.clone()]).zip(&b[r]) {
            *o = barrett(u128::from(*x) * u128::from(*y) + u128::from(*o), i);
        }
    }
}
