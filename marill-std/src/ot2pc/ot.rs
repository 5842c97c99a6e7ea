//! Oblivious transfer for plain 2PC: Chou–Orlandi base OT over Ristretto and IKNP
//! extension to any number of correlated OTs.
//!
//! **Base OT** (Chou–Orlandi, "The Simplest OT", semi-honest use). The sender draws `a`
//! and sends `A = a·G`; for each choice bit `c` the receiver draws `b` and sends
//! `B = b·G + c·A` (a constant-time select); the sender's keys are
//! `k0 = H(i, A, B, a·B)` and `k1 = H(i, A, B, a·(B − A))`, the receiver's
//! `k_c = H(i, A, B, b·A)` (SHA-256, 32 bytes). Points that do not decode are
//! [`Error::Malformed`].
//!
//! **Extension** (Ishai–Kilian–Nissim–Petrank, semi-honest). The extension's *sender*
//! holds `Δ ∈ {0,1}^128` and received `k_{Δ_i}` for `i < 128` in base OTs in which it was
//! the receiver; the extension's *receiver* holds both keys of each. For `m` OTs with choice
//! bits `r`, the receiver expands column `i` as `t_i = G(k0_i)` and sends
//! `u_i = t_i ⊕ G(k1_i) ⊕ r` (16 bytes per OT); the sender forms
//! `q_i = G(k_{Δ_i}) ⊕ Δ_i·u_i = t_i ⊕ Δ_i·r`. After a bit transpose, row `j` satisfies
//! `Q_j = T_j ⊕ r_j·Δ`, and the tweakable correlation-robust hash
//! `H(j, x) = π(π(x) ⊕ j) ⊕ π(x)` (π: AES-128 under a fixed public key) turns the rows into
//! random OTs: the sender has `H(j, Q_j)` and `H(j, Q_j ⊕ Δ)`, the receiver the one its
//! `r_j` selects. `j` is a session-wide counter both ends advance in step, so no tweak
//! repeats. `G` is the AES-CTR [`Prg`] keyed by the base-OT key.
//!
//! **Correlated OT over Z_2^64** ([`cot_send`](OtSender::cot_send),
//! [`cot_recv`](OtReceiver::cot_recv)): for a correlation `δ_j` of the sender's choosing,
//! the sender keeps `x_j = H(j, Q_j)` and sends `τ_j = H(j, Q_j ⊕ Δ) − x_j − δ_j`; the
//! receiver computes `H(j, T_j) − r_j·τ_j = x_j + r_j·δ_j`. Bit-correlated OT is the same
//! in GF(2) with one bit of `τ` per OT.

use aes::Aes128;
use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use marill_core::channel::{Channel, PartyId};
use marill_core::error::{Error, Result};
use marill_core::prg::{Prg, Seed, Stream};
use marill_core::share::mask_tail;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable};

/// Base OTs per extension: the computational security parameter κ.
pub const KAPPA: usize = 128;

/// The most OTs one extension call may produce (bounds what a peer can make us allocate).
pub const MAX_BATCH: usize = 1 << 26;

fn random_scalar(rng: &mut Prg) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn base_key(i: usize, a: &[u8; 32], b: &[u8; 32], shared: &RistrettoPoint) -> Seed {
    let mut h = Sha256::new();
    h.update(b"marill base OT v1");
    h.update((i as u64).to_le_bytes());
    h.update(a);
    h.update(b);
    h.update(shared.compress().as_bytes());
    h.finalize().into()
}

fn decode_point(bytes: &[u8]) -> Result<RistrettoPoint> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| Error::Malformed)?;
    CompressedRistretto(arr).decompress().ok_or(Error::Malformed)
}

/// The tweakable correlation-robust hash `H(j, x) = π(π(x) ⊕ j) ⊕ π(x)`, batched.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct CrHash {
    pi: Aes128,
}

impl Default for CrHash {
    fn default() -> Self {
        Self::new()
    }
}

