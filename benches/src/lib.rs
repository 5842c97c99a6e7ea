//! Shared code of the criterion benches and the cost harness: building shares of known
//! plaintexts locally at every party (so a measurement covers the op alone, not input
//! sharing), and running one op at all parties with its time, bytes and rounds.
//!
//! Building shares from a plaintext every party can see is a benchmarking shortcut that
//! has no place in a deployment: it is only sound here because all parties are threads of
//! one process measuring themselves.

use marill_std::StdError;
use std::time::{Duration, Instant};

use marill_core::cost::Cost;
use marill_core::nonlinear as nl;
use marill_core::prg::{Prg, Stream};
use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_core::share::{split_additive, split_replicated};
use marill_core::{Error, FixedPoint};
use marill_std::Setting;
use marill_std::run::{Program, run_mem_over};

/// This party's shares of `x`: the harness's deterministic split.
pub fn local_shares<P: Protocol>(p: &P, x: &[u64], salt: u8) -> Vec<u64> {
    let n = x.len();
    let r0 = words(n, salt);
    let r1 = words(n, salt.wrapping_add(101));
    match P::PLANES {
        1 => {
            let (mut s0, mut s1) = (vec![0; n], vec![0; n]);
            // Lengths match by construction.
            let _ = split_additive(x, &r0, &mut s0, &mut s1);
            match p.party() {
                0 => s0,
                1 => s1,
                _ => vec![0; n],
            }
        }
        _ => {
            let mut parts = [vec![0; 2 * n], vec![0; 2 * n], vec![0; 2 * n]];
            let [a, b, c] = &mut parts;
            let _ = split_replicated(x, &r0, &r1, [a, b, c]);
            std::mem::take(&mut parts[p.party().min(2)])
        }
    }
}

/// Deterministic uniform words.
pub fn words(n: usize, seed: u8) -> Vec<u64> {
    let mut s = [0u8; 32];
    s[0] = seed;
    s[1] = 0xbe;
    let mut v = vec![0u64; n];
    Prg::new(s, Stream::Local).fill(&mut v);
    v
}

/// Deterministic reals uniform in `[-bound, bound)`.
pub fn uniform_reals(n: usize, bound: f64, seed: u8) -> Vec<f64> {
    words(n, seed).into_iter().map(|w| ((w >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound).collect()
}

/// The ops the harness measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fixed-point elementwise product (multiply, then truncate by f).
    Mul,
    /// Fixed-point shared × shared matrix product (multiply, then truncate the m×k outputs).
    Matmul,
    /// Fixed-point shared × public matrix product (local product, then truncate).
    MatmulPublic,
    /// Fixed-point shares × a weight the server (party 1) knows: the product of a private
    /// linear layer (weight set up once per session, outside the timing), then truncate.
    MatmulWeight,
    /// Truncation by f of values with 2f fractional bits (as after a product).
    Trunc,
    /// Less-than-zero, arithmetic shares of the sign bit.
    Ltz,
    /// `e^x` on [-16, 0].
    Exp,
    /// `1/x` on [1, 1000] (32 output bits).
    Reciprocal,
    /// `1/√x` on [0.01, 100] (24 output bits).
    Rsqrt,
    /// RMSNorm of `H·R` rows of `C`, public gain.
    RmsNorm,
    /// Row softmax of `H·R` rows of `C`, scores N(0, 2²).
    Softmax,
    /// Row 2ReLU softmax of `H·R` rows of `C`.
    Softmax2Relu,
    /// SiLU on [-10, 10].
    Silu,
    /// GeLU (tanh form) on [-10, 10].
    Gelu,
    /// ReLU on [-10, 10].
    Relu,
    /// Row argmax of `H·R` rows of `C` (the error is the index error).
    Argmax,
}

impl Op {
    /// Every op, in harness order.
    pub const ALL: [Op; 16] = [
        Op::Mul,
        Op::Matmul,
        Op::MatmulPublic,
        Op::MatmulWeight,
        Op::Trunc,
        Op::Ltz,
        Op::Exp,
        Op::Reciprocal,
        Op::Rsqrt,
        Op::RmsNorm,
        Op::Softmax,
        Op::Softmax2Relu,
        Op::Silu,
        Op::Gelu,
        Op::Relu,
        Op::Argmax,
    ];
    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Mul => "mul",
            Op::Matmul => "matmul",
            Op::MatmulPublic => "matmul_public",
            Op::MatmulWeight => "matmul_weight",
            Op::Trunc => "trunc",
            Op::Ltz => "ltz",
            Op::Exp => "exp",
            Op::Reciprocal => "reciprocal",
            Op::Rsqrt => "rsqrt",
            Op::RmsNorm => "rmsnorm",
            Op::Softmax => "softmax",
            Op::Softmax2Relu => "softmax_2relu",
            Op::Silu => "silu",
            Op::Gelu => "gelu",
            Op::Relu => "relu",
            Op::Argmax => "argmax",
        }
    }
    /// Parse [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }
    /// Whether the op takes a three-number shape: `MxNxK` for products, `HxRxC` (H blocks
    /// of R rows of length C) for row-wise ops; else `n=COUNT`.
    pub fn is_matrix(self) -> bool {
        matches!(
            self,
            Op::Matmul
                | Op::MatmulPublic
                | Op::MatmulWeight
                | Op::RmsNorm
                | Op::Softmax
                | Op::Softmax2Relu
                | Op::Argmax
        )
    }
    /// Whether the op is row-wise over `HxRxC`.
    pub fn is_rowwise(self) -> bool {
        matches!(self, Op::RmsNorm | Op::Softmax | Op::Softmax2Relu | Op::Argmax)
    }
    /// The shape the harness uses when none is given (the issues' reference shapes).
    pub fn default_shape(self) -> Shape {
        match self {
            Op::Matmul | Op::MatmulPublic | Op::MatmulWeight => Shape::Mat(MatDims::new(128, 768, 768)),
            Op::Softmax | Op::Softmax2Relu => Shape::Mat(MatDims::new(12, 128, 128)),
            Op::RmsNorm => Shape::Mat(MatDims::new(1, 128, 768)),
            Op::Argmax => Shape::Mat(MatDims::new(1, 1, 32000)),
            Op::Reciprocal | Op::Rsqrt => Shape::Elems(100_000),
            _ => Shape::Elems(1_000_000),
        }
    }
}

