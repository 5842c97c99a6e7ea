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
//! Shared building blocks: `ltz` (4 / 5 rounds, exact), `mul_trunc` and `square_trunc`
//! (2 / 2 rounds; exact-range truncation, error ⌊·⌋ + {0, 1}), comparisons batched so that
//! every comparison of one step is one `ltz` call. Internal precision is raised where a
//! recipe needs it (`F = 30` fractional bits for values ≤ 1, whose products stay below
//! 2^62, the range of exact truncation).
//!
//! | op | recipe | input range | error bound (tested) | rounds |
//! |---|---|---|---|---|
//! | [`relu`] | `x·(1 − [x<0])` | any | exact | 5 / 6 |
//! | [`exp`] | `((1+t)²+1)/2 = 1+t+t²/2`, `t = x/64`, squared 6× (one chain) | `[-115, 0]` | 1.5e-3 abs | 8 / 8 |
//! | [`reciprocal`] | thermometer (4 per octave) + a minimax quadratic, three products | `[2^lo, 2^hi)` | 1e-3 rel | 10 / 11 |
//! | [`rsqrt`] | the same, with the quadratic of `u^-1/2` | `[2^lo, 2^hi)` | 1e-3 rel | 10 / 11 |
//! | [`rms_norm`] | `[x² | x⊙gain]` in one product, then `rsqrt`'s two products scale `x⊙gain` | rows of `d` | 1e-3 | 8 / 8 |
//! | [`softmax`] | row max (tree: pairwise, or in groups of 4 with [`softmax_in_groups`]), clamp below −64 (its bits from the max's last level), `exp`, the reciprocal's two products scaling `e` | rows of `C` | 5e-3 | 33 / 38 at `C = 64` in groups of 4 (the model's prefill) |
//! | [`softmax_2relu`] | `relu(x) / (Σ relu(x) + 2^-8)` | any | 5e-3 | 13 / 15 |
//! | [`silu`], [`gelu`] | `relu(x) + h(|x|)`, `h` a degree-8 fit on one window | any | 3e-3 / 5e-3 | 10 / 11 (powers as one `poly_chain`) |
//! | [`argmax`] | tournament in groups of 8, lowest index on ties | rows of `C` | exact | 7·⌈log8 C⌉ / 8·⌈log8 C⌉ at most |
//!
//! **Normalisation by thermometer codes.** For `x ∈ [2^lo, 2^hi)` one batched comparison
//! gives the bits `b_m = [x ≥ θ_m]` against the thresholds `θ_m = 2^(lo + m/16)` (in a
//! softmax, where one input scales a row; 32 per octave in RMSNorm and 2ReLU; elementwise,
//! 4 per octave and a quadratic, see [`reciprocal`]; rows in plain 2PC, whose comparisons
//! are dear, 8 per octave and a quadratic). They form
//! a thermometer code of the interval `i = Σ b_m` with `x ∈ [θ_i, θ_{i+1})`, so *any*
//! function of `i` is linear in them: `g(i) = g(0) + Σ_m b_m·(g(m) − g(m−1))` with public
//! coefficients — local. With `s = 1/θ_{i+1}`, `u = x·s ∈ [2^(−1/16), 1)`, where a
//! minimax line `a + b·u` is within 2.4e-4 of `1/u` and 8.8e-5 of `1/√u`; so
//! `v·x^(−1) = (v·s)·(a + b·x·s)` and `v·x^(−1/2) = (v·√s)·(a + b·x·s)`: one product
//! makes `x·(b·s)` and `v·g` side by side (both scales are functions of `i`), one more
//! multiplies them. Sixteen thresholds per octave cost comparisons (rows × thresholds:
//! per row of a norm or a softmax, not per element) but replace the Newton steps and the
//! separate scaling products, which took 8–10 rounds more.
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

/// `o_k = trunc(x_k ⊙ y_k, shift)` for `K` parts of `lens[k]` elements per plane, in one
/// call (one product's rounds); `cat_a`, `cat_b` and `prod` hold `Σ lens` per plane.
#[allow(clippy::too_many_arguments)]
fn mul_trunc_parts<P: Protocol, const K: usize>(
    p: &mut P,
    lens: [usize; K],
    x: [&[u64]; K],
    y: [&[u64]; K],
    shift: u32,
    out: [&mut [u64]; K],
    cat_a: &mut [u64],
    cat_b: &mut [u64],
    prod: &mut [u64],
) -> Result<()> {
    let (pl, total) = (P::PLANES, lens.iter().sum::<usize>());
    let m = total * pl;
    let mut at = 0;
    for k in 0..K {
        put(pl, x[k], lens[k], cat_a, total, at);
        put(pl, y[k], lens[k], cat_b, total, at);
        at += lens[k];
    }
    p.mul_trunc(&cat_a[..m], &cat_b[..m], shift, &mut prod[..m])?;
    let mut at = 0;
    for (k, o) in out.into_iter().enumerate() {
        gather(pl, prod, total, o, lens[k], |e| at + e);
        at += lens[k];
    }
    Ok(())
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

/// `out = max(x, 0)`: `x·(1 − [x<0])`. Exact. 5 / 6 rounds.
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
/// one truncation: 12 rounds step by step, 96 bytes per element and compute party. In
/// 2PC-Dealer the seven squarings run as one [`Protocol::square_chain`], where each
/// truncation's opening also opens the next square's operand: 8 rounds, 64 bytes per
/// element and compute party (the dealer 168, against 136). 3PC chains them too (its first
/// square is local, and one round reshares at the end): 8 rounds instead of 14.
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
    exp_of_base(p, a, b, out, f)
}

/// [`exp`]'s seven squarings as [`Protocol::square_chain`] steps.
fn exp_steps(f: u32) -> [(u64, u32); 7] {
    [(0, F + 1), (1u64 << (F - 1), F), (0, F + 15), (0, 0), (0, 45), (0, 0), (0, 60 - f)]
}

