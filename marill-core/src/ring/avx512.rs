//! AVX-512 kernels (F + DQ: `vpmullq` is the 64-bit low multiply).
//!
//! This module and nothing else in the crate uses `unsafe`. The argument is the same for
//! every block:
//! * **CPU support.** Each public function re-reads the cached detection result and falls
//!   back to the portable kernel when AVX-512F/DQ is absent, so the `#[target_feature]`
//!   functions run only on CPUs that have the features (and an OS that saves ZMM state).
//! * **Memory.** Raw-pointer loads and stores touch only indices the surrounding loop
//!   bounds keep inside the slices, whose lengths `ring` checked against [`MatDims`].
//!
//! Elementwise kernels are the portable loops compiled with the features enabled: LLVM
//! turns them into `vpaddq`/`vpmullq` over ZMM registers. The matrix product is written
//! with intrinsics and register tiles of 8 rows × 16 columns.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{MatDims, portable};

/// Whether this CPU and OS run AVX-512F + AVX-512DQ code.
pub(super) fn supported() -> bool {
    // CPUID leaf 1, ECX bit 27: the OS has enabled XSAVE/XGETBV.
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return false;
    }
    let leaf7 = __cpuid_count(7, 0);
    let f = leaf7.ebx & (1 << 16) != 0;
    let dq = leaf7.ebx & (1 << 17) != 0;
    if !(f && dq) {
        return false;
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV with ECX=0 is defined and reads XCR0.
    let xcr0 = unsafe { xgetbv0() };
    // XCR0 bits 1,2 (SSE, AVX) and 5,6,7 (opmask, ZMM_Hi256, Hi16_ZMM) must all be enabled.
    xcr0 & 0b1110_0110 == 0b1110_0110
}

#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked OSXSAVE, which makes XGETBV defined.
    unsafe { _xgetbv(0) }
}

#[inline]
fn ok() -> bool {
    super::Backend::Avx512.available()
}

simd_elementwise!("avx512f,avx512dq");

/// Rows per register tile.
const MR: usize = 8;
/// Columns per register tile (two ZMM vectors of eight `u64`).
const NR: usize = 16;
/// Depth of one pass over `b`: a `KC×16` panel of `b` (32 KiB) stays in L1.
const KC: usize = 256;

pub(crate) fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) {
    if !ok() {
        return portable::matmul_acc(a, b, out, d);
    }
    // SAFETY: `ok()` confirmed AVX-512F/DQ; `ring::matmul_acc` checked the slice lengths
    // against `d`, which `matmul_impl` relies on for its pointer arithmetic.
    unsafe { matmul_impl(a, b, out, d) }
}

simd_matmul!("avx512f,avx512dq");

/// `out[i..i+R, j0..j0+16] += a[i..i+R, p0..pe] · b[p0..pe, j0..j0+16]`.
#[inline]
#[target_feature(enable = "avx512f,avx512dq")]
fn tile<const R: usize>(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims, i: usize, j0: usize, p0: usize, pe: usize) {
    let MatDims { n, k, .. } = d;
    // Bounds every access below relies on: rows i..i+R < m, columns j0..j0+16 ≤ k,
    // depth p0..pe ≤ n. Checked once here, in release builds too (cheap: once per tile).
    assert!((i + R) * n <= a.len() && pe <= n && j0 + NR <= k && (i + R - 1) * k + j0 + NR <= out.len());
    assert!(pe == p0 || (pe - 1) * k + j0 + NR <= b.len());
    let mut acc0 = [_mm512_setzero_si512(); R];
    let mut acc1 = [_mm512_setzero_si512(); R];
    let optr = out.as_mut_ptr();
    let bptr = b.as_ptr();
    for r in 0..R {
        // SAFETY: (i+r)*k + j0 + 16 ≤ out.len() by the assert above; unaligned loads are fine.
        unsafe {
            let o = optr.add((i + r) * k + j0) as *const i64;
            acc0[r] = _mm512_loadu_epi64(o);
            acc1[r] = _mm512_loadu_epi64(o.add(8));
        }
    }
    for p in p0..pe {
        // SAFETY: p < pe ≤ n and p*k + j0 + 16 ≤ n*k = b.len() by the asserts above.
        let (b0, b1) = unsafe {
            let bp = bptr.add(p * k + j0) as *const i64;
            (_mm512_loadu_epi64(bp), _mm512_loadu_epi64(bp.add(8)))
        };
        for r in 0..R {
            let av = _mm512_set1_epi64(a[(i + r) * n + p] as i64);
            acc0[r] = _mm512_add_epi64(acc0[r], _mm512_mullo_epi64(av, b0));
            acc1[r] = _mm512_add_epi64(acc1[r], _mm512_mullo_epi64(av, b1));
        }
    }
    for r in 0..R {
        // SAFETY: the same in-bounds range that was loaded above.
        unsafe {
            let o = optr.add((i + r) * k + j0) as *mut i64;
            _mm512_storeu_epi64(o, acc0[r]);
            _mm512_storeu_epi64(o.add(8), acc1[r]);
        }
    }
}
