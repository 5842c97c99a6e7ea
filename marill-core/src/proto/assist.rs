//! The 2-of-2 engine with a helper: parties A and B hold additive shares, party D deals.
//!
//! 2PC-Dealer is this engine with D the dealer; 3PC converts replicated shares to 2-of-2
//! (locally), runs the engine with party 2 as D for truncation, comparison and boolean
//! circuits, and converts back (one round). D never sees anything that depends on data
//! except, in 3PC's fused multiply-truncate, its own masked product share.
//!
//! **Correlations.** A shares a PRG seed (AES-128 in counter mode, [`crate::prg`]) with D, B another. Whatever is random is
//! drawn by both holders of a seed in the same order; a value D derives from the randoms
//! (a triple's product, a table) reaches B as a *correction* — B's share of the value —
//! which is the only data D sends. A gets its share of everything from its seed alone.
//! Compute parties read D's corrections after their own exchange in each round, so
//! corrections never lengthen the critical path. (The chained products — `trunc_scaled`,
//! `poly_chain` — read a level's mask products before that level's opening, which needs
//! them; D never waits on anyone, so they are already sent, and the measured rounds show no
//! extra one.)
//!
//! | op | rounds | bytes A / B send | bytes D sends (to B) |
//! |---|---|---|---|
//! | `mul` n | 1 | 16n / 16n | 8n |
//! | `square` n | 1 | 8n / 8n | 8n |
//! | `matmul` m×n×k (× count) | 1 | 8(mn+nk)·count each | 8mk·count |
//! | `trunc` n | 1 | 8n each | 16n |
//! | `and` L words | 1 | 16L each | 8L |
//! | `b2a` n bits | 1 | 8⌈n/64⌉ each | 8n |
//! | `ltz` n | 4 | 8n + 8·41⌈n/64⌉ each | 8·(4n + ⌈n/64⌉) + 8·103⌈n/64⌉ + 8n |
//! | `ltz` n × k offsets | 4 | 8n + 8·41⌈kn/64⌉ each | 8·(4n + ⌈n/64⌉) + 8·103⌈kn/64⌉ + 8kn |
//! | `trunc_scaled` m = rows + n | 2 | 8m + 8n each | 16m + 48n |
//! | `poly_chain` n, degree 8 | 5 | 72n each | 248n |
//! | `trunc_ltz` nt, nc × k | 4 | 8nt + `ltz`'s | 16nt + `ltz`'s |
//!
//! **Truncation** (exact range). To truncate `x` with `-2^62 ≤ x < 2^62`, A and B open
//! `c = y + r` where `y = x + 2^62 ∈ [0, 2^63)` and `r` is uniform. Then
//! `y = c − r + w·2^64` with the wrap bit `w = msb(r)·(1 − msb(c))` (if `msb(r) = 0` no
//! wrap is possible; if `msb(r) = 1` a wrap happened exactly when `msb(c) = 0`), which is
//! linear in dealt shares of `msb(r)` once `c` is public. With dealt shares of `r ≫ s`,
//! `(c ≫ s) − (r ≫ s) + w·2^(64−s) − 2^(62−s)` equals `⌊x/2^s⌋ + [c mod 2^s < r mod 2^s]`:
//! the floor, or one more. No gross error is possible in the range; outside it the result
//! is wrong, so callers keep products below 2^62 (2^30 in real value at 16 fractional bits).
//!
//! **Comparison** (`ltz`, all of Z_2^64). Open `c = x + r`. Then
//! `msb(x) = msb(c) ⊕ msb(r) ⊕ [c' < r']` with `c', r'` the low 63 bits. D deals, for each
//! 4-bit chunk `j` of `r'` (16 chunks, the top one 3 bits), boolean shares of the
//! thermometer table `T_j[v] = [v < r'_j]` (16 bits), so `[c'_j < r'_j] = T_j[c'_j]` and
//! `[c'_j = r'_j] = T_j[c'_j − 1] ⊕ T_j[c'_j]` are local. Two rounds of 4-way combines
//! (16 chunks → 4 groups → 1: `lt = lt_3 ⊕ eq_3·lt_2 ⊕ eq_3·eq_2·lt_1 ⊕ eq_3·eq_2·eq_1·lt_0`,
//! `eq = eq_3·eq_2·eq_1·eq_0`) give the borrow: each opens its eight input bits under fresh
//! dealt masks and evaluates every monomial locally from dealt XOR shares of the masks'
//! products (22 bits per group, 15 for the last; a binary tree of ANDs took four rounds
//! at 26 bits). One more round converts the bit to arithmetic shares. Rounds: 1 (open) +
//! 2 (combines) + 1 (b2a) = 4. Comparing one `x` against several public
//! offsets (`[x < θ_i]`, as range normalisation and activation windows do) reuses the
//! opening and the tables: each offset adds only its tree and conversion.

use crate::channel::{Channel, PartyId, recv_words, send_words};
use crate::error::{Error, Result};
use crate::prg::{Prg, Seed, Stream};
use crate::ring::{self, MatDims};
use crate::scratch::carve;
use crate::share::{bit_words, mask_tail};

use super::RANGE_OFFSET;

mod chain;

/// Which part a party plays in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// First share holder (adds public constants).
    A,
    /// Second share holder (receives corrections).
    B,
    /// The helper that deals.
    D,
}

/// Engine state of one party.
pub struct Assist {
    role: Role,
    /// Party ids of A, B, D.
    ids: [PartyId; 3],
    /// A: shared with D. B: shared with D. D: the one shared with A.
    prg: Prg,
    /// D only: the seed shared with B.
    prg_b: Option<Prg>,
}

