//! Plain 2PC: the client (party 0) and the server (party 1) alone, no dealer and no helper.
//!
//! Every correlation a dealer would hand out is made by the two parties themselves, from
//! oblivious transfer ([`ot`]: Chou–Orlandi base OTs, IKNP extension) and, for products
//! with matrices, from lattice homomorphic encryption ([`he`]). Shares are additive 2-of-2
//! over Z_2^64, as in 2PC-Dealer; boolean shares are packed XOR shares. Security is
//! semi-honest: λ = 128 bits computational (128 base OTs, AES-128, Ristretto255, the RLWE
//! parameters of [`he`]), σ = 40 bits statistical (the noise flooding of [`he`]).
//!
//! **Products of two private values.** For `u` held by one party and `v` by the other,
//! Gilboa's method gives additive shares of `u·v` from 64 correlated OTs: the holder of `u`
//! chooses with bit `b` of `u`, the correlation is `2^b·v`, and the shares are the sums of
//! the 64 outputs. `mul` runs it in both directions at once (`x_0·y_1 + x_1·y_0`; the
//! other two terms are local), `square` in one. Two rounds (the receiver's IKNP matrix,
//! then the sender's corrections); 1 KiB + 260 bytes per product per direction (the
//! correction for bit `b` needs only `64 − b` bits).
//!
//! **Matrix products** go through [`he`] (`x·W` with the server's weight, and shared ×
//! shared): one round trip, costs in its docs.
//!
//! **Truncation** (the range of [`Protocol::trunc`]). With `y = x + 2^62 ∈ [0, 2^63)` and
//! shares `y_0 + y_1 = y + w·2^64`, the wrap is `w = msb(y_0) ∨ msb(y_1)` (two words below
//! 2^63 cannot wrap, and one word above 2^63 must, as the sum is below 2^63). So
//! `(y_0 ≫ s) + (y_1 ≫ s) + 1 − w·2^(64−s)` is `⌊y/2^s⌋` or one more, and `w` costs one
//! bit product: one OT per element, 24 bytes, two rounds.
//!
//! **Comparison** (`ltz`, the millionaires' protocol of CrypTFlow2). For `z = z_0 + z_1`,
//! `msb(z) = msb(z_0) ⊕ msb(z_1) ⊕ [α < β]` with `α = 2^63 − 1 − (z_0 mod 2^63)` at the
//! client and `β = z_1 mod 2^63` at the server. Both are cut into 16 chunks of 4 bits (the
//! top one 3); for each chunk a 1-out-of-16 OT (four 1-out-of-2 random OTs on the server's
//! bits, keys combined and hashed per entry) gives XOR shares of `[α_j < β_j]` and
//! `[α_j = β_j]`; the borrow tree of [`assist`](marill_core::proto::assist) (26 ANDs in
//! 4 rounds) and one conversion finish it. Several offsets reuse the server's random OTs.
//!
//! **AND** (packed XOR shares): `x_0 y_0 ⊕ x_1 y_1` locally and the cross terms by
//! bit-correlated OT, 64 OTs per word per direction. **b2a**: `b = b_0 + b_1 − 2 b_0 b_1`,
//! one bit product per bit.
//!
//! Costs per call (bytes party 0 / party 1 sends; `w = ⌈n/64⌉`; `iknp(t) = 1024·⌈t/64⌉`,
//! the receiver's matrix for `t` OTs; checked by `tests/tests/costs.rs`):
//!
//! | op | rounds | bytes |
//! |---|---|---|
//! | `input` | 0 | 0 (both hold the input seed) |
//! | `open` | 1 | 8n / 8n |
//! | `mul` | 2 | 1284n / 1284n |
//! | `square` | 2 | 1024n / 260n |
//! | `trunc` | 2 | iknp(n) / 8n |
//! | `and` (w words) | 2 | 1032w / 1032w |
//! | `b2a` | 2 | iknp(n) / 8n |
//! | `ltz` (n × k offsets, `w = ⌈kn/64⌉`) | 11 | 64kn + 26·1032w + iknp(kn) / iknp(63n) + 26·1032w + 8kn |
//! | `matmul` m×n×k | 2 | each: 32 + 24N·(inputs) + 10·(N + bm·bk)·(outputs), both directions, 2 digits |
//! | `matmul_weight` | 2 | client 32 + 24N·(inputs) / server 10·(N + bm·bk)·(outputs) |
//!
//! with `N = 8192` and the block shape of [`he::Plan`]. Set-up: 2 × 128 base OTs
//! (4 KiB each way) and one public key (192 KiB each way). The rounds are those of one
//! window: an op of more OTs than the batch ([`Ot2pc::set_ot_batch`]) runs in windows of it,
//! one after another, each with the rounds above (and its IKNP matrix and packed bits rounded
//! up to 64 OTs, the only bytes windows add), so that at most a batch of OT state is live at a
//! time.

