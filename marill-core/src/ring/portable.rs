//! Portable kernels: plain wrapping arithmetic, any CPU. Callers checked the lengths.

use super::MatDims;

pub(crate) fn add(a: &[u64], b: &[u64], out: &mut [u64]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x.wrapping_add(*y);
    }
}
pub(crate) fn sub(a: &[u64], b: &[u64], out: &mut [u64]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x.wrapping_sub(*y);
    }
}
pub(crate) fn mul(a: &[u64], b: &[u64], out: &mut [u64]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x.wrapping_mul(*y);
    }
}
pub(crate) fn neg(a: &[u64], out: &mut [u64]) {
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.wrapping_neg();
    }
}
pub(crate) fn scale(a: &[u64], c: u64, out: &mut [u64]) {
    for (o, x) in out.iter_mut().zip(a) {
        *o = x.wrapping_mul(c);
    }
}
pub(crate) fn axpy(alpha: u64, x: &[u64], y: &mut [u64]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o = o.wrapping_add(alpha.wrapping_mul(*v));
    }
}
pub(crate) fn add_assign(y: &mut [u64], x: &[u64]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o = o.wrapping_add(*v);
    }
}
pub(crate) fn sub_assign(y: &mut [u64], x: &[u64]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o = o.wrapping_sub(*v);
    }
}
pub(crate) fn mul_add_assign(y: &mut [u64], a: &[u64], b: &[u64]) {
    for ((o, x), v) in y.iter_mut().zip(a).zip(b) {
        *o = o.wrapping_add(x.wrapping_mul(*v));
    }
}

/// `out += a·b`, i-p-j order so the inner loop streams a row of `b` and of `out`.
pub(crate) fn matmul_acc(a: &[u64], b: &[u64], out: &mut [u64], d: MatDims) {
    let MatDims { m, n, k } = d;
    if k == 0 {
        return;
    }
    for i in 0..m {
        let row = &mut out[i * k..(i + 1) * k];
        for p in 0..n {
            let s = a[i * n + p];
            axpy(s, &b[p * k..(p + 1) * k], row);
        }
    }
}