/// Chunks of the 63-bit comparison.
pub const CHUNKS: usize = 16;
/// Highest degree of [`Assist::poly_chain`].
pub const POLY_DEG: usize = 8;
/// ANDs in the comparison tree: 15 + 7 + 3 + 1.
const TREE_ANDS: usize = 26;

impl Assist {
    /// Engine for A or B (`seed` shared with D) or for D (`seed` shared with A, `seed_b`
    /// shared with B). `ids` are the party ids of A, B and D; `index` separates engines that
    /// draw from the same seeds side by side.
    pub fn new(role: Role, ids: [PartyId; 3], seed: Seed, seed_b: Option<Seed>, index: u32) -> Result<Self> {
        let prg_b = match (role, seed_b) {
            (Role::D, Some(s)) => Some(Prg::with_index(s, Stream::Deal, index)),
            (Role::D, None) => return Err(Error::InvalidArgument),
            _ => None,
        };
        Ok(Self { role, ids, prg: Prg::with_index(seed, Stream::Deal, index), prg_b })
    }

    /// This party's role.
    pub fn role(&self) -> Role {
        self.role
    }

    fn a(&self) -> PartyId {
        self.ids[0]
    }
    fn b(&self) -> PartyId {
        self.ids[1]
    }
    fn d(&self) -> PartyId {
        self.ids[2]
    }
    fn other(&self) -> PartyId {
        if self.role == Role::A { self.b() } else { self.a() }
    }
    fn is_a(&self) -> u64 {
        u64::from(self.role == Role::A)
    }

    fn prg_b(&mut self) -> &mut Prg {
        // `new` guarantees D has it; A and B never call this.
        self.prg_b.get_or_insert_with(|| Prg::new([0; 32], Stream::Deal))
    }

    /// D: draw A's `(a, b, c)` and B's `(a, b)` of a triple, as A and B draw them.
    fn draw_triple(&mut self, aa: &mut [u64], ba: &mut [u64], ca: &mut [u64], ab: &mut [u64], bb: &mut [u64]) {
        self.prg.fill(aa);
        self.prg.fill(ba);
        self.prg.fill(ca);
        let pb = self.prg_b();
        pb.fill(ab);
        pb.fill(bb);
    }

    /// A and B: send `msg` to each other and receive the peer's into `rcv`.
    fn exchange<C: Channel>(&self, ch: &mut C, msg: &[u64], rcv: &mut [u64]) -> Result<()> {
        send_words(ch, self.other(), msg)?;
        recv_words(ch, self.other(), rcv)
    }

    // ---- elementwise multiplication -------------------------------------------------

    /// Scratch words for [`mul`](Self::mul) of `n` elements.
    pub const fn mul_scratch(n: usize) -> usize {
        7 * n
    }

