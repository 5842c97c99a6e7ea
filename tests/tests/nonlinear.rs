//! The non-linear library in both settings against float64, each with the bound:
//! exp on [−16, 0] ≤ 1.5e-3 abs; reciprocal on [1, 1000] ≤ 1e-3 relative; rsqrt on
//! [0.01, 100] ≤ 1e-3 relative; softmax (rows of 128, scores N(0, 2²), with and without a
//! causal mask) ≤ 5e-3; SiLU on [−10, 10] ≤ 3e-3; GeLU on [−10, 10] ≤ 5e-3; ReLU and argmax
//! exact; RMSNorm ≤ 1e-3 (|x| < 4, gains in [0.5, 1.5]).

#![allow(clippy::unwrap_used)]

use marill_core::nonlinear::{self as nl, Gain};
use marill_core::proto::Protocol;
use marill_core::{Error, FixedPoint};
use marill_std::Setting;
use marill_std::StdError;
use marill_std::run::{Program, run_mem};
use marill_tests::words;

const FP: FixedPoint = FixedPoint { frac_bits: 16 };

fn uniform(n: usize, lo: f64, hi: f64, seed: u8) -> Vec<f64> {
    words(n, seed).into_iter().map(|w| lo + (hi - lo) * ((w >> 11) as f64 / (1u64 << 53) as f64)).collect()
}

fn normal(n: usize, sd: f64, seed: u8) -> Vec<f64> {
    let u = uniform(2 * n, 1e-12, 1.0, seed);
    (0..n).map(|i| sd * (-2.0 * u[2 * i].ln()).sqrt() * (std::f64::consts::TAU * u[2 * i + 1]).cos()).collect()
}

#[derive(Clone, Copy)]
enum Op {
    Exp,
    Recip,
    Rsqrt,
    Softmax { rows: usize, cols: usize, causal: nl::Mask, group: usize },
    Softmax2Relu { rows: usize, cols: usize },
    Silu,
    Gelu,
    Relu,
    Argmax { rows: usize, cols: usize },
    RmsNorm { rows: usize, d: usize, shared: bool },
}

struct Case {
    op: Op,
    x: Vec<f64>,
    gain: Vec<f64>,
}

/// The rounds a call added, from each party's clock before and after it: the largest clock
/// after less the largest before (a party's own difference can count a round its peers had
/// already spent).
fn added_rounds(clocks: impl Iterator<Item = (u64, u64)> + Clone) -> u64 {
    clocks.clone().map(|c| c.1).max().unwrap() - clocks.map(|c| c.0).max().unwrap()
}

fn input<P: Protocol>(p: &mut P, v: &[u64]) -> Result<Vec<u64>, Error> {
    let mut s = vec![0; v.len() * P::PLANES];
    p.input(0, (p.party() == 0).then_some(v), &mut s)?;
    Ok(s)
}

impl Program for Case {
    /// Opened outputs as (ring words, the fractional bits they are at).
    type Output = (Vec<u64>, u32);
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
        let pl = P::PLANES;
        let enc: Vec<u64> = self.x.iter().map(|v| FP.encode(*v)).collect();
        let x = input(p, &enc)?;
        let n = self.x.len();
        let mut out = vec![0; n * pl];
        let mut bits = 16;
        let mut out_len = n;
        match self.op {
            Op::Exp => nl::exp(p, &x, &mut out, &mut vec![0; nl::exp_scratch(n, pl)], FP)?,
            Op::Recip => {
                bits = 32;
                nl::reciprocal(p, &x, &mut out, &mut vec![0; nl::normalised_scratch(n, pl, 0, 10)], FP, 0, 10, 32)?
            }
            Op::Rsqrt => {
                bits = 24;
                nl::rsqrt(p, &x, &mut out, &mut vec![0; nl::normalised_scratch(n, pl, -7, 7)], FP, -7, 7, 24)?
            }
            Op::Softmax { rows, cols, causal, group: 2 } => {
                let mut s = vec![0; nl::softmax_scratch(rows, cols, pl)];
                nl::softmax(p, &x, rows, cols, causal, &mut out, &mut s, FP)?
            }
            Op::Softmax { rows, cols, causal, group } => {
                let mut s = vec![0; nl::softmax_scratch_in_groups(rows, cols, group, pl)];
                nl::softmax_in_groups(p, &x, rows, cols, causal, group, &mut out, &mut s, FP)?
            }
            Op::Softmax2Relu { rows, cols } => {
                let mut s = vec![0; nl::softmax_scratch(rows, cols, pl)];
                nl::softmax_2relu(p, &x, rows, cols, nl::Mask::All, &mut out, &mut s, FP)?
            }
            Op::Silu => nl::silu(p, &x, &mut out, &mut vec![0; nl::act_scratch(n, pl)], FP)?,
            Op::Gelu => nl::gelu(p, &x, &mut out, &mut vec![0; nl::act_scratch(n, pl)], FP)?,
            Op::Relu => nl::relu(p, &x, &mut out, &mut vec![0; nl::relu_scratch(n, pl)])?,
            Op::Argmax { rows, cols } => {
                let (mut idx, mut mx) = (vec![0; rows * pl], vec![0; rows * pl]);
                nl::argmax(p, &x, rows, cols, &mut idx, &mut mx, &mut vec![0; nl::argmax_scratch(rows, cols, pl)])?;
                // Open the index and the maximum, one after the other.
                let mut o1 = vec![0; rows];
                let mut o2 = vec![0; rows];
                p.open(&idx, &mut o1)?;
                p.open(&mx, &mut o2)?;
                o1.extend(o2);
                return Ok((o1, 16));
            }
            Op::RmsNorm { rows, d, shared } => {
                let g: Vec<u64> = self.gain.iter().map(|v| FP.encode(*v)).collect();
                let mut s = vec![0; nl::rms_norm_scratch(rows, d, pl)];
                if shared {
                    let gs = input(p, &g)?;
                    nl::rms_norm(p, &x, rows, d, Gain::Shared(&gs), 1e-5, &mut out, &mut s, FP)?
                } else {
                    nl::rms_norm(p, &x, rows, d, Gain::Public(&g), 1e-5, &mut out, &mut s, FP)?
                }
                out_len = n;
            }
        }
        let mut opened = vec![0; out_len];
        p.open(&out[..out_len * pl], &mut opened)?;
        Ok((opened, bits))
    }
}

