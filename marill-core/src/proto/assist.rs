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
//! corrections never lengthen the critical path.
//!
//! | op | rounds | bytes A / B send | bytes D sends (to B) |
//! |---|---|---|---|
//! | `mul` n | 1 | 16n / 16n | 8n |
//! | `square` n | 1 | 8n / 8n | 8n |
//! | `matmul` m×n×k (× count) | 1 | 8(mn+nk)·count each | 8mk·count |
//! | `trunc` n | 1 | 8n each | 16n |
//! | `and` L words | 1 | 16L each | 8L |
//! | `b2a` n bits | 1 | 8⌈n/64⌉ each | 8n |
//! | `ltz` n | 6 | 8n + 8·53⌈n/64⌉ each | 8·(4n + ⌈n/64⌉) + 8·26⌈n/64⌉ + 8n |
//! | `ltz` n × k offsets | 6 | 8n + 8·53⌈kn/64⌉ each | 8·(4n + ⌈n/64⌉) + 8·26⌈kn/64⌉ + 8kn |
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
//! `[c'_j = r'_j] = T_j[c'_j − 1] ⊕ T_j[c'_j]` are local. A 4-level tree of ANDs
//! (`lt = lt_hi ⊕ eq_hi·lt_lo`, `eq = eq_hi·eq_lo`, 26 ANDs, the lowest group's `eq` is
//! never needed) gives the borrow; one more round converts the bit to arithmetic shares.
//! Rounds: 1 (open) + 4 (tree) + 1 (b2a) = 6. Comparing one `x` against several public
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
        // r, c-exchange (3n); tables (4n) + msb(r) (wn); lt, eq planes (32w); tree operands
        // and results (3·15w); the result bits (w); the largest sub-op scratch.
        let sub = max(max(Self::and_scratch(15 * w), Self::b2a_scratch(m)), 4 * n + wn);
        3 * n + 4 * n + wn + 32 * w + 45 * w + w + sub
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
        let wn = bit_words(n);
        let w = bit_words(m);
        let fixed = 7 * n + wn + 78 * w;
        let [r, msg, rcv, tables, r63, lt, eq, ops, bits, sub] =
            carve(buf, [n, n, n, 4 * n, wn, 16 * w, 16 * w, 45 * w, w, Self::ltz_scratch(n, k) - fixed]);
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
        // 4. the tree: groups 16, 8, 4, 2 → halves.
        borrow_tree(lt, eq, ops, w, |x, y, z| self.and(ch, x, y, z, sub))?;
        // 5. msb(x − θ) = msb(c − θ) ⊕ msb(r) ⊕ borrow.
        for i in 0..w {
            bits[i] ^= lt[i];
        }
        // 6. to arithmetic.
        self.b2a(ch, bits, out, sub)
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