/// [`exp`] from `a = 1 + x/64` at `F` bits, `b` as scratch (`a` is overwritten).
fn exp_of_base<P: Protocol>(p: &mut P, a: &mut [u64], b: &mut [u64], out: &mut [u64], f: u32) -> Result<()> {
    // The same seven squarings as below, as one chain where the protocol has it.
    if p.square_chain(a, &exp_steps(f), out)? {
        return Ok(());
    }
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

/// Thresholds per octave of the normalising thermometer where one input scales many values
/// (a softmax's row): the comparisons are per input, the products per value.
const FINE: i32 = 16;
/// The same for RMSNorm's inverse square root and 2ReLU's reciprocal, whose errors the
/// layers compound (a random 4-layer 2ReLU + ReLU model's hidden states: 4.6e-2 off at 16,
/// 1.0e-2 at 32): the line's error falls with the square of the interval.
const FINER: i32 = 32;
/// Thresholds per octave where each input is one value (elementwise [`reciprocal`] and
/// [`rsqrt`]): a quarter of the comparisons, one product more.
const COARSE: i32 = 4;
/// Thresholds per octave for rows where comparisons are dear ([`Protocol::CHEAP_COMPARISONS`]
/// false: plain 2PC's cost about 1.3 KB of OTs each), with the quadratic: a quarter of
/// [`FINER`]'s comparisons, one product more.
const MID: i32 = 8;

/// `2^(j/32)`, `0 ≤ j < 32`.
const POW2_32: [f64; 32] = [
    1.0,
    1.0218971486541166,
    1.0442737824274138,
    1.0671404006768237,
    1.0905077326652577,
    1.1143867425958924,
    1.1387886347566916,
    1.1637248587775775,
    1.189207115002721,
    1.215247359980469,
    1.241857812073484,
    1.2690509571917332,
    1.2968395546510096,
    1.3252366431597413,
    1.3542555469368927,
    1.383909881963832,
    core::f64::consts::SQRT_2,
    1.4451808069770467,
    1.4768261459394993,
    1.5091644275934228,
    1.5422108254079407,
    1.5759808451078865,
    1.6104903319492543,
    1.645755478153965,
    1.681792830507429,
    1.718619298122478,
    1.7562521603732995,
    1.7947090750031072,
    1.8340080864093424,
    1.8741676341103,
    1.9152065613971474,
    1.9571441241754002,
];

/// `2^(e/32)`.
fn pow2_32(e: i32) -> f64 {
    pow2i(e.div_euclid(32)) * POW2_32[e.rem_euclid(32) as usize]
}

/// Thresholds of the thermometer over `[2^lo, 2^hi)` with `per` to an octave:
/// `θ_m = 2^(lo + m/per)`, `0 < m < T`.
const fn thresholds(lo: i32, hi: i32, per: i32) -> usize {
    if hi > lo { ((hi - lo) * per - 1) as usize } else { 0 }
}

/// `θ_m` as a power of `2^(1/32)`: `θ_m = 2^(theta_e(lo, m, per)/32)` (`per` divides 32).
fn theta_e(lo: i32, m: usize, per: i32) -> i32 {
    32 * lo + m as i32 * (32 / per)
}

/// `out = g(i)` as shares at `bits` fractional bits, `i` the interval of each of `n`
/// elements given by a thermometer `b` of `t` thresholds: `g(0) + Σ_m b_m (g(m) − g(m−1))`
/// (public coefficients: local).
fn from_thermometer<P: Protocol>(
    p: &P,
    b: &[u64],
    n: usize,
    t: usize,
    g: impl Fn(usize) -> f64,
    bits: u32,
    out: &mut [u64],
) -> Result<()> {
    let pl = P::PLANES;
    out.fill(0);
    let mut prev = enc(g(0), bits);
    for k in 0..t {
        let next = enc(g(k + 1), bits);
        let coef = next.wrapping_sub(prev);
        prev = next;
        for q in 0..pl {
            let src = &b[q * t * n + k * n..q * t * n + (k + 1) * n];
            let dst = &mut out[q * n..(q + 1) * n];
            for (d, s) in dst.iter_mut().zip(src) {
                *d = d.wrapping_add(s.wrapping_mul(coef));
            }
        }
    }
    add_scalar_in_place(p, out, enc(g(0), bits))
}

/// The map of [`from_thermometer`] on the comparison bits `[x < θ_m]` instead of the
/// thermometer's `b_m = 1 − [x < θ_m]`: `g(i) = g(T) − Σ_m (g(m+1) − g(m))·[x < θ_m]` (in
/// the ring, exactly the same value). Fills `coef` (`t` words) and returns the constant.
fn lt_map(g: impl Fn(usize) -> f64, bits: u32, t: usize, coef: &mut [u64]) -> u64 {
    let mut prev = enc(g(0), bits);
    for (k, c) in coef.iter_mut().take(t).enumerate() {
        let next = enc(g(k + 1), bits);
        *c = prev.wrapping_sub(next);
        prev = next;
    }
    enc(g(t), bits)
}

/// Scratch words for [`reciprocal`] / [`rsqrt`] of `n` elements over `[2^lo, 2^hi)`.
pub const fn normalised_scratch(n: usize, planes: usize, lo: i32, hi: i32) -> usize {
    inverse_scratch(n, 1, planes, lo, hi, COARSE)
}

/// Scratch words of [`inverse`] for `rows` inputs scaling `rows × cols` values with `per`
/// thresholds per octave (see [`Kind::per_octave`]).
const fn inverse_scratch(rows: usize, cols: usize, planes: usize, lo: i32, hi: i32, per: i32) -> usize {
    let t = thresholds(lo, hi, per);
    let rl = rows * planes;
    let nl = rows * cols * planes;
    t + 2 * t * rl + 3 * rl + 4 * (2 * rl + nl) + 2 * nl + 3 * t + 3
}

fn check_range(lo: i32, hi: i32, f: u32) -> Result<()> {
    // Thresholds must be representable at f bits, and the scales 2^-hi precise enough.
    if hi <= lo || hi - lo > 64 || lo < -(f as i32) + 2 || hi > 46 - f as i32 {
        return Err(Error::InvalidArgument);
    }
    Ok(())
}

/// `out = 1/x` at `out_bits` fractional bits, for `x ∈ [2^lo, 2^hi)` at `fp` bits:
/// relative error ≤ 1e-3 (tested on [1, 1000]; the recipe's quadratic 1.6e-4).
///
/// A thermometer of 4 thresholds per octave (one batched comparison) puts `x` in an
/// interval `[θ_i, θ_{i+1})` of ratio `2^(1/4)`; with `s = 1/θ_{i+1}` (linear in the
/// thermometer bits, so local), `u = x·s ∈ [2^(−1/4), 1)`, where the minimax quadratic
/// `a + b·u + c·u² ≈ 1/u` is within 1.6e-4. Then `1/x = s·(a + b·u + c·u²)`: one product
/// makes `b·u` and `√c·u` (their scales are again linear in the bits), a squaring `c·u²`,
/// one more product multiplies by `s`. Rounds: 4 + 2 + 2 + 2 = 10 in 2PC-Dealer. (Softmax
/// and RMSNorm, where one input scales a whole row, use 16 thresholds per octave and a
/// line instead, and fold the scaling into the row: 7 rounds in 2PC-Dealer, 8 in 3PC.) Outside the range the
/// result is wrong (no error is raised: the range is the caller's promise).
#[allow(clippy::too_many_arguments)]
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
    inverse(p, x, None, 1, out, scratch, fp, lo, hi, out_bits, Kind::Recip, 1.0, 0, false, None)
}

