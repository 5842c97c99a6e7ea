//! The engine's chained products: a truncation's output is a public part plus a mask
//! whose pieces D dealt, so products of such values need no opening (`square_chain`,
//! `trunc_scaled` / `mul_trunc_scaled`, `poly_chain`). See the parent module for the
//! engine and its costs.

use crate::channel::{Channel, recv_words, send_words};
use crate::error::{Error, Result};
use crate::ring;
use crate::scratch::carve;

use super::super::RANGE_OFFSET;
use super::{Assist, Helper, POLY_DEG, Role, max};

impl Assist {
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
            // the true r ≫ s1 and msb(r) stay in ra and rb for the cross products
            self.deal_trunc(s1, ra, rb, hi, mb, corr);
            self.prg.fill(cross);
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
}
