//! Slice kernels over Z_2^64: `u64` with wrapping semantics.
//!
//! Every public function checks lengths and returns [`Error::ShapeMismatch`] without
//! writing anything on a mismatch, then dispatches once (not per element) to a backend:
//! [`portable`] always, `avx2` when the CPU has AVX2 and the OS saves the YMM state, and
//! `avx512` when it has AVX-512F and AVX-512DQ (the 64-bit low multiply `vpmullq` lives in
//! DQ) and the OS saves the ZMM state; the best one wins. Detection runs once and is
//! cached. Tests check every backend the CPU has against the portable one.
//!
//! Matrices are row-major. [`MatDims`] `{ m, n, k }` describes `(m×n) · (n×k) = (m×k)`.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Result, ensure_shape};

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod simd;
#[cfg(target_arch = "x86_64")]
mod avx2;
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
    /// AVX2: 64-bit products from 32-bit pieces (`vpmuludq`, `vpmulld`).
    Avx2,
    /// AVX-512F + AVX-512DQ (`vpmullq`).
    Avx512,
}

impl Backend {
    /// Every backend, slowest first.
    pub const ALL: [Backend; 3] = [Backend::Portable, Backend::Avx2, Backend::Avx512];

    /// Lower-case name, as benches and logs print it.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Portable => "portable",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Whether this CPU and OS run the backend (detected once, then cached).
    pub fn available(self) -> bool {
        let f = features();
        match self {
            Backend::Portable => true,
            Backend::Avx2 => f & HAS_AVX2 != 0,
            Backend::Avx512 => f & HAS_AVX512 != 0,
        }
    }

    const fn code(self) -> u8 {
        match self {
            Backend::Portable => 1,
            Backend::Avx2 => 2,
            Backend::Avx512 => 3,
        }
    }
}

const PROBED: u8 = 1;
const HAS_AVX2: u8 = 2;
const HAS_AVX512: u8 = 4;
static FEATURES: AtomicU8 = AtomicU8::new(0);
/// 0: none forced; otherwise [`Backend::code`].
static FORCED: AtomicU8 = AtomicU8::new(0);

fn features() -> u8 {
    let mut f = FEATURES.load(Ordering::Relaxed);
    if f & PROBED == 0 {
        f = PROBED;
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::supported() {
                f |= HAS_AVX2;
            }
            if avx512::supported() {
                f |= HAS_AVX512;
            }
        }
        FEATURES.store(f, Ordering::Relaxed);
    }
    f
}

/// The backend the kernels use now: the one [`force`]d, else the [`detected`] one.
pub fn backend() -> Backend {
    match FORCED.load(Ordering::Relaxed) {
        1 => Backend::Portable,
        2 => Backend::Avx2,
        3 => Backend::Avx512,
        _ => detected(),
    }
}

/// The best backend this CPU supports, ignoring [`force`].
pub fn detected() -> Backend {
    if Backend::Avx512.available() {
        Backend::Avx512
    } else if Backend::Avx2.available() {
        Backend::Avx2
    } else {
        Backend::Portable
    }
}

/// Route every later kernel call to `backend` (`None`: back to the detected one).
/// Returns `false`, and changes nothing, when this CPU lacks the backend. For benchmarks
/// and tests that compare backends; process-wide.
pub fn force(backend: Option<Backend>) -> bool {
    match backend {
        Some(b) if !b.available() => false,
        Some(b) => {
            FORCED.store(b.code(), Ordering::Relaxed);
            true
        }
        None => {
            FORCED.store(0, Ordering::Relaxed);
            true
        }
    }
}

/// Route every later kernel call to the portable backend (`true`) or back to the detected
/// one (`false`). Shorthand for [`force`].
pub fn force_portable(on: bool) {
    force(if on { Some(Backend::Portable) } else { None });
}

macro_rules! dispatch {
    ($name:ident ( $($arg:expr),* )) => {
        dispatch!(backend(), $name($($arg),*))
    };
    ($backend:expr, $name:ident ( $($arg:expr),* )) => {{
        match $backend {
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => avx512::$name($($arg),*),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => avx2::$name($($arg),*),
            _ => portable::$name($($arg),*),
        }
    }};
}

/// Elementwise kernels shorter than this run on the caller's thread. They are memory-bound:
/// more threads help only where one core cannot use the memory bandwidth (servers).
const PAR_MIN_WORDS: usize = 1 << 16;

/// Runs `f(offset, piece)` over pieces of `out` on the registered executor (whole `out`
/// on this thread when it is short).
fn each(out: &mut [u64], f: &(dyn Fn(usize, &mut [u64]) + Sync)) {
    crate::par::split(crate::par::executor(), out, 1, PAR_MIN_WORDS, f);
}

/// `out[i] = a[i] + b[i]`.
pub fn add(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    each(out, &|i, o| dispatch!(add(&a[i..i + o.len()], &b[i..i + o.len()], o)));
    Ok(())
}