/// `out = 1/√x` at `out_bits` fractional bits for `x ∈ [2^lo, 2^hi)`: relative error ≤ 1e-3
/// (tested on [0.01, 100]; the recipe's quadratic 5.1e-5). As [`reciprocal`], with
/// `1/√x = √s·(a + b·u + c·u²)` for the minimax quadratic of `1/√u` on `[2^(−1/4), 1)`.
/// Rounds: 4 + 2 + 2 + 2 = 10 in 2PC-Dealer.
#[allow(clippy::too_many_arguments)]
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
    inverse(p, x, None, 1, out, scratch, fp, lo, hi, out_bits, Kind::Rsqrt, 1.0, 0, false, None)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Recip,
    Rsqrt,
}

impl Kind {
    /// Thresholds per octave: with values to scale, [`FINER`] for the inverse square root
    /// and where asked, else [`FINE`]; elementwise, [`COARSE`].
    const fn per_octave(self, with_values: bool, finer: bool) -> i32 {
        match (with_values, self, finer) {
            (false, ..) => COARSE,
            (true, Kind::Rsqrt, _) | (true, Kind::Recip, true) => FINER,
            (true, Kind::Recip, false) => FINE,
        }
    }

    /// `a + b·u` ≈ `u^-1` or `u^-1/2` on `[2^(−1/per), 1)` (minimax relative: at 16 per
    /// octave 2.35e-4 and 8.8e-5, at 32 5.9e-5 and 2.2e-5).
    fn line(self, per: i32) -> (f64, f64) {
        match (self, per == FINER) {
            (Kind::Recip, false) => (2.0437936249838153, -1.0440284997036806),
            (Kind::Recip, true) => (2.021778468522379, -1.021837165443895),
            (Kind::Rsqrt, false) => (1.5163485721151242, -0.5164366530350898),
            (Kind::Rsqrt, true) => (1.5081485087418698, -0.5081705202690125),
        }
    }

    /// `a + b·u + c·u²` ≈ `u^-1` or `u^-1/2` on `[2^(−1/per), 1)` (minimax relative: at 4
    /// per octave 1.6e-4 and 5.1e-5, at 8 2.0e-5 and 6.4e-6).
    fn quadratic(self, per: i32) -> (f64, f64, f64) {
        match (self, per == MID) {
            (Kind::Recip, false) => (3.271509386978701, -3.5608987351741126, 1.2895521658628553),
            (Kind::Recip, true) => (3.132820247993356, -3.2699862543218146, 1.1371863453188131),
            (Kind::Rsqrt, false) => (1.958239759857983, -1.4219765048561737, 0.4637876574859083),
            (Kind::Rsqrt, true) => (1.916113072061331, -1.3335729673475798, 0.41746625220394284),
        }
    }

    /// The factor `g` for interval `i` (upper edge `θ_{i+1}`): `1/θ` or `1/√θ`.
    fn factor(self, lo: i32, i: usize, per: i32) -> f64 {
        let e = theta_e(lo, i + 1, per);
        match self {
            Kind::Recip => pow2_32(-e),
            // 2^(−e/64): an odd e leaves a half step of 2^(−1/64).
            Kind::Rsqrt => pow2_32(-e.div_euclid(2)) * if e.rem_euclid(2) == 1 { 0.9892280131939755 } else { 1.0 },
        }
    }
}

/// Fractional bits of `a + b·x·s` (a value in `(1, 1.05]`).
const NB: u32 = 29;

