//! The `Protocol` seam between the MPC settings and everything above them.
//!
//! Every method works on whole slices, so one call is one set of rounds for all of its
//! elements. A shared vector of `n` elements is `n · PLANES` words in the layout of
//! [`share`](crate::share). Every method checks all lengths (and asks its scratch for
//! memory) **before** sending anything: a local mistake is an error at this party and
//! never leaves the parties out of step. The program every party runs must be the same
//! sequence of calls with the same public arguments (shapes, shifts, owners) — the
//! protocols are data-oblivious, and the seeded generators advance in lockstep.
//!
//! Implementations: [`dealer::Dealer2pc`] (2PC with a dealer, additive shares) and
//! [`rep3::Rep3`] (3PC replicated, ABY3). [`assist`] is the 2-of-2 engine with a helper
//! third party that both use for truncation, comparison and boolean circuits.
//!
//! Boolean shares ([`Protocol::and_bits`], [`Protocol::b2a`]) are packed 2-of-2 XOR
//! shares between parties 0 and 1 in every setting; party 2 holds zeros and deals.

use crate::channel::PartyId;
use crate::error::{Result, ensure_shape};
use crate::ring::{self, MatDims};

pub mod assist;
pub mod dealer;
pub mod rep3;
pub mod setup;

/// Offset added before truncation and comparison so that `|x| < 2^62` maps into `[0, 2^63)`.
pub const RANGE_OFFSET: u64 = 1 << 62;

/// `out[j]` (`len` words, plane-major) `= consts[j] + Σ_m coef[j·k + m]·bits[m]` over shares
/// `bits` (`planes` planes of `k` offset-major blocks of `n = len / planes` elements), the
/// constants added on `public` (the plane that absorbs public values; none: not added).
/// Local.
pub fn map_bits(
    planes: usize,
    public: Option<usize>,
    bits: &[u64],
    coef: &[u64],
    consts: &[u64],
    out: &mut [u64],
) -> Result<()> {
    let maps = consts.len();
    ensure_shape(planes > 0 && maps > 0 && out.len().is_multiple_of(maps))?;
    let len = out.len() / maps;
    ensure_shape(len.is_multiple_of(planes) && coef.len().is_multiple_of(maps))?;
    let (n, k) = (len / planes, coef.len() / maps);
    ensure_shape(bits.len() == k * len)?;
    for (j, o) in out.chunks_exact_mut(len).enumerate() {
        o.fill(0);
        for q in 0..planes {
            let dst = &mut o[q * n..(q + 1) * n];
            for m in 0..k {
                let c = coef[j * k + m];
                let src = &bits[q * k * n + m * n..q * k * n + (m + 1) * n];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = d.wrapping_add(s.wrapping_mul(c));
                }
            }
        }
        if let Some(q) = public {
            for d in &mut o[q * n..(q + 1) * n] {
                *d = d.wrapping_add(consts[j]);
            }
        }
    }
    Ok(())
}

/// The operations of an MPC setting over Z_2^64.
pub trait Protocol {
    /// Words per shared element: 1 for additive, 2 for replicated shares.
    const PLANES: usize;

    /// Whether a comparison costs about what a product does (the dealer's and 3PC's
    /// table-based `ltz`) rather than far more (plain 2PC's, about 1.3 KB of OTs): the
    /// non-linear recipes take more comparisons for fewer rounds only where it is true.
    const CHEAP_COMPARISONS: bool = true;

    /// This party's id.
    fn party(&self) -> PartyId;

    /// What this party's channel has metered so far, if it is metered.
    fn cost(&self) -> Option<crate::cost::Cost>;

