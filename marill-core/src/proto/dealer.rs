//! 2PC-Dealer: parties 0 and 1 hold additive shares; party 2 is a trusted dealer that
//! runs the same program and sends only corrections, to party 1.
//!
//! Costs per call (bytes each compute party sends; the dealer's, to party 1, after `/`):
//!
//! | op | rounds | bytes |
//! |---|---|---|
//! | `input` by party 0 or 1 | 0 | 0 (the other party's share comes from their shared seed) |
//! | `open` | 1 | 8n |
//! | `reveal_to` | 1 | 8n (sender only) |
//! | `mul` | 1 | 16n / 8n |
//! | `square` | 1 | 8n / 8n |
//! | `matmul` m×n×k | 1 | 8(mn+nk) / 8mk |
//! | `trunc` | 1 | 8n / 16n |
//! | `mul_trunc` | 2 | 24n / 24n |
//! | `mul_trunc_scaled` m = rows + n | 3 | 24m + 8n / 24m + 48n |
//! | `ltz` | 4 | see [`assist`](super::assist) |
//! | `fill_weight` n×k (once) | 1 | party 1 sends 8nk to party 0 |
//! | `matmul_weight` m×n×k | 1 | party 0 sends 8mn, party 1 nothing / 8mk |
//!
//! **Weights one party knows** (`share_weight`, owner = party 1, the server): the dealer
//! and the server draw a mask `S`, the client keeps `F = W − S` for the session, and each
//! product costs one message of masked activations (see `Assist::weight_matmul`). The
//! client's view is masked as long as the dealer does not collude with it — the trust
//! assumption of 2PC-Dealer throughout.
//!
//! Scratch: each op asks for the words its `*_scratch` function (in `assist`) gives; a
//! [`Scratch`] that cannot provide them fails the call before anything is sent.

use crate::channel::{Channel, PartyId, recv_words, send_words};
use crate::error::{Error, Result, ensure_shape};
use crate::prg::{Prg, Stream};
use crate::ring::{self, MatDims};
use crate::scratch::Scratch;
use crate::share::bit_words;

use super::assist::{Assist, Helper, Role};
use super::check_shift;
use super::setup::DealerSeeds;
use super::{Protocol, WeightShares};

/// One party of 2PC-Dealer.
pub struct Dealer2pc<C, S> {
    ch: C,
    scratch: S,
    party: PartyId,
    eng: Assist,
    /// Parties 0/1: the peer seed's input stream. Dealer: unused.
    input_peer: Option<Prg>,
    /// Party 0 and the dealer: the input stream of the seed they share.
    input_a: Option<Prg>,
}

impl<C: Channel, S: Scratch> Dealer2pc<C, S> {
    /// A party from its seeds (see [`setup::dealer_setup`](super::setup::dealer_setup)).
    pub fn new(ch: C, scratch: S, seeds: DealerSeeds) -> Result<Self> {
        let party = ch.id();
        let ids = [0, 1, 2];
        let (eng, input_peer, input_a) = match (party, seeds) {
            (0, DealerSeeds::Compute { dealer, peer }) => (
                Assist::new(Role::A, ids, dealer, None, 0)?,
                Some(Prg::new(peer, Stream::Input)),
                Some(Prg::new(dealer, Stream::Input)),
            ),
            (1, DealerSeeds::Compute { dealer, peer }) => {
                (Assist::new(Role::B, ids, dealer, None, 0)?, Some(Prg::new(peer, Stream::Input)), None)
            }
            (2, DealerSeeds::Dealer { a, b }) => {
                (Assist::new(Role::D, ids, a, Some(b), 0)?, None, Some(Prg::new(a, Stream::Input)))
            }
            _ => return Err(Error::InvalidArgument),
        };
        Ok(Self { ch, scratch, party, eng, input_peer, input_a })
    }

    /// The channel (for its costs, say).
    pub fn channel(&self) -> &C {
        &self.ch
    }

    /// The channel, mutably.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.ch
    }

    fn is_dealer(&self) -> bool {
        self.party == 2
    }
}

impl<C: Channel, S: Scratch> Protocol for Dealer2pc<C, S> {
    const PLANES: usize = 1;

    fn party(&self) -> PartyId {
        self.party
    }

