//! One party's HE state ([`Engine`]): key set-up, encrypting its matrix, multiplying the
//! peer's ciphertexts by its own (with circuit privacy: re-randomised, masked, flooded,
//! switched to `2^SWITCH`), and decrypting the products.

use marill_core::channel::{Channel, PartyId, recv_words, send_words};
use marill_core::error::{Error, Result, ensure_shape};
use marill_core::prg::{Prg, Stream};
use marill_core::ring::MatDims;

use super::ntt::*;
use super::plan::Plan;
use super::{N, PRIMES, SWITCH, SWITCH_BYTES, SWITCH_MASK};

pub(super) fn put80(v: u128, out: &mut [u8]) {
    out.copy_from_slice(&v.to_le_bytes()[..SWITCH_BYTES]);
}

pub(super) fn get80(b: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    w[..SWITCH_BYTES].copy_from_slice(b);
    u128::from_le_bytes(w)
}

/// The public shapes of one product call.
#[derive(Clone, Copy)]
pub(super) struct Job {
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) count: usize,
    pub(super) digits: usize,
    pub(super) plan: Plan,
    /// Blocks along `m`, `n` and `k`.
    pub(super) im: usize,
    pub(super) in_: usize,
    pub(super) ik: usize,
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
pub(super) fn digit(y: u64, d: usize, digits: usize) -> Result<i64> {
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
    pub(super) fn product<C: Channel>(
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
    pub(super) fn encrypt<C: Channel>(&self, ch: &mut C, rng: &mut Prg, x: &[u64], job: &Job) -> Result<()> {
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
    pub(super) fn multiply<C: Channel>(
        &self,
        ch: &mut C,
        rng: &mut Prg,
        y: &[u64],
        job: &Job,
        out: &mut [u64],
    ) -> Result<()> {
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
    pub(super) fn decrypt<C: Channel>(&self, ch: &mut C, job: &Job, out: &mut [u64]) -> Result<()> {
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
    pub(super) fn rerandomise(&self, rng: &mut Prg, acc0: &mut [u64], acc1: &mut [u64], small: &mut [u64]) {
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
pub(super) fn flood_sample(rng: &mut Prg, bits: u32) -> i128 {
    let mut w = [0u64; 2];
    rng.fill(&mut w);
    let v = (u128::from(w[0]) | (u128::from(w[1]) << 64)) & ((1u128 << (bits + 1)) - 1);
    v as i128 - (1i128 << bits)
}

/// Every word of a received polynomial must be a residue (`< p_i`).
pub(super) fn check_residues(v: &[u64]) -> Result<()> {
    let per = v.len() / 3;
    for (i, p) in PRIMES.iter().enumerate() {
        if v[i * per..(i + 1) * per].iter().any(|x| x >= p) {
            return Err(Error::Malformed);
        }
    }
    Ok(())
}
