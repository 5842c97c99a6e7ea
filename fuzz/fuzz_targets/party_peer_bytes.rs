//! A 2PC-Dealer or 3PC party whose peers are arbitrary bytes: every op must end in `Ok`
//! (garbage shares are still shares) or `Err` when the bytes run out — never a panic.
//! Seeds: honest transcripts from `record_transcripts`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "party_ops.rs"]
mod party_ops;
#[path = "replay.rs"]
mod replay;
use replay::Replay;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let _ = party_ops::run(sel, Replay { id: usize::from(sel % 3), parties: 3, data: rest });
});
