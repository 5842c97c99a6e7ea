//! Every protocol op in every setting (2PC-Dealer, 3PC, plain 2PC), over memory and TCP, against a plaintext reference.
//!
//! Bounds: ring ops (input, open, reveal, linear ops, mul, square, matmul, and, b2a, ltz)
//! are exact. `trunc` and `mul_trunc` return ⌊v/2^s⌋ or ⌊v/2^s⌋ + 1 for every
//! -2^62 ≤ v < 2^62: the test asserts exactly that (error in [0, 1] units in the last place).

#![allow(clippy::unwrap_used)]

use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_core::share::{bit_words, get_bit};
use marill_core::{Error, fixed};
use marill_std::Setting;
use marill_std::StdError;
use marill_std::run::{Program, run_mem, run_tcp};
use marill_tests::{matmul_plain, signed, words};

const N: usize = 1000;
/// Public offsets for `ltz_many`: `[x − θ < 0]` for each.
const OFFSETS: [u64; 4] = [0, 5, (-7i64) as u64, 1 << 62];
const D: MatDims = MatDims { m: 7, n: 13, k: 19 };
/// Columns of `matmul_weight_trunc_ltz`'s output it compares, and the offsets.
const KC: usize = 5;
const MWTL_OFFSETS: [u64; 3] = [0, 1 << 40, (-(1i64 << 40)) as u64];
/// Two public maps of the `OFFSETS` bits for `ltz_many_mapped`, and their constants.
const MAP_COEF: [u64; 8] = [1, 2, 3, 4, 10, (-20i64) as u64, 30, 1 << 63];
const MAP_CONSTS: [u64; 2] = [5, (-3i64) as u64];

struct AllOps {
    x: Vec<u64>,
    y: Vec<u64>,
    a: Vec<u64>,
    b: Vec<u64>,
    w: Vec<u64>,
    big: Vec<u64>,
    fx: Vec<u64>,
    fy: Vec<u64>,
    cmp: Vec<u64>,
    bx: Vec<u64>,
    by: Vec<u64>,
    sw: Vec<u64>,
    /// Small signed matrices (m×n, n×k) for the truncated products.
    fa: Vec<u64>,
    fb: Vec<u64>,
    /// Whether there is a party 2 (not in plain 2PC).
    three: bool,
}

#[derive(Default, Debug)]
struct Opened {
    x: Vec<u64>,
    add: Vec<u64>,
    sub: Vec<u64>,
    add_public: Vec<u64>,
    mul_public: Vec<u64>,
    mul: Vec<u64>,
    square: Vec<u64>,
    matmul: Vec<u64>,
    matmul_public: Vec<u64>,
    matmul_weight: Vec<u64>,
    matmul_trunc: Vec<u64>,
    matmul_weight_trunc: Vec<u64>,
    /// `matmul_weight_trunc_ltz`: the truncated product and the comparisons of its first
    /// `KC` columns (empty where the protocol declines).
    mwtl: (Vec<u64>, Vec<u64>),
    trunc: Vec<u64>,
    mul_trunc: Vec<u64>,
    ltz: Vec<u64>,
    ltz_many: Vec<u64>,
    /// `ltz_many_mapped` over `OFFSETS` through `MAP_COEF` / `MAP_CONSTS`, map after map.
    ltz_mapped: Vec<u64>,
    and: Vec<u64>,
    b2a: Vec<u64>,
    revealed_to_1: Vec<u64>,
    from_dealer: Vec<u64>,
}

fn shares<P: Protocol>(p: &mut P, owner: usize, v: &[u64]) -> Result<Vec<u64>, Error> {
    let mut out = vec![0; v.len() * P::PLANES];
    let mine = (p.party() == owner).then_some(v);
    p.input(owner, mine, &mut out)?;
    Ok(out)
}

fn open<P: Protocol>(p: &mut P, x: &[u64]) -> Result<Vec<u64>, Error> {
    let mut out = vec![0; x.len() / P::PLANES];
    p.open(x, &mut out)?;
    Ok(out)
}

