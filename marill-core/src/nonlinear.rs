//! Secure non-linear functions, written once over any [`Protocol`].
//!
//! Every function takes this party's shares, an output buffer, and a `scratch` slice whose
//! size the `*_scratch` `const fn` beside it gives (in words, for `n` elements and the
//! protocol's `PLANES`). All sizes are checked before the first protocol call, so a wrong
//! buffer is `BufferTooSmall { required }` or `ShapeMismatch` at this party with nothing
//! sent. Values are fixed point with `fp.frac_bits = f` fractional bits (16 by default;
//! every recipe below needs `f ≤ 24`). Rounds and bytes per element are measured by
//! `tests/tests/nonlinear.rs` and the cost harness (`--op exp|…`); the figures quoted here
//! are for 2PC-Dealer / 3PC.
//!
//! Shared building blocks: `ltz` (6 / 7 rounds, exact), `mul_trunc` and `square_trunc`
//! (2 / 2 rounds; exact-range truncation, error ⌊·⌋ + {0, 1}), comparisons batched so that
//! every comparison of one step is one `ltz` call. Internal precision is raised where a
//! recipe needs it (`F = 30` fractional bits for values ≤ 1, whose products stay below
//! 2^62, the range of exact truncation).
//!
//! | op | recipe | input range | error bound (tested) | rounds |
//! |---|---|---|---|---|
//! | [`relu`] | `x·(1 − [x<0])` | any | exact | 7 / 8 |
//! | [`exp`] | `((1+t)²+1)/2 = 1+t+t²/2`, `t = x/64`, squared 6× | `[-115, 0]` | 1.5e-3 abs | 12 / 17 |
//! | [`reciprocal`] | thermometer normalisation + 2 Newton steps | `[2^lo, 2^hi)` | 1e-3 rel | 18 / 19 |
//! | [`rsqrt`] | thermometer normalisation + quadratic guess + 1 Newton step | `[2^lo, 2^hi)` | 1e-3 rel | 18 / 19 |
//! | [`rms_norm`] | Σx², `rsqrt` with `√d` folded in, two products | rows of `d` | 1e-3 | ≈ 24 / 27 |
//! | [`softmax`] | row max (tree: pairwise, or in groups of 4 with [`softmax_in_groups`]), clamp at −64 (`relu`), `exp`, `reciprocal`, product | rows of `C` | 5e-3 | 88 / 99 at `C = 128` (groups of 4: 73 / 81) |
//! | [`softmax_2relu`] | `relu(x) / (Σ relu(x) + 2^-8)` | any | 5e-3 | ≈ 27 / 29 |
//! | [`silu`], [`gelu`] | `relu(x) + h(|x|)`, `h` a degree-8 fit on one window | any | 3e-3 / 5e-3 | 15 / 17 |
//! | [`argmax`] | tournament in groups of 8, lowest index on ties | rows of `C` | exact | 10·⌈log8 C⌉ / 11·⌈log8 C⌉ at most |
//!
//! **Normalisation by thermometer codes.** For `x ∈ [2^lo, 2^hi)` one batched comparison
//! gives the bits `b_j = [x ≥ 2^j]`, `lo < j < hi`. They form a thermometer code of
//! `k = ⌊log2 x⌋ = lo + Σ b_j`, so *any* function of `k` is linear in them:
//! `g(k) = g(lo) + Σ_j b_j·(g(j) − g(j−1))` with public coefficients — local. The scale
//! `2^-(k+1)` (bringing `x` into `[0.5, 1)`), `2^-(k+1)/2` for the inverse square root,
//! and RMSNorm's `√d` all come from the same bits at no extra cost.
//!
//! **SiLU and GeLU.** Both satisfy `act(x) − act(−x) = x`, so `act(x) = relu(x) + h(|x|)`
//! with `h(t) = act(−t)`, which decays to 0. One batched comparison gives `[x<0]` and the
//! window `[|x| < cut]`; `h` is a degree-8 polynomial in `u = |x|/cut` (weighted least
//! squares fits, coefficients below) and 0 outside the window. The error is the fit's
//! inside the window and `|h(cut)|` outside: SiLU 4.9e-4 and 2.7e-3 (cut 8), GeLU 1.0e-4 and
//! 7.0e-5 (cut 4).

use crate::error::{Error, Result, ensure_shape};
use crate::fixed::FixedPoint;
use crate::proto::Protocol;
use crate::scratch::carve;

/// Internal fractional bits for values of magnitude ≤ 1 (products stay below 2^62).
const F: u32 = 30;
/// Fractional bits of public polynomial coefficients.
const COEFF_BITS: u32 = 24;

/// SiLU's `h(t) = silu(−t)` on `t = 8u`, `u ∈ [0, 1]`: fit error 4.95e-4.
const SILU_COEFFS: [f64; 9] = [
    0.0004952967483213892,
    -4.066474342015893,
    17.371771326847718,
    -7.789885403885477,
    -98.35586788853705,
    272.3358329413578,
    -325.7107665670604,
    191.04641471033918,
    -44.83469814350072,
];
/// GeLU's (tanh form) `h(t) = gelu(−t)` on `t = 4u`: fit error 1.0e-4.
const GELU_COEFFS: [f64; 9] = [
    -0.00010041507987192444,
    -1.9825315090935995,
    5.882992385472723,
    5.444766000266005,
    -45.94753991627249,
    80.06346403016998,
    -65.3888607384099,
    25.71987167547706,
    -3.7920313262497936,
];

/// Smallest input for which [`exp`] meets its error bound.
pub const EXP_MIN: f64 = -115.0;

// `core` has no float maths: the few functions the recipes need on public constants.