    /// Beaver multiplication of 2-of-2 shares.
    pub fn mul<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let n = out.len();
        match self.role {
            Role::D => {
                let [aa, ba, ca, ab, bb] = carve(buf, [n; 5]);
                self.draw_triple(aa, ba, ca, ab, bb);
                for e in 0..n {
                    let a = aa[e].wrapping_add(ab[e]);
                    let b = ba[e].wrapping_add(bb[e]);
                    ca[e] = a.wrapping_mul(b).wrapping_sub(ca[e]);
                }
                send_words(ch, self.b(), ca)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [a, b, c, msg, rcv] = carve(buf, [n, n, n, 2 * n, 2 * n]);
                self.prg.fill(a);
                self.prg.fill(b);
                if self.role == Role::A {
                    self.prg.fill(c);
                }
                ring::sub(x, a, &mut msg[..n])?;
                ring::sub(y, b, &mut msg[n..])?;
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), c)?;
                }
                ring::add_assign(rcv, msg)?; // rcv = [d | e]
                let (d, e) = rcv.split_at(n);
                let is_a = self.is_a();
                for i in 0..n {
                    out[i] = c[i]
                        .wrapping_add(d[i].wrapping_mul(b[i]))
                        .wrapping_add(e[i].wrapping_mul(a[i]))
                        .wrapping_add(is_a.wrapping_mul(d[i].wrapping_mul(e[i])));
                }
                Ok(())
            }
        }
    }

    /// Scratch words for [`square`](Self::square) of `n` elements.
    pub const fn square_scratch(n: usize) -> usize {
        4 * n
    }

    /// Squaring with a dealt pair `(a, a²)`.
    pub fn square<C: Channel>(&mut self, ch: &mut C, x: &[u64], out: &mut [u64], buf: &mut [u64]) -> Result<()> {
        let n = out.len();
        match self.role {
            Role::D => {
                let [aa, ca, ab] = carve(buf, [n; 3]);
                self.prg.fill(aa);
                self.prg.fill(ca);
                self.prg_b().fill(ab);
                for e in 0..n {
                    let a = aa[e].wrapping_add(ab[e]);
                    ca[e] = a.wrapping_mul(a).wrapping_sub(ca[e]);
                }
                send_words(ch, self.b(), ca)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [a, c, msg, rcv] = carve(buf, [n; 4]);
                self.prg.fill(a);
                if self.role == Role::A {
                    self.prg.fill(c);
                }
                ring::sub(x, a, msg)?;
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), c)?;
                }
                ring::add_assign(rcv, msg)?;
                let is_a = self.is_a();
                for i in 0..n {
                    let d = rcv[i];
                    out[i] = c[i]
                        .wrapping_add(d.wrapping_mul(a[i]).wrapping_mul(2))
                        .wrapping_add(is_a.wrapping_mul(d.wrapping_mul(d)));
                }
                Ok(())
            }
        }
    }

    // ---- matrix multiplication ------------------------------------------------------

    /// Scratch words for [`matmul`](Self::matmul).
    pub const fn matmul_scratch(d: MatDims, count: usize) -> usize {
        let (mn, nk, mk) = (d.m * d.n * count, d.n * d.k * count, d.m * d.k * count);
        3 * mn + 4 * nk + mk
    }

    /// `count` independent shared × shared products in one round (blocks concatenated:
    /// `x` holds `count` m×n blocks, `y` `count` n×k blocks, `out` `count` m×k blocks), with
    /// dealt matrix triples `(A, B, A·B)`.
    pub fn matmul<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        d: MatDims,
        count: usize,
        buf: &mut [u64],
    ) -> Result<()> {
        let (bmn, bnk, bmk) = (d.m * d.n, d.n * d.k, d.m * d.k);
        let (mn, nk, mk) = (bmn * count, bnk * count, bmk * count);
        match self.role {
            Role::D => {
                let [aa, ba, ca, ab, bb] = carve(buf, [mn, nk, mk, mn, nk]);
                self.draw_triple(aa, ba, ca, ab, bb);
                ring::add_assign(ab, aa)?;
                ring::add_assign(bb, ba)?;
                for c in 0..count {
                    // out = A·B (D's own use of `out` as scratch)
                    ring::matmul(
                        &ab[c * bmn..(c + 1) * bmn],
                        &bb[c * bnk..(c + 1) * bnk],
                        &mut out[c * bmk..(c + 1) * bmk],
                        d,
                    )?;
                }
                ring::sub_assign(out, ca)?;
                send_words(ch, self.b(), out)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [a, b, msg, rcv, tmp] = carve(buf, [mn, nk, mn + nk, mn + nk, nk]);
                self.prg.fill(a);
                self.prg.fill(b);
                if self.role == Role::A {
                    self.prg.fill(out); // C_A
                }
                ring::sub(x, a, &mut msg[..mn])?;
                ring::sub(y, b, &mut msg[mn..])?;
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), out)?; // C_B
                }
                ring::add_assign(rcv, msg)?; // [D | E] opened
                let (dm, em) = rcv.split_at(mn);
                // A: C + D·(B_A + E) + A_A·E ;  B: C + D·B_B + A_B·E
                tmp.copy_from_slice(b);
                if self.role == Role::A {
                    ring::add_assign(tmp, em)?;
                }
                for c in 0..count {
                    let o = &mut out[c * bmk..(c + 1) * bmk];
                    ring::matmul_acc(&dm[c * bmn..(c + 1) * bmn], &tmp[c * bnk..(c + 1) * bnk], o, d)?;
                    ring::matmul_acc(&a[c * bmn..(c + 1) * bmn], &em[c * bnk..(c + 1) * bnk], o, d)?;
                }
                Ok(())
            }
        }
    }

    // ---- products with a weight B knows in the clear --------------------------------

    /// One-time set-up of a weight `W (n×k)` that B knows: D and B draw a mask `S` from
    /// their seed; B sends `F = W − S` to A once. Material kept: A `F`, B `W`, D `S`.
    pub fn weight_setup<C: Channel>(&mut self, ch: &mut C, w: Option<&[u64]>, material: &mut [u64]) -> Result<()> {
        match self.role {
            Role::D => {
                self.prg_b().fill(material);
                Ok(())
            }
            Role::B => {
                let w = w.ok_or(Error::Protocol)?;
                self.prg.fill(material); // S
                for (m, v) in material.iter_mut().zip(w) {
                    *m = v.wrapping_sub(*m);
                }
                send_words(ch, self.a(), material)?;
                material.copy_from_slice(w);
                Ok(())
            }
            Role::A => recv_words(ch, self.b(), material),
        }
    }

    /// Scratch words for [`weight_matmul`](Self::weight_matmul).
    pub const fn weight_matmul_scratch(d: MatDims) -> usize {
        2 * d.m * d.n + d.m * d.k
    }

    /// `x·W` for 2-of-2 shares `x (m×n)` and a weight set up by
    /// [`weight_setup`](Self::weight_setup). A draws `R` (with D) and sends `E = x_A − R`
    /// to B; B computes `(E + x_B)·W + U` with `U` drawn with D; A computes `R·F + T` with
    /// `T = R·S − U` from D. The shares add to `x·W`; B sees `E` (masked by `R`), A sees
    /// `F` (masked by `S`, never revealed) and `T` (masked by `U`). One round; A sends `8mn`
    /// bytes, D sends `8mk`, B nothing — instead of opening the whole weight every call.
    pub fn weight_matmul<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        material: &[u64],
        out: &mut [u64],
        d: MatDims,
        buf: &mut [u64],
    ) -> Result<()> {
        let (mn, mk) = (d.m * d.n, d.m * d.k);
        match self.role {
            Role::A => {
                let [r, e, t] = carve(buf, [mn, mn, mk]);
                self.prg.fill(r);
                ring::sub(x, r, e)?;
                send_words(ch, self.b(), e)?;
                ring::matmul(r, material, out, d)?;
                recv_words(ch, self.d(), t)?;
                ring::add_assign(out, t)
            }
            Role::B => {
                let [e, u] = carve(buf, [mn, mk]);
                self.prg.fill(u);
                recv_words(ch, self.a(), e)?;
                ring::add_assign(e, x)?;
                ring::matmul(e, material, out, d)?;
                ring::add_assign(out, u)
            }
            Role::D => {
                let [r, u] = carve(buf, [mn, mk]);
                self.prg.fill(r);
                self.prg_b().fill(u);
                ring::matmul(r, material, out, d)?;
                ring::sub_assign(out, u)?;
                send_words(ch, self.a(), out)?;
                out.fill(0);
                Ok(())
            }
        }
    }

    // ---- truncation -----------------------------------------------------------------

    /// Scratch words for [`trunc`](Self::trunc) of `n` elements.
    pub const fn trunc_scratch(n: usize) -> usize {
        6 * n
    }

    /// Exact-range truncation (see the module docs). In 3PC's fused multiply-truncate D
    /// also holds a third additive part `helper` of `x`, which it sends to A and B in the
    /// same round (it is masked by the 3PC zero share); A and B then pass `helper = true`.
    pub fn trunc<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        shift: u32,
        out: &mut [u64],
        buf: &mut [u64],
        helper: Helper<'_>,
    ) -> Result<()> {
        let n = out.len();
        match self.role {
            Role::D => {
                let [ra, rb, hi, m, corr] = carve(buf, [n, n, n, n, 2 * n]);
                if let Helper::Send(part) = helper {
                    send_words(ch, self.a(), part)?;
                    send_words(ch, self.b(), part)?;
                }
                self.deal_trunc(shift, ra, rb, hi, m, corr);
                send_words(ch, self.b(), corr)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [r, hm, msg, rcv, extra] = carve(buf, [n, 2 * n, n, n, n]);
                self.prg.fill(r);
                if self.role == Role::A {
                    self.prg.fill(hm);
                }
                ring::add(x, r, msg)?;
                if self.role == Role::A {
                    for v in msg.iter_mut() {
                        *v = v.wrapping_add(RANGE_OFFSET);
                    }
                }
                self.exchange(ch, msg, rcv)?;
                if matches!(helper, Helper::Receive) {
                    recv_words(ch, self.d(), extra)?;
                    ring::add_assign(rcv, extra)?;
                }
                if self.role == Role::B {
                    recv_words(ch, self.d(), hm)?;
                }
                ring::add_assign(rcv, msg)?; // c
                let (hi, m) = hm.split_at(n);
                let is_a = self.is_a();
                for e in 0..n {
                    out[e] = trunc_share(rcv[e], hi[e], m[e], shift, is_a);
                }
                Ok(())
            }
        }
    }

    /// Scratch words for [`trunc_ltz`](Self::trunc_ltz): `nt` values truncated, `nc`
    /// compared against `k` offsets.
    pub const fn trunc_ltz_scratch(nt: usize, nc: usize, k: usize) -> usize {
        4 * (nt + nc) + 2 * nt + Self::ltz_scratch(nc, k)
    }

    /// `t_out = trunc(t_in, shift)` as [`trunc`](Self::trunc) and
    /// `c_out[i·nc + e] = [c_in_e − θ_i < 0]` as [`ltz`](Self::ltz), the truncation's opening
    /// and the comparison's in one round: 1 + 3 rounds instead of 1 + 4. With a helper (3PC),
    /// D's third parts of both inputs come as one [`Helper::Send`] `[t_part | c_part]`, or,
    /// where `c_in` is a part of `t_in` (`from_t = Some((kc, stride))`: `c[r·kc + j] =
    /// t[r·stride + j]`), as `t_part` alone, A and B taking `c`'s from it.
    #[allow(clippy::too_many_arguments)]
    pub fn trunc_ltz<C: Channel>(
        &mut self,
        ch: &mut C,
        t_in: &[u64],
        c_in: &[u64],
        from_t: Option<(usize, usize)>,
        shift: u32,
        offsets: &[u64],
        t_out: &mut [u64],
        c_out: &mut [u64],
        buf: &mut [u64],
        helper: Helper<'_>,
    ) -> Result<()> {
        let (nt, k) = (t_out.len(), offsets.len());
        if k == 0 || !c_out.len().is_multiple_of(k) || shift > 62 {
            return Err(Error::ShapeMismatch);
        }
        let nc = c_out.len() / k;
        if let Some((kc, stride)) = from_t {
            let fits =
                kc > 0 && kc <= stride && nc.is_multiple_of(kc) && (nc == 0 || (nc / kc - 1) * stride + kc <= nt);
            if !fits {
                return Err(Error::ShapeMismatch);
            }
        }
        let part_len = if from_t.is_some() { nt } else { nt + nc };
        let inputs = match (self.role, &helper) {
            (Role::D, Helper::Send(part)) => part.len() == part_len,
            (Role::D, _) => true,
            _ => t_in.len() == nt && c_in.len() == nc,
        };
        if !inputs || buf.len() < Self::trunc_ltz_scratch(nt, nc, k) {
            return Err(Error::ShapeMismatch);
        }
        let nn = nt + nc;
        let [r, msg, rcv, extra, hm, rest] = carve(buf, [nn, nn, nn, nn, 2 * nt, Self::ltz_scratch(nc, k)]);
        let rest = &mut rest[3 * nc..];
        if self.role == Role::D {
            if let Helper::Send(part) = helper {
                send_words(ch, self.a(), part)?;
                send_words(ch, self.b(), part)?;
            }
            // The truncation's masks and corrections, as `trunc` deals them.
            let (ra, rb, hi, mm) = (&mut r[..nt], &mut msg[..nt], &mut rcv[..nt], &mut extra[..nt]);
            self.deal_trunc(shift, ra, rb, hi, mm, hm);
            send_words(ch, self.b(), hm)?;
            // The comparison's mask, as `ltz` draws it.
            let (rc, tmp) = (&mut r[nt..], &mut msg[nt..]);
            self.prg.fill(rc);
            self.prg_b().fill(tmp);
            ring::add_assign(rc, tmp)?;
            t_out.fill(0);
            return self.ltz_finish(ch, &r[nt..], offsets, c_out, rest);
        }
        self.prg.fill(&mut r[..nt]);
        if self.role == Role::A {
            self.prg.fill(hm);
        }
        self.prg.fill(&mut r[nt..]);
        let is_a = self.is_a();
        for e in 0..nt {
            msg[e] = t_in[e].wrapping_add(r[e]).wrapping_add(RANGE_OFFSET.wrapping_mul(is_a));
        }
        for e in 0..nc {
            msg[nt + e] = c_in[e].wrapping_add(r[nt + e]);
        }
        self.exchange(ch, msg, rcv)?;
        if matches!(helper, Helper::Receive) {
            let extra = &mut extra[..part_len];
            recv_words(ch, self.d(), extra)?;
            match from_t {
                Some((kc, stride)) => {
                    ring::add_assign(&mut rcv[..nt], extra)?;
                    for e in 0..nc {
                        let v = extra[(e / kc) * stride + e % kc];
                        rcv[nt + e] = rcv[nt + e].wrapping_add(v);
                    }
                }
                None => ring::add_assign(rcv, extra)?,
            }
        }
        if self.role == Role::B {
            recv_words(ch, self.d(), hm)?;
        }
        ring::add_assign(rcv, msg)?; // the opened values
        let (hi, m) = hm.split_at(nt);
        for e in 0..nt {
            t_out[e] = trunc_share(rcv[e], hi[e], m[e], shift, is_a);
        }
        self.ltz_finish(ch, &rcv[nt..], offsets, c_out, rest)
    }

    /// D: a truncation's mask `r` drawn as A and B draw their parts of it (`ra`, `rb`), then
    /// B's corrections of `r ≫ shift` and `msb(r)` into `corr` (`2n` words, A's parts drawn
    /// into `hi` and `m`). The true values stay in `ra` (`r ≫ shift`) and `rb` (`msb r`) for
    /// callers that deal products of them.
    fn deal_trunc(
        &mut self,
        shift: u32,
        ra: &mut [u64],
        rb: &mut [u64],
        hi: &mut [u64],
        m: &mut [u64],
        corr: &mut [u64],
    ) {
        self.prg.fill(ra);
        self.prg_b().fill(rb);
        self.prg.fill(hi);
        self.prg.fill(m);
        let (ch_hi, ch_m) = corr.split_at_mut(ra.len());
        for e in 0..ra.len() {
            let r = ra[e].wrapping_add(rb[e]);
            ra[e] = r >> shift;
            rb[e] = r >> 63;
            ch_hi[e] = ra[e].wrapping_sub(hi[e]);
            ch_m[e] = rb[e].wrapping_sub(m[e]);
        }
    }

    // ---- boolean AND ----------------------------------------------------------------

    /// Scratch words for [`and`](Self::and) of `l` packed words.
    pub const fn and_scratch(l: usize) -> usize {
        7 * l
    }

    /// `out = x ∧ y` on packed XOR shares, with dealt boolean triples.
    pub fn and<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let l = out.len();
        match self.role {
            Role::D => {
                let [aa, ba, ca, ab, bb] = carve(buf, [l; 5]);
                self.draw_triple(aa, ba, ca, ab, bb);
                for i in 0..l {
                    ca[i] ^= (aa[i] ^ ab[i]) & (ba[i] ^ bb[i]);
                }
                send_words(ch, self.b(), ca)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [a, b, c, msg, rcv] = carve(buf, [l, l, l, 2 * l, 2 * l]);
                self.prg.fill(a);
                self.prg.fill(b);
                if self.role == Role::A {
                    self.prg.fill(c);
                }
                for i in 0..l {
                    msg[i] = x[i] ^ a[i];
                    msg[l + i] = y[i] ^ b[i];
                }
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), c)?;
                }
                let mask_a = 0u64.wrapping_sub(self.is_a());
                for i in 0..l {
                    let d = msg[i] ^ rcv[i];
                    let e = msg[l + i] ^ rcv[l + i];
                    out[i] = c[i] ^ (d & b[i]) ^ (e & a[i]) ^ (mask_a & d & e);
                }
                Ok(())
            }
        }
    }

    // ---- boolean to arithmetic ------------------------------------------------------

    /// Scratch words for [`b2a`](Self::b2a) of `n` bits.
    pub const fn b2a_scratch(n: usize) -> usize {
        4 * bit_words(n) + 2 * n
    }

    /// Arithmetic 2-of-2 shares (`n` words) of `n` packed boolean shares, with a dealt
    /// random bit shared both ways.
    pub fn b2a<C: Channel>(&mut self, ch: &mut C, bits: &[u64], out: &mut [u64], buf: &mut [u64]) -> Result<()> {
        let n = out.len();
        let w = bit_words(n);
        match self.role {
            Role::D => {
                let [pa, pb_bits, ra, corr] = carve(buf, [w, w, n, n]);
                self.prg.fill(pa);
                self.prg_b().fill(pb_bits);
                self.prg.fill(ra);
                for e in 0..n {
                    let rho = ((pa[e / 64] ^ pb_bits[e / 64]) >> (e % 64)) & 1;
                    corr[e] = rho.wrapping_sub(ra[e]);
                }
                send_words(ch, self.b(), corr)?;
                out.fill(0);
                Ok(())
            }
            _ => {
                let [rho, msg, rcv, _spare, ra] = carve(buf, [w, w, w, w, n]);
                self.prg.fill(rho);
                if self.role == Role::A {
                    self.prg.fill(ra);
                }
                for i in 0..w {
                    msg[i] = bits[i] ^ rho[i];
                }
                mask_tail(msg, n);
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), ra)?;
                }
                let is_a = self.is_a();
                for e in 0..n {
                    let ebit = ((msg[e / 64] ^ rcv[e / 64]) >> (e % 64)) & 1;
                    // b = e + ρ − 2eρ = e + ρ(1 − 2e)
                    let sign = 1u64.wrapping_sub(ebit.wrapping_mul(2));
                    out[e] = is_a.wrapping_mul(ebit).wrapping_add(ra[e].wrapping_mul(sign));
                }
                Ok(())
            }
        }
    }

    // ---- comparison -----------------------------------------------------------------

    /// Scratch words for [`ltz`](Self::ltz) of `n` elements against `k` offsets.
    pub const fn ltz_scratch(n: usize, k: usize) -> usize {
        let wn = bit_words(n);
        let m = n * k;
        let w = bit_words(m);
        // r, c-exchange (3n); tables (4n) + msb(r) (wn); lt, eq planes (32w); the combines'
        // operands (TREE4_OPS·w); the result bits (w); the larger of b2a's scratch and D's
        // table draw.
        let sub = max(Self::b2a_scratch(m), 4 * n + wn);
        3 * n + 4 * n + wn + 32 * w + TREE4_OPS * w + w + sub
    }

    /// Arithmetic 2-of-2 shares of `[x − θ_i < 0]` for every public offset `θ_i`
    /// (`out` is `k·n` words, offset-major), see the module docs. The opening `c = x + r` and
    /// the dealt tables depend on `x` and `r` only, so every offset reuses them: a further
    /// offset costs only its AND tree and its conversion to arithmetic shares.
    pub fn ltz<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        offsets: &[u64],
        out: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let n = x.len();
        let k = offsets.len();
        let m = out.len();
        if m != n * k || k == 0 {
            return Err(Error::ShapeMismatch);
        }
        let [r, msg, rcv, rest] = carve(buf, [n, n, n, Self::ltz_scratch(n, k) - 3 * n]);
        // 1. open c = x + r (D: draw both masks and keep r).
        if self.role == Role::D {
            self.prg.fill(r);
            self.prg_b().fill(rcv);
            ring::add_assign(r, rcv)?;
        } else {
            self.prg.fill(r);
            ring::add(x, r, msg)?;
            self.exchange(ch, msg, rcv)?;
            ring::add_assign(rcv, msg)?; // rcv = c
        }
        self.ltz_finish(ch, if self.role == Role::D { r } else { rcv }, offsets, out, rest)
    }

    /// [`ltz`](Self::ltz) after its opening: `cr` is the opened `c = x + r` (A, B) or the
    /// mask `r` (D); `buf` holds `ltz_scratch(n, k) − 3n` words.
    fn ltz_finish<C: Channel>(
        &mut self,
        ch: &mut C,
        cr: &[u64],
        offsets: &[u64],
        out: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let n = cr.len();
        let k = offsets.len();
        let m = out.len();
        if m != n * k || k == 0 || buf.len() < Self::ltz_scratch(n, k) - 3 * n {
            return Err(Error::ShapeMismatch);
        }
        let wn = bit_words(n);
        let w = bit_words(m);
        let fixed = 4 * n + wn + (33 + TREE4_OPS) * w;
        let [tables, r63, lt, eq, ops, bits, sub] =
            carve(buf, [4 * n, wn, 16 * w, 16 * w, TREE4_OPS * w, w, Self::ltz_scratch(n, k) - 3 * n - fixed]);
        let (r, rcv) = (cr, cr);
        // 2. tables T_j[v] = [v < r'_j] and msb(r), dealt once for all offsets.
        if self.role == Role::D {
            let [ta, r63a] = carve(sub, [4 * n, wn]);
            self.prg.fill(ta);
            self.prg.fill(r63a);
            {
                let t16: &mut [u16] = bytemuck::cast_slice_mut(tables);
                let ta16: &[u16] = bytemuck::cast_slice(ta);
                for e in 0..n {
                    let low = r[e] & (u64::MAX >> 1);
                    for j in 0..CHUNKS {
                        let rj = ((low >> (4 * j)) & 15) as u32;
                        let table = ((1u32 << rj) - 1) as u16;
                        t16[e * CHUNKS + j] = table ^ ta16[e * CHUNKS + j];
                    }
                }
            }
            r63.copy_from_slice(r63a);
            for e in 0..n {
                r63[e / 64] ^= (r[e] >> 63) << (e % 64);
            }
            send_words(ch, self.b(), tables)?;
            send_words(ch, self.b(), r63)?;
        } else if self.role == Role::A {
            self.prg.fill(tables);
            self.prg.fill(r63);
        } else {
            recv_words(ch, self.d(), tables)?;
            recv_words(ch, self.d(), r63)?;
        }
        // 3. leaves for comparison i·n + e: the public value is c_e − θ_i.
        lt.fill(0);
        eq.fill(0);
        bits.fill(0);
        if self.role != Role::D {
            let t16: &[u16] = bytemuck::cast_slice(tables);
            let is_a = self.is_a() as u16;
            for (i, theta) in offsets.iter().enumerate() {
                for e in 0..n {
                    let c = rcv[e].wrapping_sub(*theta);
                    let cl = c & (u64::MAX >> 1);
                    let v_idx = i * n + e;
                    let (word, bit) = (v_idx / 64, v_idx % 64);
                    for j in 0..CHUNKS {
                        let v = ((cl >> (4 * j)) & 15) as u32;
                        let t = t16[e * CHUNKS + j];
                        let ltb = (t >> v) & 1;
                        let below = if v == 0 { is_a } else { (t >> (v - 1)) & 1 };
                        lt[j * w + word] |= u64::from(ltb) << bit;
                        eq[j * w + word] |= u64::from(below ^ ltb) << bit;
                    }
                    // msb(c − θ) (A only) ⊕ msb(r): the terms of msb(x − θ) besides the borrow.
                    let r63b = (r63[e / 64] >> (e % 64)) & 1;
                    bits[word] |= ((u64::from(is_a) & (c >> 63)) ^ r63b) << bit;
                }
            }
        }
        // 4. the tree: 16 chunks → 4 groups → 1, two rounds.
        self.tree4(ch, lt, eq, w, ops)?;
        // 5. msb(x − θ) = msb(c − θ) ⊕ msb(r) ⊕ borrow.
        for i in 0..w {
            bits[i] ^= lt[i];
        }
        // 6. to arithmetic.
        self.b2a(ch, bits, out, sub)
    }
}