/// Packed boolean shares of plaintext bits: party 0 holds the bits, party 1 zeros.
fn bool_shares<P: Protocol>(p: &P, bits: &[u64]) -> Vec<u64> {
    if p.party() == 0 { bits.to_vec() } else { vec![0; bits.len()] }
}

impl Program for AllOps {
    type Output = Opened;
    fn run<P: Protocol>(&self, p: &mut P) -> Result<Opened, StdError> {
        let n = self.x.len();
        let pl = P::PLANES;
        let x = shares(p, 0, &self.x)?;
        let y = shares(p, 1, &self.y)?;
        let mut o = Opened { x: open(p, &x)?, ..Default::default() };
        let mut t = vec![0; n * pl];
        p.add(&x, &y, &mut t)?;
        o.add = open(p, &t)?;
        p.sub(&x, &y, &mut t)?;
        o.sub = open(p, &t)?;
        p.add_public(&x, &self.y, &mut t)?;
        o.add_public = open(p, &t)?;
        p.mul_public(&x, &self.y, &mut t)?;
        o.mul_public = open(p, &t)?;
        p.mul(&x, &y, &mut t)?;
        o.mul = open(p, &t)?;
        p.square(&x, &mut t)?;
        o.square = open(p, &t)?;
        let a = shares(p, 0, &self.a)?;
        let b = shares(p, 1, &self.b)?;
        let mut c = vec![0; D.m * D.k * pl];
        p.matmul(&a, &b, &mut c, D)?;
        o.matmul = open(p, &c)?;
        p.matmul_public(&a, &self.w, &mut c, D)?;
        o.matmul_public = open(p, &c)?;
        // The server (party 1) knows the weight; small signed entries, as weights are.
        let mine = (p.party() == 1).then_some(&self.sw[..]);
        let spec = p.share_weight(1, mine, D.n, D.k)?;
        let mut material = vec![0; spec.words];
        p.fill_weight(1, mine, spec, &mut material)?;
        p.matmul_weight(&a, &material, &mut c, D)?;
        o.matmul_weight = open(p, &c)?;
        let fa = shares(p, 0, &self.fa)?;
        let fb = shares(p, 1, &self.fb)?;
        p.matmul_many_trunc(&fa, &fb, &mut c, D, 1, 16)?;
        o.matmul_trunc = open(p, &c)?;
        p.matmul_weight_trunc(&fa, &material, &mut c, D, 16)?;
        o.matmul_weight_trunc = open(p, &c)?;
        let mut bits = vec![0; MWTL_OFFSETS.len() * D.m * KC * pl];
        if p.matmul_weight_trunc_ltz(&fa, &material, D, (16, KC), &MWTL_OFFSETS, &mut c, &mut bits)? {
            o.mwtl = (open(p, &c)?, open(p, &bits)?);
        }
        let big = shares(p, 1, &self.big)?;
        p.trunc(&big, 16, &mut t)?;
        o.trunc = open(p, &t)?;
        let fx = shares(p, 0, &self.fx)?;
        let fy = shares(p, 1, &self.fy)?;
        p.mul_trunc(&fx, &fy, 16, &mut t)?;
        o.mul_trunc = open(p, &t)?;
        let cmp = shares(p, 0, &self.cmp)?;
        p.ltz(&cmp, &mut t)?;
        o.ltz = open(p, &t)?;
        let mut many = vec![0; OFFSETS.len() * n * pl];
        p.ltz_many(&cmp, &OFFSETS, &mut many)?;
        o.ltz_many = open(p, &many)?;
        let len = n * pl;
        let (mut mapped, mut bits) = (vec![0; 2 * len], vec![0; OFFSETS.len() * len]);
        p.ltz_many_mapped(&cmp, &OFFSETS, &MAP_COEF, &MAP_CONSTS, &mut mapped, &mut bits)?;
        for map in mapped.chunks_exact(len) {
            o.ltz_mapped.extend(open(p, map)?);
        }
        let bx = bool_shares(p, &self.bx);
        let by = bool_shares(p, &self.by);
        let mut bz = vec![0; bx.len()];
        p.and_bits(&bx, &by, &mut bz)?;
        // Open the boolean result through b2a (exercises both).
        p.b2a(&bz, &mut t)?;
        o.b2a = open(p, &t)?;
        o.and = bz;
        let mut r = vec![0; n];
        p.reveal_to(1, &x, &mut r)?;
        o.revealed_to_1 = r;
        if self.three {
            let d = shares(p, 2, &self.y)?;
            o.from_dealer = open(p, &d)?;
        }
        Ok(o)
    }
}

