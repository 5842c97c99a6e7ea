//! 3PC honest majority with replicated secret sharing (ABY3), semi-honest.
//!
//! Party `i` holds `(t_i, t_{i+1})` of `x = t0 + t1 + t2`, planar (`2n` words). Party `i`
//! holds seeds `k_i` and `k_{i+1}`; `α_i = F(k_i) − F(k_{i+1})` are fresh zero shares
//! (`Σα_i = 0`) drawn anew for every product, so a reshared product share is uniformly
//! masked to the party that receives it.
//!
//! Truncation and comparison run on 2-of-2 shares between two parties with the third as
//! helper ([`assist`](super::assist)); the helper rotates from op to op (2, 0, 1, ...), so
//! its extra traffic — corrections and comparison tables — is spread over all three. With
//! helper `j`, replicated → 2-of-2 is local (party `j+1` takes `t_{j+1} + t_{j+2}`, party
//! `j+2` takes `t_j`), and 2-of-2 → replicated takes one round (`t_{j+1}`, `t_j` from the
//! seeds the helper shares with each; the two swap `v − t` to learn `t_{j+2}`). Boolean
//! shares (`and_bits`, `b2a`) stay between parties 0 and 1 with party 2 as helper.
//!
//! | op | rounds | bytes each party sends (party 2 after `/` where different) |
//! |---|---|---|
//! | `input` | 1 | 8n (owner only, to one party) |
//! | `open` | 1 | 8n |
//! | `reveal_to` | 1 | 8n (one party) |
//! | `mul`, `square` | 1 | 8n |
//! | `matmul` m×n×k | 1 | 8mk (independent of n) |
//! | `trunc` | 2 | 16n / 16n |
//! | `mul_trunc` | 2 | 16n / 32n |
//! | `mul_trunc_scaled` m = rows + n | 3 | 8m + 16n / 32m + 48n |
//! | `ltz` | 5 | as 2PC-Dealer's `ltz` plus 8n for the reshare (parties 0, 1) |
//! | `ltz_many` n × k offsets | 5 | as 2PC-Dealer's plus 8kn for the reshare (the two engine parties) |
//! | `ltz_many_mapped` n × k offsets, `maps` maps | 5 | as 2PC-Dealer's `ltz_many` plus 8·maps·n: the maps are applied to the 2-of-2 bits and only their values reshared |
//!
//! (The helper's column is for the first engine op of a session, whose helper is party 2;
//! later ops rotate the roles.)

use crate::channel::{Channel, PartyId, recv_words, send_words};
use crate::error::{Error, Result, ensure_shape};
use crate::prg::{Prg, Stream};
use crate::ring::{self, MatDims};
use crate::scratch::Scratch;
use crate::share::bit_words;

use super::Protocol;
use super::assist::{Assist, Helper, Role};
use super::check_shift;
use super::setup::Rep3Seeds;

/// One party of 3PC.
pub struct Rep3<C, S> {
    scratch: S,
    st: State<C>,
}

/// Everything but the scratch, so ops can hold scratch memory while using the rest.
struct State<C> {
    ch: C,
    party: PartyId,
    zero_own: Prg,
    zero_next: Prg,
    input_own: Prg,
    input_next: Prg,
    input_all: Prg,
    /// Per helper `j`: the reshare streams of `k_i` and `k_{i+1}`.
    reshare_own: [Prg; 3],
    reshare_next: [Prg; 3],
    /// Per helper `j`: this party's engine when party `j` is the helper.
    engines: [Assist; 3],
    /// Engine ops so far: the helper rotates 2, 0, 1, 2, ... so the helper's extra
    /// traffic (corrections, tables) is spread over the three parties.
    rot: usize,
}