/// `out[i] = a[i] - b[i]`.
pub fn sub(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    each(out, &|i, o| dispatch!(sub(&a[i..i + o.len()], &b[i..i + o.len()], o)));
    Ok(())
}

/// `out[i] = a[i] * b[i]` (low 64 bits).
pub fn mul(a: &[u64], b: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == b.len() && a.len() == out.len())?;
    each(out, &|i, o| dispatch!(mul(&a[i..i + o.len()], &b[i..i + o.len()], o)));
    Ok(())
}

/// `out[i] = -a[i]`.
pub fn neg(a: &[u64], out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == out.len())?;
    each(out, &|i, o| dispatch!(neg(&a[i..i + o.len()], o)));
    Ok(())
}

/// `out[i] = c * a[i]`.
pub fn scale(a: &[u64], c: u64, out: &mut [u64]) -> Result<()> {
    ensure_shape(a.len() == out.len())?;
    each(out, &|i, o| dispatch!(scale(&a[i..i + o.len()], c, o)));
    Ok(())
}

/// `y[i] += alpha * x[i]`.
pub fn axpy(alpha: u64, x: &[u64], y: &mut [u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    each(y, &|i, o| dispatch!(axpy(alpha, &x[i..i + o.len()], o)));
    Ok(())
}

/// `y[i] += x[i]`.
pub fn add_assign(y: &mut [u64], x: &[u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    each(y, &|i, o| dispatch!(add_assign(o, &x[i..i + o.len()])));
    Ok(())
}

/// `y[i] -= x[i]`.
pub fn sub_assign(y: &mut [u64], x: &[u64]) -> Result<()> {
    ensure_shape(x.len() == y.len())?;
    each(y, &|i, o| dispatch!(sub_assign(o, &x[i..i + o.len()])));
    Ok(())
}

/// `y[i] += a[i] * b[i]`.
pub fn mul_add_assign(y: &mut [u64], a: &[u64], b: &[u64]) -> Result<()> {
    ensure_shape(a.len() == y.len() && b.len() == y.len())?;
    each(y, &|i, o| dispatch!(mul_add_assign(o, &a[i..i + o.len()], &b[i..i + o.len()])));
    Ok(())
}

/// `out = a · b` for row-major `a (m×n)`, `b (n×k)`, `out (m×k)`.
pub fn matmul(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    out.fill(0);
    matmul_par(par_executor(d), backend(), a, b, out, d);
    Ok(())
}

/// `out += a · b` for row-major `a (m×n)`, `b (n×k)`, `out (m×k)`.
pub fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    matmul_par(par_executor(d), backend(), a, b, out, d);
    Ok(())
}

/// `out = a · b` on the given backend, whatever is [`force`]d (the portable one when this
/// CPU lacks it: check [`Backend::available`]). For benches and tests that compare backends
/// without touching process-wide state. Uses the registered [`par`](crate::par) executor.
pub fn matmul_on(backend: Backend, a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) -> Result<()> {
    d.check(a.len(), b.len(), out.len())?;
    out.fill(0);
    matmul_par(par_executor(d), backend, a, b, out, d);
    Ok(())
}

/// Products smaller than this many multiply-adds run on the caller's thread: splitting
/// costs a thread hand-off (tens of µs), about what 2^18 multiply-adds take.
const PAR_MIN_MACS: usize = 1 << 18;

/// The registered executor, for products big enough to split.
fn par_executor(d: MatDims) -> Option<&'static dyn crate::par::Executor> {
    let macs = d.m.saturating_mul(d.n).saturating_mul(d.k);
    crate::par::executor().filter(|_| macs >= PAR_MIN_MACS)
}