fn case(setting: Setting) -> AllOps {
    let mut cmp = signed(N, 62, 9);
    // Edge cases of the comparison over the whole ring.
    let edges = [0u64, 1, u64::MAX, 1 << 63, (1 << 63) - 1, (1 << 63) + 1, 1 << 62, (1 << 62) - 1, 15, 16, 17];
    cmp[..edges.len()].copy_from_slice(&edges);
    for (i, v) in words(100, 10).into_iter().enumerate() {
        cmp[edges.len() + i] = v; // full-range values
    }
    let mut big = signed(N, 61, 8);
    big[0] = (-(1i64 << 62)) as u64;
    big[1] = ((1i64 << 62) - 1) as u64;
    big[2] = 0;
    big[3] = u64::MAX;
    AllOps {
        x: words(N, 1),
        y: words(N, 2),
        a: words(D.m * D.n, 3),
        b: words(D.n * D.k, 4),
        w: words(D.n * D.k, 5),
        big,
        fx: signed(N, 36, 6), // |x| < 2^20 in real value at f = 16
        fy: signed(N, 24, 7),
        cmp,
        bx: words(bit_words(N), 11),
        by: words(bit_words(N), 12),
        sw: signed(D.n * D.k, 20, 13),
        fa: signed(D.m * D.n, 36, 14),
        fb: signed(D.n * D.k, 20, 15),
        three: setting.parties() == 3,
    }
}