/// Variables of a 4-way combine: bit `i` is `lt_i` for `i < 4` and `eq_(i−4)` for `i ≥ 4`
/// (chunk 0 the lowest).
const L_TERMS: [u8; 4] = [1 << 3, (1 << 7) | (1 << 2), (1 << 7) | (1 << 6) | (1 << 1), 0b1110_0001];
/// `eq = eq_3·eq_2·eq_1·eq_0`.
const E_TERM: u8 = 0xF0;
/// Mask products a combine needs: 22 with `eq`, 15 without.
const MAX_PRODUCTS: usize = 22;
/// Words of operand space per packed word of comparisons in [`Assist::tree4`].
const TREE4_OPS: usize = 32 + 8 + 4 * (8 * 3 + MAX_PRODUCTS);

/// The subsets `S` (|S| ≥ 2) of the monomials of a combine, each once, in a fixed order
/// every party computes alike; returns their number.
fn mask_products(with_e: bool, out: &mut [u8; MAX_PRODUCTS]) -> usize {
    let mut k = 0;
    let monos = [L_TERMS[0], L_TERMS[1], L_TERMS[2], L_TERMS[3], E_TERM];
    for &m in &monos[..if with_e { 5 } else { 4 }] {
        let mut s = m;
        loop {
            if s.count_ones() >= 2 && !out[..k].contains(&s) {
                out[k] = s;
                k += 1;
            }
            if s == 0 {
                break;
            }
            s = (s - 1) & m;
        }
    }
    k
}

