//! What `party_peer_bytes` runs, shared with `record_transcripts` (`#[path]`-included, not a
//! target of its own): the input's first byte picks the setting (bit 7: 3PC, else
//! 2PC-Dealer) and the party (the byte mod 3); fixed seeds, so a recorded honest session is
//! a transcript the fuzzed party accepts.

use marill_core::proto::Protocol;
use marill_core::proto::dealer::Dealer2pc;
use marill_core::proto::rep3::Rep3;
use marill_core::proto::setup::{DealerSeeds, Rep3Seeds};
use marill_core::{Channel, Error, MatDims};

fn drive<P: Protocol>(p: &mut P) -> Result<(), Error> {
    let n = 70;
    let pl = P::PLANES;
    let x = vec![0x1234_5678u64; n * pl];
    let mut o = vec![0u64; n * pl];
    let mut v = vec![0u64; n];
    p.open(&x, &mut v)?;
    p.mul(&x, &x, &mut o)?;
    p.trunc(&x, 16, &mut o)?;
    p.mul_trunc(&x, &x, 12, &mut o)?;
    p.ltz(&x, &mut o)?;
    let d = MatDims::new(5, 7, 2);
    let mut c = vec![0u64; 10 * pl];
    p.matmul(&x[..35 * pl], &x[..14 * pl], &mut c, d)?;
    p.matmul_many_trunc(&x[..35 * pl], &x[..14 * pl], &mut c, d, 1, 12)?;
    // The chained and fused ops (each declines, sending nothing, where unsupported).
    p.square_chain(&x, &[(0, 20), (0, 0), (1 << 10, 30)], &mut o)?;
    p.poly_chain(&x, &x, &[1, 2, 3, 4, 5], 20, 30, &mut o)?;
    let (rows, cols) = (7, 10);
    let long = vec![0x0123_4567u64; (rows + n) * pl];
    p.mul_trunc_scaled(&long, &long, rows, cols, (16, 16), 1 << 16, &mut o)?;
    let twice = vec![0x0000_4567u64; 2 * n * pl];
    let (mut sums, mut prods, mut bits) = (vec![0u64; rows * pl], vec![0u64; n * pl], vec![0u64; 2 * rows * pl]);
    p.norm_stats(&twice, &twice, rows, cols, (1, 16), &[1 << 20, 1 << 40], &mut sums, &mut prods, &mut bits)?;
    p.reveal_to(0, &x, &mut v)
}

/// The party `sel` picks (`ch.id()` must be `sel % 3`), over `ch`, through every op.
pub fn run<C: Channel>(sel: u8, ch: C) -> Result<(), Error> {
    let party = usize::from(sel % 3);
    let scratch = marill_std::HeapScratch::with_max(1 << 20);
    if sel & 0x80 == 0 {
        let seeds = match party {
            0 => DealerSeeds::Compute { dealer: [1; 32], peer: [3; 32] },
            1 => DealerSeeds::Compute { dealer: [2; 32], peer: [3; 32] },
            _ => DealerSeeds::Dealer { a: [1; 32], b: [2; 32] },
        };
        drive(&mut Dealer2pc::new(ch, scratch, seeds)?)
    } else {
        // Party i holds seeds i and i + 1 of three (and a common one).
        let s = |i: usize| [10 + (i % 3) as u8; 32];
        let seeds = Rep3Seeds { own: s(party), next: s(party + 1), all: [6; 32] };
        drive(&mut Rep3::new(ch, scratch, seeds)?)
    }
}
