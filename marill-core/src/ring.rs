//! Slice kernels over Z_2^64: `u64` with wrapping semantics.
//!
//! Every public function checks lengths and returns [`Error::ShapeMismatch`] without
//! writing anything on a mismatch, then dispatches once (not per element) to a backend:
//! [`portable`] always, `avx512` when the CPU has AVX-512F and AVX-512DQ (the 64-bit
//! low multiply `vpmullq` lives in DQ) and the OS saves the ZMM state. Detection runs
//! once and is cached. Tests check every backend against the portable one.
//!
//! Matrices are row-major. [`MatDims`] `{ m, n, k }` describes `(m×n) · (n×k) = (m×k)`.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Result, ensure_shape};

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod portable;

/// Shape of a matrix product `(m×n) · (n×k)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatDims {
    /// Rows of the left operand and of the result.
    pub m: usize,
    /// Columns of the left operand, rows of the right.
    pub n: usize,
    /// Columns of the right operand and of the result.
    pub k: usize,
}

impl MatDims {
    /// `(m×n)·(n×k)`.
    pub const fn new(m: usize, n: usize, k: usize) -> Self {
        Self { m, n, k }
    }
    /// Elements of the left operand, or `None` on overflow.
    pub const fn lhs(&self) -> Option<usize> {
        self.m.checked_mul(self.n)
    }
    /// Elements of the right operand, or `None` on overflow.
    pub const fn rhs(&self) -> Option<usize> {
        self.n.checked_mul(self.k)
    }
    /// Elements of the result, or `None` on overflow.
    pub const fn out(&self) -> Option<usize> {
        self.m.checked_mul(self.k)
    }
    /// Checks `a`, `b`, `c` against the shape.
    pub fn check(&self, a: usize, b: usize, c: usize) -> Result<()> {
        ensure_shape(self.lhs() == Some(a) && self.rhs() == Some(b) && self.out() == Some(c))
    }
}

/// Which kernel family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX-512F + AVX-512DQ.
    Avx512,
}

const UNKNOWN: u8 = 0;
const PORTABLE: u8 = 1;
const AVX512: u8 = 2;
static DETECTED: AtomicU8 = AtomicU8::new(UNKNOWN);
static FORCE_PORTABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The backend the kernels use on this CPU (detected once, then cached).
pub fn backend() -> Backend {
    if FORCE_PORTABLE.load(Ordering::Relaxed) {
        return Backend::Portable;
    }
    detected()
}

/// The best backend this CPU supports, ignoring [`force_portable`].
pub fn detected() -> Backend {
    let mut v = DETECTED.load(Ordering::Relaxed);
    if v == UNKNOWN {
        v = if detect_avx512() { AVX512 } else { PORTABLE };
        DETECTED.store(v, Ordering::Relaxed);
    }
    if v == AVX512 { Backend::Avx512 } else { Backend::Portable }
}

/// Route every later kernel call to the portable backend (`true`) or back to the detected
/// one (`false`). For benchmarks that compare backends; process-wide.
pub fn force_portable(on: bool) {
    FORCE_PORTABLE.store(on, Ordering::Relaxed);
}

#[cfg(target_arch = "x86_64")]
fn detect_avx512() -> bool {
    avx512::supported()
}
#[cfg(not(target_arch = "x86_64"))]
fn detect_avx512() -> bool {
    false
}

macro_rules! dispatch {
    ($name:ident ( $($arg:expr),* )) => {{
        match backend() {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => avx512::$name($($arg),*),
            _ => portable::$name($($arg),*),
        }
    }};
}

/// `out[i] = a[i] + b[i]`.
pub fn add(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    dispatch!(add(a, b, out));
    Ok(())
}

/// `out[i] = a[i] - b[i]`.
pub fn sub(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    dispatch!(sub(a, b, out));
    Ok(())
}

/// `out[i] = a[i] * b[i]` (low 64 bits).
pub fn mul(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    dispatch!(mul(a, b, out));
    Ok(())
}

/// `out[i] = -a[i]`.
pub fn neg(a: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == out.len())?;
    dispatch!(neg(a, out));
    Ok(())
}

/// `out[i] = c * a[i]`.
pub fn scale(a: &[u64], c: u64, out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == out.len())?;
    dispatch!(scale(a, c, out));
    Ok(())
}