/// `2^k`, exact for `|k| ≤ 1000`.
fn pow2i(k: i32) -> f64 {
    let k = k.clamp(-1000, 1000);
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// `2^(k/2)`.
fn pow2_half(k: i32) -> f64 {
    let h = pow2i(k.div_euclid(2));
    if k.rem_euclid(2) == 1 { h * core::f64::consts::SQRT_2 } else { h }
}

/// `⌊log2 v⌋` for positive normal `v`.
fn floor_log2_f64(v: f64) -> i32 {
    ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023
}

/// `⌈log2 v⌉` for positive normal `v`.
fn ceil_log2_f64(v: f64) -> i32 {
    let fl = floor_log2_f64(v);
    if pow2i(fl) == v { fl } else { fl + 1 }
}

/// `√v` for `v ≥ 0` by Newton's method from a power-of-two start (converges in < 10 steps).
fn sqrt_f64(v: f64) -> f64 {
    if v <= 0.0 {
        return 0.0;
    }
    let mut y = pow2i(floor_log2_f64(v) / 2);
    for _ in 0..60 {
        let next = 0.5 * (y + v / y);
        if next == y {
            break;
        }
        y = next;
    }
    y
}

fn check_scratch(scratch: &[u64], need: usize) -> Result<()> {
    if scratch.len() < need { Err(Error::BufferTooSmall { required: need }) } else { Ok(()) }
}

fn check_f(fp: FixedPoint) -> Result<u32> {
    if (1..=24).contains(&fp.frac_bits) { Ok(fp.frac_bits) } else { Err(Error::InvalidArgument) }
}

/// Encode a real at `bits` fractional bits (round to nearest).
fn enc(v: f64, bits: u32) -> u64 {
    FixedPoint { frac_bits: bits }.encode(v)
}

/// `out = c - x` for public `c` (local).
fn rsub_public<P: Protocol>(p: &P, c: u64, x: &[u64], out: &mut [u64]) -> Result<()> {
    p.neg(x, out)?;
    add_scalar_in_place(p, out, c)
}

fn add_scalar_in_place<P: Protocol>(p: &P, x: &mut [u64], c: u64) -> Result<()> {
    ensure_shape(x.len().is_multiple_of(P::PLANES))?;
    if let Some(q) = p.public_plane() {
        let n = x.len() / P::PLANES;
        for v in &mut x[q * n..(q + 1) * n] {
            *v = v.wrapping_add(c);
        }
    }
    Ok(())
}

/// `dst[q·dn + i] = src[q·sn + idx(i)]` for every plane `q`.
fn gather(pl: usize, src: &[u64], sn: usize, dst: &mut [u64], dn: usize, idx: impl Fn(usize) -> usize) {
    for q in 0..pl {
        for i in 0..dn {
            dst[q * dn + i] = src[q * sn + idx(i)];
        }
    }
}

/// Copy plane-wise: `dst` (dn elements per plane) at element offset `at` ← `src` (sn).
fn put(pl: usize, src: &[u64], sn: usize, dst: &mut [u64], dn: usize, at: usize) {
    for q in 0..pl {
        dst[q * dn + at..q * dn + at + sn].copy_from_slice(&src[q * sn..(q + 1) * sn]);
    }
}

/// Row sums: `x` is `rows × cols`, `out` is `rows`.
fn row_sums(pl: usize, x: &[u64], rows: usize, cols: usize, out: &mut [u64]) {
    let n = rows * cols;
    for q in 0..pl {
        for r in 0..rows {
            let s = x[q * n + r * cols..q * n + (r + 1) * cols].iter().fold(0u64, |a, v| a.wrapping_add(*v));
            out[q * rows + r] = s;
        }
    }
}

// ---- ReLU ---------------------------------------------------------------------------

/// Scratch words for [`relu`] of `n` elements.
pub const fn relu_scratch(n: usize, planes: usize) -> usize {
    n * planes
}

/// `out = max(x, 0)`: `x·(1 − [x<0])`. Exact. 7 / 8 rounds.
pub fn relu<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64]) -> Result<()> {
    ensure_shape(x.len() == out.len() && x.len().is_multiple_of(P::PLANES))?;
    let len = x.len();
    check_scratch(scratch, len)?;
    let b = &mut scratch[..len];
    p.ltz(x, out)?;
    rsub_public(p, 1, out, b)?;
    p.mul(x, b, out)
}

// ---- exp ------------------------------------------------------------------------------

/// Scratch words for [`exp`] of `n` elements.
pub const fn exp_scratch(n: usize, planes: usize) -> usize {
    2 * n * planes
}

/// `out = e^x` for `x ∈ [EXP_MIN, 0]` (the softmax case), max abs error ≤ 1.5e-3.
///
/// `t = x/64` at 30 fractional bits (a local shift), `base = ((1+t)² + 1)/2 = 1 + t + t²/2`,
/// then six squarings: `base^64 = e^x · (1 + O(|x|³/24576))`, at most 5.5e-5 absolute. The
/// first three products truncate to 30 bits each; the last four squarings run in two
/// pairs at 15 bits (a value ≤ 1 at 15 bits squared twice stays below 2^60), so a pair costs
/// one truncation: 12 rounds in 2PC-Dealer, 96 bytes per element and compute party.
/// Below `EXP_MIN` the base polynomial grows again and the result is meaningless; softmax
/// multiplies masked entries by zero afterwards.
pub fn exp<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64], fp: FixedPoint) -> Result<()> {
    let f = check_f(fp)?;
    let len = x.len();
    ensure_shape(out.len() == len && len.is_multiple_of(P::PLANES))?;
    check_scratch(scratch, 2 * len)?;
    let [a, b] = carve(scratch, [len, len]);
    // t = x / 64 at F bits: multiply by 2^(F - f - 6).
    p.scale(x, 1u64 << (F - f - 6), a)?;
    add_scalar_in_place(p, a, 1u64 << F)?; // 1 + t
    p.square_trunc(a, F + 1, b)?; // (1+t)²/2
    add_scalar_in_place(p, b, 1u64 << (F - 1))?; // base
    p.square_trunc(b, F, a)?; // base²
    p.square_trunc(a, F + 15, b)?; // base⁴ at 15 bits
    p.square(b, a)?; // base⁸ at 30 bits
    p.square(a, b)?; // base¹⁶ at 60 bits
    p.trunc(b, 45, a)?; // at 15 bits
    p.square(a, b)?; // base³² at 30
    p.square(b, a)?; // base⁶⁴ at 60
    p.trunc(a, 60 - f, out)
}

// ---- normalisation ----------------------------------------------------------------------

/// Thresholds `2^j`, `lo < j < hi`, compared in one call (one opening, shared tables):
/// `bits[(j-lo-1)·n + e] = [x_e ≥ 2^j]` as arithmetic shares. Returns the number of thresholds.
fn thermometer<P: Protocol>(
    p: &mut P,
    x: &[u64],
    f: u32,
    lo: i32,
    hi: i32,
    bits: &mut [u64],
    tmp: &mut [u64],
) -> Result<usize> {
    let t = (hi - lo - 1) as usize;
    let total = t * x.len();
    let mut offsets = [0u64; 64];
    for (k, j) in (lo + 1..hi).enumerate() {
        offsets[k] = enc(pow2i(j), f);
    }
    p.ltz_many(x, &offsets[..t], &mut tmp[..total])?;
    rsub_public(p, 1, &tmp[..total], &mut bits[..total])?; // b = 1 − [x < 2^j]
    Ok(t)
}