pub mod he;
pub mod ot;

use marill_core::channel::{Channel, PartyId, recv_words, send_words};
use marill_core::cost::Cost;
use marill_core::error::{Error, Result, ensure_shape};
use marill_core::prg::{Prg, Seed, Stream};
use marill_core::proto::assist::{CHUNKS, borrow_tree, borrow_tree_ops};
use marill_core::proto::{Protocol, RANGE_OFFSET, WeightShares, check_shift};
use marill_core::ring::{self, MatDims};
use marill_core::share::bit_words;

use ot::{CrHash, OtReceiver, OtSender};

/// One party of plain 2PC (party 0 the client, party 1 the server).
pub struct Ot2pc<C> {
    ch: C,
    party: PartyId,
    snd: OtSender,
    rcv: OtReceiver,
    /// Input masks, shared by both parties.
    input: Prg,
    /// This party's private randomness.
    local: Prg,
    /// Pads of the 1-out-of-16 OTs (a hash of their own, with its own counter).
    pad: CrHash,
    pad_counter: u64,
    he: he::Engine,
    /// The most OTs one extension makes ([`Ot2pc::set_ot_batch`]).
    ot_batch: usize,
}

impl<C: Channel> Ot2pc<C> {
    /// Set up party `ch.id()` (0 or 1): a shared input seed (the XOR of one from each
    /// party, over `ch`, which must be confidential), 2 × 128 base OTs and the HE keys. `entropy` seeds all
    /// of this party's private randomness.
    pub fn new(mut ch: C, entropy: Seed) -> Result<Self> {
        let party = ch.id();
        if party > 1 {
            return Err(Error::InvalidArgument);
        }
        let peer = 1 - party;
        let mut local = Prg::new(entropy, Stream::Local);
        // Both parties contribute to the input seed (and the exchange is symmetric, so the
        // round clocks of the two parties stay level).
        let mine = local.seed();
        ch.send(peer, &mine)?;
        ch.flush()?;
        let mut theirs = [0u8; 32];
        ch.recv(peer, &mut theirs)?;
        let input_seed: Seed = core::array::from_fn(|i| mine[i] ^ theirs[i]);
        let (snd, rcv) = ot::setup(&mut ch, peer, &mut local)?;
        let he = he::Engine::setup(&mut ch, party, &mut local)?;
        Ok(Self {
            ch,
            party,
            snd,
            rcv,
            input: Prg::new(input_seed, Stream::Input),
            local,
            pad: CrHash::with_key(*b"marill-ot16-pads"),
            pad_counter: 0,
            he,
            ot_batch: ot::MAX_BATCH,
        })
    }

    /// The most OTs in flight at once, `64..=`[`ot::MAX_BATCH`] (the default). A longer
    /// product, AND, conversion or comparison runs as windows of at most `batch` OTs, one
    /// after another: each window's OT state is dropped before the next starts, so the batch
    /// bounds the memory of one op (about 90 bytes per OT at each party, measured in
    /// `tests/ot_memory.rs`, beside the op's inputs and outputs), and the op's rounds are the
    /// windows' sum. Both parties must set the same value.
    pub fn set_ot_batch(&mut self, batch: usize) -> Result<()> {
        if !(64..=ot::MAX_BATCH).contains(&batch) {
            return Err(Error::InvalidArgument);
        }
        self.ot_batch = batch;
        Ok(())
    }

    /// The channel (for its costs, say).
    pub fn channel(&self) -> &C {
        &self.ch
    }

    /// A copy of this party's whole state (OT extension, HE keys, generators) over another
    /// channel. **Insecure**: two copies that talk to real peers reuse OTs and masks. Only
    /// for harnesses that set a party up once and replay many peers against copies of it
    /// (the `ot2pc_peer_bytes` fuzz target).
    #[cfg(feature = "insecure-test-helpers")]
    pub fn fork_insecure<D: Channel>(&self, ch: D) -> Ot2pc<D> {
        Ot2pc {
            ch,
            party: self.party,
            snd: self.snd.clone(),
            rcv: self.rcv.clone(),
            input: self.input.clone(),
            local: self.local.clone(),
            pad: self.pad.clone(),
            pad_counter: self.pad_counter,
            he: self.he.clone(),
            ot_batch: self.ot_batch,
        }
    }

    fn peer(&self) -> PartyId {
        1 - self.party
    }

