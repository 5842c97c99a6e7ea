//! The 2-of-2 engine with a helper: parties A and B hold additive shares, party D deals.
//!
//! 2PC-Dealer is this engine with D the dealer; 3PC converts replicated shares to 2-of-2
//! (locally), runs the engine with party 2 as D for truncation, comparison and boolean
//! circuits, and converts back (one round). D never sees anything that depends on data
//! except, in 3PC's fused multiply-truncate, its own masked product share.
//!
//! **Correlations.** A shares a ChaCha12 seed with D, B another. Whatever is random is
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

    // ---- chained squarings ------------------------------------------------------------

    /// Scratch words for [`square_chain`](Self::square_chain) of `n` elements.
    pub const fn square_chain_scratch(n: usize) -> usize {
        16 * n
    }

    /// `out = y_k` with `y_0 = x` and `y_{i+1} = (y_i + c_i)²` truncated by `s_i` bits
    /// (exact range, as [`trunc`](Self::trunc); `s_i = 0`: not truncated) for the steps
    /// `(c_i, s_i)`, `c_i` a public constant.
    ///
    /// A truncation opens `W = z + 2^62 + r`; the next square's operand is then
    /// `y + c = d + a` with the public `d = (W ≫ s) − 2^(62−s) + c` and the mask
    /// `a = −(r ≫ s) + k·msb(r)`, `k = (1 − msb W)·2^(64−s)`: its square
    /// `d² + 2d·a + a²` needs no opening, since `a² = (r ≫ s)² − 2k·(r ≫ s)·msb(r) +
    /// k²·msb(r)` is linear in dealt shares of `r ≫ s`, `msb(r)`, `(r ≫ s)²` and
    /// `(r ≫ s)·msb(r)`. `d` is a function of `W`, which `r` masks. Rounds: one per
    /// truncating step, plus one opening at the start and after each untruncated square
    /// (step by step: two per truncating step, one per other). D sends 4n words per
    /// truncating step (2n for the last), n per opened square.
    ///
    /// With `helper` other than [`Helper::None`] (3PC), `x` is not `y_0` but already the
    /// first square, a 3-of-3 product share as in [`trunc`](Self::trunc): the first step
    /// must truncate, and its square costs no round.
    ///
    /// With `factor` (shares of a 0/1 value `β`; D passes an empty slice), the first square
    /// is `β·(y_0 + c_0)²`: `β − b` is opened beside `y_0 + c_0 − a` and the product is
    /// linear in dealt shares of `a`, `a²`, `b`, `a·b`, `a²·b` (D sends two words more per
    /// element, the compute parties one fewer than a product before the chain would take).
    #[allow(clippy::too_many_arguments)]
    pub fn square_chain<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        factor: Option<&[u64]>,
        steps: &[(u64, u32)],
        out: &mut [u64],
        buf: &mut [u64],
        helper: Helper<'_>,
    ) -> Result<()> {
        let n = out.len();
        let given = !matches!(helper, Helper::None);
        let x_ok = match (self.role, &helper) {
            (Role::D, Helper::Send(part)) => part.len() == n,
            (Role::D, _) => true,
            _ => x.len() == n && factor.is_none_or(|f| f.len() == n),
        };
        if !x_ok
            || steps.is_empty()
            || steps.iter().any(|s| s.1 > 62)
            || (given && (steps[0].1 == 0 || factor.is_some()))
        {
            return Err(Error::ShapeMismatch);
        }
        let [y, z, a, a2, msg, rcv, d, corr, fb, fm, fr] = carve(buf, [n, n, n, n, n, n, n, 4 * n, n, 2 * n, 2 * n]);
        let is_a = self.is_a();
        // `chained`: the next square's operand is known as public part plus mask (no
        // opening); with a given first square, there is no operand at all.
        let mut chained = given;
        if self.role != Role::D {
            y.copy_from_slice(x);
        }
        for (i, &(c, s)) in steps.iter().enumerate() {
            let next = steps.get(i + 1).map(|st| st.0);
            let words = if next.is_some() { 4 * n } else { 2 * n };
            if self.role == Role::D {
                if let (0, Helper::Send(part)) = (i, &helper) {
                    send_words(ch, self.a(), part)?;
                    send_words(ch, self.b(), part)?;
                }
                if !chained {
                    self.prg.fill(a);
                    self.prg.fill(a2);
                    let ab = &mut msg[..n];
                    self.prg_b().fill(ab);
                    for e in 0..n {
                        a[e] = a[e].wrapping_add(ab[e]); // the true mask
                        a2[e] = a[e].wrapping_mul(a[e]).wrapping_sub(a2[e]);
                    }
                    send_words(ch, self.b(), a2)?;
                    if let (0, Some(_)) = (i, factor) {
                        // b (A's and B's parts), then B's parts of a·b and a²·b
                        let (cab, ca2b) = corr.split_at_mut(n);
                        let ca2b = &mut ca2b[..n];
                        self.prg.fill(fb);
                        self.prg.fill(cab);
                        self.prg.fill(ca2b);
                        self.prg_b().fill(&mut fr[..n]);
                        for e in 0..n {
                            let b = fb[e].wrapping_add(fr[e]);
                            let ab = a[e].wrapping_mul(b);
                            cab[e] = ab.wrapping_sub(cab[e]);
                            ca2b[e] = ab.wrapping_mul(a[e]).wrapping_sub(ca2b[e]);
                        }
                        send_words(ch, self.b(), cab)?;
                        send_words(ch, self.b(), ca2b)?;
                    }
                }
                if s == 0 {
                    chained = false;
                    continue;
                }
                self.prg.fill(a);
                self.prg_b().fill(msg);
                self.prg.fill(&mut corr[..words]);
                let (hm, rest) = corr.split_at_mut(2 * n);
                let (hi, m) = hm.split_at_mut(n);
                for e in 0..n {
                    let r = a[e].wrapping_add(msg[e]);
                    let (rh, rm) = (r >> s, r >> 63);
                    hi[e] = rh.wrapping_sub(hi[e]);
                    m[e] = rm.wrapping_sub(m[e]);
                    if next.is_some() {
                        rest[e] = rh.wrapping_mul(rh).wrapping_sub(rest[e]);
                        rest[n + e] = rh.wrapping_mul(rm).wrapping_sub(rest[n + e]);
                    }
                }
                send_words(ch, self.b(), &corr[..words])?;
                chained = next.is_some();
                continue;
            }
            // The square of y + c (given: y is the square).
            if given && i == 0 {
                z.copy_from_slice(y);
            } else if let (0, Some(f)) = (i, factor) {
                // β·(y + c)²: open y + c − a and β − b together.
                self.prg.fill(a);
                if self.role == Role::A {
                    self.prg.fill(a2);
                }
                self.prg.fill(fb);
                let (cab, ca2b) = corr.split_at_mut(n);
                let ca2b = &mut ca2b[..n];
                if self.role == Role::A {
                    self.prg.fill(cab);
                    self.prg.fill(ca2b);
                }
                for e in 0..n {
                    fm[e] = y[e].wrapping_add(c.wrapping_mul(is_a)).wrapping_sub(a[e]);
                    fm[n + e] = f[e].wrapping_sub(fb[e]);
                }
                self.exchange(ch, fm, fr)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), a2)?;
                    recv_words(ch, self.d(), cab)?;
                    recv_words(ch, self.d(), ca2b)?;
                }
                let (cab, ca2b) = (&*cab, &*ca2b);
                for e in 0..n {
                    let de = fm[e].wrapping_add(fr[e]);
                    let be = fm[n + e].wrapping_add(fr[n + e]);
                    // (E + b)(D² + 2D·a + a²) = E·D² + 2E·D·a + E·a² + D²·b + 2D·ab + a²b
                    let d2 = de.wrapping_mul(de);
                    z[e] = is_a
                        .wrapping_mul(be.wrapping_mul(d2))
                        .wrapping_add(be.wrapping_mul(de).wrapping_mul(2).wrapping_mul(a[e]))
                        .wrapping_add(be.wrapping_mul(a2[e]))
                        .wrapping_add(d2.wrapping_mul(fb[e]))
                        .wrapping_add(de.wrapping_mul(2).wrapping_mul(cab[e]))
                        .wrapping_add(ca2b[e]);
                }
            } else if !chained {
                self.prg.fill(a);
                if self.role == Role::A {
                    self.prg.fill(a2);
                }
                for e in 0..n {
                    msg[e] = y[e].wrapping_add(c.wrapping_mul(is_a)).wrapping_sub(a[e]);
                }
                self.exchange(ch, msg, rcv)?;
                if self.role == Role::B {
                    recv_words(ch, self.d(), a2)?;
                }
                for e in 0..n {
                    d[e] = msg[e].wrapping_add(rcv[e]);
                }
            }
            if i != 0 || !(given || factor.is_some()) {
                for e in 0..n {
                    let de = d[e];
                    z[e] = a2[e]
                        .wrapping_add(de.wrapping_mul(a[e]).wrapping_mul(2))
                        .wrapping_add(is_a.wrapping_mul(de.wrapping_mul(de)));
                }
            }
            if s == 0 {
                y.copy_from_slice(z);
                chained = false;
                continue;
            }
            // Its truncation: open W = z + 2^62 + r.
            self.prg.fill(a);
            if self.role == Role::A {
                self.prg.fill(&mut corr[..words]);
            }
            for e in 0..n {
                msg[e] = z[e].wrapping_add(a[e]).wrapping_add(RANGE_OFFSET.wrapping_mul(is_a));
            }
            self.exchange(ch, msg, rcv)?;
            if given && i == 0 {
                // the helper's third part of the product, in the same round
                recv_words(ch, self.d(), a2)?;
                ring::add_assign(rcv, a2)?;
            }
            if self.role == Role::B {
                recv_words(ch, self.d(), &mut corr[..words])?;
            }
            let top = 1u64 << (64 - s);
            let off = RANGE_OFFSET >> s;
            let (hm, rest) = corr.split_at(2 * n);
            let (hi, m) = hm.split_at(n);
            for e in 0..n {
                let w = msg[e].wrapping_add(rcv[e]);
                let k = (1 - (w >> 63)).wrapping_mul(top);
                let public = (w >> s).wrapping_sub(off);
                y[e] = is_a.wrapping_mul(public).wrapping_sub(hi[e]).wrapping_add(m[e].wrapping_mul(k));
                if let Some(c2) = next {
                    d[e] = public.wrapping_add(c2);
                    a[e] = m[e].wrapping_mul(k).wrapping_sub(hi[e]);
                    a2[e] = rest[e]
                        .wrapping_sub(k.wrapping_mul(2).wrapping_mul(rest[n + e]))
                        .wrapping_add(k.wrapping_mul(k).wrapping_mul(m[e]));
                }
            }
            chained = next.is_some();
        }
        if self.role == Role::D {
            out.fill(0);
        } else {
            out.copy_from_slice(y);
        }
        Ok(())
    }

    // ---- a product of truncated products ----------------------------------------------

    /// Scratch words for [`mul_trunc_scaled`](Self::mul_trunc_scaled) with `m = rows + n`.
    pub const fn mul_trunc_scaled_scratch(m: usize, n: usize) -> usize {
        m + max(Self::mul_scratch(m), Self::trunc_scaled_scratch(m, n))
    }

    /// Scratch words for [`trunc_scaled`](Self::trunc_scaled) with `m = rows + n`.
    pub const fn trunc_scaled_scratch(m: usize, n: usize) -> usize {
        n + max(7 * m + 4 * n, Self::trunc_scratch(n))
    }

    /// `z = trunc(x ⊙ y, s1)` over `m = rows + n` elements, then
    /// `out[e] = trunc((z[e / cols] + c) · z[rows + e], s2)` for `e < n = rows·cols`:
    /// a Beaver product, then [`trunc_scaled`](Self::trunc_scaled). 3 rounds instead of 4;
    /// A and B send `24m + 8n` bytes (the second product's `16n` are saved), D sends
    /// `24m + 48n` (`24n` more than step by step).
    #[allow(clippy::too_many_arguments)]
    pub fn mul_trunc_scaled<C: Channel>(
        &mut self,
        ch: &mut C,
        x: &[u64],
        y: &[u64],
        (rows, cols): (usize, usize),
        (s1, c, s2): (u32, u64, u32),
        out: &mut [u64],
        buf: &mut [u64],
    ) -> Result<()> {
        let m = rows + out.len();
        if x.len() != m || y.len() != m || buf.len() < m {
            return Err(Error::ShapeMismatch);
        }
        let (z, rest) = buf.split_at_mut(m);
        self.mul(ch, x, y, z, rest)?;
        self.trunc_scaled(ch, z, (rows, cols), (s1, c, s2), out, rest, Helper::None)
    }

    /// With `t = trunc(z, s1)` over `m = rows + n` elements,
    /// `out[e] = trunc((t[e / cols] + c) · t[rows + e], s2)` for `e < n = rows·cols`, in
    /// the rounds of two truncations (3PC's helper part as in [`trunc`](Self::trunc)).
    ///
    /// The first truncation opens `W = z + 2^62 + r`, after which each output is a public
    /// part plus a mask, `t = d + a` with `d = (W ≫ s1) − 2^(62−s1)` and
    /// `a = k·msb(r) − (r ≫ s1)`, `k = (1 − msb W)·2^(64−s1)` (see
    /// [`square_chain`](Self::square_chain)). The product of two such values,
    /// `(d_l + c + a_l)(d_w + a_w)`, is linear in dealt shares of the masks' four cross
    /// products `msb_l·msb_w`, `msb_l·h_w`, `h_l·msb_w`, `h_l·h_w` (`h = r ≫ s1`), so it
    /// needs no opening. D sends `16m + 48n` bytes, A and B `8m + 8n`.
    #[allow(clippy::too_many_arguments)]
    pub fn trunc_scaled<C: Channel>(
        &mut self,
        ch: &mut C,
        z: &[u64],
        (rows, cols): (usize, usize),
        (s1, c, s2): (u32, u64, u32),
        out: &mut [u64],
        buf: &mut [u64],
        helper: Helper<'_>,
    ) -> Result<()> {
        let n = out.len();
        let m = rows + n;
        let own = match (self.role, &helper) {
            (Role::D, Helper::Send(part)) => part.len() == m,
            (Role::D, _) => true,
            _ => z.len() == m,
        };
        if rows.checked_mul(cols) != Some(n) || !own || s1 == 0 || s1 > 62 || s2 == 0 || s2 > 62 {
            return Err(Error::ShapeMismatch);
        }
        if buf.len() < Self::trunc_scaled_scratch(m, n) {
            return Err(Error::ShapeMismatch);
        }
        let [pr, rest] = carve(buf, [n, buf.len() - n]);
        let top = 1u64 << (64 - s1);
        let off = RANGE_OFFSET >> s1;
        if self.role == Role::D {
            if let Helper::Send(part) = helper {
                send_words(ch, self.a(), part)?;
                send_words(ch, self.b(), part)?;
            }
            let [ra, rb, hi, mb, corr, cross] = carve(rest, [m, m, m, m, 2 * m, 4 * n]);
            self.prg.fill(ra);
            self.prg_b().fill(rb);
            self.prg.fill(hi);
            self.prg.fill(mb);
            self.prg.fill(cross);
            let (ch_hi, ch_m) = corr.split_at_mut(m);
            for e in 0..m {
                let r = ra[e].wrapping_add(rb[e]);
                // keep the true values in ra (high part) and rb (msb) for the cross products
                ra[e] = r >> s1;
                rb[e] = r >> 63;
                ch_hi[e] = ra[e].wrapping_sub(hi[e]);
                ch_m[e] = rb[e].wrapping_sub(mb[e]);
            }
            let (mm, rest4) = cross.split_at_mut(n);
            let (mh, rest4) = rest4.split_at_mut(n);
            let (hm, hh) = rest4.split_at_mut(n);
            for e in 0..n {
                let (l, w) = (e / cols, rows + e);
                mm[e] = rb[l].wrapping_mul(rb[w]).wrapping_sub(mm[e]);
                mh[e] = rb[l].wrapping_mul(ra[w]).wrapping_sub(mh[e]);
                hm[e] = ra[l].wrapping_mul(rb[w]).wrapping_sub(hm[e]);
                hh[e] = ra[l].wrapping_mul(ra[w]).wrapping_sub(hh[e]);
            }
            send_words(ch, self.b(), corr)?;
            send_words(ch, self.b(), cross)?;
            pr.fill(0);
            return self.trunc(ch, pr, s2, out, rest, Helper::None);
        }
        let [r, hm, cross, msg, rcv, extra] = carve(rest, [m, 2 * m, 4 * n, m, m, m]);
        self.prg.fill(r);
        if self.role == Role::A {
            self.prg.fill(hm);
            self.prg.fill(cross);
        }
        let is_a = self.is_a();
        for e in 0..m {
            msg[e] = z[e].wrapping_add(r[e]).wrapping_add(RANGE_OFFSET.wrapping_mul(is_a));
        }
        self.exchange(ch, msg, rcv)?;
        if matches!(helper, Helper::Receive) {
            recv_words(ch, self.d(), extra)?;
            ring::add_assign(rcv, extra)?;
        }
        if self.role == Role::B {
            recv_words(ch, self.d(), hm)?;
            recv_words(ch, self.d(), cross)?;
        }
        // Public parts d (in msg) and the wrap factors k (in rcv); the masks' shares
        // a = m·k − h stay implicit.
        for e in 0..m {
            let w = msg[e].wrapping_add(rcv[e]);
            msg[e] = (w >> s1).wrapping_sub(off);
            rcv[e] = (1 - (w >> 63)).wrapping_mul(top);
        }
        let (hi, mb) = hm.split_at(m);
        let (mm, rest4) = cross.split_at(n);
        let (mh, rest4) = rest4.split_at(n);
        let (hmx, hh) = rest4.split_at(n);
        for e in 0..n {
            let (l, w) = (e / cols, rows + e);
            let (dl, dw) = (msg[l].wrapping_add(c), msg[w]);
            let (kl, kw) = (rcv[l], rcv[w]);
            let al = mb[l].wrapping_mul(kl).wrapping_sub(hi[l]);
            let aw = mb[w].wrapping_mul(kw).wrapping_sub(hi[w]);
            // a_l·a_w = k_l·k_w·msb_l·msb_w − k_l·msb_l·h_w − k_w·h_l·msb_w + h_l·h_w
            let aa = kl
                .wrapping_mul(kw)
                .wrapping_mul(mm[e])
                .wrapping_sub(kl.wrapping_mul(mh[e]))
                .wrapping_sub(kw.wrapping_mul(hmx[e]))
                .wrapping_add(hh[e]);
            pr[e] = is_a
                .wrapping_mul(dl.wrapping_mul(dw))
                .wrapping_add(dl.wrapping_mul(aw))
                .wrapping_add(dw.wrapping_mul(al))
                .wrapping_add(aa);
        }
        self.trunc(ch, pr, s2, out, rest, Helper::None)
    }

    // ---- a polynomial from chained powers ----------------------------------------------

    /// Scratch words for [`poly_chain`](Self::poly_chain) of `n` elements.
    pub const fn poly_chain_scratch(n: usize) -> usize {
        // per power d, k, h, m; a1; products, openings and corrections of the widest level;
        // the sum; the final truncation's
        4 * n * (POLY_DEG + 1) + n + 4 * n + 8 * n + 20 * n + n + Self::trunc_scratch(n)
    }

    /// `out = trunc(c_0·w + Σ_{1≤i≤deg} c_i·u^i, shift)` (`deg = coeffs.len() − 1 ≤ 8`, the
    /// `c_i` public), the powers each truncated by `fpow` bits and made in levels: `u²`, then
    /// `u³ = u²·u` and `u⁴ = u²·u²`, then `u⁵ = u⁴·u`, `u⁶ = (u³)²`, `u⁷ = u⁴·u³` and
    /// `u⁸ = (u⁴)²` (a square needs half the dealt words of another product).
    ///
    /// Every power after a truncation is a public part plus a mask whose pieces D dealt
    /// (`t = d + a`, `a = k·msb(r) − (r ≫ s)`, see [`square_chain`](Self::square_chain)),
    /// and `u` itself is opened once under a dealt mask; the product of two such values is
    /// linear in dealt shares of the masks' products (1, 2 or 4 words), so a level costs
    /// only its truncations' opening: 2PC-Dealer (`helper` [`Helper::None`]) 1 + 3 + 1
    /// rounds for degree 8 (step by step 2 + 2 + 2 + 1). With a helper (3PC), `sq` is this
    /// party's 3-of-3 share of `u²` and D's part comes with [`Helper::Send`]: `u`'s opening
    /// shares the first truncation's round, 3 + 1 rounds. A and B send `8n` per opened
    /// value and truncation (72n in all at degree 8), D `8n·(3 + 8 + 18 + 2)`.
    #[allow(clippy::too_many_arguments)]
    pub fn poly_chain<C: Channel>(
        &mut self,
        ch: &mut C,
        u: &[u64],
        sq: &[u64],
        w: &[u64],
        coeffs: &[u64],
        (fpow, shift): (u32, u32),
        out: &mut [u64],
        buf: &mut [u64],
        helper: Helper<'_>,
    ) -> Result<()> {
        let n = out.len();
        let deg = coeffs.len().wrapping_sub(1);
        let given = !matches!(helper, Helper::None);
        let inputs = match (self.role, &helper) {
            (Role::D, Helper::Send(part)) => part.len() == n,
            (Role::D, _) => true,
            _ => u.len() == n && w.len() == n && (!given || sq.len() == n),
        };
        if !inputs || !(2..=POLY_DEG).contains(&deg) || !(1..=62).contains(&fpow) || !(1..=62).contains(&shift) {
            return Err(Error::ShapeMismatch);
        }
        if buf.len() < Self::poly_chain_scratch(n) {
            return Err(Error::ShapeMismatch);
        }
        let (pw, rest) = buf.split_at_mut(4 * n * (POLY_DEG + 1));
        let [a1, prod, msg, rcv, corr, acc, tbuf] =
            carve(rest, [n, 4 * n, 4 * n, 4 * n, 20 * n, n, Self::trunc_scratch(n)]);
        // Power i's public part, wrap factor, and its mask's two dealt pieces (A, B: shares;
        // D: the true values).
        let at = |i: usize, f: usize| (4 * i + f) * n;
        let is_a = self.is_a();
        let top = 1u64 << (64 - fpow);
        let off = RANGE_OFFSET >> fpow;
        let is_d = self.role == Role::D;
        // u's mask: A's share from its seed, B's from its own (D holds both seeds).
        if is_d {
            self.prg.fill(a1);
            let pb = self.prg_b();
            pb.fill(&mut prod[..n]);
            for e in 0..n {
                a1[e] = a1[e].wrapping_add(prod[e]);
            }
        } else {
            self.prg.fill(a1);
        }
        if !given && !is_d {
            for e in 0..n {
                msg[e] = u[e].wrapping_sub(a1[e]);
            }
            self.exchange(ch, &msg[..n], &mut rcv[..n])?;
            for e in 0..n {
                pw[at(1, 0) + e] = msg[e].wrapping_add(rcv[e]);
            }
        }
        let levels: [&[(usize, usize, usize)]; 3] =
            [&[(1, 1, 2)], &[(2, 1, 3), (2, 2, 4)], &[(4, 1, 5), (3, 3, 6), (4, 3, 7), (4, 4, 8)]];
        for (li, level) in levels.iter().enumerate() {
            let prods: &[(usize, usize, usize)] = {
                let keep = level.iter().take_while(|x| x.2 <= deg).count();
                &level[..keep]
            };
            if prods.is_empty() {
                break;
            }
            let np = prods.len();
            // The masks' products, as words per element: O·O 1 (a1²), T·O 2 (m·a1, h·a1),
            // T·T 4 (mm, mh, hm, hh) or, squared, 2 (mh, hh).
            let words = |i: usize, j: usize| match (i, j) {
                (1, 1) => 1,
                (_, 1) => 2,
                _ if i == j => 2,
                _ => 4,
            };
            let total: usize = prods.iter().map(|&(i, j, _)| words(i, j)).sum();
            let (cross, trc) = corr.split_at_mut(total * n);
            let trc = &mut trc[..2 * np * n];
            let first_given = given && li == 0;
            if is_d {
                if let (true, Helper::Send(part)) = (first_given, &helper) {
                    send_words(ch, self.a(), part)?;
                    send_words(ch, self.b(), part)?;
                }
                if !first_given {
                    // A's shares of the masks' products; B's corrections below.
                    self.prg.fill(cross);
                    let mut o = 0;
                    for &(i, j, _) in prods {
                        let wd = words(i, j);
                        let (hi, mi) = (&pw[at(i, 2)..at(i, 2) + n], &pw[at(i, 3)..at(i, 3) + n]);
                        let (hj, mj) = (&pw[at(j, 2)..at(j, 2) + n], &pw[at(j, 3)..at(j, 3) + n]);
                        let c = &mut cross[o * n..(o + wd) * n];
                        let (c0, c) = c.split_at_mut(n);
                        match (i, j) {
                            (1, 1) => {
                                for e in 0..n {
                                    c0[e] = a1[e].wrapping_mul(a1[e]).wrapping_sub(c0[e]);
                                }
                            }
                            (_, 1) => {
                                for e in 0..n {
                                    c0[e] = mi[e].wrapping_mul(a1[e]).wrapping_sub(c0[e]);
                                    c[e] = hi[e].wrapping_mul(a1[e]).wrapping_sub(c[e]);
                                }
                            }
                            _ if i == j => {
                                for e in 0..n {
                                    c0[e] = mi[e].wrapping_mul(hi[e]).wrapping_sub(c0[e]);
                                    c[e] = hi[e].wrapping_mul(hi[e]).wrapping_sub(c[e]);
                                }
                            }
                            _ => {
                                let (c1, c) = c.split_at_mut(n);
                                let (c2, c3) = c.split_at_mut(n);
                                for e in 0..n {
                                    c0[e] = mi[e].wrapping_mul(mj[e]).wrapping_sub(c0[e]);
                                    c1[e] = mi[e].wrapping_mul(hj[e]).wrapping_sub(c1[e]);
                                    c2[e] = hi[e].wrapping_mul(mj[e]).wrapping_sub(c2[e]);
                                    c3[e] = hi[e].wrapping_mul(hj[e]).wrapping_sub(c3[e]);
                                }
                            }
                        }
                        o += wd;
                    }
                    send_words(ch, self.b(), cross)?;
                }
                // The truncations' masks r and the pieces of r ≫ s and msb(r).
                let (ra, rb) = (&mut msg[..np * n], &mut rcv[..np * n]);
                self.prg.fill(ra);
                self.prg_b().fill(rb);
                self.prg.fill(trc);
                for (t, &(_, _, k)) in prods.iter().enumerate() {
                    let (ra, rb) = (&ra[t * n..(t + 1) * n], &rb[t * n..(t + 1) * n]);
                    let (hs, ms) = pw[at(k, 2)..at(k, 2) + 2 * n].split_at_mut(n);
                    let (ch, cm) = trc[2 * t * n..2 * (t + 1) * n].split_at_mut(n);
                    for e in 0..n {
                        let r = ra[e].wrapping_add(rb[e]);
                        let (h, m) = (r >> fpow, r >> 63);
                        hs[e] = h;
                        ms[e] = m;
                        ch[e] = h.wrapping_sub(ch[e]);
                        cm[e] = m.wrapping_sub(cm[e]);
                    }
                }
                send_words(ch, self.b(), trc)?;
                continue;
            }
            // A and B: the products' shares.
            if first_given {
                prod[..n].copy_from_slice(sq);
            } else {
                if self.role == Role::A {
                    self.prg.fill(cross);
                } else {
                    recv_words(ch, self.d(), cross)?;
                }
                let mut o = 0;
                for (t, &(i, j, _)) in prods.iter().enumerate() {
                    let wd = words(i, j);
                    let sl = |x: usize, f: usize| &pw[at(x, f)..at(x, f) + n];
                    // mask shares: O (u's): a1; T (a truncation's): m·k − h
                    let (di, dj, ki, kj) = (sl(i, 0), sl(j, 0), sl(i, 1), sl(j, 1));
                    let (mi, hi) = (sl(i, 3), sl(i, 2));
                    let (mj, hj) = (sl(j, 3), sl(j, 2));
                    let c = &cross[o * n..(o + wd) * n];
                    let out_t = &mut prod[t * n..(t + 1) * n];
                    let am = |m: u64, k: u64, h: u64| m.wrapping_mul(k).wrapping_sub(h);
                    match (i, j) {
                        (1, 1) => {
                            for e in 0..n {
                                let d = di[e];
                                out_t[e] = is_a
                                    .wrapping_mul(d.wrapping_mul(d))
                                    .wrapping_add(d.wrapping_mul(a1[e]).wrapping_mul(2))
                                    .wrapping_add(c[e]);
                            }
                        }
                        (_, 1) => {
                            for e in 0..n {
                                let ai = am(mi[e], ki[e], hi[e]);
                                let aa = ki[e].wrapping_mul(c[e]).wrapping_sub(c[n + e]);
                                out_t[e] = is_a
                                    .wrapping_mul(di[e].wrapping_mul(dj[e]))
                                    .wrapping_add(di[e].wrapping_mul(a1[e]))
                                    .wrapping_add(dj[e].wrapping_mul(ai))
                                    .wrapping_add(aa);
                            }
                        }
                        _ if i == j => {
                            for e in 0..n {
                                let (d, k) = (di[e], ki[e]);
                                let ai = am(mi[e], k, hi[e]);
                                let aa = k
                                    .wrapping_mul(k)
                                    .wrapping_mul(mi[e])
                                    .wrapping_sub(k.wrapping_mul(2).wrapping_mul(c[e]))
                                    .wrapping_add(c[n + e]);
                                out_t[e] = is_a
                                    .wrapping_mul(d.wrapping_mul(d))
                                    .wrapping_add(d.wrapping_mul(ai).wrapping_mul(2))
                                    .wrapping_add(aa);
                            }
                        }
                        _ => {
                            for e in 0..n {
                                let (k1, k2) = (ki[e], kj[e]);
                                let aa = k1
                                    .wrapping_mul(k2)
                                    .wrapping_mul(c[e])
                                    .wrapping_sub(k1.wrapping_mul(c[n + e]))
                                    .wrapping_sub(k2.wrapping_mul(c[2 * n + e]))
                                    .wrapping_add(c[3 * n + e]);
                                out_t[e] = is_a
                                    .wrapping_mul(di[e].wrapping_mul(dj[e]))
                                    .wrapping_add(di[e].wrapping_mul(am(mj[e], k2, hj[e])))
                                    .wrapping_add(dj[e].wrapping_mul(am(mi[e], k1, hi[e])))
                                    .wrapping_add(aa);
                            }
                        }
                    }
                    o += wd;
                }
            }
            // Their truncations' opening (with a helper: u's opening beside it).
            let m_words = np * n + if first_given { n } else { 0 };
            {
                let r = &mut rcv[..np * n]; // A, B: their share of each r
                self.prg.fill(r);
                for e in 0..np * n {
                    msg[e] = prod[e].wrapping_add(r[e]).wrapping_add(RANGE_OFFSET.wrapping_mul(is_a));
                }
            }
            if first_given {
                for e in 0..n {
                    msg[np * n + e] = u[e].wrapping_sub(a1[e]);
                }
            }
            if self.role == Role::A {
                self.prg.fill(trc);
            }
            let (mine, theirs) = (&msg[..m_words], &mut rcv[..m_words]);
            self.exchange(ch, mine, theirs)?;
            if first_given {
                // D's third part of the product, in the same round
                recv_words(ch, self.d(), &mut acc[..n])?;
                ring::add_assign(&mut rcv[..n], &acc[..n])?;
                for e in 0..n {
                    pw[at(1, 0) + e] = msg[np * n + e].wrapping_add(rcv[np * n + e]);
                }
            }
            if self.role == Role::B {
                recv_words(ch, self.d(), trc)?;
            }
            for (t, &(_, _, k)) in prods.iter().enumerate() {
                let (mine, theirs) = (&msg[t * n..(t + 1) * n], &rcv[t * n..(t + 1) * n]);
                let slot = &mut pw[at(k, 0)..at(k, 0) + 4 * n];
                let (d, rest) = slot.split_at_mut(n);
                let (kk, hm) = rest.split_at_mut(n);
                for e in 0..n {
                    let wv = mine[e].wrapping_add(theirs[e]);
                    d[e] = (wv >> fpow).wrapping_sub(off);
                    kk[e] = (1 - (wv >> 63)).wrapping_mul(top);
                }
                hm.copy_from_slice(&trc[2 * t * n..2 * (t + 1) * n]);
            }
        }
        // c_0·w + Σ c_i·u^i, each power's shares is_a·d + m·k − h (u's: is_a·d + a1).
        if is_d {
            acc.fill(0);
        } else {
            for (a, wv) in acc.iter_mut().zip(w) {
                *a = coeffs[0].wrapping_mul(*wv);
            }
            for (i, &c) in coeffs.iter().enumerate().skip(1) {
                let d = &pw[at(i, 0)..at(i, 0) + n];
                if i == 1 {
                    for e in 0..n {
                        let share = is_a.wrapping_mul(d[e]).wrapping_add(a1[e]);
                        acc[e] = acc[e].wrapping_add(c.wrapping_mul(share));
                    }
                } else {
                    let (k, h, m) =
                        (&pw[at(i, 1)..at(i, 1) + n], &pw[at(i, 2)..at(i, 2) + n], &pw[at(i, 3)..at(i, 3) + n]);
                    for e in 0..n {
                        let share = is_a.wrapping_mul(d[e]).wrapping_add(m[e].wrapping_mul(k[e])).wrapping_sub(h[e]);
                        acc[e] = acc[e].wrapping_add(c.wrapping_mul(share));
                    }
                }
            }
        }
        self.trunc(ch, acc, shift, out, tbuf, Helper::None)
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
                self.prg.fill(ra);
                self.prg_b().fill(rb);
                self.prg.fill(hi);
                self.prg.fill(m);
                let (ch_hi, ch_m) = corr.split_at_mut(n);
                for e in 0..n {
                    let r = ra[e].wrapping_add(rb[e]);
                    ch_hi[e] = (r >> shift).wrapping_sub(hi[e]);
                    ch_m[e] = (r >> 63).wrapping_sub(m[e]);
                }
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
                let top = if shift == 0 { 0 } else { 1u64 << (64 - shift) };
                let off = RANGE_OFFSET >> shift;
                let is_a = self.is_a();
                for e in 0..n {
                    let c = rcv[e];
                    let not_msb_c = 1 - (c >> 63);
                    let mut v = m[e].wrapping_mul(not_msb_c).wrapping_mul(top).wrapping_sub(hi[e]);
                    v = v.wrapping_add(is_a.wrapping_mul((c >> shift).wrapping_sub(off)));
                    out[e] = v;
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
            self.prg.fill(ra);
            self.prg_b().fill(rb);
            self.prg.fill(hi);
            self.prg.fill(mm);
            let (ch_hi, ch_m) = hm.split_at_mut(nt);
            for e in 0..nt {
                let rv = ra[e].wrapping_add(rb[e]);
                ch_hi[e] = (rv >> shift).wrapping_sub(hi[e]);
                ch_m[e] = (rv >> 63).wrapping_sub(mm[e]);
            }
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
        let top = if shift == 0 { 0 } else { 1u64 << (64 - shift) };
        let off = RANGE_OFFSET >> shift;
        for e in 0..nt {
            let c = rcv[e];
            let v = m[e].wrapping_mul(1 - (c >> 63)).wrapping_mul(top).wrapping_sub(hi[e]);
            t_out[e] = v.wrapping_add(is_a.wrapping_mul((c >> shift).wrapping_sub(off)));
        }
        self.ltz_finish(ch, &rcv[nt..], offsets, c_out, rest)
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

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}