/// `out[r·cols + c] = v[r·cols + c] · post · x_r^k` (`k = −1` or `−1/2`, `x_r ∈ [2^lo,
/// 2^hi)`) at `out_bits`, given `|out| < 2^out_log2`; without `v`, `cols = 1` and `v = 1`.
///
/// With `v`: 16 thresholds per octave, `g = post·θ_{i+1}^k` and `L = a + b·x·θ_{i+1}^-1`
/// (see [`reciprocal`]): one batched product gives `b·x/θ` and `w = v·g` together, a second
/// gives `w·L`: 4 + 2 + 2 rounds for the whole `v·x^k` step by step, 4 + 3 in 2PC-Dealer
/// and 5 + 3 in 3PC, whose [`Protocol::mul_trunc_scaled`] multiplies the first product's
/// outputs unopened. Without `v` (one value per input):
/// 4 thresholds per octave and a quadratic `a + b·u + c·u²`, whose `b·u` and `√c·u` come
/// from one product, `c·u²` from a squaring, and `g·(…)` from a third: 4 + 2 + 2 + 2 rounds.
#[allow(clippy::too_many_arguments)]
fn inverse<P: Protocol>(
    p: &mut P,
    x: &[u64],
    v: Option<&[u64]>,
    cols: usize,
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
    lo: i32,
    hi: i32,
    out_bits: u32,
    kind: Kind,
    post: f64,
    out_log2: i32,
    finer: bool,
    pre: Option<&[u64]>,
) -> Result<()> {
    let f = check_f(fp)?;
    check_range(lo, hi, f)?;
    let pl = P::PLANES;
    ensure_shape(x.len().is_multiple_of(pl) && cols > 0)?;
    let rows = x.len() / pl;
    let n = rows.checked_mul(cols).ok_or(Error::ShapeMismatch)?;
    let (rl, nl) = (rows * pl, n * pl);
    ensure_shape(out.len() == nl && v.is_none_or(|v| v.len() == nl) && (v.is_some() || cols == 1))?;
    if out_bits == 0 || out_bits > 40 || post.is_nan() || post <= 0.0 {
        return Err(Error::InvalidArgument);
    }
    let per = if P::CHEAP_COMPARISONS || v.is_none() { kind.per_octave(v.is_some(), finer) } else { MID };
    let quadratic = per == COARSE || per == MID;
    check_scratch(scratch, inverse_scratch(rows, cols, pl, lo, hi, per))?;
    let t = thresholds(lo, hi, per);
    // The largest factor g (the lowest interval) bounds the output when there is no v.
    let g_max = post * kind.factor(lo, 0, per) * 1.0001;
    let g_min = post * kind.factor(lo, t, per);
    let v_log2 = match v {
        Some(_) => out_log2,
        None => ceil_log2_f64(g_max * 1.2).max(0) + 1,
    };
    // Widths: w = v·g at W bits, L at nb bits, their product at W + nb (< 2^(61 − v_log2)).
    // With v, the batched product shares one shift sh = f + s_bits − nb between x·(b·s)
    // (below 2^(f + s_bits), s_bits ≤ 61 − f) and v·g (g at G = W + sh − f bits, below
    // 2^61). Without, x·(b·s) and x·(√c·s) (|b|, √c < 4) are below 2^(f + s_bits + 2).
    let w_bits = (out_bits + 1) as i32;
    let nb = (NB as i32).min(61 - w_bits - v_log2);
    let s_cap = if quadratic { 59 } else { 61 } - f as i32;
    let (s_bits, g_bits) = match v {
        Some(_) => {
            let g_cap = 61 - f as i32 - v_log2;
            let s_bits = s_cap.min(g_cap - w_bits + nb);
            (s_bits, w_bits + s_bits - nb)
        }
        None => (s_cap, w_bits),
    };
    let sh = f as i32 + s_bits - nb;
    // s down to 2^-hi and g down to g_min need ≥ 12 bits each; L needs ≥ 16.
    if nb < 16 || s_bits < hi + 12 || sh < 1 || g_bits + floor_log2_f64(g_min) < 12 {
        return Err(Error::InvalidArgument);
    }
    let (s_bits, g_bits, nb, sh, w_bits) = (s_bits as u32, g_bits as u32, nb as u32, sh as u32, w_bits as u32);
    let [offsets, bits, tmp, bs, cs, g, cat_a, cat_b, prod, res, lb, gb, coefs] = carve(
        scratch,
        [t, t * rl, t * rl, rl, rl, rl, 2 * rl + nl, 2 * rl + nl, 2 * rl + nl, rl + nl, nl, nl, 3 * t + 3],
    );
    let s = |i: usize| Kind::Recip.factor(lo, i, per);
    // What the thermometer is read for: the interval's factor g, and the quadratic's b·s
    // and √c·s (c·u² after a squaring) or the line's b·s; each a public linear map of the
    // bits.
    let (a, b, c) = if quadratic {
        kind.quadratic(per)
    } else {
        let (a, b) = kind.line(per);
        (a, b, 0.0)
    };
    let g_of = |i: usize| post * kind.factor(lo, i, per);
    let bs_of = |i: usize| b * s(i);
    let cs_of = |i: usize| sqrt_f64(c) * s(i);
    match pre {
        // [x < θ_m] already made (RMSNorm's fused statistics): b = 1 − it
        Some(lt) => {
            ensure_shape(lt.len() == t * rl)?;
            rsub_public(p, 1, lt, &mut bits[..t * rl])?;
            from_thermometer(p, bits, rows, t, g_of, g_bits, g)?;
            from_thermometer(p, bits, rows, t, bs_of, s_bits, bs)?;
            if quadratic {
                from_thermometer(p, bits, rows, t, cs_of, s_bits, cs)?;
            }
        }
        None => {
            // One comparison against every threshold, read through the maps: where the
            // protocol reshares what it reads (3PC), the maps' values only, not each bit.
            for (m, o) in offsets[..t].iter_mut().enumerate() {
                *o = enc(pow2_32(theta_e(lo, m + 1, per)), f);
            }
            let maps = if quadratic { 3 } else { 2 };
            let (coef, consts) = coefs.split_at_mut(3 * t);
            consts[0] = lt_map(g_of, g_bits, t, &mut coef[..t]);
            consts[1] = lt_map(bs_of, s_bits, t, &mut coef[t..2 * t]);
            if quadratic {
                consts[2] = lt_map(cs_of, s_bits, t, &mut coef[2 * t..3 * t]);
            }
            let mapped = &mut cat_a[..maps * rl];
            p.ltz_many_mapped(x, &offsets[..t], &coef[..maps * t], &consts[..maps], mapped, &mut tmp[..t * rl])?;
            g.copy_from_slice(&mapped[..rl]);
            bs.copy_from_slice(&mapped[rl..2 * rl]);
            if quadratic {
                cs.copy_from_slice(&mapped[2 * rl..3 * rl]);
            }
        }
    }
    let (l, w) = res.split_at_mut(rl);
    let cu = &mut tmp[..rl]; // free once the thermometer is read
    match (v, quadratic) {
        (Some(v), true) => {
            gather(pl, g, rows, gb, n, |e| e / cols);
            let parts = [rows, rows, n];
            mul_trunc_parts(p, parts, [x, x, v], [bs, cs, gb], sh, [l, cu, &mut w[..nl]], cat_a, cat_b, prod)?;
        }
        (Some(v), false) => {
            gather(pl, g, rows, gb, n, |e| e / cols);
            // Where the protocol multiplies the two products' outputs without opening them
            // (2PC-Dealer), `(a + b·x/θ)·(v·g)` is one call, a round fewer.
            let m = rows + n;
            put(pl, x, rows, cat_a, m, 0);
            put(pl, v, n, cat_a, m, rows);
            put(pl, bs, rows, cat_b, m, 0);
            put(pl, gb, n, cat_b, m, rows);
            let shifts = (sh, w_bits + nb - out_bits);
            if p.mul_trunc_scaled(&cat_a[..m * pl], &cat_b[..m * pl], rows, cols, shifts, enc(a, nb), out)? {
                return Ok(());
            }
            mul_trunc_parts(p, [rows, n], [x, v], [bs, gb], sh, [l, &mut w[..nl]], cat_a, cat_b, prod)?;
        }
        (None, _) => {
            mul_trunc_parts(p, [rows, rows], [x, x], [bs, cs], sh, [l, cu], cat_a, cat_b, prod)?;
            w[..nl].copy_from_slice(g);
        }
    }
    if quadratic {
        p.square_trunc(cu, nb, &mut cat_a[..rl])?; // c·u²
        crate::ring::add_assign(l, &cat_a[..rl])?;
    }
    add_scalar_in_place(p, l, enc(a, nb))?; // L = a + b·u (+ c·u²)
    gather(pl, l, rows, lb, n, |e| e / cols);
    p.mul_trunc(&w[..nl], lb, w_bits + nb - out_bits, out)
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

/// The lowest octave of [`rms_norm`]'s thermometer for `d` and `eps`.
fn rms_lo(d: usize, eps: f64) -> i32 {
    floor_log2_f64(d as f64 * eps).max(-24)
}

/// Scratch words for [`rms_norm`] over `rows × d` (with `eps ≥ 2^-24 / d`, as any model has).
pub const fn rms_norm_scratch(rows: usize, d: usize, planes: usize) -> usize {
    let t = thresholds(-24, RMS_SUM_LOG2_MAX, FINER);
    6 * rows * d * planes
        + rows * planes
        + t
        + t * rows * planes
        + inverse_scratch(rows, d, planes, -24, RMS_SUM_LOG2_MAX, FINER)
}

/// `out = x / √(mean(x²) + eps) ⊙ gain`, row-wise over `rows × d`; error ≤ 1e-3 for
/// `|x| < 2^15`, row sums of squares below 2^30 (the most 16 fractional bits allow;
/// SmolLM2-135M's attention-sink rows reach 2^29.2) and outputs below 2^15.
///
/// One product gives `x²` and `x ⊙ gain` together (a public gain as trivial shares); the
/// row sums of `x²` go through [`rsqrt`]'s thermometer, and its two products scale
/// `x ⊙ gain` directly (`√d` folded into the factor). Rounds: 2 + 4 + 3 = 9 in
/// 2PC-Dealer, 2 + 5 + 3 = 10 in 3PC step by step; with [`Protocol::norm_stats`] (the row
/// sums truncated once each, not per square, and compared before truncation in the same
/// opening round) 1 + 1 + 3 + 3 = 8 and 0 + 4 + 1 + 3 = 8.
#[allow(clippy::too_many_arguments)]
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
    let lo = rms_lo(d, eps);
    check_range(lo, RMS_SUM_LOG2_MAX, f)?;
    check_scratch(scratch, rms_norm_scratch(rows, d, pl))?;
    let tmax = thresholds(-24, RMS_SUM_LOG2_MAX, FINER);
    let [cat_a, cat_b, prods, ssum, thetas, lt, rest] = carve(
        scratch,
        [
            2 * len,
            2 * len,
            2 * len,
            rows * pl,
            tmax,
            tmax * rows * pl,
            inverse_scratch(rows, d, pl, lo, RMS_SUM_LOG2_MAX, FINER),
        ],
    );
    // [x | x] ⊙ [x | gain] → [x² | x ⊙ gain].
    put(pl, x, n, cat_a, 2 * n, 0);
    put(pl, x, n, cat_a, 2 * n, n);
    put(pl, x, n, cat_b, 2 * n, 0);
    match gain {
        Gain::Public(g) => {
            // Trivial shares of the public gain (the public plane holds it).
            let (gb, shares) = prods.split_at_mut(n);
            for (i, v) in gb.iter_mut().enumerate() {
                *v = g[i % d];
            }
            out.fill(0);
            p.add_public(out, gb, &mut shares[..len])?;
            put(pl, &shares[..len], n, cat_b, 2 * n, n);
        }
        Gain::Shared(g) => {
            for q in 0..pl {
                for i in 0..n {
                    cat_b[q * 2 * n + n + i] = g[q * d + i % d];
                }
            }
        }
    }
    // Fused where the protocol has it: the products, their row sums' truncation and their
    // thermometer's comparisons (on the untruncated sums, thresholds at 2f bits) opened in
    // one round.
    let per = if P::CHEAP_COMPARISONS { Kind::Rsqrt.per_octave(true, false) } else { MID };
    let t = thresholds(lo, RMS_SUM_LOG2_MAX, per);
    for (m, o) in thetas[..t].iter_mut().enumerate() {
        *o = enc(pow2_32(theta_e(lo, m + 1, per)), 2 * f);
    }
    let lt = &mut lt[..t * rows * pl];
    let add = enc(d as f64 * eps, 2 * f);
    let fused = p.norm_stats(cat_a, cat_b, rows, d, (add, f), &thetas[..t], ssum, &mut prods[..len], lt)?;
    let xg: &[u64] = if fused {
        &prods[..len]
    } else {
        p.mul_trunc(cat_a, cat_b, f, prods)?;
        let (sq, xg) = (&mut cat_a[..len], &mut cat_b[..len]);
        gather(pl, prods, 2 * n, sq, n, |e| e);
        gather(pl, prods, 2 * n, xg, n, |e| n + e);
        row_sums(pl, sq, rows, d, ssum);
        add_scalar_in_place(p, ssum, enc(d as f64 * eps, f))?;
        xg
    };
    let (post, pre) = (sqrt_f64(d as f64), fused.then_some(&*lt));
    inverse(p, ssum, Some(xg), d, out, rest, fp, lo, RMS_SUM_LOG2_MAX, f, Kind::Rsqrt, post, 15, false, pre)
}