fn decode(v: u64, bits: u32) -> f64 {
    v as i64 as f64 / (1u64 << bits) as f64
}

/// Run in both settings; returns the decoded outputs of each.
fn both(case: &Case) -> Vec<Vec<f64>> {
    Setting::ALL
        .into_iter()
        .map(|s| {
            let r = run_mem(s, case).unwrap();
            let (words, bits) = &r[0].0;
            words.iter().map(|w| decode(*w, *bits)).collect()
        })
        .collect()
}

fn max_abs(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| ((x - y) / y).abs()).fold(0.0, f64::max)
}

#[test]
fn exp_on_minus_16_to_0() {
    let mut x = uniform(3000, -16.0, 0.0, 1);
    x.extend([0.0, -16.0, -1e-5, -3.0]);
    let want: Vec<f64> = x.iter().map(|v| FP.decode(FP.encode(*v)).exp()).collect();
    for got in both(&Case { op: Op::Exp, x: x.clone(), gain: vec![] }) {
        let e = max_abs(&got, &want);
        eprintln!("exp error: measured {e:.2e} (bound 1.5e-3)");
        assert!(e <= 1.5e-3, "exp error {e}");
    }
    // The whole documented domain keeps the bound.
    let x = uniform(2000, nl::EXP_MIN, 0.0, 2);
    let want: Vec<f64> = x.iter().map(|v| FP.decode(FP.encode(*v)).exp()).collect();
    for got in both(&Case { op: Op::Exp, x, gain: vec![] }) {
        assert!(max_abs(&got, &want) <= 1.5e-3);
    }
}

#[test]
fn reciprocal_on_1_to_1000() {
    let mut x = uniform(3000, 1.0, 1000.0, 3);
    x.extend([1.0, 2.0, 1000.0, 511.99, 512.0]);
    let want: Vec<f64> = x.iter().map(|v| 1.0 / FP.decode(FP.encode(*v))).collect();
    for got in both(&Case { op: Op::Recip, x: x.clone(), gain: vec![] }) {
        let e = max_rel(&got, &want);
        eprintln!("reciprocal relative error: measured {e:.2e} (bound 1e-3)");
        assert!(e <= 1e-3, "reciprocal relative error {e}");
    }
}

#[test]
fn rsqrt_on_hundredth_to_100() {
    let mut x = uniform(3000, 0.01, 100.0, 4);
    x.extend([0.01, 0.015, 0.25, 1.0, 99.9]);
    let want: Vec<f64> = x.iter().map(|v| 1.0 / FP.decode(FP.encode(*v)).sqrt()).collect();
    for got in both(&Case { op: Op::Rsqrt, x: x.clone(), gain: vec![] }) {
        let e = max_rel(&got, &want);
        eprintln!("rsqrt relative error: measured {e:.2e} (bound 1e-3)");
        assert!(e <= 1e-3, "rsqrt relative error {e}");
    }
}