    fn cost(&self) -> Option<crate::cost::Cost> {
        self.ch.cost()
    }

    fn barrier(&mut self) -> Result<()> {
        crate::channel::barrier(&mut self.ch, 3)
    }

    fn settle(&mut self) -> Result<()> {
        self.ch.settle()
    }

    fn public_plane(&self) -> Option<usize> {
        (self.party == 0).then_some(0)
    }

    fn input(&mut self, owner: PartyId, values: Option<&[u64]>, out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(owner <= 2)?;
        ensure_shape((owner == self.party) == values.is_some())?;
        if let Some(v) = values {
            ensure_shape(v.len() == n)?;
        }
        match owner {
            0 | 1 => {
                if self.is_dealer() {
                    out.fill(0);
                    return Ok(());
                }
                let prg = self.input_peer.as_mut().ok_or(Error::Protocol)?;
                prg.fill(out);
                if let Some(v) = values {
                    // owner: x − ρ (the peer holds ρ)
                    for (o, x) in out.iter_mut().zip(v) {
                        *o = x.wrapping_sub(*o);
                    }
                }
                Ok(())
            }
            _ => match self.party {
                0 => {
                    self.input_a.as_mut().ok_or(Error::Protocol)?.fill(out);
                    Ok(())
                }
                1 => recv_words(&mut self.ch, 2, out),
                _ => {
                    let v = values.ok_or(Error::Protocol)?;
                    self.input_a.as_mut().ok_or(Error::Protocol)?.fill(out);
                    for (o, x) in out.iter_mut().zip(v) {
                        *o = x.wrapping_sub(*o);
                    }
                    send_words(&mut self.ch, 1, out)?;
                    out.fill(0);
                    Ok(())
                }
            },
        }
    }