impl<C: Channel, S: Scratch> Rep3<C, S> {
    /// A party from its seeds (see [`setup::rep3_setup`](super::setup::rep3_setup)).
    pub fn new(ch: C, scratch: S, seeds: Rep3Seeds) -> Result<Self> {
        let party = ch.id();
        if party > 2 {
            return Err(Error::InvalidArgument);
        }
        // With helper j, A = j+1 and B = j+2; A shares k_{j+1} with the helper (A's own, the
        // helper's next) and B shares k_j (B's next, the helper's own).
        let engine = |j: usize| -> Result<Assist> {
            let ids = [(j + 1) % 3, (j + 2) % 3, j];
            let idx = j as u32;
            match (party + 3 - j) % 3 {
                1 => Assist::new(Role::A, ids, seeds.own, None, idx),
                2 => Assist::new(Role::B, ids, seeds.next, None, idx),
                _ => Assist::new(Role::D, ids, seeds.next, Some(seeds.own), idx),
            }
        };
        let engines = [engine(0)?, engine(1)?, engine(2)?];
        let streams = |seed| [0, 1, 2].map(|j| Prg::with_index(seed, Stream::Reshare, j));
        Ok(Self {
            scratch,
            st: State {
                ch,
                party,
                zero_own: Prg::new(seeds.own, Stream::Zero),
                zero_next: Prg::new(seeds.next, Stream::Zero),
                input_own: Prg::new(seeds.own, Stream::Input),
                input_next: Prg::new(seeds.next, Stream::Input),
                input_all: Prg::new(seeds.all, Stream::Input),
                reshare_own: streams(seeds.own),
                reshare_next: streams(seeds.next),
                engines,
                rot: 0,
            },
        })
    }

    /// The channel (for its costs, say).
    pub fn channel(&self) -> &C {
        &self.st.ch
    }

    /// The channel, mutably.
    pub fn channel_mut(&mut self) -> &mut C {
        &mut self.st.ch
    }
}

impl<C: Channel> State<C> {
    /// `z += α_i`, a fresh zero share.
    fn add_zero_share(zero_own: &mut Prg, zero_next: &mut Prg, z: &mut [u64], tmp: &mut [u64]) -> Result<()> {
        zero_own.fill(tmp);
        ring::add_assign(z, tmp)?;
        zero_next.fill(tmp);
        ring::sub_assign(z, tmp)
    }

    /// Send `z_i` to the previous party, receive `z_{i+1}`: `out = [z_i | z_{i+1}]`.
    fn reshare_3of3(&mut self, z: &[u64], out: &mut [u64]) -> Result<()> {
        let n = z.len();
        send_words(&mut self.ch, prev_of(self.party), z)?;
        out[..n].copy_from_slice(z);
        recv_words(&mut self.ch, next_of(self.party), &mut out[n..])
    }

    /// The helper of the next engine op (2, 0, 1, 2, ...).
    fn next_helper(&mut self) -> usize {
        let j = [2, 0, 1][self.rot % 3];
        self.rot += 1;
        j
    }

    /// Replicated → 2-of-2 between A = j+1 and B = j+2 for helper `j` (local): A takes
    /// `t_{j+1} + t_{j+2}`, B takes `t_j`, the helper holds nothing.
    fn to_additive(&self, j: usize, x: &[u64], v: &mut [u64]) -> Result<()> {
        let n = v.len();
        match (self.party + 3 - j) % 3 {
            1 => ring::add(&x[..n], &x[n..], v),
            2 => {
                v.copy_from_slice(&x[n..]);
                Ok(())
            }
            _ => {
                v.fill(0);
                Ok(())
            }
        }
    }

    /// 2-of-2 between A = j+1 and B = j+2 → replicated (one round): `t_{j+1}` and `t_j`
    /// come from the seeds the helper shares with A and with B; A and B swap `v − t` to
    /// learn `t_{j+2}`.
    fn reshare_additive(&mut self, j: usize, v: &[u64], out: &mut [u64], tmp: &mut [u64]) -> Result<()> {
        let n = v.len();
        let (a, b) = ((j + 1) % 3, (j + 2) % 3);
        match (self.party + 3 - j) % 3 {
            1 => {
                let (t_a, t_b) = out.split_at_mut(n); // (t_{j+1}, t_{j+2})
                self.reshare_own[j].fill(t_a);
                ring::sub(v, t_a, tmp)?;
                send_words(&mut self.ch, b, tmp)?;
                recv_words(&mut self.ch, b, t_b)?;
                ring::add_assign(t_b, tmp)
            }
            2 => {
                let (t_b, t_j) = out.split_at_mut(n); // (t_{j+2}, t_j)
                self.reshare_next[j].fill(t_j);
                ring::sub(v, t_j, tmp)?;
                send_words(&mut self.ch, a, tmp)?;
                recv_words(&mut self.ch, a, t_b)?;
                ring::add_assign(t_b, tmp)
            }
            _ => {
                let (t_j, t_a) = out.split_at_mut(n); // (t_j, t_{j+1})
                self.reshare_own[j].fill(t_j);
                self.reshare_next[j].fill(t_a);
                Ok(())
            }
        }
    }

