//! Row max and argmax: tournaments in groups, a level per comparison round.

use super::*;

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
pub(super) const fn grouped_scratch(
    rows: usize,
    cols: usize,
    k: usize,
    with_index: bool,
    clamp: bool,
    planes: usize,
) -> usize {
    let n = rows * cols;
    let (half, idx) = (k.div_ceil(2), if with_index { 2 } else { 1 });
    let cl = if clamp { 3 * k + 3 * half } else { 0 };
    planes * n * (idx + 2 * half + k + 2 * (idx - 1) + 3 * (half + 1) + cl)
}

/// `grouped`'s clamp: besides the maximum `m` of each row, the bits `[x_i + c < m]` of
/// the entries `visible` marks (0 elsewhere), as `1 − Π_j (1 − [x_i + c < M_j])` over the
/// last level's candidates `M_j`: their comparisons join the last level's, and their
/// products its products, so the bits cost no round.
pub(super) struct Clamp<'a> {
    /// `c` at the input's fractional bits.
    pub(super) offset: u64,
    /// Public 0/1 per entry.
    pub(super) visible: &'a [u64],
    /// The bits, `rows·cols·PLANES` words.
    pub(super) bits: &'a mut [u64],
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
pub(super) fn grouped<P: Protocol>(
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
