//! Shared code of the criterion benches and the cost harness: building shares of known
//! plaintexts locally at every party (so a measurement covers the op alone, not input
//! sharing), and running one op at all parties with its time, bytes and rounds.
//!
//! Building shares from a plaintext every party can see is a benchmarking shortcut that
//! has no place in a deployment: it is only sound here because all parties are threads of
//! one process measuring themselves.

use std::time::{Duration, Instant};

use marill_core::cost::Cost;
use marill_core::prg::{Prg, Stream};
use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_core::share::{split_additive, split_replicated};
use marill_core::{Error, FixedPoint};
use marill_std::Setting;
use marill_std::run::{Program, run_mem};

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
    /// Truncation by f of values with 2f fractional bits (as after a product).
    Trunc,
    /// Less-than-zero, arithmetic shares of the sign bit.
    Ltz,
}

impl Op {
    /// Every op, in harness order.
    pub const ALL: [Op; 5] = [Op::Mul, Op::Matmul, Op::MatmulPublic, Op::Trunc, Op::Ltz];
    /// The name on the command line and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Op::Mul => "mul",
            Op::Matmul => "matmul",
            Op::MatmulPublic => "matmul_public",
            Op::Trunc => "trunc",
            Op::Ltz => "ltz",
        }
    }
    /// Parse [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }
    /// Whether the op takes a matrix shape `MxNxK` (else `n=COUNT`).
    pub fn is_matrix(self) -> bool {
        matches!(self, Op::Matmul | Op::MatmulPublic)
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

impl Case {
    /// Random inputs for `op` over `shape`: mul in [-8, 8), matrices in [-1, 1),
    /// trunc in [-2^20, 2^20), ltz in [-2^20, 2^20).
    pub fn new(op: Op, shape: Shape, frac_bits: u32) -> Result<Case, String> {
        let fp = FixedPoint::new(frac_bits).ok_or("--frac-bits must be at most 62")?;
        if op.is_matrix() != matches!(shape, Shape::Mat(_)) {
            return Err(format!("op {} takes a shape {}", op.name(), if op.is_matrix() { "MxNxK" } else { "n=COUNT" }));
        }
        let (nx, ny) = match shape {
            Shape::Elems(n) => (n, n),
            Shape::Mat(d) => (d.lhs().ok_or("shape overflows")?, d.rhs().ok_or("shape overflows")?),
        };
        let (x, y) = match op {
            Op::Mul => (uniform_reals(nx, 8.0, 1), uniform_reals(ny, 8.0, 2)),
            Op::Matmul | Op::MatmulPublic => (uniform_reals(nx, 1.0, 1), uniform_reals(ny, 1.0, 2)),
            Op::Trunc | Op::Ltz => (uniform_reals(nx, (1u64 << 20) as f64, 3), Vec::new()),
        };
        let enc2 = FixedPoint::new(2 * frac_bits).ok_or("--frac-bits must be at most 31 for trunc")?;
        let xe: Vec<u64> = if op == Op::Trunc {
            x.iter().map(|v| enc2.encode(*v)).collect()
        } else {
            x.iter().map(|v| fp.encode(*v)).collect()
        };
        let ye = y.iter().map(|v| fp.encode(*v)).collect();
        Ok(Case { op, shape, fp, x, y, xe, ye })
    }

    /// The float64 reference of the output.
    fn reference(&self) -> Vec<f64> {
        match (self.op, self.shape) {
            (Op::Mul, _) => self.x.iter().zip(&self.y).map(|(a, b)| a * b).collect(),
            (Op::Matmul | Op::MatmulPublic, Shape::Mat(d)) => {
                let mut c = vec![0.0; d.m * d.k];
                for i in 0..d.m {
                    for p in 0..d.n {
                        let a = self.x[i * d.n + p];
                        for j in 0..d.k {
                            c[i * d.k + j] += a * self.y[p * d.k + j];
                        }
                    }
                }
                c
            }
            (Op::Trunc, _) => self.x.clone(),
            (Op::Ltz, _) => self.x.iter().map(|v| if *v < 0.0 { 1.0 } else { 0.0 }).collect(),
            _ => Vec::new(),
        }
    }

    /// Run at all parties in memory: one warm-up, then `runs` measured repetitions in the
    /// same session (scratch memory and buffers warm, as in a long-lived deployment).
    pub fn measure(&self, setting: Setting, runs: usize) -> Result<Vec<Measured>, String> {
        let prog = Repeat { case: self, runs };
        let r = run_mem(setting, &prog).map_err(|e| e.to_string())?;
        let opened = &r[0].0.1;
        let reference = self.reference();
        let decode = |v: u64| if self.op == Op::Ltz { v as i64 as f64 } else { self.fp.decode(v) };
        let max_abs_err = opened.iter().zip(&reference).map(|(o, r)| (decode(*o) - r).abs()).fold(0.0, f64::max);
        Ok((0..runs)
            .map(|i| Measured {
                wall: r.iter().map(|((s, _), _)| s[i].0).max().unwrap_or_default(),
                bytes_sent: [r[0].0.0[i].1.bytes_sent, r[1].0.0[i].1.bytes_sent, r[2].0.0[i].1.bytes_sent],
                rounds: r.iter().map(|((s, _), _)| s[i].1.rounds).max().unwrap_or(0),
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
    ) -> Result<(), Error> {
        let f = self.fp.frac_bits;
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
            (Op::Trunc, _) => p.trunc(x, f, out),
            (Op::Ltz, _) => p.ltz(x, out),
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
    /// Per repetition (time in the op, cost of the op), and the revealed last result.
    type Output = (Vec<(Duration, Cost)>, Vec<u64>);

    fn run<P: Protocol>(&self, p: &mut P) -> Result<Self::Output, Error> {
        let c = self.case;
        let pl = P::PLANES;
        let x = local_shares(p, &c.xe, 1);
        let y = if c.op == Op::Mul || c.op == Op::Matmul { local_shares(p, &c.ye, 2) } else { Vec::new() };
        let out_len = match c.shape {
            Shape::Mat(d) => d.m * d.k,
            Shape::Elems(n) => n,
        };
        let mut out = vec![0; out_len * pl];
        let mut raw = vec![0; out_len * pl];
        let mut samples = Vec::with_capacity(self.runs);
        for i in 0..=self.runs {
            let c0 = p.cost().unwrap_or_default();
            let t0 = Instant::now();
            c.once(p, &x, &y, &mut out, &mut raw)?;
            let wall = t0.elapsed();
            if i > 0 {
                samples.push((wall, p.cost().unwrap_or_default().since(&c0)));
            }
        }
        // Revealed for the error check, outside the measured time and bytes.
        let mut opened = vec![0; out_len];
        p.reveal_to(0, &out, &mut opened)?;
        Ok((samples, opened))
    }
}