/// The shape of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `n` elements.
    Elems(usize),
    /// A matrix product.
    Mat(MatDims),
}

impl Shape {
    /// Parse `n=COUNT` or `MxNxK`.
    pub fn parse(s: &str) -> Option<Shape> {
        if let Some(n) = s.strip_prefix("n=") {
            return n.replace('_', "").parse().ok().map(Shape::Elems);
        }
        let v: Vec<usize> = s.split('x').map(|t| t.parse().ok()).collect::<Option<_>>()?;
        match v[..] {
            [m, n, k] => Some(Shape::Mat(MatDims::new(m, n, k))),
            _ => None,
        }
    }
    /// The canonical text.
    pub fn text(&self) -> String {
        match self {
            Shape::Elems(n) => format!("n={n}"),
            Shape::Mat(d) => format!("{}x{}x{}", d.m, d.n, d.k),
        }
    }
}

/// One measured run of one op.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Longest time any party spent in the op.
    pub wall: Duration,
    /// Bytes each party sent.
    pub bytes_sent: [u64; 3],
    /// Rounds (largest Lamport clock).
    pub rounds: u64,
    /// Max absolute error against the float64 reference, in real units.
    pub max_abs_err: f64,
}

/// A case: an op, a shape, fixed-point bits, and its inputs.
pub struct Case {
    op: Op,
    shape: Shape,
    fp: FixedPoint,
    x: Vec<f64>,
    y: Vec<f64>,
    xe: Vec<u64>,
    ye: Vec<u64>,
}

/// Normal(0, sd²) reals (Box–Muller over the deterministic words).
fn normal_reals(n: usize, sd: f64, seed: u8) -> Vec<f64> {
    let u: Vec<f64> = uniform_reals(2 * n, 0.5, seed).into_iter().map(|v| v + 0.5 + 1e-12).collect();
    (0..n).map(|i| sd * (-2.0 * u[2 * i].min(1.0).ln()).sqrt() * (std::f64::consts::TAU * u[2 * i + 1]).cos()).collect()
}

fn shift_reals(v: Vec<f64>, lo: f64, hi: f64) -> Vec<f64> {
    // uniform_reals gives [-1, 1)·bound with bound 1: map to [lo, hi)
    v.into_iter().map(|t| lo + (t + 1.0) * 0.5 * (hi - lo)).collect()
}