    /// Truncate a 3-of-3 product share `z` into replicated `out` in two rounds: the
    /// helper's share is its third part, sent to the other two in the opening round (it is
    /// masked by the zero share). `rest` holds `2n + trunc_scratch(n)` words.
    fn trunc_product(&mut self, z: &[u64], shift: u32, out: &mut [u64], rest: &mut [u64]) -> Result<()> {
        let n = z.len();
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        let j = self.next_helper();
        let helper = if self.party == j { Helper::Send(z) } else { Helper::Receive };
        let own = if self.party == j { &[][..] } else { z };
        self.engines[j].trunc(&mut self.ch, own, shift, w, eng_buf, helper)?;
        self.reshare_additive(j, w, out, tmp)
    }

    /// `count` blocks of `Z_i = X_i·(Y_i + Y_{i+1}) + X_{i+1}·Y_i + α_i` (3-of-3 additive
    /// shares of the products), `ysum` and `tmp` as scratch.
    #[allow(clippy::too_many_arguments)]
    fn local_matmul(
        &mut self,
        x: &[u64],
        y: &[u64],
        ysum: &mut [u64],
        z: &mut [u64],
        tmp: &mut [u64],
        d: MatDims,
        count: usize,
    ) -> Result<()> {
        let (bmn, bnk, bmk) = (d.m * d.n, d.n * d.k, d.m * d.k);
        let (mn, nk) = (bmn * count, bnk * count);
        ring::add(&y[..nk], &y[nk..], ysum)?;
        for c in 0..count {
            let zc = &mut z[c * bmk..(c + 1) * bmk];
            ring::matmul(&x[c * bmn..(c + 1) * bmn], &ysum[c * bnk..(c + 1) * bnk], zc, d)?;
            ring::matmul_acc(&x[mn + c * bmn..mn + (c + 1) * bmn], &y[c * bnk..(c + 1) * bnk], zc, d)?;
        }
        Self::add_zero_share(&mut self.zero_own, &mut self.zero_next, z, tmp)
    }

    /// `z_i = x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i + α_i` (3-of-3 additive product share).
    fn local_product(&mut self, x: &[u64], y: &[u64], z: &mut [u64], tmp: &mut [u64]) -> Result<()> {
        let n = z.len();
        let (x0, x1) = x.split_at(n);
        let (y0, y1) = y.split_at(n);
        for e in 0..n {
            z[e] = x0[e].wrapping_mul(y0[e].wrapping_add(y1[e])).wrapping_add(x1[e].wrapping_mul(y0[e]));
        }
        Self::add_zero_share(&mut self.zero_own, &mut self.zero_next, z, tmp)
    }

    /// `z_i = x_i² + 2·x_i·x_{i+1} + α_i` (3-of-3 additive share of `x²`).
    fn local_square(&mut self, x: &[u64], z: &mut [u64], tmp: &mut [u64]) -> Result<()> {
        let n = z.len();
        let (x0, x1) = x.split_at(n);
        for e in 0..n {
            z[e] = x0[e].wrapping_mul(x0[e].wrapping_add(x1[e].wrapping_mul(2)));
        }
        Self::add_zero_share(&mut self.zero_own, &mut self.zero_next, z, tmp)
    }

