//! What the x86 SIMD backends share, as macros: each backend is the same code compiled with
//! its own `#[target_feature]`, which a generic function cannot carry.
//!
//! * `simd_elementwise!(FEATURES)`: the elementwise kernels as the portable loops
//!   compiled with `FEATURES` (LLVM vectorises them), each falling back to the portable
//!   loop when the module's `ok()` says the CPU lacks the features.
//! * `simd_matmul!(FEATURES)`: the blocked product `matmul_impl` over the module's
//!   `tile::<R>` (`R` rows × `NR` columns over depth `p0..pe`), its constants `MR`, `NR`
//!   and `KC`, and the portable loops for products with fewer rows than a tile and for the
//!   columns past the last full tile.

macro_rules! simd_elementwise {
    ($features:literal) => {
        simd_elementwise!(@one $features, add, add_impl, (a: &[u64], b: &[u64], out: &mut [u64]));
        simd_elementwise!(@one $features, sub, sub_impl, (a: &[u64], b: &[u64], out: &mut [u64]));
        simd_elementwise!(@one $features, mul, mul_impl, (a: &[u64], b: &[u64], out: &mut [u64]));
        simd_elementwise!(@one $features, neg, neg_impl, (a: &[u64], out: &mut [u64]));
        simd_elementwise!(@one $features, scale, scale_impl, (a: &[u64], c: u64, out: &mut [u64]));
        simd_elementwise!(@one $features, axpy, axpy_impl, (alpha: u64, x: &[u64], y: &mut [u64]));
        simd_elementwise!(@one $features, add_assign, add_assign_impl, (y: &mut [u64], x: &[u64]));
        simd_elementwise!(@one $features, sub_assign, sub_assign_impl, (y: &mut [u64], x: &[u64]));
        simd_elementwise!(@one $features, mul_add_assign, mul_add_assign_impl, (y: &mut [u64], a: &[u64], b: &[u64]));
    };
    (@one $features:literal, $name:ident, $inner:ident, ($($arg:ident : $ty:ty),*)) => {
        #[target_feature(enable = $features)]
        fn $inner($($arg: $ty),*) {
            portable::$name($($arg),*)
        }

        pub(crate) fn $name($($arg: $ty),*) {
            if !ok() {
                return portable::$name($($arg),*);
            }
            // SAFETY: `ok()` confirmed the CPU and OS support `$features`; the body is safe code.
            unsafe { $inner($($arg),*) }
        }
    };
}

macro_rules! simd_matmul {
    ($features:literal) => {
        #[target_feature(enable = $features)]
        fn matmul_impl(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) {
            let MatDims { m, n, k } = d;
            if m < MR {
                // Fewer rows than a tile (decode's matrix-vector products): memory-bound,
                // so stream rows of `b` contiguously, as the portable loop does.
                return portable::matmul_acc(a, b, out, d);
            }
            let kr = k - k % NR;
            let mut p0 = 0;
            while p0 < n {
                let pe = (p0 + KC).min(n);
                let mut j0 = 0;
                while j0 < kr {
                    let mut i = 0;
                    while i + MR <= m {
                        tile::<MR>(a, b, out, d, i, j0, p0, pe);
                        i += MR;
                    }
                    while i < m {
                        tile::<1>(a, b, out, d, i, j0, p0, pe);
                        i += 1;
                    }
                    j0 += NR;
                }
                p0 = pe;
            }
            // Columns past the last full tile: plain loops (compiled with the features).
            if kr < k {
                for i in 0..m {
                    for p in 0..n {
                        let s = a[i * n + p];
                        let brow = &b[p * k + kr..(p + 1) * k];
                        let orow = &mut out[i * k + kr..(i + 1) * k];
                        portable::axpy(s, brow, orow);
                    }
                }
            }
        }
    };
}
