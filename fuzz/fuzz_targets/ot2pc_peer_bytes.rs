//! A plain-2PC party whose peer is arbitrary bytes: every op must end in `Ok` (garbage is
//! still a share, a correction or a ciphertext) or `Err` (a word that is not a residue,
//! bytes that run out) — never a panic.
//!
//! Both parties are set up honestly once per process (in memory, a peer thread), and each
//! input drives a copy of one of them (`fork_insecure`; the first byte's low bit picks
//! which) through every op with the input as everything its peer sends. The set-up itself
//! (base OTs on curve points, the public key) is `ot2pc_setup_bytes`: its curve arithmetic
//! made each input here cost ten times the ops. Fuzz builds use the HE ring degree 1024
//! (`cfg(fuzzing)` in `marill_std::ot2pc::he`), the same code at an eighth of the size.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use marill_core::proto::Protocol;
use marill_core::{Error, MatDims};
use marill_std::ot2pc::Ot2pc;
use marill_std::transport::mem::{self, MemChannel};

#[path = "replay.rs"]
mod replay;
use replay::Replay;

thread_local! {
    /// Both parties after one honest set-up.
    static PARTIES: RefCell<Option<[Ot2pc<MemChannel>; 2]>> = const { RefCell::new(None) };
}

fn honest_pair() -> [Ot2pc<MemChannel>; 2] {
    let mut chans = mem::mesh(2);
    let c1 = chans.pop().expect("two channels");
    let c0 = chans.pop().expect("two channels");
    let peer = std::thread::spawn(move || Ot2pc::new(c1, [2; 32]).expect("honest set-up"));
    let p0 = Ot2pc::new(c0, [1; 32]).expect("honest set-up");
    [p0, peer.join().expect("peer thread")]
}

/// The ops, cheapest peer messages first (a few hundred bytes for `open` to `and_bits`, a
/// few KiB for the OT-based ones, 192 KiB per ciphertext for the HE products).
fn drive<P: Protocol>(p: &mut P) -> Result<(), Error> {
    let n = 3;
    let x = vec![0x1234_5678u64; 35];
    let mut o = vec![0u64; n];
    let mut v = vec![0u64; n];
    p.open(&x[..n], &mut v)?;
    p.reveal_to(0, &x[..n], &mut v)?;
    p.trunc(&x[..n], 16, &mut o)?;
    let mut bits = vec![0u64; 1];
    p.and_bits(&[5], &[7], &mut bits)?;
    p.b2a(&[5], &mut o)?;
    p.mul(&x[..n], &x[..n], &mut o)?;
    p.square(&x[..n], &mut o)?;
    p.ltz(&x[..n], &mut o)?;
    let d = MatDims::new(5, 7, 2);
    let mut c = vec![0u64; 10];
    let w = vec![3u64; 14];
    let mine = (p.party() == 1).then_some(&w[..]);
    let spec = p.share_weight(1, mine, 7, 2)?;
    let mut material = vec![0; spec.words];
    p.fill_weight(1, mine, spec, &mut material)?;
    p.matmul_weight(&x, &material, &mut c, d)?;
    p.matmul(&x, &x[..14], &mut c, d)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let party = usize::from(sel & 1);
    PARTIES.with(|cell| {
        let mut cell = cell.borrow_mut();
        let parties = cell.get_or_insert_with(honest_pair);
        let mut p = parties[party].fork_insecure(Replay { id: party, parties: 2, data: rest });
        let _ = drive(&mut p);
    });
});