    /// `x²`, reshared.
    fn square(&mut self, x: &[u64], out: &mut [u64], buf: &mut [u64]) -> Result<()> {
        let n = out.len() / 2;
        let (z, tmp) = buf.split_at_mut(n);
        self.local_square(x, z, tmp)?;
        self.reshare_3of3(z, out)
    }
}

impl<C: Channel, S: Scratch> Protocol for Rep3<C, S> {
    const PLANES: usize = 2;

    fn party(&self) -> PartyId {
        self.st.party
    }

    fn cost(&self) -> Option<crate::cost::Cost> {
        self.st.ch.cost()
    }

    fn barrier(&mut self) -> Result<()> {
        crate::channel::barrier(&mut self.st.ch, 3)
    }

    fn settle(&mut self) -> Result<()> {
        self.st.ch.settle()
    }

    fn turns(&self) -> u64 {
        self.st.rot as u64
    }

    fn align_turns(&mut self, offset: u64) {
        self.st.rot = self.st.rot.next_multiple_of(3) + (offset % 3) as usize;
    }

    fn public_plane(&self) -> Option<usize> {
        // t0 is plane 0 at party 0 and plane 1 at party 2.
        match self.st.party {
            0 => Some(0),
            2 => Some(1),
            _ => None,
        }
    }

    fn input(&mut self, owner: PartyId, values: Option<&[u64]>, out: &mut [u64]) -> Result<()> {
        ensure_shape(owner <= 2 && out.len().is_multiple_of(2))?;
        let n = out.len() / 2;
        ensure_shape((owner == self.st.party) == values.is_some())?;
        if let Some(v) = values {
            ensure_shape(v.len() == n)?;
        }
        let (p0, p1) = out.split_at_mut(n);
        if self.st.party == owner {
            // (t_o, t_{o+1}); t_{o-1} from the common seed.
            let v = values.ok_or(Error::Protocol)?;
            self.st.input_all.fill(p1); // t_{o-1}, temporarily
            self.st.input_own.fill(p0); // t_o
            for e in 0..n {
                p1[e] = v[e].wrapping_sub(p0[e]).wrapping_sub(p1[e]);
            }
            send_words(&mut self.st.ch, next_of(self.st.party), p1)
        } else if next_of(self.st.party) == owner {
            // party o-1: (t_{o-1}, t_o)
            self.st.input_all.fill(p0);
            self.st.input_next.fill(p1);
            Ok(())
        } else {
            // party o+1: (t_{o+1}, t_{o-1})
            self.st.input_all.fill(p1);
            recv_words(&mut self.st.ch, owner, p0)
        }
    }

