//! A plain-2PC party's set-up whose peer is arbitrary bytes: `Ot2pc::new` reads the peer's
//! seed, base-OT points and public key from the input (the first byte's low bit picks the
//! party) and must end in `Ok` or `Err` (a point that does not decode, bytes that run out),
//! never a panic. The ops after set-up are `ot2pc_peer_bytes`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use marill_std::ot2pc::Ot2pc;

#[path = "replay.rs"]
mod replay;
use replay::Replay;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let party = usize::from(sel & 1);
    let _ = Ot2pc::new(Replay { id: party, parties: 2, data: rest }, [3; 32]);
});