// ---- row max and argmax -------------------------------------------------------------------

/// Scratch words for [`row_max`] over `rows × cols`.
pub const fn tree_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    row_max_scratch(rows, cols, 2, planes)
}

/// Scratch words for [`row_max_in_groups`] over `rows × cols` in groups of `group`.
pub const fn row_max_scratch(rows: usize, cols: usize, group: usize, planes: usize) -> usize {
    grouped_scratch(rows, cols, if group < 2 { 2 } else { group }, false, false, planes)
}

/// Row-wise maximum of `rows × cols` into `out` (`rows` elements). Exact. A pairwise
/// tournament: each level compares neighbours in one batched `ltz` and selects with one
/// product, `⌈log2 cols⌉` levels of 5 / 6 rounds, one comparison and one product per entry
/// in all.
pub fn row_max<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    out: &mut [u64],
    scratch: &mut [u64],
) -> Result<()> {
    grouped(p, x, rows, cols, 2, out, None, None, scratch)
}

/// [`row_max`] as a tournament in groups of `group` ≥ 2 ([`grouped`]): groups of 4 take
/// `⌈log4 cols⌉` levels of 6 / 7 rounds (18 / 21 over 64 columns, against 30 / 36
/// pairwise) for 2 comparisons and about 3 exact products per entry instead of 1 and 1.
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
    grouped(p, x, rows, cols, group, out, None, None, scratch)
}

/// Group size of [`argmax`]'s tournament.
pub const ARGMAX_GROUP: usize = 8;

/// Scratch words for [`argmax`] over `rows × cols`.
pub const fn argmax_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    grouped_scratch(rows, cols, ARGMAX_GROUP, true, false, planes)
}

/// Scratch words of a tournament in groups of `k` (with the index or without).
const fn grouped_scratch(rows: usize, cols: usize, k: usize, with_index: bool, clamp: bool, planes: usize) -> usize {
    let n = rows * cols;
    let (half, idx) = (k.div_ceil(2), if with_index { 2 } else { 1 });
    let cl = if clamp { 3 * k + 3 * half } else { 0 };
    planes * n * (idx + 2 * half + k + 2 * (idx - 1) + 3 * (half + 1) + cl)
}

/// `grouped`'s clamp: besides the maximum `m` of each row, the bits `[x_i + c < m]` of
/// the entries `visible` marks (0 elsewhere), as `1 − Π_j (1 − [x_i + c < M_j])` over the
/// last level's candidates `M_j`: their comparisons join the last level's, and their
/// products its products, so the bits cost no round.
struct Clamp<'a> {
    /// `c` at the input's fractional bits.
    offset: u64,
    /// Public 0/1 per entry.
    visible: &'a [u64],
    /// The bits, `rows·cols·PLANES` words.
    bits: &'a mut [u64],
}