impl Case {
    /// Random inputs for `op` over `shape` (ranges in the [`Op`] docs; mul in [-8, 8),
    /// matrices in [-1, 1), trunc and ltz in [-2^20, 2^20)).
    pub fn new(op: Op, shape: Shape, frac_bits: u32) -> Result<Case, String> {
        let fp = FixedPoint::new(frac_bits).ok_or("--frac-bits must be at most 62")?;
        if op.is_matrix() != matches!(shape, Shape::Mat(_)) {
            let want = if op.is_rowwise() {
                "HxRxC"
            } else if op.is_matrix() {
                "MxNxK"
            } else {
                "n=COUNT"
            };
            return Err(format!("op {} takes a shape {want}", op.name()));
        }
        let (nx, ny) = match (op.is_rowwise(), shape) {
            (_, Shape::Elems(n)) => (n, n),
            (true, Shape::Mat(d)) => {
                (d.m.checked_mul(d.n).and_then(|r| r.checked_mul(d.k)).ok_or("shape overflows")?, d.k)
            }
            (false, Shape::Mat(d)) => (d.lhs().ok_or("shape overflows")?, d.rhs().ok_or("shape overflows")?),
        };
        let (x, y) = match op {
            Op::Mul => (uniform_reals(nx, 8.0, 1), uniform_reals(ny, 8.0, 2)),
            Op::Matmul | Op::MatmulPublic | Op::MatmulWeight => (uniform_reals(nx, 1.0, 1), uniform_reals(ny, 1.0, 2)),
            Op::Trunc | Op::Ltz => (uniform_reals(nx, (1u64 << 20) as f64, 3), Vec::new()),
            Op::Exp => (shift_reals(uniform_reals(nx, 1.0, 4), -16.0, 0.0), Vec::new()),
            Op::Reciprocal => (shift_reals(uniform_reals(nx, 1.0, 5), 1.0, 1000.0), Vec::new()),
            Op::Rsqrt => (shift_reals(uniform_reals(nx, 1.0, 6), 0.01, 100.0), Vec::new()),
            Op::RmsNorm => (uniform_reals(nx, 4.0, 7), shift_reals(uniform_reals(ny, 1.0, 8), 0.5, 1.5)),
            Op::Softmax | Op::Softmax2Relu => (normal_reals(nx, 2.0, 9), Vec::new()),
            Op::Silu | Op::Gelu | Op::Relu => (uniform_reals(nx, 10.0, 10), Vec::new()),
            // distinct values: a permutation-like spread
            Op::Argmax => ((0..nx).map(|i| ((i * 7919) % 100_003) as f64 / 64.0 - 700.0).collect(), Vec::new()),
        };
        let enc2 = FixedPoint::new(2 * frac_bits).ok_or("--frac-bits must be at most 31 for trunc")?;
        let xe: Vec<u64> = if op == Op::Trunc {
            x.iter().map(|v| enc2.encode(*v)).collect()
        } else {
            x.iter().map(|v| fp.encode(*v)).collect()
        };
        // Inputs as the parties see them (rounded to the fixed-point grid).
        let x = if op == Op::Trunc { x } else { xe.iter().map(|v| fp.decode(*v)).collect() };
        let ye: Vec<u64> = y.iter().map(|v| fp.encode(*v)).collect();
        let y = ye.iter().map(|v| fp.decode(*v)).collect();
        Ok(Case { op, shape, fp, x, y, xe, ye })
    }

    fn rows_cols(&self) -> (usize, usize) {
        match self.shape {
            Shape::Mat(d) if self.op.is_rowwise() => (d.m * d.n, d.k),
            Shape::Mat(d) => (d.m, d.k),
            Shape::Elems(n) => (n, 1),
        }
    }

    /// Elements of the output.
    fn out_len(&self) -> usize {
        match (self.op, self.shape) {
            (Op::Argmax, _) => self.rows_cols().0,
            (Op::Matmul | Op::MatmulPublic | Op::MatmulWeight, Shape::Mat(d)) => d.m * d.k,
            (_, Shape::Mat(d)) => d.m * d.n * d.k,
            (_, Shape::Elems(n)) => n,
        }
    }

    /// Fractional bits of the output.
    fn out_bits(&self) -> u32 {
        match self.op {
            Op::Reciprocal => 32,
            Op::Rsqrt => 24,
            Op::Ltz | Op::Argmax => 0,
            _ => self.fp.frac_bits,
        }
    }