fn softmax_ref(x: &[f64], rows: usize, cols: usize, causal: nl::Mask) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for r in 0..rows {
        // The query's own position among the keys, and the first key it sees.
        let (me, first) = match causal {
            nl::Mask::All => (cols - 1, 0),
            nl::Mask::Causal(q) => (cols - q + r % q, 0),
            nl::Mask::Window { queries: q, window } => {
                (cols - q + r % q, (cols - q + r % q + 1).saturating_sub(window))
            }
        };
        let vis = |j: usize| (first..=me).contains(&j);
        let row = &x[r * cols..(r + 1) * cols];
        let m = (0..cols).filter(|j| vis(*j)).map(|j| row[j]).fold(f64::MIN, f64::max);
        let s: f64 = (0..cols).filter(|j| vis(*j)).map(|j| (row[j] - m).exp()).sum();
        for j in 0..cols {
            out[r * cols + j] = if vis(j) { (row[j] - m).exp() / s } else { 0.0 };
        }
    }
    out
}

/// Rows spread far wider than exp's domain (scores down to 600 below the row maximum, as the
/// sharp heads of trained models produce): the clamp at −64 keeps every weight right.
#[test]
fn softmax_of_widely_spread_rows() {
    let (rows, cols) = (4, 32);
    let x: Vec<f64> = (0..rows * cols)
        .map(|i| {
            let (r, j) = (i / cols, i % cols);
            // One large score per row, the rest spread over [−600, 10].
            if j == r { 40.0 } else { FP.decode(FP.encode(10.0 - ((j * 37 + r * 11) % 61) as f64 * 10.0)) }
        })
        .collect();
    let want = softmax_ref(&x, rows, cols, nl::Mask::All);
    for group in [2, 4] {
        for got in
            both(&Case { op: Op::Softmax { rows, cols, causal: nl::Mask::All, group }, x: x.clone(), gain: vec![] })
        {
            let e = max_abs(&got, &want);
            eprintln!("softmax (spread rows, row max in groups of {group}) error: measured {e:.2e} (bound 5e-3)");
            assert!(e <= 5e-3, "softmax of spread rows: error {e}");
        }
    }
}

#[test]
fn softmax_rows_of_128() {
    let (rows, cols) = (6, 128);
    let x: Vec<f64> = normal(rows * cols, 2.0, 5).iter().map(|v| FP.decode(FP.encode(*v))).collect();
    // The row maximum pairwise, and in groups of 4 (the runtime's decode), 3 and 8; causal,
    // and within sliding windows of 40 keys and of 1 (each query sees only itself).
    use nl::Mask::{All, Causal, Window};
    let w40 = Window { queries: 6, window: 40 };
    let w1 = Window { queries: 6, window: 1 };
    for (causal, group) in
        [(All, 2), (Causal(6), 2), (All, 4), (Causal(6), 4), (Causal(6), 3), (All, 8), (w40, 2), (w40, 4), (w1, 2)]
    {
        let want = softmax_ref(&x, rows, cols, causal);
        for got in both(&Case { op: Op::Softmax { rows, cols, causal, group }, x: x.clone(), gain: vec![] }) {
            let e = max_abs(&got, &want);
            eprintln!("softmax (row max in groups of {group}) error: measured {e:.2e} (bound 5e-3)");
            assert!(e <= 5e-3, "softmax ({causal:?}) error {e}");
            for (g, w) in got.iter().zip(&want) {
                if *w == 0.0 {
                    assert_eq!(*g, 0.0, "a masked entry must be exactly 0");
                }
            }
        }
    }
}

#[test]
fn softmax_2relu_matches_its_formula() {
    // Widths 1 and 3 as a decode step's first keys meet them (one key: the row is its own
    // sum); 64 as a prefill's.
    for cols in [1, 3, 64] {
        let rows = 4;
        let x: Vec<f64> = normal(rows * cols, 2.0, 6).iter().map(|v| FP.decode(FP.encode(*v))).collect();
        let mut want = vec![0.0; x.len()];
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let s: f64 = row.iter().map(|v| v.max(0.0)).sum::<f64>() + 2f64.powi(-8);
            for j in 0..cols {
                want[r * cols + j] = row[j].max(0.0) / s;
            }
        }
        for got in both(&Case { op: Op::Softmax2Relu { rows, cols }, x: x.clone(), gain: vec![] }) {
            let e = max_abs(&got, &want);
            eprintln!("2relu softmax ({cols} columns) error: measured {e:.2e} (bound 5e-3)");
            assert!(e <= 5e-3, "2relu softmax ({cols} columns) error {e}");
        }
    }
}