/// `out += a · b`, split across `exec`'s threads: by rows of `out`, or for a single row
/// (decode's matrix-vector products) by columns. Lengths were checked by the caller.
fn matmul_par(
    exec: Option<&dyn crate::par::Executor>,
    backend: Backend,
    a: &[u64],
    b: &[u64],
    out: &mut [u64],
    d: MatDims,
) {
    let MatDims { m, n, k } = d;
    if m == 1 {
        // Columns j0.. of the one output row: out[j] += Σ_p a[p]·b[p][j], rows of b streamed.
        const COLS: usize = 8;
        crate::par::split(exec, out, COLS, 0, &|block, piece| {
            let j0 = block * COLS;
            for (p, &s) in a.iter().enumerate() {
                let row = &b[p * k + j0..p * k + j0 + piece.len()];
                dispatch!(backend, axpy(s, row, piece));
            }
        });
    } else {
        crate::par::split(exec, out, k, 0, &|i0, piece| {
            let rows = piece.len() / k.max(1);
            let sub = MatDims::new(rows, n, k);
            dispatch!(backend, matmul_acc(&a[i0 * n..(i0 + rows) * n], b, piece, sub));
        });
    }
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
        let shapes =
            [(1, 1, 1), (1, 41, 35), (3, 5, 17), (4, 16, 16), (5, 33, 31), (37, 41, 35), (9, 1, 33), (8, 8, 8)];
        for &(m, n, k) in &shapes {
            let d = MatDims::new(m, n, k);
            fill(&mut a[..m * n], &mut seed);
            fill(&mut b[..n * k], &mut seed);
            matmul_portable(&a[..m * n], &b[..n * k], &mut c2[..m * k], d).unwrap();
            for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
                matmul_on(backend, &a[..m * n], &b[..n * k], &mut c1[..m * k], d).unwrap();
                assert_eq!(&c1[..m * k], &c2[..m * k], "shape {m}x{n}x{k} on {}", backend.name());
            }
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
    fn matmul_backends_agree_past_one_panel() {
        // Depth 300 crosses the 256-deep panel; extreme words exercise every carry.
        let (m, n, k) = (9, 300, 19);
        let mut seed = 11;
        let mut a = [0u64; 9 * 300];
        let mut b = [0u64; 300 * 19];
        fill(&mut a, &mut seed);
        fill(&mut b, &mut seed);
        a[..40].fill(u64::MAX);
        b[..40].fill(u64::MAX);
        let d = MatDims::new(m, n, k);
        let mut want = [0u64; 9 * 19];
        matmul_portable(&a, &b, &mut want, d).unwrap();
        for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
            let mut got = [1u64; 9 * 19];
            matmul_on(backend, &a, &b, &mut got, d).unwrap();
            assert_eq!(got, want, "{}", backend.name());
        }
    }

    #[test]
    fn matmul_is_the_same_on_any_number_of_threads() {
        use crate::par::tests::Reversed;
        let mut seed = 5;
        let mut a = [0u64; 13 * 29];
        let mut b = [0u64; 29 * 37];
        fill(&mut a, &mut seed);
        fill(&mut b, &mut seed);
        for &(m, n, k) in &[(1, 29, 37), (1, 29, 5), (2, 29, 37), (13, 29, 37), (7, 1, 9), (13, 29, 1), (1, 1, 1)] {
            let d = MatDims::new(m, n, k);
            let (a, b) = (&a[..m * n], &b[..n * k]);
            let mut want = [0u64; 13 * 37];
            matmul_portable(a, b, &mut want[..m * k], d).unwrap();
            for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
                for threads in [1, 2, 3, 4, 16, 64] {
                    let mut got = [3u64; 13 * 37];
                    got[..m * k].fill(0);
                    matmul_par(Some(&Reversed(threads)), backend, a, b, &mut got[..m * k], d);
                    assert_eq!(&got[..m * k], &want[..m * k], "{m}x{n}x{k} on {} with {threads}", backend.name());
                    assert!(got[m * k..].iter().all(|w| *w == 3), "wrote past the output");
                }
            }
        }
    }

    #[test]
    fn elementwise_backends_agree() {
        for backend in Backend::ALL.into_iter().filter(|b| b.available()) {
            elementwise_on(backend);
        }
    }

    fn elementwise_on(backend: Backend) {
        let mut seed = 3;
        for len in [0usize, 1, 3, 4, 7, 8, 9, 63, 64, 65, 257] {
            let mut a = [0u64; 257];
            let mut b = [0u64; 257];
            fill(&mut a[..len], &mut seed);
            fill(&mut b[..len], &mut seed);
            let (a, b) = (&a[..len], &b[..len]);
            let mut o = [0u64; 257];
            let o = &mut o[..len];
            dispatch!(backend, add(a, b, o));
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_add(*b)));
            dispatch!(backend, sub(a, b, o));
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_sub(*b)));
            dispatch!(backend, mul(a, b, o));
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == a.wrapping_mul(*b)));
            dispatch!(backend, neg(a, o));
            assert!(o.iter().zip(a).all(|(o, a)| *o == a.wrapping_neg()));
            dispatch!(backend, scale(a, 0xdead_beef_1234, o));
            assert!(o.iter().zip(a).all(|(o, a)| *o == a.wrapping_mul(0xdead_beef_1234)));
            o.copy_from_slice(b);
            dispatch!(backend, axpy(99, a, o));
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == b.wrapping_add(a.wrapping_mul(99))));
            o.copy_from_slice(b);
            dispatch!(backend, mul_add_assign(o, a, b));
            assert!(o.iter().zip(a.iter().zip(b)).all(|(o, (a, b))| *o == b.wrapping_add(a.wrapping_mul(*b))));
            o.copy_from_slice(b);
            dispatch!(backend, add_assign(o, a));
            dispatch!(backend, sub_assign(o, a));
            assert_eq!(&*o, b);
        }
        // The checked, dispatched entry points too.
        let (a, b) = ([5u64, 7, 9], [2u64, 3, 4]);
        let mut o = [0u64; 3];
        mul(&a, &b, &mut o).unwrap();
        assert_eq!(o, [10, 21, 36]);
    }

    #[test]
    fn detection_is_consistent() {
        let best = detected();
        assert!(best.available());
        // AVX-512 CPUs all have AVX2; the detected backend is the best available one.
        if Backend::Avx512.available() {
            assert!(Backend::Avx2.available());
            assert_eq!(best, Backend::Avx512);
        }
        assert!(Backend::Portable.available());
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
