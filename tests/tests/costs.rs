//! Bytes sent per party and rounds of every op equal the formulas in the protocol docs
//! (`marill_core::proto::{assist, dealer, rep3}`, `marill_std::ot2pc`). Costs do not depend on share values, so
//! parties use local junk as shares; set-up is excluded.

#![allow(clippy::unwrap_used)]

use marill_core::proto::Protocol;
use marill_core::ring::MatDims;
use marill_core::share::bit_words;
use marill_std::Setting;
use marill_std::StdError;
use marill_std::run::{Program, run_mem};

const N: usize = 1000;
const D: MatDims = MatDims { m: 5, n: 300, k: 7 };

#[derive(Clone, Copy, Debug)]
enum Op {
    Input,
    Open,
    Reveal,
    Mul,
    Square,
    Matmul,
    MatmulMany,
    MatmulWeight,
    Trunc,
    MulTrunc,
    Ltz,
    LtzMany,
    /// `ltz_many` over 3 offsets read through 2 linear maps.
    LtzManyMapped,
    And,
    B2a,
}

struct One(Op);

impl Program for One {
    type Output = ();
    fn run<P: Protocol>(&self, p: &mut P) -> Result<(), StdError> {
        let pl = P::PLANES;
        let x = vec![3u64; N * pl];
        let mut o = vec![0u64; N * pl];
        let mut plain = vec![0u64; N];
        let r = match self.0 {
            Op::Input => {
                let v = vec![1u64; N];
                p.input(0, (p.party() == 0).then_some(&v[..]), &mut o)
            }
            Op::Open => p.open(&x, &mut plain),
            Op::Reveal => p.reveal_to(0, &x, &mut plain),
            Op::Mul => p.mul(&x, &x, &mut o),
            Op::Square => p.square(&x, &mut o),
            Op::Matmul => {
                let a = vec![1u64; D.m * D.n * pl];
                let b = vec![2u64; D.n * D.k * pl];
                let mut c = vec![0u64; D.m * D.k * pl];
                p.matmul(&a, &b, &mut c, D)
            }
            Op::MatmulMany => {
                let a = vec![1u64; 3 * D.m * D.n * pl];
                let b = vec![2u64; 3 * D.n * D.k * pl];
                let mut c = vec![0u64; 3 * D.m * D.k * pl];
                p.matmul_many(&a, &b, &mut c, D, 3)
            }
            Op::MatmulWeight => {
                let w = vec![2u64; D.n * D.k];
                let mine = (p.party() == 1).then_some(&w[..]);
                let spec = p.share_weight(1, mine, D.n, D.k)?;
                let mut material = vec![0; spec.words];
                p.fill_weight(1, mine, spec, &mut material)?;
                let a = vec![1u64; D.m * D.n * pl];
                let mut c = vec![0u64; D.m * D.k * pl];
                p.matmul_weight(&a, &material, &mut c, D)
            }
            Op::Trunc => p.trunc(&x, 16, &mut o),
            Op::MulTrunc => p.mul_trunc(&x, &x, 16, &mut o),
            Op::Ltz => p.ltz(&x, &mut o),
            Op::LtzMany => {
                let mut o3 = vec![0u64; 3 * N * pl];
                p.ltz_many(&x, &[1, 2, 3], &mut o3)
            }
            Op::LtzManyMapped => {
                let (mut o2, mut bits) = (vec![0u64; 2 * N * pl], vec![0u64; 3 * N * pl]);
                p.ltz_many_mapped(&x, &[1, 2, 3], &[1, 2, 3, 4, 5, 6], &[7, 8], &mut o2, &mut bits)
            }
            Op::And => {
                let b = vec![5u64; bit_words(N)];
                let mut z = vec![0u64; bit_words(N)];
                p.and_bits(&b, &b, &mut z)
            }
            Op::B2a => {
                let b = vec![5u64; bit_words(N)];
                p.b2a(&b, &mut o)
            }
        };
        Ok(r?)
    }
}