/// `out = g(k)` as shares at `bits` fractional bits, for thermometer `b` of `t` thresholds
/// (`lo+1..hi`) over `n` elements: `g(lo) + Σ_j b_j (g(j) − g(j−1))`.
fn from_thermometer<P: Protocol>(
    p: &P,
    b: &[u64],
    n: usize,
    lo: i32,
    t: usize,
    g: impl Fn(i32) -> f64,
    bits: u32,
    out: &mut [u64],
) -> Result<()> {
    let pl = P::PLANES;
    out.fill(0);
    for k in 0..t {
        let j = lo + 1 + k as i32;
        let coef = enc(g(j), bits).wrapping_sub(enc(g(j - 1), bits));
        for q in 0..pl {
            let src = &b[q * t * n + k * n..q * t * n + (k + 1) * n];
            let dst = &mut out[q * n..(q + 1) * n];
            for (d, s) in dst.iter_mut().zip(src) {
                *d = d.wrapping_add(s.wrapping_mul(coef));
            }
        }
    }
    add_scalar_in_place(p, out, enc(g(lo), bits))
}

/// Scratch words for [`reciprocal`] / [`rsqrt`] of `n` elements over `[2^lo, 2^hi)`.
pub const fn normalised_scratch(n: usize, planes: usize, lo: i32, hi: i32) -> usize {
    let t = if hi > lo + 1 { (hi - lo - 1) as usize } else { 0 };
    (2 * t + 18) * n * planes
}

fn check_range(lo: i32, hi: i32, f: u32) -> Result<()> {
    // Thresholds must be representable at f bits, and x·2^-(k+1) must stay in range.
    if hi <= lo || hi - lo > 64 || lo < -(f as i32) + 2 || hi > 46 - f as i32 {
        return Err(Error::InvalidArgument);
    }
    Ok(())
}

/// `out = 1/x` at `out_bits` fractional bits, for `x ∈ [2^lo, 2^hi)` at `fp` bits:
/// relative error ≤ 1e-3 (tested on [1, 1000]; measured ≈ 3e-5 at `out_bits = 32`).
///
/// Thermometer normalisation gives `s = 2^-(k+1)` and `x·s ∈ [0.5, 1)`; Newton–Raphson
/// `y ← y(2 − x·y)` from the minimax line `y0 = 2.928 − 2x` (7.2 % error) reaches 3e-5 in
/// two steps at 29 bits; `1/x = y·s`. Rounds: 6 + 2 + 4·2 + 2 = 18 in 2PC-Dealer. Outside
/// the range the result is wrong (no error is raised: the range is the caller's promise).
pub fn reciprocal<P: Protocol>(
    p: &mut P,
    x: &[u64],
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
    lo: i32,
    hi: i32,
    out_bits: u32,
) -> Result<()> {
    normalised(p, x, out, scratch, fp, lo, hi, out_bits, Kind::Recip, 1.0)
}