#[test]
fn silu_and_gelu_on_minus_10_to_10() {
    let mut x = uniform(4000, -10.0, 10.0, 7);
    x.extend([0.0, -8.0, 8.0, -7.999, -4.0, 4.0, -10.0, 10.0, -1.28]);
    let xq: Vec<f64> = x.iter().map(|v| FP.decode(FP.encode(*v))).collect();
    let silu: Vec<f64> = xq.iter().map(|v| v / (1.0 + (-v).exp())).collect();
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let gelu: Vec<f64> = xq.iter().map(|v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())).collect();
    for got in both(&Case { op: Op::Silu, x: x.clone(), gain: vec![] }) {
        let e = max_abs(&got, &silu);
        eprintln!("silu error: measured {e:.2e} (bound 3e-3)");
        assert!(e <= 3e-3, "silu error {e}");
    }
    for got in both(&Case { op: Op::Gelu, x: x.clone(), gain: vec![] }) {
        let e = max_abs(&got, &gelu);
        eprintln!("gelu error: measured {e:.2e} (bound 5e-3)");
        assert!(e <= 5e-3, "gelu error {e}");
    }
}

#[test]
fn relu_is_exact() {
    let mut x = uniform(2000, -1000.0, 1000.0, 8);
    x.extend([0.0, -0.0, 1e-5, -1e-5]);
    let want: Vec<f64> = x.iter().map(|v| FP.decode(FP.encode(*v)).max(0.0)).collect();
    for got in both(&Case { op: Op::Relu, x, gain: vec![] }) {
        assert_eq!(got, want);
    }
}

#[test]
fn argmax_is_exact() {
    let (rows, cols) = (3, 1000);
    // Distinct values; the maximum at the ends and the middle.
    let mut x: Vec<f64> = (0..rows * cols).map(|i| ((i * 7919) % 100_003) as f64 / 64.0 - 700.0).collect();
    x[999] = 5000.0; // row 0: last
    x[1000] = 5000.0; // row 1: first
    x[2500] = 5000.0; // row 2: middle
    for got in both(&Case { op: Op::Argmax { rows, cols }, x: x.clone(), gain: vec![] }) {
        let idx: Vec<f64> = got[..rows].iter().map(|v| v * 65536.0).collect();
        assert_eq!(idx, vec![999.0, 0.0, 500.0]);
        assert_eq!(&got[rows..], &[5000.0; 3]);
    }
    // Ties: the lowest index wins.
    let x = vec![1.0, 3.0, 3.0, 2.0, 3.0];
    for got in both(&Case { op: Op::Argmax { rows: 1, cols: 5 }, x: x.clone(), gain: vec![] }) {
        assert_eq!(got[0] * 65536.0, 1.0);
    }
}