impl Assist {
    /// The borrow of the chunked comparison in two rounds: `lt` and `eq` hold 16 planes of
    /// `w` packed XOR-share words (`[c_j < r_j]`, `[c_j = r_j]`, chunk 0 the lowest);
    /// afterwards plane 0 of `lt` is the borrow. Each round combines four chunks (groups)
    /// at once, `lt = lt_3 ⊕ eq_3·lt_2 ⊕ eq_3·eq_2·lt_1 ⊕ eq_3·eq_2·eq_1·lt_0` and
    /// `eq = eq_3·eq_2·eq_1·eq_0`, from one masked opening (see [`Assist::combine4`]).
    fn tree4<C: Channel>(&mut self, ch: &mut C, lt: &mut [u64], eq: &[u64], w: usize, ops: &mut [u64]) -> Result<()> {
        let [vars, out_l, out_e, buf] = carve(ops, [32 * w, 4 * w, 4 * w, 4 * w * (24 + MAX_PRODUCTS)]);
        for v in 0..8 {
            for g in 0..4 {
                let src = if v < 4 { &lt[(4 * g + v) * w..][..w] } else { &eq[(4 * g + v - 4) * w..][..w] };
                vars[(v * 4 + g) * w..][..w].copy_from_slice(src);
            }
        }
        self.combine4(ch, vars, 4 * w, true, out_l, out_e, buf)?;
        for v in 0..8 {
            let src = if v < 4 { &out_l[v * w..][..w] } else { &out_e[(v - 4) * w..][..w] };
            vars[v * w..][..w].copy_from_slice(src);
        }
        self.combine4(ch, &vars[..8 * w], w, false, &mut lt[..w], &mut [], buf)
    }