/// `y[i] += alpha * x[i]`.
pub fn axpy(alpha: u64, x: &[u64], y: &mut [u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    dispatch!(axpy(alpha, x, y));
    Ok(())
}

/// `y[i] += x[i]`.
pub fn add_assign(y: &mut [u64], x: &[u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    dispatch!(add_assign(y, x));
    Ok(())
}

/// `y[i] -= x[i]`.
pub fn sub_assign(y: &mut [u64], x: &[u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    dispatch!(sub_assign(y, x));
    Ok(())
}

/// `y[i] += a[i] * b[i]`.
pub fn mul_add_assign(y: &mut [u64], a: &[u64], b: &[u64]) -> Result<()> {
    ensure_shape(a.len() == y.len() && b.len() == y.len())?;
    dispatch!(mul_add_assign(y, a, b));
    Ok(())
}

/// `out = a · b` for row-major `a (m×n)`, `b (n×k)`, `out (m×k)`.
pub fn matmul(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    out.fill(0);
    dispatch!(matmul_acc(a, b, out, d));
    Ok(())
}

/// `out += a · b` for row-major `a (m×n)`, `b (n×k)`, `out (m×k)`.
pub fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    dispatch!(matmul_acc(a, b, out, d));
    Ok(())
}

/// Reference product for tests: the portable kernel, whatever the CPU.
pub fn matmul_portable(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    out.fill(0);
    portable::matmul_acc(a, b, out, d);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed ^ (*seed >> 29)
    }

    fn fill(buf: &mut [u64], seed: &mut u64) {
        for v in buf.iter_mut() {
            *v = lcg(seed);
        }
    }

    #[test]
    fn matmul_backends_agree_on_ragged_shapes() {
        let mut seed = 7;
        let mut a = [0u64; 37 * 41];
        let mut b = [0u64; 41 * 35];
        let mut c1 = [0u64; 37 * 35];
        let mut c2 = [0u64; 37 * 35];
        for &(m, n, k) in &[(1, 1, 1), (1, 41, 35), (3, 5, 17), (4, 16, 16), (5, 33, 31), (37, 41, 35), (9, 1, 33)] {
            let d = MatDims::new(m, n, k);
            fill(&mut a[..m * n], &mut seed);
            fill(&mut b[..n * k], &mut seed);
            matmul(&a[..m * n], &b[..n * k], &mut c1[..m * k], d).unwrap();
            matmul_portable(&a[..m * n], &b[..n * k], &mut c2[..m * k], d).unwrap();
            assert_eq!(&c1[..m * k], &c2[..m * k], "shape {m}x{n}x{k}");
            // Naive triple loop as the reference of the reference.
            for i in 0..m {
                for j in 0..k {
                    let mut s = 0u64;
                    for p in 0..n {
                        s = s.wrapping_add(a[i * n + p].wrapping_mul(b[p * k + j]));
                    }
                    assert_eq!(c2[i * k + j], s);
                }
            }
        }
    }

    #[test]
    fn elementwise_backends_agree() {
        let mut seed = 3;
        for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 257] {
            let mut a = [0u64; 257];
            let mut b = [0u64; 257];
            fill(&mut a[..len], &mut seed);
            fill(&mut b[..len], &mut seed);
            let (a, b) = (&a[..len], &b[..len]);
            let mut o = [0u64; 257];
            let o = &mut o[..len];
            add(a, b, o).unwrap();
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_add(*b)));
            sub(a, b, o).unwrap();
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_sub(*b)));
            mul(a, b, o).unwrap();
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_mul(*b)));
            neg(a, o).unwrap();
            assert!(o.iter().zip(a).all(|(o, a)| *o == a.wrapping_neg()));
            scale(a, 0xdead_beef_1234, o).unwrap();
            assert!(o.iter().zip(a).all(|(o, a)| *o == a.wrapping_mul(0xdead_beef_1234)));
            o.copy_from_slice(b);
            axpy(99, a, o).unwrap();
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == b.wrapping_add(a.wrapping_mul(99))));
            o.copy_from_slice(b);
            mul_add_assign(o, a, b).unwrap();
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == b.wrapping_add(a.wrapping_mul(*b))));
            o.copy_from_slice(b);
            add_assign(o, a).unwrap();
            sub_assign(o, a).unwrap();
            assert_eq!(&*o, b);
        }
    }

    #[test]
    fn shape_errors_write_nothing() {
        let a = [1u64; 4];
        let mut o = [9u64; 3];
        assert_eq!(add(&a, &a, &mut o), Err(Error::ShapeMismatch));
        assert_eq!(o, [9; 3]);
        assert_eq!(matmul(&a, &a, &mut o, MatDims::new(2, 2, 2)), Err(Error::ShapeMismatch));
        assert_eq!(o, [9; 3]);
        assert_eq!(matmul(&a, &a, &mut o, MatDims::new(usize::MAX, 2, 2)), Err(Error::ShapeMismatch));
    }
}