    fn exchange(&mut self, msg: &[u64], rcv: &mut [u64]) -> Result<()> {
        let peer = self.peer();
        send_words(&mut self.ch, peer, msg)?;
        self.ch.flush()?;
        recv_words(&mut self.ch, peer, rcv)
    }

    /// Shares of `Σ u·v` over the pairs where this party holds `u` (if `u` is given: it
    /// chooses) and the peer `v`, plus those where the peer holds `u` and this party `v`
    /// (if `v` is given). `bits`: how many low bits of each `u` matter (64, or 1 for bits).
    /// Both parties must pass matching `Some`/`None` (one's `u` with the other's `v`) and
    /// the same `n` and `bits`.
    ///
    /// At most `ot_batch` OTs are in flight: a longer product runs as windows of whole
    /// elements, one after another (each window's OT state is dropped before the next
    /// starts), so its memory is bounded by the batch and its rounds are the windows' sum.
    fn cross(&mut self, u: Option<&[u64]>, v: Option<&[u64]>, n: usize, bits: usize) -> Result<Vec<u64>> {
        ensure_shape(u.is_none_or(|u| u.len() == n) && v.is_none_or(|v| v.len() == n))?;
        ensure_shape((1..=64).contains(&bits))?;
        n.checked_mul(bits).ok_or(Error::ShapeMismatch)?;
        let mut out = vec![0u64; n];
        for r in chunks(n, self.ot_batch / bits) {
            let o = &mut out[r.clone()];
            self.cross_window(u.map(|u| &u[r.clone()]), v.map(|v| &v[r.clone()]), bits, o)?;
        }
        Ok(out)
    }

    /// One window of [`Self::cross`]: `out.len() · bits ≤ ot_batch` OTs, two rounds.
    fn cross_window(&mut self, u: Option<&[u64]>, v: Option<&[u64]>, bits: usize, out: &mut [u64]) -> Result<()> {
        let peer = self.peer();
        let m = out.len() * bits;
        // OT `j` carries bit `b = j mod bits` of `u` (windows start at whole elements, so
        // this holds within a window). Its shares are taken mod 2^(64−b) and shifted left by
        // `b` at the end (`(a mod 2^(64−b))·2^b = a·2^b mod 2^64`), so its correction needs
        // only 64 − b bits: 260 bytes per 64-bit product instead of 512.
        let width = |j: usize| 64 - (j % bits) as u32;
        let tau_words = (0..m).map(|j| width(j) as usize).sum::<usize>().div_ceil(64);
        // 1. As receiver: our choice bits, the IKNP matrix to the peer.
        let recv_batch = match u {
            Some(u) => {
                let (batch, msg) = self.rcv.start(&pack_low_bits(u, bits), m)?;
                send_words(&mut self.ch, peer, &msg)?;
                self.ch.flush()?;
                Some(batch)
            }
            None => None,
        };
        // 2. As sender: finish the peer's OTs, send the corrections for v.
        if let Some(v) = v {
            let mut umat = vec![0u64; ot::KAPPA * m.div_ceil(64)];
            recv_words(&mut self.ch, peer, &mut umat)?;
            let batch = self.snd.finish(&umat, m)?;
            drop(umat);
            let delta: Vec<u64> = (0..m).map(|j| v[j / bits]).collect();
            let (x, tau) = self.snd.cot_send(&batch, &delta)?;
            drop((batch, delta));
            send_words(&mut self.ch, peer, &pack_widths(&tau, width, tau_words))?;
            self.ch.flush()?;
            for (j, xj) in x.iter().enumerate() {
                out[j / bits] = out[j / bits].wrapping_sub(xj << (j % bits));
            }
        }
        // 3. As receiver: the outputs.
        if let Some(batch) = recv_batch {
            let mut packed = vec![0u64; tau_words];
            recv_words(&mut self.ch, peer, &mut packed)?;
            let y = self.rcv.cot_recv(&batch, &unpack_widths(&packed, m, width))?;
            for (j, yj) in y.iter().enumerate() {
                out[j / bits] = out[j / bits].wrapping_add(yj << (j % bits));
            }
        }
        Ok(())
    }

