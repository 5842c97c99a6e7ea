//! Algebraic laws as properties: shared matmul equals the plaintext wrapping matmul for
//! random shapes; mul_trunc stays within one unit in the last place of the fixed-point
//! product (error bound: result − ⌊xy/2^f⌋ ∈ {0, 1}) for any f in 1..=30.

#![allow(clippy::unwrap_used)]

use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_std::Setting;
use marill_std::StdError;
use marill_std::run::{Program, run_mem};
use marill_tests::{matmul_plain, signed, words};
use proptest::prelude::*;

struct Mm {
    a: Vec<u64>,
    b: Vec<u64>,
    d: MatDims,
}

impl Program for Mm {
    type Output = Vec<u64>;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<u64>, StdError> {
        let pl = P::PLANES;
        let (mut a, mut b) = (vec![0; self.a.len() * pl], vec![0; self.b.len() * pl]);
        p.input(0, (p.party() == 0).then_some(&self.a[..]), &mut a)?;
        p.input(1, (p.party() == 1).then_some(&self.b[..]), &mut b)?;
        let mut c = vec![0; self.d.m * self.d.k * pl];
        p.matmul(&a, &b, &mut c, self.d)?;
        let mut out = vec![0; self.d.m * self.d.k];
        p.open(&c, &mut out)?;
        Ok(out)
    }
}

struct MulTrunc {
    x: Vec<u64>,
    y: Vec<u64>,
    f: u32,
}

impl Program for MulTrunc {
    type Output = Vec<u64>;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<u64>, StdError> {
        let n = self.x.len();
        let (mut x, mut y, mut z) = (vec![0; n * P::PLANES], vec![0; n * P::PLANES], vec![0; n * P::PLANES]);
        p.input(0, (p.party() == 0).then_some(&self.x[..]), &mut x)?;
        p.input(1, (p.party() == 1).then_some(&self.y[..]), &mut y)?;
        p.mul_trunc(&x, &y, self.f, &mut z)?;
        let mut out = vec![0; n];
        p.open(&z, &mut out)?;
        Ok(out)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn shared_matmul_is_plain_matmul(m in 1usize..20, n in 1usize..40, k in 1usize..40, seed in 0u8..200, rep3 in any::<bool>()) {
        let (a, b) = (words(m * n, seed), words(n * k, seed.wrapping_add(1)));
        let want = matmul_plain(&a, &b, m, n, k);
        let s = if rep3 { Setting::Rep3 } else { Setting::Dealer };
        let r = run_mem(s, &Mm { a, b, d: MatDims::new(m, n, k) }).unwrap();
        prop_assert_eq!(&r[0].0, &want);
    }

    #[test]
    fn mul_trunc_within_one_ulp(f in 1u32..=30, seed in 0u8..200, rep3 in any::<bool>()) {
        // |x|, |y| < 2^30 so |xy| < 2^60 < 2^62.
        let (x, y) = (signed(257, 30, seed), signed(257, 29, seed.wrapping_add(7)));
        let s = if rep3 { Setting::Rep3 } else { Setting::Dealer };
        let r = run_mem(s, &MulTrunc { x: x.clone(), y: y.clone(), f }).unwrap();
        for i in 0..x.len() {
            let want = marill_core::fixed::trunc(x[i].wrapping_mul(y[i]), f);
            prop_assert!(r[0].0[i].wrapping_sub(want) <= 1);
        }
    }
}

struct MmMany {
    a: Vec<u64>,
    b: Vec<u64>,
    d: MatDims,
    count: usize,
}

impl Program for MmMany {
    type Output = Vec<u64>;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<u64>, StdError> {
        let pl = P::PLANES;
        let (mut a, mut b) = (vec![0; self.a.len() * pl], vec![0; self.b.len() * pl]);
        p.input(0, (p.party() == 0).then_some(&self.a[..]), &mut a)?;
        p.input(1, (p.party() == 1).then_some(&self.b[..]), &mut b)?;
        let mk = self.d.m * self.d.k * self.count;
        let mut c = vec![0; mk * pl];
        p.matmul_many(&a, &b, &mut c, self.d, self.count)?;
        let mut out = vec![0; mk];
        p.open(&c, &mut out)?;
        Ok(out)
    }
}

/// `count` products in one call equal `count` plaintext products (exact).
#[test]
fn batched_matmul_is_blockwise_plain_matmul() {
    let (m, n, k, count) = (3, 5, 4, 6);
    let (a, b) = (words(m * n * count, 40), words(n * k * count, 41));
    let mut want = Vec::new();
    for c in 0..count {
        want.extend(matmul_plain(&a[c * m * n..(c + 1) * m * n], &b[c * n * k..(c + 1) * n * k], m, n, k));
    }
    for s in Setting::ALL {
        let r = run_mem(s, &MmMany { a: a.clone(), b: b.clone(), d: MatDims::new(m, n, k), count }).unwrap();
        assert_eq!(r[0].0, want, "{s:?}");
    }
}

struct WeightProduct {
    x: Vec<u64>,
    w: Vec<u64>,
    d: MatDims,
    calls: usize,
}

impl Program for WeightProduct {
    type Output = Vec<Vec<u64>>;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Vec<Vec<u64>>, StdError> {
        let pl = P::PLANES;
        let mine = (p.party() == 1).then_some(&self.w[..]);
        let spec = p.share_weight(1, mine, self.d.n, self.d.k)?;
        let mut material = vec![0; spec.words];
        p.fill_weight(1, mine, spec, &mut material)?;
        let mut outs = Vec::new();
        // The one-time set-up serves many products, each with fresh masks.
        for c in 0..self.calls {
            let xc: Vec<u64> = self.x.iter().map(|v| v.wrapping_add(c as u64)).collect();
            let mut x = vec![0; xc.len() * pl];
            p.input(0, (p.party() == 0).then_some(&xc[..]), &mut x)?;
            let mut o = vec![0; self.d.m * self.d.k * pl];
            p.matmul_weight(&x, &material, &mut o, self.d)?;
            let mut opened = vec![0; self.d.m * self.d.k];
            p.open(&o, &mut opened)?;
            outs.push(opened);
        }
        Ok(outs)
    }
}

/// A weight the server knows, times shares: exact, in every setting, over repeated calls.
/// Plain 2PC takes weights below 2^31 in magnitude (any fixed-point weight under 2^15);
/// the other settings take any ring element.
#[test]
fn products_with_a_weight_one_party_knows_are_exact() {
    let d = MatDims::new(3, 17, 5);
    for s in Setting::ALL {
        let x = words(d.m * d.n, 50);
        let w = if s == Setting::Ot2pc { signed(d.n * d.k, 30, 51) } else { words(d.n * d.k, 51) };
        let r = run_mem(s, &WeightProduct { x: x.clone(), w: w.clone(), d, calls: 4 }).unwrap();
        for (c, got) in r[0].0.iter().enumerate() {
            let xc: Vec<u64> = x.iter().map(|v| v.wrapping_add(c as u64)).collect();
            assert_eq!(got, &matmul_plain(&xc, &w, d.m, d.n, d.k), "{s:?} call {c}");
        }
    }
}
