//! Dense products for the client's plaintext layers: `y = x·Wᵀ` in `f32` through the
//! `gemm` crate (blocked, SIMD, threaded with rayon), over weights borrowed from the
//! memory-mapped file.
//!
//! `gemm` takes raw pointers and strides; this module is the one place that calls it, and
//! checks every length first, so the rest of the crate stays free of `unsafe`.
#![allow(unsafe_code)]

use crate::StdError;

/// `y (m × n) = x (m × k) · Wᵀ`, `W` stored `[n, k]` row-major (a Hugging Face weight).
/// Every slice must have exactly its size.
pub fn matmul_t(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, y: &mut [f32]) -> Result<(), StdError> {
    let sized = |len: usize, a: usize, b: usize| a.checked_mul(b) == Some(len);
    if !sized(x.len(), m, k) || !sized(w.len(), n, k) || !sized(y.len(), m, n) {
        return Err(StdError::Model(format!(
            "matmul: x {} for {m}×{k}, W {} for {n}×{k}, y {} for {m}×{n}",
            x.len(),
            w.len(),
            y.len()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let (k_i, n_i) = (isize::try_from(k), isize::try_from(n));
    let (Ok(k_i), Ok(n_i)) = (k_i, n_i) else {
        return Err(StdError::Model("matmul: dimensions beyond isize".into()));
    };
    // SAFETY: the lengths were checked above, so every element gemm addresses lies inside
    // its slice: dst (i, j) at y[i·n + j] (row stride n, column stride 1), lhs (i, l) at
    // x[i·k + l], rhs (l, j) = Wᵀ at w[j·k + l] (row stride 1, column stride k), for i < m,
    // j < n, l < k. `y` is borrowed mutably, so it aliases neither input. With
    // `read_dst = false` gemm writes `1·x·Wᵀ` without reading `y`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n_i,
            false,
            x.as_ptr(),
            1,
            k_i,
            w.as_ptr(),
            k_i,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            ::gemm::Parallelism::Rayon(0),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matches_the_definition_and_checks_sizes() {
        let (m, k, n) = (5, 37, 11);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 17) as f32 * 0.25 - 2.0).collect();
        let mut y = vec![f32::NAN; m * n];
        matmul_t(&x, &w, m, k, n, &mut y).unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|l| x[i * k + l] * w[j * k + l]).sum();
                // Small integers and quarters: exact in f32 whatever the summation order.
                assert_eq!(y[i * n + j], want, "({i}, {j})");
            }
        }
        assert!(matmul_t(&x, &w, m, k, n + 1, &mut y).is_err());
        assert!(matmul_t(&x[1..], &w, m, k, n, &mut y).is_err());
        assert!(matmul_t(&x, &w, usize::MAX, 2, n, &mut y).is_err());
    }
}
