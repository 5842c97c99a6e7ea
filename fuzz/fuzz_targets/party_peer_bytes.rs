//! A 2PC-Dealer or 3PC party whose peers are arbitrary bytes: every op must end in `Ok`
//! (garbage shares are still shares) or `Err` when the bytes run out — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marill_core::proto::Protocol;
use marill_core::proto::dealer::Dealer2pc;
use marill_core::proto::rep3::Rep3;
use marill_core::proto::setup::{DealerSeeds, Rep3Seeds};
use marill_core::{Error, MatDims};

#[path = "replay.rs"]
mod replay;
use replay::Replay;

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
    p.reveal_to(0, &x, &mut v)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let party = usize::from(sel % 3);
    let ch = Replay { id: party, parties: 3, data: rest };
    let scratch = marill_std::HeapScratch::with_max(1 << 20);
    if sel & 0x80 == 0 {
        let seeds = if party == 2 {
            DealerSeeds::Dealer { a: [1; 32], b: [2; 32] }
        } else {
            DealerSeeds::Compute { dealer: [1; 32], peer: [3; 32] }
        };
        if let Ok(mut p) = Dealer2pc::new(ch, scratch, seeds) {
            let _ = drive(&mut p);
        }
    } else {
        let seeds = Rep3Seeds { own: [4; 32], next: [5; 32], all: [6; 32] };
        if let Ok(mut p) = Rep3::new(ch, scratch, seeds) {
            let _ = drive(&mut p);
        }
    }
});
