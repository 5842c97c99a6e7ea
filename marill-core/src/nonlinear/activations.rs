//! ReLU, SiLU and GeLU (`act(x) = relu(x) + h(|x|)` with `h` a degree-8 fit; see the
//! module above).

use super::*;

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