fn check(c: &AllOps, results: &[(Opened, marill_core::cost::Cost)], setting: Setting) {
    let o = &results[0].0;
    let n = c.x.len();
    let ws = |f: &dyn Fn(usize) -> u64| (0..n).map(f).collect::<Vec<u64>>();
    assert_eq!(o.x, c.x);
    assert_eq!(o.add, ws(&|i| c.x[i].wrapping_add(c.y[i])));
    assert_eq!(o.sub, ws(&|i| c.x[i].wrapping_sub(c.y[i])));
    assert_eq!(o.add_public, ws(&|i| c.x[i].wrapping_add(c.y[i])));
    assert_eq!(o.mul_public, ws(&|i| c.x[i].wrapping_mul(c.y[i])));
    assert_eq!(o.mul, ws(&|i| c.x[i].wrapping_mul(c.y[i])));
    assert_eq!(o.square, ws(&|i| c.x[i].wrapping_mul(c.x[i])));
    assert_eq!(o.matmul, matmul_plain(&c.a, &c.b, D.m, D.n, D.k));
    assert_eq!(o.matmul_public, matmul_plain(&c.a, &c.w, D.m, D.n, D.k));
    assert_eq!(o.matmul_weight, matmul_plain(&c.a, &c.sw, D.m, D.n, D.k));
    // The product truncated and its first KC columns compared before truncation.
    if setting != Setting::Ot2pc {
        let z = matmul_plain(&c.fa, &c.sw, D.m, D.n, D.k);
        let (t, bits) = &o.mwtl;
        for (g, v) in t.iter().zip(&z) {
            assert!(g.wrapping_sub(fixed::trunc(*v, 16)) <= 1, "{setting:?} matmul_weight_trunc_ltz truncation");
        }
        for (i, theta) in MWTL_OFFSETS.iter().enumerate() {
            for r in 0..D.m {
                for col in 0..KC {
                    let want = z[r * D.k + col].wrapping_sub(*theta) >> 63;
                    assert_eq!(bits[i * D.m * KC + r * KC + col], want, "{setting:?} matmul_weight_trunc_ltz bit");
                }
            }
        }
    } else {
        assert!(o.mwtl.0.is_empty(), "plain 2PC declines");
    }
    // The fused products and truncations: ⌊v/2^16⌋ + {0, 1}.
    for (got, w) in [(&o.matmul_trunc, &c.fb), (&o.matmul_weight_trunc, &c.sw)] {
        for (g, v) in got.iter().zip(matmul_plain(&c.fa, w, D.m, D.n, D.k)) {
            let diff = g.wrapping_sub(fixed::trunc(v, 16));
            assert!(diff <= 1, "{setting:?} fused matmul and truncation: off by {}", diff as i64);
        }
    }
    for i in 0..n {
        // trunc: ⌊v/2^16⌋ + {0, 1}
        let want = fixed::trunc(c.big[i], 16);
        let diff = o.trunc[i].wrapping_sub(want);
        assert!(diff <= 1, "{setting:?} trunc of element {i}: off by {}", diff as i64);
        let prod = c.fx[i].wrapping_mul(c.fy[i]);
        let diff = o.mul_trunc[i].wrapping_sub(fixed::trunc(prod, 16));
        assert!(diff <= 1, "{setting:?} mul_trunc of element {i}: off by {}", diff as i64);
        assert_eq!(o.ltz[i], c.cmp[i] >> 63, "{setting:?} ltz of {:#x}", c.cmp[i]);
        for (k, theta) in OFFSETS.iter().enumerate() {
            assert_eq!(o.ltz_many[k * n + i], c.cmp[i].wrapping_sub(*theta) >> 63, "{setting:?} ltz_many");
        }
        for (j, c0) in MAP_CONSTS.iter().enumerate() {
            let want = OFFSETS.iter().enumerate().fold(*c0, |a, (k, theta)| {
                a.wrapping_add(MAP_COEF[j * OFFSETS.len() + k].wrapping_mul(c.cmp[i].wrapping_sub(*theta) >> 63))
            });
            assert_eq!(o.ltz_mapped[j * n + i], want, "{setting:?} ltz_many_mapped, map {j}");
        }
        assert_eq!(o.b2a[i], get_bit(&c.bx, i) & get_bit(&c.by, i));
    }
    // Boolean AND shares of parties 0 and 1 XOR to the AND.
    let (a0, a1) = (&results[0].0.and, &results[1].0.and);
    for i in 0..n {
        assert_eq!(get_bit(a0, i) ^ get_bit(a1, i), get_bit(&c.bx, i) & get_bit(&c.by, i));
    }
    // Only party 1 learns a value revealed to party 1.
    assert_eq!(results[1].0.revealed_to_1, c.x);
    assert!(results[0].0.revealed_to_1.iter().all(|v| *v == 0));
    if c.three {
        assert!(results[2].0.revealed_to_1.iter().all(|v| *v == 0));
        assert_eq!(o.from_dealer, c.y);
    }
}

#[test]
fn every_op_dealer_mem() {
    let c = case(Setting::Dealer);
    check(&c, &run_mem(Setting::Dealer, &c).unwrap(), Setting::Dealer);
}

#[test]
fn every_op_rep3_mem() {
    let c = case(Setting::Rep3);
    check(&c, &run_mem(Setting::Rep3, &c).unwrap(), Setting::Rep3);
}

#[test]
fn every_op_dealer_tcp() {
    let c = case(Setting::Dealer);
    check(&c, &run_tcp(Setting::Dealer, &c).unwrap(), Setting::Dealer);
}

#[test]
fn every_op_rep3_tcp() {
    let c = case(Setting::Rep3);
    check(&c, &run_tcp(Setting::Rep3, &c).unwrap(), Setting::Rep3);
}

#[test]
fn every_op_ot2pc_mem() {
    let c = case(Setting::Ot2pc);
    check(&c, &run_mem(Setting::Ot2pc, &c).unwrap(), Setting::Ot2pc);
}

#[test]
fn every_op_ot2pc_tcp() {
    let c = case(Setting::Ot2pc);
    check(&c, &run_tcp(Setting::Ot2pc, &c).unwrap(), Setting::Ot2pc);
}