/// `out = 1/√x` at `out_bits` fractional bits for `x ∈ [2^lo, 2^hi)`: relative error ≤ 1e-3
/// (tested on [0.01, 100]). Normalisation as in [`reciprocal`] with the second scale
/// `2^-(k+1)/2`; a quadratic first guess (0.32 %) whose `b·x` and `√c·x` terms come out of
/// the normalising product itself, then one Newton step `y ← y(3 − x·y²)/2`.
/// Rounds: 6 + 2 + 2 + 6 + 2 = 18 in 2PC-Dealer.
pub fn rsqrt<P: Protocol>(
    p: &mut P,
    x: &[u64],
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
    lo: i32,
    hi: i32,
    out_bits: u32,
) -> Result<()> {
    normalised(p, x, out, scratch, fp, lo, hi, out_bits, Kind::Rsqrt, 1.0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Recip,
    Rsqrt,
}

/// `a + b·x + c·x²` ≈ `1/√x` on [0.5, 1): relative error 3.2e-3 (weighted least squares).
const RSQRT_QUAD: [f64; 3] = [2.233926387293232, -2.066167576710251, 0.835432279251084];

/// Fractional bits of Newton iterates (values in (0, 2]: products below 2^61).
const NB: u32 = 29;

fn normalised<P: Protocol>(
    p: &mut P,
    x: &[u64],
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
    lo: i32,
    hi: i32,
    out_bits: u32,
    kind: Kind,
    post_scale: f64,
) -> Result<()> {
    let f = check_f(fp)?;
    check_range(lo, hi, f)?;
    let pl = P::PLANES;
    let len = x.len();
    ensure_shape(out.len() == len && len.is_multiple_of(pl))?;
    let n = len / pl;
    // Scale bits S: 2^-(k+1) ≥ 2^-hi must be exact and x·s < 2^(f+S) ≤ 2^61; for the
    // reciprocal also y·s < 2^(NB+1+S-lo-1) ≤ 2^61.
    let s_bits = match kind {
        Kind::Recip => (61 - f as i32).min(31 + lo).min(44),
        Kind::Rsqrt => (61 - f as i32).min(44),
    };
    if s_bits < hi + 2 || out_bits > 40 || out_bits == 0 {
        return Err(Error::InvalidArgument);
    }
    let s_bits = s_bits as u32;
    check_scratch(scratch, normalised_scratch(n, pl, lo, hi))?;
    let t = (hi - lo - 1).max(0) as usize;
    let [bits, tmp, s1, s2, xn, y, a, ext] =
        carve(scratch, [t * len, t * len + len, len, len, len, len, len, 12 * len]);
    if t > 0 {
        thermometer(p, x, f, lo, hi, bits, tmp)?;
    }
    from_thermometer(p, bits, n, lo, t, |k| pow2i(-(k + 1)), s_bits, s1)?;
    let g2 = |k: i32| post_scale * pow2_half(-(k + 1));
    match kind {
        Kind::Recip => {
            // xn = x·s1 at NB bits.
            p.mul_trunc(x, s1, f + s_bits - NB, xn)?;
            // y0 = 2.928 − 2·xn
            p.scale(xn, 2, y)?;
            rsub_in_place(p, enc(2.928, NB), y)?;
            for _ in 0..2 {
                p.mul_trunc(xn, y, NB, a)?; // x·y
                rsub_in_place(p, enc(2.0, NB), a)?; // 2 − x·y
                p.mul_trunc(y, a, NB, tmp_slice(tmp, len))?;
                y.copy_from_slice(&tmp[..len]);
            }
            // 1/x = y·s1
            let shift = NB + s_bits - out_bits;
            if shift == 0 || shift > 62 {
                return Err(Error::InvalidArgument);
            }
            p.mul_trunc(y, s1, shift, out)
        }
        Kind::Rsqrt => {
            // s2 ≤ post_scale·2^-(lo+1)/2 and y < 2^(NB+1): keep y·s2 below 2^60.
            let s2_max = post_scale * pow2_half(-(lo + 1));
            let s2_bits = 29 - ceil_log2_f64(s2_max).max(0);
            if s2_bits < 8 {
                return Err(Error::InvalidArgument);
            }
            let s2_bits = s2_bits as u32;
            from_thermometer(p, bits, n, lo, t, g2, s2_bits, s2)?;
            // y0 = a + b·xn + c·xn² (minimax, 0.32 % relative on [0.5, 1)). The products
            // b·xn and √c·xn come from the same batched product as xn (their scales are
            // further linear functions of the thermometer bits), so y0 costs one squaring.
            let [sb, sc, xs, ss, prods, sq] = carve(ext, [len, len, 3 * len, 3 * len, 3 * len, len]);
            from_thermometer(p, bits, n, lo, t, |k| RSQRT_QUAD[1] * pow2i(-(k + 1)), s_bits, sb)?;
            from_thermometer(p, bits, n, lo, t, |k| sqrt_f64(RSQRT_QUAD[2]) * pow2i(-(k + 1)), s_bits, sc)?;
            for (i, sv) in [&*s1, &*sb, &*sc].into_iter().enumerate() {
                put(pl, x, n, xs, 3 * n, i * n);
                put(pl, sv, n, ss, 3 * n, i * n);
            }
            p.mul_trunc(xs, ss, f + s_bits - NB, prods)?;
            gather(pl, prods, 3 * n, xn, n, |e| e);
            gather(pl, prods, 3 * n, y, n, |e| n + e); // b·xn
            gather(pl, prods, 3 * n, sq, n, |e| 2 * n + e); // √c·xn
            p.square_trunc(sq, NB, a)?; // c·xn²
            crate::ring::add_assign(y, a)?;
            add_scalar_in_place(p, y, enc(RSQRT_QUAD[0], NB))?;
            // One Newton step: 1.5·(3.2e-3)² ≈ 1.5e-5 relative.
            p.square_trunc(y, NB, a)?; // y²
            p.mul_trunc(xn, a, NB, sq)?; // x·y²
            a.copy_from_slice(sq);
            rsub_in_place(p, enc(3.0, NB), a)?; // 3 − x·y²
            p.mul_trunc(y, a, NB + 1, sq)?; // y(3 − x·y²)/2
            y.copy_from_slice(sq);
            let shift = NB + s2_bits - out_bits;
            if shift == 0 || shift > 62 {
                return Err(Error::InvalidArgument);
            }
            p.mul_trunc(y, s2, shift, out)
        }
    }
}

fn tmp_slice(tmp: &mut [u64], len: usize) -> &mut [u64] {
    &mut tmp[..len]
}

/// `x = c − x` in place.
fn rsub_in_place<P: Protocol>(p: &P, c: u64, x: &mut [u64]) -> Result<()> {
    for v in x.iter_mut() {
        *v = v.wrapping_neg();
    }
    add_scalar_in_place(p, x, c)
}

// ---- RMSNorm ------------------------------------------------------------------------------

/// The gain of [`rms_norm`]: public (a frozen layer) or shared (a fine-tuned one).
#[derive(Clone, Copy)]
pub enum Gain<'a> {
    /// Public gain, `d` words at `f` bits.
    Public(&'a [u64]),
    /// Shares of the gain, `d · PLANES` words.
    Shared(&'a [u64]),
}

/// Upper bound (as log2) on the row sums of squares [`rms_norm`] accepts.
pub const RMS_SUM_LOG2_MAX: i32 = 30;

/// Scratch words for [`rms_norm`] over `rows × d`.
pub const fn rms_norm_scratch(rows: usize, d: usize, planes: usize) -> usize {
    3 * rows * d * planes + 2 * rows * planes + normalised_scratch(rows, planes, -24, RMS_SUM_LOG2_MAX)
}

/// `out = x / √(mean(x²) + eps) ⊙ gain`, row-wise over `rows × d`; error ≤ 1e-3 for
/// `|x| < 2^15` and row sums of squares below 2^30 (the most 16 fractional bits allow;
/// SmolLM2-135M's attention-sink rows reach 2^29.2). The `√d` of the mean is folded into the
/// reciprocal square root's second scale (free). Rounds: 2 + 22 + 2 + 1 (public gain).
pub fn rms_norm<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    d: usize,
    gain: Gain<'_>,
    eps: f64,
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
) -> Result<()> {
    let f = check_f(fp)?;
    let pl = P::PLANES;
    let n = rows.checked_mul(d).ok_or(Error::ShapeMismatch)?;
    let len = n * pl;
    ensure_shape(d > 0 && x.len() == len && out.len() == len)?;
    match gain {
        Gain::Public(g) => ensure_shape(g.len() == d)?,
        Gain::Shared(g) => ensure_shape(g.len() == d * pl)?,
    }
    if eps.is_nan() || eps <= 0.0 {
        return Err(Error::InvalidArgument);
    }
    let floor = floor_log2_f64(d as f64 * eps);
    let lo = floor.max(-24);
    check_range(lo, RMS_SUM_LOG2_MAX, f)?;
    check_scratch(scratch, rms_norm_scratch(rows, d, pl))?;
    let [sq, y, g2, ssum, r, rest] =
        carve(scratch, [len, len, len, rows * pl, rows * pl, normalised_scratch(rows, pl, lo, RMS_SUM_LOG2_MAX)]);
    p.square_trunc(x, f, sq)?;
    row_sums(pl, sq, rows, d, ssum);
    add_scalar_in_place(p, ssum, enc(d as f64 * eps, f))?;
    // r = √d / √(Σx² + d·eps) at 24 bits.
    let rb = 24;
    normalised(p, ssum, r, rest, fp, lo, RMS_SUM_LOG2_MAX, rb, Kind::Rsqrt, sqrt_f64(d as f64))?;
    gather(pl, r, rows, g2, n, |i| i / d);
    p.mul_trunc(x, g2, rb, y)?;
    match gain {
        Gain::Public(g) => {
            for q in 0..pl {
                for i in 0..n {
                    g2[q * n + i] = y[q * n + i].wrapping_mul(g[i % d]);
                }
            }
            p.trunc(g2, f, out)
        }
        Gain::Shared(g) => {
            gather(pl, g, d, g2, n, |i| i % d);
            p.mul_trunc(y, g2, f, out)
        }
    }
}

// ---- row max and argmax -------------------------------------------------------------------

/// Scratch words for [`row_max`] over `rows × cols`.
pub const fn tree_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    row_max_scratch(rows, cols, 2, planes)
}

