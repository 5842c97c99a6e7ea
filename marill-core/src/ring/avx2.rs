//! AVX2 kernels: 64-bit products from 32-bit pieces.
//!
//! AVX2 has no 64-bit low multiply. Write `a = a_h·2^32 + a_l`; modulo 2^64,
//! `a·b = a_l·b_l + 2^32·(a_l·b_h + a_h·b_l)`, and the bracket is needed only modulo 2^32.
//! The matrix product keeps two accumulators per output vector: `vpmuludq` adds the full
//! 64-bit `a_l·b_l`, and `vpmulld` on a broadcast of `a` with its halves swapped adds
//! `a_h·b_l` and `a_l·b_h` in the two 32-bit lanes of each word (32-bit adds, so the lanes
//! never carry into each other). The lanes are summed and shifted once per tile, when the
//! result is stored: two multiplies and two adds per four multiply-adds in the inner loop.
//!
//! Safety argument, as in `avx512`: each public function re-reads the cached detection
//! and falls back to the portable kernel when AVX2 is absent, so `#[target_feature]` code
//! runs only where the CPU and OS support it; raw-pointer loads and stores touch only
//! indices the loop bounds keep inside slices whose lengths `ring` checked.
//!
//! Elementwise kernels are the portable loops compiled with AVX2 enabled (LLVM emits the
//! same `vpmuludq` decomposition for `wrapping_mul`).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use super::{MatDims, portable};

/// Whether this CPU and OS run AVX2 code.
pub(super) fn supported() -> bool {
    if __cpuid(0).eax < 7 {
        return false;
    }
    // CPUID leaf 1: ECX bit 27 OSXSAVE (XGETBV usable), bit 28 AVX.
    let leaf1 = __cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 || leaf1.ecx & (1 << 28) == 0 {
        return false;
    }
    // Leaf 7, EBX bit 5: AVX2.
    if __cpuid_count(7, 0).ebx & (1 << 5) == 0 {
        return false;
    }
    // SAFETY: OSXSAVE is set (checked above), so XGETBV with ECX=0 is defined and reads XCR0.
    let xcr0 = unsafe { xgetbv0() };
    // XCR0 bits 1 and 2: the OS saves SSE and AVX (YMM) state.
    xcr0 & 0b110 == 0b110
}

#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked OSXSAVE, which makes XGETBV defined.
    unsafe { _xgetbv(0) }
}

#[inline]
fn ok() -> bool {
    super::Backend::Avx2.available()
}

simd_elementwise!("avx2");

/// Rows per register tile.
const MR: usize = 3;
/// Vectors of four `u64` per register tile row.
const NV: usize = 2;
/// Columns per register tile.
const NR: usize = 4 * NV;
/// Depth of one pass over `b`: a `KC×8` panel of `b` (16 KiB) stays in L1.
const KC: usize = 256;

pub(crate) fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) {
    if !ok() {
        return portable::matmul_acc(a, b, out, d);
    }
    // SAFETY: `ok()` confirmed AVX2; `ring::matmul_acc` checked the slice lengths against
    // `d`, which `matmul_impl` relies on for its pointer arithmetic.
    unsafe { matmul_impl(a, b, out, d) }
}

simd_matmul!("avx2");

/// `out[i..i+R, j0..j0+8] += a[i..i+R, p0..pe] · b[p0..pe, j0..j0+8]`.
#[inline]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
fn tile<const R: usize>(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims, i: usize, j0: usize, p0: usize, pe: usize) {
    let MatDims { n, k, .. } = d;
    // Bounds every access below relies on: rows i..i+R < m, columns j0..j0+8 ≤ k,
    // depth p0..pe ≤ n. Checked once per tile, in release builds too.
    assert!((i + R) * n <= a.len() && pe <= n && j0 + NR <= k && (i + R - 1) * k + j0 + NR <= out.len());
    assert!(pe == p0 || (pe - 1) * k + j0 + NR <= b.len());
    // lo[r][v]: Σ a_l·b_l (64-bit); x[r][v]: Σ a_h·b_l and Σ a_l·b_h in the 32-bit lanes.
    let mut lo = [[_mm256_setzero_si256(); NV]; R];
    let mut x = [[_mm256_setzero_si256(); NV]; R];
    let bptr = b.as_ptr();
    for p in p0..pe {
        let mut bv = [_mm256_setzero_si256(); NV];
        for (v, slot) in bv.iter_mut().enumerate() {
            // SAFETY: p < pe ≤ n and p*k + j0 + 8 ≤ n*k = b.len() by the asserts above.
            *slot = unsafe { _mm256_loadu_si256(bptr.add(p * k + j0 + 4 * v) as *const __m256i) };
        }
        for r in 0..R {
            let s = a[(i + r) * n + p];
            let sv = _mm256_set1_epi64x(s as i64);
            let sw = _mm256_set1_epi64x(s.rotate_left(32) as i64);
            for v in 0..NV {
                lo[r][v] = _mm256_add_epi64(lo[r][v], _mm256_mul_epu32(sv, bv[v]));
                x[r][v] = _mm256_add_epi32(x[r][v], _mm256_mullo_epi32(sw, bv[v]));
            }
        }
    }
    let optr = out.as_mut_ptr();
    for r in 0..R {
        for v in 0..NV {
            // Cross term: the two 32-bit lanes summed, in the high half of each word.
            let cross = _mm256_slli_epi64::<32>(_mm256_add_epi32(x[r][v], _mm256_srli_epi64::<32>(x[r][v])));
            let add = _mm256_add_epi64(lo[r][v], cross);
            // SAFETY: (i+r)*k + j0 + 8 ≤ out.len() by the assert above; unaligned is fine.
            unsafe {
                let o = optr.add((i + r) * k + j0 + 4 * v) as *mut __m256i;
                _mm256_storeu_si256(o, _mm256_add_epi64(_mm256_loadu_si256(o), add));
            }
        }
    }
}
