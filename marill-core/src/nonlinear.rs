//! Secure non-linear functions, written once over any [`Protocol`].
//!
//! The recipes live in four files: `activations` (ReLU, SiLU, GeLU), `softmax` (exp and the
//! softmaxes), `normalise` (reciprocal, rsqrt, RMSNorm: the thermometer codes below) and
//! `tree` (row max and argmax); this file holds what they share.
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
//! squares fits, coefficients in `activations.rs`) and 0 outside the window. The error is the fit's
//! inside the window and `|h(cut)|` outside: SiLU 4.9e-4 and 2.7e-3 (cut 8), GeLU 1.0e-4 and
//! 7.0e-5 (cut 4).

use crate::error::{Error, Result, ensure_shape};
use crate::fixed::FixedPoint;
use crate::proto::Protocol;
use crate::scratch::carve;

mod activations;
mod normalise;
mod softmax;
mod tree;

pub use activations::*;
pub use normalise::*;
pub use softmax::*;
pub use tree::*;

/// Internal fractional bits for values of magnitude ≤ 1 (products stay below 2^62).
const F: u32 = 30;
/// Fractional bits of public polynomial coefficients.
const COEFF_BITS: u32 = 24;

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