    fn open(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len())?;
        if self.is_dealer() {
            out.fill(0);
            return Ok(());
        }
        let other = 1 - self.party;
        send_words(&mut self.ch, other, x)?;
        recv_words(&mut self.ch, other, out)?;
        ring::add_assign(out, x)
    }

    fn reveal_to(&mut self, to: PartyId, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len())?;
        if to > 1 {
            return Err(Error::InvalidArgument);
        }
        if self.party == to {
            recv_words(&mut self.ch, 1 - to, out)?;
            ring::add_assign(out, x)
        } else {
            if !self.is_dealer() {
                send_words(&mut self.ch, to, x)?;
            }
            out.fill(0);
            Ok(())
        }
    }

    fn mul(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == n && y.len() == n)?;
        let buf = self.scratch.words(Assist::mul_scratch(n))?;
        self.eng.mul(&mut self.ch, x, y, out, buf)
    }

    fn square(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == n)?;
        let buf = self.scratch.words(Assist::square_scratch(n))?;
        self.eng.square(&mut self.ch, x, out, buf)
    }

    fn matmul_many(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims, count: usize) -> Result<()> {
        let (mn, nk, mk) = match (d.lhs(), d.rhs(), d.out()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(Error::ShapeMismatch),
        };
        let total = |v: usize| v.checked_mul(count).ok_or(Error::ShapeMismatch);
        ensure_shape(x.len() == total(mn)? && y.len() == total(nk)? && out.len() == total(mk)?)?;
        let buf = self.scratch.words(Assist::matmul_scratch(d, count))?;
        self.eng.matmul(&mut self.ch, x, y, out, d, count, buf)
    }

    /// 2PC-Dealer supports weights known to party 1 (the server) only, with the one-round
    /// product of [`Assist::weight_matmul`]; material is `n·k` words at every party.
    fn share_weight(&mut self, owner: PartyId, w: Option<&[u64]>, n: usize, k: usize) -> Result<WeightShares> {
        let len = n.checked_mul(k).ok_or(Error::ShapeMismatch)?;
        if owner != 1 || (self.party == 1) != w.is_some() {
            return Err(Error::InvalidArgument);
        }
        if let Some(w) = w {
            ensure_shape(w.len() == len)?;
        }
        Ok(WeightShares { n, k, words: len })
    }

    fn fill_weight(
        &mut self,
        owner: PartyId,
        w: Option<&[u64]>,
        spec: WeightShares,
        material: &mut [u64],
    ) -> Result<()> {
        if owner != 1 || (self.party == 1) != w.is_some() {
            return Err(Error::InvalidArgument);
        }
        ensure_shape(material.len() == spec.words && w.is_none_or(|w| w.len() == spec.words))?;
        self.eng.weight_setup(&mut self.ch, w, material)
    }

    fn matmul_weight(&mut self, x: &[u64], material: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        d.check(x.len(), material.len(), out.len())?;
        let buf = self.scratch.words(Assist::weight_matmul_scratch(d))?;
        self.eng.weight_matmul(&mut self.ch, x, material, out, d, buf)
    }

    fn trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(x.len() == out.len())?;
        let buf = self.scratch.words(Assist::trunc_scratch(out.len()))?;
        self.eng.trunc(&mut self.ch, x, shift, out, buf, Helper::None)
    }

    fn square_chain(&mut self, x: &[u64], steps: &[(u64, u32)], out: &mut [u64]) -> Result<bool> {
        let n = out.len();
        ensure_shape(x.len() == n && !steps.is_empty())?;
        for &(_, s) in steps {
            if s != 0 {
                check_shift(s)?;
            }
        }
        let buf = self.scratch.words(Assist::square_chain_scratch(n))?;
        self.eng.square_chain(&mut self.ch, x, None, steps, out, buf, Helper::None)?;
        Ok(true)
    }

    fn square_chain_scaled(
        &mut self,
        x: &[u64],
        factor: &[u64],
        steps: &[(u64, u32)],
        out: &mut [u64],
    ) -> Result<bool> {
        let n = out.len();
        ensure_shape(x.len() == n && factor.len() == n && !steps.is_empty())?;
        for &(_, s) in steps {
            if s != 0 {
                check_shift(s)?;
            }
        }
        let f = if self.is_dealer() { &[][..] } else { factor };
        let buf = self.scratch.words(Assist::square_chain_scratch(n))?;
        self.eng.square_chain(&mut self.ch, x, Some(f), steps, out, buf, Helper::None)?;
        Ok(true)
    }

    fn mul_trunc_scaled(
        &mut self,
        x: &[u64],
        y: &[u64],
        rows: usize,
        cols: usize,
        (s1, s2): (u32, u32),
        c: u64,
        out: &mut [u64],
    ) -> Result<bool> {
        check_shift(s1)?;
        check_shift(s2)?;
        let n = out.len();
        let m = rows.checked_add(n).ok_or(Error::ShapeMismatch)?;
        ensure_shape(s1 > 0 && rows.checked_mul(cols) == Some(n) && x.len() == m && y.len() == m)?;
        let buf = self.scratch.words(Assist::mul_trunc_scaled_scratch(m, n))?;
        self.eng.mul_trunc_scaled(&mut self.ch, x, y, (rows, cols), (s1, c, s2), out, buf)?;
        Ok(true)
    }

    fn poly_chain(
        &mut self,
        u: &[u64],
        w: &[u64],
        coeffs: &[u64],
        fpow: u32,
        shift: u32,
        out: &mut [u64],
    ) -> Result<bool> {
        check_shift(fpow)?;
        check_shift(shift)?;
        let n = out.len();
        ensure_shape(u.len() == n && w.len() == n && (3..=super::assist::POLY_DEG + 1).contains(&coeffs.len()))?;
        let buf = self.scratch.words(Assist::poly_chain_scratch(n))?;
        self.eng.poly_chain(&mut self.ch, u, &[], w, coeffs, (fpow, shift), out, buf, Helper::None)?;
        Ok(true)
    }

    fn norm_stats(
        &mut self,
        x: &[u64],
        y: &[u64],
        rows: usize,
        cols: usize,
        (add, shift): (u64, u32),
        thetas: &[u64],
        sums: &mut [u64],
        prods: &mut [u64],
        bits: &mut [u64],
    ) -> Result<bool> {
        check_shift(shift)?;
        let n = rows.checked_mul(cols).ok_or(Error::ShapeMismatch)?;
        let k = thetas.len();
        ensure_shape(k > 0 && x.len() == 2 * n && y.len() == 2 * n && sums.len() == rows && prods.len() == n)?;
        ensure_shape(rows.checked_mul(k) == Some(bits.len()))?;
        let is_a = u64::from(self.party == 0);
        let tn = rows + n;
        let need = 2 * n + 2 * tn + Assist::mul_scratch(2 * n).max(Assist::trunc_ltz_scratch(tn, rows, k));
        let buf = self.scratch.words(need)?;
        let (z, rest) = buf.split_at_mut(2 * n);
        let (tin, rest) = rest.split_at_mut(tn);
        let (tout, rest) = rest.split_at_mut(tn);
        self.eng.mul(&mut self.ch, x, y, z, rest)?;
        for r in 0..rows {
            let s = z[r * cols..(r + 1) * cols].iter().fold(add.wrapping_mul(is_a), |a, v| a.wrapping_add(*v));
            tin[r] = s;
        }
        tin[rows..].copy_from_slice(&z[n..]);
        let tin = &*tin;
        self.eng.trunc_ltz(&mut self.ch, tin, &tin[..rows], None, shift, thetas, tout, bits, rest, Helper::None)?;
        sums.copy_from_slice(&tout[..rows]);
        prods.copy_from_slice(&tout[rows..]);
        Ok(true)
    }

    fn matmul_weight_trunc_ltz(
        &mut self,
        x: &[u64],
        material: &[u64],
        d: MatDims,
        (shift, kc): (u32, usize),
        offsets: &[u64],
        out: &mut [u64],
        bits: &mut [u64],
    ) -> Result<bool> {
        check_shift(shift)?;
        d.check(x.len(), material.len(), out.len())?;
        let (mk, nc) = (d.m * d.k, d.m * kc);
        ensure_shape(kc <= d.k && !offsets.is_empty() && nc.checked_mul(offsets.len()) == Some(bits.len()))?;
        let need = mk + nc + Assist::weight_matmul_scratch(d).max(Assist::trunc_ltz_scratch(mk, nc, offsets.len()));
        let buf = self.scratch.words(need)?;
        let (z, rest) = buf.split_at_mut(mk);
        let (c, rest) = rest.split_at_mut(nc);
        self.eng.weight_matmul(&mut self.ch, x, material, z, d, rest)?;
        for r in 0..d.m {
            c[r * kc..(r + 1) * kc].copy_from_slice(&z[r * d.k..r * d.k + kc]);
        }
        self.eng.trunc_ltz(&mut self.ch, z, c, None, shift, offsets, out, bits, rest, Helper::None)?;
        Ok(true)
    }

    fn trunc_in_place(&mut self, x: &mut [u64], shift: u32) -> Result<()> {
        check_shift(shift)?;
        let n = x.len();
        let buf = self.scratch.words(n + Assist::trunc_scratch(n))?;
        let (copy, rest) = buf.split_at_mut(n);
        copy.copy_from_slice(x);
        self.eng.trunc(&mut self.ch, copy, shift, x, rest, Helper::None)
    }

    fn mul_trunc(&mut self, x: &[u64], y: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        let n = out.len();
        ensure_shape(x.len() == n && y.len() == n)?;
        let need = n + Assist::mul_scratch(n).max(Assist::trunc_scratch(n));
        let buf = self.scratch.words(need)?;
        let (z, rest) = buf.split_at_mut(n);
        self.eng.mul(&mut self.ch, x, y, z, rest)?;
        self.eng.trunc(&mut self.ch, z, shift, out, rest, Helper::None)
    }

    fn ltz(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len())?;
        let buf = self.scratch.words(Assist::ltz_scratch(out.len(), 1))?;
        self.eng.ltz(&mut self.ch, x, &[0], out, buf)
    }

    fn ltz_many(&mut self, x: &[u64], offsets: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(!offsets.is_empty() && out.len() == x.len() * offsets.len())?;
        let buf = self.scratch.words(Assist::ltz_scratch(x.len(), offsets.len()))?;
        self.eng.ltz(&mut self.ch, x, offsets, out, buf)
    }

    fn and_bits(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len() && y.len() == out.len())?;
        let buf = self.scratch.words(Assist::and_scratch(out.len()))?;
        self.eng.and(&mut self.ch, x, y, out, buf)
    }

    fn b2a(&mut self, bits: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(bits.len() == bit_words(out.len()))?;
        let buf = self.scratch.words(Assist::b2a_scratch(out.len()))?;
        self.eng.b2a(&mut self.ch, bits, out, buf)
    }
}