impl CrHash {
    /// π is AES-128 under a fixed public key (any constant works; this one is "marill").
    pub fn new() -> Self {
        Self::with_key(*b"marill-tccr-key!")
    }

    /// π under another fixed public key (a separate hash for a separate use).
    pub fn with_key(key: [u8; 16]) -> Self {
        Self { pi: Aes128::new(&Array::from(key)) }
    }

    /// `xs[i] = H(tweaks[i], xs[i])` in place (`tweaks` as long as `xs`).
    pub fn hash_tweaked(&self, tweaks: &[u64], xs: &mut [u128]) {
        self.hash_by(|i| tweaks[i], xs);
    }

    /// `xs[i] = H(tweak0 + i, xs[i])` in place.
    pub fn hash(&self, tweak0: u64, xs: &mut [u128]) {
        self.hash_by(|i| tweak0.wrapping_add(i as u64), xs);
    }

    /// Batches of 64 blocks through π twice.
    fn hash_by(&self, tweak: impl Fn(usize) -> u64, xs: &mut [u128]) {
        const B: usize = 64;
        let mut first = [[0u8; 16]; B];
        let mut second = [[0u8; 16]; B];
        for (c, chunk) in xs.chunks_mut(B).enumerate() {
            let n = chunk.len();
            for (k, x) in chunk.iter().enumerate() {
                first[k] = x.to_le_bytes();
            }
            self.pi.encrypt_blocks(Array::cast_slice_from_core_mut(&mut first[..n]));
            for k in 0..n {
                second[k] = (u128::from_le_bytes(first[k]) ^ u128::from(tweak(c * B + k))).to_le_bytes();
            }
            self.pi.encrypt_blocks(Array::cast_slice_from_core_mut(&mut second[..n]));
            for (k, x) in chunk.iter_mut().enumerate() {
                *x = u128::from_le_bytes(second[k]) ^ u128::from_le_bytes(first[k]);
            }
        }
    }
}

/// Transpose a 64×64 bit matrix: afterwards bit `j` of `a[i]` is what bit `i` of `a[j]` was.
fn transpose64(a: &mut [u64; 64]) {
    let mut j = 32usize;
    let mut m: u64 = 0x0000_0000_FFFF_FFFF;
    while j != 0 {
        let mut k = 0usize;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k + j]) & m;
            a[k + j] ^= t;
            a[k] ^= t << j;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        m ^= m << j;
    }
}

/// Rows of the `128 × 64w` bit matrix whose column `i` is `cols[i·w..(i+1)·w]` (bit `j`
/// of column `i` is row `j`'s bit `i`).
pub fn transpose_cols(cols: &[u64], w: usize) -> Vec<u128> {
    let mut rows = vec![0u128; 64 * w];
    let mut blk = [0u64; 64];
    for b in 0..w {
        for half in 0..2 {
            for i in 0..64 {
                blk[i] = cols[(64 * half + i) * w + b];
            }
            transpose64(&mut blk);
            for (j, v) in blk.iter().enumerate() {
                rows[64 * b + j] |= u128::from(*v) << (64 * half);
            }
        }
    }
    rows
}

fn words_for(m: usize) -> Result<usize> {
    if m > MAX_BATCH {
        return Err(Error::InvalidArgument);
    }
    Ok(m.div_ceil(64))
}

/// The extension's sender: `Δ` and the keys `k_{Δ_i}`.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct OtSender {
    delta: u128,
    cols: Vec<Prg>,
    counter: u64,
    hash: CrHash,
}

/// The extension's receiver: both keys of each base OT.
#[cfg_attr(feature = "insecure-test-helpers", derive(Clone))]
pub struct OtReceiver {
    cols: Vec<(Prg, Prg)>,
    counter: u64,
    hash: CrHash,
}

/// A batch of OTs at the receiver before the sender's corrections: its rows `T_j` and
/// choice bits, packed.
pub struct RecvBatch {
    rows: Vec<u128>,
    choices: Vec<u64>,
    counter: u64,
}

