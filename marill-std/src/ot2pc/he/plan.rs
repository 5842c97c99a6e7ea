//! The block shape of one product ([`Plan`]): chosen from the public shapes by both parties,
//! with the flooding noise's width.

use marill_core::error::{Error, Result, ensure_shape};
use marill_core::ring::MatDims;

use super::ntt::Rns;
use super::{N, SIGMA, SWITCH_BYTES};

/// Block shape of a product: `bm × bn` of `X` per input ciphertext, `bk` columns of `Y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Rows of `X` per block.
    pub bm: usize,
    /// Inner dimension per block.
    pub bn: usize,
    /// Columns of `Y` per block.
    pub bk: usize,
    /// Digits of `Y` (1 for a weight, 2 for a uniform share).
    pub digits: usize,
    /// Flooding noise is uniform in `[−2^flood_bits, 2^flood_bits)`.
    pub flood_bits: u32,
}

impl Plan {
    /// The block shape for `X (m×n)·Y (n×k)` with the least estimated time: bytes at
    /// 1 Gbit/s plus transforms and products of residues at this machine's measured rates.
    /// Both parties compute it from the public shapes alone. Fails if the noise bound would
    /// not leave room for flooding (not reachable for `n, k ≤ 2^20`).
    pub fn new(d: MatDims, digits: usize, rns: &Rns) -> Result<Self> {
        let (m, n, k) = (d.m, d.n, d.k);
        ensure_shape(m > 0 && n > 0 && k > 0 && (1..=2).contains(&digits))?;
        let cands = |x: usize| {
            let mut v: Vec<usize> = (1..=x.min(N)).map(|c| x.div_ceil(c)).filter(|b| *b <= N).collect();
            v.push(x.min(N));
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut best: Option<(f64, Plan)> = None;
        for bm in cands(m) {
            for bn in cands(n) {
                let room = (N + 1).saturating_sub(bn);
                let bk = (room / (bm * bn)).min(k);
                if bk == 0 {
                    continue;
                }
                let (im, in_, ik) = (m.div_ceil(bm) as f64, n.div_ceil(bn) as f64, k.div_ceil(bk) as f64);
                let dg = digits as f64;
                // Estimated seconds: bytes at 1 Gbit/s, transforms (one prime) at 50 µs,
                // products of residues at 1.5 ns.
                let bytes = im * in_ * dg * 24.0 * N as f64 + im * ik * (N + bm * bk) as f64 * SWITCH_BYTES as f64;
                let ntts = 3.0 * (in_ * ik * dg + im * in_ * dg + 5.0 * im * ik);
                let products = 2.0 * im * in_ * ik * dg * 3.0 * N as f64;
                let cost = bytes * 8e-9 + ntts * 50e-6 + products * 1.5e-9;
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((cost, Plan { bm, bn, bk, digits, flood_bits: 0 }));
                }
            }
        }
        let (_, mut plan) = best.ok_or(Error::ShapeMismatch)?;
        // Noise bound from public shapes: Σ‖ŷ‖₁ ≤ digits · n_padded · bk · 2^31.
        let n_pad = (n.div_ceil(plan.bn) * plan.bn) as f64;
        let l1 = digits as f64 * n_pad * plan.bk as f64 * 2f64.powi(31);
        let bound = 22.0 * l1 + 43.0 * N as f64;
        plan.flood_bits = SIGMA + bound.log2().ceil() as u32;
        if plan.flood_bits + 1 >= rns.half_delta_bits {
            return Err(Error::InvalidArgument);
        }
        Ok(plan)
    }

    pub(super) fn out_pos(&self, i: usize, l: usize) -> usize {
        l * self.bm * self.bn + i * self.bn + self.bn - 1
    }
}