    fn open(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == 2 * n)?;
        send_words(&mut self.st.ch, next_of(self.st.party), &x[..n])?;
        recv_words(&mut self.st.ch, prev_of(self.st.party), out)?;
        ring::add_assign(out, &x[..n])?;
        ring::add_assign(out, &x[n..])
    }

    fn reveal_to(&mut self, to: PartyId, x: &[u64], out: &mut [u64]) -> Result<()> {
        let n = out.len();
        ensure_shape(x.len() == 2 * n)?;
        if to > 2 {
            return Err(Error::InvalidArgument);
        }
        if self.st.party == to {
            recv_words(&mut self.st.ch, prev_of(self.st.party), out)?;
            ring::add_assign(out, &x[..n])?;
            ring::add_assign(out, &x[n..])
        } else {
            if next_of(self.st.party) == to {
                send_words(&mut self.st.ch, to, &x[..n])?;
            }
            out.fill(0);
            Ok(())
        }
    }

    fn mul(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len() && y.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(2 * n)?;
        let (z, tmp) = buf.split_at_mut(n);
        self.st.local_product(x, y, z, tmp)?;
        self.st.reshare_3of3(z, out)
    }

    fn square(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len())?;
        let buf = self.scratch.words(out.len())?;
        self.st.square(x, out, buf)
    }

    fn matmul_many(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims, count: usize) -> Result<()> {
        let (nk, mk) = matmul_sizes(x, y, out, d, count)?;
        let buf = self.scratch.words(nk + 2 * mk)?;
        let (ysum, rest) = buf.split_at_mut(nk);
        let (z, tmp) = rest.split_at_mut(mk);
        self.st.local_matmul(x, y, ysum, z, tmp, d, count)?;
        send_words(&mut self.st.ch, prev_of(self.st.party), z)?;
        out[..mk].copy_from_slice(z);
        recv_words(&mut self.st.ch, next_of(self.st.party), &mut out[mk..])
    }

    fn matmul_many_trunc(
        &mut self,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        d: MatDims,
        count: usize,
        shift: u32,
    ) -> Result<()> {
        check_shift(shift)?;
        let (nk, mk) = matmul_sizes(x, y, out, d, count)?;
        let buf = self.scratch.words(nk + 3 * mk + Assist::trunc_scratch(mk))?;
        let (ysum, rest) = buf.split_at_mut(nk);
        let (z, rest) = rest.split_at_mut(mk);
        self.st.local_matmul(x, y, ysum, z, &mut rest[..mk], d, count)?;
        // The 3-of-3 product truncated directly (its helper's part sent in the opening
        // round), then reshared: the product's own reshare is not needed.
        self.st.trunc_product(z, shift, out, rest)
    }

    fn matmul_weight_trunc(
        &mut self,
        x: &[u64],
        material: &[u64],
        out: &mut [u64],
        d: MatDims,
        shift: u32,
    ) -> Result<()> {
        self.matmul_many_trunc(x, material, out, d, 1, shift)
    }

    fn trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len())?;
        out.copy_from_slice(x);
        self.trunc_in_place(out, shift)
    }

    fn mul_trunc(&mut self, x: &[u64], y: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len() && y.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (z, rest) = buf.split_at_mut(n);
        self.st.local_product(x, y, z, &mut rest[..n])?;
        self.st.trunc_product(z, shift, out, rest)
    }

    fn square_chain(&mut self, x: &[u64], steps: &[(u64, u32)], out: &mut [u64]) -> Result<bool> {
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len() && !steps.is_empty())?;
        for &(_, s) in steps {
            if s != 0 {
                check_shift(s)?;
            }
        }
        if steps[0].1 == 0 {
            return Ok(false);
        }
        let n = out.len() / 2;
        let plane = self.public_plane();
        let buf = self.scratch.words(4 * n + Assist::square_chain_scratch(n))?;
        let (y, rest) = buf.split_at_mut(2 * n);
        let (z, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        // The first square (of y + c_0) is local, its truncation fused (the helper's third
        // part in the opening round); the rest of the chain runs on the 2-of-2 outputs as in
        // 2PC-Dealer, then back to replicated: one round per truncating step, one per
        // opening after an untruncated square, one to reshare.
        y.copy_from_slice(x);
        if let Some(q) = plane {
            y[q * n..(q + 1) * n].iter_mut().for_each(|v| *v = v.wrapping_add(steps[0].0));
        }
        self.st.local_square(y, z, tmp)?;
        let j = self.st.next_helper();
        let party = self.st.party;
        let helper = if party == j { Helper::Send(z) } else { Helper::Receive };
        let own = if party == j { &[][..] } else { &*z };
        let w = &mut y[..n];
        self.st.engines[j].square_chain(&mut self.st.ch, own, None, steps, w, eng_buf, helper)?;
        self.st.reshare_additive(j, w, out, tmp)?;
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
        ensure_shape(out.len().is_multiple_of(2) && u.len() == out.len() && w.len() == out.len())?;
        ensure_shape((3..=super::assist::POLY_DEG + 1).contains(&coeffs.len()))?;
        let n = out.len() / 2;
        let buf = self.scratch.words(5 * n + Assist::poly_chain_scratch(n))?;
        let (ua, rest) = buf.split_at_mut(n);
        let (wa, rest) = rest.split_at_mut(n);
        let (z, rest) = rest.split_at_mut(n);
        let (h, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        // u² locally (3-of-3, its truncation fused with the helper's part), u and w as 2-of-2
        // between the other two; the chain in the engine, then the result back to
        // replicated: 3 rounds for the powers, 1 for the sum's truncation, 1 to reshare.
        self.st.local_square(u, z, tmp)?;
        let j = self.st.next_helper();
        self.st.to_additive(j, u, ua)?;
        self.st.to_additive(j, w, wa)?;
        let party = self.st.party;
        let helper = if party == j { Helper::Send(z) } else { Helper::Receive };
        let (own_u, own_z, own_w) = if party == j { (&[][..], &[][..], &[][..]) } else { (&*ua, &*z, &*wa) };
        self.st.engines[j].poly_chain(
            &mut self.st.ch,
            own_u,
            own_z,
            own_w,
            coeffs,
            (fpow, shift),
            h,
            eng_buf,
            helper,
        )?;
        self.st.reshare_additive(j, h, out, tmp)?;
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
        ensure_shape(k > 0 && x.len() == 4 * n && y.len() == 4 * n && sums.len() == 2 * rows && prods.len() == 2 * n)?;
        ensure_shape(rows.checked_mul(k).map(|v| 2 * v) == Some(bits.len()))?;
        let (tn, bn) = (rows + n, rows * k);
        let all = tn + bn; // what is reshared at the end: [sums | prods | bits]
        let need = 2 * n + (tn + rows) + all + 2 * all + all.max(2 * n) + Assist::trunc_ltz_scratch(tn, rows, k);
        let buf = self.scratch.words(need)?;
        let (z, rest) = buf.split_at_mut(2 * n);
        let (tc, rest) = rest.split_at_mut(tn + rows); // [s | z[n..] | s]
        let (v, rest) = rest.split_at_mut(all);
        let (rep, rest) = rest.split_at_mut(2 * all);
        let (tmp, eng_buf) = rest.split_at_mut(all.max(2 * n));
        // The products as 3-of-3 shares (local), their row sums; the public `add` once.
        self.st.local_product(x, y, z, &mut tmp[..2 * n])?;
        for r in 0..rows {
            let s = z[r * cols..(r + 1) * cols].iter().fold(0u64, |a, w| a.wrapping_add(*w));
            tc[r] = if self.st.party == 0 { s.wrapping_add(add) } else { s };
            tc[tn + r] = tc[r];
        }
        tc[rows..tn].copy_from_slice(&z[n..]);
        // Both openings fused with the helper's parts in one round, the comparison's rest in
        // the engine, then [sums | prods | bits] back to replicated in one reshare.
        let j = self.st.next_helper();
        let party = self.st.party;
        // The helper sends its part of [sums | products] only: the sums it compares are in it.
        let helper = if party == j { Helper::Send(&tc[..tn]) } else { Helper::Receive };
        let (tin, cin) = if party == j { (&[][..], &[][..]) } else { (&tc[..tn], &tc[tn..]) };
        let (tout, bout) = v.split_at_mut(tn);
        let from_t = Some((rows, rows));
        self.st.engines[j].trunc_ltz(&mut self.st.ch, tin, cin, from_t, shift, thetas, tout, bout, eng_buf, helper)?;
        self.st.reshare_additive(j, v, rep, &mut tmp[..all])?;
        for q in 0..2 {
            let plane = &rep[q * all..(q + 1) * all];
            sums[q * rows..(q + 1) * rows].copy_from_slice(&plane[..rows]);
            prods[q * n..(q + 1) * n].copy_from_slice(&plane[rows..tn]);
            bits[q * bn..(q + 1) * bn].copy_from_slice(&plane[tn..]);
        }
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
        let (nk, mk) = matmul_sizes(x, material, out, d, 1)?;
        let (nc, k) = (d.m * kc, offsets.len());
        ensure_shape(kc <= d.k && k > 0 && nc.checked_mul(k).map(|v| 2 * v) == Some(bits.len()))?;
        let all = mk + nc * k; // reshared at the end: [products | bits]
        let need = nk + (mk + nc) + all + 2 * all + all.max(mk) + Assist::trunc_ltz_scratch(mk, nc, k);
        let buf = self.scratch.words(need)?;
        let (ysum, rest) = buf.split_at_mut(nk);
        let (zc, rest) = rest.split_at_mut(mk + nc); // [z | gate columns of z]
        let (v, rest) = rest.split_at_mut(all);
        let (rep, rest) = rest.split_at_mut(2 * all);
        let (tmp, eng_buf) = rest.split_at_mut(all.max(mk));
        let (z, c) = zc.split_at_mut(mk);
        self.st.local_matmul(x, material, ysum, z, &mut tmp[..mk], d, 1)?;
        for r in 0..d.m {
            c[r * kc..(r + 1) * kc].copy_from_slice(&z[r * d.k..r * d.k + kc]);
        }
        // The 3-of-3 product truncated and compared in one opening round (the helper's
        // parts of both beside it), the comparison's rest in the engine, then products and
        // bits back to replicated in one reshare: 1 + 3 + 1 rounds.
        let j = self.st.next_helper();
        let party = self.st.party;
        // The helper sends its part of the product only: the compared columns are in it.
        let helper = if party == j { Helper::Send(&zc[..mk]) } else { Helper::Receive };
        let (tin, cin) = if party == j { (&[][..], &[][..]) } else { (&zc[..mk], &zc[mk..]) };
        let (tout, bout) = v.split_at_mut(mk);
        let from_t = Some((kc, d.k));
        self.st.engines[j].trunc_ltz(&mut self.st.ch, tin, cin, from_t, shift, offsets, tout, bout, eng_buf, helper)?;
        self.st.reshare_additive(j, v, rep, &mut tmp[..all])?;
        for q in 0..2 {
            let plane = &rep[q * all..(q + 1) * all];
            out[q * mk..(q + 1) * mk].copy_from_slice(&plane[..mk]);
            bits[q * nc * k..(q + 1) * nc * k].copy_from_slice(&plane[mk..]);
        }
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
        ensure_shape(out.len().is_multiple_of(2))?;
        let n = out.len() / 2;
        let m = rows.checked_add(n).ok_or(Error::ShapeMismatch)?;
        ensure_shape(rows.checked_mul(cols) == Some(n) && x.len() == 2 * m && y.len() == 2 * m)?;
        let buf = self.scratch.words(2 * m + 2 * n + Assist::trunc_scaled_scratch(m, n))?;
        let (z, rest) = buf.split_at_mut(m);
        let (tmp, rest) = rest.split_at_mut(m);
        self.st.local_product(x, y, z, tmp)?;
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        // The first truncation fused with the product (the helper's third part sent in its
        // opening round), the second product on the 2-of-2 outputs unopened, then back to
        // replicated: 3 rounds instead of 4.
        let j = self.st.next_helper();
        let party = self.st.party;
        let helper = if party == j { Helper::Send(z) } else { Helper::Receive };
        let own = if party == j { &[][..] } else { &*z };
        self.st.engines[j].trunc_scaled(&mut self.st.ch, own, (rows, cols), (s1, c, s2), w, eng_buf, helper)?;
        self.st.reshare_additive(j, w, out, tmp)?;
        Ok(true)
    }

    fn trunc_in_place(&mut self, x: &mut [u64], shift: u32) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(x.len().is_multiple_of(2))?;
        let n = x.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (v, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        let j = self.st.next_helper();
        self.st.to_additive(j, x, v)?;
        self.st.engines[j].trunc(&mut self.st.ch, v, shift, w, eng_buf, Helper::None)?;
        self.st.reshare_additive(j, w, x, tmp)
    }

    fn square_trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (z, rest) = buf.split_at_mut(n);
        self.st.local_square(x, z, &mut rest[..n])?;
        self.st.trunc_product(z, shift, out, rest)
    }

    fn ltz(&mut self, x: &[u64], out: &mut [u64]) -> Result<()> {
        self.ltz_many(x, &[0], out)
    }

    fn ltz_many(&mut self, x: &[u64], offsets: &[u64], out: &mut [u64]) -> Result<()> {
        let k = offsets.len();
        ensure_shape(k > 0 && x.len().is_multiple_of(2) && out.len() == x.len() * k)?;
        let n = x.len() / 2;
        let m = n * k;
        let buf = self.scratch.words(n + 2 * m + Assist::ltz_scratch(n, k))?;
        let (v, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(m);
        let (tmp, eng_buf) = rest.split_at_mut(m);
        let j = self.st.next_helper();
        self.st.to_additive(j, x, v)?;
        self.st.engines[j].ltz(&mut self.st.ch, v, offsets, w, eng_buf)?;
        self.st.reshare_additive(j, w, out, tmp)
    }

    fn ltz_many_mapped(
        &mut self,
        x: &[u64],
        offsets: &[u64],
        coef: &[u64],
        consts: &[u64],
        out: &mut [u64],
        bits: &mut [u64],
    ) -> Result<()> {
        let (k, maps, len) = (offsets.len(), consts.len(), x.len());
        ensure_shape(k > 0 && maps > 0 && len.is_multiple_of(2))?;
        ensure_shape(coef.len() == maps * k && out.len() == maps * len && bits.len() == k * len)?;
        let n = len / 2;
        let mm = n * maps;
        let public = self.public_plane();
        let buf = self.scratch.words(n + 4 * mm + Assist::ltz_scratch(n, k))?;
        let (v, rest) = buf.split_at_mut(n);
        let (mapped, rest) = rest.split_at_mut(mm);
        let (rep, rest) = rest.split_at_mut(2 * mm);
        let (tmp, eng_buf) = rest.split_at_mut(mm);
        let j = self.st.next_helper();
        self.st.to_additive(j, x, v)?;
        let w = &mut bits[..n * k];
        self.st.engines[j].ltz(&mut self.st.ch, v, offsets, w, eng_buf)?;
        // The maps are linear: apply them to the 2-of-2 bits and reshare only their values
        // (maps words an element instead of k); the constants go in once replicated.
        super::map_bits(1, None, w, coef, consts, mapped)?;
        self.st.reshare_additive(j, mapped, rep, tmp)?;
        for (jj, o) in out.chunks_exact_mut(len).enumerate() {
            for q in 0..2 {
                let dst = &mut o[q * n..(q + 1) * n];
                dst.copy_from_slice(&rep[q * mm + jj * n..q * mm + (jj + 1) * n]);
                if public == Some(q) {
                    for d in dst.iter_mut() {
                        *d = d.wrapping_add(consts[jj]);
                    }
                }
            }
        }
        Ok(())
    }

    fn and_bits(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len() && y.len() == out.len())?;
        let buf = self.scratch.words(Assist::and_scratch(out.len()))?;
        // Boolean shares live between parties 0 and 1: party 2 is always their helper.
        self.st.engines[2].and(&mut self.st.ch, x, y, out, buf)
    }

    fn b2a(&mut self, bits: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(out.len().is_multiple_of(2))?;
        let n = out.len() / 2;
        ensure_shape(bits.len() == bit_words(n))?;
        let buf = self.scratch.words(2 * n + Assist::b2a_scratch(n))?;
        let (w, rest) = buf.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.engines[2].b2a(&mut self.st.ch, bits, w, eng_buf)?;
        self.st.reshare_additive(2, w, out, tmp)
    }
}

/// `(count·n·k, count·m·k)` for `count` products of `m×n` by `n×k` blocks in replicated
/// shares, after checking the buffers' lengths.
fn matmul_sizes(x: &[u64], y: &[u64], out: &[u64], d: MatDims, count: usize) -> Result<(usize, usize)> {
    let (bmn, bnk, bmk) = match (d.lhs(), d.rhs(), d.out()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => return Err(Error::ShapeMismatch),
    };
    let total = |v: usize| v.checked_mul(count).ok_or(Error::ShapeMismatch);
    let (mn, nk, mk) = (total(bmn)?, total(bnk)?, total(bmk)?);
    ensure_shape(x.len() == 2 * mn && y.len() == 2 * nk && out.len() == 2 * mk)?;
    Ok((nk, mk))
}

fn next_of(p: PartyId) -> PartyId {
    (p + 1) % 3
}
fn prev_of(p: PartyId) -> PartyId {
    (p + 2) % 3
}