    /// XOR shares of `u_0 ∧ v_1 ⊕ u_1 ∧ v_0` over packed bits (`l` words each), in windows
    /// of at most `ot_batch` OTs, one after another, as in [`Self::cross`].
    fn cross_bits(&mut self, u: &[u64], v: &[u64]) -> Result<Vec<u64>> {
        let l = u.len();
        ensure_shape(v.len() == l)?;
        let peer = self.peer();
        let mut out = vec![0u64; l];
        for r in chunks(l, self.ot_batch / 64) {
            let (batch, msg) = self.rcv.start(&u[r.clone()], 64 * r.len())?;
            send_words(&mut self.ch, peer, &msg)?;
            self.ch.flush()?;
            drop(msg);
            let mut umat = vec![0u64; ot::KAPPA * r.len()];
            recv_words(&mut self.ch, peer, &mut umat)?;
            let sb = self.snd.finish(&umat, 64 * r.len())?;
            drop(umat);
            let (x, tau) = self.snd.bcot_send(&sb, &v[r.clone()])?;
            send_words(&mut self.ch, peer, &tau)?;
            self.ch.flush()?;
            out[r.clone()].copy_from_slice(&x);
            let mut tau_in = vec![0u64; r.len()];
            recv_words(&mut self.ch, peer, &mut tau_in)?;
            let y = self.rcv.bcot_recv(&batch, &tau_in)?;
            for (o, b) in out[r].iter_mut().zip(&y) {
                *o ^= b;
            }
        }
        Ok(out)
    }

    /// Shares of `b_0·b_1` for bits `b` (low bit of each word) held one per party.
    fn bit_product(&mut self, b: &[u64]) -> Result<Vec<u64>> {
        let n = b.len();
        if self.party == 0 { self.cross(Some(b), None, n, 1) } else { self.cross(None, Some(b), n, 1) }
    }

    fn is_a(&self) -> u64 {
        u64::from(self.party == 0)
    }
}