    /// One round of 4-way combines over `gw` packed words per variable (`vars`: 8 planes,
    /// variable-major). Every variable is opened under a fresh dealt mask, `d_v = v ⊕ m_v`;
    /// a monomial `Π_{v∈M} v = ⊕_{S⊆M} (Π_{v∈M∖S} d_v)·m_S` is then linear in XOR shares of
    /// the mask products `m_S`, which D deals (A's from its seed, B's as corrections): 22
    /// bits per group with `eq`, 15 without, against the 3 ANDs (3 bits) per pair of a
    /// binary tree and two rounds more.
    #[allow(clippy::too_many_arguments)]
    fn combine4<C: Channel>(
        &mut self,
        ch: &mut C,
        vars: &[u64],
        gw: usize,
        with_e: bool,
        out_l: &mut [u64],
        out_e: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let mut subs = [0u8; MAX_PRODUCTS];
        let np = mask_products(with_e, &mut subs);
        let mut index = [0u8; 256];
        for (j, s) in subs[..np].iter().enumerate() {
            index[*s as usize] = j as u8;
        }
        let [masks, prods, msg, rcv] = carve(buf, [8 * gw, np * gw, 8 * gw, 8 * gw]);
        if self.role == Role::D {
            self.prg.fill(masks);
            self.prg.fill(prods);
            self.prg_b().fill(msg);
            for (m, b) in masks.iter_mut().zip(msg.iter()) {
                *m ^= b;
            }
            for (j, s) in subs[..np].iter().enumerate() {
                for i in 0..gw {
                    let mut acc = u64::MAX;
                    for v in 0..8 {
                        if (s >> v) & 1 == 1 {
                            acc &= masks[v * gw + i];
                        }
                    }
                    prods[j * gw + i] ^= acc;
                }
            }
            send_words(ch, self.b(), prods)?;
            out_l.fill(0);
            out_e.fill(0);
            return Ok(());
        }
        self.prg.fill(masks);
        if self.role == Role::A {
            self.prg.fill(prods);
        }
        for i in 0..8 * gw {
            msg[i] = vars[i] ^ masks[i];
        }
        self.exchange(ch, msg, rcv)?;
        if self.role == Role::B {
            recv_words(ch, self.d(), prods)?;
        }
        for (r, m) in rcv.iter_mut().zip(msg.iter()) {
            *r ^= m; // d_v
        }
        let all_a = 0u64.wrapping_sub(self.is_a());
        let term = |mono: u8, i: usize| -> u64 {
            let mut acc = 0u64;
            let mut s = mono;
            loop {
                let rest = mono & !s;
                let mut coef = u64::MAX;
                for v in 0..8 {
                    if (rest >> v) & 1 == 1 {
                        coef &= rcv[v * gw + i];
                    }
                }
                let share = match s.count_ones() {
                    0 => all_a,
                    1 => masks[s.trailing_zeros() as usize * gw + i],
                    _ => prods[index[s as usize] as usize * gw + i],
                };
                acc ^= coef & share;
                if s == 0 {
                    break;
                }
                s = (s - 1) & mono;
            }
            acc
        };
        for i in 0..gw {
            out_l[i] = term(L_TERMS[0], i) ^ term(L_TERMS[1], i) ^ term(L_TERMS[2], i) ^ term(L_TERMS[3], i);
            if with_e {
                out_e[i] = term(E_TERM, i);
            }
        }
        Ok(())
    }
}