/// A batch of OTs at the sender: its rows `Q_j`.
pub struct SendBatch {
    rows: Vec<u128>,
    counter: u64,
}

/// Both directions of OT between this party and `peer`, set up with 2 × 128 base OTs:
/// this party is the extension's receiver in one and its sender in the other.
pub fn setup<C: Channel>(ch: &mut C, peer: PartyId, rng: &mut Prg) -> Result<(OtSender, OtReceiver)> {
    // As base-OT sender (for the direction where we are the extension's receiver).
    let a = random_scalar(rng);
    let big_a = &a * RISTRETTO_BASEPOINT_TABLE;
    let a_bytes = big_a.compress().to_bytes();
    ch.send(peer, &a_bytes)?;
    ch.flush()?;
    // As base-OT receiver with choices Δ.
    let mut peer_a = [0u8; 32];
    ch.recv(peer, &mut peer_a)?;
    let peer_a_pt = decode_point(&peer_a)?;
    let mut dbytes = [0u8; 16];
    rng.fill_bytes(&mut dbytes);
    let delta = u128::from_le_bytes(dbytes);
    let mut bs = vec![0u8; 32 * KAPPA];
    let mut my_keys = Vec::with_capacity(KAPPA);
    for i in 0..KAPPA {
        let b = random_scalar(rng);
        let bg = &b * RISTRETTO_BASEPOINT_TABLE;
        let with_a = bg + peer_a_pt;
        let c = Choice::from(((delta >> i) & 1) as u8);
        let pt = RistrettoPoint::conditional_select(&bg, &with_a, c);
        let enc = pt.compress().to_bytes();
        bs[32 * i..32 * i + 32].copy_from_slice(&enc);
        my_keys.push(base_key(i, &peer_a, &enc, &(b * peer_a_pt)));
    }
    ch.send(peer, &bs)?;
    ch.flush()?;
    let mut peer_bs = vec![0u8; 32 * KAPPA];
    ch.recv(peer, &mut peer_bs)?;
    let mut pairs = Vec::with_capacity(KAPPA);
    for i in 0..KAPPA {
        let enc: [u8; 32] = peer_bs[32 * i..32 * i + 32].try_into().map_err(|_| Error::Malformed)?;
        let b = decode_point(&enc)?;
        let k0 = base_key(i, &a_bytes, &enc, &(a * b));
        let k1 = base_key(i, &a_bytes, &enc, &(a * (b - big_a)));
        pairs.push((Prg::new(k0, Stream::Local), Prg::new(k1, Stream::Local)));
    }
    let sender = OtSender {
        delta,
        cols: my_keys.into_iter().map(|k| Prg::new(k, Stream::Local)).collect(),
        counter: 0,
        hash: CrHash::new(),
    };
    Ok((sender, OtReceiver { cols: pairs, counter: 0, hash: CrHash::new() }))
}

impl OtReceiver {
    /// Start `m` OTs with packed choice bits `choices` (`⌈m/64⌉` words, bits past `m`
    /// ignored): returns the batch and the message `u` for the sender (`128·⌈m/64⌉` words).
    pub fn start(&mut self, choices: &[u64], m: usize) -> Result<(RecvBatch, Vec<u64>)> {
        let w = words_for(m)?;
        if choices.len() != w {
            return Err(Error::ShapeMismatch);
        }
        let mut r = choices.to_vec();
        mask_tail(&mut r, m);
        let mut t = vec![0u64; KAPPA * w];
        let mut u = vec![0u64; KAPPA * w];
        for (i, (g0, g1)) in self.cols.iter_mut().enumerate() {
            let (ti, ui) = (&mut t[i * w..(i + 1) * w], &mut u[i * w..(i + 1) * w]);
            g0.fill(ti);
            g1.fill(ui);
            for k in 0..w {
                ui[k] ^= ti[k] ^ r[k];
            }
        }
        let mut rows = transpose_cols(&t, w);
        rows.truncate(m);
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(m as u64);
        Ok((RecvBatch { rows, choices: r, counter }, u))
    }