/// RMSNorm in f64, `eps = 1e-5`.
fn rms_norm_ref(x: &[f64], gain: &[f64], rows: usize, d: usize) -> Vec<f64> {
    let mut want = vec![0.0; x.len()];
    for r in 0..rows {
        let row = &x[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        for j in 0..d {
            want[r * d + j] = row[j] / (ms + 1e-5).sqrt() * gain[j];
        }
    }
    want
}

#[test]
fn rms_norm_public_and_shared_gain() {
    let (rows, d) = (5, 64);
    let x: Vec<f64> = uniform(rows * d, -4.0, 4.0, 9).iter().map(|v| FP.decode(FP.encode(*v))).collect();
    let gain: Vec<f64> = uniform(d, 0.5, 1.5, 10).iter().map(|v| FP.decode(FP.encode(*v))).collect();
    let want = rms_norm_ref(&x, &gain, rows, d);
    for shared in [false, true] {
        for got in both(&Case { op: Op::RmsNorm { rows, d, shared }, x: x.clone(), gain: gain.clone() }) {
            let e = max_abs(&got, &want);
            eprintln!("rmsnorm error: measured {e:.2e} (bound 1e-3)");
            assert!(e <= 1e-3, "rmsnorm (shared gain: {shared}) error {e}");
        }
    }
}

/// Rows at the ends of the range: a small row (entries below 0.1, whose squares keep about
/// 9 bits at 16 fractional bits: smaller rows lose precision to the fixed point, not to the
/// recipe), and rows whose sums of squares reach 2^29.3 through one attention-sink entry or
/// 2^27.5 through all of them; the error is relative to the output's size there (outputs
/// reach √d·gain).
#[test]
fn rms_norm_at_the_ends_of_its_range() {
    let (rows, d) = (4, 64);
    let mut x: Vec<f64> = uniform(rows * d, -1.0, 1.0, 11);
    for (r, scale) in [(0usize, 0.1), (1, 1.0), (2, 1.0), (3, 3000.0)] {
        for v in &mut x[r * d..(r + 1) * d] {
            *v *= scale;
        }
    }
    x[2 * d + 5] = 26000.0; // 2^29.3 alone
    let x: Vec<f64> = x.iter().map(|v| FP.decode(FP.encode(*v))).collect();
    let gain: Vec<f64> = uniform(d, 0.5, 1.5, 12).iter().map(|v| FP.decode(FP.encode(*v))).collect();
    let want = rms_norm_ref(&x, &gain, rows, d);
    for shared in [false, true] {
        for got in both(&Case { op: Op::RmsNorm { rows, d, shared }, x: x.clone(), gain: gain.clone() }) {
            let e = got.iter().zip(&want).map(|(g, w)| (g - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max);
            eprintln!("rmsnorm at the range ends: measured {e:.2e} (bound 1e-3 of max(1, |out|))");
            assert!(e <= 1e-3, "rmsnorm at the range ends (shared gain: {shared}) error {e}");
        }
    }
}

/// Argmax against the plaintext first maximum, over widths around the group size (8) and
/// its powers, with many ties (values from five levels), several rows.
#[test]
fn argmax_with_ties_at_every_width() {
    for cols in [1, 2, 3, 7, 8, 9, 15, 17, 63, 65, 257] {
        let rows = 3;
        let x: Vec<f64> = words(rows * cols, cols as u8).iter().map(|w| (w % 5) as f64 - 2.0).collect();
        let want: Vec<f64> = (0..rows)
            .map(|r| {
                let row = &x[r * cols..(r + 1) * cols];
                let m = row.iter().copied().fold(f64::MIN, f64::max);
                row.iter().position(|v| *v == m).unwrap() as f64
            })
            .collect();
        for got in both(&Case { op: Op::Argmax { rows, cols }, x: x.clone(), gain: vec![] }) {
            let idx: Vec<f64> = got[..rows].iter().map(|v| v * 65536.0).collect();
            assert_eq!(idx, want, "cols {cols}");
        }
    }
}

/// The rounds of argmax over a 32 000-entry vocabulary: five levels of groups of 8, each
/// `ltz` + 3 rounds of products (the selection shares the indicator's last round):
/// 5·(4 + 3) = 35 in 2PC-Dealer, 5·8 = 40 in 3PC. And a softmax's row max over 64 keys in
/// groups of 4: three levels of `ltz` + 2, 18 / 21.
#[test]
fn argmax_and_row_max_in_few_rounds() {
    struct Rounds(usize, usize);
    impl Program for Rounds {
        type Output = (u64, u64, u64);
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
            let pl = P::PLANES;
            let v: Vec<u64> = (0..self.0).map(|i| FP.encode(((i * 7919) % 1000) as f64 / 8.0)).collect();
            let x = input(p, &v)?;
            let (mut idx, mut mx) = (vec![0; pl], vec![0; pl]);
            let before = p.cost().unwrap().rounds;
            if self.1 == nl::ARGMAX_GROUP {
                nl::argmax(p, &x, 1, self.0, &mut idx, &mut mx, &mut vec![0; nl::argmax_scratch(1, self.0, pl)])?;
            } else {
                let mut s = vec![0; nl::row_max_scratch(1, self.0, self.1, pl)];
                nl::row_max_in_groups(p, &x, 1, self.0, self.1, &mut mx, &mut s)?;
            }
            let after = p.cost().unwrap().rounds;
            let mut o = [0u64; 2];
            p.open(&idx, &mut o[..1])?;
            p.open(&mx, &mut o[1..])?;
            Ok((before, after, if self.1 == nl::ARGMAX_GROUP { o[0] } else { o[1] }))
        }
    }
    let first_max = (0..32_000u64).position(|i| (i * 7919) % 1000 == 999).unwrap() as u64;
    let cases = [
        (Setting::Dealer, 32_000, nl::ARGMAX_GROUP, 35),
        (Setting::Rep3, 32_000, nl::ARGMAX_GROUP, 40),
        (Setting::Dealer, 64, 4, 18),
        (Setting::Rep3, 64, 4, 21),
    ];
    for (setting, cols, group, want) in cases {
        let r = run_mem(setting, &Rounds(cols, group)).unwrap();
        let top = (0..cols as u64).map(|i| FP.encode(((i * 7919) % 1000) as f64 / 8.0)).max().unwrap();
        assert_eq!(r[0].0.2, if group == nl::ARGMAX_GROUP { first_max } else { top }, "{setting:?} {cols}");
        let rounds = added_rounds(r.iter().map(|x| (x.0.0, x.0.1)));
        assert_eq!(rounds, want, "{setting:?} {cols}");
    }
}

/// Odd widths (a prompt of 5 tokens) in every grouping.
#[test]
fn softmax_of_odd_widths() {
    use nl::Mask::{All, Causal, Window};
    let w3 = Window { queries: 1, window: 3 };
    for (cols, causal) in [(1, All), (3, All), (5, All), (6, Causal(1)), (7, Causal(1)), (9, All), (7, w3), (3, w3)] {
        let rows = 4;
        let x: Vec<f64> = normal(rows * cols, 2.0, 7).iter().map(|v| FP.decode(FP.encode(*v))).collect();
        let want = softmax_ref(&x, rows, cols, causal);
        for group in [2, 3, 4] {
            for got in both(&Case { op: Op::Softmax { rows, cols, causal, group }, x: x.clone(), gain: vec![] }) {
                let e = max_abs(&got, &want);
                assert!(e <= 5e-3, "cols {cols}, groups of {group}: error {e}");
            }
        }
    }
}

/// `square_chain` against the exact integer chain (floor at every truncation): 2PC-Dealer
/// chains the steps (one round per truncating step, one opening at the start and after an
/// untruncated square: 5 rounds here, step by step 7); 3PC squares locally first and
/// reshares at the end instead of the first opening (5 rounds, step by step 7); plain 2PC
/// declines and sends nothing. `square_chain_scaled` (2PC-Dealer; the others decline) takes
/// the first square times a 0/1 factor in the same 5 rounds. Steps at 12 fractional bits: `(y + 0.25)²` truncated, `y²` not, `(y − 0.5)²`
/// truncated by 36, `(y + 0.1)²` truncated; each truncation may add one unit, which the
/// later squares grow to at most 2.6e-2 (2·1.56·2·1.94·2·3.87 units of 2^-12, and more).
#[test]
fn square_chain_matches_its_steps() {
    const B: u32 = 12;
    let fp = FixedPoint { frac_bits: B };
    let steps =
        [(fp.encode(0.25), B), (0, 0), (FixedPoint { frac_bits: 2 * B }.encode(-0.5), 3 * B), (fp.encode(0.1), B)];
    let v: Vec<u64> = uniform(500, -1.0, 1.0, 21).iter().map(|v| fp.encode(*v)).collect();
    // Every other element with the factor 0 (square_chain_scaled), or none (square_chain).
    let beta: Vec<u64> = (0..v.len() as u64).map(|i| i % 2).collect();
    struct Chain<'a>(&'a [u64], &'a [(u64, u32)], Option<&'a [u64]>);
    impl Program for Chain<'_> {
        type Output = (bool, (u64, u64), Vec<u64>);
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
            let x = input(p, self.0)?;
            let beta = self.2.map(|b| input(p, b)).transpose()?;
            let mut out = vec![0; x.len()];
            let before = p.cost().unwrap().rounds;
            let chained = match &beta {
                Some(b) => p.square_chain_scaled(&x, b, self.1, &mut out)?,
                None => p.square_chain(&x, self.1, &mut out)?,
            };
            let after = p.cost().unwrap().rounds;
            let mut opened = vec![0; self.0.len()];
            if chained {
                p.open(&out, &mut opened)?;
            }
            Ok((chained, (before, after), opened))
        }
    }
    let want = |scaled: bool| -> Vec<f64> {
        v.iter()
            .zip(&beta)
            .map(|(x, b)| {
                let mut y = *x as i64 as i128;
                for (i, &(c, s)) in steps.iter().enumerate() {
                    let t = y + c as i64 as i128;
                    let f = if scaled && i == 0 { *b as i128 } else { 1 };
                    y = (f * t * t) >> s;
                }
                y as f64 / fp.scale()
            })
            .collect()
    };
    for (setting, scaled) in Setting::ALL.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let want = want(scaled);
        let r = run_mem(setting, &Chain(&v, &steps, scaled.then_some(&beta[..]))).unwrap();
        let (chained, _, ref opened) = r[0].0;
        // square_chain_scaled: 2PC-Dealer only (3PC multiplies first, 1 round more).
        assert_eq!(chained, setting == Setting::Dealer || (setting == Setting::Rep3 && !scaled), "{setting:?}");
        if !chained {
            assert!(r.iter().all(|x| x.0.1.0 == x.0.1.1), "{setting:?} sent something");
            continue;
        }
        let rounds = added_rounds(r.iter().map(|x| x.0.1));
        assert_eq!(rounds, 5, "{setting:?}");
        let got: Vec<f64> = opened.iter().map(|w| fp.decode(*w)).collect();
        let e = max_abs(&got, &want);
        eprintln!("square_chain (factor: {scaled}, {setting:?}) error: measured {e:.2e} (bound 2.6e-2)");
        assert!(e <= 2.6e-2, "square_chain error {e}");
    }
}