/// Words of operand space [`borrow_tree`] needs for `w` words per plane.
pub const fn borrow_tree_ops(w: usize) -> usize {
    45 * w
}

/// The borrow tree of the chunked comparison: `lt` and `eq` hold 16 planes of `w` packed
/// boolean-share words (`[a_j < b_j]` and `[a_j = b_j]` for chunk `j`, lowest first);
/// afterwards plane 0 of `lt` is `[a < b]`. Each level is one call of `and` (15, 7, 3, 1
/// ANDs of `w` words: 26 in all); `ops` is scratch of [`borrow_tree_ops`] words. The
/// planes compact in place.
pub fn borrow_tree(
    lt: &mut [u64],
    eq: &mut [u64],
    ops: &mut [u64],
    w: usize,
    mut and: impl FnMut(&[u64], &[u64], &mut [u64]) -> Result<()>,
) -> Result<()> {
    if lt.len() < CHUNKS * w || eq.len() < CHUNKS * w || ops.len() < borrow_tree_ops(w) {
        return Err(Error::ShapeMismatch);
    }
    let mut groups = CHUNKS;
    while groups > 1 {
        let parents = groups / 2;
        let ands = parents + (parents - 1);
        let [xs, ys, zs] = carve(ops, [15 * w, 15 * w, 15 * w]);
        for p in 0..parents {
            let (hi, lo) = (2 * p + 1, 2 * p);
            xs[p * w..(p + 1) * w].copy_from_slice(&eq[hi * w..(hi + 1) * w]);
            ys[p * w..(p + 1) * w].copy_from_slice(&lt[lo * w..(lo + 1) * w]);
        }
        for p in 1..parents {
            let (hi, lo) = (2 * p + 1, 2 * p);
            let slot = parents + p - 1;
            xs[slot * w..(slot + 1) * w].copy_from_slice(&eq[hi * w..(hi + 1) * w]);
            ys[slot * w..(slot + 1) * w].copy_from_slice(&eq[lo * w..(lo + 1) * w]);
        }
        let l = ands * w;
        and(&xs[..l], &ys[..l], &mut zs[..l])?;
        for p in 0..parents {
            let hi = 2 * p + 1;
            for i in 0..w {
                lt[p * w + i] = lt[hi * w + i] ^ zs[p * w + i];
            }
        }
        for p in 1..parents {
            let slot = parents + p - 1;
            eq[p * w..(p + 1) * w].copy_from_slice(&zs[slot * w..(slot + 1) * w]);
        }
        groups = parents;
    }
    debug_assert_eq!(TREE_ANDS, 15 + 7 + 3 + 1);
    Ok(())
}

/// The third additive part D holds in 3PC's fused multiply-truncate.
#[derive(Clone, Copy)]
pub enum Helper<'a> {
    /// Plain 2-of-2 truncation.
    None,
    /// D sends this part to A and B.
    Send(&'a [u64]),
    /// A or B receives D's part.
    Receive,
}

/// A or B: this party's share of `trunc(z, shift)` from the opened `c = z + 2^62 + r` and its
/// shares `hi`, `m` of `r ≫ shift` and `msb(r)` (see the module docs: the wrap term
/// `msb(r)·(1 − msb c)·2^(64−shift)`, A adding the public `(c ≫ shift) − 2^(62−shift)`).
#[inline]
fn trunc_share(c: u64, hi: u64, m: u64, shift: u32, is_a: u64) -> u64 {
    let top = if shift == 0 { 0 } else { 1u64 << (64 - shift) };
    let v = m.wrapping_mul(1 - (c >> 63)).wrapping_mul(top).wrapping_sub(hi);
    v.wrapping_add(is_a.wrapping_mul((c >> shift).wrapping_sub(RANGE_OFFSET >> shift)))
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}