/// (bytes sent by parties 0, 1, 2; rounds)
fn expected(s: Setting, op: Op) -> ([u64; 3], u64) {
    let n = N as u64;
    let w = bit_words(N) as u64;
    let (mn, nk, mk) = ((D.m * D.n) as u64, (D.n * D.k) as u64, (D.m * D.k) as u64);
    match (s, op) {
        (Setting::Dealer, Op::Input) => ([0, 0, 0], 0),
        (Setting::Dealer, Op::Open) => ([8 * n, 8 * n, 0], 1),
        (Setting::Dealer, Op::Reveal) => ([0, 8 * n, 0], 1),
        (Setting::Dealer, Op::Mul) => ([16 * n, 16 * n, 8 * n], 1),
        (Setting::Dealer, Op::Square) => ([8 * n, 8 * n, 8 * n], 1),
        (Setting::Dealer, Op::Matmul) => ([8 * (mn + nk), 8 * (mn + nk), 8 * mk], 1),
        (Setting::Dealer, Op::MatmulMany) => ([24 * (mn + nk), 24 * (mn + nk), 24 * mk], 1),
        // One-time set-up (party 1 sends W − S) and one product (party 0 sends x_0 − R).
        (Setting::Dealer, Op::MatmulWeight) => ([8 * mn, 8 * nk, 8 * mk], 2),
        (Setting::Dealer, Op::Trunc) => ([8 * n, 8 * n, 16 * n], 1),
        (Setting::Dealer, Op::MulTrunc) => ([24 * n, 24 * n, 24 * n], 2),
        // Open (8n); two rounds of 4-way combines opening 32 + 8 variable planes (320w)
        // against 88 + 15 dealt mask-product planes (824w); b2a (8w / 8n); tables 32n and
        // msb(r) 8w from the dealer.
        (Setting::Dealer, Op::Ltz) => ([8 * n + 328 * w, 8 * n + 328 * w, 40 * n + 832 * w], 4),
        (Setting::Dealer, Op::LtzMany) => {
            let w3 = bit_words(3 * N) as u64;
            ([8 * n + 328 * w3, 8 * n + 328 * w3, 32 * n + 8 * w + 824 * w3 + 24 * n], 4)
        }
        (Setting::Dealer, Op::And) => ([16 * w, 16 * w, 8 * w], 1),
        (Setting::Dealer, Op::B2a) => ([8 * w, 8 * w, 8 * n], 1),
        (Setting::Rep3, Op::Input) => ([8 * n, 0, 0], 1),
        (Setting::Rep3, Op::Open) => ([8 * n, 8 * n, 8 * n], 1),
        (Setting::Rep3, Op::Reveal) => ([0, 0, 8 * n], 1),
        (Setting::Rep3, Op::Mul | Op::Square) => ([8 * n, 8 * n, 8 * n], 1),
        (Setting::Rep3, Op::Matmul) => ([8 * mk, 8 * mk, 8 * mk], 1),
        (Setting::Rep3, Op::MatmulMany) => ([24 * mk, 24 * mk, 24 * mk], 1),
        (Setting::Rep3, Op::MatmulWeight) => ([8 * mk, 8 * nk + 8 * mk, 8 * mk], 2),
        (Setting::Rep3, Op::Trunc) => ([16 * n, 16 * n, 16 * n], 2),
        (Setting::Rep3, Op::MulTrunc) => ([16 * n, 16 * n, 32 * n], 2),
        (Setting::Rep3, Op::Ltz) => ([16 * n + 328 * w, 16 * n + 328 * w, 40 * n + 832 * w], 5),
        (Setting::Rep3, Op::LtzMany) => {
            let w3 = bit_words(3 * N) as u64;
            ([8 * n + 328 * w3 + 24 * n, 8 * n + 328 * w3 + 24 * n, 32 * n + 8 * w + 824 * w3 + 24 * n], 5)
        }
        // The maps' values are reshared, 2 words an element instead of the 3 bits.
        (Setting::Rep3, Op::LtzManyMapped) => {
            let w3 = bit_words(3 * N) as u64;
            ([8 * n + 328 * w3 + 16 * n, 8 * n + 328 * w3 + 16 * n, 32 * n + 8 * w + 824 * w3 + 24 * n], 5)
        }
        // Elsewhere the bits are mapped locally: `ltz_many`'s costs.
        (s, Op::LtzManyMapped) => expected(s, Op::LtzMany),
        (Setting::Rep3, Op::And) => ([16 * w, 16 * w, 8 * w], 1),
        (Setting::Rep3, Op::B2a) => ([8 * w + 8 * n, 8 * w + 8 * n, 8 * n], 2),
        (Setting::Ot2pc, op) => ot2pc(op),
    }
}