/// `mul_trunc_scaled` against the exact integer steps (floor at both truncations):
/// 2PC-Dealer and 3PC multiply the first product's truncated outputs without opening them
/// (3 rounds; step by step 4). Bytes (`m = rows + n`): 2PC-Dealer compute parties `24m + 8n`,
/// the dealer `24m + 48n`; 3PC parties 0 and 1 `8m + 16n`, the helper `32m + 48n`. Plain
/// 2PC declines and sends nothing. At 12
/// fractional bits, `|z| ≤ 1` and `c = 0.5`: each truncation may add one unit, so the
/// result is within `|z_l + c| + |z_w| + 1 ≤ 3.5` units of 2^-12 of the floors.
#[test]
fn mul_trunc_scaled_matches_its_steps() {
    const B: u32 = 12;
    let fp = FixedPoint { frac_bits: B };
    let (rows, cols) = (7, 13);
    let (n, m) = (rows * cols, rows + rows * cols);
    let x: Vec<u64> = uniform(m, -1.0, 1.0, 31).iter().map(|v| fp.encode(*v)).collect();
    let y: Vec<u64> = uniform(m, -1.0, 1.0, 32).iter().map(|v| fp.encode(*v)).collect();
    let c = fp.encode(0.5);
    struct Scaled<'a>(&'a [u64], &'a [u64], usize, usize, u64);
    impl Program for Scaled<'_> {
        type Output = (bool, (u64, u64), u64, Vec<u64>);
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
            let (x, y) = (input(p, self.0)?, input(p, self.1)?);
            let mut out = vec![0; self.2 * self.3 * P::PLANES];
            let before = p.cost().unwrap();
            let done = p.mul_trunc_scaled(&x, &y, self.2, self.3, (B, B), self.4, &mut out)?;
            let spent = p.cost().unwrap().since(&before);
            let mut opened = vec![0; self.2 * self.3];
            if done {
                p.open(&out, &mut opened)?;
            }
            Ok((done, (before.rounds, before.rounds + spent.rounds), spent.bytes_sent, opened))
        }
    }
    let (xi, yi) = (|i: usize| x[i] as i64 as i128, |i: usize| y[i] as i64 as i128);
    let z: Vec<i128> = (0..m).map(|i| (xi(i) * yi(i)) >> B).collect();
    let want: Vec<f64> =
        (0..n).map(|e| (((z[e / cols] + c as i64 as i128) * z[rows + e]) >> B) as f64 / fp.scale()).collect();
    for setting in Setting::ALL {
        let r = run_mem(setting, &Scaled(&x, &y, rows, cols, c)).unwrap();
        let done = r[0].0.0;
        assert_eq!(done, setting != Setting::Ot2pc, "{setting:?}");
        if !done {
            assert!(r.iter().all(|p| p.0.1.0 == p.0.1.1 && p.0.2 == 0), "{setting:?} sent something");
            continue;
        }
        let rounds = added_rounds(r.iter().map(|p| p.0.1));
        assert_eq!(rounds, 3, "{setting:?}");
        let (m, n) = (m as u64, n as u64);
        let bytes = match setting {
            Setting::Dealer => [24 * m + 8 * n, 24 * m + 8 * n, 24 * m + 48 * n],
            _ => [8 * m + 16 * n, 8 * m + 16 * n, 32 * m + 48 * n],
        };
        assert_eq!([r[0].0.2, r[1].0.2, r[2].0.2], bytes, "{setting:?}");
        let got: Vec<f64> = r[0].0.3.iter().map(|w| fp.decode(*w)).collect();
        let e = max_abs(&got, &want);
        eprintln!("mul_trunc_scaled error: measured {e:.2e} (bound 3.5 units = 8.5e-4)");
        assert!(e <= 3.5 / fp.scale(), "mul_trunc_scaled error {e}");
    }
}