    /// Random OT: the receiver's 128-bit messages `H(j, T_j)`.
    pub fn rot(&self, batch: &RecvBatch) -> Vec<u128> {
        let mut h = batch.rows.clone();
        self.hash.hash(batch.counter, &mut h);
        h
    }

    /// Correlated OT over Z_2^64: `x_j + r_j·δ_j` from the sender's `τ`.
    pub fn cot_recv(&self, batch: &RecvBatch, tau: &[u64]) -> Result<Vec<u64>> {
        if tau.len() != batch.rows.len() {
            return Err(Error::ShapeMismatch);
        }
        let h = self.rot(batch);
        Ok(h.iter()
            .zip(tau)
            .enumerate()
            .map(|(j, (hj, t))| {
                let r = (batch.choices[j / 64] >> (j % 64)) & 1;
                (*hj as u64).wrapping_sub(r.wrapping_mul(*t))
            })
            .collect())
    }

    /// Bit-correlated OT: packed `x_j ⊕ r_j·δ_j` from the sender's packed `τ`.
    pub fn bcot_recv(&self, batch: &RecvBatch, tau: &[u64]) -> Result<Vec<u64>> {
        let m = batch.rows.len();
        if tau.len() != m.div_ceil(64) {
            return Err(Error::ShapeMismatch);
        }
        let h = self.rot(batch);
        let mut out = vec![0u64; tau.len()];
        for (j, hj) in h.iter().enumerate() {
            out[j / 64] |= ((*hj as u64) & 1) << (j % 64);
        }
        for (o, (t, r)) in out.iter_mut().zip(tau.iter().zip(&batch.choices)) {
            *o ^= t & r;
        }
        Ok(out)
    }
}

impl OtSender {
    /// Receive the receiver's `u` for `m` OTs (same `m` as its `start`).
    pub fn finish(&mut self, u: &[u64], m: usize) -> Result<SendBatch> {
        let w = words_for(m)?;
        if u.len() != KAPPA * w {
            return Err(Error::ShapeMismatch);
        }
        let mut q = vec![0u64; KAPPA * w];
        for (i, g) in self.cols.iter_mut().enumerate() {
            let qi = &mut q[i * w..(i + 1) * w];
            g.fill(qi);
            let mask = 0u64.wrapping_sub(((self.delta >> i) & 1) as u64);
            for k in 0..w {
                qi[k] ^= u[i * w + k] & mask;
            }
        }
        let mut rows = transpose_cols(&q, w);
        rows.truncate(m);
        let counter = self.counter;
        self.counter = self.counter.wrapping_add(m as u64);
        Ok(SendBatch { rows, counter })
    }

    /// Random OT: the sender's pair of 128-bit messages `(H(j, Q_j), H(j, Q_j ⊕ Δ))`.
    pub fn rot(&self, batch: &SendBatch) -> (Vec<u128>, Vec<u128>) {
        let mut h0 = batch.rows.clone();
        let mut h1: Vec<u128> = batch.rows.iter().map(|q| q ^ self.delta).collect();
        self.hash.hash(batch.counter, &mut h0);
        self.hash.hash(batch.counter, &mut h1);
        (h0, h1)
    }

    /// Correlated OT over Z_2^64 with correlations `delta`: returns this side's `x` and the
    /// `τ` to send.
    pub fn cot_send(&self, batch: &SendBatch, delta: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
        if delta.len() != batch.rows.len() {
            return Err(Error::ShapeMismatch);
        }
        let (h0, h1) = self.rot(batch);
        let x: Vec<u64> = h0.iter().map(|v| *v as u64).collect();
        let tau =
            h1.iter().zip(&x).zip(delta).map(|((y, x), d)| (*y as u64).wrapping_sub(*x).wrapping_sub(*d)).collect();
        Ok((x, tau))
    }

