//! `exp` and the softmaxes (max-subtracted, causal masks, 2ReLU).

use super::*;

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

/// Which entries of a `rows × cols` block of scores each row sees (public).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every entry.
    All,
    /// Rows come in blocks of `q` queries that are the last `q` of the `cols` positions, and
    /// a query sees the keys up to itself.
    Causal(usize),
    /// [`Mask::Causal`] within a sliding window (Mistral's): a query sees itself and the
    /// `window − 1` keys before it.
    Window {
        /// Queries per block, as in [`Mask::Causal`].
        queries: usize,
        /// Keys a query sees, itself included (≥ 1).
        window: usize,
    },
}

/// Whether entry `(r, j)` is visible under `mask`.
fn visible(r: usize, j: usize, cols: usize, mask: Mask) -> bool {
    match mask {
        Mask::All => true,
        Mask::Causal(q) => j + q <= r % q + cols,
        Mask::Window { queries: q, window } => {
            let me = r % q + cols - q;
            j <= me && j + window > me
        }
    }
}

fn mask_vectors(rows: usize, cols: usize, causal: Mask, f: u32, mask: &mut [u64], fill: &mut [u64]) {
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
    causal: Mask,
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

fn check_causal(rows: usize, cols: usize, causal: Mask) -> Result<()> {
    match causal {
        Mask::Causal(q) => ensure_shape(q > 0 && q <= cols && rows.is_multiple_of(q)),
        Mask::Window { queries: q, window } => ensure_shape(q > 0 && q <= cols && rows.is_multiple_of(q) && window > 0),
        Mask::All => Ok(()),
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
    causal: Mask,
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
    causal: Mask,
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
    causal: Mask,
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