/// The low `width(j)` bits of each `v[j]`, concatenated into `words` words.
/// `0..n` in consecutive ranges of at most `per` (≥ 1) elements.
fn chunks(n: usize, per: usize) -> Vec<std::ops::Range<usize>> {
    (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect()
}

fn pack_widths(v: &[u64], width: impl Fn(usize) -> u32, words: usize) -> Vec<u64> {
    let mut out = vec![0u64; words];
    let mut at = 0usize;
    for (j, x) in v.iter().enumerate() {
        let wd = width(j);
        let x = if wd == 64 { *x } else { x & ((1u64 << wd) - 1) };
        let (k, off) = (at / 64, at % 64);
        out[k] |= x << off;
        if off + wd as usize > 64 {
            out[k + 1] |= x >> (64 - off);
        }
        at += wd as usize;
    }
    out
}

/// The inverse of [`pack_widths`] for `m` values.
fn unpack_widths(words: &[u64], m: usize, width: impl Fn(usize) -> u32) -> Vec<u64> {
    let mut at = 0usize;
    (0..m)
        .map(|j| {
            let wd = width(j);
            let (k, off) = (at / 64, at % 64);
            let mut x = words[k] >> off;
            if off + wd as usize > 64 {
                x |= words[k + 1] << (64 - off);
            }
            at += wd as usize;
            if wd == 64 { x } else { x & ((1u64 << wd) - 1) }
        })
        .collect()
}

/// The low `bits` bits of each word, packed in order (`bits` per word, word-major).
fn pack_low_bits(u: &[u64], bits: usize) -> Vec<u64> {
    if bits == 64 {
        return u.to_vec();
    }
    let m = u.len() * bits;
    let mut out = vec![0u64; m.div_ceil(64)];
    for (e, v) in u.iter().enumerate() {
        for b in 0..bits {
            let j = e * bits + b;
            out[j / 64] |= ((v >> b) & 1) << (j % 64);
        }
    }
    out
}

fn mat_parts(d: MatDims, count: usize) -> Result<(usize, usize, usize)> {
    let mn = d.m.checked_mul(d.n).and_then(|v| v.checked_mul(count));
    let nk = d.n.checked_mul(d.k).and_then(|v| v.checked_mul(count));
    let mk = d.m.checked_mul(d.k).and_then(|v| v.checked_mul(count));
    match (mn, nk, mk) {
        (Some(a), Some(b), Some(c)) => Ok((a, b, c)),
        _ => Err(Error::ShapeMismatch),
    }
}

impl<C: Channel> Protocol for Ot2pc<C> {
    const PLANES: usize = 1;
    const CHEAP_COMPARISONS: bool = false;

    fn party(&self) -> PartyId {
        self.party
    }

    fn cost(&self) -> Option<Cost> {
        self.ch.cost()
    }

    fn barrier(&mut self) -> Result<()> {
        marill_core::channel::barrier(&mut self.ch, 2)
    }

    fn settle(&mut self) -> Result<()> {
        self.ch.settle()
    }

    fn public_plane(&self) -> Option<usize> {
        (self.party == 0).then_some(0)
    }

    fn input(&mut self, owner: PartyId, values: Option<&[u64]>, out: &mut [u64]) -> Result<()> {
        ensure_shape(owner <= 1 && (owner == self.party) == values.is_some())?;
        if let Some(v) = values {
            ensure_shape(v.len() == out.len())?;
        }
        // The owner's share is `v − r`, the other's `r`, with `r` from the shared seed.
        self.input.fill(out);
        if let Some(v) = values {
            for (o, x) in out.iter_mut().zip(v) {
                *o = x.wrapping_sub(*o);
            }
        }
        Ok(())
    }

    fn open(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len())?;
        self.exchange(x, out)?;
        ring::add_assign(out, x)
    }

    fn reveal_to(&mut self, to: PartyId, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len() && to <= 1)?;
        if to == self.party {
            let peer = self.peer();
            recv_words(&mut self.ch, peer, out)?;
            ring::add_assign(out, x)
        } else {
            send_words(&mut self.ch, to, x)?;
            self.ch.flush()?;
            out.fill(0);
            Ok(())
        }
    }

    fn mul(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == n && y.len() == n)?;
        let c = self.cross(Some(x), Some(y), n, 64)?;
        for i in 0..n {
            out[i] = x[i].wrapping_mul(y[i]).wrapping_add(c[i]);
        }
        Ok(())
    }

    fn square(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == n)?;
        let c = if self.party == 0 {
            self.cross(Some(x), None, n, 64)?
        } else {
            let twice: Vec<u64> = x.iter().map(|v| v.wrapping_mul(2)).collect();
            self.cross(None, Some(&twice), n, 64)?
        };
        for i in 0..n {
            out[i] = x[i].wrapping_mul(x[i]).wrapping_add(c[i]);
        }
        Ok(())
    }

    fn matmul_many(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims, count: usize) -> Result<()> {
        let (mn, nk, mk) = mat_parts(d, count)?;
        ensure_shape(x.len() == mn && y.len() == nk && out.len() == mk)?;
        // Cross terms X_0·Y_1 + X_1·Y_0 by HE, the local ones here.
        let cross = self.he.matmul_cross(&mut self.ch, &mut self.local, x, y, d, count)?;
        out.copy_from_slice(&cross);
        let (bmn, bnk, bmk) = (d.m * d.n, d.n * d.k, d.m * d.k);
        for c in 0..count {
            ring::matmul_acc(
                &x[c * bmn..(c + 1) * bmn],
                &y[c * bnk..(c + 1) * bnk],
                &mut out[c * bmk..(c + 1) * bmk],
                d,
            )?;
        }
        Ok(())
    }

    fn share_weight(&mut self, owner: PartyId, w: Option<&[u64]>, n: usize, k: usize) -> Result<WeightShares> {
        let len = n.checked_mul(k).ok_or(Error::ShapeMismatch)?;
        ensure_shape(owner <= 1 && (owner == self.party) == w.is_some())?;
        if let Some(w) = w {
            ensure_shape(w.len() == len)?;
        }
        // The owner keeps its weight; the other party keeps nothing.
        Ok(WeightShares { n, k, words: if owner == self.party { len } else { 0 } })
    }

    fn fill_weight(
        &mut self,
        owner: PartyId,
        w: Option<&[u64]>,
        spec: WeightShares,
        material: &mut [u64],
    ) -> Result<()> {
        ensure_shape(owner <= 1 && material.len() == spec.words)?;
        match w {
            Some(w) if owner == self.party => {
                ensure_shape(w.len() == material.len())?;
                material.copy_from_slice(w);
                Ok(())
            }
            None if owner != self.party => Ok(()),
            _ => Err(Error::ShapeMismatch),
        }
    }

    fn matmul_weight(&mut self, x: &[u64], material: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        let (mn, nk, mk) = mat_parts(d, 1)?;
        ensure_shape(x.len() == mn && out.len() == mk)?;
        // The owner is whoever holds the material.
        let owner = material.len() == nk && nk > 0;
        ensure_shape(owner || material.is_empty())?;
        let cross = self.he.weight_cross(&mut self.ch, &mut self.local, x, owner.then_some(material), d)?;
        out.copy_from_slice(&cross);
        if owner {
            ring::matmul_acc(x, material, out, d)?;
        }
        Ok(())
    }

    fn trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == n)?;
        check_shift(shift)?;
        let is_a = self.is_a();
        let y: Vec<u64> = x.iter().map(|v| v.wrapping_add(is_a * RANGE_OFFSET)).collect();
        let msb: Vec<u64> = y.iter().map(|v| v >> 63).collect();
        let ab = self.bit_product(&msb)?;
        let top = 1u64 << (64 - shift);
        let off = (RANGE_OFFSET >> shift).wrapping_sub(1);
        for e in 0..n {
            // w = a + b − ab, shared as (a − ab_0) and (b − ab_1).
            let w = msb[e].wrapping_sub(ab[e]);
            out[e] = (y[e] >> shift).wrapping_sub(w.wrapping_mul(top)).wrapping_sub(is_a.wrapping_mul(off));
        }
        Ok(())
    }

    fn mul_trunc(&mut self, x: &[u64], y: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        self.mul(x, y, out)?;
        self.trunc_in_place(out, shift)
    }

    fn trunc_in_place(&mut self, x: &mut [u64], shift: u32) -> Result<()> {
        let copy = x.to_vec();
        self.trunc(&copy, shift, x)
    }

    fn ltz(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        self.ltz_many(x, &[0], out)
    }

    fn ltz_many(&mut self, x: &[u64], offsets: &[u64], out: &mut [u64]) -> Result<()> {
        let n = x.len();
        let k = offsets.len();
        ensure_shape(k > 0 && out.len() == n.checked_mul(k).ok_or(Error::ShapeMismatch)?)?;
        // 63 OTs per element: more than an extension makes runs as chunks of elements, one
        // after another (so their rounds add up; a softmax over 32 × 512 × 512 is 8 chunks).
        let per = self.ot_batch / 63;
        if n > per {
            let mut part = Vec::new();
            for r in chunks(n, per) {
                let len = r.len();
                part.resize(len * k, 0);
                self.ltz_many(&x[r.clone()], offsets, &mut part)?;
                for i in 0..k {
                    out[i * n + r.start..i * n + r.end].copy_from_slice(&part[i * len..(i + 1) * len]);
                }
            }
            return Ok(());
        }
        let m = n * k;
        let w = bit_words(m);
        let low = u64::MAX >> 1;
        let peer = self.peer();
        // 1. The server's random OTs on the 63 low bits of β = x_1 (shared by all offsets).
        let rots = 63 * n;
        let mut lt = vec![0u64; CHUNKS * w];
        let mut eq = vec![0u64; CHUNKS * w];
        let mut bits = vec![0u64; w];
        let pad0 = self.pad_counter;
        self.pad_counter = self.pad_counter.wrapping_add((m * CHUNKS * 16) as u64);
        let slot =
            |i: usize, e: usize, j: usize, v: usize| pad0.wrapping_add((((i * n + e) * CHUNKS + j) * 16 + v) as u64);
        if self.party == 1 {
            let betas: Vec<u64> = x.iter().map(|v| v & low).collect();
            let choices = pack_low_bits(&betas, 63);
            let (batch, msg) = self.rcv.start(&choices, rots)?;
            send_words(&mut self.ch, peer, &msg)?;
            self.ch.flush()?;
            let keys = self.rcv.rot(&batch);
            let mut table_words = vec![0u64; m * CHUNKS / 2];
            recv_words(&mut self.ch, peer, &mut table_words)?;
            let tables: &[u32] = bytemuck::cast_slice(&table_words);
            // Pads: hash each key under its own tweak (the slot of the chosen entry), all
            // of them in one batch.
            let mut pads = Vec::with_capacity(m * CHUNKS);
            for _i in 0..k {
                for e in 0..n {
                    for j in 0..CHUNKS {
                        let nb = if j == CHUNKS - 1 { 3 } else { 4 };
                        pads.push((0..nb).fold(0u128, |acc, b| acc ^ keys[e * 63 + 4 * j + b]));
                    }
                }
            }
            let mut tweaks = Vec::with_capacity(m * CHUNKS);
            for i in 0..k {
                for e in 0..n {
                    for j in 0..CHUNKS {
                        tweaks.push(slot(i, e, j, ((betas[e] >> (4 * j)) & 15) as usize));
                    }
                }
            }
            self.pad.hash_tweaked(&tweaks, &mut pads);
            for i in 0..k {
                for e in 0..n {
                    for j in 0..CHUNKS {
                        let v = ((betas[e] >> (4 * j)) & 15) as usize;
                        let idx = (i * n + e) * CHUNKS + j;
                        let got = ((tables[idx] >> (2 * v)) & 3) ^ (pads[idx] & 3) as u32;
                        let bit = i * n + e;
                        lt[j * w + bit / 64] |= u64::from(got & 1) << (bit % 64);
                        eq[j * w + bit / 64] |= u64::from(got >> 1) << (bit % 64);
                    }
                }
            }
            for i in 0..k {
                for e in 0..n {
                    let bit = i * n + e;
                    bits[bit / 64] |= (x[e] >> 63) << (bit % 64);
                }
            }
        } else {
            let mut umat = vec![0u64; ot::KAPPA * rots.div_ceil(64)];
            recv_words(&mut self.ch, peer, &mut umat)?;
            let batch = self.snd.finish(&umat, rots)?;
            let (h0, h1) = self.snd.rot(&batch);
            // Two 32-bit tables per word (m·16 tables: always a whole number of words).
            let mut table_words = vec![0u64; m * CHUNKS / 2];
            let tables: &mut [u32] = bytemuck::cast_slice_mut(&mut table_words);
            let mut keys = vec![0u128; 16];
            for i in 0..k {
                for e in 0..n {
                    let z = x[e].wrapping_sub(offsets[i]);
                    let alpha = low - (z & low);
                    let bit = i * n + e;
                    bits[bit / 64] |= (z >> 63) << (bit % 64);
                    for j in 0..CHUNKS {
                        let nb = if j == CHUNKS - 1 { 3 } else { 4 };
                        let a = (alpha >> (4 * j)) & 15;
                        // The client's shares of [α_j < β_j] and [α_j = β_j]: random bits.
                        let r2 = self.local.next_u64();
                        let (rl, re) = (r2 & 1, (r2 >> 1) & 1);
                        lt[j * w + bit / 64] |= rl << (bit % 64);
                        eq[j * w + bit / 64] |= re << (bit % 64);
                        let mut t = 0u32;
                        for (v, key) in keys.iter_mut().enumerate() {
                            *key = (0..nb).fold(0u128, |acc, b| {
                                let idx = e * 63 + 4 * j + b;
                                acc ^ if (v >> b) & 1 == 1 { h1[idx] } else { h0[idx] }
                            });
                        }
                        // One batch of 16 pads; entries past 2^nb stay zero.
                        let base = slot(i, e, j, 0);
                        self.pad.hash(base, &mut keys);
                        for (v, pad) in keys.iter().enumerate().take(1 << nb) {
                            let ltv = u32::from(a < v as u64) ^ rl as u32;
                            let eqv = u32::from(a == v as u64) ^ re as u32;
                            t |= ((ltv | (eqv << 1)) ^ (pad & 3) as u32) << (2 * v);
                        }
                        tables[(i * n + e) * CHUNKS + j] = t;
                    }
                }
            }
            send_words(&mut self.ch, peer, &table_words)?;
            self.ch.flush()?;
        }
        // 2. The borrow tree, then msb(z_0) ⊕ msb(z_1) ⊕ borrow, then to arithmetic.
        let mut ops = vec![0u64; borrow_tree_ops(w)];
        borrow_tree(&mut lt, &mut eq, &mut ops, w, |a, b, z| self.and_bits(a, b, z))?;
        for i in 0..w {
            bits[i] ^= lt[i];
        }
        self.b2a(&bits, out)
    }

    fn and_bits(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        let l = out.len();
        ensure_shape(x.len() == l && y.len() == l)?;
        let c = self.cross_bits(x, y)?;
        for i in 0..l {
            out[i] = (x[i] & y[i]) ^ c[i];
        }
        Ok(())
    }

    fn b2a(&mut self, bits: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(bits.len() == bit_words(n))?;
        let mine: Vec<u64> = (0..n).map(|e| (bits[e / 64] >> (e % 64)) & 1).collect();
        let prod = self.bit_product(&mine)?;
        for e in 0..n {
            out[e] = mine[e].wrapping_sub(prod[e].wrapping_mul(2));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::transport::mem;
    use marill_core::cost::Metered;

    /// What the chunked ops open to, and the rounds of each op.
    type Chunked = (Vec<Vec<u64>>, Vec<u64>);

    /// A product, a comparison with two offsets, an AND of packed bits and a bit conversion
    /// at one party, with `batch` OTs per extension; the inputs `x`, `y` and the bits `a`,
    /// `b` are the client's (party 0's).
    fn chunked_ops(ch: mem::MemChannel, batch: usize, x: &[u64], y: &[u64], a: &[u64], b: &[u64]) -> Chunked {
        let mut p = Ot2pc::new(Metered::new(ch), [7; 32]).unwrap();
        assert!(p.set_ot_batch(63).is_err() && p.set_ot_batch(ot::MAX_BATCH + 1).is_err());
        p.set_ot_batch(batch).unwrap();
        let me = p.party;
        let mut share = |v: &[u64]| {
            let mut o = vec![0; v.len()];
            p.input(0, (me == 0).then_some(v), &mut o).unwrap();
            o
        };
        let (sx, sy) = (share(x), share(y));
        // XOR shares of the bits: party 0 holds them, party 1 zeros.
        let bits = |v: &[u64]| if me == 0 { v.to_vec() } else { vec![0; v.len()] };
        let (sa, sb) = (bits(a), bits(b));
        let (mut prod, mut lt) = (vec![0; x.len()], vec![0; 2 * x.len()]);
        let (mut and, mut conv) = (vec![0; a.len()], vec![0; 64 * a.len()]);
        let mut rounds = Vec::new();
        let clock = |p: &Ot2pc<_>| p.cost().unwrap().rounds;
        let t = clock(&p);
        p.mul(&sx, &sy, &mut prod).unwrap();
        rounds.push(clock(&p) - t);
        let t = clock(&p);
        p.ltz_many(&sx, &[0, 1 << 40], &mut lt).unwrap();
        rounds.push(clock(&p) - t);
        let t = clock(&p);
        p.and_bits(&sa, &sb, &mut and).unwrap();
        rounds.push(clock(&p) - t);
        let t = clock(&p);
        p.b2a(&sa, &mut conv).unwrap();
        rounds.push(clock(&p) - t);
        let mut opened = Vec::new();
        for v in [prod, lt, conv] {
            let mut o = vec![0; v.len()];
            p.open(&v, &mut o).unwrap();
            opened.push(o);
        }
        let mut theirs = vec![0; and.len()];
        p.exchange(&and, &mut theirs).unwrap();
        opened.push(and.iter().zip(&theirs).map(|(m, t)| m ^ t).collect());
        (opened, rounds)
    }

    /// Ops longer than one OT batch run in windows and give the plaintext results exactly
    /// (bound 0: products, comparisons and bits are exact in the ring); the windows run one
    /// after another, so each op takes more rounds, at most one batch's per window.
    #[test]
    fn ops_longer_than_a_batch_run_in_chunks() {
        let mut prg = Prg::new([9; 32], Stream::Local);
        let n = 40;
        let mut x = vec![0u64; n];
        let mut y = vec![0u64; n];
        prg.fill(&mut x);
        prg.fill(&mut y);
        let (mut a, mut b) = (vec![0u64; 3], vec![0u64; 3]);
        prg.fill(&mut a);
        prg.fill(&mut b);
        let run = |batch: usize| {
            let mut chans = mem::mesh(2).into_iter();
            let (c0, c1) = (chans.next().unwrap(), chans.next().unwrap());
            std::thread::scope(|s| {
                let h = s.spawn(|| chunked_ops(c1, batch, &x, &y, &a, &b));
                let r0 = chunked_ops(c0, batch, &x, &y, &a, &b);
                (r0, h.join().unwrap())
            })
        };
        // 128 OTs per extension: 2 elements of a product, 2 of a comparison, 2 words of ANDs.
        let ((small, small_rounds), (small1, _)) = run(128);
        let ((whole, whole_rounds), _) = run(ot::MAX_BATCH);
        assert_eq!(small, small1);
        let product: Vec<u64> = x.iter().zip(&y).map(|(p, q)| p.wrapping_mul(*q)).collect();
        assert_eq!(small[0], product);
        let lt = |o: u64| x.iter().map(move |v| u64::from((v.wrapping_sub(o) as i64) < 0));
        assert_eq!(small[1], lt(0).chain(lt(1 << 40)).collect::<Vec<_>>());
        let bits: Vec<u64> = (0..64 * a.len()).map(|e| (a[e / 64] >> (e % 64)) & 1).collect();
        assert_eq!(small[2], bits);
        assert_eq!(small[3], a.iter().zip(&b).map(|(p, q)| p & q).collect::<Vec<_>>());
        assert_eq!(small, whole);
        // Windows of 128 OTs: a product of 40 elements in 20, an AND of 3 words in 2, a
        // conversion of 192 bits in 2; a comparison in 20 chunks of 2 elements, each of whose
        // borrow-tree ANDs (up to 4 words a level) runs in windows of 2 words: at most 4
        // windows where one batch takes a round.
        for (op, windows) in [20u64, 20 * 4, 2, 2].into_iter().enumerate() {
            let (s, w) = (small_rounds[op], whole_rounds[op]);
            assert!(s > w && s <= windows * w, "op {op}: {small_rounds:?} against {whole_rounds:?}");
        }
    }

    #[test]
    fn packed_widths_round_trip() {
        let mut prg = Prg::new([4; 32], Stream::Local);
        for bits in [1usize, 3, 64] {
            let m = 7 * bits;
            let mut v = vec![0u64; m];
            prg.fill(&mut v);
            let width = |j: usize| 64 - (j % bits) as u32;
            let words = (0..m).map(|j| width(j) as usize).sum::<usize>().div_ceil(64);
            let back = unpack_widths(&pack_widths(&v, width, words), m, width);
            for j in 0..m {
                let wd = width(j);
                let mask = if wd == 64 { u64::MAX } else { (1u64 << wd) - 1 };
                assert_eq!(back[j], v[j] & mask);
            }
        }
    }
}