    /// Bit-correlated OT with packed correlation bits `delta`: returns packed `x` and `τ`.
    pub fn bcot_send(&self, batch: &SendBatch, delta: &[u64]) -> Result<(Vec<u64>, Vec<u64>)> {
        let m = batch.rows.len();
        if delta.len() != m.div_ceil(64) {
            return Err(Error::ShapeMismatch);
        }
        let (h0, h1) = self.rot(batch);
        let mut x = vec![0u64; delta.len()];
        let mut tau = vec![0u64; delta.len()];
        for j in 0..m {
            let (a, b) = ((h0[j] as u64) & 1, (h1[j] as u64) & 1);
            x[j / 64] |= a << (j % 64);
            tau[j / 64] |= (a ^ b) << (j % 64);
        }
        for (t, d) in tau.iter_mut().zip(delta) {
            *t ^= d;
        }
        mask_tail(&mut tau, m);
        Ok((x, tau))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::mem;

    #[test]
    fn transpose_matches_definition() {
        let mut rng = Prg::new([7; 32], Stream::Local);
        let w = 3;
        let mut cols = vec![0u64; KAPPA * w];
        rng.fill(&mut cols);
        let rows = transpose_cols(&cols, w);
        for j in 0..64 * w {
            for i in 0..KAPPA {
                let col_bit = (cols[i * w + j / 64] >> (j % 64)) & 1;
                let row_bit = ((rows[j] >> i) & 1) as u64;
                assert_eq!(col_bit, row_bit, "row {j} column {i}");
            }
        }
    }

    fn pair() -> ((OtSender, OtReceiver), (OtSender, OtReceiver)) {
        let mut chans = mem::mesh(2);
        let c1 = chans.pop().unwrap();
        let mut c0 = chans.pop().unwrap();
        let h = std::thread::spawn(move || {
            let mut c1 = c1;
            setup(&mut c1, 0, &mut Prg::new([1; 32], Stream::Local)).unwrap()
        });
        let a = setup(&mut c0, 1, &mut Prg::new([2; 32], Stream::Local)).unwrap();
        (a, h.join().unwrap())
    }

    #[test]
    fn random_and_correlated_ot_deliver_the_chosen_message() {
        let ((_s0, mut r0), (mut s1, _r1)) = pair();
        let m: usize = 1000;
        let mut choice = vec![0u64; m.div_ceil(64)];
        Prg::new([3; 32], Stream::Local).fill(&mut choice);
        for _round in 0..2 {
            let (rb, u) = r0.start(&choice, m).unwrap();
            let sb = s1.finish(&u, m).unwrap();
            let got = r0.rot(&rb);
            let (m0, m1) = s1.rot(&sb);
            for j in 0..m {
                let c = (choice[j / 64] >> (j % 64)) & 1;
                assert_eq!(got[j], if c == 1 { m1[j] } else { m0[j] });
                assert_ne!(got[j], if c == 1 { m0[j] } else { m1[j] });
            }
            let delta: Vec<u64> = (0..m as u64).map(|j| j.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
            let (x, tau) = s1.cot_send(&sb, &delta).unwrap();
            let y = r0.cot_recv(&rb, &tau).unwrap();
            for j in 0..m {
                let c = (choice[j / 64] >> (j % 64)) & 1;
                assert_eq!(y[j], x[j].wrapping_add(c.wrapping_mul(delta[j])));
            }
            let dbits: Vec<u64> = (0..choice.len() as u64).map(|k| k.wrapping_mul(0xdead_beef_1234_5679)).collect();
            let (x, tau) = s1.bcot_send(&sb, &dbits).unwrap();
            let y = r0.bcot_recv(&rb, &tau).unwrap();
            for j in 0..m {
                let bit = |v: &[u64]| (v[j / 64] >> (j % 64)) & 1;
                assert_eq!(bit(&y), bit(&x) ^ (bit(&choice) & bit(&dbits)));
            }
        }
    }

    #[test]
    fn a_point_that_does_not_decode_is_an_error() {
        assert_eq!(decode_point(&[0xff; 32]).err(), Some(Error::Malformed));
    }
}