/// `poly_chain` against float64: `h = c_0·w + Σ c_i·u^i` over `u ∈ [0, 1]`, powers at 20
/// fractional bits (each truncation may add one unit, which the later products carry: at
/// most 8 units of 2^-20 on `u⁸`), coefficients `|c_i| ≤ 2` at 16 bits, the sum back to 16
/// bits: error ≤ 2·8·2^-20·8 + 2^-16 ≤ 1.4e-4. 2PC-Dealer opens `u` once and each level
/// costs its truncations' round: 5 rounds (step by step 7), compute parties `72n` bytes,
/// the dealer `248n`; 3PC opens `u` beside the first truncation and reshares at the end:
/// 5 rounds (step by step 8), parties 0 and 1 `80n`; plain 2PC declines and sends nothing.
#[test]
fn poly_chain_matches_the_polynomial() {
    const FPOW: u32 = 20;
    const CB: u32 = 16;
    let n = 300;
    let u: Vec<f64> = uniform(n, 0.0, 1.0, 41);
    let w: Vec<u64> = words(n, 42).iter().map(|v| v & 1).collect();
    let coeffs = [0.75, -1.5, 2.0, -0.5, 1.25, -2.0, 0.5, 1.0, -0.25];
    let cw: Vec<u64> = coeffs
        .iter()
        .enumerate()
        .map(|(i, c)| FixedPoint { frac_bits: if i == 0 { FPOW + CB } else { CB } }.encode(*c))
        .collect();
    let ue: Vec<u64> = u.iter().map(|v| FixedPoint { frac_bits: FPOW }.encode(*v)).collect();
    struct Poly<'a>(&'a [u64], &'a [u64], &'a [u64]);
    impl Program for Poly<'_> {
        type Output = (bool, (u64, u64), u64, Vec<u64>);
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
            let (u, w) = (input(p, self.0)?, input(p, self.1)?);
            let mut out = vec![0; u.len()];
            let before = p.cost().unwrap();
            let done = p.poly_chain(&u, &w, self.2, FPOW, FPOW + CB - 16, &mut out)?;
            let spent = p.cost().unwrap().since(&before);
            let mut opened = vec![0; self.0.len()];
            if done {
                p.open(&out, &mut opened)?;
            }
            Ok((done, (before.rounds, before.rounds + spent.rounds), spent.bytes_sent, opened))
        }
    }
    let want: Vec<f64> = (0..n)
        .map(|e| coeffs[0] * w[e] as f64 + (1..9).map(|i| coeffs[i] * u[e].powi(i as i32)).sum::<f64>())
        .collect();
    for setting in Setting::ALL {
        let r = run_mem(setting, &Poly(&ue, &w, &cw)).unwrap();
        let done = r[0].0.0;
        assert_eq!(done, setting != Setting::Ot2pc, "{setting:?}");
        if !done {
            assert!(r.iter().all(|p| p.0.1.0 == p.0.1.1 && p.0.2 == 0), "{setting:?} sent something");
            continue;
        }
        let rounds = added_rounds(r.iter().map(|p| p.0.1));
        assert_eq!(rounds, 5, "{setting:?}");
        let n = n as u64;
        match setting {
            Setting::Dealer => assert_eq!([r[0].0.2, r[1].0.2, r[2].0.2], [72 * n, 72 * n, 248 * n]),
            _ => assert_eq!([r[0].0.2, r[1].0.2], [80 * n, 80 * n], "{setting:?}"),
        }
        let got: Vec<f64> = r[0].0.3.iter().map(|v| FP.decode(*v)).collect();
        let e = max_abs(&got, &want);
        eprintln!("poly_chain ({setting:?}) error: measured {e:.2e} (bound 1.4e-4)");
        assert!(e <= 1.4e-4, "{setting:?}: poly_chain error {e}");
    }
}

