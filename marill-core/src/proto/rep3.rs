//! 3PC honest majority with replicated secret sharing (ABY3), semi-honest.
//!
//! Party `i` holds `(t_i, t_{i+1})` of `x = t0 + t1 + t2`, planar (`2n` words). Party `i`
//! holds seeds `k_i` and `k_{i+1}`; `α_i = F(k_i) − F(k_{i+1})` are fresh zero shares
//! (`Σα_i = 0`) drawn anew for every product, so a reshared product share is uniformly
//! masked to the party that receives it.
//!
//! Truncation, comparison and boolean circuits run on 2-of-2 shares between parties 0 and
//! 1 with party 2 as helper ([`assist`](super::assist)): replicated → 2-of-2 is local
//! (party 0 takes `t0 + t1`, party 1 takes `t2`), and 2-of-2 → replicated takes one round
//! (`t0`, `t2` from the seeds party 2 shares with parties 0 and 1; parties 0 and 1 swap
//! `v − t` to learn `t1`).
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
//! | `ltz` | 7 | as 2PC-Dealer's `ltz` plus 8n for the reshare (parties 0, 1) |

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
    reshare_own: Prg,
    reshare_next: Prg,
    eng: Assist,
}

impl<C: Channel, S: Scratch> Rep3<C, S> {
    /// A party from its seeds (see [`setup::rep3_setup`](super::setup::rep3_setup)).
    pub fn new(ch: C, scratch: S, seeds: Rep3Seeds) -> Result<Self> {
        let party = ch.id();
        let ids = [0, 1, 2];
        // The helper engine: party 0 (A) and 2 share k0; party 1 (B) and 2 share k2.
        let eng = match party {
            0 => Assist::new(Role::A, ids, seeds.own, None)?,
            1 => Assist::new(Role::B, ids, seeds.next, None)?,
            2 => Assist::new(Role::D, ids, seeds.next, Some(seeds.own))?,
            _ => return Err(Error::InvalidArgument),
        };
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
                reshare_own: Prg::new(seeds.own, Stream::Reshare),
                reshare_next: Prg::new(seeds.next, Stream::Reshare),
                eng,
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

    /// Replicated → 2-of-2 between parties 0 and 1 (local).
    fn to_additive(&self, x: &[u64], v: &mut [u64]) -> Result<()> {
        let n = v.len();
        match self.party {
            0 => ring::add(&x[..n], &x[n..], v),
            1 => {
                v.copy_from_slice(&x[n..]);
                Ok(())
            }
            _ => {
                v.fill(0);
                Ok(())
            }
        }
    }

    /// 2-of-2 between parties 0 and 1 → replicated (one round).
    fn reshare_additive(&mut self, v: &[u64], out: &mut [u64], tmp: &mut [u64]) -> Result<()> {
        let n = v.len();
        match self.party {
            0 => {
                let (t0, t1) = out.split_at_mut(n);
                self.reshare_own.fill(t0);
                ring::sub(v, t0, tmp)?;
                send_words(&mut self.ch, 1, tmp)?;
                recv_words(&mut self.ch, 1, t1)?;
                ring::add_assign(t1, tmp)
            }
            1 => {
                let (t1, t2) = out.split_at_mut(n);
                self.reshare_next.fill(t2);
                ring::sub(v, t2, tmp)?;
                send_words(&mut self.ch, 0, tmp)?;
                recv_words(&mut self.ch, 0, t1)?;
                ring::add_assign(t1, tmp)
            }
            _ => {
                let (t2, t0) = out.split_at_mut(n);
                self.reshare_own.fill(t2);
                self.reshare_next.fill(t0);
                Ok(())
            }
        }
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

    fn matmul(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        let (mn, nk, mk) = match (d.lhs(), d.rhs(), d.out()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(Error::ShapeMismatch),
        };
        ensure_shape(x.len() == 2 * mn && y.len() == 2 * nk && out.len() == 2 * mk)?;
        let buf = self.scratch.words(nk + 2 * mk)?;
        let (ysum, rest) = buf.split_at_mut(nk);
        let (z, tmp) = rest.split_at_mut(mk);
        ring::add(&y[..nk], &y[nk..], ysum)?;
        ring::matmul(&x[..mn], ysum, z, d)?;
        ring::matmul_acc(&x[mn..], &y[..nk], z, d)?;
        State::<C>::add_zero_share(&mut self.st.zero_own, &mut self.st.zero_next, z, tmp)?;
        send_words(&mut self.st.ch, prev_of(self.st.party), z)?;
        out[..mk].copy_from_slice(z);
        recv_words(&mut self.st.ch, next_of(self.st.party), &mut out[mk..])
    }

    fn trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (v, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.to_additive(x, v)?;
        self.st.eng.trunc(&mut self.st.ch, v, shift, w, eng_buf, Helper::None)?;
        self.st.reshare_additive(w, out, tmp)
    }

    fn mul_trunc(&mut self, x: &[u64], y: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len() && y.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (z, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.local_product(x, y, z, tmp)?;
        // Party 2's product share is the helper's third part; parties 0 and 1 truncate
        // z_0 + z_1 + z_2 as a 2-of-2 value in one round.
        let helper = if self.st.party == 2 { Helper::Send(z) } else { Helper::Receive };
        self.st.eng.trunc(&mut self.st.ch, if self.st.party == 2 { &[] } else { z }, shift, w, eng_buf, helper)?;
        self.st.reshare_additive(w, out, tmp)
    }

    fn trunc_in_place(&mut self, x: &mut [u64], shift: u32) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(x.len().is_multiple_of(2))?;
        let n = x.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (v, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.to_additive(x, v)?;
        self.st.eng.trunc(&mut self.st.ch, v, shift, w, eng_buf, Helper::None)?;
        self.st.reshare_additive(w, x, tmp)
    }

    fn square_trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(out.len().is_multiple_of(2) && x.len() == out.len())?;
        let n = out.len() / 2;
        let buf = self.scratch.words(3 * n + Assist::trunc_scratch(n))?;
        let (z, rest) = buf.split_at_mut(n);
        let (w, rest) = rest.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.local_square(x, z, tmp)?;
        let helper = if self.st.party == 2 { Helper::Send(z) } else { Helper::Receive };
        self.st.eng.trunc(&mut self.st.ch, if self.st.party == 2 { &[] } else { z }, shift, w, eng_buf, helper)?;
        self.st.reshare_additive(w, out, tmp)
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
        self.st.to_additive(x, v)?;
        self.st.eng.ltz(&mut self.st.ch, v, offsets, w, eng_buf)?;
        self.st.reshare_additive(w, out, tmp)
    }

    fn and_bits(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(x.len() == out.len() && y.len() == out.len())?;
        let buf = self.scratch.words(Assist::and_scratch(out.len()))?;
        self.st.eng.and(&mut self.st.ch, x, y, out, buf)
    }

    fn b2a(&mut self, bits: &[u64], out: &mut [u64]) -> Result<()> {
        ensure_shape(out.len().is_multiple_of(2))?;
        let n = out.len() / 2;
        ensure_shape(bits.len() == bit_words(n))?;
        let buf = self.scratch.words(2 * n + Assist::b2a_scratch(n))?;
        let (w, rest) = buf.split_at_mut(n);
        let (tmp, eng_buf) = rest.split_at_mut(n);
        self.st.eng.b2a(&mut self.st.ch, bits, w, eng_buf)?;
        self.st.reshare_additive(w, out, tmp)
    }
}

fn next_of(p: PartyId) -> PartyId {
    (p + 1) % 3
}
fn prev_of(p: PartyId) -> PartyId {
    (p + 2) % 3
}