    /// A barrier between all parties ([`crate::channel::barrier`]): nothing sent before it is
    /// still in flight after it. For measurements over an emulated link; not part of any
    /// protocol. The default does nothing.
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }

    /// Wait until everything this party has sent has been delivered
    /// ([`Channel::settle`](crate::channel::Channel::settle): over an emulated link, until
    /// its queues have drained); no message is sent. For measurements (the 2PC-Dealer
    /// dealer's offline phase); not part of any protocol. The default does nothing.
    fn settle(&mut self) -> Result<()> {
        Ok(())
    }

    /// How far the parties' roles have rotated: in 3PC the helper of engine op `t` is
    /// party `(t + 2) mod 3`, so advancing the count by one moves every role to the next
    /// party (a span's bytes per party, `v`, become `v'[q] = v[q − 1]`); 0 where the roles
    /// never move. For measurements (scaling one layer's bytes per party to many layers);
    /// not part of any protocol.
    fn turns(&self) -> u64 {
        0
    }

    /// Start the roles' rotation afresh at `offset` (3PC: the next engine op's helper is
    /// party `(offset + 2) mod 3`), so that what each party does in a unit of work does not
    /// depend on the work before it: the secure model starts each step at 0 and its layer
    /// `l` at `l`, so consecutive layers put the helper's extra bytes on each party in turn.
    /// Every party must call it at the same points. The default does nothing.
    fn align_turns(&mut self, offset: u64) {
        let _ = offset;
    }

    /// The plane of this party's shares that absorbs public constants, or `None` if this
    /// party adds nothing when a public value is added to a shared one.
    fn public_plane(&self) -> Option<usize>;

    /// Party `owner` secret-shares its `values`; every party receives its shares in `out`
    /// (`n · PLANES` words). Only the owner passes `Some(values)` (`n` words).
    fn input(&mut self, owner: PartyId, values: Option<&[u64]>, out: &mut [u64]) -> Result<()>;

    /// Every computing party learns the value of `x` in `out` (`n` words). In 2PC-Dealer the
    /// dealer takes part in no opening and its `out` is zeroed.
    fn open(&mut self, x: &[u64], out: &mut [u64]) -> Result<()>;

    /// Party `to` learns `x` in `out`; every other party's `out` is zeroed.
    fn reveal_to(&mut self, to: PartyId, x: &[u64], out: &mut [u64]) -> Result<()>;

    /// `out = x · y` elementwise (no truncation). One round.
    fn mul(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()>;

    /// `out = x²` elementwise (no truncation). One round.
    fn square(&mut self, x: &[u64], out: &mut [u64]) -> Result<()>;

    /// `out = x · y` for shared row-major `x (m×n)`, `y (n×k)` (no truncation).
    fn matmul(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        self.matmul_many(x, y, out, d, 1)
    }

    /// `count` independent products `x_c · y_c` in one round: `x` holds `count` blocks of
    /// m×n elements (per plane, concatenated), `y` `count` blocks of n×k, `out` `count`
    /// blocks of m×k. Attention uses it for all heads at once.
    fn matmul_many(&mut self, x: &[u64], y: &[u64], out: &mut [u64], d: MatDims, count: usize) -> Result<()>;

    /// `out = ⌊x / 2^shift⌋` or one more, for every `x` with `-2^62 ≤ x < 2^62`: never a
    /// gross error in that range.
    fn trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()>;

    /// [`matmul_many`](Self::matmul_many), then its output truncated by `shift`, fused where
    /// the setting allows it (3PC truncates the local 3-of-3 product in the reshare's place:
    /// 2 rounds instead of 3).
    fn matmul_many_trunc(
        &mut self,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        d: MatDims,
        count: usize,
        shift: u32,
    ) -> Result<()> {
        self.matmul_many(x, y, out, d, count)?;
        self.trunc_in_place(out, shift)
    }

    /// [`matmul_weight`](Self::matmul_weight), then its output truncated by `shift`, fused
    /// where the setting allows it (as [`matmul_many_trunc`](Self::matmul_many_trunc)).
    fn matmul_weight_trunc(
        &mut self,
        x: &[u64],
        material: &[u64],
        out: &mut [u64],
        d: MatDims,
        shift: u32,
    ) -> Result<()> {
        self.matmul_weight(x, material, out, d)?;
        self.trunc_in_place(out, shift)
    }

    /// Prepare a weight matrix `w (n×k)` that party `owner` knows in the clear, once per
    /// session; returns this party's material for [`matmul_weight`](Self::matmul_weight)
    /// (opaque: its layout is the protocol's). Every party passes the same `owner`, `n`, `k`;
    /// only the owner passes `Some(w)`. The default secret-shares `w` (`input`).
    fn share_weight(&mut self, owner: PartyId, w: Option<&[u64]>, n: usize, k: usize) -> Result<WeightShares> {
        let len = n.checked_mul(k).ok_or(crate::Error::ShapeMismatch)?;
        ensure_shape(owner <= 2 && (owner == self.party()) == w.is_some())?;
        if let Some(w) = w {
            ensure_shape(w.len() == len)?;
        }
        Ok(WeightShares { n, k, words: len * Self::PLANES })
    }

    /// `out = x · W` for shared `x (m×n)` and a weight prepared by
    /// [`share_weight`](Self::share_weight) (`material` is what it returned; no truncation).
    fn matmul_weight(&mut self, x: &[u64], material: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        self.matmul(x, material, out, d)
    }

    /// The material of [`share_weight`](Self::share_weight), filled in by
    /// [`fill_weight`](Self::fill_weight).
    fn fill_weight(
        &mut self,
        owner: PartyId,
        w: Option<&[u64]>,
        spec: WeightShares,
        material: &mut [u64],
    ) -> Result<()> {
        ensure_shape(material.len() == spec.words)?;
        self.input(owner, w, material)
    }

    /// `trunc(x · y, shift)`, fused where the setting allows it.
    fn mul_trunc(&mut self, x: &[u64], y: &[u64], shift: u32, out: &mut [u64]) -> Result<()>;

    /// `out = y_k` with `y_0 = x` and `y_{i+1} = (y_i + c_i)²` truncated by `s_i` bits
    /// (`s_i = 0`: not truncated; `c_i` public), where this protocol chains such steps in
    /// fewer rounds than one call each (2PC-Dealer: one round per truncating step, see
    /// `assist::Assist::square_chain`; 3PC the same where the first step truncates, plus
    /// one round to reshare). Returns `false`, having sent nothing, where it does not; the
    /// caller then goes step by step.
    fn square_chain(&mut self, x: &[u64], steps: &[(u64, u32)], out: &mut [u64]) -> Result<bool> {
        let _ = (x, steps, out);
        Ok(false)
    }

    /// [`square_chain`](Self::square_chain) with the first square multiplied by `factor`
    /// (shares of 0 or 1 per element): `y_1 = β·(x + c_0)²` truncated, in the chain's rounds
    /// where this protocol has it (2PC-Dealer opens `β` beside the first operand). Returns
    /// `false`, having sent nothing, where it does not; the caller multiplies first.
    fn square_chain_scaled(
        &mut self,
        x: &[u64],
        factor: &[u64],
        steps: &[(u64, u32)],
        out: &mut [u64],
    ) -> Result<bool> {
        let _ = (x, factor, steps, out);
        Ok(false)
    }

    /// RMSNorm's statistics, fused where this protocol can: with `z = x ⊙ y` over `2n`
    /// elements (`n = rows·cols`) and the row sums `s_r = add + Σ_c z[r·cols + c]` of the
    /// first half, `sums = trunc(s, shift)` (`rows`), `prods = trunc(z[n..], shift)` (`n`)
    /// and `bits[i·rows + r] = [s_r − θ_i < 0]` on the untruncated sums, the truncation's
    /// opening and the comparison's in one round (2PC-Dealer 1 + 1 + 3 rounds instead of
    /// 2 + 4; 3PC, whose product is local, 1 + 3 + 1 instead of 2 + 5). Returns `false`,
    /// having sent nothing, where it does not.
    #[allow(clippy::too_many_arguments)]
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
        let _ = (x, y, rows, cols, add, shift, thetas, sums, prods, bits);
        Ok(false)
    }

    /// [`matmul_weight_trunc`](Self::matmul_weight_trunc) whose output's first `kc` columns
    /// are also compared, untruncated, with public offsets: `bits[i·m·kc + r·kc + c] =
    /// [z_rc − θ_i < 0]` for the product `z` before truncation, the comparison opened in the
    /// truncation's round (2PC-Dealer and 3PC: one round fewer than the product, its
    /// truncation and an `ltz_many`). Returns `false`, having sent nothing, where it does not.
    #[allow(clippy::too_many_arguments)]
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
        let _ = (x, material, d, shift, kc, offsets, out, bits);
        Ok(false)
    }

    /// Two truncated products, the second of outputs of the first: with
    /// `z = trunc(x ⊙ y, s1)` over `rows + rows·cols` elements,
    /// `out[e] = trunc((z[e / cols] + c) · z[rows + e], s2)` (a per-row factor, `c` a public
    /// constant, scaling the row's elements), where this protocol does it in fewer rounds
    /// than two [`mul_trunc`](Self::mul_trunc) calls (2PC-Dealer and 3PC: 3 instead of 4, see
    /// `assist::Assist::trunc_scaled`). Returns `false`, having sent nothing, where it
    /// does not; the caller then goes step by step.
    #[allow(clippy::too_many_arguments)]
    fn mul_trunc_scaled(
        &mut self,
        x: &[u64],
        y: &[u64],
        rows: usize,
        cols: usize,
        shifts: (u32, u32),
        c: u64,
        out: &mut [u64],
    ) -> Result<bool> {
        let _ = (x, y, rows, cols, shifts, c, out);
        Ok(false)
    }

    /// `out = trunc(c_0·w + Σ_{1≤i≤deg} c_i·u^i, shift)` (`deg = coeffs.len() − 1`, 2 to
    /// 8; public `c_i`; `w` shares), the powers each truncated by `fpow` bits and made in
    /// levels (`u²`; `u³, u⁴`; `u⁵..u⁸`), where this protocol chains them in fewer rounds
    /// than one `mul_trunc` call a level (2PC-Dealer 5 rounds instead of 7, 3PC 5 instead of
    /// 8; see `assist::Assist::poly_chain`). Returns `false`, having sent nothing, where it
    /// does not; the caller then goes step by step.
    #[allow(clippy::too_many_arguments)]
    fn poly_chain(
        &mut self,
        u: &[u64],
        w: &[u64],
        coeffs: &[u64],
        fpow: u32,
        shift: u32,
        out: &mut [u64],
    ) -> Result<bool> {
        let _ = (u, w, coeffs, fpow, shift, out);
        Ok(false)
    }

    /// `trunc(x², shift)`. The default squares, then truncates; 3PC fuses the two.
    fn square_trunc(&mut self, x: &[u64], shift: u32, out: &mut [u64]) -> Result<()> {
        check_shift(shift)?;
        ensure_shape(x.len() == out.len())?;
        self.square(x, out)?;
        self.trunc_in_place(out, shift)
    }

    /// `x = trunc(x, shift)` in place (uses the protocol's scratch for a copy).
    fn trunc_in_place(&mut self, x: &mut [u64], shift: u32) -> Result<()>;

    /// Arithmetic shares of `[x < 0]` (the sign bit, 0 or 1) for any `x` in the ring.
    fn ltz(&mut self, x: &[u64], out: &mut [u64]) -> Result<()>;

    /// `out[i·n + e] = [x_e − θ_i < 0]` for public offsets `θ` (`out` holds `k·n` elements,
    /// offset-major); one comparison's rounds for all offsets, sharing the opening and the
    /// dealt tables across them.
    fn ltz_many(&mut self, x: &[u64], offsets: &[u64], out: &mut [u64]) -> Result<()>;

    /// [`ltz_many`](Self::ltz_many) read through public linear maps: with `k` offsets and
    /// `maps = consts.len()`, map `j`'s shares (`n · PLANES` words, at `out[j·len..]`,
    /// `len = x.len()`) are of `consts[j] + Σ_m coef[j·k + m]·[x < offsets[m]]`. A
    /// thermometer's bits are wanted only through a few such sums (an interval's scale
    /// factors), and where the bits would each be converted back to the protocol's shares
    /// (3PC's reshare, a word a bit) only the sums are: `maps` words per element instead of
    /// `k`. `bits` is caller scratch of `k · x.len()` words. The default makes the bits with
    /// `ltz_many` and maps them locally; the values are the same either way.
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
        ensure_shape(k > 0 && coef.len() == maps * k && out.len() == maps * len && bits.len() == k * len)?;
        self.ltz_many(x, offsets, bits)?;
        map_bits(Self::PLANES, self.public_plane(), bits, coef, consts, out)
    }

    /// `out = x ∧ y` over packed 2-of-2 boolean shares (`bit_words(n)` words each). One round.
    fn and_bits(&mut self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()>;

    /// Arithmetic shares (`n · PLANES` words) of the `n` bits in packed boolean shares.
    fn b2a(&mut self, bits: &[u64], out: &mut [u64]) -> Result<()>;

    /// `out = x + y` (local).
    fn add(&self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ring::add(x, y, out)
    }

    /// `out = x - y` (local).
    fn sub(&self, x: &[u64], y: &[u64], out: &mut [u64]) -> Result<()> {
        ring::sub(x, y, out)
    }

    /// `out = -x` (local).
    fn neg(&self, x: &[u64], out: &mut [u64]) -> Result<()> {
        ring::neg(x, out)
    }

    /// `out = x + c` for public `c` (`n` words; local).
    fn add_public(&self, x: &[u64], c: &[u64], out: &mut [u64]) -> Result<()> {
        let n = c.len();
        ensure_shape(x.len() == n * Self::PLANES && out.len() == x.len())?;
        out.copy_from_slice(x);
        if let Some(p) = self.public_plane() {
            ring::add_assign(&mut out[p * n..(p + 1) * n], c)?;
        }
        Ok(())
    }

    /// `out = x + c` for one public constant `c` (local).
    fn add_public_scalar(&self, x: &[u64], c: u64, out: &mut [u64]) -> Result<()> {
        ensure_shape(out.len() == x.len() && x.len().is_multiple_of(Self::PLANES))?;
        out.copy_from_slice(x);
        if let Some(p) = self.public_plane() {
            let n = x.len() / Self::PLANES;
            for v in &mut out[p * n..(p + 1) * n] {
                *v = v.wrapping_add(c);
            }
        }
        Ok(())
    }

    /// `out = x ⊙ c` for public `c` (`n` words; local, no truncation).
    fn mul_public(&self, x: &[u64], c: &[u64], out: &mut [u64]) -> Result<()> {
        let n = c.len();
        ensure_shape(x.len() == n * Self::PLANES && out.len() == x.len())?;
        for p in 0..Self::PLANES {
            ring::mul(&x[p * n..(p + 1) * n], c, &mut out[p * n..(p + 1) * n])?;
        }
        Ok(())
    }

    /// `out = c · x` for one public constant (local, no truncation).
    fn scale(&self, x: &[u64], c: u64, out: &mut [u64]) -> Result<()> {
        ring::scale(x, c, out)
    }

    /// `out = x · w` for shared `x (m×n)` and public `w (n×k)` (local, no truncation).
    fn matmul_public(&self, x: &[u64], w: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
        let (mn, mk) = match (d.lhs(), d.out()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(crate::Error::ShapeMismatch),
        };
        ensure_shape(x.len() == mn * Self::PLANES && out.len() == mk * Self::PLANES)?;
        for p in 0..Self::PLANES {
            ring::matmul(&x[p * mn..(p + 1) * mn], w, &mut out[p * mk..(p + 1) * mk], d)?;
        }
        Ok(())
    }
}

/// Size of a party's material for a weight known to one party (see
/// [`Protocol::share_weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightShares {
    /// Rows of the weight.
    pub n: usize,
    /// Columns of the weight.
    pub k: usize,
    /// Words of material this party keeps.
    pub words: usize,
}

/// Checks that `shift` is a valid truncation shift (`1..=62`); every setting's `trunc`
/// refuses others with [`Error::InvalidArgument`](crate::Error::InvalidArgument).
pub fn check_shift(shift: u32) -> Result<()> {
    if (1..=62).contains(&shift) { Ok(()) } else { Err(crate::Error::InvalidArgument) }
}