/// Scratch words for [`row_max_in_groups`] over `rows × cols` in groups of `group`.
pub const fn row_max_scratch(rows: usize, cols: usize, group: usize, planes: usize) -> usize {
    grouped_scratch(rows, cols, if group < 2 { 2 } else { group }, false, planes)
}

/// Row-wise maximum of `rows × cols` into `out` (`rows` elements). Exact. A pairwise
/// tournament: each level compares neighbours in one batched `ltz` and selects with one
/// product, `⌈log2 cols⌉` levels of 7 / 8 rounds, one comparison and one product per entry
/// in all.
pub fn row_max<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    out: &mut [u64],
    scratch: &mut [u64],
) -> Result<()> {
    grouped(p, x, rows, cols, 2, out, None, scratch)
}

/// [`row_max`] as a tournament in groups of `group` ≥ 2 ([`grouped`]): groups of 4 take
/// `⌈log4 cols⌉` levels of 9 / 10 rounds (27 / 30 over 64 columns, against 42 / 48
/// pairwise) for 2 comparisons and about 3.7 exact products per entry instead of 1 and 1.
/// Worth it where rounds cost more than bytes: decoding (one query row per head), or a
/// long-latency link.
pub fn row_max_in_groups<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    group: usize,
    out: &mut [u64],
    scratch: &mut [u64],
) -> Result<()> {
    grouped(p, x, rows, cols, group, out, None, scratch)
}

/// Group size of [`argmax`]'s tournament.
pub const ARGMAX_GROUP: usize = 8;

/// Scratch words for [`argmax`] over `rows × cols`.
pub const fn argmax_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    grouped_scratch(rows, cols, ARGMAX_GROUP, true, planes)
}

/// Scratch words of a tournament in groups of `k` (with the index or without).
const fn grouped_scratch(rows: usize, cols: usize, k: usize, with_index: bool, planes: usize) -> usize {
    let n = rows * cols;
    let (half, idx) = (k.div_ceil(2), if with_index { 2 } else { 1 });
    planes * n * (idx + 2 * half + (k - 1) + 3 * half + 3 * idx)
}

/// Row-wise argmax: shares of the index (an integer, not fixed point) and of the maximum.
/// Exact; on ties the lowest index wins. A tournament in groups of [`ARGMAX_GROUP`]
/// ([`grouped`]): over 32 000 entries, 5 levels, 50 / 55 rounds (a pairwise tree: 105 /
/// 120), 6.4 MB per compute party in 2PC-Dealer (the pairwise tree: 1.5 MB; groups of 16
/// took 43 rounds and 12.4 MB, a poor trade on a LAN).
pub fn argmax<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    index: &mut [u64],
    max: &mut [u64],
    scratch: &mut [u64],
) -> Result<()> {
    ensure_shape(index.len() == rows * P::PLANES)?;
    grouped(p, x, rows, cols, ARGMAX_GROUP, max, Some(index), scratch)
}

/// Visit the groups of a tournament level: `rows` rows of width `w` in groups of `g` (the
/// last of a row may be smaller): `f(k, start, size)`, `k = row·⌈w/g⌉ + group` (its place
/// in the next level), `start` its first flat index.
fn each_group(rows: usize, w: usize, g: usize, mut f: impl FnMut(usize, usize, usize)) {
    let groups = w.div_ceil(g);
    for r in 0..rows {
        for gi in 0..groups {
            f(r * groups + gi, r * w + gi * g, g.min(w - gi * g));
        }
    }
}

/// Every pair of elements `a < b` within a group of a level, numbered in order:
/// `f(pair, a, b)` with flat indices.
fn each_pair(rows: usize, w: usize, g: usize, mut f: impl FnMut(usize, usize, usize)) {
    let mut c = 0;
    each_group(rows, w, g, |_, start, s| {
        for a in start..start + s {
            for b in a + 1..start + s {
                f(c, a, b);
                c += 1;
            }
        }
    });
}