/// Plain 2PC (`marill_std::ot2pc`): IKNP costs 16 bytes per OT from the receiver; a
/// product of two private words is 64 OTs and 64 corrections of 64 − b bits each way; HE products send
/// their input ciphertexts (`24·N` bytes each, plus a seed) one way and switched outputs
/// (`10·(N + bm·bk)` bytes) the other, in the block shape `he::Plan` picks.
fn ot2pc(op: Op) -> ([u64; 3], u64) {
    use marill_std::ot2pc::he::{N as RING, Plan, Rns, SWITCH_BYTES};
    let n = N as u64;
    let w = bit_words(N) as u64;
    let iknp = |ots: u64| 1024 * ots.div_ceil(64);
    let he = |digits: usize, count: u64| {
        let p = Plan::new(D, digits, &Rns::new().unwrap()).unwrap();
        let (im, in_, ik) = (D.m.div_ceil(p.bm) as u64, D.n.div_ceil(p.bn) as u64, D.k.div_ceil(p.bk) as u64);
        let sent = 32 + count * im * in_ * digits as u64 * 24 * RING as u64;
        let back = count * im * ik * (SWITCH_BYTES * (RING + p.bm * p.bk)) as u64;
        (sent, back)
    };
    let tree = 26 * 1032;
    match op {
        Op::Input => ([0, 0, 0], 0),
        Op::Open => ([8 * n, 8 * n, 0], 1),
        Op::Reveal => ([0, 8 * n, 0], 1),
        Op::Mul => ([1284 * n, 1284 * n, 0], 2),
        Op::Square => ([1024 * n, 260 * n, 0], 2),
        Op::Matmul => {
            let (s, b) = he(2, 1);
            ([s + b, s + b, 0], 2)
        }
        Op::MatmulMany => {
            let (s, b) = he(2, 3);
            ([s + b, s + b, 0], 2)
        }
        Op::MatmulWeight => {
            let (s, b) = he(1, 1);
            ([s, b, 0], 2)
        }
        Op::Trunc => ([iknp(n), 8 * n, 0], 2),
        Op::MulTrunc => ([1284 * n + iknp(n), 1284 * n + 8 * n, 0], 4),
        Op::Ltz => ([64 * n + tree * w + iknp(n), iknp(63 * n) + tree * w + 8 * n, 0], 11),
        Op::LtzMany | Op::LtzManyMapped => {
            let w3 = bit_words(3 * N) as u64;
            ([64 * 3 * n + tree * w3 + iknp(3 * n), iknp(63 * n) + tree * w3 + 8 * 3 * n, 0], 11)
        }
        Op::And => ([1032 * w, 1032 * w, 0], 2),
        Op::B2a => ([iknp(n), 8 * n, 0], 2),
    }
}

#[test]
fn bytes_and_rounds_match_the_formulas() {
    let ops = [
        Op::Input,
        Op::Open,
        Op::Reveal,
        Op::Mul,
        Op::Square,
        Op::Matmul,
        Op::MatmulMany,
        Op::MatmulWeight,
        Op::Trunc,
        Op::MulTrunc,
        Op::Ltz,
        Op::LtzMany,
        Op::LtzManyMapped,
        Op::And,
        Op::B2a,
    ];
    for s in Setting::ALL {
        for op in ops {
            let r = run_mem(s, &One(op)).unwrap();
            let bytes = [r[0].1.bytes_sent, r[1].1.bytes_sent, r.get(2).map_or(0, |p| p.1.bytes_sent)];
            let rounds = r.iter().map(|(_, c)| c.rounds).max().unwrap();
            assert_eq!((bytes, rounds), expected(s, op), "{s:?} {op:?}");
        }
    }
}

#[test]
fn rep3_matmul_traffic_is_independent_of_the_inner_dimension() {
    struct Mm(usize);
    impl Program for Mm {
        type Output = ();
        fn run<P: Protocol>(&self, p: &mut P) -> Result<(), StdError> {
            let d = MatDims::new(4, self.0, 6);
            let a = vec![1u64; 4 * self.0 * P::PLANES];
            let b = vec![1u64; self.0 * 6 * P::PLANES];
            let mut c = vec![0u64; 24 * P::PLANES];
            Ok(p.matmul(&a, &b, &mut c, d)?)
        }
    }
    let small = run_mem(Setting::Rep3, &Mm(3)).unwrap();
    let large = run_mem(Setting::Rep3, &Mm(3000)).unwrap();
    for i in 0..3 {
        assert_eq!(small[i].1.bytes_sent, 8 * 24);
        assert_eq!(large[i].1.bytes_sent, 8 * 24);
    }
}

/// `matmul_many_trunc` (3 blocks): 2PC-Dealer sends what `matmul_many` and `trunc` send
/// (2 rounds); 3PC truncates the local 3-of-3 product directly, the helper's part in the
/// opening round, then reshares: 16 bytes per output from parties 0 and 1, 32 from the
/// helper, 2 rounds instead of `matmul_many`'s 1 and `trunc`'s 2.
#[test]
fn fused_matmul_and_truncation_match_the_formulas() {
    struct Fused;
    impl Program for Fused {
        type Output = ();
        fn run<P: Protocol>(&self, p: &mut P) -> Result<(), StdError> {
            let pl = P::PLANES;
            let a = vec![1u64; 3 * D.m * D.n * pl];
            let b = vec![2u64; 3 * D.n * D.k * pl];
            let mut c = vec![0u64; 3 * D.m * D.k * pl];
            Ok(p.matmul_many_trunc(&a, &b, &mut c, D, 3, 16)?)
        }
    }
    let (mn, nk, mk) = ((D.m * D.n) as u64, (D.n * D.k) as u64, (D.m * D.k) as u64);
    for (s, want) in [
        (Setting::Dealer, ([24 * (mn + nk) + 24 * mk, 24 * (mn + nk) + 24 * mk, 24 * mk + 48 * mk], 2)),
        (Setting::Rep3, ([48 * mk, 48 * mk, 96 * mk], 2)),
    ] {
        let r = run_mem(s, &Fused).unwrap();
        let bytes = [r[0].1.bytes_sent, r[1].1.bytes_sent, r[2].1.bytes_sent];
        let rounds = r.iter().map(|(_, c)| c.rounds).max().unwrap();
        assert_eq!((bytes, rounds), want, "{s:?}");
    }
}