/// Row-wise argmax: shares of the index (an integer, not fixed point) and of the maximum.
/// Exact; on ties the lowest index wins. A tournament in groups of [`ARGMAX_GROUP`]
/// ([`grouped`]): over 32 000 entries, 5 levels, 35 / 40 rounds (a pairwise tree: 75 /
/// 90), 6.4 MB per compute party in 2PC-Dealer (the pairwise tree: 1.5 MB; with 6-round
/// comparisons, groups of 16 took 43 rounds and 12.4 MB, a poor trade on a LAN).
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
    grouped(p, x, rows, cols, ARGMAX_GROUP, max, Some(index), None, scratch)
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
/// towards the lower index is a strict order) is a product of `k − 1` bits, and the group's
/// maximum is `x_last + Σ_{i<last} b_i·(x_i − x_last)`. Each term `b_i·(x_i − x_last)` is
/// one product of `k` factors (the bits and the difference), multiplied down pairwise in
/// `⌈log2 k⌉` rounds of exact products, so the selection shares the bits' last round (the
/// index, when asked, takes a second copy of the difference's path: `⌈log2 k⌉` products
/// more). A level is `ltz + ⌈log2 k⌉` rounds (4 + 2 over groups of 4 in 2PC-Dealer) and
/// divides the width by `k`, at `(k−1)/2` comparisons and `(k−1)²/k` products per entry
/// (`+ (k−1)·⌈log2 k⌉/k` with the index); the last element of a group needs no indicator.
#[allow(clippy::too_many_arguments)]
fn grouped<P: Protocol>(
    p: &mut P,
    x: &[u64],
    rows: usize,
    cols: usize,
    k: usize,
    max: &mut [u64],
    index: Option<&mut [u64]>,
    mut clamp: Option<Clamp<'_>>,
    scratch: &mut [u64],
) -> Result<()> {
    let pl = P::PLANES;
    let n = rows.checked_mul(cols).ok_or(Error::ShapeMismatch)?;
    ensure_shape(k >= 2 && cols > 0 && x.len() == n * pl && max.len() == rows * pl)?;
    let with_index = index.is_some();
    if let Some(c) = &clamp {
        ensure_shape(!with_index && c.visible.len() == n && c.bits.len() == n * pl)?;
    }
    check_scratch(scratch, grouped_scratch(rows, cols, k, with_index, clamp.is_some(), pl))?;
    let (half, ix) = (k.div_ceil(2), if with_index { n * pl } else { 0 });
    let cl = if clamp.is_some() { n * pl } else { 0 };
    let [cv, ci, cin, cout, fct, vu, vu2, fa, fb, fo] = carve(
        scratch,
        [
            n * pl,
            ix,
            n * half * pl + k * cl,
            n * half * pl + k * cl,
            n * k * pl + k * cl,
            ix,
            ix,
            n * (half + 1) * pl + half * cl,
            n * (half + 1) * pl + half * cl,
            n * (half + 1) * pl + half * cl,
        ],
    );
    if let Some(c) = &mut clamp {
        c.bits.fill(0);
    }
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
        // Every pair of every group, in one comparison; at the last level (one group a
        // row) also each visible entry of the row against each candidate, for the clamp.
        let mut c_pairs = 0;
        each_group(rows, w, g, |_, _, s| c_pairs += s * (s - 1) / 2);
        let vis: usize = match &clamp {
            Some(c) if groups == 1 => c.visible.iter().filter(|v| **v != 0).count(),
            _ => 0,
        };
        let c_all = c_pairs + vis * g;
        each_pair(rows, w, g, |c, a, b| {
            for q in 0..pl {
                cin[q * c_all + c] = cv[q * nn + a].wrapping_sub(cv[q * nn + b]);
            }
        });
        if let (Some(c), true) = (&clamp, vis > 0) {
            // [x_i + offset − M_j < 0], entry by entry (visible ones), candidate by candidate
            let mut at = c_pairs;
            for (i, _) in c.visible.iter().enumerate().filter(|v| *v.1 != 0) {
                let r = i / cols;
                for j in 0..g {
                    for q in 0..pl {
                        let off = if public == Some(q) { c.offset } else { 0 };
                        cin[q * c_all + at] = x[q * n + i].wrapping_add(off).wrapping_sub(cv[q * nn + r * w + j]);
                    }
                    at += 1;
                }
            }
        }
        p.ltz(&cin[..c_all * pl], &mut cout[..c_all * pl])?;
        // The factors of the `sel` elements that are not last in their group, `g` each:
        // element i's slot t (j = t, or t + 1 past i) holds c_ij (j > i) or
        // 1 − c_ji = [x_j < x_i] (j < i), slots a smaller group lacks hold 1, and slot
        // g − 1 the difference x_i − x_last (with the index, `vu` holds the index's).
        // The clamp's lists follow: `vis` lists of the g factors 1 − [x_i + c < M_j].
        let sel = rows * (w - groups);
        let slot = |a: usize| (a / w) * (w - groups) + (a % w / g) * (g - 1) + a % w % g;
        let items = sel + vis;
        let mut len = g;
        let mut fl = items * len;
        for q in 0..pl {
            let one = u64::from(public == Some(q));
            fct[q * fl..(q + 1) * fl].fill(one);
            for v in 0..vis * g {
                fct[q * fl + sel * len + v] = one.wrapping_sub(cout[q * c_all + c_pairs + v]);
            }
        }
        each_pair(rows, w, g, |c, a, b| {
            // Within the group, a is element i and b element j > i: i's slot j − 1, j's slot i.
            let (i, j) = (a % w % g, b % w % g);
            let last_b = b % w / g * g + g.min(w - b % w / g * g) - 1 == b % w;
            for q in 0..pl {
                let lt = cout[q * c_all + c];
                let one = u64::from(public == Some(q));
                // c_ij = [x_i ≥ x_j] = 1 − [x_i − x_j < 0] for i; [x_i < x_j] for j.
                fct[q * fl + slot(a) * len + (j - 1)] = one.wrapping_sub(lt);
                if !last_b {
                    fct[q * fl + slot(b) * len + i] = lt;
                }
            }
        });
        each_group(rows, w, g, |_, start, s| {
            let last = start + s - 1;
            for e in start..last {
                let t = slot(e);
                for q in 0..pl {
                    fct[q * fl + t * len + g - 1] = cv[q * nn + e].wrapping_sub(cv[q * nn + last]);
                    if with_index {
                        vu[q * sel + t] = ci[q * nn + e].wrapping_sub(ci[q * nn + last]);
                    }
                }
            }
        });
        // Multiply each list down to one, pairwise; the difference stays in the last slot,
        // and with the index its pair's product is made twice.
        while len > 1 {
            let u = len / 2;
            let twice = with_index && len.is_multiple_of(2);
            let (pn, nlen) = (items * u, u + len % 2);
            let tot = pn + if twice { sel } else { 0 };
            for q in 0..pl {
                for t in 0..items {
                    for v in 0..u {
                        fa[q * tot + t * u + v] = fct[q * fl + t * len + 2 * v];
                        fb[q * tot + t * u + v] = fct[q * fl + t * len + 2 * v + 1];
                    }
                    if twice && t < sel {
                        fa[q * tot + pn + t] = fct[q * fl + t * len + len - 2];
                        fb[q * tot + pn + t] = vu[q * sel + t];
                    }
                }
            }
            p.mul(&fa[..tot * pl], &fb[..tot * pl], &mut fo[..tot * pl])?;
            let nfl = items * nlen;
            for q in 0..pl {
                for t in 0..items {
                    for v in 0..u {
                        fa[q * nfl + t * nlen + v] = fo[q * tot + t * u + v];
                    }
                    if len % 2 == 1 {
                        fa[q * nfl + t * nlen + u] = fct[q * fl + t * len + len - 1];
                    }
                    if with_index && t < sel {
                        vu2[q * sel + t] = if twice { fo[q * tot + pn + t] } else { vu[q * sel + t] };
                    }
                }
            }
            fct[..nfl * pl].copy_from_slice(&fa[..nfl * pl]);
            if with_index {
                vu[..sel * pl].copy_from_slice(&vu2[..sel * pl]);
            }
            (len, fl) = (nlen, nfl);
        }
        if let (Some(c), true) = (&mut clamp, vis > 0) {
            // bit = 1 − Π_j (1 − [x_i + c < M_j])
            for q in 0..pl {
                let one = u64::from(public == Some(q));
                let mut t = sel;
                for (i, v) in c.visible.iter().enumerate() {
                    if *v != 0 {
                        c.bits[q * n + i] = one.wrapping_sub(fct[q * items + t]);
                        t += 1;
                    }
                }
            }
        }
        // fct[t] = b_t·(x_t − x_last), vu[t] the same for the index: sum each group's.
        let nl = rows * groups;
        let mut t = 0;
        each_group(rows, w, g, |kk, start, s| {
            let last = start + s - 1;
            for q in 0..pl {
                let sum = |base: u64, v: &[u64], stride: usize| {
                    v[q * stride + t..q * stride + t + s - 1].iter().fold(base, |acc, y| acc.wrapping_add(*y))
                };
                fa[q * nl + kk] = sum(cv[q * nn + last], fct, items);
                if with_index {
                    fb[q * nl + kk] = sum(ci[q * nn + last], vu, sel);
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
    if let Some(ixs) = index {
        ixs.copy_from_slice(&ci[..rows * pl]);
    }
    Ok(())
}

// ---- softmax ------------------------------------------------------------------------------

/// Large negative value (in real units) given to masked entries before the row max.
const MASKED: f64 = -1_048_576.0;
/// Softmax clamps max-subtracted scores at `−SOFTMAX_CLAMP` (inside exp's domain; the weight
/// it gives, ≤ 0.5^64, is below anything 16 fractional bits can hold).
const SOFTMAX_CLAMP: f64 = 64.0;

const fn ceil_log2(v: usize) -> i32 {
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
        + grouped_scratch(rows, cols, if group < 2 { 2 } else { group }, false, true, planes)
        + rows_inverse_scratch(rows, cols, planes)
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
/// exactly 0. Max-subtracted scores below −64 are clamped (their weight, ≤ 2^-64, is 0 at
/// any precision here) before `exp`, whose polynomial is meaningless below −115: trained
/// models do reach such spreads (the embedded default's base has rows spread past 103, where
/// f32 underflows), and without the clamp their secure tokens differed from the plaintext
/// model's. The clamp's bits `[x + 64 < max]` come with the row max (each visible score
/// against the last level's candidates, in that level's comparison and product rounds:
/// `grouped`'s clamp) and zero exp's base by one exact product, which 2PC-Dealer folds
/// into exp's chain ([`Protocol::square_chain_scaled`]).
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
    let group = group.max(2);
    let [xm, d, ex, es, mask, fill, mx, rest] = carve(
        scratch,
        [
            len,
            len,
            len,
            2 * len,
            n,
            n,
            rows * pl,
            grouped_scratch(rows, cols, group, false, true, pl) + rows_inverse_scratch(rows, cols, pl),
        ],
    );
    mask_vectors(rows, cols, causal, f, mask, fill);
    p.mul_public(x, mask, &mut es[..len])?;
    p.add_public(&es[..len], fill, xm)?;
    // The row max, and with it (no extra round) the bits c = [x + 64 < max] of the
    // visible entries, whose max-subtracted scores lie below exp's clamp.
    let offset = enc(SOFTMAX_CLAMP, f);
    let clamp = Clamp { offset, visible: mask, bits: d };
    grouped(p, xm, rows, cols, group, mx, None, Some(clamp), rest)?;
    // The factor (mask − c): 1 for a visible entry within the clamp, 0 below it or masked.
    p.neg(d, ex)?;
    p.add_public(ex, mask, d)?;
    gather(pl, mx, rows, &mut es[..len], n, |i| i / cols);
    p.sub(xm, &es[..len], ex)?; // x − max
    // exp's base 1 + t, t = (x − max)/64 at F bits, times the factor: clamped scores give
    // the base 0 (as t = −1 would: ((1 − 1)² + 1)/2 then squared six times is 2^-64), and
    // masked ones too. A trained model's attention can spread far more than 115 within a
    // row (the embedded default's base does), where exp's polynomial would grow again.
    p.scale(ex, 1u64 << (F - f - 6), xm)?;
    add_scalar_in_place(p, xm, 1u64 << F)?;
    // The factor joins the chain's first square where the protocol has it (2PC-Dealer:
    // opened beside the base, no round of its own); otherwise one product first.
    if !p.square_chain_scaled(xm, d, &exp_steps(f), ex)? {
        p.mul(xm, d, ex)?;
        let (ea, eb) = es.split_at_mut(len);
        ea.copy_from_slice(ex);
        exp_of_base(p, ea, &mut eb[..len], d, f)?;
    } else {
        d.copy_from_slice(ex);
    }
    // masked entries: exactly 0 (see below)
    p.mul_public(d, mask, ex)?;
    normalise_rows(p, ex, rows, cols, -1, hi, out, mx, rest, fp, false)
}

/// Scratch of [`normalise_rows`] for both softmaxes (the widest range, 2ReLU's).
const fn rows_inverse_scratch(rows: usize, cols: usize, planes: usize) -> usize {
    inverse_scratch(rows, cols, planes, -8, ceil_log2(cols) + 12, FINER)
}

/// `out = e / rowsum(e)` with the row sum in `[2^lo, 2^hi)` and every output in `[0, 1]`.
#[allow(clippy::too_many_arguments)]
fn normalise_rows<P: Protocol>(
    p: &mut P,
    e: &[u64],
    rows: usize,
    cols: usize,
    lo: i32,
    hi: i32,
    out: &mut [u64],
    sums: &mut [u64],
    rest: &mut [u64],
    fp: FixedPoint,
    epsilon: bool,
) -> Result<()> {
    let pl = P::PLANES;
    row_sums(pl, e, rows, cols, sums);
    if epsilon {
        // 2ReLU: the ε = 2^lo that keeps an all-zero row away from 1/0
        add_scalar_in_place(p, sums, enc(pow2i(lo), fp.frac_bits))?;
    }
    inverse(p, sums, Some(e), cols, out, rest, fp, lo, hi, fp.frac_bits, Kind::Recip, 1.0, 1, epsilon, None)
}

/// The MPC-friendly softmax MARILL pairs with head merging: `relu(x) / (Σ relu(x) + 2^-8)`
/// row-wise (masked entries 0). No exponential and no row max: 13 rounds whatever the
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
    let [rl, e, t, mask, fill, sums, rest] = carve(
        scratch,
        [len, len, 3 * len, n, n, rows * pl, tree_scratch(rows, cols, pl) + rows_inverse_scratch(rows, cols, pl)],
    );
    mask_vectors(rows, cols, causal, f, mask, fill);
    relu(p, x, rl, &mut t[..len])?;
    p.mul_public(rl, mask, e)?;
    normalise_rows(p, e, rows, cols, -8, hi, out, sums, rest, fp, true)
}

// ---- SiLU and GeLU ---------------------------------------------------------------------

/// Scratch words for [`silu`] and [`gelu`] of `n` elements.
pub const fn act_scratch(n: usize, planes: usize) -> usize {
    34 * n * planes
}

/// `x·σ(x)`, max abs error ≤ 3e-3 (measured 2.7e-3, the tail at |x| = 8). 10 / 11 rounds.
pub fn silu<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64], fp: FixedPoint) -> Result<()> {
    act_poly(p, x, None, out, scratch, fp, SILU_CUT_LOG2, &SILU_COEFFS)
}

/// log2 of SiLU's window.
const SILU_CUT_LOG2: u32 = 3;

/// The offsets [`silu`] compares its input with (`[x < θ_i]`: the window's ends and 0), at
/// `bits` fractional bits: for [`silu_given`] with comparisons made elsewhere (on an
/// untruncated product, say, at `2f` bits).
pub fn silu_offsets(bits: u32) -> [u64; 3] {
    let cut = enc(pow2i(SILU_CUT_LOG2 as i32), bits);
    [cut, cut.wrapping_neg(), 0]
}

/// [`silu`] given its comparisons: `lt` holds `[x < θ_i]` for [`silu_offsets`] (offset-major,
/// `3·n` per plane), made on `x` or on a finer value of it (the bits may then differ from
/// `x`'s own at a unit of `x`'s last place, where SiLU's two sides agree). 4 rounds fewer.
pub fn silu_given<P: Protocol>(
    p: &mut P,
    x: &[u64],
    lt: &[u64],
    out: &mut [u64],
    scratch: &mut [u64],
    fp: FixedPoint,
) -> Result<()> {
    ensure_shape(lt.len() == 3 * x.len())?;
    act_poly(p, x, Some(lt), out, scratch, fp, SILU_CUT_LOG2, &SILU_COEFFS)
}

/// GeLU, tanh form, max abs error ≤ 5e-3 (fit 1.0e-4). 10 / 11 rounds.
pub fn gelu<P: Protocol>(p: &mut P, x: &[u64], out: &mut [u64], scratch: &mut [u64], fp: FixedPoint) -> Result<()> {
    act_poly(p, x, None, out, scratch, fp, 2, &GELU_COEFFS)
}

#[allow(clippy::too_many_arguments)]
fn act_poly<P: Protocol>(
    p: &mut P,
    x: &[u64],
    given: Option<&[u64]>,
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
    match given {
        Some(g) => lt.copy_from_slice(g),
        None => p.ltz_many(x, &[cut, cut.wrapping_neg(), 0], lt)?,
    }
    // Window w = [−cut ≤ x < cut] = [x < cut] − [x < −cut]; sign s = [x < 0]. The factor
    // that makes |x| inside the window and 0 outside, (1 − 2s)·w = w − 2·[−cut ≤ x < 0]
    // = w − 2(s − [x < −cut]), is linear in the bits.
    for q in 0..pl {
        for e in 0..n {
            let base = q * 3 * n;
            let (below_cut, below_neg) = (lt[base + e], lt[base + n + e]);
            let w = below_cut.wrapping_sub(below_neg);
            win[q * n + e] = w;
            let s = lt[base + 2 * n + e];
            two_f[q * 2 * n + e] = s.wrapping_neg();
            two_f[q * 2 * n + n + e] = w.wrapping_sub(s.wrapping_sub(below_neg).wrapping_mul(2));
        }
    }
    // [relu | w·|x|] = [x | x] ⊙ [1 − s | (1 − 2s)·w] in one product.
    if let Some(q) = p.public_plane() {
        for v in &mut two_f[q * 2 * n..q * 2 * n + n] {
            *v = v.wrapping_add(1);
        }
    }
    put(pl, x, n, two_x, 2 * n, 0);
    put(pl, x, n, two_x, 2 * n, n);
    p.mul(two_x, two_f, ra)?;
    // u = |x| / cut at F bits: a local shift, since cut is a power of two.
    let [u1, u2, u3, u4, u5, u6, u7, u8] = carve(pw, [len; 8]);
    gather(pl, ra, 2 * n, u1, n, |e| n + e);
    for v in u1.iter_mut() {
        *v = v.wrapping_mul(1u64 << (F - f - cut_log2));
    }
    // h(u) = c_0·w + Σ c_i u^i at F + COEFF_BITS bits (exact in the ring; u and its
    // powers are 0 outside the window, and c_0·w is linear), then back to f bits: as one
    // chain where the protocol has it (the powers' products need no openings).
    let mut c = [0u64; 9];
    c[0] = enc(coeffs[0], F + COEFF_BITS);
    for (ci, v) in c.iter_mut().zip(coeffs.iter()).skip(1) {
        *ci = enc(*v, COEFF_BITS);
    }
    if p.poly_chain(u1, win, &c, F, F + COEFF_BITS - f, hp)? {
        gather(pl, ra, 2 * n, out, n, |e| e);
        return crate::ring::add_assign(out, hp);
    }
    // Powers in three levels: u², then [u³ | u⁴], then [u⁵ | u⁶ | u⁷ | u⁸].
    p.square_trunc(u1, F, u2)?;
    mul_trunc_parts(p, [n; 2], [u2, u2], [u1, u2], F, [u3, u4], cat_a, cat_b, lv)?;
    mul_trunc_parts(p, [n; 4], [&*u4; 4], [&*u1, &*u2, &*u3, &*u4], F, [u5, u6, u7, u8], cat_a, cat_b, lv)?;
    let acc = &mut cmp[..len];
    let c0 = enc(coeffs[0], F + COEFF_BITS);
    for (a, w) in acc.iter_mut().zip(win.iter()) {
        *a = w.wrapping_mul(c0);
    }
    for (c, u) in coeffs[1..].iter().zip([&*u1, &*u2, &*u3, &*u4, &*u5, &*u6, &*u7, &*u8]) {
        let c = enc(*c, COEFF_BITS);
        for (a, v) in acc.iter_mut().zip(u) {
            *a = a.wrapping_add(v.wrapping_mul(c));
        }
    }
    p.trunc(acc, F + COEFF_BITS - f, hp)?;
    // act = relu + h.
    gather(pl, ra, 2 * n, out, n, |e| e);
    crate::ring::add_assign(out, hp)
}