/// A tournament in groups of up to `k` rather than pairs, trading comparisons for rounds:
/// within a group, one batched `ltz` compares every pair, `c_ij = [x_i ≥ x_j]` for `i < j`;
/// the winner's indicator `b_i = Π_{j>i} c_ij · Π_{j<i} (1 − c_ji)` (exactly one is 1: `≥`
/// towards the lower index is a strict order) is a product of `k − 1` bits, `⌈log2(k − 1)⌉`
/// rounds of exact products; one more product selects `x_last + Σ_{i<last} b_i·(x_i −
/// x_last)`, and the same for the index when asked. A level is `ltz + ⌈log2(k−1)⌉ + 1`
/// rounds and divides the width by `k`, at `(k−1)/2` comparisons and `k − 2` products per
/// entry (a pairwise level: `ltz + 1` rounds, half a comparison and half a product).
#[allow(clippy::too_many_arguments)]
fn grouped<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    k: usize,
    max: &mut [u64],
    index: Option<&mut [u64]>,
    scratch: &mut [u64],
) -> Result<()> {
    let pl = P::PLANES;
    let n = rows.checked_mul(cols).ok_or(Error::ShapeMismatch)?;
    ensure_shape(k >= 2 && cols > 0 && x.len() == n * pl && max.len() == rows * pl)?;
    let with_index = index.is_some();
    check_scratch(scratch, grouped_scratch(rows, cols, k, with_index, pl))?;
    let (half, kk) = (k.div_ceil(2), if with_index { 2 } else { 1 });
    let [cv, ci, cin, cout, fct, fa, fb, fo, sa, sb, so] = carve(
        scratch,
        [
            n * pl,
            if with_index { n * pl } else { 0 },
            n * half * pl,
            n * half * pl,
            n * (k - 1) * pl,
            n * half * pl,
            n * half * pl,
            n * half * pl,
            kk * n * pl,
            kk * n * pl,
            kk * n * pl,
        ],
    );
    let public = p.public_plane();
    cv.copy_from_slice(x);
    if with_index {
        ci.fill(0);
        if let Some(q) = public {
            for i in 0..n {
                ci[q * n + i] = (i % cols) as u64;
            }
        }
    }
    let mut w = cols;
    while w > 1 {
        let g = w.min(k);
        let groups = w.div_ceil(g);
        let nn = rows * w;
        // Every pair of every group, in one comparison.
        let mut c_all = 0;
        each_group(rows, w, g, |_, _, s| c_all += s * (s - 1) / 2);
        each_pair(rows, w, g, |c, a, b| {
            for q in 0..pl {
                cin[q * c_all + c] = cv[q * nn + a].wrapping_sub(cv[q * nn + b]);
            }
        });
        p.ltz(&cin[..c_all * pl], &mut cout[..c_all * pl])?;
        // Factors: element i's slot t (j = t, or t + 1 past i) holds c_ij (j > i) or
        // 1 − c_ji = [x_j < x_i] (j < i); slots a smaller group lacks hold 1.
        let mut m = g - 1;
        let fl = nn * m;
        for q in 0..pl {
            let one = u64::from(public == Some(q));
            fct[q * fl..(q + 1) * fl].fill(one);
        }
        each_pair(rows, w, g, |c, a, b| {
            // Within the group, a is element i and b element j > i: i's slot j − 1, j's slot i.
            let (i, j) = (a % w % g, b % w % g);
            for q in 0..pl {
                let lt = cout[q * c_all + c];
                let one = u64::from(public == Some(q));
                // c_ij = [x_i ≥ x_j] = 1 − [x_i − x_j < 0] for i; [x_i < x_j] for j.
                fct[q * fl + a * m + (j - 1)] = one.wrapping_sub(lt);
                fct[q * fl + b * m + i] = lt;
            }
        });
        // Multiply each element's factors down to one, pairwise.
        while m > 1 {
            let u = m / 2;
            let (pn, nm) = (nn * u, u + m % 2);
            for q in 0..pl {
                for e in 0..nn {
                    for t in 0..u {
                        fa[q * pn + e * u + t] = fct[q * nn * m + e * m + 2 * t];
                        fb[q * pn + e * u + t] = fct[q * nn * m + e * m + 2 * t + 1];
                    }
                }
            }
            p.mul(&fa[..pn * pl], &fb[..pn * pl], &mut fo[..pn * pl])?;
            for q in 0..pl {
                for e in 0..nn {
                    for t in 0..u {
                        fa[q * nn * nm + e * nm + t] = fo[q * pn + e * u + t];
                    }
                    if m % 2 == 1 {
                        fa[q * nn * nm + e * nm + u] = fct[q * nn * m + e * m + m - 1];
                    }
                }
            }
            fct[..nn * nm * pl].copy_from_slice(&fa[..nn * nm * pl]);
            m = nm;
        }
        // Select: x_last + Σ_{i<last} b_i·(x_i − x_last), and the same for the index.
        let sel = rows * (w - groups);
        let ss = kk * sel;
        let mut t = 0;
        each_group(rows, w, g, |_, start, s| {
            let last = start + s - 1;
            for e in start..last {
                for q in 0..pl {
                    let b = fct[q * nn + e];
                    sa[q * ss + t] = b;
                    sb[q * ss + t] = cv[q * nn + e].wrapping_sub(cv[q * nn + last]);
                    if with_index {
                        sa[q * ss + sel + t] = b;
                        sb[q * ss + sel + t] = ci[q * nn + e].wrapping_sub(ci[q * nn + last]);
                    }
                }
                t += 1;
            }
        });
        p.mul(&sa[..ss * pl], &sb[..ss * pl], &mut so[..ss * pl])?;
        let nl = rows * groups;
        let mut t = 0;
        each_group(rows, w, g, |k, start, s| {
            let last = start + s - 1;
            for q in 0..pl {
                let sum = |base: u64, off: usize| {
                    so[q * ss + off + t..q * ss + off + t + s - 1].iter().fold(base, |acc, v| acc.wrapping_add(*v))
                };
                fa[q * nl + k] = sum(cv[q * nn + last], 0);
                if with_index {
                    fb[q * nl + k] = sum(ci[q * nn + last], sel);
                }
            }
            t += s - 1;
        });
        cv[..nl * pl].copy_from_slice(&fa[..nl * pl]);
        if with_index {
            ci[..nl * pl].copy_from_slice(&fb[..nl * pl]);
        }
        w = groups;
    }
    max.copy_from_slice(&cv[..rows * pl]);
    if let Some(ix) = index {
        ix.copy_from_slice(&ci[..rows * pl]);
    }
    Ok(())
}

// ---- softmax ------------------------------------------------------------------------------

/// Large negative value (in real units) given to masked entries before the row max.
const MASKED: f64 = -1_048_576.0;
/// Softmax clamps max-subtracted scores at `−SOFTMAX_CLAMP` (inside exp's domain; the weight
/// it gives, ≤ 0.5^64, is below anything 16 fractional bits can hold).
const SOFTMAX_CLAMP: f64 = 64.0;

fn ceil_log2(v: usize) -> i32 {
    (usize::BITS - v.saturating_sub(1).leading_zeros()) as i32
}

/// Scratch words for [`softmax`] and [`softmax_2relu`] over `rows × cols`.
pub const fn softmax_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    softmax_scratch_in_groups(rows, cols, 2, planes)
}

/// Scratch words for [`softmax_in_groups`] over `rows × cols` with row-max groups of `group`.
pub const fn softmax_scratch_in_groups(rows: usize, cols: usize, group: usize, planes: usize) -> usize {
    let n = rows * cols;
    5 * n * planes
        + 2 * n
        + 2 * rows * planes
        + row_max_scratch(rows, cols, group, planes)
        + normalised_scratch(rows, planes, -8, 40)
}