/// RMSNorm's rounds: 2PC-Dealer multiplies (1), opens the truncation of the row sums and
/// `x ⊙ gain` beside their thermometer's comparison (1), finishes the comparison (3) and
/// scales in the chained product (3): 8; 3PC's product is local, the fused opening and the
/// comparison's rest take 4, one reshare brings sums, products and bits back (1), the
/// scaling 3: 8 (step by step 9 and 10).
#[test]
fn rms_norm_in_eight_rounds() {
    struct Norm(Vec<u64>, Vec<u64>);
    impl Program for Norm {
        type Output = (u64, u64);
        fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
            let (rows, d) = (3, self.1.len());
            let x = input(p, &self.0)?;
            let g = input(p, &self.1)?;
            let mut out = vec![0; x.len()];
            let mut s = vec![0; nl::rms_norm_scratch(rows, d, P::PLANES)];
            let before = p.cost().unwrap().rounds;
            nl::rms_norm(p, &x, rows, d, Gain::Shared(&g), 1e-5, &mut out, &mut s, FP)?;
            Ok((before, p.cost().unwrap().rounds))
        }
    }
    let x: Vec<u64> = uniform(3 * 32, -2.0, 2.0, 51).iter().map(|v| FP.encode(*v)).collect();
    let g: Vec<u64> = uniform(32, 0.5, 1.5, 52).iter().map(|v| FP.encode(*v)).collect();
    for setting in [Setting::Dealer, Setting::Rep3] {
        let r = run_mem(setting, &Norm(x.clone(), g.clone())).unwrap();
        let rounds = added_rounds(r.iter().map(|p| (p.0.0, p.0.1)));
        assert_eq!(rounds, 8, "{setting:?}");
    }
}