    /// The float64 reference of the output.
    fn reference(&self) -> Vec<f64> {
        let (rows, cols) = self.rows_cols();
        let x = &self.x;
        match (self.op, self.shape) {
            (Op::Mul, _) => x.iter().zip(&self.y).map(|(a, b)| a * b).collect(),
            (Op::Matmul | Op::MatmulPublic | Op::MatmulWeight, Shape::Mat(d)) => {
                let mut c = vec![0.0; d.m * d.k];
                for i in 0..d.m {
                    for p in 0..d.n {
                        let a = x[i * d.n + p];
                        for j in 0..d.k {
                            c[i * d.k + j] += a * self.y[p * d.k + j];
                        }
                    }
                }
                c
            }
            (Op::Trunc, _) => x.clone(),
            (Op::Ltz, _) => x.iter().map(|v| if *v < 0.0 { 1.0 } else { 0.0 }).collect(),
            (Op::Exp, _) => x.iter().map(|v| v.exp()).collect(),
            (Op::Reciprocal, _) => x.iter().map(|v| 1.0 / v).collect(),
            (Op::Rsqrt, _) => x.iter().map(|v| 1.0 / v.sqrt()).collect(),
            (Op::Silu, _) => x.iter().map(|v| v / (1.0 + (-v).exp())).collect(),
            (Op::Gelu, _) => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                x.iter().map(|v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())).collect()
            }
            (Op::Relu, _) => x.iter().map(|v| v.max(0.0)).collect(),
            (Op::Argmax, _) => (0..rows)
                .map(|r| {
                    let row = &x[r * cols..(r + 1) * cols];
                    let m = row.iter().cloned().fold(f64::MIN, f64::max);
                    row.iter().position(|v| *v == m).unwrap_or(0) as f64
                })
                .collect(),
            (Op::Softmax | Op::Softmax2Relu | Op::RmsNorm, _) => {
                let mut out = vec![0.0; x.len()];
                for r in 0..rows {
                    let row = &x[r * cols..(r + 1) * cols];
                    let o = &mut out[r * cols..(r + 1) * cols];
                    match self.op {
                        Op::Softmax => {
                            let m = row.iter().cloned().fold(f64::MIN, f64::max);
                            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                            o.iter_mut().zip(row).for_each(|(o, v)| *o = (v - m).exp() / s);
                        }
                        Op::Softmax2Relu => {
                            let s: f64 = row.iter().map(|v| v.max(0.0)).sum::<f64>() + 2f64.powi(-8);
                            o.iter_mut().zip(row).for_each(|(o, v)| *o = v.max(0.0) / s);
                        }
                        _ => {
                            let ms = row.iter().map(|v| v * v).sum::<f64>() / cols as f64;
                            let r = 1.0 / (ms + 1e-5).sqrt();
                            o.iter_mut().zip(row.iter().zip(&self.y)).for_each(|(o, (v, g))| *o = v * r * g);
                        }
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Scratch words the op needs at a party with `pl` planes.
    fn scratch_words(&self, pl: usize) -> usize {
        let (rows, cols) = self.rows_cols();
        let n = self.x.len();
        match self.op {
            Op::Exp => nl::exp_scratch(n, pl),
            Op::Reciprocal => nl::normalised_scratch(n, pl, 0, 10),
            Op::Rsqrt => nl::normalised_scratch(n, pl, -7, 7),
            Op::RmsNorm => nl::rms_norm_scratch(rows, cols, pl),
            Op::Softmax | Op::Softmax2Relu => nl::softmax_scratch(rows, cols, pl),
            Op::Silu | Op::Gelu => nl::act_scratch(n, pl),
            Op::Relu => nl::relu_scratch(n, pl),
            Op::Argmax => nl::argmax_scratch(rows, cols, pl),
            _ => 0,
        }
    }

    /// Run at all parties in memory: one warm-up, then `runs` measured repetitions in the
    /// same session (scratch memory and buffers warm, as in a long-lived deployment).
    pub fn measure(&self, setting: Setting, runs: usize) -> Result<Vec<Measured>, String> {
        self.measure_over(setting, runs, None)
    }

    /// [`Case::measure`] with the parties over an emulated `link` when one is given.
    pub fn measure_over(
        &self,
        setting: Setting,
        runs: usize,
        link: Option<marill_std::transport::link::LinkModel>,
    ) -> Result<Vec<Measured>, String> {
        let prog = Repeat { case: self, runs };
        let r = run_mem_over(setting, link, &prog).map_err(|e| e.to_string())?;
        let opened = &r[0].0.1;
        let reference = self.reference();
        let bits = self.out_bits();
        let decode = |v: u64| v as i64 as f64 / (1u64 << bits) as f64;
        let max_abs_err = opened.iter().zip(&reference).map(|(o, r)| (decode(*o) - r).abs()).fold(0.0, f64::max);
        Ok((0..runs)
            .map(|i| Measured {
                wall: r.iter().map(|((s, _), _)| s[i].0).max().unwrap_or_default(),
                bytes_sent: [
                    r[0].0.0[i].1.bytes_sent,
                    r[1].0.0[i].1.bytes_sent,
                    r.get(2).map_or(0, |p| p.0.0[i].1.bytes_sent),
                ],
                // The depth this run added to the message DAG: the largest clock after it
                // minus the largest before it (a party's own clock difference can include
                // catching up with the others, for example after it was the helper).
                rounds: r.iter().map(|((s, _), _)| s[i].2.1).max().unwrap_or(0)
                    - r.iter().map(|((s, _), _)| s[i].2.0).max().unwrap_or(0),
                max_abs_err,
            })
            .collect())
    }

    /// One execution of the op on this party's shares; `out` receives the result.
    fn once<P: Protocol>(
        &self,
        p: &mut P,
        x: &[u64],
        y: &[u64],
        out: &mut [u64],
        raw: &mut [u64],
        scratch: &mut [u64],
    ) -> Result<(), Error> {
        let f = self.fp.frac_bits;
        let fp = self.fp;
        let (rows, cols) = self.rows_cols();
        match (self.op, self.shape) {
            (Op::Mul, _) => p.mul_trunc(x, y, f, out),
            (Op::Matmul, Shape::Mat(d)) => {
                p.matmul(x, y, raw, d)?;
                p.trunc(raw, f, out)
            }
            (Op::MatmulPublic, Shape::Mat(d)) => {
                p.matmul_public(x, &self.ye, raw, d)?;
                p.trunc(raw, f, out)
            }
            (Op::MatmulWeight, Shape::Mat(d)) => {
                p.matmul_weight(x, y, raw, d)?;
                p.trunc(raw, f, out)
            }
            (Op::Trunc, _) => p.trunc(x, f, out),
            (Op::Ltz, _) => p.ltz(x, out),
            (Op::Exp, _) => nl::exp(p, x, out, scratch, fp),
            (Op::Reciprocal, _) => nl::reciprocal(p, x, out, scratch, fp, 0, 10, 32),
            (Op::Rsqrt, _) => nl::rsqrt(p, x, out, scratch, fp, -7, 7, 24),
            (Op::RmsNorm, _) => nl::rms_norm(p, x, rows, cols, nl::Gain::Public(&self.ye), 1e-5, out, scratch, fp),
            (Op::Softmax, _) => nl::softmax(p, x, rows, cols, nl::Mask::All, out, scratch, fp),
            (Op::Softmax2Relu, _) => nl::softmax_2relu(p, x, rows, cols, nl::Mask::All, out, scratch, fp),
            (Op::Silu, _) => nl::silu(p, x, out, scratch, fp),
            (Op::Gelu, _) => nl::gelu(p, x, out, scratch, fp),
            (Op::Relu, _) => nl::relu(p, x, out, scratch),
            (Op::Argmax, _) => nl::argmax(p, x, rows, cols, out, raw, scratch),
            _ => Err(Error::ShapeMismatch),
        }
    }
}

/// A case run `runs` times after a warm-up, in one session.
struct Repeat<'a> {
    case: &'a Case,
    runs: usize,
}

impl Program for Repeat<'_> {
    /// Per repetition (time in the op, cost of the op, this party's clock before and
    /// after), and the revealed last result.
    type Output = (Vec<(Duration, Cost, (u64, u64))>, Vec<u64>);

    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, StdError> {
        let c = self.case;
        let pl = P::PLANES;
        let x = local_shares(p, &c.xe, 1);
        let y = match (c.op, c.shape) {
            (Op::Mul | Op::Matmul, _) => local_shares(p, &c.ye, 2),
            (Op::MatmulWeight, Shape::Mat(d)) => {
                let mine = (p.party() == 1).then_some(&c.ye[..]);
                let spec = p.share_weight(1, mine, d.n, d.k)?;
                let mut material = vec![0; spec.words];
                p.fill_weight(1, mine, spec, &mut material)?;
                material
            }
            _ => Vec::new(),
        };
        let out_len = c.out_len();
        let mut out = vec![0; out_len * pl];
        let mut raw = vec![0; out_len * pl];
        let mut scratch = vec![0; c.scratch_words(pl)];
        let mut samples = Vec::with_capacity(self.runs);
        for i in 0..=self.runs {
            let c0 = p.cost().unwrap_or_default();
            let t0 = Instant::now();
            c.once(p, &x, &y, &mut out, &mut raw, &mut scratch)?;
            let wall = t0.elapsed();
            if i > 0 {
                let c1 = p.cost().unwrap_or_default();
                samples.push((wall, c1.since(&c0), (c0.rounds, c1.rounds)));
            }
        }
        // Revealed for the error check, outside the measured time and bytes.
        let mut opened = vec![0; out_len];
        p.reveal_to(0, &out, &mut opened)?;
        Ok((samples, opened))
    }
}