/// Whether entry `(r, j)` is visible: with `causal = Some(q)`, rows come in blocks of `q`
/// queries that are the last `q` of the `cols` positions, and a query sees keys up to itself.
fn visible(r: usize, j: usize, cols: usize, causal: Option<usize>) -> bool {
    match causal {
        None => true,
        Some(q) => j + q <= r % q + cols,
    }
}

fn mask_vectors(rows: usize, cols: usize, causal: Option<usize>, f: u32, mask: &mut [u64], fill: &mut [u64]) {
    for r in 0..rows {
        for j in 0..cols {
            let v = visible(r, j, cols, causal);
            mask[r * cols + j] = u64::from(v);
            fill[r * cols + j] = if v { 0 } else { enc(MASKED, f) };
        }
    }
}

/// Shared checks of the row-wise softmaxes: `(f, rows·cols, rows·cols·PLANES)`.
#[allow(clippy::too_many_arguments)]
fn check_rows<P: Protocol>(
    x: &[u64],
    rows: usize,
    cols: usize,
    causal: Option<usize>,
    out: &[u64],
    scratch: &[u64],
    fp: FixedPoint,
    group: usize,
) -> Result<(u32, usize, usize)> {
    let f = check_f(fp)?;
    let n = rows.checked_mul(cols).ok_or(Error::ShapeMismatch)?;
    let len = n * P::PLANES;
    ensure_shape(cols > 0 && group >= 2 && x.len() == len && out.len() == len)?;
    check_causal(rows, cols, causal)?;
    check_scratch(scratch, softmax_scratch_in_groups(rows, cols, group, P::PLANES))?;
    Ok((f, n, len))
}

fn check_causal(rows: usize, cols: usize, causal: Option<usize>) -> Result<()> {
    match causal {
        Some(q) => ensure_shape(q > 0 && q <= cols && rows.is_multiple_of(q)),
        None => Ok(()),
    }
}

/// Row-wise softmax of `rows × cols` scores with an optional causal mask: max-subtracted,
/// `exp`, `reciprocal` of the row sum (range `[2^-1, 2^⌈log2 cols⌉+1)`, 30 output bits),
/// one product. Error ≤ 5e-3 (tested: rows of 128, scores N(0, 2²)). Masked entries get
/// exactly 0. Max-subtracted scores are clamped at −64 (one `relu`: 7 / 8 rounds and one
/// comparison per score) before `exp`, whose polynomial is meaningless below −115: trained
/// models do reach such spreads (the embedded default's base has rows spread past 103, where
/// f32 underflows), and without the clamp their secure tokens differed from the plaintext
/// model's.
pub fn softmax<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    causal: Option<usize>,
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
) -> Result<()> {
    softmax_in_groups(p, x, rows, cols, causal, 2, out, scratch, fp)
}

/// [`softmax`] with the row maximum in groups of `group` ≥ 2 ([`row_max_in_groups`]):
/// the same result (the maximum is exact either way), fewer rounds for more bytes. The
/// runtime uses groups of 4 when decoding, where a step's softmax is one query row per head
/// and rounds dominate, and pairs in the prefill, where the scores are many.
#[allow(clippy::too_many_arguments)]
pub fn softmax_in_groups<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    causal: Option<usize>,
    group: usize,
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
) -> Result<()> {
    let (f, n, len) = check_rows::<P>(x, rows, cols, causal, out, scratch, fp, group)?;
    let pl = P::PLANES;
    let hi = ceil_log2(cols) + 1;
    let [xm, d, ex, es, mask, fill, mx, r, rest] = carve(
        scratch,
        [
            len,
            len,
            len,
            2 * len,
            n,
            n,
            rows * pl,
            rows * pl,
            row_max_scratch(rows, cols, group, pl) + normalised_scratch(rows, pl, -8, 40),
        ],
    );
    mask_vectors(rows, cols, causal, f, mask, fill);
    p.mul_public(x, mask, &mut es[..len])?;
    p.add_public(&es[..len], fill, xm)?;
    row_max_in_groups(p, xm, rows, cols, group, mx, rest)?;
    gather(pl, mx, rows, &mut es[..len], n, |i| i / cols);
    p.sub(xm, &es[..len], d)?;
    // Clamp to exp's domain: d = max(d, −SOFTMAX_CLAMP) = relu(d + C) − C. A trained
    // model's attention can spread far more than 115 within a row (the embedded default's
    // base does), where exp's polynomial would grow again.
    fill.iter_mut().for_each(|v| *v = enc(SOFTMAX_CLAMP, f));
    p.add_public(d, fill, xm)?;
    relu(p, xm, d, &mut es[..len])?;
    fill.iter_mut().for_each(|v| *v = enc(-SOFTMAX_CLAMP, f));
    p.add_public(d, fill, xm)?;
    exp(p, xm, ex, es, fp)?;
    p.mul_public(ex, mask, d)?; // masked entries are exactly 0
    normalise_rows(p, d, rows, cols, -1, hi, out, mx, r, es, rest, fp, false)
}

/// `out = e / rowsum(e)` with the row sum in `[2^lo, 2^hi)`.
fn normalise_rows<P: Protocol>(
    p: &mut P,
    e: &[u64],
    rows: usize,
    cols: usize,
    lo: i32,
    hi: i32,
    out: &mut [u64],
    sums: &mut [u64],
    r: &mut [u64],
    tmp: &mut [u64],
    rest: &mut [u64],
    fp: FixedPoint,
    epsilon: bool,
) -> Result<()> {
    let pl = P::PLANES;
    let n = rows * cols;
    row_sums(pl, e, rows, cols, sums);
    if epsilon {
        // 2ReLU: the ε = 2^lo that keeps an all-zero row away from 1/0
        add_scalar_in_place(p, sums, enc(pow2i(lo), fp.frac_bits))?;
    }
    reciprocal(p, sums, r, rest, fp, lo, hi, F)?;
    gather(pl, r, rows, &mut tmp[..n * pl], n, |i| i / cols);
    p.mul_trunc(e, &tmp[..n * pl], F, out)
}

/// The MPC-friendly softmax MARILL pairs with head merging: `relu(x) / (Σ relu(x) + 2^-8)`
/// row-wise (masked entries 0). No exponential and no row max: ≈ 27 rounds whatever the
/// row length. Scores are assumed below 2^12 in magnitude.
pub fn softmax_2relu<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    causal: Option<usize>,
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
) -> Result<()> {
    let (f, n, len) = check_rows::<P>(x, rows, cols, causal, out, scratch, fp, 2)?;
    let pl = P::PLANES;
    let hi = (ceil_log2(cols) + 12).min(40 - f as i32);
    let [rl, e, t, mask, fill, sums, r, rest] = carve(
        scratch,
        [
            len,
            len,
            3 * len,
            n,
            n,
            rows * pl,
            rows * pl,
            tree_scratch(rows, cols, pl) + normalised_scratch(rows, pl, -8, 40),
        ],
    );
    mask_vectors(rows, cols, causal, f, mask, fill);
    relu(p, x, rl, &mut t[..len])?;
    p.mul_public(rl, mask, e)?;
    normalise_rows(p, e, rows, cols, -8, hi, out, sums, r, t, rest, fp, true)
}

// ---- SiLU and GeLU ---------------------------------------------------------------------

/// Scratch words for [`silu`] and [`gelu`] of `n` elements.
pub const fn act_scratch(n: usize, planes: usize) -> usize {
    34 * n * planes
}

/// `x·σ(x)`, max abs error ≤ 3e-3 (measured 2.7e-3, the tail at |x| = 8). 15 / 17 rounds.
pub fn silu<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64], fp: FixedPoint) -> Result<()> {
    act_poly(p, x, out, scratch, fp, 3, &SILU_COEFFS)
}

/// GeLU, tanh form, max abs error ≤ 5e-3 (fit 1.0e-4). 15 / 17 rounds.
pub fn gelu<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64], fp: FixedPoint) -> Result<()> {
    act_poly(p, x, out, scratch, fp, 2, &GELU_COEFFS)
}

fn act_poly<P: Protocol>(
    p: &mut P,
    x: &[u64],
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
    cut_log2: u32,
    coeffs: &[f64; 9],
) -> Result<()> {
    let f = check_f(fp)?;
    let pl = P::PLANES;
    let len = x.len();
    ensure_shape(out.len() == len && len.is_multiple_of(pl))?;
    let n = len / pl;
    check_scratch(scratch, act_scratch(n, pl))?;
    let [cmp, lt, two_x, two_f, ra, pw, cat_a, cat_b, lv, win, hp] =
        carve(scratch, [3 * len, 3 * len, 2 * len, 2 * len, 2 * len, 8 * len, 4 * len, 4 * len, 4 * len, len, len]);
    let cut = enc(pow2i(cut_log2 as i32), f);
    // One comparison call: [x < cut], [x < −cut], [x < 0].
    p.ltz_many(x, &[cut, cut.wrapping_neg(), 0], lt)?;
    // Window [−cut ≤ x < cut] = [x < cut] − [x < −cut]; sign s = [x < 0].
    for q in 0..pl {
        for e in 0..n {
            let base = q * 3 * n;
            win[q * n + e] = lt[base + e].wrapping_sub(lt[base + n + e]);
            let s = lt[base + 2 * n + e];
            two_f[q * 2 * n + e] = s.wrapping_neg();
            two_f[q * 2 * n + n + e] = s.wrapping_mul(2).wrapping_neg();
        }
    }
    // [relu | |x|] = [x | x] ⊙ [1 − s | 1 − 2s] in one product.
    add_scalar_in_place(p, two_f, 1)?;
    put(pl, x, n, two_x, 2 * n, 0);
    put(pl, x, n, two_x, 2 * n, n);
    p.mul(two_x, two_f, ra)?;
    // u = |x| / cut at F bits: a local shift, since cut is a power of two.
    let [u1, u2, u3, u4, u5, u6, u7, u8] = carve(pw, [len; 8]);
    gather(pl, ra, 2 * n, u1, n, |e| n + e);
    for v in u1.iter_mut() {
        *v = v.wrapping_mul(1u64 << (F - f - cut_log2));
    }
    // Powers in three levels: u², then [u³ | u⁴], then [u⁵ | u⁶ | u⁷ | u⁸].
    p.square_trunc(u1, F, u2)?;
    put(pl, u2, n, cat_a, 2 * n, 0);
    put(pl, u2, n, cat_a, 2 * n, n);
    put(pl, u1, n, cat_b, 2 * n, 0);
    put(pl, u2, n, cat_b, 2 * n, n);
    p.mul_trunc(&cat_a[..2 * len], &cat_b[..2 * len], F, &mut lv[..2 * len])?;
    gather(pl, lv, 2 * n, u3, n, |e| e);
    gather(pl, lv, 2 * n, u4, n, |e| n + e);
    for (k, src) in [&*u1, &*u2, &*u3, &*u4].into_iter().enumerate() {
        put(pl, u4, n, cat_a, 4 * n, k * n);
        put(pl, src, n, cat_b, 4 * n, k * n);
    }
    p.mul_trunc(cat_a, cat_b, F, lv)?;
    gather(pl, lv, 4 * n, u5, n, |e| e);
    gather(pl, lv, 4 * n, u6, n, |e| n + e);
    gather(pl, lv, 4 * n, u7, n, |e| 2 * n + e);
    gather(pl, lv, 4 * n, u8, n, |e| 3 * n + e);
    // h(u) = Σ c_i u^i at F + COEFF_BITS bits (exact in the ring), then back to f bits.
    let acc = &mut cmp[..len];
    acc.fill(0);
    for (c, u) in coeffs[1..].iter().zip([&*u1, &*u2, &*u3, &*u4, &*u5, &*u6, &*u7, &*u8]) {
        let c = enc(*c, COEFF_BITS);
        for (a, v) in acc.iter_mut().zip(u) {
            *a = a.wrapping_add(v.wrapping_mul(c));
        }
    }
    add_scalar_in_place(p, acc, enc(coeffs[0], F + COEFF_BITS))?;
    p.trunc(acc, F + COEFF_BITS - f, hp)?;
    // act = relu + window·h (the product with a bit is exact; outside the window the
    // powers overflow and are garbage, multiplied by 0).
    p.mul(hp, win, &mut two_x[..len])?;
    gather(pl, ra, 2 * n, out, n, |e| e);
    crate::ring::add_assign(out, &two_x[..len])
}
